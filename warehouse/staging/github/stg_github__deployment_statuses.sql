/*
description: >-
  Statuses of GitHub deployments, one row per status: the states a deployment went through
  (`queued`, `pending`, `in_progress`, then `success`, `failure` or `error`; GitHub later marks a
  superseded deployment `inactive`, which says nothing about its outcome).
grain: one row per deployment status
primary_key: [status_id]
columns:
  status_id: GitHub's numeric deployment status id.
  deployment_id: "The deployment: `github:deployment:<GitHub deployment id>`."
  deployment_github_id: GitHub's numeric deployment id.
  repo: Repository (owner/name).
  state: "`queued`, `pending`, `in_progress`, `success`, `failure`, `error` or `inactive` (lower case)."
  original_state: GitHub's state as sent.
  description: Free-text description of the status; null when none.
  creator_id: person_id of the account that reported the status (a bot account gets its own pseudonym).
  created_at: When the deployment reached this state (UTC).
checks:
  state:
    isin: [queued, pending, in_progress, success, failure, error, inactive]
*/
with ranked as (
    select
        id,
        deployment_id,
        repo_full_name,
        state,
        description,
        creator__login,
        created_at,
        row_number() over (partition by id order by _dlt_load_id desc) as recency
    from raw_github.deployment_statuses
)
select
    id as status_id,
    'github:deployment:' || cast(deployment_id as varchar) as deployment_id,
    deployment_id as deployment_github_id,
    repo_full_name as repo,
    lower(state) as state,
    state as original_state,
    nullif(description, '') as description,
    person_id(creator__login) as creator_id,
    cast(created_at as timestamp with time zone) as created_at
from ranked
where recency = 1
