"""Fixtures for the insight tests: mart-shaped frames built from the sandbox's ground truth, and the warehouse."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import duckdb
import polars as pl
import pytest

from pipelines.kpis.compute import iso_weeks
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World


def subject_frames_from_truth(world: World) -> tuple[dict[str, pl.DataFrame], list, list[dict]]:
    """(mart-shaped frames, complete weeks, planted anomalies) straight from the world's truth.

    Independent of the pipeline: the same column names as the marts, computed from what really happened.
    """
    t = dict(truth_frames(world))
    programme = t["programme"].row(0, named=True)
    weeks = [p.start for p in iso_weeks(programme["world_start"], (programme["as_of"] - timedelta(days=1)).date())]
    deployments = t["deployments"]
    frames = {
        "attempts": deployments.select("service", "environment", "outcome", "finished_at"),
        "deployments": deployments.filter((pl.col("environment") == "production") & (pl.col("outcome") == "success"))
        .filter(pl.col("finished_at").is_not_null())
        .select("service", "finished_at", "is_change_failure"),
        "incidents": t["incidents"].select("service", "created_at"),
        "test_cases": t["test_cases"]
        .join(t["builds"].select("build_id", "service"), on="build_id")
        .select("build_id", "service", status=pl.col("status").str.to_lowercase()),
        "builds": t["builds"].select("build_id", "started_at"),
        "feature_usage": t["events_daily"]
        .filter(pl.col("feature_key").is_not_null())
        .group_by("day", "feature_key")
        .agg(events=pl.col("events").sum(), users=pl.col("users").sum()),
    }
    return frames, weeks, t["anomalies"].to_dicts()


@pytest.fixture(scope="session")
def truth_subject_frames() -> Callable[[World], tuple[dict[str, pl.DataFrame], list, list[dict]]]:
    return subject_frames_from_truth


@pytest.fixture(scope="session")
def warehouse_con(built_warehouse: dict) -> Iterator[duckdb.DuckDBPyConnection]:
    """The published warehouse of the session's nightly run, read-only."""
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()
