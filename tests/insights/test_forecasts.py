"""Forecasts: the rolling-origin backtest never looks ahead, and the stored table is what it claims."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipelines.insights.forecasts import (
    HORIZON,
    MIN_TRAIN,
    SPECS,
    backtest_score,
    rolling_origin_backtest,
    weekly_values,
)


@pytest.fixture(scope="module")
def dora(warehouse_con) -> pl.DataFrame:
    return warehouse_con.sql("SELECT * FROM kpi.dora").pl()


@pytest.fixture(scope="module")
def frequency(dora: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    """Deployment frequency per week from the session warehouse, and its backtest (computed once)."""
    _, values = weekly_values(dora, SPECS["deployment_frequency_per_day"])
    return values, rolling_origin_backtest(values, SPECS["deployment_frequency_per_day"])


def _before(backtest: pl.DataFrame, cut: int) -> pl.DataFrame:
    return backtest.filter(pl.col("target") < cut).sort("origin", "step")


def test_shuffling_the_future_leaves_the_backtest_score_unchanged(frequency) -> None:
    values, original = frequency
    spec = SPECS["deployment_frequency_per_day"]
    cut = len(values) - 15
    assert cut > MIN_TRAIN + HORIZON, "the session world has too few weeks for this test"
    future = values[cut:].copy()
    shuffled = np.concatenate([values[:cut], np.random.default_rng(3).permutation(future)])
    assert not np.allclose(shuffled[cut:], values[cut:]), "the shuffle must change the future"
    after = rolling_origin_backtest(shuffled, spec)
    # Every forecast whose target lies before the cut is identical, so the score up to the cut is too.
    assert _before(after, cut).equals(_before(original, cut))
    assert backtest_score(after, until=cut) == backtest_score(original, until=cut)
    # ... while the future did change the later part of the backtest (the test has teeth).
    assert backtest_score(after) != backtest_score(original)


def test_rescaling_the_future_leaves_the_backtest_score_unchanged(dora: pl.DataFrame) -> None:
    """A shuffle keeps the future's mean and spread; a global statistic leaking in would survive it. Rescale too."""
    spec = SPECS["lead_time_hours_median"]
    _, values = weekly_values(dora, spec)
    cut = len(values) - 10
    changed = np.concatenate([values[:cut], values[cut:] * 10])
    original = rolling_origin_backtest(values, spec, horizon=3)
    after = rolling_origin_backtest(changed, spec, horizon=3)
    assert backtest_score(after, until=cut) == backtest_score(original, until=cut)
    assert backtest_score(after)["mape_pct"] != backtest_score(original)["mape_pct"]


def test_each_backtest_forecast_uses_only_the_weeks_before_its_origin(frequency) -> None:
    values, backtest = frequency
    assert backtest["origin"].min() == MIN_TRAIN
    assert (backtest["target"] == backtest["origin"] + backtest["step"] - 1).all()
    assert (backtest["target"] >= backtest["origin"]).all(), "a target is never inside its own training weeks"
    assert backtest["actual"].to_list() == pytest.approx(values[backtest["target"].to_list()].tolist(), nan_ok=True)


def test_the_stored_forecasts_carry_their_backtest(warehouse_con, frequency) -> None:
    values, backtest = frequency
    stored = warehouse_con.sql("SELECT * FROM kpi.forecasts ORDER BY metric, step").pl()
    assert set(stored["metric"]) == set(SPECS)
    assert stored.group_by("metric").len()["len"].to_list() == [HORIZON] * len(SPECS)
    for metric, rows in stored.group_by("metric"):
        rows = rows.sort("step")
        if rows["forecast"].null_count():
            assert rows["null_reason"].null_count() == 0
            continue
        assert (rows["lower"] <= rows["forecast"]).all() and (rows["forecast"] <= rows["upper"]).all()
        widths = (rows["upper"] - rows["lower"]).to_list()
        assert widths == sorted(widths), f"{metric}: the interval widens with the horizon"
        assert rows["backtest_points"].n_unique() == 1 and rows["backtest_points"][0] > 20
        assert rows["backtest_coverage"][0] is not None and rows["backtest_mape_pct"][0] is not None
        assert all(f"{r['step']} week" in r["explanation"] for r in rows.to_dicts())
    ours = stored.filter(pl.col("metric") == "deployment_frequency_per_day").row(0, named=True)
    score = backtest_score(backtest)
    assert ours["backtest_mape_pct"] == pytest.approx(score["mape_pct"])
    assert ours["backtest_coverage"] == pytest.approx(score["coverage"])
    assert ours["backtest_origins"] == score["origins"] == len(values) - MIN_TRAIN


def test_intervals_are_roughly_calibrated_on_a_steady_series() -> None:
    """On stationary noise the 80 % interval should hold about 80 % of the outcomes."""
    values = 10 + np.random.default_rng(11).normal(0, 1.5, 48)
    score = backtest_score(rolling_origin_backtest(values, SPECS["deployment_frequency_per_day"], horizon=2))
    print(f"\nsteady series: coverage {score['coverage']:.2f}, MAPE {score['mape_pct']:.1f}%")
    assert 0.65 <= score["coverage"] <= 0.95
    assert score["mape_pct"] < 20
