"""Feature success prediction: held-out, time-ordered backtest; no signal or outcome from after the cutoff."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines.insights.success import (
    MIN_TRAIN,
    SIGNALS,
    feature_table,
    prediction_accuracy_figures,
    predictions,
)
from pipelines.kpis.compute import MART_QUERIES, Period

INPUTS = ("features", "issues", "pull_requests", "adoption")
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def synthetic_frames(n: int = 40, seed: int = 5) -> dict[str, pl.DataFrame]:
    """`n` features released a week apart, each with a few issues and PRs; success depends on review depth."""
    rng = np.random.default_rng(seed)
    start = datetime(2025, 11, 3, tzinfo=UTC)
    features, issues, prs, adoption = [], [], [], []
    for k in range(n):
        key = f"{'AB'[k % 2]}X-{k}"
        created = start + timedelta(days=7 * k)
        released = created + timedelta(days=30)
        reviews = int(rng.integers(1, 5))
        features.append({"feature_key": key, "project_key": key.split("-")[0], "summary": f"feature {k}",
                         "status": "done", "created_at": created, "first_released_at": released})  # fmt: skip
        for j in range(3):
            issues.append({"issue_key": f"{key}-{j}", "issue_type": "Bug" if j == 2 else "Story", "epic_key": key,
                           "created_at": created + timedelta(days=j)})  # fmt: skip
            merged = created + timedelta(days=5 + j)
            prs.append({"feature_key": key, "merged_at": merged, "first_commit_at": merged - timedelta(hours=20),
                        "commit_count": 3, "review_count": reviews, "time_to_first_review_hours": 2.0})  # fmt: skip
        window_end = (released + timedelta(days=28)).date()
        rate = 0.02 * reviews + rng.normal(0, 0.01)
        complete = window_end < AS_OF.date()
        adoption.append({"feature_key": key, "window_end": window_end, "window_complete": complete,
                         "adoption_rate": rate, "adopted": (rate >= 0.05) if complete else None})  # fmt: skip
    return {
        "features": pl.DataFrame(features),
        "issues": pl.DataFrame(issues),
        "pull_requests": pl.DataFrame(prs),
        "adoption": pl.DataFrame(adoption, schema_overrides={"adopted": pl.Boolean}),
    }


def _backtest(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("prediction_kind") == "backtest").sort("feature_key")


def test_each_prediction_is_trained_on_outcomes_known_before_it() -> None:
    frames = synthetic_frames()
    result = predictions(frames, AS_OF)
    known = dict(zip(frames["adoption"]["feature_key"], frames["adoption"]["window_end"], strict=True))
    scored = result.filter(pl.col("probability").is_not_null())
    assert scored.height >= 20
    for row in scored.to_dicts():
        assert row["feature_key"] not in row["trained_on"]
        assert len(row["trained_on"]) == row["training_features"] >= MIN_TRAIN
        cutoff = row["predicted_as_of"]
        assert all(datetime.combine(known[k] + timedelta(days=1), datetime.min.time(), UTC) <= cutoff
                   for k in row["trained_on"]), row["feature_key"]  # fmt: skip


def test_later_outcomes_do_not_change_earlier_predictions() -> None:
    frames = synthetic_frames()
    before = _backtest(predictions(frames, AS_OF))
    cut = datetime(2026, 6, 1, tzinfo=UTC)
    late = frames["features"].filter(pl.col("first_released_at") >= cut)["feature_key"]
    flipped = {**frames, "adoption": frames["adoption"].with_columns(
        adopted=pl.when(pl.col("feature_key").is_in(late.implode())).then(pl.col("adopted").not_())
        .otherwise(pl.col("adopted")))}  # fmt: skip
    after = _backtest(predictions(flipped, AS_OF))
    early = pl.col("released_at") < cut
    columns = ["feature_key", "probability", "predicted_adopted", "correct", "trained_on"]
    assert after.filter(early).select(columns).equals(before.filter(early).select(columns))
    assert before.filter(early & pl.col("probability").is_not_null()).height >= 5
    assert not after.filter(~early).select("correct").equals(before.filter(~early).select("correct"))


def test_signals_ignore_what_happened_after_the_cutoff() -> None:
    frames = synthetic_frames()
    key = frames["features"]["feature_key"][10]
    released = frames["features"]["first_released_at"][10]
    later = released + timedelta(days=3)
    noisy = {
        **frames,
        "issues": pl.concat([frames["issues"], pl.DataFrame([{"issue_key": "late-bug", "issue_type": "Bug",
                                                              "epic_key": key, "created_at": later}])]),
        "pull_requests": pl.concat([frames["pull_requests"], pl.DataFrame([{
            "feature_key": key, "merged_at": later, "first_commit_at": later - timedelta(hours=400),
            "commit_count": 40, "review_count": 0, "time_to_first_review_hours": 90.0}])]),
    }  # fmt: skip
    row = feature_table(frames, AS_OF).filter(pl.col("feature_key") == key).select(list(SIGNALS))
    same = feature_table(noisy, AS_OF).filter(pl.col("feature_key") == key).select(list(SIGNALS))
    assert row.equals(same)


def test_the_model_learns_a_real_signal() -> None:
    """When success does depend on a pre-release signal (review depth here), held-out accuracy beats the baseline."""
    result = predictions(synthetic_frames(n=60), AS_OF)
    summary = result.row(0, named=True)
    print(f"\nsynthetic: accuracy {summary['backtest_accuracy']:.2f} over {summary['backtest_sample']} "
          f"(majority baseline {summary['backtest_baseline_accuracy']:.2f})")  # fmt: skip
    assert summary["backtest_accuracy"] >= 0.75
    assert summary["backtest_accuracy"] > summary["backtest_baseline_accuracy"]


def test_empty_marts_give_no_prediction_and_a_reason() -> None:
    frames = {name: frame.clear() for name, frame in synthetic_frames().items()}
    assert predictions(frames, AS_OF).height == 0
    period = Period("current", date(2026, 8, 1), date(2026, 10, 31))
    assert prediction_accuracy_figures(frames, AS_OF, [period])[period][:2] == (None, 0)


# --- against the session warehouse -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(warehouse_con) -> pl.DataFrame:
    return warehouse_con.sql("SELECT * FROM kpi.feature_success_predictions").pl()


def test_stored_backtest_rows_use_only_earlier_features(stored: pl.DataFrame, warehouse_con) -> None:
    windows = dict(warehouse_con.execute("SELECT feature_key, window_end FROM usage.feature_adoption").fetchall())
    released = dict(warehouse_con.execute("SELECT feature_key, first_released_at FROM development.features").fetchall())
    backtest = stored.filter(pl.col("prediction_kind") == "backtest")
    assert backtest.height > 0 and backtest["adopted"].null_count() == 0
    for row in backtest.filter(pl.col("probability").is_not_null()).to_dicts():
        assert row["predicted_as_of"] == released[row["feature_key"]]
        for key in row["trained_on"]:
            assert windows[key] < row["predicted_as_of"].date(), (row["feature_key"], key)
    summary = stored.row(0, named=True)
    scored = backtest.filter(pl.col("correct").is_not_null())
    assert summary["backtest_sample"] == scored.height
    assert summary["backtest_accuracy"] == pytest.approx(scored["correct"].mean())
    print(f"\nsession world: held-out accuracy {summary['backtest_accuracy']} over {summary['backtest_sample']}")


def test_open_rows_are_unreleased_or_inside_their_window(stored: pl.DataFrame, warehouse_con) -> None:
    incomplete = {k for (k,) in warehouse_con.execute(
        "SELECT feature_key FROM usage.feature_adoption WHERE NOT window_complete").fetchall()}  # fmt: skip
    for row in stored.filter(pl.col("prediction_kind") == "open").to_dicts():
        assert row["adopted"] is None and row["correct"] is None
        assert row["released_at"] is None or row["feature_key"] in incomplete


def test_success_metrics_prediction_accuracy_is_the_held_out_accuracy(stored: pl.DataFrame, warehouse_con) -> None:
    row = (
        warehouse_con.sql("SELECT * FROM kpi.success_metrics WHERE metric = 'prediction_accuracy'")
        .pl()
        .row(0, named=True)
    )
    assert row["target"] == 0.75 and row["target_kind"] == "absolute"
    query = "SELECT period_kind, period_start, period_end FROM kpi.dora WHERE period_kind <> 'week'"
    windows = {k: (s, e) for k, s, e in warehouse_con.execute(query).fetchall()}
    for kind in ("baseline", "current"):
        start, end = windows[kind]
        held_out = stored.filter(
            (pl.col("prediction_kind") == "backtest") & pl.col("correct").is_not_null()
            & pl.col("released_at").dt.date().is_between(start, end)
        )  # fmt: skip
        assert row[f"{kind}_sample"] == held_out.height
        expected = held_out["correct"].mean() if held_out.height else None
        assert row[f"{kind}_value"] == (pytest.approx(expected) if expected is not None else None)


def test_the_asset_and_the_kpi_path_agree(stored: pl.DataFrame, warehouse_con) -> None:
    frames = {name: warehouse_con.sql(MART_QUERIES[name]).pl() for name in INPUTS}
    again = predictions(frames, AS_OF)  # held-out rows depend on release times only, not on the as-of moment
    columns = ["feature_key", "probability", "correct"]
    assert _backtest(again).select(columns).equals(_backtest(stored).select(columns))
