"""Insight assets: `kpi/anomalies`, `kpi/forecasts`, `kpi/feature_success_predictions`, `kpi/recommendations`.

Each reads the marts or KPI tables it needs, runs the pure functions of `pipelines/insights/`, writes
one documented table to the `kpi` schema, and shows its headline figures as Dagster metadata. A
check per table asserts that every row carries the figures it rests on.
"""

import json
from typing import Any

import duckdb
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
    map_asset_specs,
)

from pipelines.assets.kpis import data_as_of, settings_from
from pipelines.insights import anomalies as anomaly_detection
from pipelines.insights.forecasts import SPECS as FORECAST_SPECS
from pipelines.insights.forecasts import forecasts as forecast_table
from pipelines.insights.recommendations import recommendations as recommendation_table
from pipelines.insights.success import predictions as prediction_table
from pipelines.insights.tables import INSIGHT_TABLES, write_insight_table
from pipelines.kpis.compute import MART_QUERIES, KpiConfig
from pipelines.resources import Warehouse

INSIGHT_KEYS = [AssetKey(["kpi", name]) for name in INSIGHT_TABLES]

ANOMALY_QUERIES = {
    "attempts": "SELECT service, environment, outcome, finished_at FROM deployment.deployment_attempts",
    "deployments": "SELECT service, finished_at, is_change_failure FROM deployment.deployments",
    "incidents": "SELECT service, created_at FROM quality.incidents",
    "test_cases": "SELECT build_id, service, status FROM quality.test_cases",
    "builds": "SELECT build_id, started_at FROM quality.builds",
    "feature_usage": "SELECT day, feature_key, events, users FROM usage.feature_usage_daily",
    "dora": "SELECT * FROM kpi.dora",
    "weekly": "SELECT * FROM kpi.weekly_metrics",
}
PREDICTION_INPUTS = ("features", "issues", "pull_requests", "adoption")
RECOMMENDATION_QUERIES = {
    "changes": "SELECT * FROM deployment.changes",
    "pull_requests": "SELECT * FROM development.pull_requests",
    "builds": "SELECT * FROM quality.builds",
    "test_cases": "SELECT * FROM quality.test_cases",
    "adoption": "SELECT * FROM usage.feature_adoption",
    "features": "SELECT * FROM development.features",
}


def _key(table: str) -> AssetKey:
    schema, name = table.split(".")
    return AssetKey([schema, name])


def _deps(queries: dict[str, str] | list[str]) -> list[AssetKey]:
    """Asset keys of the tables the queries read (the `FROM schema.table` of each)."""
    texts = queries.values() if isinstance(queries, dict) else queries
    return sorted({_key(q.split(" FROM ")[1].split()[0]) for q in texts}, key=str)


def _load(con: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> dict[str, pl.DataFrame]:
    return {name: con.sql(query).pl() for name, query in queries.items()}


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |\n" for r in rows)
    return head + body


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3g}"
    return str(value).replace("|", "/")


