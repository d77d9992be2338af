"""KPI arithmetic over the marts, with polars: DORA and the nine success metrics for any period.

Everything here is a pure function of mart frames and a `Period`, so the same code computes a
week, the baseline window and the current window, and the tests can feed it hand-made frames.
A figure with no data behind it is `None` with a reason, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import yaml

from pipelines.settings import WAREHOUSE_SQL_DIR

KPI_CONFIG_DIR = WAREHOUSE_SQL_DIR / "kpi"


@dataclass(frozen=True)
class Period:
    kind: str  # "week" | "baseline" | "current"
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def has(self, column: str) -> pl.Expr:
        """The timestamp column falls on one of the period's UTC days."""
        return pl.col(column).dt.date().is_between(self.start, self.end)


@dataclass(frozen=True)
class Figure:
    value: float | None
    sample: int
    reason: str | None = None

    @classmethod
    def empty(cls, reason: str) -> Figure:
        return cls(None, 0, reason)


def ratio(numerator: int, denominator: int, what: str) -> Figure:
    if denominator == 0:
        return Figure.empty(f"no {what} in the period")
    return Figure(numerator / denominator, denominator)


def quantiles(values: pl.Series, what: str) -> tuple[Figure, float | None, float | None]:
    """Median (the middle value, or the mean of the two middle ones) with p75 and p90 (linear)."""
    values = values.drop_nulls()
    if values.len() == 0:
        return Figure.empty(f"no {what} in the period"), None, None
    return (
        Figure(float(values.median()), values.len()),  # type: ignore[arg-type]
        float(values.quantile(0.75, interpolation="linear")),  # type: ignore[arg-type]
        float(values.quantile(0.90, interpolation="linear")),  # type: ignore[arg-type]
    )


# --- inputs ---------------------------------------------------------------------------------------

MART_QUERIES: dict[str, str] = {
    "deployments": "SELECT * FROM deployment.deployments",
    "attempts": "SELECT * FROM deployment.deployment_attempts",
    "changes": "SELECT * FROM deployment.changes",
    "incidents": "SELECT * FROM quality.incidents",
    "defects": "SELECT * FROM quality.defects",
    "issues": "SELECT * FROM development.issues",
    "transitions": "SELECT * FROM development.issue_transitions",
    "pull_requests": "SELECT * FROM development.pull_requests",
    "features": "SELECT * FROM development.features",
    "adoption": "SELECT * FROM usage.feature_adoption",
    "active_users": "SELECT * FROM usage.active_users_daily",
}


@dataclass
class Marts:
    frames: dict[str, pl.DataFrame]
    as_of: datetime
    reconciliation: pl.DataFrame | None = None

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.frames[name]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, as_of: datetime) -> Marts:
        frames = {name: con.sql(query).pl() for name, query in MART_QUERIES.items()}
        tables = {r[0] for r in con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()}
        recon = None
        if "quality.source_reconciliation" in tables:
            recon = con.sql("SELECT * FROM quality.source_reconciliation").pl()
        return cls(frames, as_of, recon)

    @property
    def last_complete_day(self) -> date:
        """The day before the as-of day: the data is complete only up to then (a run at 02:00 has 2 h of today)."""
        return (self.as_of - timedelta(days=1)).date()

    @property
    def first_day(self) -> date | None:
        starts = [
            self["deployments"]["finished_at"].min(),
            self["issues"]["created_at"].min(),
            self["pull_requests"]["created_at"].min(),
        ]
        days = [s.date() for s in starts if s is not None]  # type: ignore[union-attr]
        return min(days) if days else None


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiConfig:
    tiers: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    value_model: dict[str, Any]
    settings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path = KPI_CONFIG_DIR) -> KpiConfig:
        def read(name: str) -> dict[str, Any]:
            return yaml.safe_load((folder / name).read_text(encoding="utf-8"))

        return cls(read("dora_tiers.yaml"), read("success_metrics.yaml"), read("value_model.yaml"))

    def windows(self, last_complete_day: date) -> list[Period]:
        w = self.value_model["windows"]
        current = Period("current", last_complete_day - timedelta(days=int(w["current_days"]) - 1), last_complete_day)
        baseline = Period("baseline", _as_date(w["baseline"]["start"]), _as_date(w["baseline"]["end"]))
        return [baseline, current]


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def iso_weeks(first: date, last_complete: date) -> list[Period]:
    """Complete ISO weeks (Monday–Sunday) between two days."""
    monday = first - timedelta(days=first.weekday())
    if monday < first:
        monday += timedelta(days=7)
    weeks = []
    while monday + timedelta(days=6) <= last_complete:
        weeks.append(Period("week", monday, monday + timedelta(days=6)))
        monday += timedelta(days=7)
    return weeks


