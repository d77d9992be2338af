"""Every KPI recomputed from the sandbox's ground truth with plain Python, and compared with kpi.*.

Independent of the marts and of pipelines/kpis: only the metric contract (shared/docs/metrics.md,
refined in warehouse/kpi/*.yaml) is shared. Counts and rates must be equal; durations within a second.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import pytest
import yaml

from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World
from pipelines.settings import WAREHOUSE_SQL_DIR

HOUR = 3600.0


def in_period(t: datetime | date | None, start: date, end: date) -> bool:
    if t is None:
        return False
    day = t.date() if isinstance(t, datetime) else t
    return start <= day <= end


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class TruthKpis:
    """KPIs straight from the world and its truth frames."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.t = dict(truth_frames(world))
        deps = self.t["deployments"]
        self.prod = deps.filter((pl.col("environment") == "production") & (pl.col("outcome") == "success")).sort(
            "service", "finished_at", "deployment_id"
        )
        self.finished = {r["deployment_id"]: r["finished_at"] for r in self.prod.iter_rows(named=True)}
        self.escaped = set(self.t["issues"].filter(pl.col("escaped"))["key"])

    def deployments(self, s: date, e: date) -> list[dict[str, Any]]:
        return [r for r in self.prod.iter_rows(named=True) if in_period(r["finished_at"], s, e)]

    def recovery(self) -> dict[str, datetime]:
        """Change failure → recovery: next deployment of the service finished, or its incident resolved."""
        resolved: dict[str, list[datetime]] = defaultdict(list)
        for i in self.t["incidents"].iter_rows(named=True):
            if i["caused_by_deployment_id"] and i["resolved_at"]:
                resolved[i["caused_by_deployment_id"]].append(i["resolved_at"])
        out = {}
        rows = list(self.prod.iter_rows(named=True))
        for k, r in enumerate(rows):
            if not r["is_change_failure"]:
                continue
            candidates = list(resolved[r["deployment_id"]])
            if k + 1 < len(rows) and rows[k + 1]["service"] == r["service"]:
                candidates.append(rows[k + 1]["finished_at"])
            if candidates:
                out[r["deployment_id"]] = min(candidates)
        return out

    def dora(self, s: date, e: date) -> dict[str, Any]:
        deps = self.deployments(s, e)
        n = len(deps)
        lead = [
            (self.finished[p["first_deployment_id"]] - p["first_commit_at"]).total_seconds() / HOUR
            for p in self.t["pull_requests"].iter_rows(named=True)
            if p["first_deployment_id"] and in_period(self.finished[p["first_deployment_id"]], s, e)
        ]
        ttr = [
            (i["resolved_at"] - i["created_at"]).total_seconds() / HOUR
            for i in self.t["incidents"].iter_rows(named=True)
            if in_period(i["resolved_at"], s, e)
        ]
        rec = self.recovery()
        recovered = [(at - self.finished[d]).total_seconds() / HOUR for d, at in rec.items() if in_period(at, s, e)]
        shipped_fix = {
            p["first_deployment_id"]
            for p in self.t["pull_requests"].iter_rows(named=True)
            if p["issue_key"] in self.escaped and p["first_deployment_id"]
        }
        return {
            "deployments": n,
            "deployment_frequency_per_day": n / ((e - s).days + 1) if n else None,
            "changes": len(lead),
            "lead_time_hours_median": median(lead),
            "change_failure_rate": sum(d["is_change_failure"] for d in deps) / n if n else None,
            "incidents_resolved": len(ttr),
            "time_to_restore_hours_median": median(ttr),
            "failures_recovered": len(recovered),
            "failed_deployment_recovery_hours_median": median(recovered),
            "deployment_rework_rate": (
                sum(d["is_rollback"] or d["deployment_id"] in shipped_fix for d in deps) / n if n else None
            ),
        }

    def success(self, s: date, e: date) -> dict[str, float | None]:
        w, t = self.world, self.t
        deps = self.deployments(s, e)
        n = len(deps)
        people = w.people_by_id
        done = sum(
            1
            for i in t["issues"].iter_rows(named=True)
            if i["type"] in ("Story", "Task") and in_period(i["done_at"], s, e)
        )
        weeks = set()
        as_of = w.config.end_at
        for issue in w.issues:
            for tr in issue.transitions:
                if in_period(tr.at, s, e) and tr.at <= as_of:
                    weeks.add((people[tr.author_id].person_id, tr.at.date() - timedelta(days=tr.at.weekday())))
        for pr in w.pull_requests:
            if pr.merged_at and in_period(pr.merged_at, s, e):
                weeks.add((pr.author_id, pr.merged_at.date() - timedelta(days=pr.merged_at.weekday())))
        attempts = t["deployments"].filter(
            (pl.col("environment") == "production") & pl.col("outcome").is_in(["success", "failure"])
        )
        completed = [a for a in attempts.iter_rows(named=True) if in_period(a["finished_at"], s, e)]
        escaped = sum(1 for i in t["issues"].iter_rows(named=True) if i["escaped"] and in_period(i["created_at"], s, e))
        ttm = [
            (f["first_released_at"] - f["created_at"]).total_seconds() / 86400
            for f in t["features"].iter_rows(named=True)
            if in_period(f["first_released_at"], s, e)
        ]
        rec = self.recovery()
        failures = [d for d in deps if d["is_change_failure"]]
        fast = [
            d
            for d in failures
            if d["deployment_id"] in rec and (rec[d["deployment_id"]] - d["finished_at"]).total_seconds() <= 3600
        ]
        daily = t["events_daily"].filter(pl.col("day").is_between(s, e))
        total = int(daily["events"].sum())
        tracked = int(daily.filter(pl.col("feature_key").is_not_null())["events"].sum())
        return {
            "development_efficiency": done / len(weeks) if weeks else None,
            "deployment_success_rate": (
                sum(a["outcome"] == "success" for a in completed) / len(completed) if completed else None
            ),
            "qa_effectiveness": escaped / n * 100 if n else None,
            "time_to_market_days": median(ttm),
            "product_success_rate": self.product_success(s, e),
            "automation_rate": sum(d["triggered_by"] == "automation" for d in deps) / n if n else None,
            "rollback_efficiency": len(fast) / len(failures) if failures else None,
            "tracking_accuracy": tracked / total if total else None,
        }

    def product_success(self, s: date, e: date) -> float | None:
        from pipelines.sandbox.truth import _visible_events

        events = _visible_events(self.world.visible())
        epics = {i.key for i in self.world.issues if i.issue_type == "Epic"}
        names = self.world.feature_event_names
        events = events.with_columns(day=pl.from_epoch("time", time_unit="s").dt.date()).with_columns(
            feature_key=pl.when(pl.col("feature").is_in(list(epics)))
            .then(pl.col("feature"))
            .otherwise(pl.col("event").replace_strict(names, default=None))
        )
        last_day = events["day"].max()
        adopted = []
        for f in self.t["features"].iter_rows(named=True):
            if not in_period(f["first_released_at"], s, e):
                continue
            start = f["first_released_at"].date() + timedelta(days=1)
            end = f["first_released_at"].date() + timedelta(days=28)
            if end > last_day:
                continue
            window = events.filter(pl.col("day").is_between(start, end))
            active = window["distinct_id"].n_unique()
            users = window.filter(pl.col("feature_key") == f["epic_key"])["distinct_id"].n_unique()
            adopted.append(active > 0 and users / active >= 0.05)
        return sum(adopted) / len(adopted) if adopted else None


