/*
description: >-
  GitHub pull requests of every state, one row per pull request as last loaded. `state` tells merged
  pull requests apart from closed ones (GitHub says `closed` for both); `merge_sha` is kept only once
  merged (GitHub also fills it with a test-merge commit while a pull request is open).
grain: one row per pull request
primary_key: [repo, pr_number]
columns:
  repo: Repository (owner/name).
  pr_number: The pull request's number within its repository.
  github_id: GitHub's numeric pull request id (unique across repositories).
  title: Title as last edited.
  branch: Head branch (the branch the work was done on, e.g. `feature/PAY-12-refunds`).
  body: Description as last edited; null when empty.
  author_id: person_id of the author (from the GitHub login).
  author_type: "GitHub account type of the author: `User` or `Bot`."
  author_association: The author's relation to the repository (`MEMBER`, `CONTRIBUTOR`, …).
  state: "`open`, `closed` (closed without merging) or `merged` (merged_at is set)."
  original_state: "GitHub's state as sent: `open` or `closed`."
  is_draft: The pull request is a draft.
  created_at: When the pull request was opened (UTC).
  updated_at: Last change to the pull request, its commits or reviews (UTC).
  closed_at: When it was closed, merged or not (UTC); null while open.
  merged_at: When it was merged (UTC); null unless merged.
  merge_sha: The commit the merge put on the base branch (merge or squash commit); null unless merged.
  head_sha: Last commit of the head branch.
  head_repo: Repository of the head branch (owner/name; differs for a fork); null when the fork was deleted.
  base_ref: Branch the pull request targets (e.g. `main`).
  base_sha: Commit of the base branch the pull request was compared against.
checks:
  state:
    isin: [open, closed, merged]
*/
with ranked as (
    select
        id,
        number,
        repo_full_name,
        state,
        title,
        body,
        draft,
        author_association,
        created_at,
        updated_at,
        closed_at,
        merged_at,
        merge_commit_sha,
        user__login,
        user__type,
        head__ref,
        head__sha,
        head__repo__full_name,
        base__ref,
        base__sha,
        row_number() over (
            partition by repo_full_name, number order by _dlt_load_id desc, updated_at desc
        ) as recency
    from raw_github.pull_requests
)
select
    repo_full_name as repo,
    number as pr_number,
    id as github_id,
    title,
    head__ref as branch,
    nullif(body, '') as body,
    person_id(user__login) as author_id,
    user__type as author_type,
    author_association,
    case when merged_at is not null then 'merged' else lower(state) end as state,
    state as original_state,
    coalesce(draft, false) as is_draft,
    cast(created_at as timestamp with time zone) as created_at,
    cast(updated_at as timestamp with time zone) as updated_at,
    cast(closed_at as timestamp with time zone) as closed_at,
    cast(merged_at as timestamp with time zone) as merged_at,
    case when merged_at is not null then merge_commit_sha end as merge_sha,
    head__sha as head_sha,
    head__repo__full_name as head_repo,
    base__ref as base_ref,
    base__sha as base_sha
from ranked
where recency = 1
