/*
description: Active users and events per UTC day, over all Mixpanel events.
grain: one row per day with events
primary_key: [day]
partitioned_by: day
columns:
  day: UTC day.
  active_users: Distinct users with at least one event.
  events: Number of events.
  tracked_events: Events that map to a feature.
checks:
  active_users: {ge: 1}
*/
select
    day,
    count(distinct user_id) as active_users,
    count(*) as events,
    count(feature_key) as tracked_events
from intermediate.int_events_linked_to_features
group by day
