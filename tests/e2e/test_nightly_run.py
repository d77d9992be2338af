"""The whole nightly job against the sandbox: it succeeds, every check passes, and it publishes."""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World


def test_the_nightly_job_succeeds_and_every_check_passes(built_warehouse: dict) -> None:
    result = built_warehouse["result"]
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, f"failed steps: {failed}"
    checks = result.get_asset_check_evaluations()
    assert checks, "no checks ran"
    assert [c.check_name for c in checks if not c.passed] == []


def test_the_published_warehouse_opens_read_only_with_every_layer(built_warehouse: dict) -> None:
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    schemas = {r[0] for r in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()}
    assert {"raw_github", "staging", "intermediate", "development", "deployment", "quality", "usage", "kpi"} <= schemas


def test_pull_requests_travel_from_the_api_to_the_mart(built_warehouse: dict, world: World) -> None:
    truth = dict(truth_frames(world))["pull_requests"]
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    raw = con.sql("SELECT number FROM raw_github.pull_requests").pl()
    mart = con.sql("SELECT repo, pr_number, issue_key FROM development.pull_requests").pl()
    assert raw.height == truth.height
    joined = truth.join(mart, left_on=["repo", "number"], right_on=["repo", "pr_number"], how="full", coalesce=True)
    assert joined.height == truth.height
    assert joined.filter(pl.col("issue_key") != pl.col("issue_key_right")).height == 0
    assert joined.filter(pl.col("issue_key").is_null() != pl.col("issue_key_right").is_null()).height == 0


def test_every_table_and_column_in_the_marts_is_documented(built_warehouse: dict) -> None:
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    undocumented = con.execute(
        "SELECT schema_name || '.' || table_name || '.' || column_name FROM duckdb_columns() "
        "WHERE schema_name IN ('staging', 'intermediate', 'development', 'deployment', 'quality', 'usage', 'kpi') "
        "AND coalesce(comment, '') = ''"
    ).fetchall()
    assert undocumented == []
    tables = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
        "WHERE schema_name IN ('staging', 'intermediate', 'development', 'deployment', 'quality', 'usage', 'kpi') "
        "AND coalesce(comment, '') = ''"
    ).fetchall()
    assert tables == []
