"""dlt source for Datadog: incidents, monitors, SLOs, daily SLO history and events into `raw_datadog`.

The same code runs against `https://api.<site>` (datadoghq.com, datadoghq.eu, us3/us5/ap1 ...) and the
sandbox emulator; only `SOURCES__DATADOG__BASE_URL` and the keys differ. The contracts followed are
in `docs/source-apis.md` §5 and facts 3, 8 and 9. Tables (primary key; write disposition; cursor):

- `incidents` (id; merge; none: the list has no modified filter, so every page is read each run,
  tens to hundreds of rows): `GET /api/v2/incidents`, `page[offset]` ← `meta.pagination.next_offset`.
- `monitors` (id; merge; none, a snapshot): `GET /api/v1/monitor`, `page` (0-based) + `page_size`.
- `slos` (id; merge; none, a snapshot): `GET /api/v1/slo`, `limit`/`offset` + `metadata.page.total_count`.
- `slo_history` ((slo_id, day); merge; per-SLO last day, re-pulling the trailing 7 days):
  `GET /api/v1/slo/{id}/history?from_ts=&to_ts=` (epoch s), one request per SLO and 7-day window.
- `events` (id; merge; `filter[from]` = newest event timestamp (ms) − 18 h): `GET /api/v2/events`,
  `page[cursor]` ← `meta.page.after`, ending on an empty `data`.

An incident's service is `attributes.fields.services.value` (a list): `attributes__fields` is stored
as JSON because its keys are the org's own incident fields. Tags (`monitors.tags`, `slos.tags`,
`events.attributes__tags`) are kept as one JSON list per row rather than child tables, so the column
exists even when nothing is tagged; every column the staging models read is declared. Requests go
through the shared session (`pipelines.sources.http`): DD-API-KEY / DD-APPLICATION-KEY headers,
retries, Datadog's 429 + X-RateLimit-Reset contract and errors naming the config key to fix.

Bad input (`pipelines.sources.quarantine`): each page passes its table's `Gate` right after it is read
(key `id`; events also need their cursor); records that fail go to `raw_datadog.quarantine`, pass the
service filters and the events' cursor untouched, and feed no SLO history; a field failing on most of a
page stops the source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.common.typing import TDataItem
from dlt.extract.resource import DltResource
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import (
    JSONResponseCursorPaginator,
    OffsetPaginator,
    PageNumberPaginator,
)
from dlt.sources.rest_api import rest_api_resources
from dlt.sources.rest_api.typing import RESTAPIConfig
from requests import Response

from pipelines.sources.http import DatadogAuth, make_session
from pipelines.sources.quarantine import Gate, declare_table, gate_resource, is_quarantine, shield

# Largest page each endpoint accepts (datadog-api-client-python v1/v2 *_api.py): fewest requests.
MAX_PAGE_SIZE = {"incidents": 100, "monitors": 1000, "slos": 1000, "events": 1000}

DEFAULT_LOOKBACK_DAYS = 90
"""First-run lower bound when START_DATE is not configured: the KPIs' default current window is the
trailing 90 days (docs/metrics.md, Windows)."""

HISTORY_WINDOW_DAYS = 7
"""Days per SLO history request. The history series has about a dozen points per window (the recorded
1-day window came back at 7200-s resolution), so 7-day windows keep each point within one UTC day."""

HISTORY_TRAILING_DAYS = 7
"""Complete days of SLO history re-pulled on every run: SLO corrections rewrite recent history."""

EVENTS_OVERLAP_HOURS = 18
"""Events may be submitted with a timestamp up to 18 hours in the past (Datadog's POST /api/v1/events
limit on `date_happened`), so each run re-reads 18 hours before the newest event already loaded."""

SECONDS_PER_DAY = 86400


def _hint(data_type: str) -> TColumnSchema:
    return {"data_type": data_type, "nullable": True}  # type: ignore[typeddict-item]


def incident_columns() -> dict[str, TColumnSchema]:
    """Column hints for `incidents`: fields that are often null (no incident resolved yet) would
    otherwise be missing from the warehouse until a value arrives. Every column the staging model
    (`warehouse/staging/datadog/stg_datadog__incidents.sql`) reads is declared, so it exists from
    the first load whatever the data. Fresh dicts per call: dlt writes into the hints it is given."""
    return {
        # fields: the org's own incident fields (their keys are data), kept as one JSON value.
        "attributes__fields": _hint("json"),
        "attributes__public_id": _hint("bigint"),
        "attributes__title": _hint("text"),
        "attributes__severity": _hint("text"),
        "attributes__state": _hint("text"),
        "attributes__created": _hint("timestamp"),
        "attributes__declared": _hint("timestamp"),
        "attributes__modified": _hint("timestamp"),
        "attributes__resolved": _hint("timestamp"),
        "attributes__detected": _hint("timestamp"),
        "attributes__customer_impacted": _hint("bool"),
        "attributes__customer_impact_start": _hint("timestamp"),
        "attributes__customer_impact_end": _hint("timestamp"),
        "attributes__customer_impact_scope": _hint("text"),
        "attributes__customer_impact_duration": _hint("bigint"),
        "attributes__time_to_detect": _hint("bigint"),
        "attributes__time_to_repair": _hint("bigint"),
        "attributes__time_to_resolve": _hint("bigint"),
        "attributes__is_test": _hint("bool"),
        "attributes__notification_handles": _hint("json"),
    }


def monitor_columns() -> dict[str, TColumnSchema]:
    """Column hints for `monitors` (see `incident_columns`)."""
    return {
        "options__silenced": _hint("json"),  # monitor scope → mute-until: the keys are data
        # tags: one JSON list on the row (not a child table), so a monitor without tags still has the column
        "tags": _hint("json"),
        "name": _hint("text"),
        "type": _hint("text"),
        "query": _hint("text"),
        "overall_state": _hint("text"),
        "overall_state_modified": _hint("timestamp"),
        "created": _hint("timestamp"),
        "created_at": _hint("bigint"),  # epoch ms
        "modified": _hint("timestamp"),
        "deleted": _hint("timestamp"),
        "priority": _hint("bigint"),
        "restricted_roles": _hint("json"),
        "creator__name": _hint("text"),
        "creator__handle": _hint("text"),
        "creator__email": _hint("text"),
    }


def slo_columns() -> dict[str, TColumnSchema]:
    """Column hints for `slos` (see `incident_columns`)."""
    return {
        "tags": _hint("json"),  # as for monitors
        "name": _hint("text"),
        "type": _hint("text"),
        "timeframe": _hint("text"),
        "target_threshold": _hint("double"),  # percent
        "warning_threshold": _hint("double"),
        "created_at": _hint("bigint"),  # epoch seconds
        "modified_at": _hint("bigint"),
        "creator__name": _hint("text"),
        "creator__handle": _hint("text"),
        "creator__email": _hint("text"),
    }


def event_columns() -> dict[str, TColumnSchema]:
    """Column hints for `events` (see `incident_columns`)."""
    return {
        "attributes__tags": _hint("json"),  # as for monitors
        "attributes__timestamp": _hint("timestamp"),
        "attributes__message": _hint("text"),
        "attributes__attributes__title": _hint("text"),
        "attributes__attributes__service": _hint("text"),
        "attributes__attributes__status": _hint("text"),
        "attributes__attributes__timestamp": _hint("bigint"),  # epoch ms
        "attributes__attributes__hostname": _hint("text"),
    }


def utc_now() -> datetime:
    """The current time; SLO history is requested up to the start of today (UTC). Tests patch this."""
    return datetime.now(UTC)


# --- paginators (Datadog has four styles; three are used here) -------------------------------------


class NextOffsetPaginator(JSONResponseCursorPaginator):
    """v2 incidents: send `page[offset]` = the last page's `meta.pagination.next_offset`.

    The key is absent on the last page. A short page is not the end: incidents_list.json returned 6
    rows for the default size 10 and still a `next_offset`. Following the server's offset (rather than
    adding the page size ourselves) stays right whatever it returns. An empty page also ends the list.
    """

    def __init__(self) -> None:
        super().__init__(cursor_path="meta.pagination.next_offset", cursor_param="page[offset]")

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        if not data:
            self._has_next_page = False


class ShortPagePaginator(PageNumberPaginator):
    """v1 monitors: `page` is 0-based and a page shorter than `page_size` is the last one."""

    def __init__(self, page_size: int) -> None:
        super().__init__(base_page=0, page_param="page", total_path=None, stop_after_empty_page=True)
        self.page_size = page_size

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        if data is not None and len(data) < self.page_size:
            self._has_next_page = False


class EventsCursorPaginator(JSONResponseCursorPaginator):
    """v2 events: `page[cursor]` = `meta.page.after`; stop on an empty `data`.

    A cursor page can be empty and still carry `meta.page.after` (ci_pipelines_events_page1.json),
    so an empty page ends the list whatever the cursor says. The final v2 events page is `{"data": []}`.
    """

    def __init__(self) -> None:
        super().__init__(cursor_path="meta.page.after", cursor_param="page[cursor]")

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        if not data:
            self._has_next_page = False
            return
        super().update_state(response, data)


# --- configuration helpers ---------------------------------------------------------------------------


def parse_services(services: str | Sequence[str] | None) -> tuple[str, ...]:
    """A comma-separated string or a list of service names → a tuple; empty means every service."""
    if services is None:
        return ()
    parts = services.split(",") if isinstance(services, str) else list(services)
    return tuple(dict.fromkeys(p.strip() for p in parts if p and p.strip()))


def parse_start_date(start_date: str | date | None) -> date:
    """START_DATE as a date (ISO `YYYY-MM-DD`, or a full ISO timestamp whose date is taken)."""
    if start_date is None or start_date == "":
        return utc_now().date() - timedelta(days=DEFAULT_LOOKBACK_DAYS)
    if isinstance(start_date, datetime):
        return start_date.astimezone(UTC).date()
    if isinstance(start_date, date):
        return start_date
    text = str(start_date).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ValueError(
            f"datadog: SOURCES__DATADOG__START_DATE={text!r} is not an ISO date (expected YYYY-MM-DD)"
        ) from exc


def _page_size(endpoint: str, page_size: int | None) -> int:
    return max(1, min(page_size or MAX_PAGE_SIZE[endpoint], MAX_PAGE_SIZE[endpoint]))


def _midnight_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _has_service_tag(tags: Iterable[str] | None, services: tuple[str, ...]) -> bool:
    wanted = {f"service:{s}" for s in services}
    return isinstance(tags, list) and any(t in wanted for t in tags)


def _object(value: Any) -> dict[str, Any]:
    """`value` if it is an object, else an empty one: a record of another shape is the gate's to judge."""
    return value if isinstance(value, dict) else {}


