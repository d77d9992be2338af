"""Fixtures of the API tests: the app over the session's built warehouse, its token, and the yardsticks."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipelines.api import ApiSettings, create_app
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def published(built_warehouse: dict[str, object]) -> Path:
    """The published warehouse of the session's nightly run (never written by these tests)."""
    # A failed run publishes nothing, so there would be no warehouse to serve.
    assert built_warehouse["result"].success, "the session's nightly run failed"  # type: ignore[attr-defined]
    return built_warehouse["paths"].published  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="session")
def api_settings(published: Path, tmp_path_factory: pytest.TempPathFactory) -> ApiSettings:
    # The annotation store lives in a folder of its own, so other suites sharing the warehouse never see it.
    return ApiSettings(
        published=published, annotations=tmp_path_factory.mktemp("api") / "annotations.duckdb", token=TOKEN
    )


@pytest.fixture(scope="session")
def app(api_settings: ApiSettings) -> FastAPI:
    return create_app(api_settings)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def token() -> str:
    return TOKEN


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def wh(published: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for the tests' own, independent computations."""
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH '{published}' AS wh (READ_ONLY)")
    con.execute("USE wh")
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


@pytest.fixture(scope="session")
def truth(world: World) -> dict[str, pl.DataFrame]:
    """What really happened in the sandbox world the warehouse was built from."""
    return dict(truth_frames(world))


@pytest.fixture()
def warehouse_copy(published: Path, tmp_path: Path) -> Path:
    """A private copy of the published warehouse that a test may tamper with or replace."""
    copy = tmp_path / "opsmap.duckdb"
    shutil.copyfile(published, copy)
    return copy
