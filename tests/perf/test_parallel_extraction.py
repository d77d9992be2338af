"""The extraction step: systems extracted side by side in worker processes, loaded by the step alone.

The whole nightly job (the `built_warehouse` fixture, diffed against the truth in tests/e2e) goes
through the same step; these tests cover what that run does not: subsets, per-system failures,
and that worker results match an in-process extraction row for row.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, materialize

from pipelines.assets.extract import extraction_asset, plan_systems, raw_specs
from pipelines.assets.extract_worker import LONGEST_FIRST, Task, _portable, default_workers, raw_pipeline, run_tasks
from pipelines.resources import SourcesResource, Warehouse
from pipelines.sandbox.server import SandboxServer
from pipelines.settings import SYSTEMS, Paths
from pipelines.sources.http import SourceNotFoundError


@pytest.fixture()
def sandbox_env(sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """Every source pointed at the shared sandbox, a fresh warehouse; returns its paths."""
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPSMAP_AS_OF", sandbox.as_of.isoformat())
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
    monkeypatch.delenv("DLT_DATA_DIR", raising=False)
    return Paths.from_env().ensure()


def test_the_plan_follows_the_selection_longest_system_first() -> None:
    catalogue = {s: raw_specs(s) for s in ("jira", "github", "datadog")}
    every = {key for keys in catalogue.values() for key in keys}
    assert list(plan_systems(every, catalogue)) == ["github", "jira", "datadog"]
    assert set(plan_systems(every, catalogue).values()) == {None}  # whole systems: every resource
    subset = plan_systems({AssetKey(["raw_github", "releases"]), AssetKey(["raw_datadog", "slos"])}, catalogue)
    assert subset == {"github": ("releases",), "datadog": ("slos",)}
    assert plan_systems(set(), catalogue) == {}


def test_workers_default_to_the_cores_and_never_exceed_the_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSMAP_EXTRACT_WORKERS", raising=False)
    assert default_workers(5) >= 2
    assert default_workers(1) == 1
    monkeypatch.setenv("OPSMAP_EXTRACT_WORKERS", "0")
    assert default_workers(5) == 0
    monkeypatch.setenv("OPSMAP_EXTRACT_WORKERS", "3")
    assert default_workers(5) == 3 and default_workers(2) == 2


def test_a_source_error_crosses_the_process_boundary_intact() -> None:
    error = SourceNotFoundError("jira: GET /x → 404 Not Found. Check SOURCES__JIRA__BASE_URL.", system="jira")
    wrapped = RuntimeError("dlt step failed")
    wrapped.__cause__ = error
    portable = pickle.loads(pickle.dumps(_portable(wrapped)))
    assert isinstance(portable, SourceNotFoundError) and portable.system == "jira"

    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:  # does not unpickle from its args
            super().__init__(f"{a}{b}")

    odd = _portable(Odd(1, 2))
    assert isinstance(odd, RuntimeError) and "Odd: 12" in str(odd)


def _tables(build: Path, schema: str) -> dict[str, int]:
    with duckdb.connect(str(build), read_only=True) as con:
        query = f"SELECT table_name FROM duckdb_tables() WHERE schema_name = '{schema}'"
        names = [r[0] for r in con.execute(query).fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM {schema}."{n}"').fetchone()[0] for n in names if "_dlt" not in n}


@pytest.mark.slow  # extracts twice (6 s idle, 45 s on a busy machine); the failure test below covers the pool
def test_worker_processes_load_what_an_in_process_extraction_loads(sandbox_env: Paths, tmp_path: Path) -> None:
    systems = ("jira", "datadog")

    def prepare(paths: Paths) -> list[Task]:
        for system in systems:
            raw_pipeline(system, paths).drop().sync_destination()
        return [Task(system, None, paths) for system in systems]

    in_process = sandbox_env
    for outcome in run_tasks(lambda: prepare(in_process), len(systems), workers=0):
        assert outcome.ok, outcome.traceback
        raw_pipeline(outcome.system, in_process).load()

    parallel = Paths(tmp_path / "p" / "w.duckdb", tmp_path / "p" / "w.build.duckdb", tmp_path / "p" / "dlt", tmp_path)
    parallel.dlt_dir.mkdir(parents=True)
    pids = set()
    for outcome in run_tasks(lambda: prepare(parallel), len(systems), workers=2):
        assert outcome.ok, outcome.traceback
        pids.add(outcome.pid)
        raw_pipeline(outcome.system, parallel).load()

    assert len(pids) == 2, "each system ran in its own worker process"
    for system in systems:
        expected = _tables(in_process.build, f"raw_{system}")
        assert expected and min(expected.values()) >= 0
        assert _tables(parallel.build, f"raw_{system}") == expected


def test_a_failing_system_is_named_and_the_others_are_still_loaded(
    sandbox_env: Paths, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__JIRA__BASE_URL", f"{sandbox.url}/no-such-system")
    assets = extraction_asset(("jira", "datadog"))
    result = materialize(
        [assets], resources={"warehouse": Warehouse(), "sources": SourcesResource()}, raise_on_error=False
    )
    assert not result.success
    loaded = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey(["raw_datadog", "incidents"]) in loaded
    assert not any(k.path[0] == "raw_jira" for k in loaded)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "jira extraction failed" in message and "SOURCES__JIRA__BASE_URL" in message
    assert _tables(sandbox_env.build, "raw_datadog")["incidents"] > 0


def test_every_system_has_a_place_in_the_worker_order() -> None:
    assert sorted(LONGEST_FIRST) == sorted(SYSTEMS)
