"""The Datadog dlt source against the sandbox emulator (and the real recordings) into DuckDB.

What is proved: the raw tables hold exactly the world's incidents, monitors, SLOs, daily SLIs and
events as of the server's clock (2); a nightly run after the first asks for a few % of the requests
and still ends equal to the world (3); injected faults change nothing (4); the real recordings load
through the same parsing path (5); rejected keys fail once, naming the config keys (6).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dlt
import duckdb
import pytest
import requests

import pipelines.sources.datadog as dd_source
from pipelines.sandbox.datadog import event_v2_id, team_handle
from pipelines.sandbox.faults import FAULT_KINDS, FaultPlan
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldView, utc
from pipelines.sources.datadog import (
    EventsCursorPaginator,
    NextOffsetPaginator,
    datadog_source,
    fetch_history,
    history_rows,
    history_start,
    history_windows,
    parse_services,
    parse_start_date,
)

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "datadog"
API_KEY, APP_KEY = "dd-api-key-canary-0123456789abcdef", "dd-app-key-canary-0123456789abcdef0123"


# --------------------------------------------------------------------------------------------------
# helpers: running the source, reading the warehouse, the world's truth
# --------------------------------------------------------------------------------------------------


def _pipeline(folder: Path, name: str = "dd") -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(folder / "raw.duckdb")),
        dataset_name="raw_datadog",
        pipelines_dir=str(folder / "dlt"),
    )


def _run(pipeline: dlt.Pipeline, base_url: str, **kwargs: Any) -> None:
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("application_key", APP_KEY)
    pipeline.run(datadog_source(base_url=base_url, **kwargs), loader_file_format="parquet")


def _db(folder: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(folder / "raw.duckdb"), read_only=True)


def _access(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _midnight(day: date) -> datetime:
    return utc(day)


def expected_incidents(view: WorldView) -> dict[str, tuple[str, datetime | None, str]]:
    """id → (state, resolved_at, service) as of the view."""
    return {
        i.incident_id: (
            "resolved" if view.incident_resolved(i) else "active",
            i.resolved_at if view.incident_resolved(i) else None,
            i.service,
        )
        for i in view.incidents()
    }


def expected_monitor_states(view: WorldView) -> dict[int, str]:
    """id → Alert while an incident of the monitor's service is open at as-of, else OK."""
    open_services = {
        i.service for i in view.incidents() if i.created_at <= view.as_of and not view.incident_resolved(i)
    }
    return {m.monitor_id: "Alert" if m.service in open_services else "OK" for m in view.monitors()}


def expected_history(view: WorldView, start: date, today: date) -> dict[tuple[str, date], float]:
    """(slo id, day) → SLI for every complete day from `start` before `today` that the world has."""
    world_start = view.world.config.start_at
    out: dict[tuple[str, date], float] = {}
    for slo in view.slos():
        for index, sli in enumerate(slo.daily_sli):
            day_start = world_start + timedelta(days=index)
            day = day_start.date()
            if day < start or day >= today or day_start + timedelta(days=1) > view.as_of:
                continue
            if day <= slo.created_at.date():
                continue
            out[(slo.slo_id, day)] = sli
    return out


def expected_events(view: WorldView, start: date) -> set[str]:
    return {event_v2_id(e) for e in view.datadog_events() if e.at >= _midnight(start)}


def assert_tables_equal_world(con: duckdb.DuckDBPyConnection, view: WorldView, start: date, today: date) -> None:
    """Every raw table holds exactly the world's keys and their as-of facts."""
    rows = con.execute(
        "select id, attributes__state, attributes__resolved, attributes__fields->>'$.services.value[0]' "
        "from raw_datadog.incidents"
    ).fetchall()
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == expected_incidents(view)
    assert len(rows) == len({r[0] for r in rows})
    monitors = dict(con.execute("select id, overall_state from raw_datadog.monitors").fetchall())
    assert monitors == expected_monitor_states(view)
    slos = {r[0] for r in con.execute("select id from raw_datadog.slos").fetchall()}
    assert slos == {s.slo_id for s in view.slos()}
    history = con.execute("select slo_id, day, sli_value from raw_datadog.slo_history").fetchall()
    got = {(r[0], r[1]): r[2] for r in history}
    assert len(got) == len(history)  # one row per SLO and day, however often a day was re-pulled
    want = expected_history(view, start, today)
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)
    events = [r[0] for r in con.execute("select id from raw_datadog.events").fetchall()]
    assert len(events) == len(set(events))
    assert set(events) == expected_events(view, start)


