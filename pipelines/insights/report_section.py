"""The "Insights" section of the KPI report (`pipelines/report.py`): plain HTML tables, every figure shown.

Reads the four insight tables when they exist; a warehouse built without them renders the section
with a note instead (the report never fails for lack of insights).
"""

from __future__ import annotations

import html
from typing import Any

import duckdb
import polars as pl

INSIGHT_QUERIES = {
    "anomalies": "SELECT * FROM kpi.anomalies ORDER BY week_start DESC, series, subject",
    "forecasts": "SELECT * FROM kpi.forecasts ORDER BY metric, step",
    "predictions": "SELECT * FROM kpi.feature_success_predictions ORDER BY prediction_kind, predicted_as_of",
    "recommendations": "SELECT * FROM kpi.recommendations ORDER BY kind, rank",
}
LATEST_ANOMALIES = 12
"""Anomalous weeks shown (newest first); the table holds all of them."""


def load_insights(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame]:
    """The insight tables present in the warehouse, keyed as in `INSIGHT_QUERIES`."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'kpi'").fetchall()}
    present = {"anomalies", "forecasts", "feature_success_predictions", "recommendations"} & tables
    return {
        key: con.sql(query).pl()
        for key, query in INSIGHT_QUERIES.items()
        if query.split(" FROM kpi.")[1].split()[0] in present
    }


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return '<span class="na">n/a</span>'
    return f"{value:,.{digits}f}"


def _pct(value: Any) -> str:
    return '<span class="na">n/a</span>' if value is None else f"{value * 100:.0f}%"


def _table(head: list[str], rows: list[list[str]]) -> str:
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _anomalies(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p>No week departed from its series' recent behaviour in the harmful direction.</p>"
    rows = [
        [_e(r["week_start"]), _e(r["series"]), _e(r["subject"]), _num(r["observed"]),
         f"{_num(r['lower'])} – {_num(r['upper'])}", _num(r["score"], 1),
         f"<div class='def'>{_e(r['explanation'])}</div>"]
        for r in frame.head(LATEST_ANOMALIES).to_dicts()
    ]  # fmt: skip
    note = (
        f"<p class='sub'>{frame.height} anomalous weeks in all; the newest {min(frame.height, LATEST_ANOMALIES)}:</p>"
    )
    return note + _table(["week", "series", "subject", "observed", "expected range", "score", ""], rows)


def _forecasts(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p>No forecast: too few weeks of data.</p>"
    rows = []
    for r in frame.filter(pl.col("step").is_in([1, frame["step"].max()])).to_dicts():
        rows.append(
            [_e(r["metric"]), _e(r["week_start"]), _num(r["forecast"]), f"{_num(r['lower'])} – {_num(r['upper'])}",
             f"{_num(r['backtest_step_mape_pct'], 0)}%", _pct(r["backtest_step_coverage"]),
             f"{_num(r['backtest_mape_pct'], 0)}% / {_num(r['backtest_naive_mape_pct'], 0)}%",
             _e(r["backtest_points"])]
        )  # fmt: skip
    level = _pct(frame["interval_level"][0])
    head = ["metric", "week", "forecast", f"{level} interval", "MAPE at this horizon", "coverage at this horizon",
            "MAPE all horizons / naive", "backtest forecasts"]  # fmt: skip
    return _table(head, rows)


def _predictions(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p>No feature to predict.</p>"
    first = frame.row(0, named=True)
    accuracy = (
        f"<p>Held-out accuracy: <b>{_pct(first['backtest_accuracy'])}</b> over {first['backtest_sample']} features, "
        f"each predicted as of its release from earlier features only (always predicting the majority: "
        f"{_pct(first['backtest_baseline_accuracy'])}; target 75%).</p>"
    )
    open_rows = frame.filter(pl.col("prediction_kind") == "open").sort("probability", descending=True, nulls_last=True)
    rows = [
        [_e(r["feature_key"]), _e(r["summary"]), _pct(r["probability"]), _e(r["training_features"]),
         f"<div class='def'>{_e(r['explanation'])}</div>"]
        for r in open_rows.to_dicts()
    ]  # fmt: skip
    table = _table(["feature", "summary", "probability", "trained on", ""], rows) if rows else "<p>No open feature.</p>"
    return accuracy + table


def _recommendations(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p>No bottleneck stands out in the current window.</p>"
    rows = [
        [_e(r["kind"]), _e(r["rank"]), _e(r["subject"]), f"<div class='def'>{_e(r['recommendation'])}</div>"]
        for r in frame.to_dicts()
    ]
    return _table(["kind", "rank", "subject", "recommendation (with its figures)"], rows)


def insights_html(frames: dict[str, pl.DataFrame]) -> str:
    """The report's Insights section from the frames `load_insights` returned (missing ones noted)."""
    parts = ["<h2>Insights</h2>"]
    sections = [
        ("anomalies", "Anomalous weeks", _anomalies),
        ("forecasts", "Forecasts, with their backtest", _forecasts),
        ("predictions", "Feature success predictions", _predictions),
        ("recommendations", "Recommendations", _recommendations),
    ]
    for key, title, render in sections:
        parts.append(f"<h3>{title}</h3>")
        parts.append(render(frames[key]) if key in frames else '<p class="na">Not built in this warehouse.</p>')
    return "\n".join(parts)
