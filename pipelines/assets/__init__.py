"""Dagster assets by concern: extraction (dlt), SQL models, KPIs, publication."""