def incident_services(incident: dict[str, Any]) -> list[str]:
    """The services of a v2 incident: `attributes.fields.services.value` (a list, or null when unset)."""
    field = _object(_object(_object(incident.get("attributes")).get("fields")).get("services"))
    value = field.get("value")
    if isinstance(value, str):  # defensive: a single-valued autocomplete field
        return [value]
    return [v for v in value or [] if isinstance(v, str)]


# --- SLO history: one response per SLO and window, pivoted into one row per UTC day -------------------


def history_rows(slo_id: str, body: dict[str, Any], from_ts: int, to_ts: int) -> list[dict[str, Any]]:
    """Rows `(slo_id, day, good_events, total_events, sli_value, points)` from one history response.

    Series points (bucket start in epoch ms, as floats) are summed per UTC day; points outside
    [from_ts, to_ts) (a bucket the server aligned before the window) are dropped. `sli_value` is
    100 * good / total, and null for a day with no requests (Datadog's ZERO_VALUED_DENOMINATOR).
    """
    series = (body.get("data") or {}).get("series") or {}
    times = series.get("times") or []
    good_values = (series.get("numerator") or {}).get("values") or []
    total_values = (series.get("denominator") or {}).get("values") or []
    good: dict[str, float] = defaultdict(float)
    total: dict[str, float] = defaultdict(float)
    points: dict[str, int] = defaultdict(int)
    for t_ms, g, n in zip(times, good_values, total_values, strict=False):
        t = int(t_ms) // 1000
        if not from_ts <= t < to_ts:
            continue
        day = datetime.fromtimestamp(t, UTC).date().isoformat()
        good[day] += float(g or 0.0)
        total[day] += float(n or 0.0)
        points[day] += 1
    return [
        {
            "slo_id": slo_id,
            "day": day,
            "good_events": good[day],
            "total_events": total[day],
            "sli_value": 100.0 * good[day] / total[day] if total[day] else None,
            "points": points[day],
        }
        for day in sorted(points)
    ]