# --------------------------------------------------------------------------------------------------
# (2) One run against the shared sandbox, configured through SOURCES__DATADOG__* as at run time
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("datadog_full")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in sandbox.env().items():
            if key.startswith("SOURCES__DATADOG__"):
                mp.setenv(key, value)
        mp.setenv("SOURCES__DATADOG__API_KEY", API_KEY)  # canaries, searched for in the outputs below
        mp.setenv("SOURCES__DATADOG__APPLICATION_KEY", APP_KEY)
        _pipeline(folder).run(datadog_source(), loader_file_format="parquet")
    yield folder


def test_raw_tables_equal_the_world(loaded: Path, world: World) -> None:
    view = world.visible()
    with _db(loaded) as con:
        assert_tables_equal_world(con, view, world.config.start_at.date(), datetime.now(UTC).date())
        # every SLO day of the world's history, not just some
        assert con.execute("select count(*) from raw_datadog.slo_history").fetchall()[0][0] == 8 * 365


def test_incident_rows_keep_the_apis_times_and_fields(loaded: Path, world: World) -> None:
    inc = world.incidents[0]
    with _db(loaded) as con:
        created, modified, fields, team = con.execute(
            "select attributes__created, attributes__modified, attributes__fields, "
            "attributes__fields->>'$.teams.value[0]' from raw_datadog.incidents where id = ?",
            [inc.incident_id],
        ).fetchall()[0]
    assert created == inc.created_at and modified == inc.modified_at
    assert json.loads(fields)["severity"]["value"] == inc.severity
    assert team == team_handle(world, inc.service)


def test_no_secret_reaches_the_warehouse_or_pipeline_files(loaded: Path) -> None:
    for path in loaded.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert API_KEY.encode() not in data and APP_KEY.encode() not in data, path


def test_services_selection(sandbox: SandboxServer, world: World, tmp_path: Path) -> None:
    chosen = ["payments-api", "search-api"]
    start = (world.config.end_at - timedelta(days=20)).date()
    pipeline = _pipeline(tmp_path)
    _run(pipeline, f"{sandbox.url}/datadog", services=" payments-api, search-api ", start_date=start.isoformat())
    with _db(tmp_path) as con:
        services = {
            r[0]
            for r in con.execute(
                "select attributes__fields->>'$.services.value[0]' from raw_datadog.incidents"
            ).fetchall()
        }
        monitor_ids = {r[0] for r in con.execute("select id from raw_datadog.monitors").fetchall()}
        slo_ids = {r[0] for r in con.execute("select distinct slo_id from raw_datadog.slo_history").fetchall()}
        event_ids = {r[0] for r in con.execute("select id from raw_datadog.events").fetchall()}
    assert services == set(chosen)
    assert monitor_ids == {m.monitor_id for m in world.monitors if m.service in chosen}
    assert slo_ids == {s.slo_id for s in world.slos if s.service in chosen}
    view = world.visible()
    assert event_ids == {
        event_v2_id(e) for e in view.datadog_events() if e.service in chosen and e.at >= _midnight(start)
    }


# --------------------------------------------------------------------------------------------------
# (3) Incremental: the nightly run at D, then at D+1
# --------------------------------------------------------------------------------------------------


