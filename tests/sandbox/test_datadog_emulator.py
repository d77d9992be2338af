"""The Datadog emulator: payloads match the real recordings, paging/auth/rate limits follow Datadog's
contract (docs/source-apis.md §5, facts 3, 8, 9), and every answer is the world as of the server's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import contract_catalogue as catalogue
import orjson
import pytest
import requests

from pipelines.sandbox.contract import align, compare, load_fixture, recorded_interactions
from pipelines.sandbox.datadog import (
    DatadogEmulator,
    daily_counts,
    event_v2_id,
    history_interval,
    parse_event_time,
    query_services,
)
from pipelines.sandbox.faults import FaultPlan
from pipelines.sandbox.http import HTTPError, Request
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import Incident, World, utc
from pipelines.sources.http import POLICIES

KEYS = {"DD-API-KEY": "k" * 32, "DD-APPLICATION-KEY": "a" * 40}
SERVED = {
    "/api/v2/incidents",
    "/api/v2/incidents/{incident_id}",
    "/api/v1/monitor",
    "/api/v1/slo",
    "/api/v1/slo/{slo_id}/history",
    "/api/v2/events",
}
DATADOG_ENDPOINTS = [e for e in catalogue.DATADOG if e.path in SERVED and e.method == "GET"]
# The world's SLOs are all metric SLOs (good/total request counts); `monitor_ids` exists only on
# monitor SLOs (slo_list_page1.json), so it is the one recorded path the sandbox never shows.
EXTRA_IGNORE = {"datadog/slo_list_page1.json": ("data[].monitor_ids",)}


class Client:
    """A tiny authenticated client of one emulator instance."""

    def __init__(self, server: SandboxServer) -> None:
        self.base = f"{server.url}/datadog"
        self.session = requests.Session()
        self.session.headers.update(KEYS)

    def get(self, path: str, **params: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}{path}"
        return self.session.get(url, params=params or None, timeout=10)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response.json()


@pytest.fixture(scope="module")
def dd(sandbox: SandboxServer) -> Client:
    return Client(sandbox)


@pytest.fixture(scope="module")
def emulator(world: World) -> DatadogEmulator:
    return DatadogEmulator(world)


def _request(world: World, path: str, as_of: datetime, faults: frozenset[str] = frozenset(), **query: Any) -> Request:
    """A request as the server core would build it, to call handlers directly (no HTTP)."""
    return Request(
        "datadog",
        "GET",
        path,
        {k: [str(v)] for k, v in query.items()},
        KEYS,
        "http://sandbox/datadog",
        world.visible(as_of),
        faults=faults,
    )


def _world_window(world: World) -> dict[str, str]:
    return {"filter[from]": world.config.start_at.isoformat(), "filter[to]": "now"}


# --------------------------------------------------------------------------------------------------
# (1) Contract: emulated payloads against every real recording of a served endpoint
# --------------------------------------------------------------------------------------------------


def test_every_core_datadog_endpoint_is_served() -> None:
    core = {e.path for e in catalogue.DATADOG if e.core}
    assert core <= SERVED
    assert {e.path for e in DATADOG_ENDPOINTS} == SERVED


def _emulated(dd: Client, world: World, fixture_file: str) -> tuple[int, Any]:
    """The emulator's answer to the request the fixture recorded, with world ids and times."""
    name = fixture_file.split("/", 1)[1]
    if name == "incidents_list.json":  # no query: the default page of 10, more to come (next_offset)
        return 200, dd.json("/api/v2/incidents")
    if name == "incidents_list_page0.json":
        return 200, dd.json("/api/v2/incidents", **{"page[size]": 2})
    if name == "incidents_list_page1.json":
        return 200, dd.json("/api/v2/incidents", **{"page[size]": 2, "page[offset]": 2})
    if name == "incident_get.json":
        return 200, dd.json(f"/api/v2/incidents/{world.incidents[-1].incident_id}")
    if name == "monitors_list_page0.json":
        return 200, dd.json("/api/v1/monitor", page_size=2, page=0)
    if name == "monitors_list_page1.json":
        return 200, dd.json("/api/v1/monitor", page_size=2, page=1)
    if name == "monitors_list_400_error.json":
        response = dd.get("/api/v1/monitor", group_states="notagroupstate")
        return response.status_code, response.json()
    if name == "slo_list_page0.json":
        return 200, dd.json("/api/v1/slo", limit=2)
    if name == "slo_list_page1.json":
        return 200, dd.json("/api/v1/slo", limit=2, offset=2)
    if name == "slo_history.json":
        day = world.config.start_at + timedelta(days=100)
        ts = int(day.timestamp())
        return 200, dd.json(f"/api/v1/slo/{world.slos[0].slo_id}/history", from_ts=ts, to_ts=ts + 86400)
    if name.startswith("events_v2_list_page"):
        first = dd.json("/api/v2/events", **_world_window(world), **{"page[limit]": 2})
        if name == "events_v2_list_page0.json":
            return 200, first
        second = dd.get(first["links"]["next"]).json()
        if name == "events_v2_list_page1.json":
            return 200, second
        everything = dd.json("/api/v2/events", **_world_window(world), **{"page[limit]": 1000})
        return 200, dd.get(everything["links"]["next"]).json()
    raise AssertionError(f"no emulated request for {fixture_file}")