def history_windows(first: date, end: date, days: int = HISTORY_WINDOW_DAYS) -> Iterator[tuple[int, int]]:
    """Consecutive `[from_ts, to_ts)` windows in epoch seconds covering the days `first` .. `end` - 1."""
    day = first
    while day < end:
        stop = min(day + timedelta(days=days), end)
        yield _midnight_ms(day) // 1000, _midnight_ms(stop) // 1000
        day = stop


def history_start(last_day: str | None, start: date, today: date, trailing_days: int) -> date:
    """The first day to request: the day after the last loaded one, or the trailing window if earlier."""
    if last_day is None:
        return start
    resume = date.fromisoformat(last_day) + timedelta(days=1)
    return max(start, min(resume, today - timedelta(days=trailing_days)))


def fetch_history(client: RESTClient, slo_id: str, from_ts: int, to_ts: int) -> list[dict[str, Any]]:
    """Request one window; if the server answered coarser than a day, split the window and retry."""
    response = client.get(f"api/v1/slo/{slo_id}/history", params={"from_ts": from_ts, "to_ts": to_ts})
    body = response.json()
    interval = int(((body.get("data") or {}).get("series") or {}).get("interval") or 0)
    span_days = (to_ts - from_ts) // SECONDS_PER_DAY
    if interval > SECONDS_PER_DAY and span_days > 1:
        middle = from_ts + (span_days // 2) * SECONDS_PER_DAY
        return fetch_history(client, slo_id, from_ts, middle) + fetch_history(client, slo_id, middle, to_ts)
    return history_rows(slo_id, body, from_ts, to_ts)


def slo_history_resource(
    slos: DltResource, client: RESTClient, start: date, trailing_days: int = HISTORY_TRAILING_DAYS
) -> DltResource:
    """Daily SLI per SLO, fed by the `slos` resource.

    Hand-written (a transformer, not a rest_api resource) because one response holds a whole window as
    parallel arrays that must be pivoted into one row per day, and each SLO keeps its own progress
    (a new SLO backfills from START_DATE while the others only re-pull their trailing window).
    Only complete UTC days are requested: the window ends at the start of today.
    """

    @dlt.transformer(
        data_from=slos,
        name="slo_history",
        write_disposition="merge",
        primary_key=("slo_id", "day"),
        columns={
            "day": {"data_type": "date"},
            "sli_value": {"data_type": "double"},  # percent; null for a day without requests
            "good_events": {"data_type": "double"},
            "total_events": {"data_type": "double"},
        },
    )
    def slo_history(items: TDataItem) -> Iterator[list[dict[str, Any]]]:
        last_days: dict[str, str] = dlt.current.resource_state().setdefault("last_day", {})
        today = utc_now().date()
        for slo in items if isinstance(items, list) else [items]:
            slo_id = str(slo["id"])
            first = history_start(last_days.get(slo_id), start, today, trailing_days)
            rows: list[dict[str, Any]] = []
            for from_ts, to_ts in history_windows(first, today):
                rows += fetch_history(client, slo_id, from_ts, to_ts)
            if rows:
                last_days[slo_id] = max([r["day"] for r in rows] + [last_days.get(slo_id, "")])
                yield rows

    return slo_history


# --- the source ----------------------------------------------------------------------------------------


def rest_config(
    base_url: str,
    session: Any,
    *,
    services: tuple[str, ...],
    start: date,
    page_size: int | None,
) -> RESTAPIConfig:
    """The declarative part: incidents, monitors, SLOs and events."""
    incidents_size = _page_size("incidents", page_size)
    monitors_size = _page_size("monitors", page_size)
    slos_size = _page_size("slos", page_size)
    events_params: dict[str, Any] = {
        # Incremental on the event's epoch-ms timestamp; filter[from] accepts ms (fact 3).
        "filter[from]": {
            "type": "incremental",
            "cursor_path": "attributes.attributes.timestamp",
            "initial_value": _midnight_ms(start),
            "lag": EVENTS_OVERLAP_HOURS * 3600 * 1000,  # the cursor is in ms
            # Quarantine rows carry no cursor: they pass it untouched (events without one are quarantined).
            "on_cursor_value_missing": "include",
        },
        "filter[to]": "now",  # the server's clock, whatever ours says
        "sort": "timestamp",  # oldest first: an interrupted run still leaves a valid cursor
        "page[limit]": _page_size("events", page_size),
    }
    if services:
        events_params["filter[query]"] = f"service:({' OR '.join(services)})"

    # The filters run after the records' gate and let its quarantine rows through (`meta` says which).
    def incident_selected(item: dict[str, Any], meta: Any = None) -> bool:
        return not services or is_quarantine(meta) or bool(set(incident_services(item)) & set(services))

    def tagged(item: dict[str, Any], meta: Any = None) -> bool:
        return not services or is_quarantine(meta) or _has_service_tag(item.get("tags"), services)

    def event_tagged(item: dict[str, Any], meta: Any = None) -> bool:
        tags = _object(item.get("attributes")).get("tags")
        return not services or is_quarantine(meta) or _has_service_tag(tags, services)

    return {
        "client": {"base_url": base_url, "session": session},
        "resource_defaults": {
            "write_disposition": "merge",  # every entity here is mutable, or (events) re-read in an overlap
            "primary_key": "id",
            "endpoint": {"data_selector": "data"},
        },
        "resources": [
            {
                "name": "incidents",
                # The list has no modified filter, so every page is read on each run (tens to hundreds of rows).
                "endpoint": {
                    "path": "api/v2/incidents",
                    "params": {"page[size]": incidents_size},
                    "paginator": NextOffsetPaginator(),
                },
                "columns": incident_columns(),
                "processing_steps": [{"filter": incident_selected}],
            },
            {
                "name": "monitors",
                "endpoint": {
                    "path": "api/v1/monitor",
                    "params": {"page_size": monitors_size},
                    "paginator": ShortPagePaginator(monitors_size),
                    "data_selector": "$",  # a bare array
                },
                "columns": monitor_columns(),
                "processing_steps": [{"filter": tagged}],
            },
            {
                "name": "slos",
                "endpoint": {
                    "path": "api/v1/slo",
                    "params": {"limit": slos_size},
                    "paginator": OffsetPaginator(
                        limit=slos_size,
                        offset_param="offset",
                        limit_param="limit",
                        total_path="metadata.page.total_count",
                    ),
                },
                "columns": slo_columns(),
                "processing_steps": [{"filter": tagged}],
            },
            {
                "name": "events",
                "endpoint": {"path": "api/v2/events", "params": events_params, "paginator": EventsCursorPaginator()},
                "columns": event_columns(),
                "processing_steps": [{"filter": event_tagged}],
            },
        ],
    }


@dlt.source(name="datadog", section="datadog")
def datadog_source(
    base_url: str = dlt.config.value,
    api_key: str = dlt.secrets.value,
    application_key: str = dlt.secrets.value,
    services: str | list[str] | None = None,
    start_date: str | None = None,
    page_size: int | None = None,
) -> list[DltResource]:
    """Datadog incidents, monitors, SLOs, daily SLO history and events (dataset `raw_datadog`).

    Args:
        base_url: `https://api.datadoghq.com` or another site's API host (SOURCES__DATADOG__BASE_URL).
        api_key: DD-API-KEY (SOURCES__DATADOG__API_KEY).
        application_key: DD-APPLICATION-KEY, needed for reads (SOURCES__DATADOG__APPLICATION_KEY).
        services: only these services (comma-separated or a list); empty selects all.
        start_date: ISO date, the first run's lower bound for events and SLO history
            (SOURCES__DATADOG__START_DATE); default 90 days ago.
        page_size: a smaller page than each endpoint's maximum (tests); None uses the maximum.
    """
    selected = parse_services(services)
    start = parse_start_date(start_date)
    session = make_session("datadog", auth=DatadogAuth(api_key, application_key))
    declare_table()
    resources = rest_api_resources(rest_config(base_url, session, services=selected, start=start, page_size=page_size))
    by_name = {r.name: gate_resource(r, gate_for(r.name)) for r in resources}
    client = RESTClient(base_url=base_url, session=session)
    history = slo_history_resource(by_name["slos"], client, start)
    shield(history)  # a quarantined SLO has no id to ask its history for
    return [by_name["incidents"], by_name["monitors"], by_name["slos"], history, by_name["events"]]


COLUMN_HINTS = {
    "incidents": incident_columns,
    "monitors": monitor_columns,
    "slos": slo_columns,
    "events": event_columns,
}
REQUIRED = {"events": ("attributes__attributes__timestamp",)}
"""Fields this source reads beyond the key: the events' incremental cursor (epoch ms)."""


def gate_for(name: str) -> Gate:
    """A fresh `Gate` for one of the declarative resources (key `id` throughout)."""
    return Gate("datadog", name, columns=COLUMN_HINTS[name](), primary_key=("id",), required=REQUIRED.get(name, ()))
