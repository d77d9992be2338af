"""The SQL behind each endpoint: fixed statements, every value from the request bound as a parameter.

Every function takes a cursor on a read-only snapshot (`pipelines/api/db.py`) whose default
database is the published warehouse; release annotations are in the attached `annotations` database.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from pipelines.api import schemas as s

Cursor = duckdb.DuckDBPyConnection


def _rows(cur: Cursor, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = cur.execute(sql, params or [])
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _one(cur: Cursor, sql: str, params: list[Any] | None = None) -> dict[str, Any] | None:
    rows = _rows(cur, sql, params)
    return rows[0] if rows else None


def _distribution(values: dict[str, Any], prefix: str) -> s.Distribution:
    quantiles = values[f"{prefix}_q"] or [None, None, None]
    return s.Distribution(sample=values[f"{prefix}_n"], median=quantiles[0], p75=quantiles[1], p90=quantiles[2])


def _dist_sql(column: str, alias: str) -> str:
    """count and the 50/75/90th percentiles (linear interpolation, as the KPIs use) of one column."""
    return f"count({column}) AS {alias}_n, quantile_cont({column}, [0.5, 0.75, 0.9]) AS {alias}_q"


# --- features -------------------------------------------------------------------------------------

FEATURE_SQL = """
SELECT feature_key, project_key, summary, status, created_at, first_deployed_at, first_released_at,
       release_deployment_id, time_to_market_days
FROM development.features
WHERE feature_key = ?
"""


def feature(cur: Cursor, feature_id: str) -> dict[str, Any] | None:
    """The epic's row in development.features, or None when there is no such feature."""
    return _one(cur, FEATURE_SQL, [feature_id])


def _feature_model(row: dict[str, Any]) -> s.Feature:
    return s.Feature(
        feature_id=row["feature_key"],
        project_key=row["project_key"],
        summary=row["summary"],
        status=row["status"],
        created_at=row["created_at"],
    )


# --- development ----------------------------------------------------------------------------------

ISSUES_SQL = """
SELECT status, issue_type, count(*) AS n
FROM development.issues
WHERE epic_key = ?
GROUP BY ALL
"""

ISSUE_TIMES_SQL = f"""
SELECT {_dist_sql("cycle_time_hours", "cycle")}, {_dist_sql("lead_time_hours", "lead")}
FROM development.issues
WHERE epic_key = ?
"""

PR_STATES_SQL = """
SELECT state, count(*) AS n
FROM development.pull_requests
WHERE feature_key = ?
GROUP BY state
"""

PR_TIMES_SQL = f"""
SELECT {_dist_sql("time_to_first_review_hours", "review")}, {_dist_sql("time_to_merge_hours", "merge")}
FROM development.pull_requests
WHERE feature_key = ?
"""

CHANGES_SQL = f"""
SELECT count(*) AS deployed, {_dist_sql("lead_time_hours", "lead")}
FROM deployment.changes
WHERE feature_key = ?
"""

BUGS_SQL = """
SELECT count(*) AS bugs,
       count(*) FILTER (WHERE status <> 'done') AS open_bugs,
       count(*) FILTER (WHERE escaped) AS escaped_bugs
FROM quality.defects
WHERE feature_key = ?
"""

# The commits that belong to a feature: every commit of its pull requests, their heads and the
# commits their merges put on main. Tests run on those commits are the tests "touching" it.
FEATURE_RUNS_CTE = """
WITH prs AS (
    SELECT repo, pr_number FROM development.pull_requests WHERE feature_key = ?
),
shas AS (
    SELECT c.sha FROM staging.stg_github__pull_request_commits AS c INNER JOIN prs USING (repo, pr_number)
    UNION
    SELECT p.head_sha FROM staging.stg_github__pull_requests AS p INNER JOIN prs USING (repo, pr_number)
    UNION
    SELECT p.merge_sha FROM staging.stg_github__pull_requests AS p INNER JOIN prs USING (repo, pr_number)
),
runs AS (
    SELECT * FROM quality.test_cases WHERE sha IN (SELECT sha FROM shas WHERE sha IS NOT NULL)
)
"""

FEATURE_TEST_TOTALS_SQL = (
    FEATURE_RUNS_CTE + "SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'failed') AS failed FROM runs"
)

