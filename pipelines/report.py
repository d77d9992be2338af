"""The KPI report: one self-contained HTML file (inline CSS and SVG charts, no scripts, no network).

Charts are Vega-Lite specs (altair) rendered to SVG by vl-convert, so the file opens anywhere,
offline, and a headless browser can screenshot it. Content: the headline success metrics against
their targets, weekly DORA trends with the baseline and current windows shaded, the
business-value waterfall, and the insights (`pipelines/insights/report_section.py`).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import polars as pl
import vl_convert as vlc

from pipelines.insights.report_section import insights_html, load_insights

DORA_SERIES = [
    ("deployment_frequency_per_day", "Deployments per day"),
    ("lead_time_hours_median", "Lead time, median (h)"),
    ("change_failure_rate", "Change failure rate"),
    ("failed_deployment_recovery_hours_median", "Failed-deployment recovery, median (h)"),
]

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2933; }
h1 { margin-bottom: 0; } .sub { color: #616e7c; margin-top: .3rem; }
h2 { border-bottom: 1px solid #e4e7eb; padding-bottom: .3rem; margin-top: 2.5rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { padding: .4rem .6rem; border-bottom: 1px solid #e4e7eb; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.met { color: #1e7d32; font-weight: 600; } .missed { color: #b3261e; font-weight: 600; } .na { color: #9aa5b1; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.chart svg { max-width: 100%; height: auto; }
.def { color: #616e7c; font-size: .8rem; text-align: left; }
"""


def load(warehouse: Path) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {
            "dora": con.sql("SELECT * FROM kpi.dora ORDER BY period_kind, period_start").pl(),
            "success": con.sql("SELECT * FROM kpi.success_metrics ORDER BY metric").pl(),
            "value": con.sql("SELECT * FROM kpi.business_value").pl(),
            **load_insights(con),
        }
    finally:
        con.close()


def svg(chart: alt.TopLevelMixin) -> str:
    return vlc.vegalite_to_svg(chart.to_dict())


def dora_charts(dora: pl.DataFrame) -> list[str]:
    weeks = dora.filter(pl.col("period_kind") == "week").to_pandas()
    windows = dora.filter(pl.col("period_kind") != "week").select("period_kind", "period_start", "period_end")
    shade = (
        alt.Chart(windows.to_pandas())
        .mark_rect(opacity=0.12)
        .encode(x="period_start:T", x2="period_end:T", color=alt.Color("period_kind:N", title="window"))
    )
    charts = []
    for column, title in DORA_SERIES:
        line = (
            alt.Chart(weeks)
            .mark_line(point=True)
            .encode(x=alt.X("period_start:T", title="week"), y=alt.Y(f"{column}:Q", title=None))
        )
        charts.append(svg((shade + line).properties(title=title, width=460, height=180)))
    return charts


def success_chart(success: pl.DataFrame) -> str:
    ratios = success.filter(pl.col("unit") == "ratio").select("metric", "baseline_value", "current_value", "target")
    long = ratios.unpivot(index=["metric", "target"], variable_name="window", value_name="value").to_pandas()
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=alt.Y("metric:N", title=None),
            x=alt.X("value:Q", title="share", scale=alt.Scale(domain=[0, 1])),
            yOffset="window:N",
            color=alt.Color("window:N", title=None),
        )
    )
    ticks = (
        alt.Chart(ratios.to_pandas()).mark_tick(color="black", thickness=2, size=22).encode(y="metric:N", x="target:Q")
    )
    return svg((bars + ticks).properties(title="Rate metrics: baseline, current and target (black)", width=900))


def waterfall_chart(value: pl.DataFrame) -> str:
    lines = value.filter(~pl.col("value_line").str.starts_with("total")).select(
        "value_line", pl.col("measured_value_usd").fill_null(0.0) / 1e6
    )
    running = lines.with_columns(end=pl.col("measured_value_usd").cum_sum()).with_columns(
        start=pl.col("end") - pl.col("measured_value_usd")
    )
    order = running["value_line"].to_list()
    chart = (
        alt.Chart(running.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X("value_line:N", sort=order, title=None),
            y=alt.Y("start:Q", title="USD millions per year"),
            y2="end:Q",
            color=alt.condition("datum.measured_value_usd >= 0", alt.value("#2f6fb0"), alt.value("#b3261e")),
        )
    )
    return svg(chart.properties(title="Measured annual value by line (cumulative)", width=900, height=260))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return '<span class="na">n/a</span>'
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return html.escape(str(value))


def success_table(success: pl.DataFrame) -> str:
    rows = []
    for r in success.to_dicts():
        target = f"{r['target']:+.0f}%" if r["target_kind"] == "improvement_pct" else _fmt(r["target"], r["unit"])
        met = {True: '<span class="met">met</span>', False: '<span class="missed">missed</span>'}.get(
            r["met"], '<span class="na">n/a</span>'
        )
        rows.append(
            f"<tr><td>{html.escape(r['metric'])}<div class='def'>{html.escape(r['definition'])}</div></td>"
            f"<td>{_fmt(r['baseline_value'], r['unit'])}</td><td>{_fmt(r['current_value'], r['unit'])}</td>"
            f"<td>{_fmt(r['improvement_pct'])}</td><td>{target}</td><td>{met}</td>"
            f"<td>{r['baseline_sample']} / {r['current_sample']}</td></tr>"
        )
    head = (
        "<tr><th>metric</th><th>baseline</th><th>current</th><th>change %</th><th>target</th><th></th><th>n</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def value_table(value: pl.DataFrame) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['value_line'])}</td><td>{html.escape(r['driver_metric'] or '')}</td>"
        f"<td>{_fmt(r['measured_value_usd'])}</td><td>{_fmt(r['value_at_target_usd'])}</td></tr>"
        for r in value.to_dicts()
    )
    return (
        f"<table><tr><th>value line</th><th>driver</th><th>measured USD</th><th>at target USD</th></tr>{rows}</table>"
    )


def render(frames: dict[str, pl.DataFrame], generated_at: datetime | None = None) -> str:
    dora, success, value = frames["dora"], frames["success"], frames["value"]
    current = dora.filter(pl.col("period_kind") == "current").to_dicts()
    window = f"{current[0]['period_start']} – {current[0]['period_end']}" if current else "n/a"
    tier = current[0]["performance_tier"] if current else None
    charts = "".join(f'<div class="chart">{c}</div>' for c in dora_charts(dora))
    stamp = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>opsmap KPI report</title><style>{CSS}</style></head>
<body>
<h1>opsmap KPI report</h1>
<p class="sub">Current window {window} · DORA performance tier: <b>{_fmt(tier)}</b> · generated {stamp}</p>
<h2>Success metrics</h2>
{success_table(success)}
<div class="chart">{success_chart(success)}</div>
<h2>DORA, week by week</h2>
<div class="grid">{charts}</div>
<h2>Business value</h2>
<div class="chart">{waterfall_chart(value)}</div>
{value_table(value)}
{insights_html(frames)}
</body></html>
"""


def write_report(warehouse: Path, out: Path) -> Path:
    """Render the report from the KPI tables of `warehouse` to `out` (written atomically)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(render(load(warehouse)), encoding="utf-8")
    tmp.replace(out)
    return out
