"""With some sources configured, the run extracts those and says which it skipped."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from pipelines.runner import run_nightly, skipped_systems
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World


def test_only_the_configured_sources_are_extracted(
    private_sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    env = private_sandbox.env()
    for key in list(env):
        if not key.startswith(("SOURCES__DATADOG__", "SOURCES__JENKINS__")):
            env.pop(key)
    for system in ("JIRA", "GITHUB", "MIXPANEL"):
        monkeypatch.delenv(f"SOURCES__{system}__BASE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
    assert skipped_systems() == ["jira", "github", "mixpanel"]
    result = run_nightly(instance=DagsterInstance.ephemeral())
    assert result.success
    said = capsys.readouterr().err
    assert "Extracting jenkins, datadog; skipped jira, github, mixpanel" in said
    con = duckdb.connect(str(tmp_path / "opsmap.build.duckdb"), read_only=True)
    schemas = {r[0] for r in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()}
    assert {"raw_jenkins", "raw_datadog"} <= schemas
    assert not {"raw_jira", "raw_github", "raw_mixpanel"} & schemas
    staged = {
        r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'staging'").fetchall()
    }
    assert "stg_jenkins__builds" in staged and "stg_datadog__incidents" in staged
    assert not any(t.startswith(("stg_jira", "stg_github", "stg_mixpanel")) for t in staged)
    assert (tmp_path / "opsmap.duckdb").exists(), "what was built is published"


def test_nothing_configured_means_the_sandbox_serves_all(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    for system in ("JIRA", "GITHUB", "JENKINS", "DATADOG", "MIXPANEL"):
        monkeypatch.delenv(f"SOURCES__{system}__BASE_URL", raising=False)
    assert skipped_systems() == []