@pytest.fixture(scope="module")
def windows() -> dict[str, tuple[date, date]]:
    model = yaml.safe_load((WAREHOUSE_SQL_DIR / "kpi" / "value_model.yaml").read_text())
    return {"baseline": (model["windows"]["baseline"]["start"], model["windows"]["baseline"]["end"])}


@pytest.fixture(scope="module")
def truth_kpis(world: World) -> TruthKpis:
    return TruthKpis(world)


@pytest.fixture(scope="module")
def con(built_warehouse: dict) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(built_warehouse["paths"].published), read_only=True)


def same(name: str, expected: float | None, found: float | None, tolerance: float = 0.0) -> None:
    if expected is None or found is None:
        assert expected is None and found is None, f"{name}: truth {expected!r}, kpi {found!r}"
        return
    assert abs(expected - found) <= tolerance + 1e-9 * abs(expected), f"{name}: truth {expected!r}, kpi {found!r}"


DURATION_TOLERANCE = {
    "lead_time_hours_median": 1 / 3600,
    "time_to_restore_hours_median": 1 / 3600,
    "failed_deployment_recovery_hours_median": 1 / 3600,
    "time_to_market_days": 1 / 86400,
}


@pytest.mark.parametrize("kind", ["baseline", "current"])
def test_dora_windows_match_the_truth(kind: str, con: duckdb.DuckDBPyConnection, truth_kpis: TruthKpis) -> None:
    row = con.sql(f"SELECT * FROM kpi.dora WHERE period_kind = '{kind}'").pl().to_dicts()[0]
    expected = truth_kpis.dora(row["period_start"], row["period_end"])
    assert expected["deployments"] > 0, "an empty window proves nothing"
    for name, value in expected.items():
        same(f"{kind} {name}", value, row[name], DURATION_TOLERANCE.get(name, 0.0))


def test_dora_weeks_match_the_truth(con: duckdb.DuckDBPyConnection, truth_kpis: TruthKpis) -> None:
    rows = con.sql("SELECT * FROM kpi.dora WHERE period_kind = 'week' ORDER BY period_start").pl().to_dicts()
    assert len(rows) > 40
    for row in rows[::5]:
        for name, value in truth_kpis.dora(row["period_start"], row["period_end"]).items():
            same(f"week {row['period_start']} {name}", value, row[name], DURATION_TOLERANCE.get(name, 0.0))


def test_success_metrics_match_the_truth(
    con: duckdb.DuckDBPyConnection, truth_kpis: TruthKpis, windows: dict[str, tuple[date, date]]
) -> None:
    dora = {r["period_kind"]: r for r in con.sql("SELECT * FROM kpi.dora WHERE period_kind <> 'week'").pl().to_dicts()}
    rows = {r["metric"]: r for r in con.sql("SELECT * FROM kpi.success_metrics").pl().to_dicts()}
    for kind in ("baseline", "current"):
        expected = truth_kpis.success(dora[kind]["period_start"], dora[kind]["period_end"])
        for metric, value in expected.items():
            same(f"{kind} {metric}", value, rows[metric][f"{kind}_value"], DURATION_TOLERANCE.get(metric, 0.0))
