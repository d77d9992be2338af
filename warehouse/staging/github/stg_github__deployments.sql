/*
description: >-
  GitHub Deployments (the deployments API), one row per deployment as last loaded. The environment
  is normalised through `config.settings` (`production_environment`, `staging_environment`,
  case-insensitive) with GitHub's word kept in `original_environment`; a deployment created by a
  bot account (a GitHub App, an automation token) is triggered by automation, any other by a person.
  The outcome lives in `stg_github__deployment_statuses`.
grain: one row per GitHub deployment
primary_key: [deployment_id]
columns:
  deployment_id: "Cross-tool deployment id: `github:deployment:<GitHub deployment id>`."
  github_id: GitHub's numeric deployment id.
  repo: Repository deployed (owner/name).
  service: The repository's name, which is the deployed service's name.
  environment: "`production` or `staging` when the environment is one of the configured names, else GitHub's environment in lower case."
  original_environment: The environment as GitHub names it.
  sha: The deployed commit.
  ref: The ref the deployment was requested for (branch, tag or SHA).
  task: The deployment task (`deploy`, or e.g. `deploy:migrations`).
  description: Free-text description given when the deployment was created; null when none.
  is_production_environment: GitHub's own flag that the environment is a production one.
  is_transient_environment: GitHub's flag that the environment goes away (e.g. a review app).
  creator_id: person_id of the account that created the deployment (a bot account gets its own pseudonym).
  creator_type: "GitHub account type of the creator: `User` or `Bot`."
  triggered_by: "`automation` when the creator is a bot account, else `person`."
  created_at: When the deployment was created, i.e. when it started (UTC).
  updated_at: Last change to the deployment, normally its latest status (UTC).
checks:
  triggered_by:
    isin: [person, automation]
*/
with ranked as (
    select
        id,
        repo_full_name,
        sha,
        ref,
        task,
        environment,
        description,
        production_environment,
        transient_environment,
        creator__login,
        creator__type,
        created_at,
        updated_at,
        row_number() over (partition by id order by _dlt_load_id desc, updated_at desc) as recency
    from raw_github.deployments
),
production_names as (
    select lower(trim(value)) as name from config.settings where key = 'production_environment'
),
staging_names as (
    select lower(trim(value)) as name from config.settings where key = 'staging_environment'
)
select
    'github:deployment:' || cast(d.id as varchar) as deployment_id,
    d.id as github_id,
    d.repo_full_name as repo,
    split_part(d.repo_full_name, '/', 2) as service,
    case
        when lower(trim(d.environment)) in (select name from production_names) then 'production'
        when lower(trim(d.environment)) in (select name from staging_names) then 'staging'
        else lower(trim(d.environment))
    end as environment,
    d.environment as original_environment,
    d.sha,
    d.ref,
    d.task,
    nullif(d.description, '') as description,
    d.production_environment as is_production_environment,
    d.transient_environment as is_transient_environment,
    person_id(d.creator__login) as creator_id,
    case when d.creator__login like '%[bot]' then 'Bot' else d.creator__type end as creator_type,
    case
        when d.creator__type = 'Bot' or d.creator__login like '%[bot]' then 'automation'
        else 'person'
    end as triggered_by,
    cast(d.created_at as timestamp with time zone) as created_at,
    cast(d.updated_at as timestamp with time zone) as updated_at
from ranked as d
where d.recency = 1
