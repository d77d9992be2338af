"""Daily partitions of the high-volume usage tables, and the day ranges runs and backfills cover.

A model opts in with `partitioned_by: <date column>` in its header. Such a table is maintained a
range of UTC days at a time: the days in the range are deleted and rebuilt from upstream in one
transaction, the other days stay as they are. Runs cover a range in one step (Dagster's single-run
backfill policy), so a year of days costs one query, not 365 steps.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import yaml
from dagster import DailyPartitionsDefinition

from pipelines.settings import WAREHOUSE_SQL_DIR

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partitions_start(settings_file: str | None = None) -> date:
    """`usage_partitions_start` from warehouse/settings.yaml."""
    path = settings_file or WAREHOUSE_SQL_DIR / "settings.yaml"
    with open(path, encoding="utf-8") as fh:
        settings = yaml.safe_load(fh) or {}
    raw = (settings.get("usage_partitions_start") or {}).get("value")
    try:
        return date.fromisoformat(str(raw))
    except ValueError as exc:
        raise ValueError(f"{path}: usage_partitions_start must be a YYYY-MM-DD date, not {raw!r}") from exc


USAGE_DAILY = DailyPartitionsDefinition(start_date=partitions_start().isoformat(), timezone="UTC")
"""One partition per UTC day, from `usage_partitions_start` to yesterday (the last complete day)."""


def last_complete_day(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).date() - timedelta(days=1)


def full_range(now: datetime | None = None) -> tuple[date, date]:
    """Every day the partitions have: what a nightly run rebuilds."""
    return partitions_start(), last_complete_day(now)


def checked_range(start: date, end: date, now: datetime | None = None) -> tuple[date, date]:
    """`start`–`end` if the partitions have those days; otherwise a ValueError that says which days they have."""
    first, last = full_range(now)
    if start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    if start < first or end > last:
        raise ValueError(
            f"{start} – {end} is outside the daily partitions, {first} – {last} "
            "(the first day is usage_partitions_start in warehouse/settings.yaml; the last is yesterday, UTC)"
        )
    return start, end


def range_tags(start: date, end: date) -> dict[str, str]:
    """Run tags that make a run cover the partitions `start`–`end` (inclusive)."""
    return {RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()}
