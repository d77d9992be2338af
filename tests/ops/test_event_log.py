"""The pooled SQLite event log: Dagster's own files, readable by Dagster's own storage, and the
home's dagster.yaml selecting it (an unchanged older file is upgraded, an edited one is kept)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, asset, define_asset_job

from pipelines.event_log import PooledSqliteEventLogStorage
from pipelines.settings import dagster_yaml, ensure_dagster_home


@asset
def tiny() -> int:
    return 1


def _run_tiny(instance: DagsterInstance) -> str:
    defs = Definitions(assets=[tiny], jobs=[define_asset_job("tiny_job")])
    result = defs.resolve_job_def("tiny_job").execute_in_process(instance=instance)
    assert result.success
    return result.run_id


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return ensure_dagster_home()


def test_a_home_written_by_opsmap_uses_the_pooled_event_log(home: Path) -> None:
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert Path(instance.event_log_storage._base_dir) == home / "history" / "runs"  # Dagster's default place
    finally:
        instance.dispose()


def test_what_it_stores_dagsters_own_storage_reads(home: Path, tmp_path: Path) -> None:
    pooled = DagsterInstance.from_config(str(home))
    try:
        run_ids = [_run_tiny(pooled), _run_tiny(pooled)]
        written = {run_id: len(pooled.all_logs(run_id)) for run_id in run_ids}
    finally:
        pooled.dispose()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # Dagster's defaults from here on
    stock = DagsterInstance.from_config(str(home))
    try:
        assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert {run_id: len(stock.all_logs(run_id)) for run_id in run_ids} == written
        assert all(count > 5 for count in written.values())
        latest = stock.get_latest_materialization_event(AssetKey("tiny"))
        assert latest is not None and latest.run_id == run_ids[1]
    finally:
        stock.dispose()


def test_wiping_closes_the_open_files_and_the_storage_starts_afresh(home: Path) -> None:
    instance = DagsterInstance.from_config(str(home))
    try:
        run_id = _run_tiny(instance)
        storage = instance.event_log_storage
        assert run_id in storage._engines  # type: ignore[attr-defined]
        storage.wipe()
        assert set(storage._engines) <= {"index"}  # type: ignore[attr-defined]  # wiping empties the index through it
        assert not Path(storage.path_for_shard(run_id)).exists()  # type: ignore[attr-defined]
        assert instance.all_logs(run_id) == []
        assert len(instance.all_logs(_run_tiny(instance))) > 5
    finally:
        instance.dispose()


def test_only_an_unchanged_earlier_dagster_yaml_is_upgraded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.settings import _EARLIER_DAGSTER_YAMLS

    for name, before, after in [
        ("earlier", _EARLIER_DAGSTER_YAMLS[0], dagster_yaml(tmp_path / "earlier")),
        ("edited", _EARLIER_DAGSTER_YAMLS[0] + "# mine\n", _EARLIER_DAGSTER_YAMLS[0] + "# mine\n"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "dagster.yaml").write_text(before)
        monkeypatch.setenv("DAGSTER_HOME", str(folder))
        ensure_dagster_home()
        assert (folder / "dagster.yaml").read_text() == after, name
