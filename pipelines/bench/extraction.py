"""Extraction throughput per source, from the sandbox over HTTP, against DuckDB reading the same bytes.

One run at one scale: start the sandbox in a child process with payload capture on
(`OPSMAP_SANDBOX_CAPTURE`), extract each system alone through its real dlt source (extract,
normalise, load into a fresh DuckDB file: what the nightly step does for it), then time DuckDB
reading the captured payload bytes of that system from disk into a table: `read_json` for
Mixpanel's JSONL export, `read_json_objects` (one JSON value per response body) for the JSON APIs,
whose bodies have a different shape per endpoint. The ratio is the source's MB/s over DuckDB's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipelines.assets.extract_worker import LONGEST_FIRST, raw_pipeline, source_factory
from pipelines.bench.harness import figure
from pipelines.sandbox.server import CAPTURE_ENV, CAPTURE_MAX_ENV, spawn_sandbox
from pipelines.settings import Paths


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _rows(pipeline: Any) -> int:
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return int(sum(n for table, n in counts.items() if not table.startswith("_dlt")))


def reference_seconds(path: Path, jsonl_events: bool, workdir: Path) -> float:
    """DuckDB reading `path` from disk into a table of a DuckDB file."""
    db = workdir / f"reference_{path.stem}.duckdb"
    db.unlink(missing_ok=True)
    reader = (
        f"read_json('{path}', format = 'newline_delimited')"
        if jsonl_events
        else f"read_json_objects('{path}', format = 'newline_delimited')"
    )
    started = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE payload AS SELECT * FROM {reader}")
    seconds = time.perf_counter() - started
    db.unlink(missing_ok=True)
    return seconds


def extraction_run(
    scale: float, workdir: Path, systems: tuple[str, ...] = LONGEST_FIRST, capture_max_mb: float | None = None
) -> dict[str, dict[str, Any]]:
    """Extract every system once, alone, from a fresh sandbox; per system: rows, bytes, requests,
    seconds, and DuckDB's seconds on the same bytes (scaled up when the capture was capped)."""
    capture = workdir / "capture"
    access = workdir / "access.jsonl"
    env = {CAPTURE_ENV: str(capture)}
    if capture_max_mb:
        env[CAPTURE_MAX_ENV] = str(capture_max_mb)
    results: dict[str, dict[str, Any]] = {}
    with _environ(env), spawn_sandbox(scale=scale, access_log=access, workdir=workdir) as sandbox:
        run_env = {
            **sandbox.env,
            "OPSMAP_AS_OF": sandbox.as_of(),
            "OPSMAP_WAREHOUSE": str(workdir / "w" / "opsmap.duckdb"),
            "DLT_DATA_DIR": str(workdir / "w" / "dlt"),
        }
        with _environ(run_env):
            paths = Paths.from_env().ensure()
            for system in systems:
                pipeline = raw_pipeline(system, paths)
                started = time.perf_counter()
                pipeline.run(source_factory(system)(), loader_file_format="parquet")
                results[system] = {"seconds": time.perf_counter() - started, "rows": _rows(pipeline)}
    # The sandbox has stopped: the capture files are complete.
    requests = Counter(json.loads(line)["system"] for line in access.open(encoding="utf-8"))
    counted = json.loads((capture / "_bytes.json").read_text(encoding="utf-8"))
    for system, row in results.items():
        seen, written = counted["seen"].get(system, 0), counted["written"].get(system, 0)
        ref = reference_seconds(capture / f"{system}.jsonl", system == "mixpanel", workdir) if written else 0.0
        row.update(
            requests=requests.get(system, 0),
            bytes=seen,
            reference_seconds=ref * seen / written if written else 0.0,  # capped: DuckDB's rate on a prefix
            reference_capped=written < seen,
        )
    shutil.rmtree(capture, ignore_errors=True)
    shutil.rmtree(workdir / "w", ignore_errors=True)
    return results


def extraction_figures(scale: float, runs: int, *, capture_max_mb: float | None = None) -> dict[str, Any]:
    """Per source: rows/s (median, min–max over `runs` fresh sandboxes) and the MB/s ratio to DuckDB."""
    per_run: list[dict[str, dict[str, Any]]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="opsmap-bench-extract-") as tmp:
            per_run.append(extraction_run(scale, Path(tmp), capture_max_mb=capture_max_mb))
    out: dict[str, Any] = {"scale": scale}
    for system in LONGEST_FIRST:
        rows = [r[system] for r in per_run]
        mb_s = [r["bytes"] / 1e6 / r["seconds"] for r in rows]
        ref_mb_s = [r["bytes"] / 1e6 / r["reference_seconds"] if r["reference_seconds"] else 0.0 for r in rows]
        out[system] = figure(
            [r["rows"] / r["seconds"] for r in rows],
            "rows/s",
            seconds=figure([r["seconds"] for r in rows], "s", higher_is_better=False),
            rows=rows[0]["rows"],
            requests=rows[0]["requests"],
            payload_mb=round(rows[0]["bytes"] / 1e6, 2),
            mb_per_s=figure(
                mb_s,
                "MB/s",
                reference=ref_mb_s,
                reference_what="DuckDB reading the same payload bytes from disk into a table "
                + ("(read_json)" if system == "mixpanel" else "(read_json_objects, one value per response)"),
                ratio_of="source MB/s / DuckDB MB/s",
            ),
            reference_capped=any(r["reference_capped"] for r in rows),
        )
    return out
