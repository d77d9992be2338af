/*
description: Daily SLI of each Datadog SLO against its target.
grain: one row per SLO per day
primary_key: [slo_id, day]
columns:
  slo_id: Datadog SLO id.
  name: SLO name.
  service: Service the SLO covers.
  day: UTC day.
  sli_value: Measured SLI that day, percent.
  target: Target, percent.
  met: The SLI met the target that day.
checks:
  sli_value: {ge: 0, le: 100}
*/
select
    h.slo_id,
    s.name,
    s.service,
    h.day,
    h.sli_value,
    s.target,
    h.sli_value >= s.target as met
from staging.stg_datadog__slo_history as h
inner join staging.stg_datadog__slos as s on s.slo_id = h.slo_id
