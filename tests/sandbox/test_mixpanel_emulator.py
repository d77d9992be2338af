"""The Mixpanel emulator: the Raw Event Export API's contract (docs/source-apis.md §4, fact 10) —
JSONL payloads that match the real recordings, auth, errors, limits, late events, gzip streaming."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import contract_catalogue as catalogue
import orjson
import polars as pl
import pytest
import requests

from pipelines.sandbox.contract import align, compare, load_fixture
from pipelines.sandbox.faults import FaultPlan
from pipelines.sandbox.mixpanel import (
    CHUNK_BYTES,
    EXPORT_PATH,
    MAX_LIMIT,
    SANDBOX_PROJECT_ID,
    SANDBOX_SECRET,
    SANDBOX_USERNAME,
    MixpanelEmulator,
    is_late,
    iter_body,
    processing_delay_ms,
    visible_events,
)
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, utc

SERVICE = (SANDBOX_USERNAME, SANDBOX_SECRET)
LEGACY = (SANDBOX_SECRET, "")


def export(
    server: SandboxServer, auth: tuple[str, str] | None = SERVICE, *, patient: bool = True, **params: Any
) -> requests.Response:
    """GET the export; the service account sends the project id, as the real API requires. A
    `patient` client waits out the 3-per-second limit (other tests share the server)."""
    if auth == SERVICE:
        params.setdefault("project_id", SANDBOX_PROJECT_ID)
    for _ in range(5):
        response = requests.get(f"{server.url}/mixpanel{EXPORT_PATH}", params=params, auth=auth, timeout=30)
        if not (patient and response.status_code == 429):
            break
        time.sleep(float(response.headers["Retry-After"]))
    return response


def lines(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text[:300]
    return [orjson.loads(line) for line in response.content.splitlines() if line]


def day_range(world: World, days_before_end: int, length: int) -> dict[str, str]:
    last = world.config.end.toordinal() - days_before_end
    return {
        "from_date": date.fromordinal(last - length + 1).isoformat(),
        "to_date": date.fromordinal(last).isoformat(),
    }


@pytest.fixture()
def quiet_server(world: World) -> Any:
    """A private server whose emulator has no per-second limit (tests that fire requests back to back)."""
    with SandboxServer(world) as server:
        server.emulators["mixpanel"] = MixpanelEmulator(world, per_second_limit=None)
        yield server


# -- contract ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def last_week(sandbox: SandboxServer, world: World) -> list[dict[str, Any]]:
    return lines(export(sandbox, **day_range(world, 1, 7)))


@pytest.mark.parametrize("fixture", catalogue.MIXPANEL[0].fixtures, ids=lambda f: f.file)
def test_payloads_match_the_real_recordings(last_week: list[dict[str, Any]], fixture: Any) -> None:
    endpoint = catalogue.MIXPANEL[0]
    assert endpoint.path == EXPORT_PATH
    items = last_week
    assert len(items) > 100
    recorded = load_fixture(catalogue.FIXTURES_ROOT / fixture.file)
    rec, emu = align(fixture.shape, recorded, items, endpoint.items_path)
    assert compare(rec, emu, **endpoint.options(fixture)) == []


def test_properties_come_in_export_order_and_absent_ones_are_omitted(sandbox: SandboxServer, world: World) -> None:
    items = lines(export(sandbox, **day_range(world, 1, 3)))
    for item in items:
        assert list(item) == ["event", "properties"]
        keys = list(item["properties"])
        assert keys[:2] == ["time", "distinct_id"] and keys[2:] == sorted(keys[2:])
        assert None not in item["properties"].values()
    assert any("feature" in i["properties"] for i in items) and any("feature" not in i["properties"] for i in items)
    assert {type(i["properties"]["time"]) for i in items} == {int}


def test_the_export_is_the_world_as_of_the_clock(sandbox: SandboxServer, world: World) -> None:
    params = day_range(world, 0, 10)
    items = lines(export(sandbox, **params))
    lo = int(utc(date.fromisoformat(params["from_date"])).timestamp())
    expected = visible_events(world.events, sandbox.as_of).filter(pl.col("time") >= lo)
    assert sorted(i["properties"]["$insert_id"] for i in items) == sorted(expected["insert_id"])
    # every property is the world's fact, rendered
    by_id = {row["insert_id"]: row for row in expected.iter_rows(named=True)}
    for item in items[:200]:
        row, props = by_id[item["properties"]["$insert_id"]], item["properties"]
        assert (item["event"], props["time"], props["distinct_id"]) == (row["event"], row["time"], row["distinct_id"])
        assert (props["$browser"], props["$os"], props["$city"], props.get("feature")) == (
            row["browser"],
            row["os"],
            row["city"],
            row["feature"],
        )
        assert props["time"] * 1000 <= props["$mp_api_timestamp_ms"] <= props["mp_processing_time_ms"]


# -- late events ------------------------------------------------------------------------------------


def test_a_few_percent_of_events_are_processed_1_to_36_hours_late(world: World) -> None:
    late = is_late(world.events)
    assert 0.02 < late.mean() < 0.04  # type: ignore[operator]
    delays = world.events.select(processing_delay_ms().alias("d"))["d"]
    assert delays.filter(late).min() >= 3_600_000 and delays.filter(late).max() < 36 * 3_600_000
    assert delays.filter(~late).max() < 5_000


def test_late_events_appear_only_once_processed(private_sandbox: SandboxServer, world: World) -> None:
    day = world.config.end - timedelta(days=40)
    as_of = utc(day)
    private_sandbox.as_of = as_of
    params = {"from_date": (day - timedelta(days=2)).isoformat(), "to_date": (day - timedelta(days=1)).isoformat()}
    before = {i["properties"]["$insert_id"] for i in lines(export(private_sandbox, **params))}
    private_sandbox.as_of = as_of + timedelta(days=2)
    after = {i["properties"]["$insert_id"] for i in lines(export(private_sandbox, **params))}
    lo = int((as_of - timedelta(days=2)).timestamp())
    in_range = world.events.filter((pl.col("time") >= lo) & (pl.col("time") < int(as_of.timestamp())))
    late_ids = set(in_range.filter(is_late(in_range))["insert_id"])
    arrived = after - before
    assert arrived and arrived <= late_ids  # only late events arrive afterwards, with their old time
    assert before == set(visible_events(in_range, as_of)["insert_id"])
    assert after == set(in_range["insert_id"])


# -- request parameters -----------------------------------------------------------------------------


def test_event_filter_where_and_limit(quiet_server: SandboxServer, world: World) -> None:
    params = day_range(world, 1, 5)
    everything = lines(export(quiet_server, **params))
    name = everything[0]["event"]
    only = lines(export(quiet_server, event=json.dumps([name]), **params))
    assert only and {i["event"] for i in only} == {name}
    assert len(only) == sum(1 for i in everything if i["event"] == name)
    cut = everything[len(everything) // 2]["properties"]["time"]
    later = lines(export(quiet_server, where=f'properties["$time"]>=datetime({cut})', **params))
    assert later and all(i["properties"]["time"] >= cut for i in later)
    assert len(lines(export(quiet_server, limit="7", **params))) == 7
    in_ms = lines(export(quiet_server, time_in_ms="true", **params))
    assert in_ms[0]["properties"]["time"] // 1000 == everything[0]["properties"]["time"]


def test_an_empty_range_is_an_empty_body(sandbox: SandboxServer) -> None:
    response = export(sandbox, from_date="2020-01-01", to_date="2020-01-31")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from_date": "2026-10-01", "to_date": "2026-11-02"}, "to_date cannot be later than today"),
        ({"from_date": "2026-10-05", "to_date": "2026-10-01"}, "from_date cannot be later than to_date"),
        ({"from_date": "2026-10-01"}, "'to_date' is a required parameter"),
        ({"from_date": "10/01/2026", "to_date": "2026-10-02"}, "yyyy-mm-dd"),
        ({"from_date": "2026-10-01", "to_date": "2026-10-02", "limit": str(MAX_LIMIT + 1)}, "limit cannot be over"),
        ({"from_date": "2026-10-01", "to_date": "2026-10-02", "event": "Signed In"}, "JSON-encoded array"),
        ({"from_date": "2026-10-01", "to_date": "2026-10-02", "where": "defined(x)"}, "unsupported where"),
    ],
)
def test_bad_requests_get_mixpanels_400(quiet_server: SandboxServer, params: dict[str, str], message: str) -> None:
    response = export(quiet_server, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and message in body["error"]


# -- auth -------------------------------------------------------------------------------------------


def test_auth_service_account_or_legacy_secret(quiet_server: SandboxServer, world: World) -> None:
    params = day_range(world, 1, 1)
    assert export(quiet_server, SERVICE, **params).status_code == 200
    assert export(quiet_server, LEGACY, **params).status_code == 200
    no_project = requests.get(f"{quiet_server.url}/mixpanel{EXPORT_PATH}", params=params, auth=SERVICE, timeout=10)
    assert no_project.status_code == 400 and "project_id" in no_project.json()["error"]
    anonymous = export(quiet_server, None, **params)
    assert anonymous.status_code == 401 and anonymous.json() == {
        "error": "Unable to authenticate request",
        "status": "error",
    }


def test_a_project_accepts_only_its_secret(world: World) -> None:
    with SandboxServer(world) as server:
        server.emulators["mixpanel"] = MixpanelEmulator(world, accepted_secrets={SANDBOX_SECRET})
        params = day_range(world, 1, 1)
        assert export(server, SERVICE, **params).status_code == 200
        assert export(server, (SANDBOX_USERNAME, "wrong"), **params).status_code == 401
        assert export(server, ("wrong", ""), **params).status_code == 401


# -- limits -----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_three_queries_per_second_then_429(world: World) -> None:
    clock = FakeClock()
    with SandboxServer(world) as server:
        server.emulators["mixpanel"] = MixpanelEmulator(world, monotonic=clock)
        params = day_range(world, 1, 1)
        assert [export(server, patient=False, **params).status_code for _ in range(4)] == [200, 200, 200, 429]
        limited = export(server, patient=False, **params)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.json()["status"] == "error"
        clock.now += 1.0
        assert export(server, patient=False, **params).status_code == 200


def test_the_hourly_limit_is_configurable(world: World) -> None:
    clock = FakeClock()
    with SandboxServer(world) as server:
        server.emulators["mixpanel"] = MixpanelEmulator(world, per_second_limit=None, hourly_limit=2, monotonic=clock)
        params = day_range(world, 1, 1)
        assert [export(server, patient=False, **params).status_code for _ in range(3)] == [200, 200, 429]
        clock.now += 1800
        limited = export(server, patient=False, **params)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) == 1800
        clock.now += 1800
        assert export(server, patient=False, **params).status_code == 200


def test_the_rate_limit_fault_is_mixpanels_429(world: World) -> None:
    with SandboxServer(world, faults=FaultPlan(rates={"rate_limit": 1.0})) as server:
        response = export(server, patient=False, **day_range(world, 1, 1))
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"


# -- streaming --------------------------------------------------------------------------------------


def test_gzip_when_asked_and_the_body_is_streamed_in_1_mb_chunks(sandbox: SandboxServer, world: World) -> None:
    params = day_range(world, 1, 30)
    plain = requests.get(
        f"{sandbox.url}/mixpanel{EXPORT_PATH}",
        params={**params, "project_id": SANDBOX_PROJECT_ID},
        auth=SERVICE,
        headers={"Accept-Encoding": "identity"},
        timeout=30,
    )
    zipped = requests.get(
        f"{sandbox.url}/mixpanel{EXPORT_PATH}",
        params={**params, "project_id": SANDBOX_PROJECT_ID},
        auth=SERVICE,
        headers={"Accept-Encoding": "gzip"},
        timeout=30,
        stream=True,
    )
    raw = zipped.raw.read(decode_content=False)
    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert gzip.decompress(raw) == plain.content and len(raw) < len(plain.content) / 4
    chunks = list(iter_body(world.events.head(20_000)))
    assert len(chunks) > 5 and all(c.endswith(b"\n") for c in chunks)
    assert all(0.5 * CHUNK_BYTES < len(c) < 1.5 * CHUNK_BYTES for c in chunks[:-1])
    assert sum(c.count(b"\n") for c in chunks) == 20_000


def test_duplicate_fault_repeats_events_as_real_exports_do(world: World) -> None:
    with SandboxServer(world, faults=FaultPlan(rates={"duplicate": 1.0})) as server:
        items = lines(export(server, **day_range(world, 1, 10)))
    ids = [i["properties"]["$insert_id"] for i in items]
    assert len(ids) > len(set(ids)) > 0.9 * len(ids)


def test_truncate_fault_breaks_the_stream_one_way_or_the_other(world: World) -> None:
    outcomes = set()
    with SandboxServer(world, faults=FaultPlan(rates={"truncate": 1.0}, max_consecutive=100)) as server:
        for days_before_end in range(1, 9):
            try:
                response = export(server, **day_range(world, days_before_end, 60))
                body = response.content
            except requests.exceptions.ChunkedEncodingError:
                outcomes.add("cut")
                continue
            assert body.endswith(b"terminated early\n")
            outcomes.add("terminated early")
    assert outcomes == {"cut", "terminated early"}


def test_env_points_the_source_at_the_sandbox(sandbox: SandboxServer, world: World) -> None:
    env = sandbox.env()
    assert env["SOURCES__MIXPANEL__BASE_URL"] == f"{sandbox.url}/mixpanel"
    assert env["SOURCES__MIXPANEL__PROJECT_ID"] == SANDBOX_PROJECT_ID
    assert env["SOURCES__MIXPANEL__START_DATE"] == world.config.start_at.date().isoformat()
    assert env["SOURCES__MIXPANEL__USERNAME"] and env["SOURCES__MIXPANEL__API_SECRET"]
    assert datetime.fromisoformat(env["SOURCES__MIXPANEL__START_DATE"]).replace(tzinfo=UTC) == world.config.start_at
