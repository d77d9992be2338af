"""The warehouse connection's memory limit: configurable, and a wrong value says what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.resources import Warehouse


def _settings(warehouse: Warehouse) -> tuple[str, bool]:
    with warehouse.connect() as con:
        limit, ordered = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('preserve_insertion_order')"
        ).fetchone()
    return limit, ordered


def test_the_build_database_gets_the_configured_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse(path=str(tmp_path / "opsmap.duckdb"))
    monkeypatch.setenv("OPSMAP_DUCKDB_MEMORY_LIMIT", "1GB")
    assert _settings(warehouse) == ("953.6 MiB", False)  # DuckDB reports 10^9 bytes in binary units
    monkeypatch.delenv("OPSMAP_DUCKDB_MEMORY_LIMIT")
    limit, _ = _settings(warehouse)
    assert limit != "953.6 MiB"  # the default, half the machine's memory


def test_a_memory_limit_duckdb_cannot_read_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSMAP_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match=r"OPSMAP_DUCKDB_MEMORY_LIMIT='lots' is not a DuckDB memory size"):
        _settings(Warehouse(path=str(tmp_path / "opsmap.duckdb")))