FLAKY_SELECT = """
SELECT *, flaky_commits / commits AS flake_rate
FROM (
    SELECT service, suite, class_name, test_name,
           count(*) AS runs,
           count(*) FILTER (WHERE status = 'failed') AS failed_runs,
           count(DISTINCT CASE WHEN is_flaky THEN sha END) AS flaky_commits,
           count(DISTINCT sha) AS commits
    FROM runs
    GROUP BY ALL
)
WHERE flaky_commits > 0
ORDER BY flaky_commits DESC, flake_rate DESC, failed_runs DESC, service, suite, class_name, test_name
LIMIT ?
"""

FEATURE_FLAKY_SQL = FEATURE_RUNS_CTE + FLAKY_SELECT
FEATURE_FLAKY_LIMIT = 50


def development(cur: Cursor, row: dict[str, Any]) -> s.Development:
    """Issues, pull requests, cycle and lead times, delivery and quality signals of one feature."""
    key = row["feature_key"]
    by_status = dict.fromkeys(("todo", "in_progress", "done"), 0)
    by_type: dict[str, int] = {}
    for r in _rows(cur, ISSUES_SQL, [key]):
        by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
        by_type[r["issue_type"]] = by_type.get(r["issue_type"], 0) + r["n"]
    total = sum(by_status.values())
    issue_times = _one(cur, ISSUE_TIMES_SQL, [key]) or {}
    by_state = dict.fromkeys(("open", "closed", "merged"), 0)
    for r in _rows(cur, PR_STATES_SQL, [key]):
        by_state[r["state"]] = r["n"]
    pr_times = _one(cur, PR_TIMES_SQL, [key]) or {}
    changes = _one(cur, CHANGES_SQL, [key]) or {}
    bugs = _one(cur, BUGS_SQL, [key]) or {}
    tests = _one(cur, FEATURE_TEST_TOTALS_SQL, [key]) or {}
    flaky = [s.FlakyTest(**r) for r in _rows(cur, FEATURE_FLAKY_SQL, [key, FEATURE_FLAKY_LIMIT])]
    return s.Development(
        feature=_feature_model(row),
        issues=s.IssueCounts(
            total=total, by_status=by_status, by_type=by_type, done_ratio=by_status["done"] / total if total else None
        ),
        pull_requests=s.PullRequestCounts(
            total=sum(by_state.values()),
            by_state=by_state,
            deployed=changes["deployed"],
            time_to_first_review_hours=_distribution(pr_times, "review"),
            time_to_merge_hours=_distribution(pr_times, "merge"),
        ),
        cycle_time_hours=_distribution(issue_times, "cycle"),
        lead_time_hours=_distribution(issue_times, "lead"),
        change_lead_time_hours=_distribution(changes, "lead"),
        delivery=s.Delivery(
            first_deployed_at=row["first_deployed_at"],
            first_released_at=row["first_released_at"],
            release_deployment_id=row["release_deployment_id"],
            time_to_market_days=row["time_to_market_days"],
        ),
        quality=s.QualitySignals(
            bugs=bugs["bugs"],
            open_bugs=bugs["open_bugs"],
            escaped_bugs=bugs["escaped_bugs"],
            test_runs=tests["runs"],
            failed_test_runs=tests["failed"],
            flaky_tests=flaky,
        ),
    )


# --- analytics ------------------------------------------------------------------------------------

RECENT_DAYS = 28  # "last 28 days" matches the adoption window (warehouse/settings.yaml)
TREND_COMPARE_WEEKS = 4
TREND_THRESHOLD_PCT = 10.0

DATA_THROUGH_SQL = "SELECT max(day) AS last_day FROM usage.active_users_daily"

ADOPTION_SQL = """
SELECT window_start, window_end, window_complete, feature_users, active_users, adoption_rate, adopted
FROM usage.feature_adoption
WHERE feature_key = ?
"""

USAGE_SQL = """
SELECT min(day) AS first_day,
       max(day) AS last_day,
       count(*) AS events,
       count(DISTINCT user_id) AS users,
       count(*) FILTER (WHERE day > ?) AS events_recent,
       count(DISTINCT user_id) FILTER (WHERE day > ?) AS users_recent,
       count(DISTINCT user_id) FILTER (WHERE day > ?) AS users_since_release
FROM intermediate.int_events_linked_to_features
WHERE feature_key = ?
"""

TRACKED_SQL = """
SELECT coalesce(sum(tracked_events), 0) AS tracked,
       coalesce(sum(tracked_events) FILTER (WHERE day > ?), 0) AS tracked_recent
FROM usage.active_users_daily
"""

