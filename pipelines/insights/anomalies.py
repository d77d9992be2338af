"""Anomalous weeks in the KPI series: a trailing median/MAD band, per organisation, service and feature.

Method (why this one): each week is compared with the same series' previous `WINDOW_WEEKS` weeks.
The expected value is their median and the spread is their median absolute deviation (× 1.4826, so
it estimates a standard deviation for normal data). A week is flagged when it lies more than
`THRESHOLD` robust standard deviations from the median — the modified z-score cut-off of Iglewicz
and Hoaglin (3.5). The median and MAD tolerate up to half the window being abnormal, so a two- or
three-week incident does not hide itself by inflating its own baseline (a mean/SD band would), and a
trailing window follows level shifts such as the improvement programme within a couple of months.
Seasonal decomposition was not chosen: a year of weekly data holds one cycle of any yearly season,
and the series have no weekly-grain seasonality to remove.

Only departures in the harmful direction are flagged (more failures, fewer users, a longer lead
time): `kpi.anomalies` is a list of weeks to investigate, and an unusually good week is not one.

Weekly counts of rare events (failures, incidents) are mostly 0, where the MAD is 0 too; the spread
then falls back to its sampling noise: √λ for a count (Poisson, with λ at least 1), √(p(1−p)/n) for a
rate (the binomial, with n·p at least 1 for the same reason), and 10 % of the median for a level
such as a median lead time. Weeks without a sample (no deployment attempt, no test run) carry no
information and are skipped rather than read as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

WINDOW_WEEKS = 8
"""Trailing weeks that define "recent behaviour": two months, long enough for a stable median."""
MIN_HISTORY = 4
"""A week is judged only against at least four earlier weeks with data."""
THRESHOLD = 3.5
"""Robust z-score beyond which a week is flagged (Iglewicz & Hoaglin's recommended cut-off)."""
MAD_TO_SD = 1.4826
"""The MAD of normal data times this estimates its standard deviation."""
LEVEL_FLOOR = 0.10
"""Smallest spread of a level series, as a share of its median (a median of a few items is noisy)."""
METHOD = f"trailing {WINDOW_WEEKS}-week median ± {THRESHOLD} × max(1.4826·MAD, sampling noise)"

SERIES_SCHEMA = {
    "family": pl.String,
    "subject": pl.String,
    "week_start": pl.Date,
    "value": pl.Float64,
    "sample_size": pl.Int64,
}
ORG = "organisation"


@dataclass(frozen=True)
class SeriesSpec:
    """What a series measures and how its noise behaves."""

    family: str
    scope: str  # org | service | feature
    kind: str  # count | rate | per_day | level
    harmful: str  # above | below: the direction of a departure that is bad news
    label: str  # what the value is, in words, for the explanation
    source: str  # the table it comes from
    min_sample: int = 1  # weeks with a smaller sample are not judged


SUBJECT_SPECS: dict[str, SeriesSpec] = {
    s.family: s
    for s in [
        SeriesSpec("service.failed_deployments", "service", "count", "above",
                   "failed production deployment attempts", "deployment.deployment_attempts"),
        SeriesSpec("service.change_failures", "service", "count", "above",
                   "change failures (rolled back or caused an incident)", "deployment.deployments"),
        SeriesSpec("service.incidents", "service", "count", "above", "incidents opened", "quality.incidents"),
        SeriesSpec("service.test_failures", "service", "count", "above", "failed test runs",
                   "quality.test_cases"),
        SeriesSpec("feature.user_days", "feature", "count", "below", "daily users summed over the week",
                   "usage.feature_usage_daily"),
    ]
}  # fmt: skip

DORA_SPECS: dict[str, tuple[str, str, str, int]] = {
    # column: (kind, harmful direction, sample column, minimum sample)
    "deployment_frequency_per_day": ("per_day", "below", "deployments", 0),
    "lead_time_hours_median": ("level", "above", "changes", 3),
    "change_failure_rate": ("rate", "above", "deployments", 5),
    "time_to_restore_hours_median": ("level", "above", "incidents_resolved", 3),
    "failed_deployment_recovery_hours_median": ("level", "above", "failures_recovered", 3),
    "deployment_rework_rate": ("rate", "above", "deployments", 5),
}


def kpi_specs(metrics: dict[str, dict[str, Any]]) -> dict[str, SeriesSpec]:
    """Specs of the organisation-wide series: DORA's weekly columns and the weekly success metrics."""
    specs = {
        f"dora.{column}": SeriesSpec(f"dora.{column}", "org", kind, harmful, column.replace("_", " "), "kpi.dora",
                                     min_sample)
        for column, (kind, harmful, _, min_sample) in DORA_SPECS.items()
    }  # fmt: skip
    for name, spec in metrics.items():
        kind = "rate" if spec.get("unit") == "ratio" else "level"
        harmful = "below" if spec.get("direction") == "higher" else "above"
        specs[f"weekly.{name}"] = SeriesSpec(
            f"weekly.{name}", "org", kind, harmful, f"{name.replace('_', ' ')} ({spec.get('unit')})",
            "kpi.weekly_metrics", 5 if kind == "rate" else 3,
        )  # fmt: skip
    return specs


# --- building the series ---------------------------------------------------------------------------


def _week(column: str) -> pl.Expr:
    """The Monday of the UTC day a timestamp (or date) falls on."""
    return pl.col(column).dt.date().dt.truncate("1w").alias("week_start")


def _grid(counts: pl.DataFrame, family: str, weeks: list[date], *, zero_fill: bool) -> pl.DataFrame:
    """One row per subject and complete week, from the subject's first week with data to the last.

    `zero_fill`: a week without rows means 0 events (incidents, usage); otherwise it means no sample
    (no attempt, no test run) and the value is null.
    """
    if counts.is_empty() or not weeks:
        return pl.DataFrame(schema=SERIES_SCHEMA)
    calendar = pl.DataFrame({"week_start": weeks}, schema={"week_start": pl.Date})
    firsts = counts.group_by("subject").agg(first=pl.col("week_start").min())
    grid = (
        firsts.join(calendar, how="cross")
        .filter(pl.col("week_start") >= pl.col("first"))
        .drop("first")
        .join(counts, on=["subject", "week_start"], how="left")
    )
    value = pl.col("value").fill_null(0.0) if zero_fill else pl.col("value")
    return grid.select(
        family=pl.lit(family),
        subject=pl.col("subject"),
        week_start=pl.col("week_start"),
        value=value.cast(pl.Float64),
        sample_size=pl.col("sample_size").fill_null(0).cast(pl.Int64),
    )


def service_series(
    attempts: pl.DataFrame,
    deployments: pl.DataFrame,
    incidents: pl.DataFrame,
    test_cases: pl.DataFrame,
    builds: pl.DataFrame,
    weeks: list[date],
) -> pl.DataFrame:
    """Weekly per-service counts: failed production attempts, change failures, incidents, failed test runs.

    Frames are shaped like the marts (`deployment.deployment_attempts`, `deployment.deployments`,
    `quality.incidents`, `quality.test_cases`, `quality.builds`); `weeks` are the complete ISO weeks.
    """
    week_set = pl.Series(weeks, dtype=pl.Date).implode()
    parts = []
    prod = attempts.filter(
        (pl.col("environment") == "production")
        & pl.col("outcome").is_in(["success", "failure"])
        & pl.col("finished_at").is_not_null()
    )
    failed = prod.group_by(pl.col("service").alias("subject"), _week("finished_at")).agg(
        value=(pl.col("outcome") == "failure").sum(), sample_size=pl.len()
    )
    parts.append(_grid(failed.filter(pl.col("week_start").is_in(week_set)), "service.failed_deployments", weeks,
                       zero_fill=False))  # fmt: skip
    changes = deployments.group_by(pl.col("service").alias("subject"), _week("finished_at")).agg(
        value=pl.col("is_change_failure").cast(pl.Int64).sum(), sample_size=pl.len()
    )
    parts.append(
        _grid(changes.filter(pl.col("week_start").is_in(week_set)), "service.change_failures", weeks, zero_fill=False)
    )
    opened = (
        incidents.filter(pl.col("service").is_not_null())
        .group_by(pl.col("service").alias("subject"), _week("created_at"))
        .agg(value=pl.len(), sample_size=pl.len())
    )
    parts.append(_grid(opened.filter(pl.col("week_start").is_in(week_set)), "service.incidents", weeks, zero_fill=True))
    runs = (
        test_cases.select("build_id", "service", "status")
        .join(builds.select("build_id", "started_at"), on="build_id", how="inner")
        .group_by(pl.col("service").alias("subject"), _week("started_at"))
        .agg(value=(pl.col("status") == "failed").sum(), sample_size=pl.len())
    )
    parts.append(
        _grid(runs.filter(pl.col("week_start").is_in(week_set)), "service.test_failures", weeks, zero_fill=False)
    )
    return pl.concat(parts)


def feature_series(feature_usage: pl.DataFrame, weeks: list[date]) -> pl.DataFrame:
    """Weekly usage per feature: daily users summed over the week (`usage.feature_usage_daily`)."""
    week_set = pl.Series(weeks, dtype=pl.Date).implode()
    usage = (
        feature_usage.group_by(pl.col("feature_key").alias("subject"), _week("day"))
        .agg(value=pl.col("users").sum(), sample_size=pl.col("events").sum())
        .filter(pl.col("week_start").is_in(week_set))
    )
    grid = _grid(usage, "feature.user_days", weeks, zero_fill=True)
    # A feature's first week with usage is its release week, used for only part of the week: it
    # would read as a low week and widen the spread the later weeks are judged by.
    return grid.filter(pl.col("week_start") > pl.col("week_start").min().over("subject"))


def kpi_series(dora: pl.DataFrame, weekly: pl.DataFrame) -> pl.DataFrame:
    """Organisation-wide weekly series from `kpi.dora` (week rows) and `kpi.weekly_metrics`."""
    weeks = dora.filter(pl.col("period_kind") == "week")
    parts = [
        weeks.select(
            family=pl.lit(f"dora.{column}"),
            subject=pl.lit(ORG),
            week_start=pl.col("period_start"),
            value=pl.col(column).cast(pl.Float64),
            sample_size=pl.col(sample).cast(pl.Int64),
        )
        for column, (_, _, sample, _) in DORA_SPECS.items()
    ]
    parts.append(
        weekly.select(
            family=pl.lit("weekly.") + pl.col("metric"),
            subject=pl.lit(ORG),
            week_start=pl.col("week_start"),
            value=pl.col("value").cast(pl.Float64),
            sample_size=pl.col("sample_size").cast(pl.Int64),
        )
    )
    frame = pl.concat(parts)
    # Leading weeks before the organisation had any data in a series are not part of it.
    return frame.filter((pl.col("sample_size") > 0).cum_max().over("family", order_by="week_start")).select(
        list(SERIES_SCHEMA)
    )


# --- detection -------------------------------------------------------------------------------------


def _noise_floor(kind: str, median: float, sample: int) -> float:
    """The smallest spread a week's value can have from sampling alone (see the module docstring)."""
    if kind == "count":
        return math.sqrt(max(median, 1.0))
    if kind == "per_day":  # deployments per day over a 7-day week: a Poisson count / 7
        return math.sqrt(max(median * 7, 1.0)) / 7
    if kind == "rate":
        n = max(sample, 1)
        p = min(max(median, 1.0 / n), 1 - 1.0 / n) if n > 1 else 0.5
        return math.sqrt(p * (1 - p) / n)
    return LEVEL_FLOOR * abs(median)


def _bounded(kind: str, value: float) -> float:
    if kind == "rate":
        return min(max(value, 0.0), 1.0)
    return max(value, 0.0)


def evaluate(
    series: pl.DataFrame,
    specs: dict[str, SeriesSpec],
    *,
    window: int = WINDOW_WEEKS,
    min_history: int = MIN_HISTORY,
    threshold: float = THRESHOLD,
) -> pl.DataFrame:
    """Every judged week of every series with its expected range, robust score and verdict."""
    rows: list[dict[str, Any]] = []
    for (family, subject), group in series.sort("week_start").group_by(["family", "subject"], maintain_order=True):
        spec = specs.get(str(family))
        if spec is None:
            continue
        weeks = group["week_start"].to_list()
        values = group["value"].to_list()
        samples = group["sample_size"].to_list()
        usable = [v is not None and not math.isnan(v) and (s or 0) >= spec.min_sample for v, s in
                  zip(values, samples, strict=True)]  # fmt: skip
        for i in range(len(weeks)):
            if not usable[i]:
                continue
            history = [values[j] for j in range(max(0, i - window), i) if usable[j]]
            if len(history) < min_history:
                continue
            hist = np.asarray(history, dtype=float)
            median = float(np.median(hist))
            mad = float(np.median(np.abs(hist - median))) * MAD_TO_SD
            floor = _noise_floor(spec.kind, median, int(samples[i] or 0))
            scale = max(mad, floor)
            if scale <= 0:
                continue
            score = (values[i] - median) / scale
            rows.append(
                {
                    "series": spec.family,
                    "scope": spec.scope,
                    "subject": str(subject),
                    "week_start": weeks[i],
                    "week_end": weeks[i] + timedelta(days=6),
                    "observed": float(values[i]),
                    "expected": median,
                    "lower": _bounded(spec.kind, median - threshold * scale),
                    "upper": _bounded(spec.kind, median + threshold * scale),
                    "robust_scale": scale,
                    "mad_scale": mad,
                    "noise_floor": floor,
                    "score": score,
                    "direction": "above" if score > 0 else "below",
                    "adverse": (score > 0) == (spec.harmful == "above"),
                    "sample_size": int(samples[i] or 0),
                    "history_weeks": len(history),
                    # Only departures in the harmful direction are anomalies to act on; an unusually
                    # good week is kept in the evaluation but not flagged.
                    "is_anomaly": abs(score) > threshold and (score > 0) == (spec.harmful == "above"),
                }
            )
    return pl.DataFrame(rows, schema=EVALUATED_SCHEMA)


EVALUATED_SCHEMA = {
    "series": pl.String,
    "scope": pl.String,
    "subject": pl.String,
    "week_start": pl.Date,
    "week_end": pl.Date,
    "observed": pl.Float64,
    "expected": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "robust_scale": pl.Float64,
    "mad_scale": pl.Float64,
    "noise_floor": pl.Float64,
    "score": pl.Float64,
    "direction": pl.String,
    "adverse": pl.Boolean,
    "sample_size": pl.Int64,
    "history_weeks": pl.Int64,
    "is_anomaly": pl.Boolean,
}


def _num(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.2f}"


def explain(row: dict[str, Any], spec: SeriesSpec) -> str:
    """One sentence from the row's own figures: what was seen, what was expected, by how much it departs."""
    who = "The organisation" if spec.scope == "org" else f"{spec.scope.capitalize()} {row['subject']}"
    n = f" (n = {row['sample_size']})" if spec.kind in ("rate", "level") else ""
    harmful = (row["direction"] == "above") == (spec.harmful == "above")
    verdict = "worse than usual" if harmful else "better than usual"
    return (
        f"{who}: {_num(row['observed'], spec.kind)} {spec.label} in the week of {row['week_start']}{n}, "
        f"{row['direction']} the expected range {_num(row['lower'], spec.kind)}–{_num(row['upper'], spec.kind)} "
        f"(median {_num(row['expected'], spec.kind)} of the previous {row['history_weeks']} weeks; "
        f"{abs(row['score']):.1f} robust standard deviations, {verdict})."
    )


def anomalies(evaluated: pl.DataFrame, specs: dict[str, SeriesSpec]) -> pl.DataFrame:
    """The flagged weeks, with their method, source and explanation (the `kpi.anomalies` rows)."""
    flagged = evaluated.filter(pl.col("is_anomaly")).drop("is_anomaly", "adverse")
    rows = []
    for row in flagged.to_dicts():
        spec = specs[row["series"]]
        rows.append({**row, "source": spec.source, "method": METHOD, "explanation": explain(row, spec)})
    kept = {k: v for k, v in EVALUATED_SCHEMA.items() if k not in ("is_anomaly", "adverse")}
    schema = {**kept, "source": pl.String, "method": pl.String, "explanation": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("week_start", "series", "subject")


def all_specs(metrics: dict[str, dict[str, Any]]) -> dict[str, SeriesSpec]:
    """Every series family: per service and feature, and organisation-wide (DORA and success metrics)."""
    return {**SUBJECT_SPECS, **kpi_specs(metrics)}


def complete_weeks(dora: pl.DataFrame) -> list[date]:
    """The complete ISO weeks the KPIs cover (kpi.dora's week rows), in order."""
    return sorted(dora.filter(pl.col("period_kind") == "week")["period_start"].to_list())


def subject_series(frames: dict[str, pl.DataFrame], weeks: list[date]) -> pl.DataFrame:
    """The per-service and per-feature series from mart-shaped frames (names as in `ANOMALY_INPUTS`)."""
    f = frames
    return pl.concat(
        [
            service_series(f["attempts"], f["deployments"], f["incidents"], f["test_cases"], f["builds"], weeks),
            feature_series(f["feature_usage"], weeks),
        ]
    )


ANOMALY_INPUTS = ("attempts", "deployments", "incidents", "test_cases", "builds", "feature_usage", "dora", "weekly")


def detect_all(
    frames: dict[str, pl.DataFrame], metrics: dict[str, dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every judged week, the flagged ones) over all series, from frames named as in `ANOMALY_INPUTS`."""
    series = pl.concat(
        [subject_series(frames, complete_weeks(frames["dora"])), kpi_series(frames["dora"], frames["weekly"])]
    )
    specs = all_specs(metrics)
    evaluated = evaluate(series, specs)
    return evaluated, anomalies(evaluated, specs)


# --- scoring against planted anomalies --------------------------------------------------------------

MATCH_DAYS = 14
"""A flag matches a planted anomaly on the same subject from its first week to two weeks later: the
planted events last one to two weeks and their consequences (rollbacks, incidents) trail them."""


def precision_recall(flags: pl.DataFrame, planted: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Precision and recall of subject-level flags against planted anomalies (kind, subject, week_start).

    Only service and feature flags are judged: the truth names anomalies of a service or a feature,
    so an organisation-wide flag has nothing it could match.
    """
    planted = [{**p, "week_start": _as_date(p["week_start"])} for p in planted]
    judged = flags.filter(pl.col("scope") != "org").to_dicts()

    def matches(flag: dict[str, Any], p: dict[str, Any]) -> bool:
        start = p["week_start"]
        return flag["subject"] == p["subject"] and start <= flag["week_start"] <= start + timedelta(days=MATCH_DAYS)

    true_flags = [f for f in judged if any(matches(f, p) for p in planted)]
    found = [p for p in planted if any(matches(f, p) for f in judged)]
    return {
        "flags": len(judged),
        "true_flags": len(true_flags),
        "planted": len(planted),
        "found": len(found),
        "precision": len(true_flags) / len(judged) if judged else None,
        "recall": len(found) / len(planted) if planted else None,
        "missed": [p for p in planted if p not in found],
        "false_flags": [f for f in judged if f not in true_flags],
    }


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