def test_second_nightly_run_asks_little_and_ends_equal_to_the_world(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # D: the middle of the latest incident that opens and resolves within a day, so it is open at D
    # and resolved by D+1.
    incident = max(
        (i for i in world.incidents if i.resolved_at and i.resolved_at - i.created_at < timedelta(hours=20)),
        key=lambda i: i.created_at,
    )
    assert incident.resolved_at is not None
    day_d = incident.created_at + (incident.resolved_at - incident.created_at) / 2
    day_d1 = day_d + timedelta(days=1)
    start = world.config.start_at.date()
    log = tmp_path / "access.log"
    pipeline = _pipeline(tmp_path)
    with SandboxServer(world, as_of=day_d, access_log=log) as server:
        base = f"{server.url}/datadog"
        monkeypatch.setattr(dd_source, "utc_now", lambda: day_d)
        _run(pipeline, base, start_date=start.isoformat())
        first = _access(log)
        with _db(tmp_path) as con:
            assert_tables_equal_world(con, world.visible(day_d), start, day_d.date())
            state = con.execute(
                "select attributes__state from raw_datadog.incidents where id = ?", [incident.incident_id]
            ).fetchall()
        assert state == [("active",)]

        requests.put(f"{server.url}/_sandbox/as-of", params={"at": day_d1.isoformat()}, timeout=10).raise_for_status()
        monkeypatch.setattr(dd_source, "utc_now", lambda: day_d1)
        _run(pipeline, base, start_date=start.isoformat())
        second = _access(log)[len(first) :]

    print(f"requests: first run {len(first)}, second run {len(second)}")
    assert len(second) <= 0.05 * len(first), (len(second), len(first))
    with _db(tmp_path) as con:
        assert_tables_equal_world(con, world.visible(day_d1), start, day_d1.date())
        state = con.execute(
            "select attributes__state, attributes__resolved from raw_datadog.incidents where id = ?",
            [incident.incident_id],
        ).fetchall()
        newest_ms = max(
            int(e.at.timestamp() * 1000) for e in world.visible(day_d).datadog_events() if e.at >= _midnight(start)
        )
    assert state == [("resolved", incident.resolved_at)]
    # events resume 18 h before the newest event already loaded; SLO history re-pulls 7 days
    event_calls = [r for r in second if r["path"] == "/api/v2/events"]
    assert {int(r["query"]["filter[from]"]) for r in event_calls} == {newest_ms - 18 * 3600 * 1000}
    history_from = {int(r["query"]["from_ts"]) for r in second if r["path"].endswith("/history")}
    assert history_from == {int(_midnight(day_d1.date() - timedelta(days=7)).timestamp())}


# --------------------------------------------------------------------------------------------------
# (4) Faults of every kind, a few % each
# --------------------------------------------------------------------------------------------------


def test_faults_change_nothing(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_of = world.config.end_at
    start = (as_of - timedelta(days=30)).date()
    monkeypatch.setattr(dd_source, "utc_now", lambda: as_of)  # fixed request keys, so fixed faults
    log = tmp_path / "access.log"
    plan = FaultPlan({kind: 0.04 for kind in FAULT_KINDS}, seed=5)
    with SandboxServer(world, faults=plan, access_log=log, slow_seconds=0.3) as server:
        _run(_pipeline(tmp_path), f"{server.url}/datadog", start_date=start.isoformat(), page_size=4)
    with _db(tmp_path) as con:
        assert_tables_equal_world(con, world.visible(as_of), start, as_of.date())
    calls = _access(log)
    assert {kind for entry in calls for kind in entry["faults"]} == set(FAULT_KINDS)  # every kind was met
    later_pages = [c for c in calls if {"page", "page[offset]", "offset", "page[cursor]"} & set(c["query"])]
    assert any("duplicate" in c["faults"] and c["query"].get("page") != "0" for c in later_pages)


# --------------------------------------------------------------------------------------------------
# (5) The real recordings go through the same parsing path
# --------------------------------------------------------------------------------------------------


class _Replay(BaseHTTPRequestHandler):
    """Serves the recorded Datadog pages, following the recorded paging parameters."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str]]]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        type(self).seen.append((parts.path, query))
        name = self._fixture(parts.path, query)
        body = (FIXTURES / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    @staticmethod
    def _fixture(path: str, query: dict[str, str]) -> str:
        if path == "/api/v2/incidents":
            return "incidents_list_page1.json" if query.get("page[offset]") == "2" else "incidents_list_page0.json"
        if path == "/api/v1/monitor":
            return "monitors_list_page1.json" if query.get("page") == "1" else "monitors_list_page0.json"
        if path == "/api/v1/slo":
            return "slo_list_page1.json" if query.get("offset") == "2" else "slo_list_page0.json"
        if path.endswith("/history"):
            return "slo_history.json"
        if path == "/api/v2/events":
            pages = ["events_v2_list_page0.json", "events_v2_list_page1.json", "events_v2_list_page2_empty.json"]
            # each page's meta.page.after names the next recorded page
            after = {
                json.loads((FIXTURES / p).read_text())["meta"]["page"]["after"]: n for p, n in itertools.pairwise(pages)
            }
            return after[query["page[cursor]"]] if "page[cursor]" in query else pages[0]
        raise AssertionError(f"unexpected request {path}")


@pytest.fixture()
def replay() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    handler = type("Replay", (_Replay,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def _recorded_ids(*names: str, key: str | None = "data") -> list[Any]:
    ids = []
    for name in names:
        body = json.loads((FIXTURES / name).read_text())
        ids += [item["id"] for item in (body[key] if key else body)]
    return ids


def test_real_recordings_load(replay: tuple[str, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, seen = replay
    pipeline = _pipeline(tmp_path)
    # The recorded events are from 2022-06-20; page size 2 as recorded, so every page is followed.
    source = datadog_source(base, API_KEY, APP_KEY, start_date="2022-06-01", page_size=2)
    pipeline.run(source.with_resources("incidents", "monitors", "slos", "events"), loader_file_format="parquet")
    # The recorded SLO history covers 2024-01-02/03 at 2-hour resolution.
    monkeypatch.setattr(dd_source, "utc_now", lambda: datetime(2024, 1, 4, 6, tzinfo=UTC))
    source = datadog_source(base, API_KEY, APP_KEY, start_date="2024-01-01", page_size=2)
    pipeline.run(source.with_resources("slos", "slo_history"), loader_file_format="parquet")

    with _db(tmp_path) as con:
        incidents = con.execute(
            "select id, attributes__created, attributes__resolved, attributes__fields->'$.services.value' "
            "from raw_datadog.incidents order by attributes__public_id"
        ).fetchall()
        monitors = [r[0] for r in con.execute("select id from raw_datadog.monitors order by id").fetchall()]
        slos = {r[0] for r in con.execute("select id from raw_datadog.slos").fetchall()}
        events = con.execute("select id, attributes__timestamp from raw_datadog.events").fetchall()
        history = con.execute(
            "select day, sli_value, total_events, points from raw_datadog.slo_history order by slo_id, day"
        ).fetchall()
    assert [r[0] for r in incidents] == _recorded_ids("incidents_list_page0.json", "incidents_list_page1.json")
    assert incidents[0][1] == datetime(2021, 9, 15, 12, 50, 19, 743510, tzinfo=UTC)  # microseconds kept
    assert all(r[2] is None and r[3] == "null" for r in incidents)  # unresolved, services unset
    assert monitors == _recorded_ids("monitors_list_page0.json", "monitors_list_page1.json", key=None)
    assert slos == set(_recorded_ids("slo_list_page0.json", "slo_list_page1.json"))
    assert {r[0] for r in events} == set(_recorded_ids("events_v2_list_page0.json", "events_v2_list_page1.json"))
    assert min(r[1] for r in events) == datetime(2022, 6, 20, 17, 7, 17, tzinfo=UTC)
    # the zero-valued denominator of the recording: days present, SLI null, not 0
    assert history == [(date(2024, 1, 2), None, 0.0, 1), (date(2024, 1, 3), None, 0.0, 12)] * 3
    # the recorded paging was followed: next_offset, short monitors page, total_count, cursors to {"data": []}
    paths = [(p, q) for p, q in seen]
    assert ("/api/v2/incidents", {"page[size]": "2", "page[offset]": "2"}) in paths
    assert sum(p == "/api/v1/monitor" for p, _ in paths) == 2
    assert sum(p == "/api/v1/slo" for p, _ in paths) == 4  # two pages in each of the two runs
    assert sum(p == "/api/v2/events" for p, _ in paths) == 3


# --------------------------------------------------------------------------------------------------
# (6) Rejected keys
# --------------------------------------------------------------------------------------------------


def test_rejected_keys_fail_once_naming_the_config_keys(world: World, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with SandboxServer(world, access_log=log) as server, pytest.raises(Exception) as failure:
        _run(_pipeline(tmp_path), f"{server.url}/datadog", application_key="", start_date="2026-10-01")
    message = "".join(str(e) for e in _chain(failure.value))
    assert "SOURCES__DATADOG__API_KEY" in message and "SOURCES__DATADOG__APPLICATION_KEY" in message
    assert "403" in message
    assert API_KEY not in message
    calls = _access(log)
    assert [c["status"] for c in calls] == [403]  # no retries, no further resources


def test_a_missing_api_key_is_named_before_any_request() -> None:
    with pytest.raises(Exception) as failure:
        datadog_source("http://127.0.0.1:9", "", APP_KEY)
    assert "SOURCES__DATADOG__API_KEY" in "".join(str(e) for e in _chain(failure.value))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


# --------------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------------


def test_configuration_parsing() -> None:
    assert parse_services(" a, b ,,a") == ("a", "b")
    assert parse_services(["a", " b"]) == ("a", "b")
    assert parse_services(None) == () and parse_services("") == ()
    assert parse_start_date("2025-11-01") == date(2025, 11, 1)
    assert parse_start_date("2025-11-01T10:00:00Z") == date(2025, 11, 1)
    with pytest.raises(ValueError, match="SOURCES__DATADOG__START_DATE"):
        parse_start_date("last tuesday")


def test_history_windows_and_resume() -> None:
    windows = list(history_windows(date(2024, 1, 1), date(2024, 1, 17)))
    assert [(b - a) // 86400 for a, b in windows] == [7, 7, 2]
    assert windows[0][0] == int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    assert all(windows[k][1] == windows[k + 1][0] for k in range(len(windows) - 1))
    today = date(2024, 3, 10)
    assert history_start(None, date(2024, 1, 1), today, 7) == date(2024, 1, 1)
    assert history_start("2024-03-08", date(2024, 1, 1), today, 7) == date(2024, 3, 3)  # trailing 7 days
    assert history_start("2024-02-01", date(2024, 1, 1), today, 7) == date(2024, 2, 2)  # catch up after a gap
    assert history_start("2024-03-08", date(2024, 3, 5), today, 7) == date(2024, 3, 5)  # never before START_DATE


def test_history_rows_sum_points_per_day_within_the_window() -> None:
    t0 = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp())
    body = {
        "data": {
            "series": {
                "interval": 43200,
                "times": [(t0 - 43200) * 1000.0, t0 * 1000.0, (t0 + 43200) * 1000.0, (t0 + 86400) * 1000.0],
                "numerator": {"values": [5.0, 90.0, 99.0, 0.0]},
                "denominator": {"values": [5.0, 100.0, 100.0, 0.0]},
            }
        }
    }
    rows = history_rows("s1", body, t0, t0 + 2 * 86400)
    assert rows == [
        {
            "slo_id": "s1",
            "day": "2024-01-02",
            "good_events": 189.0,
            "total_events": 200.0,
            "sli_value": 94.5,
            "points": 2,
        },
        {"slo_id": "s1", "day": "2024-01-03", "good_events": 0.0, "total_events": 0.0, "sli_value": None, "points": 1},
    ]


def test_a_coarse_history_answer_is_split_into_smaller_windows() -> None:
    calls: list[tuple[int, int]] = []

    class Client:
        def get(self, path: str, params: dict[str, int]) -> Any:
            calls.append((params["from_ts"], params["to_ts"]))
            days = (params["to_ts"] - params["from_ts"]) // 86400
            interval = 86400 if days <= 2 else 172800
            times = [float(t * 1000) for t in range(params["from_ts"], params["to_ts"], interval)]
            body = {
                "data": {
                    "series": {
                        "interval": interval,
                        "times": times,
                        "numerator": {"values": [1.0] * len(times)},
                        "denominator": {"values": [1.0] * len(times)},
                    }
                }
            }
            return type("R", (), {"json": lambda self: body})()

    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    rows = fetch_history(Client(), "s", t0, t0 + 7 * 86400)  # type: ignore[arg-type]
    assert [r["day"] for r in rows] == [f"2024-01-0{d}" for d in range(1, 8)]
    assert calls[0] == (t0, t0 + 7 * 86400) and len(calls) > 1


@pytest.mark.parametrize("paginator", [NextOffsetPaginator(), EventsCursorPaginator()])
def test_an_empty_page_ends_the_list_even_with_a_cursor(paginator: Any) -> None:
    body = {"data": [], "meta": {"page": {"after": "abc"}, "pagination": {"next_offset": 4}}}
    response = requests.models.Response()
    response._content = json.dumps(body).encode()
    response.status_code = 200
    paginator.update_state(response, [])
    assert not paginator.has_next_page
