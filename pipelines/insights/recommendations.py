"""Recommendations: the bottlenecks the marts show, each with the figures it rests on.

Four kinds, all over one window (the KPIs' current window, whole UTC days):

- `lead_time_bottleneck` — per service, the lead-time phase with the longest median: coding (first
  commit → PR opened), pickup (opened → first review), review (first review, or opening when nobody
  reviewed, → merge) and deploy (merge → the production deployment that shipped it).
- `failing_job` — the CI pipelines with the most failed builds (failure, unstable or aborted); Jenkins
  multibranch pull-request jobs (`…/PR-12`) count as one pipeline (`…/PR-*`).
- `failing_test` — the test cases with the most failed runs, and how many of those failures were
  flaky (the same commit also passed).
- `low_adoption` — released features whose complete 28-day adoption window stayed below the threshold.

Medians, not means: lead-time phases are heavy-tailed and one forgotten PR would dominate a mean.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import polars as pl

TOP = 5
"""Rows per kind for jobs and tests: enough to act on, few enough to read."""
MIN_BUILDS = 5
"""A pipeline with fewer builds in the window is not ranked: one red build is not a trend."""
MIN_CHANGES = 3
"""A service needs this many deployed changes for its phase medians to mean anything."""
PHASES = {
    "coding": "first commit → PR opened",
    "pickup": "PR opened → first review",
    "review": "first review (or opening, without review) → merge",
    "deploy": "merge → production deployment",
}
FAILED_BUILD = ["failure", "unstable", "aborted"]


def _in(column: str, start: date, end: date) -> pl.Expr:
    return pl.col(column).dt.date().is_between(start, end)


def _hours(later: str, earlier: str) -> pl.Expr:
    return (pl.col(later) - pl.col(earlier)).dt.total_seconds() / 3600


def lead_time_bottlenecks(changes: pl.DataFrame, pull_requests: pl.DataFrame, start: date, end: date) -> list[dict]:
    """Per service, the slowest lead-time phase over the changes deployed in the window."""
    prs = pull_requests.select("repo", "pr_number", "created_at", "first_review_at")
    deployed = (
        changes.filter(_in("deployed_at", start, end))
        .join(prs, on=["repo", "pr_number"], how="left")
        .with_columns(
            service=pl.col("repo").str.split("/").list.last(),
            coding=_hours("created_at", "first_commit_at").clip(lower_bound=0),
            pickup=_hours("first_review_at", "created_at").clip(lower_bound=0),
            review=(pl.col("merged_at") - pl.coalesce("first_review_at", "created_at")).dt.total_seconds() / 3600,
            deploy=_hours("deployed_at", "merged_at"),
        )
    )
    stats = (
        deployed.group_by("service")
        .agg(
            changes=pl.len(),
            lead_time=pl.col("lead_time_hours").median(),
            **{p: pl.col(p).median() for p in PHASES},
            reviewed=pl.col("first_review_at").is_not_null().sum(),
        )
        .filter(pl.col("changes") >= MIN_CHANGES)
        .sort("service")
    )
    rows = []
    for r in stats.to_dicts():
        medians = {p: r[p] for p in PHASES if r[p] is not None}
        if not medians or not r["lead_time"]:
            continue
        slowest = max(medians, key=lambda p: medians[p])
        share = medians[slowest] / r["lead_time"]
        others = ", ".join(f"{p} {v:.1f} h" for p, v in medians.items() if p != slowest)
        rows.append(
            {
                "kind": "lead_time_bottleneck",
                "subject": r["service"],
                "service": r["service"],
                "metric": f"{slowest}_hours_median",
                "value": medians[slowest],
                "reference_value": r["lead_time"],
                "unit": "hours",
                "sample_size": r["changes"],
                "recommendation": (
                    f"{r['service']}: changes spend longest in {slowest} ({PHASES[slowest]}) — median "
                    f"{medians[slowest]:.1f} h, {share * 100:.0f}% of the {r['lead_time']:.1f} h median lead time "
                    f"over {r['changes']} changes deployed {start} – {end}. Other phases: {others}. "
                    f"Shorten the {slowest} phase first."
                ),
                "evidence": {
                    "phase_medians_hours": medians,
                    "lead_time_hours_median": r["lead_time"],
                    "changes": r["changes"],
                    "reviewed_changes": r["reviewed"],
                },
            }
        )
    return sorted(rows, key=lambda x: -x["value"])


def failing_jobs(builds: pl.DataFrame, start: date, end: date, top: int = TOP) -> list[dict]:
    """The CI pipelines with the most failed builds finished in the window."""
    pipeline = (
        pl.when(pl.col("system") == "jenkins")
        .then(pl.col("job").str.replace(r"/PR-\d+$", "/PR-*"))
        .otherwise(pl.col("service") + pl.lit(" · ") + pl.col("job"))
    )
    stats = (
        builds.filter(pl.col("finished_at").is_not_null() & _in("finished_at", start, end))
        .with_columns(pipeline=pipeline)
        .group_by("pipeline", "service")
        .agg(
            builds=pl.len(),
            failed=pl.col("result").is_in(FAILED_BUILD).sum(),
            **{r: (pl.col("result") == r).sum() for r in FAILED_BUILD},
        )
        .filter((pl.col("builds") >= MIN_BUILDS) & (pl.col("failed") > 0))
        .with_columns(rate=pl.col("failed") / pl.col("builds"))
        .sort(["failed", "rate", "pipeline"], descending=[True, True, False])
        .head(top)
    )
    return [
        {
            "kind": "failing_job",
            "subject": r["pipeline"],
            "service": r["service"],
            "metric": "failed_builds",
            "value": float(r["failed"]),
            "reference_value": r["rate"],
            "unit": "builds",
            "sample_size": r["builds"],
            "recommendation": (
                f"{r['pipeline']} ({r['service']}): {r['failed']} of {r['builds']} builds failed "
                f"({r['rate'] * 100:.1f}%: {r['failure']} failure, {r['unstable']} unstable, {r['aborted']} aborted) "
                f"between {start} and {end}. Look at its most frequent failure first."
            ),
            "evidence": {k: r[k] for k in ("builds", "failed", "rate", *FAILED_BUILD)},
        }
        for r in stats.to_dicts()
    ]


def failing_tests(test_cases: pl.DataFrame, builds: pl.DataFrame, start: date, end: date, top: int = TOP) -> list[dict]:
    """The test cases with the most failed runs in builds started in the window."""
    runs = test_cases.join(builds.select("build_id", "started_at"), on="build_id", how="inner").filter(
        _in("started_at", start, end)
    )
    stats = (
        runs.group_by("service", "suite", "class_name", "test_name")
        .agg(
            runs=pl.len(),
            failed=(pl.col("status") == "failed").sum(),
            flaky_failures=((pl.col("status") == "failed") & pl.col("is_flaky")).sum(),
        )
        .filter(pl.col("failed") > 0)
        .with_columns(rate=pl.col("failed") / pl.col("runs"))
        .sort(["failed", "rate", "class_name"], descending=[True, True, False])
        .head(top)
    )
    rows = []
    for r in stats.to_dicts():
        flaky = r["flaky_failures"]
        advice = (
            "quarantine and fix the flakiness" if flaky * 2 >= r["failed"] else "fix the test or the code it guards"
        )
        rows.append(
            {
                "kind": "failing_test",
                "subject": r["class_name"],
                "service": r["service"],
                "metric": "failed_runs",
                "value": float(r["failed"]),
                "reference_value": r["rate"],
                "unit": "test runs",
                "sample_size": r["runs"],
                "recommendation": (
                    f"{r['class_name']} ({r['service']}): failed {r['failed']} of {r['runs']} runs "
                    f"({r['rate'] * 100:.1f}%) between {start} and {end}; {flaky} of those failures were flaky "
                    f"(the same commit also passed) — {advice}."
                ),
                "evidence": {k: r[k] for k in ("suite", "test_name", "runs", "failed", "flaky_failures", "rate")},
            }
        )
    return rows


def low_adoption(
    adoption: pl.DataFrame, features: pl.DataFrame, threshold: float, start: date, end: date
) -> list[dict]:
    """Features released in the window (or before it, adoption window ending in it) that stayed below the threshold."""
    low = (
        adoption.filter(pl.col("window_complete") & (pl.col("adopted").not_()) & (pl.col("window_end") >= start))
        .filter(pl.col("released_at").dt.date() <= end)
        .join(features.select("feature_key", "summary"), on="feature_key", how="left")
        .sort(["adoption_rate", "feature_key"])
    )
    return [
        {
            "kind": "low_adoption",
            "subject": r["feature_key"],
            "service": None,
            "metric": "adoption_rate",
            "value": r["adoption_rate"],
            "reference_value": threshold,
            "unit": "ratio",
            "sample_size": r["active_users"],
            "recommendation": (
                f"{r['feature_key']} ({r['summary']}): {r['feature_users']} of {r['active_users']} active users "
                f"({(r['adoption_rate'] or 0) * 100:.1f}%) used it in the 28 days after its "
                f"{r['released_at']:%Y-%m-%d} release ({r['window_start']} – {r['window_end']}), below the "
                f"{threshold * 100:.0f}% adoption threshold. Check discoverability and instrumentation "
                "before investing more."
            ),
            "evidence": {k: r[k] for k in ("feature_users", "active_users", "adoption_rate")} | {
                "threshold": threshold, "window_start": str(r["window_start"]), "window_end": str(r["window_end"])},
        }
        for r in low.to_dicts()
    ]  # fmt: skip


RECOMMENDATION_SCHEMA: dict[str, Any] = {
    "kind": pl.String, "rank": pl.Int64, "subject": pl.String, "service": pl.String, "metric": pl.String,
    "value": pl.Float64,
    "reference_value": pl.Float64, "unit": pl.String, "sample_size": pl.Int64, "period_start": pl.Date,
    "period_end": pl.Date, "recommendation": pl.String, "evidence": pl.String,
}  # fmt: skip


def recommendations(frames: dict[str, pl.DataFrame], start: date, end: date, threshold: float) -> pl.DataFrame:
    """`kpi.recommendations` from mart frames named `changes`, `pull_requests`, `builds`, `test_cases`,
    `adoption` and `features`, over the window `start`–`end`."""
    groups = [
        lead_time_bottlenecks(frames["changes"], frames["pull_requests"], start, end),
        failing_jobs(frames["builds"], start, end),
        failing_tests(frames["test_cases"], frames["builds"], start, end),
        low_adoption(frames["adoption"], frames["features"], threshold, start, end),
    ]
    rows = [
        {**row, "rank": rank, "period_start": start, "period_end": end, "evidence": json.dumps(row["evidence"],
                                                                                              default=str)}
        for group in groups
        for rank, row in enumerate(group, 1)
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA)
