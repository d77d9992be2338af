/*
description: Each Jira issue's feature (epic), through the issue's parent link.
grain: one row per non-epic issue whose parent is an epic
primary_key: [issue_key]
columns:
  issue_key: The issue.
  epic_key: The epic (feature) it belongs to.
  link_rule: "How the link was made: `parent` (the issue's parent field names an epic)."
*/
select
    i.issue_key,
    e.issue_key as epic_key,
    'parent' as link_rule
from staging.stg_jira__issues as i
inner join staging.stg_jira__issues as e
    on e.issue_key = i.epic_key and e.issue_type = 'Epic'
where i.issue_type <> 'Epic'
