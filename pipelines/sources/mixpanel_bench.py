"""Benchmark of the Mixpanel high-volume path (`pipelines.sources.mixpanel`).

Generates N Mixpanel-shaped export events (the emulator's renderer, so the lines look like the real
export: ~640 bytes, 20+ properties) to a JSONL file, then measures

(a) DuckDB's own reader: `CREATE TABLE ... AS SELECT * FROM read_json(file)` into a DuckDB file;
(b) opsmap's path: the file read in 1 MB chunks → `ExportParser` → de-duplication → Arrow tables
    (in a prefetch thread, as the source does) → dlt (Parquet loader files, the source's first-run
    disposition) → the same kind of DuckDB file;

and reports rows/s, MB/s and the ratio (b)/(a), each the fastest of `repeats` runs (the machine is
shared, so single runs are noisy). `compare_strategies` times the de-duplication designs on an
initial load and on a re-pull of the trailing days.

Run: `.venv/bin/python -m pipelines.sources.mixpanel_bench --events 1000000 [--repeats 3] [--strategies]`
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.sandbox.generate import EVENT_SCHEMA
from pipelines.sandbox.mixpanel import iter_body
from pipelines.sources.mixpanel import (
    EVENTS_HINTS,
    ExportParser,
    KeyFingerprints,
    drop_seen,
    prefetch,
    write_disposition,
)

READ_CHUNK = 1 << 20  # what the source asks of the socket per read


@dataclass
class Timing:
    """One measured run."""

    seconds: float
    rows: int
    megabytes: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rows_per_s": round(self.rows_per_s), "mb_per_s": round(self.mb_per_s, 1)}


def synthetic_events(n: int, *, seed: int = 7, days: int = 30, start: date = date(2026, 9, 1)) -> pl.DataFrame:
    """`n` events in the world's event schema, spread over `days` days from `start`, in time order."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime.combine(start, datetime.min.time(), UTC).timestamp())
    names = np.array([f"Feature {k} Used" for k in range(40)] + ["Page Viewed", "Signed In", "Search Performed"])
    users = rng.integers(0, 200_000, n)
    ids = np.where(users % 10 < 3, np.char.add(np.char.add("user", users.astype(str)), "@customers.example"), None)
    anon = pl.Series(users).cast(pl.String).str.zfill(12)
    feature = np.where(rng.random(n) < 0.6, np.char.add("PAY-", rng.integers(1, 40, n).astype(str)), None)
    frame = pl.DataFrame(
        {
            "time": np.sort(t0 + rng.integers(0, 86_400 * days, n)),
            "event": names[rng.integers(0, names.size, n)],
            "distinct_id": pl.Series(ids.tolist(), dtype=pl.String).fill_null(anon),
            "insert_id": pl.Series(rng.integers(0, 2**63 - 1, n, dtype=np.int64)).cast(pl.String).str.zfill(20),
            "feature": pl.Series(feature.tolist(), dtype=pl.String),
            "browser": np.array(["Chrome", "Firefox", "Safari", "Edge"])[rng.integers(0, 4, n)],
            "os": np.array(["Mac OS X", "Windows", "Linux", "iOS", "Android"])[rng.integers(0, 5, n)],
            "city": np.array(["Berlin", "Lagos", "Austin", "Osaka", "Lima", "Pune"])[rng.integers(0, 6, n)],
        }
    )
    return frame.select(list(EVENT_SCHEMA))


def write_events_jsonl(path: Path, events: pl.DataFrame) -> int:
    """Write the events as an export body; returns the file's size in bytes."""
    with path.open("wb") as fh:
        for chunk in iter_body(events):
            fh.write(chunk)
    return path.stat().st_size


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            yield chunk


def parse_tables(chunks: Iterator[bytes]) -> Iterator[pa.Table]:
    """The source's handling of one export stream: parse, then drop repeated keys (unthreaded)."""
    parser, seen = ExportParser(), KeyFingerprints()
    try:
        for chunk in chunks:
            for table in parser.feed(chunk):
                yield drop_seen(table, seen)
        for table in parser.finish():
            yield drop_seen(table, seen)
    finally:
        parser.close()


def time_duckdb_read_json(path: Path, workdir: Path, run: int = 0) -> Timing:
    """(a) DuckDB's `read_json` into a table of a DuckDB file."""
    db = workdir / f"duckdb_read_json_{run}.duckdb"
    start = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE events AS SELECT * FROM read_json('{path}', format = 'newline_delimited')")
        rows = con.execute("SELECT count(*) FROM events").fetchone()
    elapsed = time.perf_counter() - start
    return Timing(elapsed, int(rows[0]) if rows else 0, path.stat().st_size / 1e6)


def _disposition(strategy: str, first: date, last: date) -> Any:
    if strategy == "replace":  # the source's first run
        return write_disposition(first, last, first_run=True)
    if strategy == "replace_days":  # the source's later runs: delete-insert of the exported days
        return write_disposition(first, last, first_run=False)
    if strategy == "key_merge":  # the alternative: delete-insert keyed on DEDUP_KEY only
        return {"disposition": "merge", "strategy": "delete-insert"}
    raise ValueError(f"unknown strategy {strategy!r}")


