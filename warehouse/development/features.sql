/*
description: >-
  Features (Jira epics) with their delivery milestones: first shipped (any PR in production),
  released (the first production deployment containing the feature's last merged PR) and time to
  market (released − epic created), plus issue, PR and bug counts.
grain: one row per epic
primary_key: [feature_key]
columns:
  feature_key: The epic's Jira key.
  project_key: Jira project.
  summary: Epic summary.
  status: "Normalised status: `todo`, `in_progress` or `done`."
  created_at: When the epic was created.
  first_deployed_at: First production deployment that shipped any PR of the feature.
  first_released_at: First production deployment containing the feature's last merged PR.
  release_deployment_id: That deployment.
  time_to_market_days: Days from created_at to first_released_at.
  issue_count: Issues in the feature (bugs included).
  done_issue_count: Of those, done.
  pull_request_count: Merged PRs linked to the feature.
  bug_count: Bugs in the feature.
  escaped_bug_count: Bugs that escaped to production.
checks:
  status:
    isin: [todo, in_progress, done]
*/
with prs as (
    select p.repo, p.pr_number, p.merged_at, p.feature_key, d.deployment_id, d.deployed_at
    from development.pull_requests as p
    left join intermediate.int_pull_requests_linked_to_deployments as d
        on d.repo = p.repo and d.pr_number = p.pr_number
    where p.merged_at is not null and p.feature_key is not null
),
last_pr as (
    select
        feature_key, deployment_id, deployed_at,
        row_number() over (partition by feature_key order by merged_at desc, repo, pr_number) as recency
    from prs
),
pr_counts as (
    select feature_key, count(*) as pull_request_count, min(deployed_at) as first_deployed_at
    from prs
    group by feature_key
),
issue_counts as (
    select
        epic_key as feature_key,
        count(*) as issue_count,
        count(case when status = 'done' then 1 end) as done_issue_count,
        count(case when issue_type = 'Bug' then 1 end) as bug_count
    from development.issues
    where epic_key is not null
    group by epic_key
),
escaped as (
    select feature_key, count(*) as escaped_bug_count
    from intermediate.int_bugs_classified
    where escaped
    group by feature_key
)
select
    e.issue_key as feature_key,
    e.project_key,
    e.summary,
    e.status,
    e.created_at,
    pc.first_deployed_at,
    lp.deployed_at as first_released_at,
    lp.deployment_id as release_deployment_id,
    date_diff('second', e.created_at, lp.deployed_at) / 86400.0 as time_to_market_days,
    coalesce(ic.issue_count, 0) as issue_count,
    coalesce(ic.done_issue_count, 0) as done_issue_count,
    coalesce(pc.pull_request_count, 0) as pull_request_count,
    coalesce(ic.bug_count, 0) as bug_count,
    coalesce(x.escaped_bug_count, 0) as escaped_bug_count
from development.issues as e
left join last_pr as lp on lp.feature_key = e.issue_key and lp.recency = 1
left join pr_counts as pc on pc.feature_key = e.issue_key
left join issue_counts as ic on ic.feature_key = e.issue_key
left join escaped as x on x.feature_key = e.issue_key
where e.issue_type = 'Epic'
