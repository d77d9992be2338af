"""Datadog API emulator: incidents (v2), monitors (v1), SLOs and SLO history (v1), events (v2).

Shapes follow the VCR recordings under `shared/fixtures/real/datadog/` (DataDog/datadog-api-client-python
cassettes); paging, limits and time formats follow `docs/source-apis.md` §5 and facts 3, 8 and 9:

- `GET /api/v2/incidents?page[size]=&page[offset]=`: size ≤ 100 (default 10), oldest first;
  `meta.pagination.{offset,size,next_offset}` with `next_offset` absent on the last page.
  `GET /api/v2/incidents/{id}` returns `{"data": <incident>}`.
- `GET /api/v1/monitor?page=&page_size=`: a bare array; without `page` every monitor comes back
  unpaginated; `page` is 0-based, `page_size` ≤ 1000 (default 100); a short page ends the list.
- `GET /api/v1/slo?limit=&offset=`: `data[]` + `metadata.page.total_count` (default limit 1000).
- `GET /api/v1/slo/{id}/history?from_ts=&to_ts=` (epoch s): see `slo_history_body`.
- `GET /api/v2/events?filter[from]=&filter[to]=&filter[query]=&sort=&page[limit]=&page[cursor]=`:
  cursor paging (`meta.page.after` and `links.next` on every non-empty page); the end is exactly
  `{"data": []}`. `filter[from]/[to]` take epoch ms, ISO-8601 or date math (`now`, `now-15m`).

Where a client finds an incident's service: `attributes.fields.services.value`, a list of service
names (Datadog's `autocomplete` incident field; the recordings only show it unset, `null`). The
owning team is in `attributes.fields.teams.value` the same way. Monitors and SLOs carry the service
as a `service:<name>` tag, events as `service:<name>` in `attributes.tags` and in
`attributes.attributes.service`.

Incidents are `active` until resolved, then `resolved` (the world records no mitigation moment, so
`stable` is never used). A monitor is `Alert` while an incident of its service is open at as-of,
else `OK`. Rate-limit bucket names (`X-RateLimit-Name`) and limits are synthetic: only the header
set and its semantics were recorded (`logs_public_search_api`, limit 10 per 10 s).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipelines.sandbox.http import (
    HTTPError,
    Request,
    Response,
    Route,
    SystemEmulator,
    json_response,
    page_slice,
)
from pipelines.sandbox.world import DatadogEvent, Incident, Monitor, Person, Slo, World, WorldView, utc

ORG_ID = 321813
"""The Datadog org id on every monitor (the recordings' org; any constant would do)."""

INCIDENTS_MAX_PAGE = 100  # page[size] maximum (v2/api/incidents_api.py)
INCIDENTS_DEFAULT_PAGE = 10
MONITORS_MAX_PAGE = 1000  # page_size maximum (v1/api/monitors_api.py)
MONITORS_DEFAULT_PAGE = 100  # when `page` is given without `page_size`
SLOS_DEFAULT_LIMIT = 1000
EVENTS_MAX_PAGE = 1000  # page[limit] maximum (v2/api/events_api.py)
EVENTS_DEFAULT_PAGE = 10

SLO_TARGET_TIMEFRAME = "30d"
SLO_WARNING = 99.8
"""Warning threshold of every SLO: stricter than the world's 99.5 % target, as Datadog requires."""
HISTORY_POINTS = 12
"""Points per SLO history series: the recorded 1-day window came back at 7200-s resolution."""
# Series resolutions the emulator picks from (seconds); each up to one day divides a day evenly.
HISTORY_INTERVALS = (300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600, 604800)

INCIDENT_TYPE_UUID = "41d2e10b-4108-4736-92d7-791d00ea0702"
_NAMESPACE = uuid.UUID("6c1c3a55-8d7e-4a43-9a8e-0f2f4d8a1c11")
_INCIDENT_FIELDS = ("severity", "state", "detection_method", "root_cause", "summary", "services", "teams", "slug")

# (bucket name, limit, period s) per endpoint, for the X-RateLimit-* headers (synthetic values).
_RATE_BUCKETS: dict[str, tuple[str, int, int]] = {
    "incidents": ("incidents_api", 1000, 60),
    "monitor": ("monitors_api", 3000, 60),
    "slo": ("slo_api", 3000, 60),
    "history": ("slo_history_api", 3000, 60),
    "events": ("events_public_list_api", 1000, 60),
}


# --- pure helpers (also used by the tests as the world → API mapping) ---------------------------


def iso_us(t: datetime) -> str:
    """`2021-09-15T12:50:19.743510+00:00`: Datadog incidents/monitors always carry 6 fraction digits."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def iso_s(t: datetime) -> str:
    """`2021-05-03T13:06:23+00:00` (monitor `overall_state_modified`)."""
    return t.astimezone(UTC).isoformat(timespec="seconds")


def iso_z(t: datetime) -> str:
    """`2022-06-20T17:07:32Z` (v2 event `attributes.timestamp`)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def user_uuid(person_id: str) -> str:
    """The Datadog user uuid of a world person."""
    return str(uuid.uuid5(_NAMESPACE, f"user:{person_id}"))


def user_int_id(person: Person) -> int:
    """The numeric user id that v1 monitors' `creator.id` carries."""
    return 1_445_000 + int(re.sub(r"\D", "", person.person_id) or 0)


def event_v2_id(event: DatadogEvent) -> str:
    """The opaque v2 event id for a world event (base64url, like the recorded `AgAAAYGC...` ids)."""
    raw = b"\x02\x00\x00\x01" + epoch_ms(event.at).to_bytes(8, "big") + event.event_id.encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def event_numeric_id(event: DatadogEvent) -> str:
    """`attributes.attributes.evt.id`: the v1 numeric event id, as a string (19 digits like the recordings)."""
    return str(int(event.event_id, 16) % 10**19).rjust(19, "6")


def team_handle(world: World, component: str) -> str:
    """The Datadog team of a service (its Jira project key, lower case) or `sre` for infrastructure."""
    for service in world.services:
        if service.name == component:
            return service.team_key.lower()
    return "sre"


def slo_tags(world: World, slo: Slo) -> list[str]:
    return [f"service:{slo.service}", f"team:{team_handle(world, slo.service)}", "env:production"]


def incident_is_open(incident: Incident, at: datetime) -> bool:
    return incident.created_at <= at and (incident.resolved_at is None or at < incident.resolved_at)


def incident_modified_at(incident: Incident, view: WorldView) -> datetime:
    """The last change to an incident visible at as-of: its resolution, detection or the commander's update."""
    if view.incident_resolved(incident):
        return incident.resolved_at  # type: ignore[return-value]
    moments = [incident.created_at]
    if incident.detected_at <= view.as_of:
        moments.append(incident.detected_at)
    # The world's modified_at is the resolution time for resolved incidents (not visible yet here)
    # and a commander's update 30 minutes in for incidents that never resolve.
    if incident.resolved_at is None and incident.modified_at <= view.as_of:
        moments.append(incident.modified_at)
    return max(moments)


def daily_counts(slo: Slo, day_index: int) -> tuple[float, float]:
    """(good, total) requests of one SLO day, so that 100 * good / total is exactly `daily_sli[day]`.

    Totals are whole millions, so `sli` with 4 decimals gives a whole number of good requests.
    """
    digest = hashlib.sha256(f"{slo.slo_id}:{day_index}".encode()).digest()
    total = 1_000_000 * (2 + digest[0] % 5)
    good = round(total / 1_000_000 * slo.daily_sli[day_index] * 10_000)
    return float(good), float(total)


def history_interval(window_s: int) -> int:
    """The series resolution for a history window: about `HISTORY_POINTS` points, rounded up to a step."""
    target = window_s / HISTORY_POINTS
    return next((i for i in HISTORY_INTERVALS if i >= target), HISTORY_INTERVALS[-1])


_DATE_MATH = re.compile(r"now(?:(?P<sign>[+-])(?P<n>\d+)(?P<unit>[smhdw]))?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_event_time(value: str, now: datetime, name: str) -> datetime:
    """`filter[from]`/`filter[to]`: epoch ms, ISO-8601 or date math relative to now (`now-15m`)."""
    text = value.strip()
    math_match = _DATE_MATH.fullmatch(text)
    if math_match:
        if not math_match.group("n"):
            return now
        delta = timedelta(seconds=int(math_match.group("n")) * _UNIT_S[math_match.group("unit")])
        return now - delta if math_match.group("sign") == "-" else now + delta
    if re.fullmatch(r"\d+", text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HTTPError(400, f"Invalid {name}: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_SERVICE_QUERY = re.compile(r"service:(?:\((?P<many>[^)]*)\)|(?P<one>\S+))")


def query_services(query: str | None) -> set[str] | None:
    """The services an events `filter[query]` selects (`service:a` or `service:(a OR b)`); None = all."""
    if not query or not query.strip() or query.strip() == "*":
        return None
    found: set[str] = set()
    for match in _SERVICE_QUERY.finditer(query):
        if match.group("one"):
            found.add(match.group("one"))
        else:
            found.update(part.strip() for part in match.group("many").split(" OR ") if part.strip())
    if not found:
        raise HTTPError(400, f"Unsupported filter[query] {query!r}: the sandbox understands service:<name> only")
    return found


def _encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": position})).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded))["after"]
    except (ValueError, KeyError, TypeError) as exc:
        # The recorded bad-cursor answer (events_v2_search_400_error.json), with its odd nesting.
        message = "{'errors': [u\"input_validation_error(Field 'page' is invalid: invalid cursor)\"]}"
        raise HTTPError(400, message) from exc
    if not isinstance(value, str):
        raise HTTPError(400, "invalid cursor")
    return value


def _event_key(event: DatadogEvent) -> str:
    return f"{epoch_ms(event.at):015d}-{event.event_id}"


@dataclass
class _RateCounter:
    """Per-bucket request counts in calendar-aligned periods, for realistic X-RateLimit-Remaining."""

    lock: threading.Lock
    counts: dict[tuple[str, int], int]

    def hit(self, name: str, period: int) -> tuple[int, int]:
        """Count a request; return (requests so far in this period, seconds until the period resets)."""
        now = time.time()
        window = int(now // period)
        with self.lock:
            n = self.counts.get((name, window), 0) + 1
            self.counts = {k: v for k, v in self.counts.items() if k[1] >= window - 1}
            self.counts[(name, window)] = n
        return n, max(1, math.ceil((window + 1) * period - now))


# --- the emulator --------------------------------------------------------------------------------


class DatadogEmulator(SystemEmulator):
    """Datadog's incidents, monitors, SLOs, SLO history and events APIs over a `World`."""

    name = "datadog"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self._people = world.people_by_id
        self._slos = {s.slo_id: s for s in world.slos}
        self._incidents = {i.incident_id: i for i in world.incidents}
        self._rate = _RateCounter(threading.Lock(), {})

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/api/v2/incidents", self.list_incidents),
            Route.of("GET", "/api/v2/incidents/{incident_id}", self.get_incident),
            Route.of("GET", "/api/v1/monitor", self.list_monitors),
            Route.of("GET", "/api/v1/slo", self.list_slos),
            Route.of("GET", "/api/v1/slo/{slo_id}/history", self.slo_history),
            Route.of("GET", "/api/v2/events", self.list_events),
        ]

    # -- auth, errors, headers ------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        """Reads need both keys; Datadog answers 403 (not 401) when either is missing."""
        return bool(request.headers.get("DD-API-KEY")) and bool(request.headers.get("DD-APPLICATION-KEY"))

    def unauthorized(self, request: Request) -> Response:
        return json_response({"errors": ["Forbidden"]}, 403)

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        """429 with an empty body and the X-RateLimit-* set, as recorded (remaining may stay non-zero)."""
        name, limit, period = self._bucket(request)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Period": str(period),
            "X-RateLimit-Remaining": "9",
            "X-RateLimit-Reset": str(wait_seconds),
            "X-RateLimit-Name": name,
        }
        return Response(429, b"", headers)

    def error(self, request: Request, exc: HTTPError) -> Response:
        """Datadog's error body: `{"errors": ["<message>"]}` (monitors_list_400_error.json)."""
        return json_response(exc.body if exc.body is not None else {"errors": [exc.message]}, exc.status)

    def env(self) -> dict[str, str]:
        # Any non-empty keys work; these have the real shapes (32 and 40 hex characters).
        return {
            "SOURCES__DATADOG__API_KEY": hashlib.md5(b"opsmap-sandbox-api").hexdigest(),
            "SOURCES__DATADOG__APPLICATION_KEY": hashlib.sha1(b"opsmap-sandbox-app").hexdigest(),
            "SOURCES__DATADOG__START_DATE": self.world.config.start_at.date().isoformat(),
        }

    def common_headers(self, request: Request) -> dict[str, str]:
        name, limit, period = self._bucket(request)
        used, reset = self._rate.hit(name, period)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Period": str(period),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Name": name,
        }

    @staticmethod
    def _bucket(request: Request) -> tuple[str, int, int]:
        path = request.path
        if path.endswith("/history"):
            return _RATE_BUCKETS["history"]
        for key in ("incidents", "monitor", "slo", "events"):
            if f"/{key}" in path:
                return _RATE_BUCKETS[key]
        return _RATE_BUCKETS["events"]

    # -- incidents --------------------------------------------------------------------------------

    def list_incidents(self, request: Request) -> Response:
        size = request.int_arg("page[size]", INCIDENTS_DEFAULT_PAGE, minimum=1)
        if size > INCIDENTS_MAX_PAGE:
            raise HTTPError(400, f"page[size] must be <= {INCIDENTS_MAX_PAGE}")
        offset = request.int_arg("page[offset]", 0)
        incidents = sorted(request.view.incidents(), key=lambda i: i.public_id)
        page = page_slice(incidents, offset, size, request)
        mutated = self._mutated_index(request, len(page))
        data = [self.incident_json(i, request.view, just_updated=k == mutated) for k, i in enumerate(page)]
        pagination: dict[str, int] = {"offset": offset, "size": len(data)}
        if offset + size < len(incidents):
            pagination["next_offset"] = offset + size
        return json_response({"data": data, "meta": {"pagination": pagination}})

    def get_incident(self, request: Request, incident_id: str) -> Response:
        incident = self._incidents.get(incident_id)
        if incident is None or incident.created_at > request.view.as_of:
            raise HTTPError(404, "Not found")
        return json_response({"data": self.incident_json(incident, request.view)})

    def incident_json(self, inc: Incident, view: WorldView, *, just_updated: bool = False) -> dict[str, Any]:
        """One v2 incident as of `view.as_of` (shape of incidents_list.json / incident_get.json)."""
        resolved = view.incident_resolved(inc)
        detected = inc.detected_at if inc.detected_at <= view.as_of else None
        modified = view.as_of if just_updated else incident_modified_at(inc, view)
        state = "resolved" if resolved else "active"
        commander = user_uuid(inc.commander_id)
        impact_end = inc.resolved_at if inc.customer_impacted and resolved else None

        def seconds(a: datetime | None, b: datetime | None) -> int:
            return int((b - a).total_seconds()) if a is not None and b is not None else 0

        fields = {
            "severity": {"type": "dropdown", "value": inc.severity},
            "state": {"type": "dropdown", "value": state},
            "detection_method": {"type": "dropdown", "value": "monitor"},
            "root_cause": {"type": "textbox", "value": None},
            "summary": {"type": "textbox", "value": None},
            "services": {"type": "autocomplete", "value": [inc.service]},
            "teams": {"type": "autocomplete", "value": [team_handle(self.world, inc.service)]},
            "slug": {"type": "textbox", "value": f"IR-{inc.public_id}"},
        }
        attributes = {
            "public_id": inc.public_id,
            "incident_type_uuid": INCIDENT_TYPE_UUID,
            "title": inc.title,
            "resolved": iso_us(inc.resolved_at) if resolved and inc.resolved_at else None,
            "customer_impact_scope": f"Requests to {inc.service} failed" if inc.customer_impacted else None,
            "customer_impact_start": iso_us(inc.created_at) if inc.customer_impacted else None,
            "customer_impact_end": iso_us(impact_end) if impact_end else None,
            "customer_impacted": inc.customer_impacted,
            "notification_handles": None,
            "last_modified_by_uuid": commander,
            "created": iso_us(inc.created_at),
            "modified": iso_us(modified),
            "detected": iso_us(detected) if detected else None,
            "created_by_uuid": commander,
            "creation_idempotency_key": None,
            "customer_impact_duration": seconds(inc.created_at, impact_end),
            "time_to_detect": seconds(inc.created_at, detected),
            "time_to_repair": seconds(detected, inc.resolved_at) if inc.customer_impacted and resolved else 0,
            "time_to_internal_response": 0,
            "time_to_resolve": seconds(inc.created_at, inc.resolved_at) if resolved else 0,
            "archived": None,
            "is_test": False,
            "declared": iso_us(inc.created_at),
            "declared_by_uuid": commander,
            "fields": fields,
            "field_analytics": None,
            "severity": inc.severity,
            "state": state,
            "non_datadog_creator": None,
            "visibility": "organization",
            "case_id": None,
        }

        def user(uid: str) -> dict[str, Any]:
            return {"data": {"type": "users", "id": uid}}

        relationships = {
            "created_by_user": user(commander),
            "last_modified_by_user": user(commander),
            "commander_user": user(commander),
            "declared_by_user": user(commander),
            "user_defined_fields": {
                "data": [
                    {"type": "user_defined_field", "id": str(uuid.uuid5(_NAMESPACE, f"field:{name}"))}
                    for name in _INCIDENT_FIELDS
                ]
            },
            "integrations": {"data": []},
            "attachments": {"data": []},
            # The commander responds (incidents_list.json records one `incident_responders` entry).
            "responders": {
                "data": [
                    {"type": "incident_responders", "id": str(uuid.uuid5(_NAMESPACE, f"responder:{inc.incident_id}"))}
                ]
            },
            "impacts": {"data": []},
        }
        return {"type": "incidents", "id": inc.incident_id, "attributes": attributes, "relationships": relationships}

    # -- monitors ---------------------------------------------------------------------------------

    def list_monitors(self, request: Request) -> Response:
        group_states = request.arg("group_states")
        if group_states is not None:
            allowed = {"all", "alert", "warn", "no data"}
            if any(s.strip().lower() not in allowed for s in group_states.split(",")):
                raise HTTPError(400, "Invalid group_state filters.")
        monitors = sorted(request.view.monitors(), key=lambda m: m.monitor_id)
        if request.arg("page") is None:  # without `page`, every monitor comes back unpaginated
            page = monitors
            offset = 0
        else:
            size = request.int_arg("page_size", MONITORS_DEFAULT_PAGE, minimum=1)
            if size > MONITORS_MAX_PAGE:
                raise HTTPError(400, f"page_size must be <= {MONITORS_MAX_PAGE}")
            offset = request.int_arg("page", 0) * size
            page = page_slice(monitors, offset, size, request)
        mutated = self._mutated_index(request, len(page))
        return json_response(
            [self.monitor_json(m, request.view, just_updated=k == mutated) for k, m in enumerate(page)]
        )

    def monitor_json(self, monitor: Monitor, view: WorldView, *, just_updated: bool = False) -> dict[str, Any]:
        """One v1 monitor as of `view.as_of` (shape of monitors_list_page0.json)."""
        state, state_since = self.monitor_state(monitor, view.as_of)
        creator = self._people[monitor.creator_id]
        threshold = float(monitor.query.rsplit(">", 1)[1])
        return {
            "id": monitor.monitor_id,
            "org_id": ORG_ID,
            "type": monitor.monitor_type,
            "name": monitor.name,
            "message": f"{monitor.name}. Notify @slack-{team_handle(self.world, monitor.service)}",
            "tags": list(monitor.tags),
            "query": monitor.query,
            "options": {
                "notify_audit": False,
                "locked": False,
                "include_tags": True,
                "thresholds": {"critical": threshold},
                "new_host_delay": 300,
                "require_full_window": False,
                "notify_no_data": False,
                "silenced": {},
            },
            "multi": False,
            "created_at": epoch_ms(monitor.created_at),
            "created": iso_us(monitor.created_at),
            "modified": iso_us(view.as_of if just_updated else monitor.modified_at),
            "deleted": None,
            "restricted_roles": None,
            "priority": None,
            "overall_state_modified": iso_s(state_since),
            "overall_state": state,
            "creator": {
                "name": creator.name,
                "handle": creator.email,
                "email": creator.email,
                "id": user_int_id(creator),
            },
            "matching_downtimes": [],
        }

    def monitor_state(self, monitor: Monitor, at: datetime) -> tuple[str, datetime]:
        """(`Alert` or `OK`, when it last changed): Alert while an incident of its service is open."""
        changes = [monitor.created_at]
        alert = False
        for inc in self.world.incidents:
            if inc.service != monitor.service or inc.created_at > at:
                continue
            changes.append(inc.created_at)
            if inc.resolved_at is not None and inc.resolved_at <= at:
                changes.append(inc.resolved_at)
            alert = alert or incident_is_open(inc, at)
        return ("Alert" if alert else "OK"), max(changes)

    # -- SLOs -------------------------------------------------------------------------------------

    def list_slos(self, request: Request) -> Response:
        limit = request.int_arg("limit", SLOS_DEFAULT_LIMIT, minimum=1)
        offset = request.int_arg("offset", 0)
        slos = sorted(request.view.slos(), key=lambda s: (s.created_at, s.slo_id))
        page = page_slice(slos, offset, limit, request)
        mutated = self._mutated_index(request, len(page))
        data = [self.slo_json(s, request.view, just_updated=k == mutated) for k, s in enumerate(page)]
        total = len(slos)
        return json_response(
            {"data": data, "error": None, "metadata": {"page": {"total_count": total, "total_filtered_count": total}}}
        )

    def slo_json(self, slo: Slo, view: WorldView | None = None, *, just_updated: bool = False) -> dict[str, Any]:
        """One v1 metric SLO (shape of slo_list_page0.json); created_at/modified_at are epoch SECONDS."""
        creator = self._people[slo.creator_id]
        modified = view.as_of if just_updated and view is not None else slo.modified_at
        numerator, denominator = self._slo_queries(slo)
        return {
            "id": slo.slo_id,
            "name": slo.name,
            "tags": slo_tags(self.world, slo),
            "monitor_tags": [],
            "thresholds": [self._threshold(slo)],
            "type": "metric",
            "type_id": 1,
            "description": f"Share of {slo.service} requests that did not fail",
            "timeframe": SLO_TARGET_TIMEFRAME,
            "warning_threshold": SLO_WARNING,
            "target_threshold": float(slo.target),
            "query": {"denominator": denominator, "numerator": numerator},
            "creator": {"name": creator.name, "handle": creator.email, "email": creator.email},
            "created_at": int(slo.created_at.timestamp()),
            "modified_at": int(modified.timestamp()),
        }

    @staticmethod
    def _threshold(slo: Slo) -> dict[str, Any]:
        return {
            "timeframe": SLO_TARGET_TIMEFRAME,
            "target": float(slo.target),
            "target_display": f"{slo.target:g}",
            "warning": SLO_WARNING,
            "warning_display": f"{SLO_WARNING:g}",
        }

    @staticmethod
    def _slo_queries(slo: Slo) -> tuple[str, str]:
        total = f"sum:trace.http.request.hits{{service:{slo.service}}}.as_count()"
        good = f"sum:trace.http.request.hits{{service:{slo.service},!http.status_class:5xx}}.as_count()"
        return good, total

    def slo_history(self, request: Request, slo_id: str) -> Response:
        slo = self._slos.get(slo_id)
        if slo is None or slo.created_at > request.view.as_of:
            raise HTTPError(404, "SLO not found")
        from_ts = self._required_int(request, "from_ts")
        to_ts = self._required_int(request, "to_ts")
        if to_ts <= from_ts:
            raise HTTPError(400, "to_ts must be after from_ts")
        return json_response(self.slo_history_body(slo, from_ts, to_ts, request.view.as_of))

    @staticmethod
    def _required_int(request: Request, name: str) -> int:
        if not request.arg(name):
            raise HTTPError(400, f"Missing required parameter {name}")
        return request.int_arg(name, 0)

    def history_points(self, slo: Slo, from_ts: int, to_ts: int, as_of: datetime) -> list[tuple[int, float, float]]:
        """(bucket start epoch s, good, total) for each complete bucket overlapping [from_ts, to_ts).

        Buckets are aligned to the interval (so to UTC midnight for a day or less); only buckets that
        ended by as-of and days inside the world's history (from the SLO's creation) have data.
        """
        interval = history_interval(to_ts - from_ts)
        start = self.world.config.start_at
        first_day = max(utc(slo.created_at.date()) + timedelta(days=1), start)
        points: list[tuple[int, float, float]] = []
        bucket = from_ts - from_ts % interval
        while bucket < to_ts and bucket + interval <= as_of.timestamp():
            good = total = 0.0
            if interval <= 86400:  # a sub-day bucket gets its share of the day it lies in
                days, share = [bucket - bucket % 86400], interval / 86400
            else:
                days, share = list(range(bucket, bucket + interval, 86400)), 1.0
            for day_start in days:
                day = datetime.fromtimestamp(day_start, UTC)
                index = (day - start).days
                if day < first_day or not 0 <= index < len(slo.daily_sli):
                    continue
                day_good, day_total = daily_counts(slo, index)
                good += day_good * share
                total += day_total * share
            if total:
                points.append((bucket, good, total))
            bucket += interval
        return points

    def slo_history_body(self, slo: Slo, from_ts: int, to_ts: int, as_of: datetime) -> dict[str, Any]:
        """The v1 history of a metric SLO (shape of slo_history.json), from the world's daily SLIs."""
        interval = history_interval(to_ts - from_ts)
        points = self.history_points(slo, from_ts, to_ts, as_of)
        numerator_q, denominator_q = self._slo_queries(slo)
        good_sum = sum(p[1] for p in points)
        total_sum = sum(p[2] for p in points)
        sli = round(100.0 * good_sum / total_sum, 6) if total_sum else None
        if sli is None:
            state, errors = "no_data", [{"error_message": "No data in the query window", "error_type": "NO_DATA"}]
        else:
            state = "breached" if sli < slo.target else "warning" if sli < SLO_WARNING else "ok"
            errors = None

        def series_side(values: list[float], query: str, index: int) -> dict[str, Any]:
            scope = query.split("{", 1)[1].split("}", 1)[0]
            return {
                "values": values,
                "metadata": {
                    "unit": None,
                    "query_index": index,
                    "aggr": "sum",
                    "metric": "trace.http.request.hits",
                    "tag_set": [],
                    "expression": query,
                    "scope": scope,
                },
                "sum": float(sum(values)),
                "count": len(values),
            }

        threshold = self._threshold(slo)
        return {
            "data": {
                "thresholds": {SLO_TARGET_TIMEFRAME: threshold},
                "from_ts": from_ts,
                "to_ts": to_ts,
                "type": "metric",
                "type_id": 1,
                "slo": self.slo_json(slo),
                "group_by": [],
                "series": {
                    "timing": "0.0123",
                    "res_type": "time_series",
                    "resp_version": 2,
                    "query": f"{numerator_q}, {denominator_q}",
                    "from_date": from_ts * 1000,
                    "to_date": to_ts * 1000,
                    "message": "",
                    "interval": interval,
                    "times": [float(p[0] * 1000) for p in points],
                    "numerator": series_side([p[1] for p in points], numerator_q, 0),
                    "denominator": series_side([p[2] for p in points], denominator_q, 1),
                    "numerator_query": numerator_q,
                    "denominator_query": denominator_q,
                    "bad_series_query": f"{denominator_q} - {numerator_q}",
                    "graph_query": f"{numerator_q}, {denominator_q} - {numerator_q}",
                },
                "overall": {
                    "errors": errors,
                    "sli_value": sli,
                    "span_precision": 2,
                    "precision": {SLO_TARGET_TIMEFRAME: 2},
                    "uptime": None,
                    "corrections": [],
                    "state": state,
                },
            },
            "errors": None,
        }

    # -- events -----------------------------------------------------------------------------------

    def list_events(self, request: Request) -> Response:
        now = request.view.as_of
        start = parse_event_time(request.arg("filter[from]") or "now-15m", now, "filter[from]")
        end = parse_event_time(request.arg("filter[to]") or "now", now, "filter[to]")
        limit = request.int_arg("page[limit]", EVENTS_DEFAULT_PAGE, minimum=1)
        if limit > EVENTS_MAX_PAGE:
            raise HTTPError(400, f"page[limit] must be <= {EVENTS_MAX_PAGE}")
        sort = request.arg("sort") or "-timestamp"  # newest first unless asked (events_v2_list_page0.json)
        if sort not in ("timestamp", "-timestamp"):
            raise HTTPError(400, f"Invalid sort {sort!r}")
        services = query_services(request.arg("filter[query]"))
        events = [
            e
            for e in request.view.datadog_events()
            if start <= e.at <= end and (services is None or e.service in services)
        ]
        events.sort(key=_event_key, reverse=sort == "-timestamp")
        offset = 0
        cursor = request.arg("page[cursor]")
        if cursor:
            after = _decode_cursor(cursor)
            keys = [_event_key(e) for e in events]
            offset = next(
                (k for k, key in enumerate(keys) if (key > after if sort == "timestamp" else key < after)), len(keys)
            )
        page = page_slice(events, offset, limit, request)
        if not page:
            return json_response({"data": []})  # the recorded end of the list: nothing else
        after_token = _encode_cursor(_event_key(page[-1]))
        params = {k: v[0] for k, v in request.query.items() if k != "page[cursor]"}
        return json_response(
            {
                "meta": {"page": {"after": after_token}},
                "data": [self.event_json(e) for e in page],
                "links": {"next": request.url("/api/v2/events", {**params, "page[cursor]": after_token})},
            }
        )

    def event_json(self, event: DatadogEvent) -> dict[str, Any]:
        """One v2 event (shape of events_v2_list_page0.json)."""
        return {
            "attributes": {
                "attributes": {
                    "status": event.alert_type,
                    "event_object": event.event_id,
                    "service": event.service,
                    "title": event.title,
                    "timestamp": epoch_ms(event.at),
                    "hostname": f"{event.service}-prod",
                    "priority": "normal",
                    "aggregation_key": event.event_id,
                    "evt": {
                        "source_id": 100 if event.source == "deployment" else 36,
                        "type": "api",
                        "id": event_numeric_id(event),
                    },
                },
                "message": event.text,
                "tags": [*event.tags, f"source:{event.source}"],
                "timestamp": iso_z(event.at),
            },
            "type": "event",
            "id": event_v2_id(event),
        }

    # -- faults -----------------------------------------------------------------------------------

    @staticmethod
    def _mutated_index(request: Request, page_len: int) -> int | None:
        """Under the `mutate` fault, one record of the page is rendered as updated just now."""
        if "mutate" not in request.faults or page_len == 0:
            return None
        digest = hashlib.sha256(f"{request.path}?{sorted(request.query.items())}".encode()).digest()
        return digest[0] % page_len
