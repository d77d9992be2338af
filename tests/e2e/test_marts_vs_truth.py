"""The marts diffed against the sandbox's ground truth, link by link; the match rate is printed for each.

A disagreement with the truth is a bug however plausible the figure looks, so every test demands 100 %.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World


@pytest.fixture(scope="module")
def truth(world: World) -> dict[str, pl.DataFrame]:
    return dict(truth_frames(world))


@pytest.fixture(scope="module")
def con(built_warehouse: dict) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(built_warehouse["paths"].published), read_only=True)


def match(name: str, expected: dict[Any, Any], found: dict[Any, Any]) -> None:
    """Compare two key → value maps; print the match rate and a few differences, then demand all match."""
    keys = set(expected) | set(found)
    wrong = sorted((k for k in keys if expected.get(k, "<absent>") != found.get(k, "<absent>")), key=str)
    rate = 1 - len(wrong) / len(keys) if keys else 1.0
    print(f"\n{name}: {len(keys) - len(wrong)}/{len(keys)} match ({rate:.1%})")
    for k in wrong[:5]:
        print(f"  {k}: truth={expected.get(k, '<absent>')!r} warehouse={found.get(k, '<absent>')!r}")
    assert keys, f"{name}: nothing to compare"
    assert not wrong, f"{name}: {len(wrong)} of {len(keys)} differ from the truth"


def as_map(frame: pl.DataFrame, key: list[str], value: list[str]) -> dict[Any, Any]:
    return {tuple(r[: len(key)]): tuple(r[len(key) :]) for r in frame.select(*key, *value).iter_rows()}


def test_pull_request_issue_links(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    mart = con.sql("SELECT repo, pr_number, issue_key FROM development.pull_requests").pl()
    match(
        "PR → issue",
        as_map(truth["pull_requests"], ["repo", "number"], ["issue_key"]),
        as_map(mart, ["repo", "pr_number"], ["issue_key"]),
    )


def test_pull_request_first_deployments(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    expected = truth["pull_requests"].filter(pl.col("first_deployment_id").is_not_null())
    mart = con.sql("SELECT repo, pr_number, deployment_id FROM deployment.changes").pl()
    match(
        "PR → first deployment",
        as_map(expected, ["repo", "number"], ["first_deployment_id"]),
        as_map(mart, ["repo", "pr_number"], ["deployment_id"]),
    )


def test_deployment_attempts(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    cols = ["system", "service", "environment", "outcome", "triggered_by"]
    mart = con.sql(
        f"SELECT deployment_id, {', '.join(cols)}, started_at, finished_at, sha FROM deployment.deployment_attempts"
    ).pl()
    match(
        "deployment attempts (system, service, environment, outcome, trigger, times, sha)",
        as_map(truth["deployments"], ["deployment_id"], [*cols, "started_at", "finished_at", "sha"]),
        as_map(mart, ["deployment_id"], [*cols, "started_at", "finished_at", "sha"]),
    )


def test_deployment_rollbacks_and_change_failures(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    expected = truth["deployments"].filter((pl.col("environment") == "production") & (pl.col("outcome") == "success"))
    mart = con.sql(
        "SELECT deployment_id, is_rollback, is_change_failure, change_failure_reason FROM deployment.deployments"
    ).pl()
    cols = ["is_rollback", "is_change_failure", "change_failure_reason"]
    match(
        "deployments (rollback, change failure, reason)",
        as_map(expected, ["deployment_id"], cols),
        as_map(mart, ["deployment_id"], cols),
    )


def test_incident_attribution(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    mart = con.sql("SELECT incident_id, attributed_deployment_id FROM quality.incidents").pl()
    match(
        "incident → deployment",
        as_map(truth["incidents"], ["incident_id"], ["caused_by_deployment_id"]),
        as_map(mart, ["incident_id"], ["attributed_deployment_id"]),
    )


def test_bug_escapes(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    bugs = truth["issues"].filter(pl.col("type") == "Bug")
    mart = con.sql("SELECT issue_key, escaped FROM quality.defects").pl()
    match("bug escaped", as_map(bugs, ["key"], ["escaped"]), as_map(mart, ["issue_key"], ["escaped"]))


def test_issue_epics_and_milestones(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    mart = con.sql("SELECT issue_key, epic_key, started_at, done_at FROM development.issues").pl()
    match(
        "issue → epic, started, done",
        as_map(truth["issues"], ["key"], ["epic_key", "started_at", "done_at"]),
        as_map(mart, ["issue_key"], ["epic_key", "started_at", "done_at"]),
    )


def test_feature_releases(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    mart = con.sql("SELECT feature_key, first_deployed_at, first_released_at FROM development.features").pl()
    match(
        "feature first deployed / released",
        as_map(truth["features"], ["epic_key"], ["first_deployed_at", "first_released_at"]),
        as_map(mart, ["feature_key"], ["first_deployed_at", "first_released_at"]),
    )


def test_daily_feature_usage(truth: dict, con: duckdb.DuckDBPyConnection) -> None:
    expected = (
        truth["events_daily"]
        .filter(pl.col("feature_key").is_not_null())
        .group_by("day", "feature_key")
        .agg(pl.col("events").sum())
    )
    mart = con.sql("SELECT day, feature_key, events FROM usage.feature_usage_daily").pl()
    match(
        "daily events per feature",
        as_map(expected, ["day", "feature_key"], ["events"]),
        as_map(mart, ["day", "feature_key"], ["events"]),
    )