@pytest.mark.parametrize(
    ("endpoint", "fixture"),
    [(e, f) for e in DATADOG_ENDPOINTS for f in e.fixtures],
    ids=lambda v: getattr(v, "file", None) or getattr(v, "route", ""),
)
def test_payload_matches_recording(dd: Client, world: World, endpoint: Any, fixture: Any) -> None:
    recorded = load_fixture(catalogue.FIXTURES_ROOT / fixture.file)
    status, body = _emulated(dd, world, fixture.file)
    assert status == fixture.status
    rec, emu = align(fixture.shape, recorded, body, endpoint.items_path)
    options = endpoint.options(fixture)
    options["ignore"] = options["ignore"] + EXTRA_IGNORE.get(fixture.file, ())
    assert compare(rec, emu, **options) == []


def test_end_of_events_is_exactly_an_empty_data(dd: Client, world: World) -> None:
    """compare() cannot see absent keys: the recorded final page has no meta and no links at all."""
    everything = dd.json("/api/v2/events", **_world_window(world), **{"page[limit]": 1000})
    assert everything["data"]
    assert dd.get(everything["links"]["next"]).json() == load_fixture(
        catalogue.FIXTURES_ROOT / "datadog/events_v2_list_page2_empty.json"
    )


def test_last_incidents_page_has_no_next_offset(dd: Client, world: World) -> None:
    total = len(world.visible().incidents())
    first = dd.json("/api/v2/incidents", **{"page[size]": total - 1})
    assert first["meta"]["pagination"] == {"offset": 0, "size": total - 1, "next_offset": total - 1}
    last = dd.json("/api/v2/incidents", **{"page[size]": total - 1, "page[offset]": total - 1})
    assert last["meta"]["pagination"] == {"offset": total - 1, "size": 1}  # as incidents_list_page1.json


