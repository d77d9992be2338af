"""`opsmap backfill`: the daily-partitioned usage tables rebuilt for a range of days, idempotently.

Runs on a private copy of the session's built warehouse: three days are emptied, backfilled twice,
and every table of the warehouse must equal the full build's after each backfill.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterInstance

from pipelines.cli import main
from pipelines.partitions import partitions_start

DAYS = ("2026-03-01", "2026-03-03")
PARTITIONED = ("usage.active_users_daily", "usage.feature_usage_daily")


def table_digests(path: Path) -> dict[str, tuple[int, str]]:
    """Every table's row count and an order-independent digest of its rows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
        found = {}
        for (table,) in tables:
            rows = sorted(repr(r) for r in con.execute(f"SELECT * FROM {table}").fetchall())
            found[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        return found
    finally:
        con.close()


@pytest.fixture()
def private_warehouse(built_warehouse: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    published = tmp_path / "opsmap.duckdb"
    build = tmp_path / "opsmap.build.duckdb"
    shutil.copyfile(built_warehouse["paths"].published, build)
    build.chmod(0o644)
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(published))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return build


def test_backfilling_three_days_twice_gives_the_full_builds_tables(private_warehouse: Path) -> None:
    build = private_warehouse
    reference = table_digests(build)
    con = duckdb.connect(str(build))
    try:
        for table in PARTITIONED:
            lost = con.execute(f"DELETE FROM {table} WHERE day BETWEEN ? AND ?", list(DAYS)).fetchall()
            assert lost[0][0] > 0, f"{table} has no rows on {DAYS} to lose: pick days with events"
    finally:
        con.close()
    assert table_digests(build) != reference

    published = build.with_name("opsmap.duckdb")
    for attempt in (1, 2):
        outcome = CliRunner().invoke(main, ["backfill", "--start", DAYS[0], "--end", DAYS[1]])
        assert outcome.exit_code == 0, outcome.output
        assert "opsmap backfill succeeded" in outcome.output
        assert table_digests(build) == reference, f"backfill {attempt} did not restore the full build's tables"
        assert table_digests(published) == reference, f"backfill {attempt} did not publish them"

    instance = DagsterInstance.get()
    try:
        for table in PARTITIONED:
            key = AssetKey(table.split("."))
            assert instance.get_materialized_partitions(key) == {"2026-03-01", "2026-03-02", "2026-03-03"}
    finally:
        instance.dispose()


def test_backfill_refuses_days_outside_the_partitions(private_warehouse: Path) -> None:
    before = table_digests(private_warehouse)
    backwards = CliRunner().invoke(main, ["backfill", "--start", "2026-03-05", "--end", "2026-03-01"])
    assert backwards.exit_code == 2 and "is after --end" in backwards.output
    first = partitions_start()
    early = date(first.year - 1, 1, 1).isoformat()
    outside = CliRunner().invoke(main, ["backfill", "--start", early, "--end", DAYS[1]])
    assert outside.exit_code == 2 and "usage_partitions_start" in outside.output
    assert table_digests(private_warehouse) == before, "a refused backfill changed nothing"


def test_backfill_needs_a_built_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "none" / "opsmap.duckdb"))
    outcome = CliRunner().invoke(main, ["backfill", "--start", DAYS[0], "--end", DAYS[1]])
    assert outcome.exit_code == 1 and "run `opsmap run` first" in outcome.output


def test_the_nightly_run_builds_every_day_of_the_partitioned_tables(built_warehouse: dict) -> None:
    """The nightly job passes no partition range: the usage tables hold every day with events."""
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    try:
        staged = con.execute(
            "SELECT count(DISTINCT day) FROM intermediate.int_events_linked_to_features WHERE day >= ?",
            [partitions_start()],
        ).fetchall()[0][0]
        built = con.execute("SELECT count(*) FROM usage.active_users_daily").fetchall()[0][0]
    finally:
        con.close()
    assert staged > 300 and built == staged