def load_tables(
    tables: Callable[[], Iterator[pa.Table]],
    pipeline: dlt.Pipeline,
    *,
    strategy: str,
    first: date,
    last: date,
) -> float:
    """Load Arrow tables through dlt as the source does; returns the seconds taken."""
    hints = {**EVENTS_HINTS, "write_disposition": _disposition(strategy, first, last)}

    @dlt.resource(**hints)
    def events() -> Iterator[pa.Table]:
        yield from prefetch(tables())  # as the source does

    start = time.perf_counter()
    pipeline.run(events(), loader_file_format="parquet")
    return time.perf_counter() - start


def _pipeline(workdir: Path, name: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(workdir / f"{name}.duckdb")),
        dataset_name="raw_mixpanel",
        pipelines_dir=str(workdir / "dlt"),
    )


def _count(workdir: Path, name: str) -> int:
    with duckdb.connect(str(workdir / f"{name}.duckdb"), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM raw_mixpanel.events").fetchone()
    return int(row[0]) if row else 0


def _span(events: pl.DataFrame) -> tuple[date, date]:
    lo, hi = events["time"].min(), events["time"].max()
    assert isinstance(lo, int) and isinstance(hi, int)
    return datetime.fromtimestamp(lo, UTC).date(), datetime.fromtimestamp(hi, UTC).date()


def time_opsmap(path: Path, workdir: Path, events: pl.DataFrame, *, strategy: str = "replace", run: int = 0) -> Timing:
    """(b) file → ExportParser → Arrow → dlt (Parquet) → DuckDB, end to end."""
    first, last = _span(events)
    name = f"opsmap_{strategy}_{run}"
    seconds = load_tables(
        lambda: parse_tables(_file_chunks(path)), _pipeline(workdir, name), strategy=strategy, first=first, last=last
    )
    return Timing(seconds, _count(workdir, name), path.stat().st_size / 1e6)


def time_parser(path: Path) -> Timing:
    """The parser alone (bytes → Arrow), for the report."""
    start = time.perf_counter()
    rows = sum(t.num_rows for t in parse_tables(_file_chunks(path)))
    return Timing(time.perf_counter() - start, rows, path.stat().st_size / 1e6)


def _fastest(timings: list[Timing]) -> Timing:
    return min(timings, key=lambda t: t.seconds)


def run_benchmark(
    n: int = 1_000_000, workdir: Path | None = None, *, seed: int = 7, repeats: int = 1
) -> dict[str, Any]:
    """Generate `n` events and measure (a) and (b); returns the numbers and the ratio (b)/(a)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        work = Path(tmp)
        events = synthetic_events(n, seed=seed)
        path = work / "events.jsonl"
        size = write_events_jsonl(path, events)
        runs: dict[str, list[Timing]] = {"duck": [], "parser": [], "ours": []}
        for run in range(repeats):  # interleaved, so a busy spell of the machine hits both sides
            runs["duck"].append(time_duckdb_read_json(path, work, run))
            runs["parser"].append(time_parser(path))
            runs["ours"].append(time_opsmap(path, work, events, run=run))
        duck, parser, ours = (_fastest(runs[k]) for k in ("duck", "parser", "ours"))
        return {
            "events": n,
            "file_mb": round(size / 1e6, 1),
            "duckdb_read_json": duck.as_dict(),
            "parser_only": parser.as_dict(),
            "opsmap": ours.as_dict(),
            "ratio": round(ours.mb_per_s / duck.mb_per_s, 3),
        }


def compare_strategies(n: int = 1_000_000, repull_days: int = 3, workdir: Path | None = None) -> dict[str, Any]:
    """Time the ways rows can reach the table: a backfill of `n` events over 30 days (first run), then
    a re-pull of the last `repull_days` days (the nightly shape) into the loaded table.

    Backfill: `replace` (the source: straight into the table) against `key_merge` (staging, then a
    delete-insert keyed on `DEDUP_KEY`). Re-pull, into the same loaded table: `replace_days` (the
    source: delete the re-pulled days, insert) against `key_merge`.
    """
    results: dict[str, Any] = {"events": n}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        work = Path(tmp)
        events = synthetic_events(n)
        first, last = _span(events)
        path = work / "events.jsonl"
        write_events_jsonl(path, events)
        repull_first = last - timedelta(days=repull_days - 1)
        cut = int(datetime.combine(repull_first, datetime.min.time(), UTC).timestamp())
        tail = b"".join(iter_body(events.filter(pl.col("time") >= cut)))
        results["repull_events"] = events.filter(pl.col("time") >= cut).height
        for backfill, repull in (("replace", "replace_days"), ("key_merge", "key_merge")):
            name = f"cmp_{backfill}"
            pipeline = _pipeline(work, name)
            initial = load_tables(
                lambda: parse_tables(_file_chunks(path)), pipeline, strategy=backfill, first=first, last=last
            )
            results[f"backfill_{backfill}_s"] = round(initial, 2)
            again = load_tables(
                lambda: parse_tables(iter([tail])), pipeline, strategy=repull, first=repull_first, last=last
            )
            results[f"repull_{repull}_s"] = round(again, 2)
            results[f"rows_after_{repull}"] = _count(work, name)
    return results


def main(argv: list[str] | None = None) -> None:
    """CLI: print the benchmark as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="report the fastest of this many runs")
    parser.add_argument("--strategies", action="store_true", help="also compare the de-duplication designs")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": run_benchmark(args.events, args.workdir, repeats=args.repeats)}
    if args.strategies:
        out["strategies"] = compare_strategies(args.events, workdir=args.workdir)
    print(json.dumps(out, indent=2))
    if args.workdir and not any(args.workdir.iterdir()):
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
