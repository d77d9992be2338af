"""Fixtures for the data-quality acceptance tests: a private, corruptible copy of the built warehouse.

Every test starts from the warehouse the session's `built_warehouse` run published (every check
passed on it), copies it as the build file of a temporary warehouse, corrupts what it needs, and
runs the real Dagster checks on it in-process (helpers in `quality_support.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture()
def warehouse_copy(built_warehouse: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built warehouse as `<tmp>/opsmap.build.duckdb`, which `Warehouse` now opens."""
    build = tmp_path / "opsmap.build.duckdb"
    shutil.copyfile(built_warehouse["paths"].published, build)
    build.chmod(0o644)  # the published copy may be read-only for its readers
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
    return build
