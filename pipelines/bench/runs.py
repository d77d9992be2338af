"""Whole-pipeline figures: the full `opsmap run`, the nightly incremental run, and Dagster's overhead.

- Full run: `opsmap run --sandbox-scale S` exactly as `make demo` runs it, in a child process with a
  fresh warehouse and Dagster home; wall time, the peak memory of its process tree (the run, the
  sandbox, the extraction workers), and where the time went, read back from the run's Dagster
  event log: each step is classed by what it materialised (raw tables → extraction, `kpi/`,
  `reports/` → KPIs, `published_warehouse` → publication, any other table → models, checks only →
  checks); the rest is start-up (imports, the sandbox, resources) and Dagster between steps.
- Incremental: a sandbox of the world as of day D and `opsmap run` against it (the full run), then
  the sandbox's clock moves to D+1 and `opsmap run` again on the same warehouse: requests (from the
  sandbox's access log) and wall time of the second run as a share of the first.
- Dagster overhead: the same SQL models (every model in `warehouse/`) built on copies of the same
  raw warehouse, once through a Dagster job of their assets (no checks) and once as plain SQL with
  the same `build_model` function the assets call.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipelines.bench.harness import GIB, child_env, figure, python_module, run_measured, stats
from pipelines.settings import SYSTEMS, dagster_yaml

CATEGORIES = ("extraction", "models", "checks", "kpis", "publication")


def _run_env(folder: Path, **extra: str | None) -> dict[str, str]:
    home = folder / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(dagster_yaml(home), encoding="utf-8")
    overrides: dict[str, str | None] = {f"SOURCES__{s.upper()}__BASE_URL": None for s in SYSTEMS}
    overrides.update(
        OPSMAP_WAREHOUSE=str(folder / "warehouse" / "opsmap.duckdb"),
        DAGSTER_HOME=str(home),
        DLT_DATA_DIR=None,
        OPSMAP_AS_OF=None,
    )
    overrides.update(extra)
    return child_env(**overrides)


def _category(materialized: list[list[str]], checked: bool) -> str:
    if not materialized:
        return "checks" if checked else "other"
    head = materialized[0][0]
    if head.startswith("raw_"):
        return "extraction"
    if head in ("kpi", "reports"):
        return "kpis"
    if head == "published_warehouse":
        return "publication"
    return "models"


def step_breakdown(dagster_home: Path) -> dict[str, Any]:
    """Seconds per category of step, and the run's own span, from the latest run in `dagster_home`."""
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        run = instance.get_runs(limit=1)[0]
        records = instance.get_records_for_run(run.run_id, limit=1_000_000).records
    finally:
        instance.dispose()
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    materialized: dict[str, list[list[str]]] = {}
    checked: set[str] = set()
    span: dict[str, float] = {}
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        kind, step = event.event_type_value, entry.step_key
        if kind in ("PIPELINE_START", "RESOURCE_INIT_STARTED", "RESOURCE_INIT_SUCCESS") and kind not in span:
            span[kind] = entry.timestamp
        elif kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            span["end"] = entry.timestamp
        elif step and kind == "STEP_START":
            starts.setdefault(step, entry.timestamp)
        elif step and kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[step] = entry.timestamp
        elif step and kind == "ASSET_MATERIALIZATION":
            materialized.setdefault(step, []).append(list(event.asset_key.path))  # type: ignore[union-attr]
        elif step and kind == "ASSET_CHECK_EVALUATION":
            checked.add(step)
    seconds: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    for step, started in starts.items():
        if step in ends:
            category = _category(materialized.get(step, []), step in checked)
            seconds[category] += ends[step] - started
            steps[category] += 1
    return {
        "status": run.status.value,
        "seconds": {c: round(seconds[c], 2) for c in (*CATEGORIES, "other")},
        "steps": {c: steps[c] for c in (*CATEGORIES, "other")},
        "resources_seconds": round(span.get("RESOURCE_INIT_SUCCESS", 0) - span.get("RESOURCE_INIT_STARTED", 0), 2),
        "dagster_span_seconds": round(span.get("end", 0) - span.get("PIPELINE_START", 0), 2),
    }


