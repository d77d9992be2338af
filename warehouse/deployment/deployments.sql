/*
description: >-
  Deployments: successful production deployment attempts. A deployment is a rollback when it
  redeploys a commit an earlier deployment of the service ran (other than the one it replaces) or
  the tool flags it so. It is a change failure when the next deployment rolls it back, or an
  incident is attributed to it. Recovery is the earlier of the next deployment (rollback or fix)
  finishing and its attributed incidents being resolved. Unplanned (rework) deployments are
  rollbacks and deployments that ship a fix for an escaped bug.
grain: one row per successful production deployment
primary_key: [deployment_id]
columns:
  deployment_id: github:deployment:<id> or jenkins:deployment:<job>#<n>.
  system: "`github` or `jenkins`."
  service: Deployed service.
  repo: Repository (owner/name).
  sha: Deployed commit.
  started_at: Start of the deployment.
  finished_at: When it finished (the deployment time used by DORA).
  triggered_by: "`person` or `automation`."
  is_rollback: Redeploys an earlier commit to undo a change.
  is_change_failure: Rolled back, or an incident is attributed to it.
  change_failure_reason: "`rollback`, `incident`, `incident+rollback`; null otherwise."
  recovered_at: When the failure was recovered (rollback/fix deployed or incident resolved, whichever first).
  recovery_hours: Hours from finished_at to recovered_at.
  change_count: Pull requests this deployment shipped first.
  is_unplanned: A rollback, or ships a fix for an escaped bug (DORA 2024 rework).
checks:
  triggered_by:
    isin: [person, automation]
  change_failure_reason:
    isin: [rollback, incident, incident+rollback]
  change_count: {ge: 0}
*/
with prod as (
    select *
    from deployment.deployment_attempts
    where environment = 'production' and outcome = 'success'
),
seq as (
    select
        *,
        row_number() over w as position,
        lag(sha) over w as previous_sha,
        lead(sha) over w as next_sha,
        lead(finished_at) over w as next_finished_at
    from prod
    window w as (partition by service order by finished_at, deployment_id)
),
flags as (
    select
        s.*,
        s.is_rollback_flagged or (
            s.sha <> coalesce(s.previous_sha, '')
            and exists (select 1 from seq as e where e.service = s.service and e.sha = s.sha and e.position < s.position)
        ) as is_rollback,
        s.next_sha is not null and s.next_sha <> s.sha and exists (
            select 1 from seq as e where e.service = s.service and e.sha = s.next_sha and e.position < s.position
        ) as rolled_back
    from seq as s
),
incidents as (
    select l.deployment_id, min(i.resolved_at) as first_resolved_at, count(*) as incident_count
    from intermediate.int_incidents_linked_to_deployments as l
    inner join staging.stg_datadog__incidents as i on i.incident_id = l.incident_id
    where l.deployment_id is not null
    group by l.deployment_id
),
changes as (
    select deployment_id, count(*) as change_count
    from intermediate.int_pull_requests_linked_to_deployments
    group by deployment_id
),
fixes as (
    select distinct d.deployment_id
    from intermediate.int_pull_requests_linked_to_deployments as d
    inner join intermediate.int_pull_requests_linked_to_issues as l on l.repo = d.repo and l.pr_number = d.pr_number
    inner join intermediate.int_bugs_classified as b on b.issue_key = l.issue_key
    where b.escaped
),
classified as (
    select
        f.*,
        f.rolled_back or i.deployment_id is not null as is_change_failure,
        case
            when f.rolled_back and i.deployment_id is not null then 'incident+rollback'
            when f.rolled_back then 'rollback'
            when i.deployment_id is not null then 'incident'
        end as change_failure_reason,
        i.first_resolved_at
    from flags as f
    left join incidents as i on i.deployment_id = f.deployment_id
)
select
    c.deployment_id,
    c.system,
    c.service,
    c.repo,
    c.sha,
    c.started_at,
    c.finished_at,
    c.triggered_by,
    c.is_rollback,
    c.is_change_failure,
    c.change_failure_reason,
    case when c.is_change_failure then least(
        coalesce(c.next_finished_at, c.first_resolved_at), coalesce(c.first_resolved_at, c.next_finished_at)
    ) end as recovered_at,
    case when c.is_change_failure then date_diff('second', c.finished_at, least(
        coalesce(c.next_finished_at, c.first_resolved_at), coalesce(c.first_resolved_at, c.next_finished_at)
    )) / 3600.0 end as recovery_hours,
    coalesce(ch.change_count, 0) as change_count,
    c.is_rollback or fx.deployment_id is not null as is_unplanned
from classified as c
left join changes as ch on ch.deployment_id = c.deployment_id
left join fixes as fx on fx.deployment_id = c.deployment_id