TREND_SQL = """
WITH weeks AS (
    SELECT CAST(unnest(generate_series(CAST(? AS DATE), CAST(? AS DATE), INTERVAL 7 DAY)) AS DATE) AS week_start
)
SELECT w.week_start, count(e.event_id) AS events, count(DISTINCT e.user_id) AS users
FROM weeks AS w
LEFT JOIN intermediate.int_events_linked_to_features AS e
    ON e.feature_key = ? AND e.day BETWEEN w.week_start AND w.week_start + 6
GROUP BY w.week_start
ORDER BY w.week_start
"""


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def analytics(cur: Cursor, row: dict[str, Any], weeks: int) -> s.Analytics:
    """Adoption after release, usage, share of tracked events and the weekly trend of one feature."""
    key = row["feature_key"]
    through = (_one(cur, DATA_THROUGH_SQL) or {}).get("last_day")
    recent_from = through - timedelta(days=RECENT_DAYS) if through else date.max  # "day > recent_from"
    released = row["first_released_at"]
    release_day = released.date() if released else date.max
    usage = _one(cur, USAGE_SQL, [recent_from, recent_from, release_day, key]) or {}
    tracked = _one(cur, TRACKED_SQL, [recent_from]) or {}
    adoption = _one(cur, ADOPTION_SQL, [key])
    return s.Analytics(
        feature=_feature_model(row),
        data_through=through,
        released_at=released,
        adoption=s.Adoption(**adoption) if adoption else None,
        usage=s.Usage(
            first_day=usage["first_day"],
            last_day=usage["last_day"],
            events=usage["events"],
            users=usage["users"],
            events_last_28_days=usage["events_recent"],
            users_last_28_days=usage["users_recent"],
            users_since_release=usage["users_since_release"] if released else None,
        ),
        share_of_tracked_events=s.EventShare(
            all_time=_share(usage["events"], int(tracked["tracked"])),
            last_28_days=_share(usage["events_recent"], int(tracked["tracked_recent"])),
        ),
        trend=trend(cur, key, through, weeks),
    )


def trend(cur: Cursor, key: str, through: date | None, weeks: int) -> s.Trend:
    """Events and users per complete ISO week up to the last day of data, and the 4-week change."""
    if through is None:
        return s.Trend(weeks=[], last_4_weeks_events=0, previous_4_weeks_events=0, change_pct=None, direction="no_data")
    last_sunday = through - timedelta(days=(through.weekday() + 1) % 7)
    span = max(weeks, 2 * TREND_COMPARE_WEEKS)
    first_monday = last_sunday - timedelta(days=7 * span - 1)
    series = [s.TrendWeek(**r) for r in _rows(cur, TREND_SQL, [first_monday, last_sunday - timedelta(days=6), key])]
    last = sum(w.events for w in series[-TREND_COMPARE_WEEKS:])
    previous = sum(w.events for w in series[-2 * TREND_COMPARE_WEEKS : -TREND_COMPARE_WEEKS])
    change = (last - previous) / previous * 100 if previous else None
    if last == 0 and previous == 0:
        direction = "no_data"
    elif change is None or change > TREND_THRESHOLD_PCT:
        direction = "rising"
    elif change < -TREND_THRESHOLD_PCT:
        direction = "falling"
    else:
        direction = "flat"
    return s.Trend(
        weeks=series[-weeks:],
        last_4_weeks_events=last,
        previous_4_weeks_events=previous,
        change_pct=change,
        direction=direction,  # type: ignore[arg-type]
    )


# --- releases -------------------------------------------------------------------------------------

# A version matches a release whose name, without a prefix word ("Release ", "PAY ") and a leading
# "v", is the version, case-insensitively: 1.1.0 ↔ "Release 1.1.0", v1.1.0; 2025.11 ↔ "PAY 2025.11".
MATCHING_RELEASES_SQL = """
SELECT release_id, system, scope, name, released_at, is_released
FROM deployment.releases
WHERE lower(regexp_replace(name, '^(.*\\s)?[vV]?', '')) = lower(regexp_replace(?, '^[vV]', ''))
   OR lower(name) = lower(?)
ORDER BY released_at NULLS LAST, release_id
"""

ANNOTATION_SQL = """
SELECT version, released_on AS date, features, notes, created_at, updated_at
FROM annotations.release_annotations
WHERE version = ?
"""


def matching_releases(cur: Cursor, version: str) -> list[s.WarehouseRelease]:
    """GitHub releases and Jira versions of the same version (see MATCHING_RELEASES_SQL)."""
    return [s.WarehouseRelease(**r) for r in _rows(cur, MATCHING_RELEASES_SQL, [version, version])]


def annotation(cur: Cursor, version: str) -> s.ReleaseAnnotation | None:
    """The stored annotation of a version, from the attached annotation store."""
    found = _one(cur, ANNOTATION_SQL, [version])
    return s.ReleaseAnnotation(**found) if found else None


