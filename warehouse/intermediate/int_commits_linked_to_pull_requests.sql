/*
description: >-
  Commits of each pull request: the commits listed on the PR, and the commit its merge put on the
  main branch (a merge or squash commit).
grain: one row per (pull request, commit)
primary_key: [repo, pr_number, sha]
columns:
  repo: Repository (owner/name).
  pr_number: Pull request number.
  sha: Commit SHA.
  link_rule: "`pr_commit` (listed on the PR) or `merge_commit` (the PR's merge_commit_sha)."
*/
select repo, pr_number, sha, 'pr_commit' as link_rule
from staging.stg_github__pull_request_commits
union
select repo, pr_number, merge_sha, 'merge_commit'
from staging.stg_github__pull_requests
where merge_sha is not null and merged_at is not null
