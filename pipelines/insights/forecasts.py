"""Forecasts of weekly DORA figures with prediction intervals, scored by a rolling-origin backtest.

Model (why this one): simple exponential smoothing with additive errors — ETS(A,N,N), statsmodels'
`ETSModel` — fitted by maximum likelihood, whose prediction intervals are analytic (the variance
grows as σ²(1 + (h−1)α²) with the horizon h). The series are short (a year of weeks at most), shift
level when a team changes how it works (the improvement programme), and show no trend that would
outlast a quarter or any weekly-grain seasonality, so a local level is the model their length can
support; a trend or seasonal term would be fitted to noise. Lead times are skewed and positive, so
they are modelled on the log scale (the interval maps back exactly; the point forecast becomes the
median). Rates are clipped to [0, 1] and frequencies at 0.

Backtest (no look-ahead): for every origin o from `MIN_TRAIN` weeks on, the model is fitted to the
weeks before o only and forecasts the next `HORIZON` weeks; those forecasts are compared with what
happened. Nothing computed from weeks ≥ o (no scaling, no model choice, no parameter) reaches the
forecast made at o — `tests/insights/test_forecasts.py` shuffles the future to prove it. Scores:
MAPE over the points whose actual value is not 0 (a percentage error of 0 is undefined), and the
share of actual values inside the prediction interval (coverage; 80 % is the target for an 80 %
interval). The same scores for the naive forecast (repeat the last week) sit beside them, so a
reader can see whether the model beats doing nothing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

HORIZON = 6
"""Weeks ahead (the issue asks for 4–8)."""
MIN_TRAIN = 12
"""Weeks a model needs before it forecasts: a quarter, enough for a level and its noise."""
INTERVAL = 0.80
"""Prediction interval level: wide enough to be useful, narrow enough that coverage can be checked in a year."""
METHOD = "ETS(A,N,N) simple exponential smoothing (statsmodels ETSModel), analytic prediction interval"


@dataclass(frozen=True)
class ForecastSpec:
    column: str  # the kpi.dora column
    label: str
    log: bool  # model on the log scale
    upper_bound: float | None  # rates cannot exceed 1
    zero_when_empty: bool  # a week without the sample is a real 0 (frequency), not a missing value


SPECS: dict[str, ForecastSpec] = {
    "deployment_frequency_per_day": ForecastSpec("deployment_frequency_per_day", "deployments per day", False, None,
                                                 True),
    "lead_time_hours_median": ForecastSpec("lead_time_hours_median", "median lead time (h)", True, None, False),
    "change_failure_rate": ForecastSpec("change_failure_rate", "change failure rate", False, 1.0, False),
}  # fmt: skip


def weekly_values(dora: pl.DataFrame, spec: ForecastSpec) -> tuple[list[date], np.ndarray]:
    """The metric's complete weeks from the first week with a deployment; NaN where the week has no value."""
    weeks = dora.filter(pl.col("period_kind") == "week").sort("period_start")
    started = weeks.filter((pl.col("deployments") > 0).cum_max())
    values = started[spec.column].cast(pl.Float64)
    if spec.zero_when_empty:
        values = values.fill_null(0.0)
    return started["period_start"].to_list(), values.fill_null(float("nan")).to_numpy().astype(float)


