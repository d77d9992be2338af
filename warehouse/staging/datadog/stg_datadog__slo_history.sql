/*
description: >-
  Daily SLI of each Datadog SLO (v1 SLO history, summed per UTC day by the source): one row per SLO
  and complete UTC day since the SLO existed. The SLI is the share of good events, in percent; it is
  null on a day without any events (Datadog's zero-valued denominator), not 0.
grain: one row per SLO per UTC day
primary_key: [slo_id, day]
columns:
  slo_id: Datadog SLO id.
  day: UTC day.
  sli_value: Measured SLI that day, percent (100 × good / total events); null when there were no events.
  good_events: Good events that day (the SLO's numerator).
  total_events: All events that day (the SLO's denominator).
*/
with ranked as (
    select
        h.*,
        row_number() over (partition by h.slo_id, h.day order by h._dlt_load_id desc) as load_rank
    from raw_datadog.slo_history as h
)
select
    cast(slo_id as varchar) as slo_id,
    cast(day as date) as day,
    cast(sli_value as double) as sli_value,
    cast(good_events as double) as good_events,
    cast(total_events as double) as total_events
from ranked
where load_rank = 1
