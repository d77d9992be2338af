/*
description: >-
  Pull requests with the Jira issue and feature they implement (and the rule that linked them),
  review and merge timings, and size.
grain: one row per pull request
primary_key: [repo, pr_number]
columns:
  repo: Repository (owner/name).
  pr_number: Pull request number.
  issue_key: Linked Jira issue; null when the PR references none.
  link_rule: "Where the issue key was found: `title`, `branch`, `body`; null when unlinked."
  feature_key: The feature (epic) of the linked issue.
  title: PR title.
  author_id: Pseudonymous id of the author.
  state: "`open`, `closed` (not merged) or `merged`."
  created_at: When the PR was opened.
  first_commit_at: Earliest authored time of its commits.
  first_review_at: When the first review was submitted.
  merged_at: When it was merged.
  closed_at: When it was closed.
  time_to_first_review_hours: Hours from opening to the first review.
  time_to_merge_hours: Hours from opening to merge.
  commit_count: Number of commits (the PR's size).
  review_count: Number of reviews.
checks:
  state:
    isin: [open, closed, merged]
  link_rule:
    isin: [title, branch, body]
  commit_count: {ge: 0}
*/
with commits as (
    select repo, pr_number, min(authored_at) as first_commit_at, count(*) as commit_count
    from staging.stg_github__pull_request_commits
    group by repo, pr_number
),
reviews as (
    select repo, pr_number, min(submitted_at) as first_review_at, count(*) as review_count
    from staging.stg_github__pull_request_reviews
    group by repo, pr_number
)
select
    p.repo,
    p.pr_number,
    l.issue_key,
    l.link_rule,
    case when i.issue_type = 'Epic' then i.issue_key else e.epic_key end as feature_key,
    p.title,
    p.author_id,
    p.state,
    p.created_at,
    c.first_commit_at,
    r.first_review_at,
    p.merged_at,
    p.closed_at,
    date_diff('second', p.created_at, r.first_review_at) / 3600.0 as time_to_first_review_hours,
    date_diff('second', p.created_at, p.merged_at) / 3600.0 as time_to_merge_hours,
    coalesce(c.commit_count, 0) as commit_count,
    coalesce(r.review_count, 0) as review_count
from staging.stg_github__pull_requests as p
left join intermediate.int_pull_requests_linked_to_issues as l on l.repo = p.repo and l.pr_number = p.pr_number
left join staging.stg_jira__issues as i on i.issue_key = l.issue_key
left join intermediate.int_issues_linked_to_epics as e on e.issue_key = l.issue_key
left join commits as c on c.repo = p.repo and c.pr_number = p.pr_number
left join reviews as r on r.repo = p.repo and r.pr_number = p.pr_number
