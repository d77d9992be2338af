/*
description: >-
  Every deployment attempt to any environment from GitHub Deployments and Jenkins deploy jobs, with
  its outcome. The basis of deployment success rate and automation rate.
grain: one row per deployment attempt
primary_key: [deployment_id]
columns:
  deployment_id: github:deployment:<id> or jenkins:deployment:<job>#<n>.
  system: "`github` or `jenkins`."
  service: Deployed service.
  repo: Repository (owner/name).
  environment: "`production`, `staging`, or the tool's word."
  original_environment: The environment as the tool named it.
  outcome: "`success`, `failure` or `in_progress`."
  original_outcome: The tool's own word for the outcome.
  started_at: Start of the attempt.
  finished_at: End of the attempt; null while in progress.
  duration_minutes: Minutes from start to end.
  sha: Deployed commit.
  triggered_by: "`person` or `automation`."
  is_rollback_flagged: The tool marks it as a rollback.
checks:
  outcome:
    isin: [success, failure, in_progress]
  triggered_by:
    isin: [person, automation]
  system:
    isin: [github, jenkins]
*/
select
    deployment_id,
    system,
    service,
    repo,
    environment,
    original_environment,
    outcome,
    original_outcome,
    started_at,
    finished_at,
    date_diff('second', started_at, finished_at) / 60.0 as duration_minutes,
    sha,
    triggered_by,
    is_rollback_flagged
from intermediate.int_deployment_attempts_unified
