/*
description: >-
  The sprints each Jira issue is in, from the issue's Sprint field (a custom field the source finds
  through /field and loads as `fields.sprints`). Only the link is kept; a sprint's state and dates
  come from stg_jira__sprints (the copies embedded in issues can be stale).
grain: one row per issue and sprint
primary_key: [issue_key, sprint_id]
columns:
  issue_key: The issue.
  issue_id: Jira's numeric issue id.
  sprint_id: Jira sprint id.
*/
with ranked as (
    select
        i.id,
        i.key,
        i._dlt_id,
        row_number() over (partition by i.id order by i._dlt_load_id desc, i.fields__updated desc) as load_rank
    from raw_jira.issues as i
)
select distinct
    i.key as issue_key,
    cast(i.id as bigint) as issue_id,
    cast(s.id as bigint) as sprint_id
from ranked as i
inner join raw_jira.issues__fields__sprints as s on s._dlt_parent_id = i._dlt_id
where i.load_rank = 1 and s.id is not null
