"""Shared fixtures: a small deterministic world and the sandbox serving it on loopback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Offline, quiet, and no writes outside the test's temporary folders.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# tests/ is not a package; shared test data modules (contract_catalogue) import by name from here.
sys.path.insert(0, str(Path(__file__).parent))

from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldConfig

TEST_SEED = 42
TEST_SCALE = 0.2
"""Small enough for seconds-long extractions, large enough that every entity kind and link rule occurs."""


@pytest.fixture(scope="session")
def world() -> World:
    return generate_world(WorldConfig(seed=TEST_SEED, scale=TEST_SCALE))


@pytest.fixture(scope="session")
def sandbox(world: World) -> Iterator[SandboxServer]:
    """The sandbox at the world's end, shared read-only by the session (never move its clock)."""
    with SandboxServer(world) as server:
        yield server


@pytest.fixture()
def private_sandbox(world: World) -> Iterator[SandboxServer]:
    """A sandbox of the same world that a test may move in time or fault."""
    with SandboxServer(world) as server:
        yield server


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[dict[str, object]]:
    """The whole `nightly` job, run once in-process against a sandbox of `world`, into a temporary warehouse.

    Yields the run result and the paths; the published warehouse is what SQL users would open.
    """
    from dagster import DagsterInstance

    from pipelines.runner import run_nightly
    from pipelines.settings import Paths

    folder = tmp_path_factory.mktemp("warehouse")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSMAP_WAREHOUSE", str(folder / "opsmap.duckdb"))
        mp.setenv("OPSMAP_PSEUDONYM_SALT", "test-salt")
        for system in ("JIRA", "GITHUB", "JENKINS", "DATADOG", "MIXPANEL"):
            mp.delenv(f"SOURCES__{system}__BASE_URL", raising=False)
        result = run_nightly(
            sandbox={"sandbox_seed": TEST_SEED, "sandbox_scale": TEST_SCALE}, instance=DagsterInstance.ephemeral()
        )
        yield {"result": result, "paths": Paths.from_env()}
