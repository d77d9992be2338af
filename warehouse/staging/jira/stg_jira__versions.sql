/*
description: >-
  Jira versions (releases) of each project, one row per version as last loaded; the project key is
  looked up from the project id in the loaded projects. `is_released` is the version's own flag.
grain: one row per Jira version
primary_key: [version_id]
columns:
  version_id: Jira version id.
  project_id: Jira's numeric id of the version's project.
  project_key: Key of the version's project.
  name: Version name.
  description: Version description.
  release_date: Planned or actual release day (a date, no time); null when unscheduled.
  is_released: Jira marks the version released.
  is_archived: Jira marks the version archived.
*/
with ranked as (
    select
        v.*,
        row_number() over (partition by v.id order by v._dlt_load_id desc) as load_rank
    from raw_jira.versions as v
),
projects as (
    select
        p.id,
        p.key,
        row_number() over (partition by p.id order by p._dlt_load_id desc) as load_rank
    from raw_jira.projects as p
)
select
    cast(v.id as bigint) as version_id,
    cast(v.project_id as bigint) as project_id,
    p.key as project_key,
    v.name,
    v.description,
    cast(v.release_date as date) as release_date,
    coalesce(cast(v.released as boolean), false) as is_released,
    coalesce(cast(v.archived as boolean), false) as is_archived
from ranked as v
left join projects as p on cast(p.id as bigint) = cast(v.project_id as bigint) and p.load_rank = 1
where v.load_rank = 1
