/*
description: >-
  CI builds from Jenkins (jobs that are not deployment jobs) and GitHub Actions workflow runs, in
  one shape, with the pull request they built when there is one.
grain: one row per CI build or workflow run
primary_key: [build_id]
columns:
  build_id: jenkins:build:<job>#<n> or github:build:<run id>.
  system: "`jenkins` or `github_actions`."
  service: Service built.
  repo: Repository (owner/name).
  job: Jenkins job full name, or the workflow name.
  build_number: Build number (Jenkins) or run number (Actions).
  sha: Commit built.
  branch: Branch built.
  pr_number: Pull request built, when the build was for one.
  result: "`success`, `failure`, `unstable`, `aborted`, `cancelled` or `in_progress`."
  original_result: The tool's own result/conclusion.
  started_at: Start of the build.
  finished_at: End of the build; null while running.
  duration_ms: Duration in milliseconds.
  trigger: "`person` or `automation`."
checks:
  result:
    isin: [success, failure, unstable, aborted, cancelled, in_progress, not_built]
  trigger:
    isin: [person, automation]
*/
with settings as (
    select max(case when key = 'deploy_job_pattern' then value end) as job_pattern from config.settings
),
-- Matched on the few job names, not every build: a pattern read from a table is compiled per row.
build_jobs as (
    select j.job_full_name
    from (select distinct job_full_name from staging.stg_jenkins__builds) as j
    cross join settings as s
    where not regexp_matches(j.job_full_name, s.job_pattern)
),
pr_heads as (
    select repo, sha, min(pr_number) as pr_number
    from intermediate.int_commits_linked_to_pull_requests
    where link_rule = 'pr_commit'
    group by repo, sha
)
select
    b.build_id,
    'jenkins' as system,
    b.service,
    b.repo,
    b.job_full_name as job,
    b.build_number,
    b.sha,
    b.branch,
    cast(nullif(regexp_extract(b.job_full_name, '/PR-([0-9]+)$', 1), '') as integer) as pr_number,
    b.result,
    b.original_result,
    b.started_at,
    b.finished_at,
    b.duration_ms,
    b.trigger
from staging.stg_jenkins__builds as b
inner join build_jobs as j on j.job_full_name = b.job_full_name
union all
select
    r.build_id,
    'github_actions',
    split_part(r.repo, '/', 2),
    r.repo,
    r.workflow_name,
    r.run_number,
    r.head_sha,
    r.head_branch,
    case when r.event = 'pull_request' then h.pr_number end,
    r.result,
    coalesce(r.original_conclusion, r.original_status),
    r.started_at,
    r.finished_at,
    date_diff('millisecond', r.started_at, r.finished_at),
    case when r.event = 'workflow_dispatch' then 'person' else 'automation' end
from staging.stg_github__workflow_runs as r
left join pr_heads as h on h.repo = r.repo and h.sha = r.head_sha
