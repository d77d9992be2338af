/*
description: >-
  Every deployment attempt from both tools in one shape: GitHub Deployments (the latest status
  that is not `inactive` decides the outcome) and builds of Jenkins jobs matching
  `deploy_job_pattern` (environment from the `deploy_environment_parameter` build parameter).
grain: one row per deployment attempt
primary_key: [deployment_id]
columns:
  deployment_id: github:deployment:<id> or jenkins:deployment:<job full name>#<build number>.
  system: "`github` or `jenkins`."
  service: Deployed service (the repository's name).
  repo: Repository (owner/name).
  environment: "Normalised environment: `production`, `staging`, or the tool's word in lower case."
  original_environment: The environment as the tool named it.
  outcome: "`success`, `failure` (GitHub failure/error, Jenkins FAILURE/ABORTED/UNSTABLE) or `in_progress`."
  original_outcome: The tool's own word for the outcome (GitHub status state, Jenkins result).
  started_at: When the attempt started.
  finished_at: When it reached a final state; null while in progress.
  sha: The deployed commit.
  triggered_by: "`person` (a human started it) or `automation`."
  is_rollback_flagged: The tool marks it as a rollback (Jenkins rollback parameter, GitHub description "Rollback…").
  link_rule: "How the attempt was recognised: `github_deployment` or `jenkins_deploy_job`."
*/
with settings as (
    select
        max(case when key = 'deploy_job_pattern' then value end) as job_pattern,
        max(case when key = 'deploy_environment_parameter' then value end) as env_parameter,
        max(case when key = 'deploy_rollback_parameter' then value end) as rollback_parameter
    from config.settings
),
statuses as (
    select
        deployment_id,
        state,
        created_at,
        row_number() over (partition by deployment_id order by created_at desc, status_id desc) as recency
    from staging.stg_github__deployment_statuses
    where state <> 'inactive'
),
github as (
    select
        d.deployment_id,
        'github' as system,
        d.service,
        d.repo,
        d.environment,
        d.original_environment,
        case
            when s.state = 'success' then 'success'
            when s.state in ('failure', 'error') then 'failure'
            else 'in_progress'
        end as outcome,
        coalesce(s.state, 'pending') as original_outcome,
        d.created_at as started_at,
        case when s.state in ('success', 'failure', 'error') then s.created_at end as finished_at,
        d.sha,
        d.triggered_by,
        coalesce(lower(d.description) like 'rollback%', false) as is_rollback_flagged,
        'github_deployment' as link_rule
    from staging.stg_github__deployments as d
    left join statuses as s on s.deployment_id = d.deployment_id and s.recency = 1
),
-- The pattern is a column, not a constant, so it is compiled for every row it meets: match the few
-- job names once rather than every build (10 M builds, 200 jobs: 71 s against 0.2 s).
deploy_jobs as (
    select j.job_full_name
    from (select distinct job_full_name from staging.stg_jenkins__builds) as j
    cross join settings as st
    where regexp_matches(j.job_full_name, st.job_pattern)
),
jenkins_deploys as (
    select b.*
    from staging.stg_jenkins__builds as b
    inner join deploy_jobs as j on j.job_full_name = b.job_full_name
    where b.result <> 'not_built'
),
jenkins as (
    select
        'jenkins:deployment:' || b.job_full_name || '#' || cast(b.build_number as varchar) as deployment_id,
        'jenkins' as system,
        coalesce(b.service, regexp_replace(regexp_replace(b.job_full_name, '^.*/', ''), '-deploy$', '')) as service,
        b.repo,
        case
            when lower(env.value) in (select value from config.settings where key = 'production_environment')
                then 'production'
            when lower(env.value) in (select value from config.settings where key = 'staging_environment')
                then 'staging'
            else lower(env.value)
        end as environment,
        env.value as original_environment,
        case
            when b.result = 'success' then 'success'
            when b.result in ('failure', 'aborted', 'unstable') then 'failure'
            else 'in_progress'
        end as outcome,
        b.original_result as original_outcome,
        b.started_at,
        b.finished_at,
        coalesce(sha.value, b.sha) as sha,
        b.trigger as triggered_by,
        coalesce(lower(rb.value) = 'true', false) as is_rollback_flagged,
        'jenkins_deploy_job' as link_rule
    from jenkins_deploys as b
    cross join settings as st
    left join staging.stg_jenkins__build_parameters as env
        on env.build_id = b.build_id and env.name = st.env_parameter
    left join staging.stg_jenkins__build_parameters as rb
        on rb.build_id = b.build_id and rb.name = st.rollback_parameter
    left join staging.stg_jenkins__build_parameters as sha
        on sha.build_id = b.build_id and sha.name = 'GIT_SHA'
)
select * from github
union all
select * from jenkins
