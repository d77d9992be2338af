/*
description: >-
  Adoption of each released feature over the `adoption_window_days` UTC days after its release
  day (the release day itself excluded): users of the feature / users active in that window.
  Adopted when the rate reaches `adoption_threshold`; null while the window is not yet complete.
grain: one row per released feature
primary_key: [feature_key]
columns:
  feature_key: Feature (Jira epic).
  released_at: First release (production deployment containing its last PR).
  window_start: First day of the adoption window.
  window_end: Last day of the adoption window.
  window_complete: The data covers the whole window.
  feature_users: Distinct users of the feature in the window.
  active_users: Distinct active users in the window.
  adoption_rate: feature_users / active_users.
  adopted: The rate reached the threshold; null when the window is incomplete.
checks:
  feature_users: {ge: 0}
*/
with settings as (
    select
        max(case when key = 'adoption_window_days' then cast(value as integer) end) as days,
        max(case when key = 'adoption_threshold' then cast(value as double) end) as threshold
    from config.settings
),
released as (
    select
        f.feature_key,
        f.first_released_at as released_at,
        cast(f.first_released_at as date) + 1 as window_start,
        cast(f.first_released_at as date) + s.days as window_end,
        s.threshold
    from development.features as f
    cross join settings as s
    where f.first_released_at is not null
),
data_end as (
    select max(day) as last_day from intermediate.int_events_linked_to_features
),
window_users as (
    select
        r.feature_key,
        count(distinct e.user_id) as active_users,
        count(distinct case when e.feature_key = r.feature_key then e.user_id end) as feature_users
    from released as r
    inner join intermediate.int_events_linked_to_features as e
        on e.day between r.window_start and r.window_end
    group by r.feature_key
)
select
    r.feature_key,
    r.released_at,
    r.window_start,
    r.window_end,
    r.window_end <= d.last_day as window_complete,
    coalesce(w.feature_users, 0) as feature_users,
    coalesce(w.active_users, 0) as active_users,
    cast(w.feature_users as double) / nullif(w.active_users, 0) as adoption_rate,
    case when r.window_end <= d.last_day
        then coalesce(cast(w.feature_users as double) / nullif(w.active_users, 0), 0) >= r.threshold end as adopted
from released as r
cross join data_end as d
left join window_users as w on w.feature_key = r.feature_key
