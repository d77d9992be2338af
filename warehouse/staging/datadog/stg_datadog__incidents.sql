/*
description: >-
  Datadog incidents (v2 incidents API), one row per incident as last loaded. The service and team
  are the first values listed in the incident's `services` and `teams` fields (the org's own
  incident fields, stored as JSON). Timestamps are UTC; `state` is lower-cased with Datadog's word
  kept in `original_state`.
grain: one row per incident
primary_key: [incident_id]
columns:
  incident_id: Datadog incident id (a uuid); the natural key other models use.
  public_id: Datadog's short incident number (shown as IR-<n>).
  title: Incident title.
  service: First service listed in the incident's `services` field; null when unset.
  team: First team listed in the incident's `teams` field; null when unset.
  severity: "`SEV-1` … `SEV-5`, or `UNKNOWN`."
  state: "`active`, `stable` or `resolved` (lower case)."
  original_state: Datadog's state as sent.
  detection_method: Value of the incident's `detection_method` field (e.g. `monitor`, `customer`, `unknown`).
  is_test: Datadog flags the incident as a test.
  customer_impacted: Customers were affected.
  customer_impact_scope: Free-text description of the customer impact; null when none.
  created_at: When the incident was created in Datadog (UTC).
  declared_at: When the incident was declared (UTC); equals created_at unless imported.
  detected_at: When the problem was detected (UTC); null until set.
  resolved_at: When the incident was resolved (UTC); null while unresolved.
  modified_at: Last modification of the incident record (UTC).
  customer_impact_start_at: Start of the customer impact (UTC); null when none.
  customer_impact_end_at: End of the customer impact (UTC); null when none or still ongoing.
  customer_impact_duration_seconds: Seconds of customer impact as Datadog computes it (0 when none).
  time_to_detect_seconds: Seconds from creation to detection as Datadog computes it (0 when unknown).
  time_to_repair_seconds: Seconds from detection to repair as Datadog computes it (0 when unknown).
  time_to_resolve_seconds: Seconds from creation to resolution as Datadog computes it (0 while unresolved).
  commander_id: >-
    person_id of the incident commander. Null: the incidents list names the commander only by Datadog
    user uuid (relationships.commander_user), never by handle or e-mail, so no cross-tool person id exists.
*/
with ranked as (
    select
        i.*,
        row_number() over (partition by i.id order by i._dlt_load_id desc) as load_rank
    from raw_datadog.incidents as i
),
latest as (
    select * from ranked where load_rank = 1
)
select
    cast(id as varchar) as incident_id,
    cast(attributes__public_id as bigint) as public_id,
    attributes__title as title,
    coalesce(
        json_extract_string(attributes__fields, '$.services.value[0]'),
        case when json_type(attributes__fields, '$.services.value') = 'VARCHAR'
            then json_extract_string(attributes__fields, '$.services.value') end
    ) as service,
    coalesce(
        json_extract_string(attributes__fields, '$.teams.value[0]'),
        case when json_type(attributes__fields, '$.teams.value') = 'VARCHAR'
            then json_extract_string(attributes__fields, '$.teams.value') end
    ) as team,
    upper(trim(coalesce(attributes__severity, json_extract_string(attributes__fields, '$.severity.value'))))
        as severity,
    lower(trim(coalesce(attributes__state, json_extract_string(attributes__fields, '$.state.value')))) as state,
    coalesce(attributes__state, json_extract_string(attributes__fields, '$.state.value')) as original_state,
    json_extract_string(attributes__fields, '$.detection_method.value') as detection_method,
    cast(attributes__is_test as boolean) as is_test,
    cast(attributes__customer_impacted as boolean) as customer_impacted,
    attributes__customer_impact_scope as customer_impact_scope,
    cast(attributes__created as timestamp with time zone) as created_at,
    cast(attributes__declared as timestamp with time zone) as declared_at,
    cast(attributes__detected as timestamp with time zone) as detected_at,
    cast(attributes__resolved as timestamp with time zone) as resolved_at,
    cast(attributes__modified as timestamp with time zone) as modified_at,
    cast(attributes__customer_impact_start as timestamp with time zone) as customer_impact_start_at,
    cast(attributes__customer_impact_end as timestamp with time zone) as customer_impact_end_at,
    cast(attributes__customer_impact_duration as bigint) as customer_impact_duration_seconds,
    cast(attributes__time_to_detect as bigint) as time_to_detect_seconds,
    cast(attributes__time_to_repair as bigint) as time_to_repair_seconds,
    cast(attributes__time_to_resolve as bigint) as time_to_resolve_seconds,
    cast(null as varchar) as commander_id
from latest
