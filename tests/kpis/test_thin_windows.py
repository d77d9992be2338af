"""Empty or thin periods give NULL with a reason and a sample size of 0 — never 0, never an exception."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import polars as pl
import pytest

from pipelines.kpis.compute import KpiConfig, Marts
from pipelines.kpis.tables import kpi_frames

SETTINGS = {"recovery_target_minutes": 60.0, "adoption_threshold": 0.05}


@pytest.fixture(scope="module")
def marts(built_warehouse: dict) -> Marts:
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    try:
        as_of = con.execute("SELECT max(finished_at) FROM deployment.deployments").fetchall()[0][0]
        return Marts.load(con, as_of + timedelta(days=1))
    finally:
        con.close()


def test_an_empty_world_gives_nulls_with_reasons(marts: Marts) -> None:
    empty = Marts({name: frame.clear() for name, frame in marts.frames.items()}, marts.as_of)
    frames = kpi_frames(empty, KpiConfig.load(), SETTINGS)
    success = frames["success_metrics"]
    assert success.height == len(KpiConfig.load().metrics)
    assert success["current_value"].null_count() == success.height
    assert success["baseline_value"].null_count() == success.height
    assert (success["current_sample"] == 0).all() and (success["baseline_sample"] == 0).all()
    assert success["null_reason"].null_count() == 0
    assert success["met"].null_count() == success.height
    dora = frames["dora"].filter(pl.col("period_kind") != "week")
    assert dora.height == 2
    for column in (
        "deployment_frequency_per_day",
        "lead_time_hours_median",
        "change_failure_rate",
        "time_to_restore_hours_median",
        "failed_deployment_recovery_hours_median",
    ):
        assert dora[column].null_count() == 2, column
    assert (dora["deployments"] == 0).all() and (dora["changes"] == 0).all()
    assert dora["null_reasons"].str.contains("no deployments").all()
    assert frames["business_value"].filter(pl.col("value_line") == "total_all")["measured_value_usd"].item() is None


def test_a_one_week_world_fills_only_what_it_can(marts: Marts) -> None:
    end = marts.as_of
    start = end - timedelta(days=7)
    time_columns = {
        "deployments": "finished_at",
        "attempts": "started_at",
        "changes": "deployed_at",
        "incidents": "created_at",
        "defects": "created_at",
        "issues": "created_at",
        "transitions": "transitioned_at",
        "pull_requests": "created_at",
        "features": "created_at",
        "adoption": "released_at",
    }
    week = {}
    for name, frame in marts.frames.items():
        if name == "active_users":
            week[name] = frame.filter(pl.col("day") >= start.date())
        else:
            week[name] = frame.filter(pl.col(time_columns[name]) >= start)
    frames = kpi_frames(Marts(week, marts.as_of), KpiConfig.load(), SETTINGS)
    success = {r["metric"]: r for r in frames["success_metrics"].to_dicts()}
    baseline_empty = [m for m, r in success.items() if r["baseline_value"] is None]
    assert len(baseline_empty) == len(success), "the baseline window lies before the one-week world"
    assert all(r["baseline_sample"] == 0 and r["null_reason"] for r in success.values())
    assert success["deployment_success_rate"]["current_value"] is not None
    assert success["deployment_success_rate"]["improvement_pct"] is None
    current = frames["dora"].filter(pl.col("period_kind") == "current").to_dicts()[0]
    assert current["deployments"] > 0 and current["deployment_frequency_per_day"] is not None