def full_run(scale: float, folder: Path, extra_args: tuple[str, ...] = (), **env: str | None) -> dict[str, Any]:
    """One `opsmap run` in a child process: wall, peak memory, and the step breakdown."""
    run_env = _run_env(folder, **env)
    measured = run_measured(python_module("pipelines.cli", "run", "--sandbox-scale", str(scale), *extra_args), run_env)
    result: dict[str, Any] = {
        "ok": measured.returncode == 0,
        "seconds": measured.seconds,
        "peak_gib": measured.peak_bytes / GIB,
        "peak_process_gib": measured.peak_process_bytes / GIB,
        "cpu_seconds": measured.cpu_seconds,
    }
    # The step's own account of each system (worker timings), from the run's terminal output.
    result["extraction_log"] = [
        line.split("] ", 1)[-1] for line in measured.stderr.splitlines() if "into the step" in line
    ]
    try:
        result["breakdown"] = step_breakdown(Path(run_env["DAGSTER_HOME"]))
    except Exception as exc:  # the run died before Dagster recorded it
        result["breakdown"] = {"error": f"{type(exc).__name__}: {exc}"}
    if not result["ok"]:
        result["output_tail"] = (measured.stdout + measured.stderr)[-1500:]
    return result


def full_run_figures(scale: float, runs: int, *, keep_warehouse: Path | None = None) -> dict[str, Any]:
    """The full run `runs` times: wall, peak memory, share per category (median, min–max)."""
    results = []
    for k in range(runs):
        with tempfile.TemporaryDirectory(prefix="opsmap-bench-run-") as tmp:
            results.append(full_run(scale, Path(tmp)))
            build = Path(tmp) / "warehouse" / "opsmap.build.duckdb"
            if keep_warehouse and k == runs - 1 and build.exists():
                keep_warehouse.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(build, keep_warehouse)
    ok = [r for r in results if r["ok"] and "seconds" in r.get("breakdown", {})]
    shares: dict[str, Any] = {}
    for category in (*CATEGORIES, "other"):
        shares[category] = stats([r["breakdown"]["seconds"][category] / r["seconds"] for r in ok])
    shares["startup_and_between_steps"] = stats(
        [1 - sum(r["breakdown"]["seconds"].values()) / r["seconds"] for r in ok]
    )
    return {
        "scale": scale,
        "succeeded": f"{len([r for r in results if r['ok']])}/{len(results)}",
        "wall_seconds": figure(
            [r["seconds"] for r in results],
            "s",
            higher_is_better=False,
            goal=60.0 if scale == 1 else None,
            goal_what="< 60 s at scale 1 on 2 cores" if scale == 1 else None,
        ),
        "peak_memory_gib": figure(
            [r["peak_gib"] for r in results], "GiB (sum over the process tree)", higher_is_better=False
        ),
        "peak_process_memory_gib": figure(
            [r["peak_process_gib"] for r in results], "GiB (largest process)", higher_is_better=False
        ),
        "cpu_seconds": figure(
            [r["cpu_seconds"] for r in results],
            "CPU s (the run, the sandbox and the workers)",
            higher_is_better=False,
            note="cpu_seconds / cores is the wall time an otherwise idle machine cannot beat",
        ),
        "share_of_wall": shares,
        "steps": ok[0]["breakdown"]["steps"] if ok else {},
        "sandbox_and_resources_seconds": stats([r["breakdown"]["resources_seconds"] for r in ok]),
        "extraction_log": results[-1].get("extraction_log", []),
        "failures": [r.get("output_tail", "") for r in results if not r["ok"]],
    }


# --------------------------------------------------------------------------------------------------
# Incremental
# --------------------------------------------------------------------------------------------------


def _requests(access: Path) -> Counter[str]:
    if not access.exists():
        return Counter()
    return Counter(json.loads(line)["system"] for line in access.open(encoding="utf-8"))


