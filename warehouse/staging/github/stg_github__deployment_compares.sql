/*
description: >-
  What each successful production deployment shipped: GitHub's compare of the previous successful
  production deployment's SHA (base) with this one's (head), one row per commit in the compare
  (oldest first, as GitHub lists them). A compare without commits (the same SHA deployed again, or a
  redeploy of an older SHA) has no rows.
grain: one row per (compare, commit)
primary_key: [repo, base_sha, head_sha, commit_sha]
columns:
  repo: Repository (owner/name).
  base_sha: The previously deployed commit (the compare's base).
  head_sha: The newly deployed commit (the compare's head).
  base_deployment_id: "The earlier deployment: `github:deployment:<id>`."
  head_deployment_id: "The deployment that shipped the commits: `github:deployment:<id>`."
  original_environment: The environment of the two deployments as GitHub names it.
  status: "GitHub's comparison status: `ahead`, `behind`, `diverged` or `identical`."
  ahead_by: Commits the head has that the base does not.
  behind_by: Commits the base has that the head does not.
  total_commits: Commits in the compare (GitHub lists them all, paged past 250).
  merge_base_sha: The common ancestor of base and head.
  commit_sha: A commit in the compare (reachable from head, not from base).
  commit_position: Position of the commit in the compare, 1 for the oldest.
  author_id: person_id of the commit's author (GitHub login, else the author e-mail's local part).
  authored_at: When the change was written (the commit's author date, UTC).
  committed_at: When the commit was made (the committer date, UTC).
checks:
  status:
    isin: [ahead, behind, diverged, identical]
*/
with ranked as (
    select
        _dlt_id,
        repo_full_name,
        base_sha,
        head_sha,
        base_deployment_id,
        head_deployment_id,
        environment,
        status,
        ahead_by,
        behind_by,
        total_commits,
        merge_base_sha,
        row_number() over (partition by repo_full_name, base_sha, head_sha order by _dlt_load_id desc) as recency
    from raw_github.deployment_compares
),
commits as (
    select
        c.repo_full_name,
        c.base_sha,
        c.head_sha,
        c.base_deployment_id,
        c.head_deployment_id,
        c.environment,
        c.status,
        c.ahead_by,
        c.behind_by,
        c.total_commits,
        c.merge_base_sha,
        k.sha as commit_sha,
        k._dlt_list_idx + 1 as commit_position,
        k.author__login,
        k.commit__author__email,
        k.commit__author__date,
        k.commit__committer__date,
        row_number() over (
            partition by c.repo_full_name, c.base_sha, c.head_sha, k.sha order by k._dlt_list_idx
        ) as occurrence
    from ranked as c
    inner join raw_github.deployment_compares__commits as k on k._dlt_parent_id = c._dlt_id
    where c.recency = 1 and k.sha is not null
)
select
    repo_full_name as repo,
    base_sha,
    head_sha,
    'github:deployment:' || cast(base_deployment_id as varchar) as base_deployment_id,
    'github:deployment:' || cast(head_deployment_id as varchar) as head_deployment_id,
    environment as original_environment,
    lower(status) as status,
    ahead_by,
    behind_by,
    total_commits,
    merge_base_sha,
    commit_sha,
    commit_position,
    person_id(coalesce(author__login, commit__author__email)) as author_id,
    cast(commit__author__date as timestamp with time zone) as authored_at,
    cast(commit__committer__date as timestamp with time zone) as committed_at
from commits
where occurrence = 1
