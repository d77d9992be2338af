"""Freshness of the raw layer: every raw asset's `freshness` check (WARN) follows its dataset's last load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckSeverity, AssetKey
from quality_support import corrupt, metadata, run_checks

from pipelines.checks.freshness import DEFAULT_MAX_AGE_HOURS, freshness, max_age_hours

NOW = datetime(2026, 5, 2, 2, 0, tzinfo=UTC)


def loaded(hours_ago: float | None, *, committed: bool = True) -> duckdb.DuckDBPyConnection:
    """A one-dataset warehouse whose only load happened `hours_ago` (None: never loaded)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA raw_x")
    con.execute("CREATE TABLE raw_x._dlt_loads (load_id VARCHAR, status BIGINT, inserted_at TIMESTAMPTZ)")
    con.execute("CREATE TABLE raw_x.items (id BIGINT, _dlt_load_id VARCHAR)")
    if hours_ago is not None:
        at = NOW - timedelta(hours=hours_ago)
        con.execute("INSERT INTO raw_x._dlt_loads VALUES ('1', ?, ?)", [0 if committed else 1, at])
        con.execute("INSERT INTO raw_x.items VALUES (1, '1')")
    return con


@pytest.mark.parametrize(("hours_ago", "passed"), [(2.0, True), (25.9, True), (26.1, False), (72.0, False)])
def test_a_load_older_than_the_nightly_window_is_stale(hours_ago: float, passed: bool) -> None:
    result = freshness(loaded(hours_ago), AssetKey(["raw_x", "items"]), NOW, DEFAULT_MAX_AGE_HOURS)
    assert result.passed is passed and result.severity == AssetCheckSeverity.WARN
    assert result.metadata["age_hours"].value == pytest.approx(hours_ago, abs=0.01)
    assert result.metadata["threshold_hours"].value == 26.0


def test_no_committed_load_is_stale_and_says_so() -> None:
    for con in (loaded(None), loaded(1.0, committed=False)):
        result = freshness(con, AssetKey(["raw_x", "items"]), NOW, DEFAULT_MAX_AGE_HOURS)
        assert not result.passed and result.description == "raw_x has no committed load"


def test_the_threshold_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_age_hours() == DEFAULT_MAX_AGE_HOURS
    monkeypatch.setenv("OPSMAP_FRESHNESS_HOURS", "50")
    assert freshness(loaded(30.0), AssetKey(["raw_x", "items"]), NOW, max_age_hours()).passed


def test_every_raw_asset_has_a_fresh_load_after_the_nightly_run(built_warehouse: dict) -> None:
    found = [e for e in built_warehouse["result"].get_asset_check_evaluations() if e.check_name == "freshness"]
    from pipelines.definitions import defs

    raw = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0].startswith("raw_")}
    assert {e.asset_key.to_user_string() for e in found} == raw
    assert all(e.passed for e in found)


def test_a_stale_load_fails_the_freshness_of_that_system_only(warehouse_copy: Path) -> None:
    corrupt(warehouse_copy, "UPDATE raw_github._dlt_loads SET inserted_at = inserted_at - INTERVAL 3 DAY")
    found = run_checks(("raw_github/pull_requests", "freshness"), ("raw_jira/issues", "freshness"))
    stale = found[("raw_github/pull_requests", "freshness")]
    assert not stale.passed and stale.severity == AssetCheckSeverity.WARN
    evidence = metadata(stale)
    assert evidence["age_hours"] > 72 and evidence["threshold_hours"] == 26.0  # type: ignore[operator]
    assert evidence["dataset_last_load_at"] == evidence["table_last_load_at"]
    assert "raw_github last loaded" in str(stale.description)
    assert found[("raw_jira/issues", "freshness")].passed
