/*
description: >-
  Jira issues (REST v3 search/jql), one row per issue as last loaded. `status` is normalised from
  Jira's status category (new → todo, indeterminate → in_progress, done → done), the status name is
  kept in `original_status`. `epic_key` is the issue's parent when that parent is an epic, judged
  from the parent's own row when it was loaded (the copy embedded in the issue can be stale), else
  from the embedded copy. People are pseudonymised from their Jira display name (never the e-mail).
  Timestamps are UTC (Jira sends `2020-06-12T08:13:13.360+0000`).
grain: one row per Jira issue (epics included)
primary_key: [issue_key]
columns:
  issue_id: Jira's numeric issue id (stable when an issue moves to another project; its key changes).
  issue_key: Jira issue key, e.g. PAY-12.
  project_key: Key of the issue's project.
  issue_type: Issue type name as Jira names it (Epic, Story, Task, Bug).
  issue_type_level: "Jira's hierarchy level of the issue type: 1 epic, 0 standard issue, -1 sub-task."
  summary: Issue summary.
  status: "Normalised status: `todo`, `in_progress` or `done` (from the status category); null for a status without a category."
  original_status: Status name in Jira.
  original_status_category: "Jira's status category key: `new`, `indeterminate` or `done`."
  parent_key: Key of the issue's parent (an epic, or the parent of a sub-task); null without one.
  epic_key: The parent epic's key; null for epics and for issues whose parent is not an epic or that have none.
  created_at: When the issue was created (UTC).
  updated_at: When the issue was last updated (UTC).
  resolved_at: Jira's resolution date (UTC); null while unresolved.
  status_category_changed_at: When the issue last changed status category (UTC).
  resolution: Resolution name (e.g. Done); null while unresolved.
  assignee_id: Pseudonymous person id of the assignee (person_id of the Jira display name); null when unassigned.
  reporter_id: Pseudonymous person id of the reporter.
  priority: Priority name (Highest, High, Medium, Low, Lowest).
  story_points: Story points, if estimated (the site's story-points field, found by the source).
*/
with ranked as (
    select
        i.*,
        row_number() over (partition by i.id order by i._dlt_load_id desc, i.fields__updated desc) as load_rank
    from raw_jira.issues as i
),
latest as (
    select * from ranked where load_rank = 1
)
select
    cast(i.id as bigint) as issue_id,
    i.key as issue_key,
    i.fields__project__key as project_key,
    i.fields__issuetype__name as issue_type,
    cast(i.fields__issuetype__hierarchy_level as integer) as issue_type_level,
    i.fields__summary as summary,
    case i.fields__status__status_category__key
        when 'new' then 'todo'
        when 'indeterminate' then 'in_progress'
        when 'done' then 'done'
    end as status,
    i.fields__status__name as original_status,
    i.fields__status__status_category__key as original_status_category,
    coalesce(p.key, i.fields__parent__key) as parent_key,
    case
        when p.id is not null and (p.fields__issuetype__hierarchy_level = 1 or p.fields__issuetype__name = 'Epic')
            then p.key
        when p.id is null and (
            i.fields__parent__fields__issuetype__hierarchy_level = 1
            or i.fields__parent__fields__issuetype__name = 'Epic'
        )
            then i.fields__parent__key
    end as epic_key,
    cast(i.fields__created as timestamp with time zone) as created_at,
    cast(i.fields__updated as timestamp with time zone) as updated_at,
    cast(i.fields__resolutiondate as timestamp with time zone) as resolved_at,
    cast(i.fields__statuscategorychangedate as timestamp with time zone) as status_category_changed_at,
    i.fields__resolution__name as resolution,
    person_id(i.fields__assignee__display_name) as assignee_id,
    person_id(i.fields__reporter__display_name) as reporter_id,
    i.fields__priority__name as priority,
    cast(i.fields__story_points as double) as story_points
from latest as i
left join latest as p on p.id = i.fields__parent__id