def test_rate_limit_answer_matches_the_recorded_429(world: World) -> None:
    recorded = recorded_interactions(
        load_fixture(catalogue.FIXTURES_ROOT / "datadog/rate_limit_429_then_200_logs_events.recorded.json")
    )[0]
    with SandboxServer(world, faults=FaultPlan({"rate_limit": 1.0}, seed=3)) as server:
        client = Client(server)
        limited = client.get("/api/v1/slo")
        for _ in range(server.faults.max_consecutive - 1):
            client.get("/api/v1/slo")
        after = client.get("/api/v1/slo")
    assert limited.status_code == recorded["status"] == 429
    assert limited.content == b""  # the recorded 429 bodies are empty
    names = set(catalogue.HEADERS_COMPARED["datadog"])
    assert {h for h in recorded["headers"] if h in names} <= {h.lower() for h in limited.headers}
    assert limited.headers["Content-Type"].startswith("application/json")
    assert limited.headers["X-RateLimit-Reset"] == "1"  # seconds until reset, kept short for tests
    assert int(limited.headers["X-RateLimit-Remaining"]) > 0  # as recorded: 429 with remaining 9
    hit = POLICIES["datadog"].classify(429, limited.headers, limited.content, 0.0)
    assert hit is not None and hit.wait == 1.0
    assert after.status_code == 200  # never more than max_consecutive faults in a row
    assert {h.lower() for h in after.headers} >= names - {"content-type"}


# --------------------------------------------------------------------------------------------------
# (2) Auth, errors and headers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["DD-API-KEY", "DD-APPLICATION-KEY"])
def test_a_missing_key_is_forbidden(sandbox: SandboxServer, missing: str) -> None:
    headers = {k: v for k, v in KEYS.items() if k != missing}
    response = requests.get(f"{sandbox.url}/datadog/api/v2/incidents", headers=headers, timeout=10)
    assert response.status_code == 403
    assert response.json() == {"errors": ["Forbidden"]}


def test_every_answer_carries_rate_limit_headers(dd: Client) -> None:
    response = dd.get("/api/v2/incidents")
    limit = int(response.headers["X-RateLimit-Limit"])
    assert 0 <= int(response.headers["X-RateLimit-Remaining"]) < limit
    assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= int(response.headers["X-RateLimit-Period"])
    assert response.headers["X-RateLimit-Name"]


def test_errors_use_datadogs_body(dd: Client, world: World) -> None:
    missing = dd.get("/api/v2/incidents/00000000-0000-0000-0000-000000000000")
    assert (missing.status_code, missing.json()) == (404, {"errors": ["Not found"]})
    too_big = dd.get("/api/v2/incidents", **{"page[size]": 101})
    assert too_big.status_code == 400 and "page[size]" in too_big.json()["errors"][0]
    bad_cursor = dd.get("/api/v2/events", **{"page[cursor]": "not-a-cursor"})
    assert bad_cursor.status_code == 400 and "invalid cursor" in bad_cursor.json()["errors"][0]
    no_window = dd.get(f"/api/v1/slo/{world.slos[0].slo_id}/history", from_ts=1)
    assert no_window.status_code == 400


def test_env_names_the_sources_configuration(world: World) -> None:
    env = DatadogEmulator(world).env()
    assert set(env) == {
        "SOURCES__DATADOG__API_KEY",
        "SOURCES__DATADOG__APPLICATION_KEY",
        "SOURCES__DATADOG__START_DATE",
    }
    assert env["SOURCES__DATADOG__START_DATE"] == world.config.start_at.date().isoformat()


# --------------------------------------------------------------------------------------------------
# (3) Paging
# --------------------------------------------------------------------------------------------------


def test_incident_pages_follow_next_offset_and_cover_every_incident(dd: Client, world: World) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"page[size]": 4}
    while True:
        body = dd.json("/api/v2/incidents", **params)
        seen += [i["id"] for i in body["data"]]
        if "next_offset" not in body["meta"]["pagination"]:
            break
        params["page[offset]"] = body["meta"]["pagination"]["next_offset"]
    assert seen == [i.incident_id for i in sorted(world.incidents, key=lambda i: i.public_id)]
    assert dd.json("/api/v2/incidents")["meta"]["pagination"]["size"] == 10  # default page[size]