def incremental_pair(scale: float, folder: Path, day: date) -> dict[str, Any]:
    """Full run as of `day`, then the nightly run as of `day + 1` on the same warehouse."""
    from pipelines.sandbox.server import spawn_sandbox

    access = folder / "access.jsonl"
    out: dict[str, Any] = {}
    with spawn_sandbox(scale=scale, as_of=day.isoformat(), access_log=access, workdir=folder) as sandbox:
        for label, at in (("full", day), ("incremental", day + timedelta(days=1))):
            sandbox.set_as_of(at.isoformat())
            before = _requests(access)
            run_env = _run_env(folder, **sandbox.env, OPSMAP_AS_OF=sandbox.as_of())
            measured = run_measured(python_module("pipelines.cli", "run"), run_env)
            after = _requests(access)
            out[label] = {
                "ok": measured.returncode == 0,
                "seconds": measured.seconds,
                "requests": {s: after[s] - before[s] for s in SYSTEMS},
            }
            if measured.returncode != 0:
                out[label]["output_tail"] = (measured.stdout + measured.stderr)[-1500:]
    return out


def incremental_figures(scale: float, runs: int, day: date) -> dict[str, Any]:
    """Requests and wall time of the nightly run after one simulated day, as shares of the full run."""
    pairs = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="opsmap-bench-incr-") as tmp:
            pairs.append(incremental_pair(scale, Path(tmp), day))
    full_requests = [sum(p["full"]["requests"].values()) for p in pairs]
    incr_requests = [sum(p["incremental"]["requests"].values()) for p in pairs]
    return {
        "scale": scale,
        "days": [day.isoformat(), (day + timedelta(days=1)).isoformat()],
        "succeeded": all(p["full"]["ok"] and p["incremental"]["ok"] for p in pairs),
        "requests": figure(
            incr_requests,
            "requests",
            reference=full_requests,
            reference_what="requests of the full run as of the first day",
            ratio_of="incremental / full",
            higher_is_better=False,
            goal=0.05,
            goal_what="≤ 5 % of the full run's requests",
        ),
        "requests_by_system": {k: pairs[0][k]["requests"] for k in ("full", "incremental")},
        "wall_seconds": figure(
            [p["incremental"]["seconds"] for p in pairs],
            "s",
            reference=[p["full"]["seconds"] for p in pairs],
            reference_what="wall time of the full run as of the first day (same sandbox, already started)",
            ratio_of="incremental / full",
            higher_is_better=False,
            goal=0.05,
            goal_what="≤ 5 % of the full run's wall time",
        ),
        "failures": [p[k].get("output_tail", "") for p in pairs for k in ("full", "incremental") if not p[k]["ok"]],
    }


# --------------------------------------------------------------------------------------------------
# Dagster overhead
# --------------------------------------------------------------------------------------------------


def plain_sql_seconds(build: Path) -> tuple[float, int]:
    """Every SQL model built in dependency order on one connection: (seconds, models)."""
    import duckdb

    from pipelines.models import build_model, load_models

    models = load_models()
    started = time.perf_counter()
    con = duckdb.connect(str(build))
    try:
        con.execute("SET TimeZone = 'UTC'")
        for model in models:
            build_model(con, model)
    finally:
        con.close()
    return time.perf_counter() - started, len(models)


