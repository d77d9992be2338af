"""GET /development/{feature_id} and /analytics/{feature_id}: against the sandbox's truth and the warehouse."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import polars as pl
import pytest
from fastapi.testclient import TestClient

from pipelines.api import API_PREFIX

TRUTH_STATUS = {"To Do": "todo", "In Progress": "in_progress", "In Review": "in_progress", "Done": "done"}


def url(path: str) -> str:
    return API_PREFIX + path


@pytest.fixture(scope="module")
def features(wh: duckdb.DuckDBPyConnection) -> list[str]:
    keys = [r[0] for r in wh.execute("SELECT feature_key FROM development.features ORDER BY 1").fetchall()]
    assert len(keys) >= 10
    return keys


def test_development_counts_match_the_truth(
    client: TestClient, auth: dict[str, str], features: list[str], truth: dict[str, pl.DataFrame]
) -> None:
    issues = truth["issues"].filter(pl.col("epic_key").is_not_null())
    prs = truth["pull_requests"].join(
        truth["issues"].select(issue_key="key", feature="epic_key"), on="issue_key", how="inner"
    )
    released = {r["epic_key"]: r for r in truth["features"].to_dicts()}
    for key in features:
        body = client.get(url(f"/development/{key}"), headers=auth).json()
        mine = issues.filter(pl.col("epic_key") == key)
        expected_status = {s: 0 for s in ("todo", "in_progress", "done")}
        for status in mine["status"]:
            expected_status[TRUTH_STATUS[status]] += 1
        assert body["feature"]["feature_id"] == key
        assert body["issues"]["by_status"] == expected_status, key
        assert body["issues"]["total"] == mine.height
        assert body["issues"]["by_type"] == dict(mine.group_by("type").len().iter_rows())
        feature_prs = prs.filter(pl.col("feature") == key)
        assert body["pull_requests"]["total"] == feature_prs.height, key
        assert body["pull_requests"]["by_state"]["merged"] == feature_prs["merged_at"].is_not_null().sum()
        assert body["pull_requests"]["deployed"] == feature_prs["first_deployment_id"].is_not_null().sum()
        assert body["quality"]["bugs"] == mine.filter(pl.col("type") == "Bug").height
        assert body["quality"]["escaped_bugs"] == mine.filter(pl.col("escaped").fill_null(False)).height
        truth_feature = released[key]
        if truth_feature["first_released_at"] is None:
            assert body["delivery"]["first_released_at"] is None
            assert body["delivery"]["time_to_market_days"] is None
        else:
            days = (truth_feature["first_released_at"] - truth_feature["created_at"]) / timedelta(days=1)
            assert body["delivery"]["time_to_market_days"] == pytest.approx(days, abs=1e-6)


def test_development_times_and_flaky_tests_match_an_independent_computation(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection, features: list[str]
) -> None:
    issues = wh.sql("SELECT epic_key, cycle_time_hours, lead_time_hours FROM development.issues").pl()
    prs = wh.sql("SELECT repo, pr_number, feature_key FROM development.pull_requests").pl()
    stg = wh.sql("SELECT repo, pr_number, head_sha, merge_sha FROM staging.stg_github__pull_requests").pl()
    commits = wh.sql("SELECT repo, pr_number, sha FROM staging.stg_github__pull_request_commits").pl()
    tests = wh.sql("SELECT * FROM quality.test_cases").pl()
    flaky_seen = 0
    for key in features:
        body = client.get(url(f"/development/{key}"), headers=auth).json()
        cycle = issues.filter(pl.col("epic_key") == key)["cycle_time_hours"].drop_nulls()
        assert body["cycle_time_hours"]["sample"] == cycle.len()
        if cycle.len():
            assert body["cycle_time_hours"]["median"] == pytest.approx(cycle.median())
            assert body["cycle_time_hours"]["p90"] == pytest.approx(cycle.quantile(0.9, interpolation="linear"))
        mine = prs.filter(pl.col("feature_key") == key).select("repo", "pr_number")
        shas = set(commits.join(mine, on=["repo", "pr_number"])["sha"])
        heads = stg.join(mine, on=["repo", "pr_number"])
        shas |= set(heads["head_sha"].drop_nulls()) | set(heads["merge_sha"].drop_nulls())
        runs = tests.filter(pl.col("sha").is_in(list(shas)))
        assert body["quality"]["test_runs"] == runs.height
        assert body["quality"]["failed_test_runs"] == runs.filter(pl.col("status") == "failed").height
        # flaky on a commit = failed and passed on that same commit (recomputed here from statuses)
        per_commit = runs.group_by("suite", "class_name", "test_name", "sha").agg(
            flaky=(pl.col("status") == "failed").any() & (pl.col("status") == "passed").any()
        )
        expected = {
            (r["class_name"], r["test_name"]): r["flaky"]
            for r in per_commit.group_by("class_name", "test_name").agg(flaky=pl.col("flaky").sum()).to_dicts()
            if r["flaky"]
        }
        got = {(t["class_name"], t["test_name"]): t["flaky_commits"] for t in body["quality"]["flaky_tests"]}
        assert got == expected, key
        flaky_seen += len(got)
    assert flaky_seen > 0  # the world has flaky tests on feature commits, so the check above was not vacuous


def test_analytics_match_the_truth(
    client: TestClient, auth: dict[str, str], features: list[str], truth: dict[str, pl.DataFrame]
) -> None:
    events = truth["events_daily"]
    tracked_total = int(events.filter(pl.col("feature_key").is_not_null())["events"].sum())
    last_day = events["day"].max()
    for key in features:
        body = client.get(url(f"/analytics/{key}"), headers=auth).json()
        mine = events.filter(pl.col("feature_key") == key)
        assert body["data_through"] == last_day.isoformat()
        assert body["usage"]["events"] == int(mine["events"].sum()), key
        assert body["share_of_tracked_events"]["all_time"] == pytest.approx(mine["events"].sum() / tracked_total)
        recent = mine.filter(pl.col("day") > last_day - timedelta(days=28))
        assert body["usage"]["events_last_28_days"] == int(recent["events"].sum())
        weeks = body["trend"]["weeks"]
        assert len(weeks) == 12
        for week in weeks:
            start = pl.Series([week["week_start"]]).str.to_date()[0]
            assert start.weekday() == 0
            in_week = mine.filter(pl.col("day").is_between(start, start + timedelta(days=6)))
            assert week["events"] == int(in_week["events"].sum()), (key, start)
        sunday = pl.Series([weeks[-1]["week_start"]]).str.to_date()[0] + timedelta(days=6)
        assert sunday <= last_day < sunday + timedelta(days=7)  # the last complete week
        trend = body["trend"]
        assert trend["last_4_weeks_events"] == sum(w["events"] for w in weeks[-4:])
        assert trend["previous_4_weeks_events"] == sum(w["events"] for w in weeks[-8:-4])
        change = trend["change_pct"]
        if change is None:  # nothing in the previous 4 weeks
            assert trend["direction"] == ("rising" if trend["last_4_weeks_events"] else "no_data")
        else:
            assert trend["direction"] == ("rising" if change > 10 else "falling" if change < -10 else "flat")


def test_analytics_adoption_is_the_mart_row(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection, features: list[str]
) -> None:
    adoption = {r["feature_key"]: r for r in wh.sql("SELECT * FROM usage.feature_adoption").pl().to_dicts()}
    assert adoption  # some features are released
    for key in features:
        body = client.get(url(f"/analytics/{key}"), headers=auth).json()
        if key not in adoption:
            assert body["adoption"] is None
            assert body["usage"]["users_since_release"] is None
            continue
        row = adoption[key]
        assert body["adoption"]["feature_users"] == row["feature_users"]
        assert body["adoption"]["active_users"] == row["active_users"]
        assert body["adoption"]["adopted"] == row["adopted"]
        assert body["usage"]["users_since_release"] <= body["usage"]["users"]


def test_trend_length_follows_the_weeks_parameter(client: TestClient, auth: dict[str, str]) -> None:
    short = client.get(url("/analytics/PAY-3?weeks=3"), headers=auth).json()
    long = client.get(url("/analytics/PAY-3?weeks=30"), headers=auth).json()
    assert len(short["trend"]["weeks"]) == 3
    assert len(long["trend"]["weeks"]) == 30
    assert long["trend"]["weeks"][-3:] == short["trend"]["weeks"]


@pytest.mark.parametrize("endpoint", ["development", "analytics"])
def test_unknown_features_are_404(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection, endpoint: str
) -> None:
    story = wh.execute("SELECT issue_key FROM development.issues WHERE issue_type = 'Story' LIMIT 1").fetchall()[0][0]
    for key in ("ZZZ-1", "PAY-99999", story):  # no such project, no such issue, an issue that is not an epic
        answer = client.get(url(f"/{endpoint}/{key}"), headers=auth)
        assert answer.status_code == 404, key
        assert key in answer.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/development/pay-3",
        "/development/PAY3",
        "/development/PAY-0",
        "/development/P-3",
        "/development/PAY-3%27%20OR%20%271%27=%271",
        "/development/PAY-3;DROP TABLE x",
        "/analytics/PAY-3?weeks=0",
        "/analytics/PAY-3?weeks=105",
        "/analytics/PAY-3?weeks=many",
    ],
)
def test_malformed_input_is_422_with_the_field(client: TestClient, auth: dict[str, str], path: str) -> None:
    answer = client.get(url(path), headers=auth)
    assert answer.status_code == 422, answer.text
    assert [error["loc"][-1] for error in answer.json()["detail"]] in (["feature_id"], ["weeks"])
