/*
description: >-
  GitHub Actions workflow runs (CI builds), one row per run (its latest attempt) as last loaded.
  `result` comes from GitHub's status and conclusion: `in_progress` until the run is completed, then
  `success` (success, neutral), `failure` (failure, timed_out, startup_failure) or `cancelled`
  (cancelled, skipped, stale, action_required). A completed run's finish time is when its
  last job completed (else its last update): a run touched after it finished must not stretch.
grain: one row per workflow run
primary_key: [build_id]
columns:
  build_id: "Cross-tool build id: `github:build:<run id>`."
  run_id: GitHub's numeric workflow run id.
  repo: Repository (owner/name).
  service: The repository's name, which is the service's name.
  workflow_id: GitHub's numeric id of the workflow.
  workflow_name: Name of the workflow (e.g. `CI`).
  workflow_path: Path of the workflow file (e.g. `.github/workflows/ci.yml`).
  display_title: Title GitHub shows for the run (the pull request title or the head commit's first line).
  event: What triggered the run (`push`, `pull_request`, `schedule`, `workflow_dispatch`, …).
  head_sha: The commit the run built.
  head_branch: The branch the run built; null for some events (e.g. a tag push).
  result: "`success`, `failure`, `cancelled`, or `in_progress` while not completed."
  original_status: GitHub's status as sent (`queued`, `in_progress`, `completed`, …).
  original_conclusion: GitHub's conclusion as sent; null until completed.
  run_number: The run's number within its workflow.
  run_attempt: Attempt of the run (1, or more after re-runs); the row describes the latest attempt.
  created_at: When the run was created (UTC).
  started_at: When the latest attempt started (GitHub's `run_started_at`, UTC).
  updated_at: Last change to the run (UTC).
  finished_at: When the run completed (its last job's completion, else its last update; UTC); null while not completed.
  actor_id: person_id of the account whose action started the run.
  triggering_actor_id: person_id of the account that started the latest attempt (differs from actor_id after a re-run by someone else).
checks:
  result:
    isin: [success, failure, cancelled, in_progress]
*/
with ranked as (
    select
        id,
        repo_full_name,
        workflow_id,
        name,
        path,
        display_title,
        event,
        head_sha,
        head_branch,
        status,
        conclusion,
        run_number,
        run_attempt,
        created_at,
        run_started_at,
        updated_at,
        actor__login,
        triggering_actor__login,
        row_number() over (partition by id order by _dlt_load_id desc, updated_at desc) as recency
    from raw_github.workflow_runs
),

jobs as (
    select run_id, max(finished_at) as last_job_finished_at
    from staging.stg_github__workflow_jobs
    group by run_id
)

select
    'github:build:' || cast(id as varchar) as build_id,
    id as run_id,
    repo_full_name as repo,
    split_part(repo_full_name, '/', 2) as service,
    workflow_id,
    name as workflow_name,
    path as workflow_path,
    display_title,
    event,
    head_sha,
    head_branch,
    case
        when lower(status) is distinct from 'completed' then 'in_progress'
        when lower(conclusion) in ('success', 'neutral') then 'success'
        when lower(conclusion) in ('cancelled', 'skipped', 'stale', 'action_required') then 'cancelled'
        else 'failure'
    end as result,
    status as original_status,
    conclusion as original_conclusion,
    run_number,
    run_attempt,
    cast(created_at as timestamp with time zone) as created_at,
    cast(coalesce(run_started_at, created_at) as timestamp with time zone) as started_at,
    cast(updated_at as timestamp with time zone) as updated_at,
    case
        when lower(status) = 'completed'
            then coalesce(jobs.last_job_finished_at, cast(updated_at as timestamp with time zone))
    end as finished_at,
    person_id(actor__login) as actor_id,
    person_id(triggering_actor__login) as triggering_actor_id
from ranked
left join jobs on ranked.id = jobs.run_id
where ranked.recency = 1
