"""The fault matrix: each of the five sources under each fault kind of the sandbox, at rates that hit
many pages, ends with the raw tables and the marts of a clean run, and the clean run equals the truth.

One small world is served seven times: clean, then once per fault kind at a high rate. Each time the
five systems are extracted through the production pipelines (`raw_pipeline`, Parquet loader files)
into a fresh warehouse, and every raw table is diffed row by row against the clean extraction. A row
is identified by its table's primary key (a nested row by its parent's identity and list position),
so the diff counts rows lost, duplicated and changed. The SQL models are then built on the clean raw
set and on two faulted ones and every model table is compared.

What the default variant changes for speed, and why the claim still holds:

- waits are shortened (backoff, Retry-After, rate-limit resets): a fault plan decides from the request
  and how often it was seen, never from the clock, so a client that waits less meets the same faults;
- Mixpanel's 3-requests-a-second pacing and the emulator's matching limit are off: they throttle, they
  do not fault, and at that pace Mixpanel alone would take 9 s a run;
- pages are small (GitHub 5, Jenkins 2, Jira 7, Datadog 3 records, Mixpanel 21 days), so that faults
  land between pages;
- `slow` answers 20 ms late: it checks that late (and, for the threaded sources, reordered) answers
  lose nothing. The slow variant (`-m slow`: whole nightly runs, every wait real) uses the sandbox's own
  one-second delay. Neither outlasts the client's read timeout; a read that does is retried like a cut
  body (tests/sources/test_http.py).

`mutate` renders one record of a page as updated at the world's present: the raw tables then hold
that newer update time (the record did change), so those rows count as `redated`, never as changed,
as long as only an update-time column moved and it moved to the present. Jenkins and Mixpanel have no
`mutate` rendering (see their emulators), so their `mutate` row shows the fault met and no effect.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import orjson
import polars as pl
import pytest

from pipelines.assets.config_settings import feature_map_rows, settings_rows, write_settings
from pipelines.assets.extract_worker import raw_pipeline, source_factory
from pipelines.models import build_model, load_models
from pipelines.sandbox.faults import FAULT_KINDS, FaultPlan
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.mixpanel import MixpanelEmulator
from pipelines.sandbox.server import SandboxProcess, SandboxServer
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World, WorldConfig
from pipelines.settings import SYSTEMS, Paths
from pipelines.sources import datadog, github, jenkins, jira, mixpanel
from pipelines.sources.declared_tables import create_declared_tables
from pipelines.sources.http import make_session

WORLD = WorldConfig(seed=3, scale=0.025)
"""41 issues, 34 PRs, 82 deployments (4 change failures), 2 incidents, 71 builds, a year of events, Datadog
events in the last 45 days: among the smallest worlds where every mart has rows."""

RATES: dict[str, float] = {
    "rate_limit": 0.3,
    "server_error": 0.3,
    "truncate": 0.3,
    "slow": 0.3,
    "duplicate": 0.5,
    "mutate": 0.5,
}
FAULT_SEED = 10
SLOW_SECONDS = 0.02
MIN_FAULTED_REQUESTS = 3
"""Every source must meet every kind at least this often, or the cell proves nothing."""

NO_MUTATE_RENDERING = frozenset({"jenkins", "mixpanel"})
MART_KINDS = ("duplicate", "mutate")
"""The faulted raw sets the models are built on: the two kinds that change what a page holds."""

UPDATE_TIME_COLUMNS = frozenset({"updated_at", "fields__updated", "attributes__modified", "modified", "modified_at"})
"""The columns a `mutate` fault re-dates (GitHub, Jira, Datadog incidents, monitors, SLOs)."""

DLT_COLUMNS = frozenset({"_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_root_id", "_dlt_list_idx"})

GITHUB_PAGE_SIZE = 5
JENKINS_PAGE_SIZE = 2
JIRA_PAGE_SIZE = 7
DATADOG_PAGE_SIZE = 3
MIXPANEL_DAYS_PER_REQUEST = 21
DATADOG_HISTORY_DAYS = 45
"""SLO history and events from 45 days before the present: a year of it is 400 requests of the same shape."""

MAX_WAIT_S = 0.005


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


Row = dict[str, Any]
Table = dict[str, list[Row]]
"""A raw table: row identity → the rows with that identity (more than one is a duplicate)."""


@dataclass
class Run:
    """One extraction of the five systems from one sandbox."""

    kind: str
    build: Path
    port: int = 0
    tables: dict[str, dict[str, Table]] = field(default_factory=dict)  # system → table → rows
    errors: dict[str, str] = field(default_factory=dict)  # system → why its extraction failed
    requests: Counter[str] = field(default_factory=Counter)  # system → requests the sandbox answered
    faulted: Counter[str] = field(default_factory=Counter)  # system → requests that met the fault


def source_kwargs(server: SandboxServer, system: str) -> dict[str, Any]:
    """The source's arguments as the sandbox configures them (`SOURCES__<SYSTEM>__<KEY>` → `key`), with
    the small pages and windows of this test; explicit, so no process-wide environment is touched."""
    prefix = f"SOURCES__{system.upper()}__"
    kwargs: dict[str, Any] = {
        k.removeprefix(prefix).lower(): v for k, v in server.env().items() if k.startswith(prefix)
    }
    present = server.as_of
    if system == "github":
        # The sandbox's GitHub START_DATE is the world's first day, but a small world can hold PRs closed
        # before it, which the truth lists; the whole history keeps the yardstick exact.
        kwargs.pop("start_date", None)
    elif system == "jira":
        kwargs["page_size"] = JIRA_PAGE_SIZE
    elif system == "datadog":
        kwargs["page_size"] = DATADOG_PAGE_SIZE
        kwargs["start_date"] = (present - timedelta(days=DATADOG_HISTORY_DAYS)).date().isoformat()
    elif system == "mixpanel":
        kwargs["end_date"] = present.date().isoformat()
        kwargs["days_per_request"] = MIXPANEL_DAYS_PER_REQUEST
    return kwargs


def shorten_waits(mp: pytest.MonkeyPatch) -> None:
    """Every source's session waits at most `MAX_WAIT_S` (see the module docstring), Mixpanel unpaced,
    and GitHub and Jenkins page in small pages."""

    def quick_session(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("sleep", lambda seconds: time.sleep(min(seconds, MAX_WAIT_S)))
        kwargs.setdefault("backoff_base", MAX_WAIT_S / 8)  # the Mixpanel exporter's own backoff reads it too
        return make_session(*args, **kwargs)

    for module in (datadog, github, jenkins, jira, mixpanel):
        mp.setattr(module, "make_session", quick_session)

    class Unpaced(mixpanel.Pacer):
        def __init__(self, per_second: int = 10_000, **kwargs: Any) -> None:
            super().__init__(per_second, **kwargs)

    mp.setattr(mixpanel, "Pacer", Unpaced)
    mp.setattr(github, "PAGE_SIZE", GITHUB_PAGE_SIZE)
    mp.setattr(jenkins, "PAGE_SIZE", JENKINS_PAGE_SIZE)


def extract(world: World, kind: str, folder: Path, port: int = 0) -> Run:
    """Serve `world` with `kind` faulted (none for "clean") on `port`, extract the five systems into `folder`."""
    plan = FaultPlan({kind: RATES[kind]}, seed=FAULT_SEED) if kind in RATES else FaultPlan()
    log = folder / "access.jsonl"
    paths = Paths(folder / "opsmap.duckdb", folder / "opsmap.build.duckdb", folder / "dlt", folder)
    run = Run(kind, paths.build)
    with SandboxServer(world, port=port, faults=plan, access_log=log, slow_seconds=SLOW_SECONDS) as server:
        run.port = server.port
        server.emulators["mixpanel"] = MixpanelEmulator(world, per_second_limit=None)
        loaded = []
        for system in SYSTEMS:
            pipeline = raw_pipeline(system, paths)
            try:
                pipeline.run(source_factory(system)(**source_kwargs(server, system)), loader_file_format="parquet")
                create_declared_tables(pipeline)  # as the extraction step does: models read every declared table
            except Exception as exc:  # the matrix reports it as the cell's error; the test fails on it
                run.errors[system] = f"{type(exc).__name__}: {exc}"[:500]
                continue
            loaded.append(pipeline)
    for pipeline in loaded:
        run.tables[pipeline.pipeline_name.removeprefix("opsmap_")] = read_tables(paths.build, pipeline)
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = orjson.loads(line)
        run.requests[entry["system"]] += 1
        run.faulted[entry["system"]] += kind in entry["faults"]
    return run


def read_tables(build: Path, pipeline: dlt.Pipeline) -> dict[str, Table]:
    """Every table of the pipeline's dataset, rows keyed by their identity.

    A root row's identity is its primary key; a nested row's is its parent's identity and its position
    in the parent's list (dlt's `_dlt_list_idx`), since its own `_dlt_id` is random per load.
    """
    schema = pipeline.default_schema
    dataset = pipeline.dataset_name
    tables: dict[str, Table] = {}
    identity: dict[str, str] = {}  # _dlt_id → identity, parents first
    names = [n for n in schema.data_table_names() if not n.startswith("_dlt")]
    depth = {n: _depth(schema.tables, n) for n in names}
    with duckdb.connect(str(build), read_only=True) as con:
        query = f"SELECT table_name FROM duckdb_tables() WHERE schema_name = '{dataset}'"
        present = {r[0] for r in con.execute(query).fetchall()}
        for name in sorted((n for n in names if n in present), key=lambda n: depth[n]):
            table = schema.tables[name]
            keys = [c for c, col in table["columns"].items() if col.get("primary_key")]
            cursor = con.execute(f'SELECT * FROM {dataset}."{name}"')
            columns = [d[0] for d in cursor.description]
            rows: Table = {}
            for values in cursor.fetchall():
                record = dict(zip(columns, values, strict=True))
                if table.get("parent"):
                    ident = f"{identity[record['_dlt_parent_id']]}/{record['_dlt_list_idx']}"
                else:
                    ident = repr(tuple(record[k] for k in keys)) if keys else repr(_content(record))
                if "_dlt_id" in record:  # Arrow-loaded tables (Mixpanel's events) have none
                    identity[record["_dlt_id"]] = ident
                rows.setdefault(ident, []).append(_content(record))
            tables[name] = rows
    return tables


def _depth(tables: dict[str, Any], name: str) -> int:
    parent = tables[name].get("parent")
    return 0 if not parent else 1 + _depth(tables, parent)


def _content(record: Row) -> Row:
    return {k: v for k, v in record.items() if k not in DLT_COLUMNS and v is not None}


# --------------------------------------------------------------------------------------------------
# The diff
# --------------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One source under one fault kind, against the clean extraction."""

    system: str
    kind: str
    requests: int = 0
    faulted: int = 0
    expected: int = 0
    found: int = 0
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    redated: int = 0
    error: str = ""
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.error or self.lost or self.duplicated or self.changed)


