"""The insight tables' documentation (written into DuckDB as comments) and their writer."""

from __future__ import annotations

from typing import Any

import polars as pl

from pipelines.insights.success import SIGNALS

ANOMALY_DOCS: dict[str, str] = {
    "series": "Series family: `service.*` / `feature.*` (per subject, from the marts) or `dora.*` / `weekly.*` "
    "(organisation-wide, from kpi.dora and kpi.weekly_metrics).",
    "scope": "`service`, `feature` or `org`.",
    "subject": "The service, the feature (epic key), or `organisation`.",
    "week_start": "Monday of the flagged ISO week.",
    "week_end": "Sunday of the flagged ISO week.",
    "observed": "The series' value that week.",
    "expected": "Median of the series over the previous weeks (up to 8 with data).",
    "lower": "Lower end of the expected range: expected − 3.5 × robust_scale (bounded at 0, and 1 for rates).",
    "upper": "Upper end of the expected range: expected + 3.5 × robust_scale.",
    "robust_scale": "The spread used: the larger of mad_scale and noise_floor.",
    "mad_scale": "1.4826 × median absolute deviation of the previous weeks.",
    "noise_floor": "Sampling noise of the week's value: √λ for counts, √(p(1−p)/n) for rates, 10 % of a level.",
    "score": "(observed − expected) / robust_scale; flagged beyond ±3.5 in the harmful direction.",
    "direction": "`above` or `below` the expected range.",
    "sample_size": "Items behind the week's value (attempts, deployments, test runs, events, …).",
    "history_weeks": "Earlier weeks with data the expected range rests on (4 to 8).",
    "source": "The table the series comes from.",
    "method": "The detection rule.",
    "explanation": "The row's figures in one sentence.",
}

FORECAST_DOCS: dict[str, str] = {
    "metric": "The kpi.dora weekly column forecast.",
    "step": "Weeks ahead of the last complete week (1–6).",
    "week_start": "Monday of the forecast week.",
    "week_end": "Sunday of the forecast week.",
    "forecast": "Point forecast (for lead time: the median on the original scale); null with null_reason.",
    "lower": "Lower end of the prediction interval.",
    "upper": "Upper end of the prediction interval.",
    "interval_level": "Nominal coverage of the interval (0.8).",
    "method": "The model.",
    "training_weeks": "Weeks with a value the final model was fitted to.",
    "trained_from": "First week of the training series (the first week with a deployment).",
    "trained_to": "Last complete week the model saw.",
    "last_observed": "The metric's value in the last week with one.",
    "backtest_origins": "Rolling origins of the backtest (each fitted only to the weeks before it).",
    "backtest_points": "Forecasts scored in the backtest (all horizons).",
    "backtest_mape_points": "Of those, points with a non-zero actual (MAPE is undefined at 0).",
    "backtest_mape_pct": "Mean absolute percentage error of the backtest forecasts, all horizons.",
    "backtest_naive_mape_pct": "The same for the naive forecast (repeat the last week), for comparison.",
    "backtest_coverage": "Share of backtest actuals inside their prediction interval, all horizons.",
    "backtest_mae": "Mean absolute error of the backtest forecasts, in the metric's unit.",
    "backtest_step_points": "Backtest forecasts made this many weeks ahead.",
    "backtest_step_mape_pct": "MAPE of the backtest forecasts made this many weeks ahead.",
    "backtest_step_coverage": "Interval coverage of the backtest forecasts made this many weeks ahead.",
    "null_reason": "Why there is no forecast.",
    "explanation": "The row's figures in one sentence.",
}

