/*
description: >-
  Datadog monitors (v1 monitors API), one row per monitor as last loaded (a snapshot: the state is
  the one at the last extraction). The service, team and environment come from the monitor's
  `service:`, `team:` and `env:` tags (the first of each); the environment is normalised with the
  production/staging names in config.settings and the overall state is lower-cased, each with
  Datadog's word kept beside it.
grain: one row per monitor
primary_key: [monitor_id]
columns:
  monitor_id: Datadog monitor id.
  name: Monitor name.
  service: Value of the monitor's first `service:<name>` tag; null when untagged.
  team: Value of the monitor's first `team:<name>` tag; null when untagged.
  environment: "`production`, `staging` (via config.settings), otherwise the `env:` tag lower-cased; null when untagged."
  original_environment: Value of the monitor's first `env:` (or `environment:`) tag as sent.
  monitor_type: Datadog monitor type (`query alert`, `metric alert`, `service check`, …).
  query: The monitor's query.
  priority: Priority 1 (highest) … 5; null when unset.
  overall_state: "`ok`, `alert`, `warn`, `no_data`, `ignored`, `skipped` or `unknown` at the last extraction."
  original_overall_state: Datadog's overall state as sent (`OK`, `Alert`, `No Data`, …).
  overall_state_modified_at: When the overall state last changed (UTC).
  created_at: When the monitor was created (UTC).
  modified_at: When the monitor was last modified (UTC).
  deleted_at: When the monitor was deleted (UTC); null for live monitors.
  creator_id: person_id of the creator (from the creator's e-mail, handle or name).
*/
with ranked as (
    select
        m.*,
        row_number() over (partition by m.id order by m._dlt_load_id desc) as load_rank
    from raw_datadog.monitors as m
),
latest as (
    select
        *,
        -- Datadog tags are lower-case `key:value` strings without quotes, so the first `"key:` in the
        -- JSON list text starts the first tag with that key.
        nullif(regexp_extract(cast(tags as varchar), '"service:([^"]*)"', 1), '') as service_tag,
        nullif(regexp_extract(cast(tags as varchar), '"team:([^"]*)"', 1), '') as team_tag,
        coalesce(
            nullif(regexp_extract(cast(tags as varchar), '"env:([^"]*)"', 1), ''),
            nullif(regexp_extract(cast(tags as varchar), '"environment:([^"]*)"', 1), '')
        ) as env_tag
    from ranked
    where load_rank = 1
),
environments as (
    select lower(value) as name, min(environment) as environment
    from (
        select value, 'production' as environment from config.settings where key = 'production_environment'
        union all
        select value, 'staging' as environment from config.settings where key = 'staging_environment'
    ) as named
    group by lower(value)
)
select
    cast(m.id as bigint) as monitor_id,
    m.name,
    m.service_tag as service,
    m.team_tag as team,
    coalesce(e.environment, lower(m.env_tag)) as environment,
    m.env_tag as original_environment,
    m.type as monitor_type,
    m.query,
    cast(m.priority as bigint) as priority,
    replace(lower(trim(m.overall_state)), ' ', '_') as overall_state,
    m.overall_state as original_overall_state,
    cast(m.overall_state_modified as timestamp with time zone) as overall_state_modified_at,
    coalesce(cast(m.created as timestamp with time zone), to_timestamp(m.created_at / 1000.0)) as created_at,
    cast(m.modified as timestamp with time zone) as modified_at,
    cast(m.deleted as timestamp with time zone) as deleted_at,
    person_id(coalesce(m.creator__email, m.creator__handle, m.creator__name)) as creator_id
from latest as m
left join environments as e on e.name = lower(m.env_tag)
