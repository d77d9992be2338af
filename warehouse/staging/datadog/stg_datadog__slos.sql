/*
description: >-
  Datadog service level objectives (v1 SLO API), one row per SLO as last loaded. The service,
  team and environment come from the SLO's `service:`, `team:` and `env:` tags (the first of
  each); the environment is normalised with the production/staging names in config.settings.
  Targets are percentages, as Datadog states them.
grain: one row per SLO
primary_key: [slo_id]
columns:
  slo_id: Datadog SLO id.
  name: SLO name.
  service: Value of the SLO's first `service:<name>` tag; null when untagged.
  team: Value of the SLO's first `team:<name>` tag; null when untagged.
  environment: "`production`, `staging` (via config.settings), otherwise the `env:` tag lower-cased; null when untagged."
  original_environment: Value of the SLO's first `env:` (or `environment:`) tag as sent.
  slo_type: "`metric` (good/total events) or `monitor` (uptime of monitors)."
  timeframe: The SLO's primary rolling window (`7d`, `30d`, `90d`).
  target: Target of the primary window, percent (e.g. 99.5).
  warning: Warning threshold of the primary window, percent; null when unset.
  created_at: When the SLO was created (UTC).
  modified_at: When the SLO was last modified (UTC).
  creator_id: person_id of the creator (from the creator's e-mail, handle or name).
*/
with ranked as (
    select
        s.*,
        row_number() over (partition by s.id order by s._dlt_load_id desc) as load_rank
    from raw_datadog.slos as s
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
    cast(s.id as varchar) as slo_id,
    s.name,
    s.service_tag as service,
    s.team_tag as team,
    coalesce(e.environment, lower(s.env_tag)) as environment,
    s.env_tag as original_environment,
    s.type as slo_type,
    s.timeframe,
    cast(s.target_threshold as double) as target,
    cast(s.warning_threshold as double) as warning,
    to_timestamp(s.created_at) as created_at,
    to_timestamp(s.modified_at) as modified_at,
    person_id(coalesce(s.creator__email, s.creator__handle, s.creator__name)) as creator_id
from latest as s
left join environments as e on e.name = lower(s.env_tag)