PREDICTION_DOCS: dict[str, str] = {
    "feature_key": "Feature (Jira epic).",
    "project_key": "Jira project (the team whose history is a signal).",
    "summary": "Epic summary.",
    "prediction_kind": "`open`: not yet released, or released less than 28 days ago (outcome unknown); "
    "`backtest`: outcome known, predicted as of its release from earlier features only.",
    "released_at": "First release (null when not yet released).",
    "predicted_as_of": "The cutoff: signals and training outcomes are those known at this moment.",
    "probability": "Probability of reaching the adoption threshold in the 28 days after release.",
    "predicted_adopted": "probability ≥ 0.5.",
    "adopted": "What happened (backtest rows only).",
    "correct": "predicted_adopted = adopted (backtest rows only).",
    "baseline_correct": "Whether always predicting the training set's majority class would have been right.",
    "adoption_rate": "The measured adoption rate (backtest rows only).",
    "model": "`logistic_regression`, or `base_rate` when the training outcomes were all alike.",
    "training_features": "Features of known outcome the model was trained on.",
    "training_adopted": "Of those, how many reached the threshold.",
    "trained_on": "Their keys (all outcomes known before predicted_as_of).",
    "drivers": "JSON: the three signals that moved the log-odds most at this feature's values.",
    **{name: f"Signal: {doc}" for name, doc in SIGNALS.items()},
    "null_reason": "Why there is no probability.",
    "backtest_sample": "Held-out features with a prediction and a known outcome (the accuracy's sample size).",
    "backtest_accuracy": "Share of them predicted right (kpi.success_metrics.prediction_accuracy over all time).",
    "backtest_baseline_accuracy": "Share the majority-class baseline got right on the same features.",
    "explanation": "The row's figures in one sentence.",
}

RECOMMENDATION_DOCS: dict[str, str] = {
    "kind": "`lead_time_bottleneck`, `failing_job`, `failing_test` or `low_adoption`.",
    "rank": "Rank within the kind (1 = most pressing).",
    "subject": "Service, CI pipeline, test class or feature.",
    "service": "The service the subject belongs to (the repository's name); null for features.",
    "metric": "What value measures.",
    "value": "The figure the recommendation rests on.",
    "reference_value": "What it is compared with: the median lead time, the failure rate, the adoption threshold.",
    "unit": "Unit of value.",
    "sample_size": "Items behind value (changes, builds, test runs, active users).",
    "period_start": "First day of the window (the KPIs' current window).",
    "period_end": "Last day of the window.",
    "recommendation": "The recommendation in words, with its figures.",
    "evidence": "JSON: every figure behind the recommendation.",
}

INSIGHT_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "anomalies": (
        "Weeks whose KPI departed from the series' own recent behaviour in the harmful direction "
        "(trailing 8-week median ± 3.5 robust SD), per organisation, service and feature.",
        ANOMALY_DOCS,
    ),
    "forecasts": (
        "Next 6 weeks of deployment frequency, lead time and change failure rate with 80 % prediction "
        "intervals, and the rolling-origin backtest score beside each forecast.",
        FORECAST_DOCS,
    ),
    "feature_success_predictions": (
        "Probability that features reach the adoption threshold, from pre-release signals (logistic "
        "regression); open features and the time-ordered, held-out backtest rows.",
        PREDICTION_DOCS,
    ),
    "recommendations": (
        "Bottlenecks in the current window: slowest lead-time phase per service, most-failing CI pipelines "
        "and tests, features with low adoption — each with the figures behind it.",
        RECOMMENDATION_DOCS,
    ),
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def write_insight_table(con: Any, name: str, frame: pl.DataFrame) -> None:
    """Replace `kpi.<name>` with `frame` and document the table and every column."""
    description, docs = INSIGHT_TABLES[name]
    missing = set(frame.columns) - set(docs)
    if missing:  # an undocumented column is a bug, as in the SQL models
        raise ValueError(f"kpi.{name}: undocumented columns {sorted(missing)}")
    con.execute("CREATE SCHEMA IF NOT EXISTS kpi")
    con.register("insight_frame", frame.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE kpi.{name} AS SELECT * FROM insight_frame")
    finally:
        con.unregister("insight_frame")
    con.execute(f"COMMENT ON TABLE kpi.{name} IS {_quote(description)}")
    for column in frame.columns:
        con.execute(f"COMMENT ON COLUMN kpi.{name}.{column} IS {_quote(docs[column])}")
