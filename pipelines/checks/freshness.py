"""Freshness of the raw layer, for a nightly cadence: a `freshness` check on every raw asset.

What is checked is the extraction, not the data's own timestamps: a quiet system (no new incident
for a week) is not stale, but a system whose nightly load stopped is. Each `raw_<system>` dataset
records its loads in `_dlt_loads` (`status = 0` once committed); the check fails (WARN) when the
newest committed load of the table's dataset is older than `OPSMAP_FRESHNESS_HOURS` (default 26: a
nightly run plus two hours of slack for a slow or late run). The evidence names the dataset's last
load, its age, the threshold, and the last load that brought rows to the table itself.

Ages are measured on the wall clock: `_dlt_loads.inserted_at` is when the load happened, whatever
moment the data describes (the sandbox serves a world whose clock may be in the past).
"""

import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    MetadataValue,
    multi_asset_check,
)

from pipelines.resources import Warehouse

CHECK_NAME = "freshness"
DEFAULT_MAX_AGE_HOURS = 26.0


def max_age_hours() -> float:
    """The freshness threshold: `OPSMAP_FRESHNESS_HOURS`, default 26 (nightly + 2 h)."""
    return float(os.environ.get("OPSMAP_FRESHNESS_HOURS") or DEFAULT_MAX_AGE_HOURS)


def _exists(con: Any, schema: str, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, table]
    ).fetchone()[0]
    return bool(found)


def last_load(con: Any, dataset: str) -> datetime | None:
    """The newest committed load of a dlt dataset (None when it never loaded)."""
    if not _exists(con, dataset, "_dlt_loads"):
        return None
    return con.execute(f'SELECT max(inserted_at) FROM "{dataset}"._dlt_loads WHERE status = 0').fetchone()[0]


def table_last_load(con: Any, dataset: str, table: str) -> datetime | None:
    """When the newest rows of a raw table were loaded (None: empty, missing, or no `_dlt_load_id`).

    Tables loaded from Arrow (Mixpanel's events) may carry no `_dlt_load_id` column at all.
    """
    if not _exists(con, dataset, table) or not _exists(con, dataset, "_dlt_loads"):
        return None
    has_load_id = con.execute(
        "SELECT count(*) FROM duckdb_columns() "
        "WHERE schema_name = ? AND table_name = ? AND column_name = '_dlt_load_id'",
        [dataset, table],
    ).fetchone()[0]
    if not has_load_id:
        return None
    return con.execute(
        f'SELECT max(l.inserted_at) FROM "{dataset}"._dlt_loads AS l '
        f'WHERE l.load_id = (SELECT max(_dlt_load_id) FROM "{dataset}"."{table}")'
    ).fetchone()[0]


def freshness(con: Any, key: AssetKey, now: datetime, threshold_hours: float) -> AssetCheckResult:
    """The freshness verdict of one raw asset, with its evidence."""
    dataset, table = key.path[0], key.path[-1]
    loaded = last_load(con, dataset)
    table_loaded = table_last_load(con, dataset, table)
    age = None if loaded is None else (now - loaded).total_seconds() / 3600
    passed = age is not None and age <= threshold_hours
    if loaded is None:
        description = f"{dataset} has no committed load"
    elif not passed:
        description = f"{dataset} last loaded {age:.1f} h ago (threshold {threshold_hours:g} h)"
    else:
        description = None
    return AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "dataset_last_load_at": MetadataValue.text(loaded.isoformat() if loaded else "never"),
            "age_hours": MetadataValue.float(round(age, 2)) if age is not None else MetadataValue.text("n/a"),
            "threshold_hours": MetadataValue.float(threshold_hours),
            "table_last_load_at": MetadataValue.text(table_loaded.isoformat() if table_loaded else "not recorded"),
        },
    )


def freshness_checks(extraction: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One multi-check per `raw_<system>` dataset, covering every raw asset of it (one step per system)."""
    by_dataset: dict[str, list[AssetKey]] = {}
    for assets_def in extraction:
        for key in assets_def.keys:
            if key.path[0].startswith("raw_"):
                by_dataset.setdefault(key.path[0], []).append(key)
    checks = []
    for dataset, keys in sorted(by_dataset.items()):
        specs = [
            AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description=f"The newest committed load of {dataset} (`_dlt_loads`) is at most "
                f"OPSMAP_FRESHNESS_HOURS old (default {DEFAULT_MAX_AGE_HOURS:g} h: nightly + 2 h). WARN.",
            )
            for key in sorted(keys, key=lambda k: k.to_user_string())
        ]
        checks.append(_system_check(dataset, specs))
    return checks


def _system_check(dataset: str, specs: list[AssetCheckSpec]) -> AssetChecksDefinition:
    @multi_asset_check(specs=specs, name=f"{dataset}_freshness", can_subset=True)
    def _check(context: AssetCheckExecutionContext, warehouse: Warehouse) -> Iterator[AssetCheckResult]:
        now, threshold = datetime.now(UTC), max_age_hours()
        selected: set[AssetCheckKey] = set(context.selected_asset_check_keys)
        with warehouse.connect() as con:
            for spec in specs:
                if spec.key in selected:
                    yield freshness(con, spec.asset_key, now, threshold)

    return _check