def test_monitors_unpaginated_without_page_and_a_short_page_ends_the_list(dd: Client, world: World) -> None:
    every = dd.json("/api/v1/monitor")
    assert [m["id"] for m in every] == sorted(m.monitor_id for m in world.monitors)
    pages, page = [], 0
    while True:
        items = dd.json("/api/v1/monitor", page=page, page_size=10)
        pages.append(items)
        if len(items) < 10:
            break
        page += 1
    assert [m["id"] for p in pages for m in p] == [m["id"] for m in every]
    assert dd.get("/api/v1/monitor", page=0, page_size=1001).status_code == 400


def test_slo_pages_report_the_total(dd: Client, world: World) -> None:
    first = dd.json("/api/v1/slo", limit=3)
    assert first["metadata"]["page"]["total_count"] == len(world.slos)
    ids = [
        s["id"]
        for offset in range(0, len(world.slos), 3)
        for s in dd.json("/api/v1/slo", limit=3, offset=offset)["data"]
    ]
    assert sorted(ids) == sorted(s.slo_id for s in world.slos)


def test_event_cursor_pages_cover_the_window_once_in_order(dd: Client, world: World) -> None:
    ids: list[str] = []
    times: list[int] = []
    body = dd.json("/api/v2/events", **_world_window(world), sort="timestamp", **{"page[limit]": 25})
    while body["data"]:
        ids += [e["id"] for e in body["data"]]
        times += [e["attributes"]["attributes"]["timestamp"] for e in body["data"]]
        assert body["meta"]["page"]["after"] in body["links"]["next"]
        body = dd.json(
            "/api/v2/events",
            **_world_window(world),
            sort="timestamp",
            **{
                "page[limit]": 25,
                "page[cursor]": body["meta"]["page"]["after"],
            },
        )
    assert times == sorted(times)
    assert ids == [event_v2_id(e) for e in sorted(world.datadog_events, key=lambda e: (e.at, e.event_id))]
    newest_first = dd.json("/api/v2/events", **_world_window(world), **{"page[limit]": 1000})
    assert [e["id"] for e in newest_first["data"]] == ids[::-1]  # default sort is -timestamp


