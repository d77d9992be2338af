/*
description: Datadog incidents with the deployment they are attributed to (or why none) and the time to restore.
grain: one row per incident
primary_key: [incident_id]
columns:
  incident_id: Datadog incident id.
  public_id: Datadog's short incident number.
  title: Incident title.
  service: Affected service or component.
  severity: SEV-1 … SEV-5 or UNKNOWN.
  state: "`active`, `stable` or `resolved`."
  customer_impacted: Customers were affected.
  created_at: When the incident was declared.
  detected_at: When it was detected.
  resolved_at: When it was resolved (restored).
  restore_hours: Hours from created_at to resolved_at.
  attributed_deployment_id: The deployment it is attributed to; null when unattributed.
  link_rule: "`same_service_last_deployment`, or null."
  unattributed_reason: Why no deployment was attributed.
checks:
  state:
    isin: [active, stable, resolved]
*/
select
    i.incident_id,
    i.public_id,
    i.title,
    i.service,
    i.severity,
    i.state,
    i.customer_impacted,
    i.created_at,
    i.detected_at,
    i.resolved_at,
    date_diff('second', i.created_at, i.resolved_at) / 3600.0 as restore_hours,
    l.deployment_id as attributed_deployment_id,
    l.link_rule,
    l.unattributed_reason
from staging.stg_datadog__incidents as i
left join intermediate.int_incidents_linked_to_deployments as l on l.incident_id = i.incident_id
