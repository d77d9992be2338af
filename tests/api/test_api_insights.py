"""POST /performance/optimize, GET /kpis and GET /health, against the warehouse and the sandbox's truth."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import duckdb
import polars as pl
import pytest
from fastapi.testclient import TestClient

from pipelines.api import API_PREFIX, ApiSettings, create_app


def url(path: str) -> str:
    return API_PREFIX + path


def phases(wh: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Lead time phases per deployed change, computed in polars from the two marts."""
    changes = wh.sql("SELECT * FROM deployment.changes").pl()
    prs = wh.sql("SELECT repo, pr_number, created_at FROM development.pull_requests").pl()
    hours = 3_600_000_000  # microseconds
    return changes.join(prs, on=["repo", "pr_number"]).select(
        service=pl.col("repo").str.split("/").list.last(),
        day=pl.col("deployed_at").dt.date(),
        coding=((pl.col("created_at") - pl.col("first_commit_at")).dt.total_microseconds() / hours).clip(0),
        review=((pl.col("merged_at") - pl.col("created_at")).dt.total_microseconds() / hours).clip(0),
        waiting=((pl.col("deployed_at") - pl.col("merged_at")).dt.total_microseconds() / hours).clip(0),
    )


def test_lead_time_phases_per_service(client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection) -> None:
    body = client.post(url("/performance/optimize"), headers=auth, json={}).json()
    expected = (
        phases(wh)
        .group_by("service")
        .agg(
            n=pl.len(),
            coding=pl.col("coding").median(),
            review=pl.col("review").median(),
            waiting=pl.col("waiting").median(),
        )
    )
    assert {s["service"] for s in body["lead_time_by_service"]} == set(expected["service"])
    for row in expected.to_dicts():
        got = next(s for s in body["lead_time_by_service"] if s["service"] == row["service"])
        assert got["changes"] == row["n"]
        medians = {"coding": row["coding"], "review": row["review"], "waiting_for_deployment": row["waiting"]}
        for phase, value in medians.items():
            assert got[phase]["median_hours"] == pytest.approx(value, abs=1e-3), (row["service"], phase)
        assert got["slowest_phase"] == max(medians, key=medians.__getitem__)
        shares = [got[p]["share_of_lead_time"] for p in medians]
        assert sum(shares) == pytest.approx(1.0)
    medians = [s["lead_time_hours_median"] for s in body["lead_time_by_service"]]
    assert medians == sorted(medians, reverse=True)
    kinds = [b["kind"] for b in body["bottlenecks"]]
    assert kinds.count("lead_time_phase") == 3
    worst = max(body["lead_time_by_service"], key=lambda s: s[s["slowest_phase"]]["median_hours"])
    assert body["bottlenecks"][0]["subject"] == worst["service"]


def test_failing_jobs_match_the_truth(client: TestClient, auth: dict[str, str], truth: dict[str, pl.DataFrame]) -> None:
    body = client.post(url("/performance/optimize"), headers=auth, json={"top": 50}).json()
    expected = (
        truth["builds"]
        .group_by("system", "service", "job")
        .agg(builds=pl.len(), failures=pl.col("result").is_in(["FAILURE", "UNSTABLE"]).sum())
        .filter(pl.col("failures") > 0)
    )
    got = {(j["system"], j["service"], j["job"]): (j["builds"], j["failures"]) for j in body["failing_jobs"]}
    want = {(r["system"], r["service"], r["job"]): (r["builds"], r["failures"]) for r in expected.to_dicts()}
    assert len(want) <= 50  # so "top 50" is all of them
    assert got == want
    failures = [j["failures"] for j in body["failing_jobs"]]
    assert failures == sorted(failures, reverse=True)


def test_flaky_tests_match_the_truth(client: TestClient, auth: dict[str, str], truth: dict[str, pl.DataFrame]) -> None:
    body = client.post(url("/performance/optimize"), headers=auth, json={"top": 50}).json()
    runs = truth["test_cases"].join(truth["builds"].select("build_id", "sha", "service"), on="build_id")
    per_commit = runs.group_by("service", "class_name", "name", "sha").agg(
        flaky=(pl.col("status") == "FAILED").any() & (pl.col("status") == "PASSED").any()
    )
    expected = (
        per_commit.group_by("service", "class_name", "name")
        .agg(flaky_commits=pl.col("flaky").sum(), commits=pl.len())
        .filter(pl.col("flaky_commits") > 0)
    )
    want = {(r["service"], r["class_name"], r["name"]): (r["flaky_commits"], r["commits"]) for r in expected.to_dicts()}
    got = {
        (t["service"], t["class_name"], t["test_name"]): (t["flaky_commits"], t["commits"]) for t in body["flaky_tests"]
    }
    assert want  # the world has flaky tests
    assert got == want
    top = client.post(url("/performance/optimize"), headers=auth, json={"top": 1}).json()
    assert len(top["flaky_tests"]) == 1 and len(top["failing_jobs"]) == 1
    assert top["flaky_tests"][0]["flaky_commits"] == max(v[0] for v in want.values())


