"""Helpers of the data-quality acceptance tests: corrupt a warehouse copy, run checks, read evidence."""

from __future__ import annotations

from pathlib import Path

import duckdb
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)


def corrupt(build: Path, *statements: str) -> None:
    """Run SQL against the copy (and close it: the checks open the file themselves)."""
    con = duckdb.connect(str(build))
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def check_key(asset: str, name: str) -> AssetCheckKey:
    return AssetCheckKey(AssetKey.from_user_string(asset), name)


def run_selection(selection: AssetSelection, instance: DagsterInstance | None = None) -> ExecuteInProcessResult:
    """Run part of the project's definitions in-process (no sandbox: nothing selected extracts)."""
    from pipelines.definitions import defs

    return materialize(
        [*defs.assets, *defs.asset_checks],  # type: ignore[list-item]
        selection=selection,
        resources=dict(defs.resources or {}),
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def evaluations(result: ExecuteInProcessResult) -> dict[tuple[str, str], AssetCheckEvaluation]:
    """The run's check evaluations by (asset key, check name)."""
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def run_checks(*keys: tuple[str, str]) -> dict[tuple[str, str], AssetCheckEvaluation]:
    """Run the named checks (`("deployment/deployments", "primary_key")`, …) on the current warehouse."""
    found = evaluations(run_selection(AssetSelection.checks(*(check_key(a, n) for a, n in keys))))
    missing = [k for k in keys if k not in found]
    assert not missing, f"checks did not run: {missing}"
    return found


def metadata(evaluation: AssetCheckEvaluation) -> dict[str, object]:
    """The evaluation's metadata as plain values (JSON, text, numbers, URLs)."""
    return {name: getattr(value, "value", value) for name, value in evaluation.metadata.items()}


def scalar(build: Path, sql: str) -> object:
    """One value from the copy (the connection is closed again before any check opens the file)."""
    con = duckdb.connect(str(build), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()
