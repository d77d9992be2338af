/*
description: >-
  Reviews submitted on pull requests, one row per review. `state` is GitHub's review state in lower
  case (`approved`, `changes_requested`, `commented`, `dismissed`, `pending`), its word kept in
  `original_state`.
grain: one row per review
primary_key: [review_id]
columns:
  review_id: GitHub's numeric review id.
  repo: Repository (owner/name).
  pr_number: Number of the reviewed pull request.
  pull_request_github_id: GitHub's numeric id of the reviewed pull request.
  reviewer_id: person_id of the reviewer (GitHub login); null for a deleted account.
  state: "`approved`, `changes_requested`, `commented`, `dismissed` or `pending` (lower case)."
  original_state: GitHub's state as sent (e.g. `APPROVED`).
  author_association: The reviewer's relation to the repository (`MEMBER`, `CONTRIBUTOR`, …).
  submitted_at: When the review was submitted (UTC); null for a pending review.
  commit_sha: The pull request's head commit the review was given on.
checks:
  state:
    isin: [approved, changes_requested, commented, dismissed, pending]
*/
with ranked as (
    select
        id,
        pull_request_id,
        pull_request_number,
        repo_full_name,
        user__login,
        state,
        author_association,
        submitted_at,
        commit_id,
        row_number() over (partition by id order by _dlt_load_id desc) as recency
    from raw_github.pull_request_reviews
)
select
    id as review_id,
    repo_full_name as repo,
    pull_request_number as pr_number,
    pull_request_id as pull_request_github_id,
    person_id(user__login) as reviewer_id,
    lower(state) as state,
    state as original_state,
    author_association,
    cast(submitted_at as timestamp with time zone) as submitted_at,
    commit_id as commit_sha
from ranked
where recency = 1
