/*
description: >-
  Status changes of Jira issues, from the issues' changelogs: one row per history that changed the
  status (its `status` item). The category of each status (todo / in_progress / done) is the site's
  own, read from the statuses the loaded issues are in (by status id, then name); a status no loaded
  issue is in now falls back to the common workflow names (To Do, Open, Backlog → todo; In Progress,
  In Review → in_progress; Done, Resolved, Closed → done). The issue key is the issue's current key.
grain: one row per status change
primary_key: [history_id, issue_key]
columns:
  history_id: Jira changelog history id.
  issue_id: Jira's numeric issue id.
  issue_key: The issue's key (its current key when the issue is loaded).
  transitioned_at: When the status changed (UTC).
  author_id: Pseudonymous person id of who changed it (person_id of the Jira display name); null for automations.
  from_status: Status name left.
  to_status: Status name entered.
  from_status_category: "Normalised category of the status left: `todo`, `in_progress` or `done`."
  to_status_category: "Normalised category of the status entered: `todo`, `in_progress` or `done`."
*/
with changelogs as (
    select
        c.*,
        row_number() over (partition by c.id order by c._dlt_load_id desc) as load_rank
    from raw_jira.issue_changelogs as c
),
issues as (
    select
        i.id,
        i.key,
        i.fields__status__id,
        i.fields__status__name,
        i.fields__status__status_category__key,
        i.fields__updated,
        row_number() over (partition by i.id order by i._dlt_load_id desc, i.fields__updated desc) as load_rank
    from raw_jira.issues as i
),
status_changes as (
    select
        c.id as history_id,
        c.issue_id,
        c.issue_key,
        c.created,
        c.author__display_name,
        it."from" as from_status_id,
        it.from_string as from_status,
        it."to" as to_status_id,
        it.to_string as to_status,
        row_number() over (partition by c.id order by it._dlt_list_idx desc) as item_rank
    from changelogs as c
    inner join raw_jira.issue_changelogs__items as it on it._dlt_parent_id = c._dlt_id
    where c.load_rank = 1 and coalesce(it.field_id, it.field) = 'status'
),
seen_statuses as (
    select
        fields__status__id as status_id,
        fields__status__name as status_name,
        fields__status__status_category__key as category_key,
        fields__updated as seen_at
    from issues
    where load_rank = 1 and fields__status__status_category__key is not null
),
category_by_id as (
    select status_id, category_key
    from (
        select status_id, category_key, row_number() over (partition by status_id order by seen_at desc) as seen_rank
        from seen_statuses
    ) as s
    where seen_rank = 1
),
category_by_name as (
    select status_name, category_key
    from (
        select status_name, category_key, row_number() over (partition by status_name order by seen_at desc) as seen_rank
        from seen_statuses
    ) as s
    where seen_rank = 1
),
common_workflow (status_name, category_key) as (
    values
        ('to do', 'new'), ('open', 'new'), ('backlog', 'new'), ('reopened', 'new'), ('selected for development', 'new'),
        ('in progress', 'indeterminate'), ('in review', 'indeterminate'),
        ('done', 'done'), ('resolved', 'done'), ('closed', 'done')
),
categorised as (
    select
        s.*,
        coalesce(fi.category_key, fn.category_key, fw.category_key) as from_category_key,
        coalesce(ti.category_key, tn.category_key, tw.category_key) as to_category_key
    from status_changes as s
    left join category_by_id as fi on fi.status_id = s.from_status_id
    left join category_by_name as fn on fn.status_name = s.from_status
    left join common_workflow as fw on fw.status_name = lower(s.from_status)
    left join category_by_id as ti on ti.status_id = s.to_status_id
    left join category_by_name as tn on tn.status_name = s.to_status
    left join common_workflow as tw on tw.status_name = lower(s.to_status)
    where s.item_rank = 1
)
select
    cast(c.history_id as bigint) as history_id,
    cast(c.issue_id as bigint) as issue_id,
    coalesce(i.key, c.issue_key) as issue_key,
    cast(c.created as timestamp with time zone) as transitioned_at,
    person_id(c.author__display_name) as author_id,
    c.from_status,
    c.to_status,
    case c.from_category_key
        when 'new' then 'todo'
        when 'indeterminate' then 'in_progress'
        when 'done' then 'done'
    end as from_status_category,
    case c.to_category_key
        when 'new' then 'todo'
        when 'indeterminate' then 'in_progress'
        when 'done' then 'done'
    end as to_status_category
from categorised as c
left join issues as i on i.id = c.issue_id and i.load_rank = 1