def diff(system: str, kind: str, clean: dict[str, Table], faulted: dict[str, Table], present: datetime) -> Cell:
    cell = Cell(system, kind)
    for name in sorted(set(clean) | set(faulted)):
        want, got = clean.get(name, {}), faulted.get(name, {})
        for ident in set(want) | set(got):
            expected, found = want.get(ident, []), got.get(ident, [])
            cell.expected += len(expected)
            cell.found += len(found)
            lost, extra = max(0, len(expected) - len(found)), max(0, len(found) - len(expected))
            cell.lost += lost
            cell.duplicated += extra
            if lost or extra:
                cell.examples.append(f"{name} {ident}: {len(expected)} expected, {len(found)} found")
            for before, after in zip(expected, found, strict=False):
                moved = {c for c in set(before) | set(after) if before.get(c) != after.get(c)}
                if not moved:
                    continue
                if kind == "mutate" and moved <= UPDATE_TIME_COLUMNS and all(_is_at(after[c], present) for c in moved):
                    cell.redated += 1
                    continue
                cell.changed += 1
                column = sorted(moved)[0]
                cell.examples.append(f"{name} {ident}: {column} {before.get(column)!r} → {after.get(column)!r}")
    return cell


def _is_at(value: Any, present: datetime) -> bool:
    """Whether a re-dated value is the world's present, in any of the APIs' time formats."""
    if isinstance(value, datetime):
        return value == present
    if isinstance(value, int | float):
        return value in (present.timestamp(), present.timestamp() * 1000)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")) == present
    return False


