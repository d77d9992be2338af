/*
description: >-
  Parameters of Jenkins builds (ParametersAction), one row per build and parameter name; the value
  is text whatever the parameter type (`true`/`false` for booleans). Deployment jobs name their
  target environment, commit and rollback flag here.
grain: one row per build parameter
primary_key: [build_id, name]
columns:
  build_id: "The build: `jenkins:build:<job full name>#<build number>`."
  job_full_name: Full name of the build's job.
  build_number: The build's number within its job.
  name: Parameter name as defined on the job (e.g. `ENVIRONMENT`, `GIT_SHA`, `ROLLBACK`).
  value: The value as text (strings unchanged, booleans and numbers in JSON spelling); null for password parameters, whose values are never kept.
  parameter_class: Jenkins' Java class of the value, e.g. `hudson.model.StringParameterValue`, `hudson.model.BooleanParameterValue`.
*/
with builds as (
    select
        _dlt_id,
        job_full_name,
        number,
        row_number() over (partition by job_full_name, number order by _dlt_load_id desc) as recency
    from raw_jenkins.builds
),
parameters as (
    select
        b.job_full_name,
        b.number,
        p.name,
        p.value,
        p._class,
        -- a name given twice (several parameter actions): the last one is the value the build saw
        row_number() over (partition by b.job_full_name, b.number, p.name order by p._dlt_list_idx desc) as recency
    from raw_jenkins.builds__parameters as p
    inner join builds as b on b._dlt_id = p._dlt_parent_id and b.recency = 1
    where p.name is not null
)
select
    'jenkins:build:' || job_full_name || '#' || cast(number as varchar) as build_id,
    job_full_name,
    number as build_number,
    name,
    case when _class = 'hudson.model.PasswordParameterValue' then null else value end as value,
    _class as parameter_class
from parameters
where recency = 1
