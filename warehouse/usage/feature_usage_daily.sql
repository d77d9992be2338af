/*
description: Daily usage of each feature (events mapped through the feature map).
grain: one row per day per feature with events
primary_key: [day, feature_key]
partitioned_by: day
columns:
  day: UTC day.
  feature_key: Feature (Jira epic).
  events: Events of the feature that day.
  users: Distinct users of the feature that day.
checks:
  events: {ge: 1}
  users: {ge: 1}
*/
select
    day,
    feature_key,
    count(*) as events,
    count(distinct user_id) as users
from intermediate.int_events_linked_to_features
where feature_key is not null
group by day, feature_key
