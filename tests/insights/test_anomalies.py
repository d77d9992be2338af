"""Anomaly detection: the rule on hand-made series, and precision/recall against the sandbox's planted anomalies."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from pipelines.insights import anomalies as A
from pipelines.kpis.compute import KpiConfig
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.world import World, WorldConfig

MONDAY = date(2026, 1, 5)


def series(values: list[float | None], samples: list[int] | None = None, family: str = "service.test_failures",
           subject: str = "svc") -> pl.DataFrame:  # fmt: skip
    n = len(values)
    return pl.DataFrame(
        {
            "family": [family] * n,
            "subject": [subject] * n,
            "week_start": [MONDAY + timedelta(days=7 * k) for k in range(n)],
            "value": values,
            "sample_size": samples or [100] * n,
        },
        schema=A.SERIES_SCHEMA,
    )


def flagged_weeks(frame: pl.DataFrame) -> list[int]:
    flags = A.anomalies(A.evaluate(frame, A.SUBJECT_SPECS), A.SUBJECT_SPECS)
    return [(d - MONDAY).days // 7 for d in flags["week_start"].to_list()]


def test_a_burst_is_flagged_and_poisson_noise_is_not() -> None:
    rng = np.random.default_rng(7)
    values = [float(v) for v in rng.poisson(2.0, 40)]
    assert flagged_weeks(series(values)) == [], "ordinary Poisson weeks are not anomalies"
    values[30] = 14.0
    assert flagged_weeks(series(values)) == [30]


def test_a_two_week_outbreak_does_not_hide_itself() -> None:
    """The second week's baseline contains the first abnormal week; the median must shrug it off."""
    values = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 9.0, 11.0, 0.0, 1.0]
    assert flagged_weeks(series(values)) == [9, 10]


def test_only_the_harmful_direction_is_flagged() -> None:
    usage = [400.0, 390.0, 405.0, 398.0, 402.0, 395.0, 140.0, 900.0]
    frame = series(usage, family="feature.user_days", subject="PAY-1")
    assert flagged_weeks(frame) == [6], "a drop in usage is flagged, a jump is not"
    evaluated = A.evaluate(frame, A.SUBJECT_SPECS)
    jump = evaluated.filter(pl.col("observed") == 900.0).row(0, named=True)
    assert jump["score"] > A.THRESHOLD and not jump["is_anomaly"] and not jump["adverse"]


def test_weeks_without_a_sample_are_skipped_not_read_as_zero() -> None:
    values = [3.0, 2.0, None, None, 3.0, 2.0, 4.0, 3.0, 2.0, 3.0]
    samples = [50, 40, 0, 0, 45, 50, 60, 50, 40, 45]
    evaluated = A.evaluate(series(values, samples), A.SUBJECT_SPECS)
    assert evaluated.height == len(values) - 2 - A.MIN_HISTORY
    assert evaluated["history_weeks"].max() <= A.WINDOW_WEEKS


def test_every_flag_explains_itself_with_its_own_numbers() -> None:
    values = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 9.0]
    flags = A.anomalies(A.evaluate(series(values), A.SUBJECT_SPECS), A.SUBJECT_SPECS)
    row = flags.row(0, named=True)
    assert row["observed"] == 9.0 and row["observed"] > row["upper"]
    for figure in ("9 failed test runs", f"{row['upper']:.2f}", "2026-03-09", f"{row['score']:.1f}"):
        assert figure in row["explanation"], figure


def _report(label: str, result: dict) -> None:
    print(
        f"\n{label}: precision {result['precision']} ({result['true_flags']}/{result['flags']} flags), "
        f"recall {result['recall']} ({result['found']}/{result['planted']} planted); missed: "
        f"{[(m['kind'], m['subject'], str(m['week_start'])) for m in result['missed']]}"
    )


def _detect(frames: dict[str, pl.DataFrame], weeks: list[date]) -> pl.DataFrame:
    return A.anomalies(A.evaluate(A.subject_series(frames, weeks), A.SUBJECT_SPECS), A.SUBJECT_SPECS)


VISIBLE_WORLD = WorldConfig(seed=11, scale=1.0)
"""A world in which all three planted anomalies leave a trace in the data (asserted below): at seed 42
the bad-release week has almost no deployments and the flaky-test outbreak almost no builds, so
there is nothing to detect (see the session-world test)."""