def print_matrix(cells: list[Cell]) -> None:
    header = ["source", "fault", "requests", "faulted", "expected", "found", "lost", "duplicated", "changed", "redated"]
    counts = [(c.requests, c.faulted, c.expected, c.found, c.lost, c.duplicated, c.changed, c.redated) for c in cells]
    lines = [header] + [[c.system, c.kind, *map(str, n)] for c, n in zip(cells, counts, strict=True)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print("\nfault matrix: rows of every raw table, `expected` from the clean extraction")
    for line in lines:
        cells_text = [v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True))]
        print("  " + "  ".join(cells_text))
    for c in cells:
        for note in ([c.error] if c.error else []) + c.examples[:3]:
            print(f"  {c.system} × {c.kind}: {note}")


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WORLD)


@pytest.fixture(scope="module")
def runs(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The clean extraction, then one per fault kind, all served on one port: links in the raw rows
    carry the sandbox's address, as they would a real API's."""
    done: dict[str, Run] = {}
    port = 0
    with pytest.MonkeyPatch.context() as mp:
        shorten_waits(mp)
        for kind in ("clean", *FAULT_KINDS):
            done[kind] = extract(world, kind, tmp_path_factory.mktemp(f"faults-{kind}"), port)
            port = done[kind].port
    return done


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_the_clean_extraction_equals_the_truth(runs: dict[str, Run], world: World) -> None:
    """The yardstick of the matrix is itself right: its main entities are the world's."""
    clean = runs["clean"]
    assert not clean.errors, clean.errors
    truth = dict(truth_frames(world))
    with duckdb.connect(str(clean.build), read_only=True) as con:

        def rows(sql: str) -> set[tuple[Any, ...]]:
            return set(con.execute(sql).fetchall())

        def truth_ids(frame: str, column: str, **equal: str) -> set[tuple[Any, ...]]:
            selected = truth[frame].filter(*(pl.col(k) == v for k, v in equal.items())) if equal else truth[frame]
            return {(v,) for v in selected[column].to_list()}

        assert rows("SELECT key FROM raw_jira.issues") == truth_ids("issues", "key")
        assert rows("SELECT repo_full_name, number FROM raw_github.pull_requests") == set(
            truth["pull_requests"].select("repo", "number").iter_rows()
        )
        assert rows("SELECT 'github:deployment:' || id FROM raw_github.deployments") == truth_ids(
            "deployments", "deployment_id", system="github"
        )
        assert rows("SELECT 'github:build:' || id FROM raw_github.workflow_runs") == truth_ids(
            "builds", "build_id", system="github_actions"
        )
        jenkins = {(f"{job}#{n}",) for job, n in rows("SELECT job_full_name, number FROM raw_jenkins.builds")}
        assert jenkins == {
            (i.removeprefix("jenkins:build:"),) for (i,) in truth_ids("builds", "build_id", system="jenkins")
        } | {
            (i.removeprefix("jenkins:deployment:"),)
            for (i,) in truth_ids("deployments", "deployment_id", system="jenkins")
        }
        cases = con.execute(
            "SELECT 'jenkins:build:' || job_full_name || '#' || build_number, class_name, name, status"
            " FROM raw_jenkins.test_cases"
        ).fetchall()
        expected_cases = truth["test_cases"].filter(pl.col("build_id").str.starts_with("jenkins:"))
        assert Counter(cases) == Counter(expected_cases.select("build_id", "class_name", "name", "status").iter_rows())
        assert rows("SELECT id FROM raw_datadog.incidents") == truth_ids("incidents", "incident_id")
        daily = dict(con.execute("SELECT time::DATE, count(*) FROM raw_mixpanel.events GROUP BY 1").fetchall())
        per_day = truth["events_daily"].group_by("day").agg(pl.col("events").sum())
        assert daily == dict(per_day.iter_rows())


def test_every_fault_kind_loses_and_duplicates_nothing(runs: dict[str, Run], world: World) -> None:
    clean = runs["clean"]
    present = world.visible(None).as_of
    cells: list[Cell] = []
    for system in SYSTEMS:
        for kind in FAULT_KINDS:
            run = runs[kind]
            if system in run.errors:
                cell = Cell(system, kind, error=run.errors[system])
            else:
                cell = diff(system, kind, clean.tables.get(system, {}), run.tables[system], present)
            cell.requests, cell.faulted = run.requests[system], run.faulted[system]
            cells.append(cell)
    print_matrix(cells)

    thin = [f"{c.system} × {c.kind}: {c.faulted}" for c in cells if c.faulted < MIN_FAULTED_REQUESTS]
    assert not thin, f"faults too rare to prove anything: {thin}"
    bad = [f"{c.system} × {c.kind}: {c.error or c.examples[:3]}" for c in cells if not c.ok]
    assert not bad, "rows lost, duplicated or changed under faults:\n" + "\n".join(bad)
    for system in SYSTEMS:
        assert sum(c.expected for c in cells if c.system == system) > 0, f"{system}: nothing to compare"
    mutated = {c.system for c in cells if c.kind == "mutate" and c.redated}
    assert mutated == set(SYSTEMS) - NO_MUTATE_RENDERING, f"`mutate` re-dated rows of {sorted(mutated)}"


def build_models(build: Path) -> None:
    """Every SQL model on `build`, in dependency order, after the config tables they read."""
    with duckdb.connect(str(build)) as con:
        write_settings(con, settings_rows())
        prop, events = feature_map_rows()
        con.execute(
            "CREATE OR REPLACE TABLE config.feature_map (event_name VARCHAR, feature_key VARCHAR, property VARCHAR)"
        )
        con.executemany("INSERT INTO config.feature_map VALUES (?, ?, ?)", [(e, k, prop) for e, k in events])
        for model in load_models():
            build_model(con, model)


def model_differences(clean: Path, faulted: Path, ignored: dict[str, frozenset[str]]) -> dict[str, tuple[int, int]]:
    """Model tables whose rows differ, with the `ignored` columns of a table (`*`: of every table) left
    out: table → (rows only in the clean build, rows only in the faulted build)."""
    differ: dict[str, tuple[int, int]] = {}
    with duckdb.connect(str(clean), read_only=True) as con:
        con.execute(f"ATTACH '{faulted}' AS faulted (READ_ONLY)")
        for model in load_models():
            left_out = (ignored.get("*", frozenset()) | ignored.get(model.table, frozenset())) & set(model.columns)
            kept = ", ".join(f'"{c}"' for c in model.columns if c not in left_out)
            counts = [
                con.execute(
                    f"SELECT count(*) FROM (SELECT {kept} FROM {a} EXCEPT ALL SELECT {kept} FROM {b})"
                ).fetchone()
                for a, b in ((model.table, f"faulted.{model.table}"), (f"faulted.{model.table}", model.table))
            ]
            pair = (int(counts[0][0]) if counts[0] else 0, int(counts[1][0]) if counts[1] else 0)
            if pair != (0, 0):
                differ[model.table] = pair
    return differ


REDATED_MODEL_COLUMNS: dict[str, frozenset[str]] = {
    "*": frozenset({"updated_at", "modified_at"}),
}


def test_models_built_on_faulted_raw_tables_equal_a_clean_build(runs: dict[str, Run], world: World) -> None:
    clean = runs["clean"].build
    build_models(clean)
    with duckdb.connect(str(clean), read_only=True) as con:
        marts = {
            m.table: con.execute(f"SELECT count(*) FROM {m.table}").fetchone()
            for m in load_models()
            if m.schema in ("development", "deployment", "quality", "usage")
        }
    assert marts and all(n and n[0] > 0 for n in marts.values()), f"empty marts in the clean build: {marts}"
    models = len(load_models())
    for kind in MART_KINDS:
        build_models(runs[kind].build)
        ignored = REDATED_MODEL_COLUMNS if kind == "mutate" else {}
        differ = model_differences(clean, runs[kind].build, ignored)
        print(f"\nmodels on `{kind}` raw tables equal to the clean build: {models - len(differ)}/{models}")
        assert not differ, f"`{kind}`: model tables differ from the clean build (only clean, only faulted): {differ}"

    # A run touched after it finished (`mutate` re-dates its last update) keeps its finish time: the
    # staging model takes it from the run's jobs, not from the run's last update.
    with duckdb.connect(str(clean), read_only=True) as con:
        con.execute(f"ATTACH '{runs['mutate'].build}' AS faulted (READ_ONLY)")
        moved = con.execute(
            "SELECT f.build_id, f.finished_at FROM faulted.quality.builds AS f"
            " JOIN quality.builds AS c USING (build_id) WHERE f.finished_at IS DISTINCT FROM c.finished_at"
        ).fetchall()
        redated_runs = con.execute(
            "SELECT count(*) FROM faulted.raw_github.workflow_runs AS f JOIN raw_github.workflow_runs AS c"
            " USING (id) WHERE f.updated_at IS DISTINCT FROM c.updated_at"
        ).fetchall()[0][0]
    print(f"GitHub Actions runs re-dated by `mutate`: {redated_runs}; finish times moved: {len(moved)}")
    assert redated_runs > 0, "no run was re-dated: the check below proves nothing"
    assert moved == [], f"finish times moved with a later update: {moved}"


# --------------------------------------------------------------------------------------------------
# The heavier variant: whole nightly runs, with real waits, per fault kind
# --------------------------------------------------------------------------------------------------

NIGHTLY_WORLD = WorldConfig(seed=3, scale=0.05)
NIGHTLY_RATES: dict[str, float] = {kind: 0.1 for kind in FAULT_KINDS} | {"duplicate": 0.3, "mutate": 0.3}
"""Lower than the default variant's: every wait is real here (Retry-After, backoff, a one-second `slow`)."""


@dataclass
class Nightly:
    paths: Paths
    port: int
    success: bool
    tables: dict[str, dict[str, Table]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    faulted: Counter[str] = field(default_factory=Counter)


def nightly(world: World, kind: str, folder: Path, port: int) -> Nightly:
    """The `nightly` job in this process (extraction in its worker processes) against `opsmap sandbox
    serve` in a child process, as the pipeline runs it, with `kind` faulted at `NIGHTLY_RATES` and the
    server's own one-second `slow`."""
    from dagster import DagsterInstance

    from pipelines.runner import run_nightly

    log = folder / "access.jsonl"
    config = world.config
    args = ["--port", str(port), "--seed", str(config.seed), "--scale", str(config.scale), "--access-log", str(log)]
    if kind in NIGHTLY_RATES:
        args += ["--faults", f"{kind}={NIGHTLY_RATES[kind]}", "--fault-seed", str(FAULT_SEED)]
    with SandboxProcess(args, folder / "sandbox.env") as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env.items():
            mp.setenv(key, value)
        mp.setenv("OPSMAP_AS_OF", server.as_of())
        mp.setenv("OPSMAP_WAREHOUSE", str(folder / "opsmap.duckdb"))
        mp.setenv("OPSMAP_PSEUDONYM_SALT", "test-salt")
        mp.delenv("DLT_DATA_DIR", raising=False)
        paths = Paths.from_env().ensure()
        result = run_nightly(instance=DagsterInstance.ephemeral())
        run = Nightly(paths, int(server.url.rsplit(":", 1)[1]), result.success)
    run.tables = {system: read_tables(paths.build, raw_pipeline(system, paths)) for system in SYSTEMS}
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = orjson.loads(line)
        run.requests[entry["system"]] += 1
        run.faulted[entry["system"]] += kind in entry["faults"]
    return run


@pytest.fixture(scope="module")
def clean_nightly(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Nightly]:
    world = generate_world(NIGHTLY_WORLD)
    return world, nightly(world, "clean", tmp_path_factory.mktemp("nightly-clean"), 0)


@pytest.mark.slow  # a nightly run per fault kind with real waits: 25-100 s each, 7 min in all
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_nightly_run_under_each_fault_ends_with_the_tables_of_a_clean_run(
    kind: str, clean_nightly: tuple[World, Nightly], tmp_path: Path
) -> None:
    world, clean = clean_nightly
    assert clean.success, "the clean nightly run failed"
    run = nightly(world, kind, tmp_path, clean.port)
    assert run.success, f"the nightly run under `{kind}` failed"
    present = world.visible(None).as_of
    cells = [diff(system, kind, clean.tables[system], run.tables[system], present) for system in SYSTEMS]
    for cell in cells:
        cell.requests, cell.faulted = run.requests[cell.system], run.faulted[cell.system]
    print_matrix(cells)
    assert all(c.faulted for c in cells), f"`{kind}` met no request of {[c.system for c in cells if not c.faulted]}"
    bad = [f"{c.system}: {c.examples[:3]}" for c in cells if not c.ok]
    assert not bad, f"rows lost, duplicated or changed under `{kind}`:\n" + "\n".join(bad)
    ignored = REDATED_MODEL_COLUMNS if kind == "mutate" else {}
    differ = model_differences(clean.paths.build, run.paths.build, ignored)
    assert not differ, f"`{kind}`: model tables differ from the clean run's (only clean, only faulted): {differ}"