def test_event_filters_take_ms_iso_and_date_math(dd: Client, world: World) -> None:
    now = world.config.end_at
    assert parse_event_time("now", now, "f") == now
    assert parse_event_time("now-15m", now, "f") == now - timedelta(minutes=15)
    assert parse_event_time("now-2d", now, "f") == now - timedelta(days=2)
    assert parse_event_time("1655744852000", now, "f") == datetime(2022, 6, 20, 17, 7, 32, tzinfo=UTC)
    assert parse_event_time("2022-06-20T17:07:32Z", now, "f") == datetime(2022, 6, 20, 17, 7, 32, tzinfo=UTC)
    with pytest.raises(HTTPError):
        parse_event_time("yesterday", now, "f")
    event = world.datadog_events[len(world.datadog_events) // 2]
    ms = int(event.at.timestamp() * 1000)
    exact = dd.json("/api/v2/events", **{"filter[from]": ms, "filter[to]": event.at.isoformat(), "page[limit]": 1000})
    assert event_v2_id(event) in [e["id"] for e in exact["data"]]
    assert all(e["attributes"]["attributes"]["timestamp"] == ms for e in exact["data"])


def test_event_query_selects_services(dd: Client, world: World) -> None:
    assert query_services("service:(web-app OR gateway)") == {"web-app", "gateway"}
    assert query_services("service:web-app") == {"web-app"}
    assert query_services(None) is None
    body = dd.json(
        "/api/v2/events", **_world_window(world), **{"page[limit]": 1000, "filter[query]": "service:web-app"}
    )
    assert body["data"] and {e["attributes"]["attributes"]["service"] for e in body["data"]} == {"web-app"}
    assert len(body["data"]) == sum(1 for e in world.datadog_events if e.service == "web-app")


# --------------------------------------------------------------------------------------------------
# (4) As-of rendering
# --------------------------------------------------------------------------------------------------


def _spanning_incident(world: World) -> Incident:
    """An incident that is open for a while and then resolved inside the world."""
    return next(i for i in world.incidents if i.resolved_at and i.resolved_at - i.detected_at > timedelta(minutes=5))


def test_incident_and_monitor_state_follow_the_clock(emulator: DatadogEmulator, world: World) -> None:
    inc = _spanning_incident(world)
    assert inc.resolved_at is not None
    during = inc.detected_at + (inc.resolved_at - inc.detected_at) / 2
    after = inc.resolved_at + timedelta(minutes=1)
    open_ = emulator.incident_json(inc, world.visible(during))["attributes"]
    closed = emulator.incident_json(inc, world.visible(after))["attributes"]
    assert (open_["state"], open_["resolved"], open_["fields"]["state"]["value"]) == ("active", None, "active")
    assert open_["time_to_resolve"] == 0
    assert datetime.fromisoformat(open_["modified"]) <= during
    assert closed["state"] == "resolved" == closed["fields"]["state"]["value"]
    assert datetime.fromisoformat(closed["resolved"]) == inc.resolved_at
    assert datetime.fromisoformat(closed["modified"]) == inc.resolved_at
    assert closed["time_to_resolve"] == int((inc.resolved_at - inc.created_at).total_seconds())
    assert open_["fields"]["services"]["value"] == [inc.service]  # where a client finds the service
    monitors = [m for m in world.monitors if m.service == inc.service]
    assert monitors
    others_open = any(
        o is not inc and o.service == inc.service and o.created_at <= during and (o.resolved_at or after) > during
        for o in world.incidents
    )
    for m in monitors:
        state, since = emulator.monitor_state(m, during)
        assert state == "Alert" and since <= during
        if not others_open:
            assert emulator.monitor_state(m, after)[0] == "OK"


def test_nothing_from_after_as_of_is_served(world: World) -> None:
    as_of = world.config.start_at + timedelta(days=120, hours=6)
    with SandboxServer(world, as_of=as_of) as server:
        client = Client(server)
        incidents = client.json("/api/v2/incidents", **{"page[size]": 100})["data"]
        events = client.json(
            "/api/v2/events", **{"filter[from]": "now-400d", "filter[to]": "now-0d", "page[limit]": 1000}
        )
        slo = world.slos[0]
        ts = int(as_of.timestamp())
        history = client.json(f"/api/v1/slo/{slo.slo_id}/history", from_ts=ts - 3 * 86400, to_ts=ts + 3 * 86400)
    assert {i["id"] for i in incidents} == {i.incident_id for i in world.incidents if i.created_at <= as_of}
    assert all(datetime.fromisoformat(i["attributes"]["modified"]) <= as_of for i in incidents)
    assert {e["id"] for e in events["data"]} == {event_v2_id(e) for e in world.datadog_events if e.at <= as_of}
    times = history["data"]["series"]["times"]
    assert times and max(times) / 1000 + history["data"]["series"]["interval"] <= ts  # only complete buckets


# --------------------------------------------------------------------------------------------------
# (5) SLO history
# --------------------------------------------------------------------------------------------------


def test_history_series_reproduce_the_daily_sli(emulator: DatadogEmulator, world: World) -> None:
    slo = world.slos[1]
    start = world.config.start_at + timedelta(days=40)
    ts = int(start.timestamp())
    body = emulator.slo_history_body(slo, ts, ts + 7 * 86400, world.config.end_at)["data"]
    series = body["series"]
    assert series["interval"] == 86400
    assert series["times"] == [float((ts + k * 86400) * 1000) for k in range(7)]
    for k, (good, total) in enumerate(zip(series["numerator"]["values"], series["denominator"]["values"], strict=True)):
        assert 100 * good / total == pytest.approx(slo.daily_sli[40 + k], abs=1e-9)
    days = [daily_counts(slo, 40 + k) for k in range(7)]
    assert body["overall"]["sli_value"] == pytest.approx(100 * sum(g for g, _ in days) / sum(t for _, t in days))
    assert body["slo"]["id"] == slo.slo_id


def test_history_resolution_coarsens_with_the_window(emulator: DatadogEmulator, world: World) -> None:
    assert history_interval(86400) == 7200  # as recorded: a 1-day window at 2-hour resolution
    assert history_interval(7 * 86400) == 86400
    assert history_interval(60 * 86400) > 86400  # long windows cannot be split into days
    slo = world.slos[2]
    ts = int((world.config.start_at + timedelta(days=10)).timestamp())
    hourly = emulator.slo_history_body(slo, ts, ts + 86400, world.config.end_at)["data"]["series"]
    assert len(hourly["times"]) == 12
    assert sum(hourly["numerator"]["values"]) / sum(hourly["denominator"]["values"]) * 100 == pytest.approx(
        slo.daily_sli[10], abs=1e-9
    )


def test_history_before_the_world_has_no_data(emulator: DatadogEmulator, world: World) -> None:
    ts = int((world.config.start_at - timedelta(days=30)).timestamp())
    body = emulator.slo_history_body(world.slos[0], ts, ts + 7 * 86400, world.config.end_at)["data"]
    assert body["series"]["times"] == []
    assert body["overall"]["sli_value"] is None and body["overall"]["state"] == "no_data"


# --------------------------------------------------------------------------------------------------
# (6) Faults: `mutate` only moves the update time
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "items", "modified"),
    [
        ("/api/v2/incidents", {"page[size]": 100}, lambda b: b["data"], lambda i: i["attributes"].pop("modified")),
        ("/api/v1/monitor", {"page": 0, "page_size": 100}, lambda b: b, lambda m: m.pop("modified")),
        ("/api/v1/slo", {"limit": 100}, lambda b: b["data"], lambda s: s.pop("modified_at")),
    ],
)
def test_mutate_changes_only_the_update_time(
    emulator: DatadogEmulator, world: World, path: str, query: dict[str, Any], items: Any, modified: Any
) -> None:
    as_of = world.config.end_at
    handler = {r.pattern.pattern: r.handler for r in emulator.route_table()}[f"^{path}/?$"]
    plain = items(orjson.loads(handler(_request(world, path, as_of, **query)).body))
    mutated = items(orjson.loads(handler(_request(world, path, as_of, frozenset({"mutate"}), **query)).body))
    before = [modified(i) for i in plain]
    after = [modified(i) for i in mutated]
    changed = [k for k, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert len(changed) == 1
    assert after[changed[0]] in (as_of.isoformat(timespec="microseconds"), int(as_of.timestamp()))
    assert plain == mutated  # everything but the update time is identical


def test_duplicate_repeats_the_previous_pages_last_record(emulator: DatadogEmulator, world: World) -> None:
    handler = {r.pattern.pattern: r.handler for r in emulator.route_table()}["^/api/v2/incidents/?$"]
    as_of = world.config.end_at
    first = orjson.loads(handler(_request(world, "/api/v2/incidents", as_of, **{"page[size]": 3})).body)
    second = orjson.loads(
        handler(
            _request(
                world, "/api/v2/incidents", as_of, frozenset({"duplicate"}), **{"page[size]": 3, "page[offset]": 3}
            )
        ).body
    )
    assert second["data"][0]["id"] == first["data"][-1]["id"]
    assert second["meta"]["pagination"]["next_offset"] == 6  # paging itself is not shifted


def test_days_are_whole_millions(world: World) -> None:
    """Good counts are whole numbers, so the SLI a client recomputes is exactly the world's."""
    slo = world.slos[0]
    for day in range(0, 365, 37):
        good, total = daily_counts(slo, day)
        assert good == int(good) and total % 1_000_000 == 0
        assert round(100 * good / total, 4) == slo.daily_sli[day]
    assert utc(world.config.start_at.date()) == world.config.start_at
