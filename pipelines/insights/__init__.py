"""Insights over the KPIs and marts: anomalies, forecasts, feature-success predictions, recommendations.

Each module is a pure function of polars frames (mart- or KPI-shaped), so the Dagster assets
(`pipelines/assets/insights.py`) and the tests (which also feed frames built from the sandbox's
ground truth) run exactly the same code. Every row an insight produces carries the figures it
rests on; the plain-language text is assembled from those figures and nothing else.
"""
