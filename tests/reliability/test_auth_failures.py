"""Rejected credentials: a 401 or a 403 without rate-limit signs stops that source at once, with a message
naming the config key to fix, after a request or two (no retry storm), and the other sources still load.

The sandbox accepts any non-empty credentials; `reject_credentials` (pipelines/sandbox/faults.py) makes
one system refuse them: its own 401, or a 403 for credentials without permission. Each source is run
alone against each status through the production pipeline (`raw_pipeline`), then the whole extraction
step (worker processes, one writer) runs with GitHub's token refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, materialize

from pipelines.assets.extract import extraction_asset
from pipelines.assets.extract_worker import raw_pipeline, source_factory
from pipelines.failures import describe, is_transient, root_cause
from pipelines.resources import SourcesResource, Warehouse
from pipelines.sandbox.faults import REJECTION_STATUSES, reject_credentials
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldConfig
from pipelines.settings import SYSTEMS, Paths
from pipelines.sources.http import CREDENTIAL_KEYS, SourceAuthError, config_key

MAX_REQUESTS = 2
"""Requests a refused source may make: its first, and one more when it starts two resources at once."""
SECRET_SUFFIXES = ("TOKEN", "KEY", "SECRET")
LOADED_TABLES = {
    "jira": "issues",
    "jenkins": "builds",
    "datadog": "incidents",
    "mixpanel": "events",
    "github": "pull_requests",
}


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(seed=3, scale=0.025))


@pytest.fixture(scope="module")
def shared_server(world: World) -> Iterator[SandboxServer]:
    with SandboxServer(world) as served:
        yield served


@pytest.fixture()
def server(shared_server: SandboxServer) -> Iterator[SandboxServer]:
    """The module's sandbox, its emulators restored after the test (a server takes 0.5 s to stop)."""
    emulators = dict(shared_server.emulators)
    yield shared_server
    shared_server.emulators.clear()
    shared_server.emulators.update(emulators)


def source_args(server: SandboxServer, system: str) -> dict[str, str]:
    prefix = f"SOURCES__{system.upper()}__"
    return {k.removeprefix(prefix).lower(): v for k, v in server.env().items() if k.startswith(prefix)}


@pytest.mark.parametrize("status", REJECTION_STATUSES)
@pytest.mark.parametrize("system", SYSTEMS)
def test_refused_credentials_stop_the_source_naming_the_key(
    server: SandboxServer, tmp_path: Path, system: str, status: int
) -> None:
    """The source alone, through the production pipeline: the first refusal ends it."""
    refusing = reject_credentials(server.emulators, system, status)
    args = source_args(server, system)
    paths = Paths(tmp_path / "w.duckdb", tmp_path / "w.build.duckdb", tmp_path / "dlt", tmp_path)

    with pytest.raises(Exception) as failed:
        raw_pipeline(system, paths).run(source_factory(system)(**args), loader_file_format="parquet")

    cause = root_cause(failed.value)
    assert isinstance(cause, SourceAuthError), f"{type(cause).__name__}: {cause}"
    assert cause.status == status and cause.system == system
    primary = config_key(system, CREDENTIAL_KEYS[system][0])
    message = describe(system, failed.value)
    assert primary in message and primary in cause.config_keys, message
    assert str(status) in message and cause.endpoint and cause.endpoint in message, message
    secrets = [server.env()[config_key(system, k)] for k in CREDENTIAL_KEYS[system] if k.endswith(SECRET_SUFFIXES)]
    assert secrets and not any(secret in message or secret in repr(cause) for secret in secrets)
    assert not is_transient(failed.value), "a refused credential is not retried by the run either"
    assert 1 <= refusing.refused <= MAX_REQUESTS, f"{system} was asked {refusing.refused} times, refusing each"


def test_one_refused_source_does_not_stop_the_other_four(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = "github"
    refusing = reject_credentials(server.emulators, refused, 403)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    # Fewer, larger requests for the two sources whose request count the calendar sets (pacing keeps
    # Mixpanel at 3 a second): the test is about who loads, not how much.
    monkeypatch.setenv("SOURCES__MIXPANEL__DAYS_PER_REQUEST", "92")
    monkeypatch.setenv("SOURCES__DATADOG__START_DATE", (server.as_of - timedelta(days=45)).date().isoformat())
    monkeypatch.setenv("OPSMAP_AS_OF", server.as_of.isoformat())
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
    monkeypatch.delenv("DLT_DATA_DIR", raising=False)
    paths = Paths.from_env().ensure()

    result = materialize(
        [extraction_asset()], resources={"warehouse": Warehouse(), "sources": SourcesResource()}, raise_on_error=False
    )

    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"], "refusals are not retried"
    assert 1 <= refusing.refused <= MAX_REQUESTS, f"{refused} was asked {refusing.refused} times, refusing each"
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data is not None
    message = failure.step_failure_data.user_failure_data.description or ""
    for fact in ("github extraction failed", "403", "SOURCES__GITHUB__ACCESS_TOKEN"):
        assert fact in message, (fact, message)
    assert server.env()["SOURCES__GITHUB__ACCESS_TOKEN"] not in message

    others = [s for s in SYSTEMS if s != refused]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {k.path[0] for k in materialized} == {f"raw_{s}" for s in others}
    with duckdb.connect(str(paths.build), read_only=True) as con:
        for system in others:
            table = LOADED_TABLES[system]
            assert AssetKey([f"raw_{system}", table]) in materialized
            [(rows,)] = con.execute(f"SELECT count(*) FROM raw_{system}.{table}").fetchall()
            assert rows > 0, f"raw_{system}.{table} is empty"
        query = f"SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw_{refused}'"
        assert [t for (t,) in con.execute(query).fetchall() if not t.startswith("_dlt")] == []
