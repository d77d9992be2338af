/*
description: >-
  Mixpanel events, typed and pseudonymised: the distinct id becomes a salted user id and never
  leaves raw_mixpanel. One row per event (Mixpanel's export repeats events; the insert id keeps
  the one most recently processed).
grain: one Mixpanel event
primary_key: [event_id]
columns:
  event_id: The event's insert id (the source derives a stable one for events recorded without it).
  event_name: Event name.
  occurred_at: When the event happened (UTC).
  day: UTC day of the event.
  user_id: Pseudonymous user id (salted hash of Mixpanel's distinct id).
  feature_property: The event's `feature` property (a Jira epic key when instrumented), as sent.
  browser: Browser ($browser).
  os: Operating system ($os).
  city: City ($city).
  processed_at: When Mixpanel processed (ingested) the event; late events are processed well after they happen.
*/
with ranked as (
    select
        *,
        row_number() over (partition by insert_id order by mp_processing_time_ms desc nulls last) as recency
    from raw_mixpanel.events
)
select
    insert_id as event_id,
    event as event_name,
    time as occurred_at,
    cast(time as date) as day,
    user_id(distinct_id) as user_id,
    feature as feature_property,
    browser,
    os,
    city,
    to_timestamp(mp_processing_time_ms / 1000.0) as processed_at
from ranked
where recency = 1