def test_planted_anomalies_are_found_where_the_data_shows_them(truth_subject_frames) -> None:
    world = generate_world(VISIBLE_WORLD)
    frames, weeks, planted = truth_subject_frames(world)
    by_kind = {p["kind"]: p for p in planted}
    assert set(by_kind) == {"bad_release_week", "flaky_test_outbreak", "adoption_drop"}
    # The world really shows each anomaly (otherwise recall would measure the sandbox, not the detector).
    bad = by_kind["bad_release_week"]
    week = date.fromisoformat(bad["week_start"])
    failed = frames["attempts"].filter(
        (pl.col("service") == bad["subject"]) & (pl.col("environment") == "production")
        & (pl.col("outcome") == "failure") & pl.col("finished_at").dt.date().is_between(week, week + timedelta(days=6))
    )  # fmt: skip
    assert failed.height >= 4
    outbreak = by_kind["flaky_test_outbreak"]
    start = date.fromisoformat(outbreak["week_start"])
    runs = (
        frames["test_cases"]
        .join(frames["builds"], on="build_id")
        .filter(
            (pl.col("service") == outbreak["subject"])
            & pl.col("started_at").dt.date().is_between(start, start + timedelta(days=13))
        )
    )
    assert runs.filter(pl.col("status") == "failed").height >= 4

    flags = _detect(frames, weeks)
    result = A.precision_recall(flags, planted)
    _report(f"seed {VISIBLE_WORLD.seed}, scale {VISIBLE_WORLD.scale}", result)
    assert result["recall"] == 1.0, result["missed"]
    assert result["precision"] >= 0.5, result["false_flags"]


def _subject_series_from_warehouse(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    from pipelines.assets.insights import ANOMALY_QUERIES

    frames = {name: con.sql(query).pl() for name, query in ANOMALY_QUERIES.items()}
    return A.subject_series(frames, A.complete_weeks(frames["dora"]))


def test_the_warehouse_series_equal_the_truth_series(warehouse_con, world: World, truth_subject_frames) -> None:
    """So precision and recall measured on truth-built series hold for the pipeline's own series."""
    ours = _subject_series_from_warehouse(warehouse_con)
    frames, _, _ = truth_subject_frames(world)
    weeks = A.complete_weeks(warehouse_con.sql("SELECT * FROM kpi.dora").pl())
    truth = A.subject_series(frames, weeks)
    key = ["family", "subject", "week_start"]
    assert ours.height > 500
    diff = ours.join(truth, on=key, how="full", coalesce=True).filter(
        (pl.col("value").fill_null(-1) != pl.col("value_right").fill_null(-1))
        | (pl.col("sample_size").fill_null(-1) != pl.col("sample_size_right").fill_null(-1))
    )
    assert diff.height == 0, diff.head(10)


def test_the_session_world_anomalies_against_the_truth(warehouse_con, world: World) -> None:
    flags = warehouse_con.sql("SELECT * FROM kpi.anomalies").pl()
    result = A.precision_recall(flags, world.planted_anomalies)
    _report("session world (seed 42, scale 0.2), from kpi.anomalies", result)
    assert "adoption_drop" not in {m["kind"] for m in result["missed"]}
    assert result["precision"] >= 0.5, result["false_flags"]
    assert flags.filter(pl.col("scope") == "org").height == flags.height - result["flags"]


@pytest.mark.slow
def test_precision_and_recall_over_twelve_worlds(truth_subject_frames) -> None:
    """The honest average: seeds 1–12 at scale 1, including worlds where a planted event left no trace."""
    planted, found = Counter(), Counter()
    flags = true_flags = 0
    for seed in range(1, 13):
        frames, weeks, anomalies = truth_subject_frames(generate_world(WorldConfig(seed=seed, scale=1.0)))
        result = A.precision_recall(_detect(frames, weeks), anomalies)
        missed = {m["kind"] for m in result["missed"]}
        for p in anomalies:
            planted[p["kind"]] += 1
            found[p["kind"]] += p["kind"] not in missed
        flags += result["flags"]
        true_flags += result["true_flags"]
    print(f"\n12 worlds: precision {true_flags}/{flags} = {true_flags / flags:.2f}; recall by kind "
          + ", ".join(f"{k} {found[k]}/{planted[k]}" for k in sorted(planted)))  # fmt: skip
    assert true_flags / flags >= 0.5
    assert found["adoption_drop"] >= 0.9 * planted["adoption_drop"]
    assert sum(found.values()) >= 0.5 * sum(planted.values())


def test_kpi_series_cover_every_weekly_metric(warehouse_con) -> None:
    specs = A.all_specs(KpiConfig.load().metrics)
    kpi = A.kpi_series(warehouse_con.sql("SELECT * FROM kpi.dora").pl(),
                       warehouse_con.sql("SELECT * FROM kpi.weekly_metrics").pl())  # fmt: skip
    families = set(kpi["family"].unique())
    assert families <= set(specs)
    weekly = warehouse_con.sql("SELECT DISTINCT metric FROM kpi.weekly_metrics WHERE value IS NOT NULL").fetchall()
    assert len(weekly) >= 7 and {f"weekly.{m}" for (m,) in weekly} <= families
    assert {f"dora.{c}" for c in A.DORA_SPECS} <= families