def test_a_window_narrows_every_figure(client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection) -> None:
    since, until = date(2026, 8, 1), date(2026, 9, 30)
    body = client.post(
        url("/performance/optimize"), headers=auth, json={"since": since.isoformat(), "until": until.isoformat()}
    ).json()
    everything = client.post(url("/performance/optimize"), headers=auth, json={}).json()
    inside = phases(wh).filter(pl.col("day").is_between(since, until))
    assert sum(s["changes"] for s in body["lead_time_by_service"]) == inside.height
    assert 0 < inside.height < sum(s["changes"] for s in everything["lead_time_by_service"])
    builds = wh.execute(
        "SELECT count(*) FROM quality.builds WHERE result IN ('failure', 'unstable') "
        "AND CAST(started_at AS DATE) BETWEEN ? AND ?",
        [since, until],
    ).fetchall()[0][0]
    assert sum(j["failures"] for j in body["failing_jobs"]) <= builds
    assert body["since"] == since.isoformat() and body["until"] == until.isoformat()


@pytest.mark.parametrize(
    "body",
    [{"top": 0}, {"top": 51}, {"top": "five"}, {"since": "2026-09-01", "until": "2026-08-01"}, {"window": 7}],
)
def test_invalid_optimize_requests_are_422(client: TestClient, auth: dict[str, str], body: dict[str, object]) -> None:
    answer = client.post(url("/performance/optimize"), headers=auth, json=body)
    assert answer.status_code == 422, answer.text


def test_kpis_are_the_kpi_tables(client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection) -> None:
    body = client.get(url("/kpis"), headers=auth).json()
    success = wh.sql("SELECT * FROM kpi.success_metrics ORDER BY metric").pl().to_dicts()
    assert [m["metric"] for m in body["success_metrics"]] == [r["metric"] for r in success]
    for got, row in zip(body["success_metrics"], success, strict=True):
        assert got["current_value"] == pytest.approx(row["current_value"])
        assert got["baseline_value"] == pytest.approx(row["baseline_value"])
        assert got["met"] == row["met"]
    dora = {r["period_kind"]: r for r in wh.sql("SELECT * FROM kpi.dora WHERE period_kind <> 'week'").pl().to_dicts()}
    for kind in ("baseline", "current"):
        assert body["dora"][kind]["deployments"] == dora[kind]["deployments"]
        assert body["dora"][kind]["period_start"] == dora[kind]["period_start"].isoformat()
        assert body["dora"][kind]["lead_time_hours_median"] == pytest.approx(dora[kind]["lead_time_hours_median"])
        assert body["dora"][kind]["performance_tier"] == dora[kind]["performance_tier"]


def test_health_reports_freshness(
    client: TestClient, api_settings: ApiSettings, wh: duckdb.DuckDBPyConnection, truth: dict[str, pl.DataFrame]
) -> None:
    body = client.get(url("/health")).json()
    published_at = datetime.fromtimestamp(api_settings.published.stat().st_mtime, UTC)
    assert body["status"] == "ok"
    assert abs((datetime.fromisoformat(body["published_at"]) - published_at).total_seconds()) < 0.001
    assert 0 <= body["age_hours"] < 2
    latest_event = wh.execute("SELECT max(occurred_at) FROM staging.stg_mixpanel__events").fetchall()[0][0]
    assert datetime.fromisoformat(body["latest_by_source"]["mixpanel"]) == latest_event
    assert datetime.fromisoformat(body["latest_data_at"]) == max(
        datetime.fromisoformat(v) for v in body["latest_by_source"].values() if v
    )
    world_end = truth["programme"]["world_end"][0]
    assert datetime.fromisoformat(body["latest_data_at"]).date() < world_end  # data stops where the world does
    assert body["warehouse"] == api_settings.published.name


def test_health_says_stale_past_the_limit(api_settings: ApiSettings) -> None:
    with TestClient(create_app(replace(api_settings, stale_after_hours=0.0))) as api:
        body = api.get(url("/health")).json()
    assert body["status"] == "stale"
    assert body["age_hours"] > 0
