/*
description: Jira projects (REST v3 project search), one row per project as last loaded.
grain: one row per Jira project
primary_key: [project_key]
columns:
  project_id: Jira's numeric project id.
  project_key: Project key, e.g. PAY (the prefix of its issue keys).
  name: Project name.
  project_type_key: "Jira's project type: `software`, `business` or `service_desk`."
*/
with ranked as (
    select
        p.*,
        row_number() over (partition by p.id order by p._dlt_load_id desc) as load_rank
    from raw_jira.projects as p
)
select
    cast(id as bigint) as project_id,
    key as project_key,
    name,
    project_type_key
from ranked
where load_rank = 1