def _fit_forecast(train: np.ndarray, steps: int, spec: ForecastSpec, level: float) -> np.ndarray:
    """(steps × 3) array of forecast, lower, upper from the weeks in `train` (NaN weeks skipped)."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = train[np.isfinite(train)]
    if spec.log:
        y = np.log(np.maximum(y, 1e-6))
    if y.size < 4:
        return np.full((steps, 3), np.nan)
    if float(np.ptp(y)) == 0.0:
        # A constant history (a rate that was 0 every week) has no noise to model: forecast the constant.
        out = np.tile([y[0], y[0], y[0]], (steps, 1))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on short series; the backtest judges the fit
            # statsmodels' ETS prediction needs an indexed series (a bare array fails in get_prediction)
            fit = ETSModel(pd.Series(y), error="add", trend=None, seasonal=None).fit(disp=False)
            frame = fit.get_prediction(start=y.size, end=y.size + steps - 1).summary_frame(alpha=1 - level)
        out = frame[["mean", "pi_lower", "pi_upper"]].to_numpy(dtype=float)
    if spec.log:
        out = np.exp(out)
    return np.clip(out, 0.0, spec.upper_bound if spec.upper_bound is not None else np.inf)


def rolling_origin_backtest(
    values: np.ndarray,
    spec: ForecastSpec,
    *,
    horizon: int = HORIZON,
    min_train: int = MIN_TRAIN,
    level: float = INTERVAL,
) -> pl.DataFrame:
    """One row per (origin, step): the forecast made with the weeks before `origin` only, and the actual."""
    rows = []
    n = len(values)
    for origin in range(min_train, n):
        steps = min(horizon, n - origin)
        train = values[:origin]  # the only data the forecast at this origin may see
        predicted = _fit_forecast(train, steps, spec, level)
        last = train[np.isfinite(train)]
        naive = float(last[-1]) if last.size else math.nan
        for step in range(1, steps + 1):
            forecast, lower, upper = predicted[step - 1]
            rows.append(
                {
                    "origin": origin,
                    "step": step,
                    "target": origin + step - 1,
                    "forecast": float(forecast),
                    "lower": float(lower),
                    "upper": float(upper),
                    "naive": naive,
                    "actual": float(values[origin + step - 1]),
                }
            )
    schema = {"origin": pl.Int64, "step": pl.Int64, "target": pl.Int64, "forecast": pl.Float64, "lower": pl.Float64,
              "upper": pl.Float64, "naive": pl.Float64, "actual": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def backtest_score(backtest: pl.DataFrame, *, until: int | None = None, step: int | None = None) -> dict[str, Any]:
    """MAPE, coverage and MAE of the backtest (optionally only targets before week `until`, or one step)."""
    rows = backtest.filter(pl.col("actual").is_not_nan() & pl.col("forecast").is_not_nan())
    if until is not None:
        rows = rows.filter(pl.col("target") < until)
    if step is not None:
        rows = rows.filter(pl.col("step") == step)
    nonzero = rows.filter(pl.col("actual") != 0)
    ape = ((nonzero["forecast"] - nonzero["actual"]).abs() / nonzero["actual"].abs()) * 100
    naive = nonzero.filter(pl.col("naive").is_not_nan())
    naive_ape = ((naive["naive"] - naive["actual"]).abs() / naive["actual"].abs()) * 100
    inside = rows.filter((pl.col("actual") >= pl.col("lower")) & (pl.col("actual") <= pl.col("upper")))
    return {
        "origins": rows["origin"].n_unique(),
        "points": rows.height,
        "mape_points": nonzero.height,
        "mape_pct": float(ape.mean()) if nonzero.height else None,  # type: ignore[arg-type]
        "naive_mape_pct": float(naive_ape.mean()) if naive.height else None,  # type: ignore[arg-type]
        "coverage": inside.height / rows.height if rows.height else None,
        "mae": float((rows["forecast"] - rows["actual"]).abs().mean()) if rows.height else None,  # type: ignore[arg-type]
    }


def _fmt(value: float | None, spec: ForecastSpec) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * 100:.1f}%" if spec.upper_bound == 1.0 else f"{value:.2f}"


def forecast_rows(dora: pl.DataFrame, *, horizon: int = HORIZON, level: float = INTERVAL) -> list[dict[str, Any]]:
    """The `kpi.forecasts` rows: each metric's next `horizon` weeks, with the backtest beside each."""
    rows: list[dict[str, Any]] = []
    for metric, spec in SPECS.items():
        weeks, values = weekly_values(dora, spec)
        observed = values[np.isfinite(values)]
        if not weeks:
            continue
        backtest = rolling_origin_backtest(values, spec, horizon=horizon, level=level)
        overall = backtest_score(backtest)
        predicted = _fit_forecast(values, horizon, spec, level)
        last_week = weeks[-1]
        reason = None if observed.size >= MIN_TRAIN else f"fewer than {MIN_TRAIN} weeks with a value ({observed.size})"
        for step in range(1, horizon + 1):
            forecast, lower, upper = (None, None, None) if reason else (float(v) for v in predicted[step - 1])
            per_step = backtest_score(backtest, step=step)
            start = last_week + timedelta(days=7 * step)
            row = {
                "metric": metric,
                "step": step,
                "week_start": start,
                "week_end": start + timedelta(days=6),
                "forecast": forecast,
                "lower": lower,
                "upper": upper,
                "interval_level": level,
                "method": METHOD + (" on the log scale" if spec.log else ""),
                "training_weeks": int(observed.size),
                "trained_from": weeks[0],
                "trained_to": last_week,
                "last_observed": float(observed[-1]) if observed.size else None,
                "backtest_origins": overall["origins"],
                "backtest_points": overall["points"],
                "backtest_mape_points": overall["mape_points"],
                "backtest_mape_pct": overall["mape_pct"],
                "backtest_naive_mape_pct": overall["naive_mape_pct"],
                "backtest_coverage": overall["coverage"],
                "backtest_mae": overall["mae"],
                "backtest_step_points": per_step["points"],
                "backtest_step_mape_pct": per_step["mape_pct"],
                "backtest_step_coverage": per_step["coverage"],
                "null_reason": reason,
            }
            row["explanation"] = explain(row, spec)
            rows.append(row)
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def explain(row: dict[str, Any], spec: ForecastSpec) -> str:
    """The forecast and how far to trust it, in one sentence built from the row's own figures."""
    if row["forecast"] is None:
        return f"No forecast of {spec.label} for the week of {row['week_start']}: {row['null_reason']}."
    coverage = "n/a" if row["backtest_step_coverage"] is None else f"{row['backtest_step_coverage'] * 100:.0f}%"
    ahead = f"{row['step']} week{'s' if row['step'] > 1 else ''} ahead"
    return (
        f"{spec.label.capitalize()} in the week of {row['week_start']} ({ahead}): "
        f"{_fmt(row['forecast'], spec)}, {row['interval_level'] * 100:.0f}% interval "
        f"{_fmt(row['lower'], spec)}–{_fmt(row['upper'], spec)}, from {row['training_weeks']} weeks to "
        f"{row['trained_to']}. Backtested {ahead} over {row['backtest_step_points']} forecasts: "
        f"MAPE {_pct(row['backtest_step_mape_pct'])}, interval held the actual {coverage} of the time "
        f"(all horizons: MAPE {_pct(row['backtest_mape_pct'])} vs {_pct(row['backtest_naive_mape_pct'])} for "
        f"repeating the last week)."
    )


FORECAST_SCHEMA: dict[str, Any] = {
    "metric": pl.String, "step": pl.Int64, "week_start": pl.Date, "week_end": pl.Date, "forecast": pl.Float64,
    "lower": pl.Float64, "upper": pl.Float64, "interval_level": pl.Float64, "method": pl.String,
    "training_weeks": pl.Int64, "trained_from": pl.Date, "trained_to": pl.Date, "last_observed": pl.Float64,
    "backtest_origins": pl.Int64, "backtest_points": pl.Int64, "backtest_mape_points": pl.Int64,
    "backtest_mape_pct": pl.Float64, "backtest_naive_mape_pct": pl.Float64, "backtest_coverage": pl.Float64,
    "backtest_mae": pl.Float64, "backtest_step_points": pl.Int64, "backtest_step_mape_pct": pl.Float64,
    "backtest_step_coverage": pl.Float64, "null_reason": pl.String, "explanation": pl.String,
}  # fmt: skip


def forecasts(dora: pl.DataFrame) -> pl.DataFrame:
    """`kpi.forecasts` as a frame."""
    return pl.DataFrame(forecast_rows(dora), schema=FORECAST_SCHEMA)
