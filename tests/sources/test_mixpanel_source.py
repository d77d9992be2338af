"""The Mixpanel dlt source: `raw_mixpanel.events` equals the world's exported events, nightly runs re-pull
only the trailing days, faults lose and duplicate nothing, the real recordings parse, and a rejected
secret fails fast with the key to fix."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dlt
import duckdb
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest
import requests

from pipelines.sandbox.faults import FaultPlan
from pipelines.sandbox.mixpanel import (
    EXPORT_PATH,
    SANDBOX_SECRET,
    SANDBOX_USERNAME,
    MixpanelEmulator,
    iter_body,
    processing_time_ms,
    visible_events,
)
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, utc
from pipelines.sources.http import SourceAuthError, SourceHTTPError
from pipelines.sources.mixpanel import (
    DEDUP_KEY,
    EVENTS_SCHEMA,
    ExportParser,
    ExportTerminatedEarly,
    KeyFingerprints,
    MalformedExport,
    Pacer,
    drop_seen,
    export_window,
    key_fingerprints,
    mixpanel_source,
    parse_export,
    prefetch,
    run_today,
    write_disposition,
)

RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "mixpanel"
FAST = 92  # days per request in tests: a year in 4-5 requests, so pacing at 3/s costs ~0.5 s


# --- helpers -------------------------------------------------------------------------------------


def source_args(server: SandboxServer, **overrides: Any) -> dict[str, Any]:
    env = server.env()
    args = {
        "base_url": env["SOURCES__MIXPANEL__BASE_URL"],
        "username": env["SOURCES__MIXPANEL__USERNAME"],
        "api_secret": env["SOURCES__MIXPANEL__API_SECRET"],
        "project_id": env["SOURCES__MIXPANEL__PROJECT_ID"],
        "start_date": env["SOURCES__MIXPANEL__START_DATE"],
        "end_date": server.as_of.date().isoformat(),  # the sandbox's today (its clock is not this machine's)
        "days_per_request": FAST,
    }
    return {**args, **overrides}


def make_pipeline(tmp: Path, name: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp / f"{name}.duckdb")),
        dataset_name="raw_mixpanel",
        pipelines_dir=str(tmp / "dlt"),
    )


def run(pipeline: dlt.Pipeline, server: SandboxServer, **overrides: Any) -> int:
    """Run the source once; returns the rows it extracted."""
    pipeline.run(mixpanel_source(**source_args(server, **overrides)), loader_file_format="parquet")
    trace = pipeline.last_trace
    assert trace is not None and trace.last_normalize_info is not None
    return int(trace.last_normalize_info.row_counts.get("events", 0))


def table(pipeline: dlt.Pipeline) -> pl.DataFrame:
    with duckdb.connect(str(Path(pipeline.pipelines_dir).parent / f"{pipeline.pipeline_name}.duckdb")) as con:
        events = con.sql("SELECT * FROM raw_mixpanel.events").pl()
    assert events.schema["time"] == pl.Datetime("us", "Etc/UTC")  # TIMESTAMP WITH TIME ZONE, read in UTC
    return events.with_columns(pl.col("time").dt.convert_time_zone("UTC"))


def last_complete_day(pipeline: dlt.Pipeline) -> str:
    return pipeline.state["sources"]["mixpanel"]["resources"]["events"]["last_complete_day"]


def export_requests(log: Path, start: int = 0) -> list[dict[str, Any]]:
    entries = [orjson.loads(line) for line in log.read_text().splitlines()]
    return [e for e in entries[start:] if e["system"] == "mixpanel"]


def assert_equals_world(loaded: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Same events (insert ids, counts per day and event name), each once."""
    assert loaded.height == expected.height
    assert loaded.select(DEDUP_KEY).n_unique() == loaded.height
    assert set(loaded["insert_id"]) == set(expected["insert_id"])
    per_day = (
        loaded.group_by(pl.col("time").dt.date().alias("day"), "event").len().sort("day", "event", "len"),
        expected.group_by(pl.from_epoch("time").dt.date().alias("day"), "event").len().sort("day", "event", "len"),
    )
    assert per_day[0].equals(per_day[1])


# --- (2) a full load against the shared sandbox ---------------------------------------------------


