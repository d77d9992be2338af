"""The insight assets in the nightly run: documented tables, passing checks, Dagster metadata, the report."""

from __future__ import annotations

from dagster import AssetKey

from pipelines.insights.tables import INSIGHT_TABLES


def test_the_insight_tables_are_built_and_documented(warehouse_con) -> None:
    for name, (_, docs) in INSIGHT_TABLES.items():
        columns = dict(
            warehouse_con.execute(
                "SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'kpi' AND table_name = ?",
                [name],
            ).fetchall()
        )
        assert columns, f"kpi.{name} missing"
        assert set(columns) == set(docs), name
        assert all(columns.values()), f"kpi.{name}: an undocumented column"
        comment = warehouse_con.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'kpi' AND table_name = ?", [name]
        ).fetchone()[0]
        assert comment


def test_the_row_checks_ran_and_passed(built_warehouse: dict) -> None:
    checks = {
        (c.asset_key.path[-1], c.check_name): c.passed
        for c in built_warehouse["result"].get_asset_check_evaluations()
        if c.check_name == "rows_carry_their_figures"
    }
    assert checks == {(name, "rows_carry_their_figures"): True for name in INSIGHT_TABLES}


def test_the_insights_appear_as_dagster_metadata(built_warehouse: dict) -> None:
    events = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in built_warehouse["result"].get_asset_materialization_events()
        if e.asset_key in {AssetKey(["kpi", name]) for name in INSIGHT_TABLES}
    }
    assert set(events) == set(INSIGHT_TABLES)
    assert {"held_out_accuracy", "held_out_sample", "majority_baseline_accuracy"} <= set(
        events["feature_success_predictions"]
    )
    assert {"deployment_frequency_per_day_next_week", "lead_time_hours_median_next_week"} <= set(events["forecasts"])
    assert {"weeks_judged", "flags_by_series", "latest_flags"} <= set(events["anomalies"])
    assert {"by_kind", "top"} <= set(events["recommendations"])


def test_the_report_has_an_insights_section(built_warehouse: dict, warehouse_con) -> None:
    html = (built_warehouse["paths"].reports / "kpi_report.html").read_text(encoding="utf-8")
    assert "<h2>Insights</h2>" in html
    assert "Held-out accuracy" in html and "deployment_frequency_per_day" in html
    top = warehouse_con.execute("SELECT subject FROM kpi.recommendations WHERE rank = 1 ORDER BY kind").fetchall()
    assert top and all(subject in html for (subject,) in top)
    newest = "SELECT CAST(week_start AS VARCHAR) FROM kpi.anomalies ORDER BY week_start DESC LIMIT 12"
    for (week,) in warehouse_con.execute(newest).fetchall():
        assert week in html
    assert "Not built in this warehouse" not in html


def test_the_row_check_fails_on_a_claim_without_figures(tmp_path) -> None:
    import duckdb
    import polars as pl

    from pipelines.assets.insights import INSIGHT_CHECKS
    from pipelines.insights.recommendations import RECOMMENDATION_SCHEMA
    from pipelines.insights.tables import write_insight_table
    from pipelines.resources import Warehouse

    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    row = {"kind": "failing_job", "rank": 1, "subject": "ci/x", "metric": "failed_builds", "value": None,
           "reference_value": 0.5, "unit": "builds", "sample_size": 10, "period_start": None, "period_end": None,
           "recommendation": "ci/x fails a lot", "evidence": "{}"}  # fmt: skip
    with duckdb.connect(str(warehouse.paths.build)) as con:
        write_insight_table(con, "recommendations", pl.DataFrame([row], schema=RECOMMENDATION_SCHEMA))
    check = next(
        c for c in INSIGHT_CHECKS if AssetKey(["kpi", "recommendations"]) in {k.asset_key for k in c.check_keys}
    )
    result = check(warehouse=warehouse)
    assert not result.passed
    assert result.metadata["offending_rows"].value[0]["subject"] == "ci/x"