# --- DORA -----------------------------------------------------------------------------------------


def tier(metric: str, value: float | None, tiers: dict[str, Any]) -> str | None:
    if value is None:
        return None
    band = tiers["metrics"][metric]
    for name in ("elite", "high", "medium"):
        limit = float(band[name])
        if band["direction"] == "higher":
            ok = value >= limit
        elif band.get("inclusive"):
            ok = value <= limit
        else:
            ok = value < limit
        if ok:
            return name
    return "low"


TIER_ORDER = ["low", "medium", "high", "elite"]


def dora_row(m: Marts, p: Period, tiers: dict[str, Any], recovery_target_minutes: float = 60) -> dict[str, Any]:
    deps = m["deployments"].filter(p.has("finished_at"))
    n = deps.height
    reasons: list[str] = []

    def note(name: str, fig: Figure) -> float | None:
        if fig.reason:
            reasons.append(f"{name}: {fig.reason}")
        return fig.value

    freq = note("deployment_frequency_per_day", Figure(n / p.days, n) if n else Figure.empty("no deployments"))
    lead, lead75, lead90 = quantiles(m["changes"].filter(p.has("deployed_at"))["lead_time_hours"], "deployed changes")
    failures = int(deps["is_change_failure"].sum()) if n else 0
    cfr = note("change_failure_rate", ratio(failures, n, "deployments"))
    resolved = m["incidents"].filter(p.has("resolved_at"))
    ttr, ttr75, ttr90 = quantiles(resolved["restore_hours"], "resolved incidents")
    recovered = m["deployments"].filter(pl.col("is_change_failure") & p.has("recovered_at"))
    rec, rec75, rec90 = quantiles(recovered["recovery_hours"], "recovered change failures")
    unplanned = int(deps["is_unplanned"].sum()) if n else 0
    rework = note("deployment_rework_rate", ratio(unplanned, n, "deployments"))
    row: dict[str, Any] = {
        "period_kind": p.kind,
        "period_start": p.start,
        "period_end": p.end,
        "days": p.days,
        "deployments": n,
        "deployment_frequency_per_day": freq,
        "changes": lead.sample,
        "lead_time_hours_median": note("lead_time_hours_median", lead),
        "lead_time_hours_p75": lead75,
        "lead_time_hours_p90": lead90,
        "change_failures": failures,
        "change_failure_rate": cfr,
        "incidents_resolved": ttr.sample,
        "time_to_restore_hours_median": note("time_to_restore_hours_median", ttr),
        "time_to_restore_hours_p75": ttr75,
        "time_to_restore_hours_p90": ttr90,
        "failures_recovered": rec.sample,
        "failed_deployment_recovery_hours_median": note("failed_deployment_recovery_hours_median", rec),
        "failed_deployment_recovery_hours_p75": rec75,
        "failed_deployment_recovery_hours_p90": rec90,
        "unplanned_deployments": unplanned,
        "deployment_rework_rate": rework,
    }
    per_metric = {
        "deployment_frequency_tier": tier("deployment_frequency_per_day", freq, tiers),
        "lead_time_tier": tier("lead_time_hours_median", lead.value, tiers),
        "change_failure_tier": tier("change_failure_rate", cfr, tiers),
        "recovery_tier": tier("failed_deployment_recovery_hours_median", rec.value, tiers),
    }
    row.update(per_metric)
    known = list(per_metric.values())
    row["performance_tier"] = None if None in known else min(known, key=TIER_ORDER.index)  # type: ignore[arg-type]
    if row["performance_tier"] is None:
        reasons.append("performance_tier: a metric has no value")
    row["tier_report_year"] = int(tiers["report_year"])
    row["null_reasons"] = "; ".join(reasons) or None
    return row


# --- the nine success metrics ---------------------------------------------------------------------


