/*
description: Every status change of every Jira issue, with the time spent in the status it left.
grain: one row per status change
primary_key: [history_id, issue_key]
columns:
  history_id: Jira changelog history id.
  issue_key: The issue.
  transitioned_at: When the status changed.
  author_id: Pseudonymous id of who changed it.
  from_status: Status left.
  to_status: Status entered.
  to_status_category: "Normalised category of the status entered: `todo`, `in_progress` or `done`."
  previous_status_hours: Hours since the previous change (or since creation, for the first).
checks:
  to_status_category:
    isin: [todo, in_progress, done]
*/
select
    t.history_id,
    t.issue_key,
    t.transitioned_at,
    t.author_id,
    t.from_status,
    t.to_status,
    t.to_status_category,
    date_diff(
        'second',
        coalesce(
            lag(t.transitioned_at) over (partition by t.issue_key order by t.transitioned_at, t.history_id),
            i.created_at
        ),
        t.transitioned_at
    ) / 3600.0 as previous_status_hours
from staging.stg_jira__issue_transitions as t
inner join staging.stg_jira__issues as i on i.issue_key = t.issue_key
