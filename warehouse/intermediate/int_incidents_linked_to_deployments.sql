/*
description: >-
  The deployment each Datadog incident is attributed to: the last successful production
  deployment of the same service that finished before the incident was created, if it finished
  less than `incident_attribution_window_hours` before. Otherwise the incident is unattributed
  and the reason says why.
grain: one row per incident
primary_key: [incident_id]
columns:
  incident_id: Datadog incident id.
  service: Service the incident is on.
  deployment_id: The attributed deployment; null when unattributed.
  link_rule: "`same_service_last_deployment` when attributed; null otherwise."
  unattributed_reason: Why no deployment was attributed; null when attributed.
*/
with window_hours as (
    select max(cast(value as double)) as hours from config.settings where key = 'incident_attribution_window_hours'
),
prod as (
    select deployment_id, service, finished_at
    from intermediate.int_deployment_attempts_unified
    where environment = 'production' and outcome = 'success'
),
last_before as (
    select
        i.incident_id,
        d.deployment_id,
        d.finished_at,
        row_number() over (partition by i.incident_id order by d.finished_at desc, d.deployment_id desc) as recency
    from staging.stg_datadog__incidents as i
    inner join prod as d on d.service = i.service and d.finished_at <= i.created_at
)
select
    i.incident_id,
    i.service,
    case when date_diff('second', l.finished_at, i.created_at) < w.hours * 3600 then l.deployment_id end
        as deployment_id,
    case when date_diff('second', l.finished_at, i.created_at) < w.hours * 3600
        then 'same_service_last_deployment' end as link_rule,
    case
        when l.deployment_id is null then 'no production deployment of the service before the incident'
        when date_diff('second', l.finished_at, i.created_at) >= w.hours * 3600
            then 'the last deployment of the service finished more than '
                || cast(cast(w.hours as integer) as varchar) || ' hours before the incident'
    end as unattributed_reason
from staging.stg_datadog__incidents as i
cross join window_hours as w
left join last_before as l on l.incident_id = i.incident_id and l.recency = 1