def success_figures(m: Marts, p: Period, settings: dict[str, float]) -> dict[str, Figure]:
    deps = m["deployments"].filter(p.has("finished_at"))
    figures: dict[str, Figure] = {}

    done = m["issues"].filter(pl.col("issue_type").is_in(["Story", "Task"]) & p.has("done_at")).height
    activity = pl.concat(
        [
            m["transitions"]
            .filter(p.has("transitioned_at"))
            .select(person=pl.col("author_id"), at=pl.col("transitioned_at")),
            m["pull_requests"].filter(p.has("merged_at")).select(person=pl.col("author_id"), at=pl.col("merged_at")),
        ]
    ).drop_nulls("person")
    engineer_weeks = activity.select(pl.col("person"), week=pl.col("at").dt.truncate("1w")).unique().height
    figures["development_efficiency"] = (
        Figure(done / engineer_weeks, engineer_weeks) if engineer_weeks else Figure.empty("no active engineers")
    )

    completed = m["attempts"].filter(
        (pl.col("environment") == "production") & pl.col("outcome").is_in(["success", "failure"]) & p.has("finished_at")
    )
    figures["deployment_success_rate"] = ratio(
        completed.filter(pl.col("outcome") == "success").height, completed.height, "completed production attempts"
    )

    escaped = m["defects"].filter(pl.col("escaped") & p.has("created_at")).height
    figures["qa_effectiveness"] = (
        Figure(escaped / deps.height * 100, deps.height) if deps.height else Figure.empty("no deployments")
    )

    released = m["features"].filter(p.has("first_released_at"))
    figures["time_to_market_days"] = quantiles(released["time_to_market_days"], "released features")[0]

    adoption = m["adoption"].filter(p.has("released_at") & pl.col("window_complete"))
    figures["product_success_rate"] = ratio(
        adoption.filter(pl.col("adopted")).height, adoption.height, "released features with a complete window"
    )

    figures["automation_rate"] = ratio(
        deps.filter(pl.col("triggered_by") == "automation").height, deps.height, "deployments"
    )

    failures = deps.filter(pl.col("is_change_failure"))
    target_hours = settings.get("recovery_target_minutes", 60.0) / 60.0
    figures["rollback_efficiency"] = ratio(
        failures.filter(pl.col("recovery_hours") <= target_hours).height, failures.height, "change failures"
    )

    days = m["active_users"].filter(pl.col("day").is_between(p.start, p.end))
    total = int(days["events"].sum()) if days.height else 0
    figures["tracking_accuracy"] = ratio(int(days["tracked_events"].sum()) if total else 0, total, "events")

    if p.kind == "current" and m.reconciliation is not None and m.reconciliation.height:
        worst = m.reconciliation.select(pl.col("completeness").min()).item()
        figures["sync_accuracy"] = Figure(float(worst), m.reconciliation.height)
    elif p.kind == "current":
        figures["sync_accuracy"] = Figure.empty("no source-reported totals to reconcile against")
    else:
        figures["sync_accuracy"] = Figure.empty("measured at the last extraction only")
    return figures


def improvement_pct(baseline: float | None, current: float | None, direction: str) -> float | None:
    if baseline is None or current is None or baseline == 0:
        return None
    change = (current - baseline) if direction == "higher" else (baseline - current)
    return change / baseline * 100


def met(metric: dict[str, Any], current: float | None, improvement: float | None) -> bool | None:
    if metric["target_kind"] == "improvement_pct":
        return None if improvement is None else improvement >= float(metric["target"])
    if current is None:
        return None
    target = float(metric["target"])
    return current >= target if metric["direction"] == "higher" else current <= target


def success_rows(figures: dict[str, dict[str, Figure]], metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """kpi.success_metrics rows from the baseline and current figures."""
    rows = []
    for name, spec in metrics.items():
        base, cur = figures["baseline"][name], figures["current"][name]
        imp = improvement_pct(base.value, cur.value, spec["direction"])
        reasons = [f"{k}: {f.reason}" for k, f in (("baseline", base), ("current", cur)) if f.reason]
        rows.append(
            {
                "metric": name,
                "unit": spec["unit"],
                "direction": spec["direction"],
                "baseline_value": base.value,
                "baseline_sample": base.sample,
                "current_value": cur.value,
                "current_sample": cur.sample,
                "improvement_pct": imp,
                "target": float(spec["target"]),
                "target_kind": spec["target_kind"],
                "met": met(spec, cur.value, imp),
                "definition": " ".join(str(spec["definition"]).split()),
                "null_reason": "; ".join(reasons) or None,
            }
        )
    return rows
