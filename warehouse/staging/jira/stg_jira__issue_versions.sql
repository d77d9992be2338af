/*
description: >-
  The versions each Jira issue names: its fix versions (`fix`) and its affected versions
  (`affected`). Only the link and the version's name are kept here; whether a version is released
  and when comes from stg_jira__versions (the copies embedded in issues can be stale).
grain: one row per issue, version and relation
primary_key: [issue_key, version_id, relation]
columns:
  issue_key: The issue.
  issue_id: Jira's numeric issue id.
  version_id: Jira version id.
  relation: "`fix` (fixVersions: the release that ships the issue) or `affected` (versions: releases the bug affects)."
  version_name: Version name as embedded in the issue.
*/
with ranked as (
    select
        i.id,
        i.key,
        i.fields__versions,
        i._dlt_id,
        row_number() over (partition by i.id order by i._dlt_load_id desc, i.fields__updated desc) as load_rank
    from raw_jira.issues as i
),
latest as (
    select * from ranked where load_rank = 1
),
affected as (
    select key, id, unnest(json_extract(fields__versions, '$[*]')) as version
    from latest
),
links as (
    select i.key as issue_key, i.id as issue_id, v.id as version_id, 'fix' as relation, v.name as version_name
    from latest as i
    inner join raw_jira.issues__fields__fix_versions as v on v._dlt_parent_id = i._dlt_id
    union all
    select
        key,
        id,
        json_extract_string(version, '$.id'),
        'affected',
        json_extract_string(version, '$.name')
    from affected
)
select
    issue_key,
    cast(issue_id as bigint) as issue_id,
    cast(version_id as bigint) as version_id,
    relation,
    max(version_name) as version_name
from links
where version_id is not null
group by issue_key, issue_id, version_id, relation
