/*
description: >-
  Jira issues with their feature, when work started and finished, and the derived cycle and lead
  times. Started = first move into an in-progress status; done = first move into a done status.
grain: one row per Jira issue (epics included)
primary_key: [issue_key]
columns:
  issue_key: Jira issue key, e.g. PAY-12.
  issue_id: Jira's numeric issue id.
  project_key: Jira project key.
  issue_type: Epic, Story, Task or Bug.
  summary: Issue summary.
  status: "Normalised status: `todo`, `in_progress` or `done`."
  original_status: Status name in Jira.
  epic_key: The feature (epic) the issue belongs to; null for epics and issues without one.
  created_at: When the issue was created.
  started_at: First transition into an in-progress status.
  done_at: First transition into a done status.
  resolved_at: Jira's resolution date.
  cycle_time_hours: Hours from started_at to done_at.
  lead_time_hours: Hours from created_at to done_at.
  assignee_id: Pseudonymous id of the assignee.
  reporter_id: Pseudonymous id of the reporter.
  priority: Priority name.
  story_points: Story points, if estimated.
checks:
  status:
    isin: [todo, in_progress, done]
  issue_type:
    isin: [Epic, Story, Task, Bug]
*/
with firsts as (
    select
        issue_key,
        min(case when to_status_category = 'in_progress' then transitioned_at end) as started_at,
        min(case when to_status_category = 'done' then transitioned_at end) as done_at
    from staging.stg_jira__issue_transitions
    group by issue_key
)
select
    i.issue_key,
    i.issue_id,
    i.project_key,
    i.issue_type,
    i.summary,
    i.status,
    i.original_status,
    e.epic_key,
    i.created_at,
    f.started_at,
    f.done_at,
    i.resolved_at,
    date_diff('second', f.started_at, f.done_at) / 3600.0 as cycle_time_hours,
    date_diff('second', i.created_at, f.done_at) / 3600.0 as lead_time_hours,
    i.assignee_id,
    i.reporter_id,
    i.priority,
    i.story_points
from staging.stg_jira__issues as i
left join intermediate.int_issues_linked_to_epics as e on e.issue_key = i.issue_key
left join firsts as f on f.issue_key = i.issue_key