@asset(
    key=AssetKey(["kpi", "anomalies"]),
    deps=_deps(ANOMALY_QUERIES),
    group_name="kpi",
    kinds={"duckdb", "polars"},
    description=INSIGHT_TABLES["anomalies"][0] + "\n\nMethod: `pipelines/insights/anomalies.py`.",
)
def anomalies(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    with warehouse.connect() as con:
        frames = _load(con, ANOMALY_QUERIES)
        evaluated, flagged = anomaly_detection.detect_all(frames, KpiConfig.load().metrics)
        write_insight_table(con, "anomalies", flagged)
    by_series = flagged.group_by("series").len().sort("series").to_dicts()
    context.log.info(f"{flagged.height} anomalous weeks among {evaluated.height} judged")
    return MaterializeResult(
        metadata={
            "dagster/row_count": flagged.height,
            "weeks_judged": evaluated.height,
            "series_judged": evaluated.select("series", "subject").n_unique() if evaluated.height else 0,
            "flags_by_series": MetadataValue.json({r["series"]: r["len"] for r in by_series}),
            "latest_flags": MetadataValue.md(
                _md_table(
                    flagged.sort("week_start", descending=True).head(10).to_dicts(), ["week_start", "explanation"]
                )
            ),
        }
    )


@asset(
    key=AssetKey(["kpi", "forecasts"]),
    deps=[AssetKey(["kpi", "dora"])],
    group_name="kpi",
    kinds={"duckdb", "polars"},
    description=INSIGHT_TABLES["forecasts"][0] + "\n\nMethod: `pipelines/insights/forecasts.py`.",
)
def forecasts(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    with warehouse.connect() as con:
        dora = con.sql("SELECT * FROM kpi.dora").pl()
        frame = forecast_table(dora)
        write_insight_table(con, "forecasts", frame)
    metadata: dict[str, Any] = {"dagster/row_count": frame.height}
    for row in frame.filter(pl.col("step") == 1).to_dicts():
        metadata[f"{row['metric']}_next_week"] = MetadataValue.text(
            f"{_cell(row['forecast'])} ({_cell(row['lower'])}–{_cell(row['upper'])}); backtest MAPE "
            f"{_cell(row['backtest_mape_pct'])}% vs naive {_cell(row['backtest_naive_mape_pct'])}%, coverage "
            f"{_cell(row['backtest_coverage'])} over {row['backtest_points']} forecasts"
        )
    metadata["forecasts"] = MetadataValue.md(
        _md_table(frame.filter(pl.col("step") == 1).to_dicts(), ["metric", "explanation"])
    )
    context.log.info(f"forecasts for {len(FORECAST_SPECS)} metrics")
    return MaterializeResult(metadata=metadata)


@asset(
    key=AssetKey(["kpi", "feature_success_predictions"]),
    deps=_deps([MART_QUERIES[name] for name in PREDICTION_INPUTS]),
    group_name="kpi",
    kinds={"duckdb", "polars", "scikit-learn"},
    description=INSIGHT_TABLES["feature_success_predictions"][0] + "\n\nMethod: `pipelines/insights/success.py`.",
)
def feature_success_predictions(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    with warehouse.connect() as con:
        frames = _load(con, {name: MART_QUERIES[name] for name in PREDICTION_INPUTS})
        frame = prediction_table(frames, data_as_of())
        write_insight_table(con, "feature_success_predictions", frame)
    summary = frame.row(0, named=True) if frame.height else {}
    open_rows = frame.filter(pl.col("prediction_kind") == "open").sort("probability", descending=True, nulls_last=True)
    context.log.info(
        f"prediction accuracy {_cell(summary.get('backtest_accuracy'))} over {summary.get('backtest_sample', 0)} "
        "held-out features"
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "held_out_accuracy": MetadataValue.float(summary["backtest_accuracy"])
            if summary.get("backtest_accuracy") is not None
            else MetadataValue.text("n/a"),
            "held_out_sample": int(summary.get("backtest_sample") or 0),
            "majority_baseline_accuracy": MetadataValue.text(_cell(summary.get("backtest_baseline_accuracy"))),
            "open_features": open_rows.height,
            "open_predictions": MetadataValue.md(
                _md_table(open_rows.head(15).to_dicts(), ["feature_key", "explanation"])
            ),
        }
    )


@asset(
    key=AssetKey(["kpi", "recommendations"]),
    deps=[*_deps(RECOMMENDATION_QUERIES), AssetKey(["kpi", "dora"]), AssetKey(["config", "settings"])],
    group_name="kpi",
    kinds={"duckdb", "polars"},
    description=INSIGHT_TABLES["recommendations"][0] + "\n\nRules: `pipelines/insights/recommendations.py`.",
)
def recommendations(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    with warehouse.connect() as con:
        frames = _load(con, RECOMMENDATION_QUERIES)
        current = "SELECT period_start, period_end FROM kpi.dora WHERE period_kind = 'current'"
        window = next(iter(con.execute(current).fetchall()), None)  # fetchall: duckdb 2 keeps a fetchone() open
        threshold = settings_from(con).get("adoption_threshold", 0.05)
        if window is None:
            raise ValueError("kpi.dora has no current window")
        frame = recommendation_table(frames, window[0], window[1], threshold)
        write_insight_table(con, "recommendations", frame)
    counts = frame.group_by("kind").len().sort("kind").to_dicts()
    context.log.info(f"{frame.height} recommendations for {window[0]} – {window[1]}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "by_kind": MetadataValue.json({r["kind"]: r["len"] for r in counts}),
            "top": MetadataValue.md(
                _md_table(frame.filter(pl.col("rank") == 1).to_dicts(), ["kind", "recommendation"])
            ),
        }
    )


INSIGHT_ASSETS = [anomalies, forecasts, feature_success_predictions, recommendations]


# --- checks: every row carries the figures it rests on ------------------------------------------------

ROW_FIGURES = {
    "anomalies": "observed IS NULL OR expected IS NULL OR lower IS NULL OR upper IS NULL OR sample_size IS NULL "
    "OR robust_scale <= 0 OR explanation IS NULL OR NOT (observed < lower OR observed > upper)",
    "forecasts": "(forecast IS NULL AND null_reason IS NULL) OR (forecast IS NOT NULL AND NOT "
    "(lower <= forecast AND forecast <= upper AND backtest_points > 0 AND backtest_coverage IS NOT NULL)) "
    "OR explanation IS NULL",
    "feature_success_predictions": "(probability IS NULL AND null_reason IS NULL) OR "
    "(prediction_kind = 'backtest' AND adopted IS NULL) OR (probability IS NOT NULL AND training_features = 0) "
    "OR explanation IS NULL",
    "recommendations": "value IS NULL OR sample_size IS NULL OR evidence IS NULL OR recommendation IS NULL",
}


def _row_check(name: str) -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey(["kpi", name]),
        name="rows_carry_their_figures",
        description=f"Every kpi.{name} row has the figures it rests on (no claim without numbers).",
    )
    def check(warehouse: Warehouse) -> AssetCheckResult:
        with warehouse.connect() as con:
            total = con.execute(f"SELECT count(*) FROM kpi.{name}").fetchall()[0][0]
            bad = con.sql(f"SELECT * FROM kpi.{name} WHERE {ROW_FIGURES[name]} LIMIT 5").pl()
            if name == "recommendations":
                evidence = con.execute("SELECT evidence FROM kpi.recommendations").fetchall()
                unparsable = [e for (e,) in evidence if not isinstance(json.loads(e), dict)]
            else:
                unparsable = []
        return AssetCheckResult(
            passed=bad.height == 0 and not unparsable,
            severity=AssetCheckSeverity.ERROR,
            metadata={"rows": total, "offending_rows": MetadataValue.json([_jsonable(r) for r in bad.to_dicts()])},
        )

    return check


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, int | float | bool | str) or v is None else str(v) for k, v in row.items()}


INSIGHT_CHECKS = [_row_check(name) for name in INSIGHT_TABLES]


def with_insight_deps(report: AssetsDefinition) -> AssetsDefinition:
    """The KPI report, made to run after the insight tables it shows (its own module lists only the KPIs)."""
    return map_asset_specs(lambda spec: spec.merge_attributes(deps=INSIGHT_KEYS), [report])[0]
