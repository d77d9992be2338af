/*
description: >-
  Stages of finished Jenkins Pipeline builds as Pipeline Stage View (wfapi) describes them, with
  the wfapi status vocabulary normalised (wfapi says FAILED where a build result says FAILURE).
grain: one row per stage of a pipeline build
primary_key: [build_id, stage_id]
columns:
  build_id: "The build: `jenkins:build:<job full name>#<build number>`."
  job_full_name: Full name of the build's job.
  build_number: The build's number within its job.
  stage_id: The stage's flow-node id within the build (wfapi `id`, text).
  stage_name: The stage's name as written in the Jenkinsfile (e.g. `Build`, `Test`, `Deploy`).
  status: "Normalised status: `success`, `failed`, `unstable`, `aborted`, `not_executed`, `in_progress` or `paused` (waiting for input)."
  original_status: The wfapi status as sent (`SUCCESS`, `FAILED`, `UNSTABLE`, `ABORTED`, `NOT_EXECUTED`, `IN_PROGRESS`, `PAUSED_PENDING_INPUT`).
  started_at: When the stage started (UTC); null for a stage that never ran (wfapi reports time 0).
  duration_ms: How long the stage ran, in milliseconds (0 for a stage that never ran).
  pause_duration_ms: Time the stage spent paused (e.g. waiting for input), in milliseconds.
  error_type: Class of the error that ended the stage (e.g. `hudson.AbortException`); null when none.
  error_message: Message of the error that ended the stage; null when none.
*/
with ranked as (
    select
        job_full_name,
        build_number,
        id,
        name,
        status,
        start_time_millis,
        duration_millis,
        pause_duration_millis,
        error__type,
        error__message,
        row_number() over (partition by job_full_name, build_number, id order by _dlt_load_id desc) as recency
    from raw_jenkins.build_stages
)
select
    'jenkins:build:' || job_full_name || '#' || cast(build_number as varchar) as build_id,
    job_full_name,
    build_number,
    id as stage_id,
    name as stage_name,
    case status
        when 'SUCCESS' then 'success'
        when 'FAILED' then 'failed'
        when 'UNSTABLE' then 'unstable'
        when 'ABORTED' then 'aborted'
        when 'NOT_EXECUTED' then 'not_executed'
        when 'IN_PROGRESS' then 'in_progress'
        when 'PAUSED_PENDING_INPUT' then 'paused'
        else lower(status)
    end as status,
    status as original_status,
    case when start_time_millis > 0 then to_timestamp(start_time_millis / 1000.0) end as started_at,
    duration_millis as duration_ms,
    pause_duration_millis as pause_duration_ms,
    error__type as error_type,
    error__message as error_message
from ranked
where recency = 1
