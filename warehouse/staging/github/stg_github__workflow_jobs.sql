/*
description: >-
  Jobs of GitHub Actions workflow runs, one row per job (the jobs of a run's latest attempt when it
  was loaded; a re-run's new jobs arrive beside those of the earlier attempt). `result`
  uses the runs' vocabulary plus `skipped` (a job that did not run, e.g. after an earlier job
  failed): `in_progress` until the job is completed, then `success` (success, neutral), `failure`
  (failure, timed_out, startup_failure), `cancelled` (cancelled, stale, action_required) or `skipped`.
grain: one row per workflow job
primary_key: [job_id]
columns:
  job_id: GitHub's numeric job id.
  build_id: "The run the job belongs to: `github:build:<run id>`."
  run_id: GitHub's numeric workflow run id.
  run_attempt: The run attempt the job belongs to.
  repo: Repository (owner/name).
  name: Job name as the workflow defines it (e.g. `build`, `test`).
  result: "`success`, `failure`, `cancelled`, `skipped`, or `in_progress` while not completed."
  original_status: GitHub's status as sent (`queued`, `in_progress`, `completed`, …).
  original_conclusion: GitHub's conclusion as sent; null until completed.
  created_at: When the job was queued (UTC).
  started_at: When the job started (UTC); GitHub reports the queueing time for a job still queued.
  finished_at: When the job completed (UTC); null while not completed.
  runner_name: Name of the runner that ran the job; null when none was assigned.
checks:
  result:
    isin: [success, failure, cancelled, skipped, in_progress]
*/
with ranked as (
    select
        id,
        run_id,
        run_attempt,
        repo_full_name,
        name,
        status,
        conclusion,
        created_at,
        started_at,
        completed_at,
        runner_name,
        row_number() over (partition by id order by _dlt_load_id desc) as recency
    from raw_github.workflow_jobs
)
select
    id as job_id,
    'github:build:' || cast(run_id as varchar) as build_id,
    run_id,
    run_attempt,
    repo_full_name as repo,
    name,
    case
        when lower(status) is distinct from 'completed' then 'in_progress'
        when lower(conclusion) in ('success', 'neutral') then 'success'
        when lower(conclusion) = 'skipped' then 'skipped'
        when lower(conclusion) in ('cancelled', 'stale', 'action_required') then 'cancelled'
        else 'failure'
    end as result,
    status as original_status,
    conclusion as original_conclusion,
    cast(created_at as timestamp with time zone) as created_at,
    cast(started_at as timestamp with time zone) as started_at,
    case when lower(status) = 'completed' then cast(completed_at as timestamp with time zone) end as finished_at,
    nullif(runner_name, '') as runner_name
from ranked
where recency = 1