def dagster_seconds(published: Path, home: Path | None, *, keep_open: bool = False) -> tuple[float, int, bool]:
    """The same models as Dagster assets (a job of them alone, no checks), in-process, on a
    persistent instance like `opsmap run`'s (SQLite event log in `home`), or an in-memory one when
    `home` is None: (seconds, steps, success).

    `keep_open` holds one extra connection to the warehouse for the whole job: every step's own
    `duckdb.connect` then reuses the open database instead of opening (and, after writing,
    checkpointing) the file again, which is what a run-wide connection would save."""
    from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job, in_process_executor

    from pipelines.assets.warehouse_models import model_assets
    from pipelines.progress import progress_logger
    from pipelines.resources import Warehouse

    assets = model_assets()
    job = define_asset_job(
        "bench_models",
        selection=AssetSelection.assets(*assets).without_checks(),
        config={"loggers": {"progress": {}}},  # the terminal logger `opsmap run` uses, not Dagster's console one
    )
    defs = Definitions(
        assets=assets,
        jobs=[job],
        resources={"warehouse": Warehouse(path=str(published))},
        loggers={"progress": progress_logger},
        executor=in_process_executor,
    )
    import duckdb

    instance = DagsterInstance.from_config(str(home)) if home else DagsterInstance.ephemeral()
    keeper = None
    try:
        started = time.perf_counter()
        if keep_open:
            keeper = duckdb.connect(str(published.with_name(f"{published.stem}.build{published.suffix}")))
        result = defs.resolve_job_def("bench_models").execute_in_process(instance=instance, raise_on_error=False)
        if keeper is not None:
            keeper.close()
            keeper = None
        seconds = time.perf_counter() - started
    finally:
        if keeper is not None:
            keeper.close()
        instance.dispose()
    steps = len([e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"])
    return seconds, steps, result.success


def dagster_overhead_figures(source_build: Path, runs: int) -> dict[str, Any]:
    """Dagster vs plain SQL on fresh copies of the same built warehouse, interleaved, `runs` times;
    Dagster both on a persistent instance (as `opsmap run`) and an in-memory one (what the SQLite
    event log costs)."""
    via_dagster, in_memory, kept_open, plain, steps, ok, models = [], [], [], [], 0, True, 0

    def copy_for_dagster(folder: Path) -> Path:
        published = folder / "opsmap.duckdb"
        folder.mkdir()
        shutil.copyfile(source_build, published.with_name("opsmap.build.duckdb"))
        return published

    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="opsmap-bench-dagster-") as tmp:
            folder = Path(tmp)
            sql_copy = folder / "sql.duckdb"
            shutil.copyfile(source_build, sql_copy)
            seconds, models = plain_sql_seconds(sql_copy)
            plain.append(seconds)
            home = folder / "dagster_home"
            home.mkdir()
            (home / "dagster.yaml").write_text(dagster_yaml(home), encoding="utf-8")
            seconds, steps, success = dagster_seconds(copy_for_dagster(folder / "persistent"), home)
            via_dagster.append(seconds)
            seconds, _, success_memory = dagster_seconds(copy_for_dagster(folder / "memory"), None)
            in_memory.append(seconds)
            home_open = folder / "dagster_home_open"
            home_open.mkdir()
            (home_open / "dagster.yaml").write_text(dagster_yaml(home_open), encoding="utf-8")
            seconds, _, success_open = dagster_seconds(copy_for_dagster(folder / "open"), home_open, keep_open=True)
            kept_open.append(seconds)
            ok = ok and success and success_memory and success_open
    return {
        "models": models,
        "dagster_steps": steps,
        "succeeded": ok,
        "wall_seconds": figure(
            via_dagster,
            "s",
            reference=plain,
            reference_what="the same models as plain SQL on DuckDB (build_model in dependency order)",
            ratio_of="Dagster / plain SQL",
            higher_is_better=False,
        ),
        "wall_seconds_in_memory_instance": figure(
            in_memory,
            "s",
            reference=plain,
            reference_what="the same models as plain SQL on DuckDB",
            ratio_of="Dagster (in-memory instance) / plain SQL",
            higher_is_better=False,
        ),
        "wall_seconds_warehouse_kept_open": figure(
            kept_open,
            "s",
            reference=plain,
            reference_what="the same models as plain SQL on DuckDB",
            ratio_of="Dagster (persistent instance, one warehouse connection held for the job) / plain SQL",
            higher_is_better=False,
        ),
        "overhead_per_step_ms": figure(
            [(d - p) / max(1, steps) * 1000 for d, p in zip(via_dagster, plain, strict=True)],
            "ms",
            higher_is_better=False,
        ),
    }
