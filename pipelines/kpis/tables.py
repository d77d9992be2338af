"""The KPI tables: building the frames, their pandera contracts, and their column documentation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandera.polars as pa
import polars as pl

from pipelines.insights.success import prediction_accuracy_figures
from pipelines.kpis.compute import Figure, KpiConfig, Marts, Period, dora_row, iso_weeks, success_figures, success_rows
from pipelines.kpis.value import value_rows

DORA_DOCS: dict[str, str] = {
    "period_kind": "`week` (an ISO week), `baseline` or `current` (the windows of value_model.yaml).",
    "period_start": "First UTC day of the period.",
    "period_end": "Last UTC day of the period (inclusive).",
    "days": "Days in the period.",
    "deployments": "Successful production deployments finished in the period (sample size).",
    "deployment_frequency_per_day": "Deployments / days in the period.",
    "changes": "Deployed changes (merged PRs) whose deployment finished in the period (sample size).",
    "lead_time_hours_median": "Median of deployment finished − first commit authored, hours.",
    "lead_time_hours_p75": "75th percentile of lead time (linear interpolation), hours.",
    "lead_time_hours_p90": "90th percentile of lead time, hours.",
    "change_failures": "Deployments in the period that were rolled back or caused an incident.",
    "change_failure_rate": "Change failures / deployments.",
    "incidents_resolved": "Incidents resolved in the period (sample size).",
    "time_to_restore_hours_median": "Median of incident resolved − created, hours.",
    "time_to_restore_hours_p75": "75th percentile of time to restore, hours.",
    "time_to_restore_hours_p90": "90th percentile of time to restore, hours.",
    "failures_recovered": "Change failures recovered in the period (sample size).",
    "failed_deployment_recovery_hours_median": "Median of recovery − failed deployment finished, hours (DORA 2023+).",
    "failed_deployment_recovery_hours_p75": "75th percentile of failed-deployment recovery, hours.",
    "failed_deployment_recovery_hours_p90": "90th percentile of failed-deployment recovery, hours.",
    "unplanned_deployments": "Rollbacks and deployments shipping a fix for an escaped bug.",
    "deployment_rework_rate": "Unplanned deployments / deployments (DORA 2024).",
    "deployment_frequency_tier": "elite / high / medium / low for deployment frequency.",
    "lead_time_tier": "Tier for the lead time median.",
    "change_failure_tier": "Tier for the change failure rate.",
    "recovery_tier": "Tier for the failed-deployment recovery median.",
    "performance_tier": "Overall tier: the lowest of the four; null when one is missing.",
    "tier_report_year": "DORA report year the tier bands come from (warehouse/kpi/dora_tiers.yaml).",
    "null_reasons": "Why any figure in the row is null (no data behind it).",
}

WEEKLY_DOCS: dict[str, str] = {
    "week_start": "Monday of the ISO week.",
    "week_end": "Sunday of the ISO week.",
    "metric": "Success metric name (see kpi.success_metrics.definition).",
    "value": "The metric's value that week; null when no data.",
    "sample_size": "Number of items the value rests on.",
    "null_reason": "Why the value is null.",
}

SUCCESS_DOCS: dict[str, str] = {
    "metric": "Success metric name.",
    "unit": "Unit of the values.",
    "direction": "`higher` or `lower` is better.",
    "baseline_value": "Value over the baseline window.",
    "baseline_sample": "Items the baseline value rests on.",
    "current_value": "Value over the current window.",
    "current_sample": "Items the current value rests on.",
    "improvement_pct": "(current − baseline) / baseline × 100, sign flipped for lower-is-better metrics.",
    "target": "Target: an improvement in percent, or an absolute value in the metric's unit.",
    "target_kind": "`improvement_pct` or `absolute`.",
    "met": "The target is met; null when a value is missing.",
    "definition": "Exactly how the metric is computed.",
    "null_reason": "Why a value is null.",
}

VALUE_DOCS: dict[str, str] = {
    "value_line": "Value line, or total_<group> / total_all.",
    "value_group": "`product_impact`, `operational_savings`, or `all`.",
    "driver_metric": "The success metric whose change drives the line.",
    "formula": "The formula over baseline, current and the named assumptions.",
    "baseline_value": "Driver metric's baseline value used.",
    "baseline_source": "`measured`, or `reference` when the metric has no measured baseline.",
    "current_value": "Driver metric's measured current value.",
    "target_value": "Driver metric's value at its target.",
    "measured_value_usd": "Annual value in USD from the measured change.",
    "value_at_target_usd": "Annual value in USD if the metric exactly met its target.",
    "assumptions": "The assumptions the formula used (JSON: name → value).",
    "null_reason": "Why a value is null.",
}

TABLE_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "dora": (
        "DORA metrics per ISO week and over the baseline and current windows, with sample sizes and tiers.",
        DORA_DOCS,
    ),
    "weekly_metrics": ("The success metrics per complete ISO week (long format).", WEEKLY_DOCS),
    "success_metrics": ("The success metrics: baseline, current, improvement and target.", SUCCESS_DOCS),
    "business_value": (
        "The business-value driver model: value per line and group, measured and at target.",
        VALUE_DOCS,
    ),
}


# Explicit column types: in an empty or thin world a column can be all null, and polars would type it Null.
SUCCESS_TYPES: dict[str, pl.DataType] = {
    "metric": pl.String(),
    "unit": pl.String(),
    "direction": pl.String(),
    "baseline_value": pl.Float64(),
    "baseline_sample": pl.Int64(),
    "current_value": pl.Float64(),
    "current_sample": pl.Int64(),
    "improvement_pct": pl.Float64(),
    "target": pl.Float64(),
    "target_kind": pl.String(),
    "met": pl.Boolean(),
    "definition": pl.String(),
    "null_reason": pl.String(),
}
VALUE_TYPES: dict[str, pl.DataType] = {
    "value_line": pl.String(),
    "value_group": pl.String(),
    "driver_metric": pl.String(),
    "formula": pl.String(),
    "baseline_value": pl.Float64(),
    "baseline_source": pl.String(),
    "current_value": pl.Float64(),
    "target_value": pl.Float64(),
    "measured_value_usd": pl.Float64(),
    "value_at_target_usd": pl.Float64(),
    "assumptions": pl.String(),
    "null_reason": pl.String(),
}


class DoraSchema(pa.DataFrameModel):
    period_kind: str = pa.Field(isin=["week", "baseline", "current"])
    deployments: int = pa.Field(ge=0)
    deployment_frequency_per_day: float = pa.Field(nullable=True, ge=0)
    lead_time_hours_median: float = pa.Field(nullable=True, ge=0)
    change_failure_rate: float = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})
    time_to_restore_hours_median: float = pa.Field(nullable=True, ge=0)
    failed_deployment_recovery_hours_median: float = pa.Field(nullable=True, ge=0)
    deployment_rework_rate: float = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})
    performance_tier: str = pa.Field(nullable=True, isin=["elite", "high", "medium", "low"])

    class Config:
        unique = ("period_kind", "period_start")


class SuccessSchema(pa.DataFrameModel):
    metric: str = pa.Field(unique=True)
    target_kind: str = pa.Field(isin=["improvement_pct", "absolute"])
    baseline_sample: int = pa.Field(ge=0)
    current_sample: int = pa.Field(ge=0)
    met: bool = pa.Field(nullable=True)


class ValueSchema(pa.DataFrameModel):
    value_line: str = pa.Field(unique=True)
    measured_value_usd: float = pa.Field(nullable=True)
    value_at_target_usd: float = pa.Field(nullable=True)


def kpi_frames(marts: Marts, config: KpiConfig, settings: dict[str, float]) -> dict[str, pl.DataFrame]:
    """All four KPI tables, validated against their pandera contracts."""
    windows = config.windows(marts.last_complete_day)
    first = marts.first_day
    weeks = iso_weeks(first, marts.last_complete_day) if first else []
    periods = [*weeks, *windows]
    target = settings.get("recovery_target_minutes", 60.0)
    dora = pl.DataFrame([dora_row(marts, p, config.tiers, target) for p in periods], infer_schema_length=None)
    figures = {
        p.kind if p.kind != "week" else p.start.isoformat(): success_figures(marts, p, settings) for p in periods
    }
    # prediction_accuracy: held-out accuracy of the feature-success model (pipelines/insights/success.py).
    for p, (value, sample, reason) in prediction_accuracy_figures(marts.frames, marts.as_of, periods).items():
        figures[_label(p)]["prediction_accuracy"] = Figure(value, sample, reason)
    weekly = pl.DataFrame(
        [
            {
                "week_start": p.start,
                "week_end": p.end,
                "metric": name,
                "value": f.value,
                "sample_size": f.sample,
                "null_reason": f.reason,
            }
            for p in weeks
            for name, f in figures[p.start.isoformat()].items()
        ],
        schema={
            "week_start": pl.Date,
            "week_end": pl.Date,
            "metric": pl.String,
            "value": pl.Float64,
            "sample_size": pl.Int64,
            "null_reason": pl.String,
        },
    )
    success = success_rows(figures, config.metrics)
    measured = {r["metric"]: (r["baseline_value"], r["current_value"]) for r in success}
    value = value_rows(config.value_model, config.metrics, measured)
    frames = {
        "dora": DoraSchema.validate(_typed(dora, DORA_DOCS)),
        "weekly_metrics": weekly,
        "success_metrics": SuccessSchema.validate(pl.DataFrame(success, schema=SUCCESS_TYPES)),
        "business_value": ValueSchema.validate(pl.DataFrame(value, schema=VALUE_TYPES)),
    }
    return frames


def _label(p: Period) -> str:
    return p.start.isoformat() if p.kind == "week" else p.kind


def _typed(frame: pl.DataFrame, docs: dict[str, str]) -> pl.DataFrame:
    """Give all-null columns a concrete type (an empty week makes polars infer Null)."""
    casts = {c: pl.Float64 for c, t in frame.schema.items() if t == pl.Null}
    for c in (
        "performance_tier",
        "null_reasons",
        "deployment_frequency_tier",
        "lead_time_tier",
        "change_failure_tier",
        "recovery_tier",
    ):
        if c in frame.columns and frame.schema[c] == pl.Null:
            casts[c] = pl.String
    return frame.cast(casts).select(list(docs))  # type: ignore[arg-type]


def now_utc() -> datetime:
    return datetime.now(UTC)


def write_kpi_table(con: Any, name: str, frame: pl.DataFrame) -> None:
    description, docs = TABLE_DOCS[name]
    con.execute("CREATE SCHEMA IF NOT EXISTS kpi")
    con.register("kpi_frame", frame.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE kpi.{name} AS SELECT * FROM kpi_frame")
    finally:
        con.unregister("kpi_frame")
    con.execute(f"COMMENT ON TABLE kpi.{name} IS '{description.replace(chr(39), chr(39) * 2)}'")
    for column in frame.columns:
        con.execute(f"COMMENT ON COLUMN kpi.{name}.{column} IS '{docs[column].replace(chr(39), chr(39) * 2)}'")
