"""Recommendations: each one recomputed independently in SQL from the marts, and its figures present."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from pipelines.insights.recommendations import PHASES, lead_time_bottlenecks


@pytest.fixture(scope="module")
def stored(warehouse_con) -> pl.DataFrame:
    return warehouse_con.sql("SELECT * FROM kpi.recommendations").pl()


@pytest.fixture(scope="module")
def window(warehouse_con) -> tuple[date, date]:
    return warehouse_con.execute(
        "SELECT period_start, period_end FROM kpi.dora WHERE period_kind = 'current'"
    ).fetchone()


def test_every_recommendation_carries_its_figures(stored: pl.DataFrame) -> None:
    assert set(stored["kind"]) >= {"lead_time_bottleneck", "failing_job", "low_adoption"}
    for row in stored.to_dicts():
        evidence = json.loads(row["evidence"])
        assert evidence and row["value"] is not None and row["sample_size"] is not None
        number = f"{row['value'] * 100:.1f}%" if row["unit"] == "ratio" else None
        if row["kind"] in ("failing_job", "failing_test"):
            number = f"{int(row['value'])} of {row['sample_size']}"
        elif row["kind"] == "lead_time_bottleneck":
            number = f"{row['value']:.1f} h"
        assert number in row["recommendation"], (number, row["recommendation"])


def test_slowest_phase_per_service_matches_sql(stored: pl.DataFrame, warehouse_con, window) -> None:
    start, end = window
    expected = warehouse_con.execute(
        """
        WITH c AS (
            SELECT split_part(c.repo, '/', 2) AS service, c.lead_time_hours,
                   greatest(epoch(p.created_at - c.first_commit_at), 0) / 3600 AS coding,
                   greatest(epoch(p.first_review_at - p.created_at), 0) / 3600 AS pickup,
                   epoch(c.merged_at - coalesce(p.first_review_at, p.created_at)) / 3600 AS review,
                   epoch(c.deployed_at - c.merged_at) / 3600 AS deploy
            FROM deployment.changes c JOIN development.pull_requests p USING (repo, pr_number)
            WHERE CAST(c.deployed_at AS DATE) BETWEEN ? AND ?
        )
        SELECT service, count(*) AS n, median(coding), median(pickup), median(review), median(deploy)
        FROM c GROUP BY service HAVING count(*) >= 3
        """,
        [start, end],
    ).fetchall()
    ours = {r["subject"]: r for r in stored.filter(pl.col("kind") == "lead_time_bottleneck").to_dicts()}
    assert len(ours) == len(expected) > 0
    for service, n, *medians in expected:
        phases = {p: m for p, m in zip(PHASES, medians, strict=True) if m is not None}
        slowest = max(phases, key=lambda p: phases[p])
        assert ours[service]["metric"] == f"{slowest}_hours_median"
        assert ours[service]["value"] == pytest.approx(phases[slowest])
        assert ours[service]["sample_size"] == n


def test_most_failing_tests_and_jobs_match_sql(stored: pl.DataFrame, warehouse_con, window) -> None:
    start, end = window
    tests = warehouse_con.execute(
        """
        SELECT t.class_name, count(*) FILTER (WHERE t.status = 'failed') AS failed, count(*) AS runs
        FROM quality.test_cases t JOIN quality.builds b USING (build_id)
        WHERE CAST(b.started_at AS DATE) BETWEEN ? AND ?
        GROUP BY ALL HAVING failed > 0 ORDER BY failed DESC, failed / runs DESC, class_name LIMIT 5
        """,
        [start, end],
    ).fetchall()
    ours = stored.filter(pl.col("kind") == "failing_test").sort("rank")
    assert [(r["subject"], int(r["value"]), r["sample_size"]) for r in ours.to_dicts()] == tests
    failed_builds = warehouse_con.execute(
        """SELECT count(*) FROM quality.builds WHERE result IN ('failure', 'unstable', 'aborted')
           AND CAST(finished_at AS DATE) BETWEEN ? AND ?""",
        [start, end],
    ).fetchone()[0]
    jobs = stored.filter(pl.col("kind") == "failing_job")
    assert 0 < jobs["value"].sum() <= failed_builds
    assert jobs["value"].to_list() == sorted(jobs["value"].to_list(), reverse=True)


def test_each_recommendation_names_the_service_its_subject_belongs_to(stored: pl.DataFrame, warehouse_con) -> None:
    # Worked out from the marts, not from the recommender: a test class's and a pipeline's builds' service.
    by_class = dict(
        warehouse_con.execute(
            "SELECT t.class_name, min(b.service) FROM quality.test_cases t JOIN quality.builds b USING (build_id) "
            "GROUP BY t.class_name HAVING count(DISTINCT b.service) = 1"
        ).fetchall()
    )
    services = {r[0] for r in warehouse_con.execute("SELECT DISTINCT service FROM quality.builds").fetchall()}
    for row in stored.to_dicts():
        if row["kind"] == "lead_time_bottleneck":
            assert row["service"] == row["subject"]
        elif row["kind"] == "failing_test":
            assert row["service"] == by_class.get(row["subject"], row["service"]) and row["service"] in services
        elif row["kind"] == "failing_job":
            assert row["service"] in services and row["service"] in row["subject"]  # e.g. ci/<service>/main
        else:
            assert row["service"] is None  # features belong to no service
    assert set(stored["kind"]) >= {"lead_time_bottleneck", "failing_test", "failing_job", "low_adoption"}


def test_low_adoption_features_match_the_adoption_mart(stored: pl.DataFrame, warehouse_con, window) -> None:
    start, end = window
    expected = {
        k
        for (k,) in warehouse_con.execute(
            """SELECT feature_key FROM usage.feature_adoption WHERE window_complete AND NOT adopted
               AND window_end >= ? AND CAST(released_at AS DATE) <= ?""",
            [start, end],
        ).fetchall()
    }
    assert set(stored.filter(pl.col("kind") == "low_adoption")["subject"]) == expected


def test_the_review_phase_is_named_when_it_dominates() -> None:
    t0 = datetime(2026, 9, 1, 9, tzinfo=UTC)
    changes, prs = [], []
    for k in range(4):
        first = t0 + timedelta(days=k)
        opened, reviewed = first + timedelta(hours=2), first + timedelta(hours=3)
        merged, deployed = reviewed + timedelta(hours=40), reviewed + timedelta(hours=41)
        changes.append({"repo": "acme/api", "pr_number": k, "first_commit_at": first, "merged_at": merged,
                        "deployed_at": deployed, "lead_time_hours": 44.0})  # fmt: skip
        prs.append({"repo": "acme/api", "pr_number": k, "created_at": opened, "first_review_at": reviewed})
    rows = lead_time_bottlenecks(pl.DataFrame(changes), pl.DataFrame(prs), date(2026, 9, 1), date(2026, 9, 30))
    assert [(r["subject"], r["metric"], r["value"]) for r in rows] == [("api", "review_hours_median", 40.0)]
    assert "91% of the 44.0 h median lead time over 4 changes" in rows[0]["recommendation"]