@pytest.fixture(scope="module")
def loaded(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[dlt.Pipeline, pl.DataFrame]:
    pipeline = make_pipeline(tmp_path_factory.mktemp("mixpanel_full"), "mp_full")
    with pytest.MonkeyPatch.context() as mp:  # as in the nightly run: "today" is the sandbox world's clock
        mp.setenv("OPSMAP_AS_OF", sandbox.as_of.isoformat())
        run(pipeline, sandbox, end_date=None)
    return pipeline, table(pipeline)


def test_full_load_equals_the_worlds_events(
    loaded: tuple[dlt.Pipeline, pl.DataFrame], sandbox: SandboxServer, world: World
) -> None:
    pipeline, events = loaded
    expected = visible_events(world.events, sandbox.as_of)
    assert_equals_world(events, expected)
    as_of_ms = int(sandbox.as_of.timestamp() * 1000)
    assert events["mp_processing_time_ms"].max() <= as_of_ms  # nothing unprocessed
    # Independently of `visible_events`, and whether or not this world has any: every event held back is
    # one that had not happened or not been processed by as-of.
    withheld = world.events.filter(~pl.col("insert_id").is_in(events["insert_id"].implode()))
    assert withheld.filter((pl.col("time") * 1000 < as_of_ms) & (processing_time_ms() <= as_of_ms)).is_empty()
    assert last_complete_day(pipeline) == (sandbox.as_of.date() - timedelta(days=1)).isoformat()


def test_columns_are_typed_and_properties_kept_whole(loaded: tuple[dlt.Pipeline, pl.DataFrame], world: World) -> None:
    _, events = loaded
    assert events.columns == EVENTS_SCHEMA.names
    assert events.schema["time"] == pl.Datetime("us", "UTC") and events.schema["mp_processing_time_ms"] == pl.Int64
    truth = world.events.with_columns(
        pl.from_epoch("time").dt.replace_time_zone("UTC").dt.cast_time_unit("us").alias("time"),
        processing_time_ms().alias("mp_processing_time_ms"),
    )
    joined = events.join(truth, on="insert_id", suffix="_world")
    assert joined.height == events.height
    for column, world_column in [
        ("event", "event_world"),
        ("time", "time_world"),
        ("distinct_id", "distinct_id_world"),
        ("browser", "browser_world"),
        ("os", "os_world"),
        ("city", "city_world"),
        ("feature", "feature_world"),
        ("mp_processing_time_ms", "mp_processing_time_ms_world"),
    ]:
        assert joined[column].equals(joined[world_column], check_names=False), column
    sample = events.sample(200, seed=1)
    for row in sample.iter_rows(named=True):
        props = orjson.loads(row["properties"])
        assert props["$insert_id"] == row["insert_id"] and props["time"] == int(row["time"].timestamp())
        assert props.get("feature") == row["feature"] and isinstance(props["$browser_version"], int)


# --- (3) nightly runs ------------------------------------------------------------------------------


def test_the_next_night_re_pulls_only_the_trailing_days(world: World, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    night = world.config.end - timedelta(days=30)  # D
    with SandboxServer(world, as_of=utc(night), access_log=log) as server:
        pipeline = make_pipeline(tmp_path, "mp_nightly")
        first_rows = run(pipeline, server)
        first = export_requests(log)
        assert_equals_world(table(pipeline), visible_events(world.events, utc(night)))
        assert last_complete_day(pipeline) == (night - timedelta(days=1)).isoformat()

        server.as_of = utc(night + timedelta(days=1))  # D + 1
        second_rows = run(pipeline, server)
        second = export_requests(log, len(first))
        # one request: the 2 complete days loaded before (lookback) and the new day, up to today
        assert [(r["query"]["from_date"], r["query"]["to_date"]) for r in second] == [
            ((night - timedelta(days=2)).isoformat(), (night + timedelta(days=1)).isoformat())
        ]
        assert len(second) / len(first) <= 0.25 and second_rows / first_rows < 0.05
        second_bytes = replayed_bytes(server, second)
        server.as_of = utc(night)
        assert second_bytes / replayed_bytes(server, first) < 0.05

        now = utc(night + timedelta(days=1))
        events = table(pipeline)
        assert_equals_world(events, visible_events(world.events, now))
        d_ms, now_ms = int(utc(night).timestamp() * 1000), int(now.timestamp() * 1000)
        late = world.events.filter(
            (pl.col("time") < int(utc(night).timestamp()))
            & (processing_time_ms() > d_ms)
            & (processing_time_ms() <= now_ms)
        )
        assert late.height > 0  # late events of the re-pulled days arrived between the runs
        counts = events.filter(pl.col("insert_id").is_in(late["insert_id"].implode()))["insert_id"].value_counts()
        assert counts.height == late.height and (counts["count"] == 1).all()


def replayed_bytes(server: SandboxServer, logged: list[dict[str, Any]]) -> int:
    """Body bytes of the logged export requests, asked again at the server's current clock."""
    total = 0
    for entry in logged:
        for _ in range(5):
            response = requests.get(
                f"{server.url}/mixpanel{EXPORT_PATH}",
                params=entry["query"],
                auth=(SANDBOX_USERNAME, SANDBOX_SECRET),
                headers={"Accept-Encoding": "identity"},
                timeout=30,
            )
            if response.status_code != 429:  # else wait out the server's 3-per-second limit
                break
            time.sleep(float(response.headers["Retry-After"]))
        assert response.status_code == 200
        total += len(response.content)
    return total


def test_to_date_later_than_mixpanels_today(world: World, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    with SandboxServer(world, access_log=log) as server:
        today = server.as_of.date()
        pipeline = make_pipeline(tmp_path, "mp_tz")
        # one day ahead (a project time zone behind UTC): asked again up to the day before, once
        run(pipeline, server, end_date=(today + timedelta(days=1)).isoformat())
        statuses = [(r["query"]["to_date"], r["status"]) for r in export_requests(log)]
        assert statuses[-2:] == [((today + timedelta(days=1)).isoformat(), 400), (today.isoformat(), 200)]
        assert last_complete_day(pipeline) == (today - timedelta(days=1)).isoformat()
        # further ahead: a clear error naming the key to set
        with pytest.raises(Exception) as failure:
            run(make_pipeline(tmp_path, "mp_tz2"), server, end_date=(today + timedelta(days=5)).isoformat())
        error = find_cause(failure.value, SourceHTTPError)
        assert error.config_key == "SOURCES__MIXPANEL__END_DATE" and "SOURCES__MIXPANEL__END_DATE" in str(error)


# --- (4) faults ------------------------------------------------------------------------------------

FAULTS = {"truncate": 0.05, "server_error": 0.05, "rate_limit": 0.05, "slow": 0.05, "duplicate": 0.2}
FAULT_SEED = 12  # with 30-day requests (13 for the year), every kind of fault occurs at least once


def test_faults_lose_and_duplicate_nothing(world: World, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    plan = FaultPlan(rates=FAULTS, seed=FAULT_SEED)
    with SandboxServer(world, faults=plan, access_log=log, slow_seconds=0.2) as server:
        pipeline = make_pipeline(tmp_path, "mp_faults")
        run(pipeline, server, days_per_request=30)
        logged = export_requests(log)
        seen = {kind for entry in logged for kind in entry["faults"]}
        assert {"truncate", "server_error", "rate_limit", "slow", "duplicate"} <= seen, seen
        # a 200 stream that broke was fetched again, and its rows counted once
        broken = [e["query"] for e in logged if e["status"] == 200 and "truncate" in e["faults"]]
        assert broken and all(sum(e["query"] == q for e in logged if e["status"] == 200) >= 2 for q in broken)
        assert_equals_world(table(pipeline), visible_events(world.events, server.as_of))


# --- (5) the real recordings -----------------------------------------------------------------------


def recording(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def originals(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(p.name for p in RECORDINGS.glob("*.jsonl")))
def test_real_recordings_parse(name: str) -> None:
    data = recording(name)
    parsed = parse_export(data)
    items = originals(data)
    assert parsed.num_rows == len(items) and parsed.schema == EVENTS_SCHEMA
    for row, item in zip(parsed.to_pylist(), items, strict=True):
        props = item["properties"]
        assert orjson.loads(row["properties"]) == props
        assert row["event"] == item["event"] and row["time"] == datetime.fromtimestamp(props["time"], UTC)
        assert row["distinct_id"] == props.get("distinct_id") and row["browser"] == props.get("$browser")
        assert row["mp_processing_time_ms"] == props.get("mp_processing_time_ms")
        if "$insert_id" in props:
            assert row["insert_id"] == props["$insert_id"]
        else:  # pre-2019: a stable key derived from (event, distinct_id, time)
            epoch_us = int(row["time"].timestamp()) * 1_000_000
            key = f"{row['event']}\x1f{row['distinct_id'] or ''}\x1f{epoch_us}"
            assert row["insert_id"] == hashlib.md5(key.encode()).hexdigest()
    assert parse_export(data).equals(parsed)  # stable across runs


def test_the_2017_export_without_insert_ids_gets_distinct_derived_keys() -> None:
    parsed = parse_export(recording("export_web_sdk_events_2017.jsonl"))
    assert parsed.num_rows == 7 and len(set(parsed.column("insert_id").to_pylist())) == 7


def test_the_segment_event_keeps_its_string_browser_version() -> None:
    parsed = parse_export(recording("export_segment_sourced_event.jsonl"))
    assert orjson.loads(parsed.column("properties")[0].as_py())["$browser_version"] == "91.0.4472.101"


class RecordingsServer:
    """A stand-in export API serving the real recordings (filtered by the requested days)."""

    def __init__(self) -> None:
        self.lines = [line for p in sorted(RECORDINGS.glob("*.jsonl")) for line in p.read_bytes().splitlines() if line]
        self.queries: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                outer.queries.append(query)
                lo = utc(date.fromisoformat(query["from_date"])).timestamp()
                hi = utc(date.fromisoformat(query["to_date"]) + timedelta(days=1)).timestamp()
                body = b"".join(
                    line + b"\n" for line in outer.lines if lo <= orjson.loads(line)["properties"]["time"] < hi
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RecordingsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def test_real_recordings_load_end_to_end(tmp_path: Path) -> None:
    with RecordingsServer() as stub:
        pipeline = make_pipeline(tmp_path, "mp_recordings")
        source = mixpanel_source(
            base_url=stub.url,
            api_secret="legacy-project-secret",
            start_date="2017-01-01",
            end_date="2023-12-31",
            days_per_request=1000,  # seven years in three requests
        )
        pipeline.run(source, loader_file_format="parquet")
        assert {q.get("project_id") for q in stub.queries} == {None}  # legacy secret: no project id
        events = table(pipeline)
    assert events.height == len(stub.lines) == 12
    without = sum(1 for line in stub.lines if "distinct_id" not in orjson.loads(line)["properties"])
    assert without == 4 and events.filter(pl.col("distinct_id").is_null()).height == without  # docs and Go SDK
    assert events["insert_id"].n_unique() == 12


# --- (6) a rejected secret -------------------------------------------------------------------------


def find_cause(exc: BaseException, kind: type[Exception]) -> Any:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no {kind.__name__} in the chain of {exc!r}")


def test_a_rejected_secret_fails_fast_naming_the_key(world: World, tmp_path: Path) -> None:
    canary = "wrong-secret-canary-7f3a9"
    log = tmp_path / "access.jsonl"
    with SandboxServer(world, access_log=log) as server:
        server.emulators["mixpanel"] = MixpanelEmulator(world, accepted_secrets={SANDBOX_SECRET})
        with pytest.raises(Exception) as failure:
            run(make_pipeline(tmp_path, "mp_401"), server, api_secret=canary)
    error = find_cause(failure.value, SourceAuthError)
    assert error.status == 401 and "SOURCES__MIXPANEL__API_SECRET" in str(error)
    assert canary not in str(failure.value) and canary not in repr(error)
    assert [r["status"] for r in export_requests(log)] == [401]


# --- units -----------------------------------------------------------------------------------------


def test_export_window_and_write_disposition() -> None:
    start, today = date(2026, 1, 1), date(2026, 10, 15)
    assert export_window(start, today, None, 2) == start
    assert export_window(start, today, date(2026, 10, 13), 2) == date(2026, 10, 12)
    assert export_window(start, today, date(2026, 10, 13), 0) == date(2026, 10, 14)
    assert export_window(start, today, date(2026, 1, 1), 5) == start
    assert write_disposition(date(2026, 10, 12), today, first_run=True) == "replace"
    merge = write_disposition(date(2026, 10, 12), today, first_run=False)
    assert merge["strategy"] == "delete-insert" and merge["destination_scope"] == (
        "{table}.time >= '2026-10-12 00:00:00+00:00' AND {table}.time < '2026-10-16 00:00:00+00:00'"
    )


def test_today_follows_the_runs_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSMAP_AS_OF", "2026-11-01T00:00:00+00:00")
    assert run_today() == date(2026, 11, 1)
    monkeypatch.setenv("OPSMAP_AS_OF", "2026-10-31T23:30:00-02:00")  # already 1 November in UTC
    assert run_today() == date(2026, 11, 1)
    monkeypatch.delenv("OPSMAP_AS_OF")
    assert run_today() == datetime.now(UTC).date()


def test_pacer_allows_three_requests_per_second() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer, starts = Pacer(3, clock=lambda: now[0], sleep=sleep), []
    for _ in range(10):
        pacer.wait()
        starts.append(now[0])
        now[0] += 0.01  # each request takes a moment to send
    assert starts[:3] == [0.0, 0.01, 0.02] and starts[3] >= 1.0  # a burst of three, then wait
    assert all(later - earlier >= 1.0 for earlier, later in zip(starts, starts[3:], strict=False))
    assert starts[-1] < 3.3  # and no slower than needed


def test_key_fingerprints_keep_the_first_of_each_key() -> None:
    rng = random.Random(3)
    seen, kept = KeyFingerprints(), 0
    truth: set[tuple[Any, ...]] = set()
    for _ in range(30):
        n = rng.randint(1, 400)
        rows = [("e", f"u{rng.randint(0, 50)}", rng.randint(0, 40), f"i{rng.randint(0, 30)}") for _ in range(n)]
        batch = pa.table(
            {
                "event": [r[0] for r in rows],
                "distinct_id": pa.array([r[1] if r[2] % 7 else None for r in rows]),
                "time": pa.array([r[2] * 1_000_000 for r in rows], pa.timestamp("us", tz="UTC")),
                "insert_id": [r[3] for r in rows],
            }
        )
        fresh = drop_seen(batch, seen)
        keys = list(zip(*(fresh.column(c).to_pylist() for c in DEDUP_KEY), strict=True))
        assert len(set(keys)) == len(keys) and not set(keys) & truth
        truth |= set(zip(*(batch.column(c).to_pylist() for c in DEDUP_KEY), strict=True))
        kept += fresh.num_rows
    assert kept == len(truth) == len(seen)
    h1, h2 = key_fingerprints(batch)
    assert h1.dtype == np.uint64 and not np.array_equal(h1, h2)


# --- parser edge cases -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def body(world: World) -> bytes:
    return b"".join(iter_body(world.events.head(3000)))


def test_any_chunking_gives_the_same_table(body: bytes) -> None:
    whole = parse_export(body)
    assert whole.num_rows == 3000
    assert parse_export(body, chunk_bytes=7919, block_bytes=50_000).equals(whole)
    small = body[: body.index(b"\n", 20_000) + 1]
    assert parse_export(small, chunk_bytes=1, block_bytes=3000).equals(parse_export(small))


def test_a_record_split_across_lines_is_joined(body: bytes) -> None:
    lines = body.split(b"\n")
    broken = lines[:]
    broken[10] = lines[10][:37] + b"\n" + lines[10][37:]  # inside a string
    broken[500] = lines[500][:200] + b"\n" + lines[500][200:]
    parser = ExportParser(block_bytes=60_000)  # so a split also straddles a block boundary
    data = b"\n".join(broken)
    tables = [t for i in range(0, len(data), 4096) for t in parser.feed(data[i : i + 4096])] + list(parser.finish())
    assert parser.careful_blocks > 0
    assert pa.concat_tables(tables).equals(parse_export(body))


def test_terminated_early_and_garbage_raise(body: bytes) -> None:
    with pytest.raises(ExportTerminatedEarly):
        parse_export(body[: body.index(b"\n", 5000) + 1] + b"terminated early")
    with pytest.raises(MalformedExport):
        parse_export(body[: body.index(b"\n", 5000) + 1] + b"<html>oops</html>\n" + body[:300])


def test_unexpected_types_and_layouts_still_parse(body: bytes) -> None:
    first = orjson.loads(body.split(b"\n")[0])
    odd = [
        {**first, "properties": {**first["properties"], "distinct_id": 12345, "$insert_id": "numeric-id"}},
        {**first, "event": 'Say "hi"', "properties": {**first["properties"], "$insert_id": "quoted-name"}},
        {"properties": {**first["properties"], "$insert_id": "keys-swapped"}, "event": first["event"]},
        {**first, "properties": {**first["properties"], "time": 1700000000.5, "$insert_id": "float-time"}},
    ]
    data = body + b"".join(orjson.dumps(o) + b"\n" for o in odd) + b'{"event": "spaced", "properties": {"time": 1}}\n'
    parser = ExportParser()
    parsed = pa.concat_tables([*parser.feed(data), *parser.finish()])
    parser.close()
    assert parsed.num_rows == 3005 and parser.careful_blocks == 1  # other key order, spaces, escaped name
    tail = parsed.slice(3000).to_pylist()
    assert tail[0]["distinct_id"] == "12345" and tail[1]["event"] == 'Say "hi"'
    assert tail[2]["insert_id"] == "keys-swapped" and tail[3]["time"] == datetime.fromtimestamp(1700000000.5, UTC)
    assert tail[4]["event"] == "spaced" and len(tail[4]["insert_id"]) == 32
    for row, item in zip(tail, [*odd, {"properties": {"time": 1}}], strict=True):
        assert orjson.loads(row["properties"]) == item["properties"]
    assert parsed.slice(0, 3000).equals(parse_export(body))


def test_a_numeric_distinct_id_stays_on_the_fast_path(body: bytes) -> None:
    first = orjson.loads(body.split(b"\n")[0])
    odd = {**first, "properties": {**first["properties"], "distinct_id": 12345, "mp_processing_time_ms": "x"}}
    parser = ExportParser()
    parsed = pa.concat_tables([*parser.feed(body + orjson.dumps(odd) + b"\n"), *parser.finish()])
    parser.close()
    assert parser.careful_blocks == 0 and parsed.num_rows == 3001
    assert parsed.column("distinct_id")[-1].as_py() == "12345"  # Mixpanel treats distinct_id as a string
    assert parsed.column("mp_processing_time_ms")[-1].as_py() is None  # not a number: NULL, kept in properties


def test_fast_and_careful_paths_agree(body: bytes) -> None:
    fast = parse_export(body)
    parser = ExportParser()
    careful = parser._parse_lenient(body)  # the DuckDB path, on the same regular lines
    parser.close()
    assert careful.num_rows == fast.num_rows
    for column in EVENTS_SCHEMA.names:
        if column != "properties":
            assert careful.column(column).to_pylist() == fast.column(column).to_pylist(), column
    assert [orjson.loads(p) for p in careful.column("properties").to_pylist()[:300]] == [
        orjson.loads(p) for p in fast.column("properties").to_pylist()[:300]
    ]


def test_the_stream_is_parsed_into_arrow_without_a_dict_per_event(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = orjson.loads

    def counting(data: Any) -> Any:
        calls["n"] += 1
        return real(data)

    monkeypatch.setattr("pipelines.sources.mixpanel.orjson.loads", counting)
    assert parse_export(body).num_rows == 3000 and calls["n"] == 0


def test_prefetch_hands_items_over_in_order_and_propagates_errors() -> None:
    closed = threading.Event()

    def items(fail: bool) -> Iterator[int]:
        try:
            yield from range(5)
            if fail:
                raise ExportTerminatedEarly("boom")
            yield from range(5, 50)
        finally:
            closed.set()

    assert list(prefetch(items(False))) == list(range(50)) and closed.is_set()
    closed.clear()
    got: list[int] = []
    with pytest.raises(ExportTerminatedEarly):
        for item in prefetch(items(True)):
            got.append(item)
    assert got == list(range(5)) and closed.is_set()
    closed.clear()
    stream = prefetch(items(False), depth=1)
    assert next(stream) == 0
    stream.close()  # the consumer stops early: the producer stops and closes its source
    assert closed.wait(5)


def test_the_benchmark_measures_both_paths_on_the_same_events(tmp_path: Path) -> None:
    from pipelines.sources.mixpanel_bench import run_benchmark

    result = run_benchmark(2000, tmp_path)
    assert result["duckdb_read_json"]["rows"] == result["opsmap"]["rows"] == result["parser_only"]["rows"] == 2000
    ratio = result["duckdb_read_json"]["seconds"] / result["opsmap"]["seconds"]  # same bytes on both sides
    assert 0 < result["ratio"] == pytest.approx(ratio, abs=1e-3)
