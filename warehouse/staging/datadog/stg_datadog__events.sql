/*
description: >-
  Datadog events (v2 events API): deployments, monitor alerts and anything else sent to the event
  stream, one row per event. The service is the event's first `service:` tag (else its `service`
  attribute, unless Datadog's placeholder `undefined`); the source is its `source:` tag; the
  environment its `env:` tag, normalised with the production/staging names in config.settings.
grain: one row per event
primary_key: [event_id]
columns:
  event_id: Datadog's v2 event id (opaque string).
  title: Event title.
  message: Event text.
  service: Value of the event's first `service:<name>` tag, else its `service` attribute; null when neither.
  environment: "`production`, `staging` (via config.settings), otherwise the `env:` tag lower-cased; null when untagged."
  original_environment: Value of the event's first `env:` (or `environment:`) tag as sent.
  source: Value of the event's first `source:<name>` tag (e.g. `deployment`, `monitor`); null when untagged.
  alert_type: "The event's status (`info`, `success`, `warning`, `error`, …), lower case."
  hostname: Host the event is about, when given.
  occurred_at: When the event happened (UTC), from its epoch-millisecond timestamp.
*/
with ranked as (
    select
        ev.*,
        row_number() over (partition by ev.id order by ev._dlt_load_id desc) as load_rank
    from raw_datadog.events as ev
),
latest as (
    select
        *,
        -- Datadog tags are lower-case `key:value` strings without quotes, so the first `"key:` in the
        -- JSON list text starts the first tag with that key.
        nullif(regexp_extract(cast(attributes__tags as varchar), '"service:([^"]*)"', 1), '') as service_tag,
        nullif(regexp_extract(cast(attributes__tags as varchar), '"source:([^"]*)"', 1), '') as source_tag,
        coalesce(
            nullif(regexp_extract(cast(attributes__tags as varchar), '"env:([^"]*)"', 1), ''),
            nullif(regexp_extract(cast(attributes__tags as varchar), '"environment:([^"]*)"', 1), '')
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
    cast(ev.id as varchar) as event_id,
    ev.attributes__attributes__title as title,
    ev.attributes__message as message,
    coalesce(
        ev.service_tag,
        case when ev.attributes__attributes__service <> 'undefined' then ev.attributes__attributes__service end
    ) as service,
    coalesce(e.environment, lower(ev.env_tag)) as environment,
    ev.env_tag as original_environment,
    ev.source_tag as source,
    lower(ev.attributes__attributes__status) as alert_type,
    ev.attributes__attributes__hostname as hostname,
    coalesce(
        to_timestamp(ev.attributes__attributes__timestamp / 1000.0),
        cast(ev.attributes__timestamp as timestamp with time zone)
    ) as occurred_at
from latest as ev
left join environments as e on e.name = lower(ev.env_tag)
