"""Running the `nightly` job in-process, and the terminal summary `opsmap run` prints."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from dagster import DagsterInstance, ExecuteInProcessResult

from pipelines.settings import Paths


def run_nightly(
    sandbox: dict[str, Any] | None = None,
    selection: str | None = None,
    instance: DagsterInstance | None = None,
) -> ExecuteInProcessResult:
    """Materialise the `nightly` job in this process (the run appears in the Dagster UI's history)."""
    from dagster import AssetSelection

    from pipelines.definitions import defs

    job = defs.resolve_job_def("nightly")
    sources_config = {k: v for k, v in (sandbox or {}).items() if v is not None}
    run_config: dict[str, Any] = {"loggers": {"progress": {}}}
    if sources_config:
        run_config["resources"] = {"sources": {"config": sources_config}}
    asset_selection = None
    if selection:
        asset_selection = list(AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph()))
    return job.execute_in_process(
        run_config=run_config,
        instance=instance or DagsterInstance.get(),
        raise_on_error=False,
        asset_selection=asset_selection,
    )


def print_summary(result: ExecuteInProcessResult, seconds: float) -> None:
    """What ran, what the checks said, and the headline figures from the published warehouse."""
    materialized = result.get_asset_materialization_events()
    checks = result.get_asset_check_evaluations()
    outcome = Counter("passed" if c.passed else f"failed ({c.severity.value})" for c in checks)
    failed_steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    click.echo(f"\nopsmap run {'succeeded' if result.success else 'FAILED'} in {seconds:.1f} s")
    click.echo(f"  assets materialised: {len(materialized)}")
    click.echo(f"  checks run: {len(checks)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(outcome.items())))
    for c in checks:
        if not c.passed:
            click.echo(f"    ✗ {c.asset_key.to_user_string()} · {c.check_name} ({c.severity.value})")
    for step in failed_steps:
        click.echo(f"  failed step: {step}")
    published = Paths.from_env().published
    if result.success and published.exists():
        from pipelines.headline import headline_table

        click.echo("")
        click.echo(headline_table(published))