def known_features(cur: Cursor, keys: list[str]) -> set[str]:
    """Which of `keys` are features (epics) in the warehouse."""
    if not keys:
        return set()
    rows = cur.execute("SELECT feature_key FROM development.features WHERE list_contains(?, feature_key)", [keys])
    return {r[0] for r in rows.fetchall()}


# --- performance ----------------------------------------------------------------------------------

# The rows of kpi.recommendations (built by the nightly run, `pipelines/insights/recommendations.py`), filtered
# by the request: nothing is computed here but the selection. `top` keeps the first rows per kind among those
# that match the other filters; unknown kinds (a newer pipeline) are served after the known ones.
RECOMMENDATIONS_SQL = f"""
SELECT {", ".join(s.Recommendation.model_fields)}
FROM kpi.recommendations
WHERE ($kinds IS NULL OR list_contains($kinds, kind))
  AND ($subject IS NULL OR contains(lower(subject), lower($subject)))
  AND ($service IS NULL OR lower(service) = lower($service))
QUALIFY $top IS NULL OR row_number() OVER (PARTITION BY kind ORDER BY rank, subject) <= $top
ORDER BY coalesce(list_position($order, kind), len($order) + 1), kind, rank, subject
"""

RECOMMENDATIONS_SUMMARY_SQL = """
SELECT count(*) AS total_rows, min(period_start) AS period_start, max(period_end) AS period_end
FROM kpi.recommendations
"""


def optimize(cur: Cursor, params: s.OptimizeIn) -> s.OptimizeOut:
    """The recommendations of the last pipeline run that match the request, each with its figures."""
    bound = {
        "kinds": list(params.kinds) if params.kinds is not None else None,
        "subject": params.subject,
        "service": params.service,
        "top": params.top,
        "order": list(s.RECOMMENDATION_KINDS),
    }
    rows = _rows(cur, RECOMMENDATIONS_SQL, bound)
    summary = _rows(cur, RECOMMENDATIONS_SUMMARY_SQL)[0]
    return s.OptimizeOut(
        period_start=summary["period_start"],
        period_end=summary["period_end"],
        total_rows=summary["total_rows"],
        recommendations=[s.Recommendation(**{**r, "evidence": json.loads(r["evidence"])}) for r in rows],
    )


# --- KPIs and health ------------------------------------------------------------------------------

SUCCESS_SQL = f"SELECT {', '.join(s.SuccessMetric.model_fields)} FROM kpi.success_metrics ORDER BY metric"
DORA_SQL = (
    f"SELECT period_kind, {', '.join(s.DoraPeriod.model_fields)} FROM kpi.dora "
    "WHERE period_kind IN ('baseline', 'current')"
)


def kpis(cur: Cursor) -> s.Kpis:
    """The success metrics and DORA over the baseline and current windows."""
    periods = {r.pop("period_kind"): s.DoraPeriod(**r) for r in _rows(cur, DORA_SQL)}
    return s.Kpis(
        success_metrics=[s.SuccessMetric(**r) for r in _rows(cur, SUCCESS_SQL)],
        dora=s.Dora(baseline=periods.get("baseline"), current=periods.get("current")),
    )


# The latest moment each source describes (fixed statements; a table missing from an older
# warehouse gives null). Mixpanel events, builds and PR updates are the fastest-moving data.
LATEST_BY_SOURCE = {
    "jira": ("staging.stg_jira__issues", "SELECT max(updated_at) FROM staging.stg_jira__issues"),
    "github": ("staging.stg_github__pull_requests", "SELECT max(updated_at) FROM staging.stg_github__pull_requests"),
    "jenkins": ("staging.stg_jenkins__builds", "SELECT max(started_at) FROM staging.stg_jenkins__builds"),
    "datadog": ("staging.stg_datadog__events", "SELECT max(occurred_at) FROM staging.stg_datadog__events"),
    "mixpanel": ("staging.stg_mixpanel__events", "SELECT max(occurred_at) FROM staging.stg_mixpanel__events"),
}


def latest_by_source(cur: Cursor, tables: set[str]) -> dict[str, datetime | None]:
    """Per source system, the latest event time in the warehouse."""
    return {
        system: (cur.execute(sql).fetchall()[0][0] if table in tables else None)
        for system, (table, sql) in LATEST_BY_SOURCE.items()
    }


def annotation_count(cur: Cursor) -> int:
    return int(cur.execute("SELECT count(*) FROM annotations.release_annotations").fetchall()[0][0])
