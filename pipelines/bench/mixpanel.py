"""Mixpanel ingestion: the source's parse → Arrow → dlt (Parquet) → DuckDB path against DuckDB's
own `read_json` on the same JSONL file, reusing `pipelines.sources.mixpanel_bench` (goal ≥ 0.5).

Each run measures both sides, interleaved, on the same file; the ratio is computed per run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines.bench.harness import figure


def mixpanel_figures(events: int, runs: int) -> dict[str, Any]:
    """Rows/s and MB/s of the source's path, and its ratio to DuckDB `read_json`, over `runs` runs."""
    from pipelines.sources import mixpanel_bench as mb

    ours, duck = [], []
    with tempfile.TemporaryDirectory(prefix="opsmap-bench-mixpanel-") as tmp:
        work = Path(tmp)
        frame = mb.synthetic_events(events)
        path = work / "events.jsonl"
        size = mb.write_events_jsonl(path, frame)
        for run in range(runs):
            duck.append(mb.time_duckdb_read_json(path, work, run))
            ours.append(mb.time_opsmap(path, work, frame, run=run))
            for leftover in work.glob("*.duckdb"):  # each run's files: GBs at 1M+ events
                leftover.unlink()
    return {
        "events": events,
        "file_mb": round(size / 1e6, 1),
        "rows_per_s": figure([t.rows_per_s for t in ours], "rows/s"),
        "mb_per_s": figure(
            [t.mb_per_s for t in ours],
            "MB/s",
            reference=[t.mb_per_s for t in duck],
            reference_what="DuckDB read_json of the same JSONL into a table of a DuckDB file",
            ratio_of="opsmap MB/s / DuckDB read_json MB/s",
            goal=0.5,
            goal_what="ratio ≥ 0.5 (acceptance now: ≥ 0.3)",
        ),
        "rows_loaded": ours[0].rows if ours else 0,
    }
