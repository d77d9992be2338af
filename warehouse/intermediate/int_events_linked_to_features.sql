/*
description: >-
  The feature (Jira epic) each Mixpanel event belongs to, by the feature map in
  warehouse/feature_map.yaml: the event's feature property when it names an existing epic, else
  the event-name map. Events matching neither are untracked (feature_key null).
grain: one row per Mixpanel event
primary_key: [event_id]
columns:
  event_id: The event's insert id.
  day: UTC day of the event.
  event_name: Event name.
  user_id: Pseudonymous user id.
  feature_key: The feature the event maps to; null when untracked.
  link_rule: "`property` (feature property), `event_name` (the name map), or null when untracked."
*/
with epics as (
    select issue_key from staging.stg_jira__issues where issue_type = 'Epic'
),
by_name as (
    select m.event_name, m.feature_key
    from config.feature_map as m
    inner join epics as e on e.issue_key = m.feature_key
)
select
    ev.event_id,
    ev.day,
    ev.event_name,
    ev.user_id,
    coalesce(ep.issue_key, n.feature_key) as feature_key,
    case when ep.issue_key is not null then 'property' when n.feature_key is not null then 'event_name' end
        as link_rule
from staging.stg_mixpanel__events as ev
left join epics as ep on ep.issue_key = ev.feature_property
left join by_name as n on n.event_name = ev.event_name
