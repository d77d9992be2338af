"""Running the `nightly` job in-process, and the terminal summary `opsmap run` prints."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import click
from dagster import DagsterInstance, ExecuteInProcessResult

from pipelines.abandoned_runs import fail_abandoned_runs, owner_tags
from pipelines.failures import failure_reason
from pipelines.partitions import checked_range, range_tags
from pipelines.settings import SYSTEMS, Paths


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
    chosen = AssetSelection.from_string(selection) if selection else None
    skipped = skipped_systems()
    if skipped:
        # Some sources are configured, some not: extract those, and leave out whatever needs the others.
        without = AssetSelection.groups(*[f"raw_{s}" for s in skipped]).downstream()
        # What was built is still published, so readers see the systems that are configured.
        chosen = ((chosen or AssetSelection.all()) - without) | AssetSelection.assets("published_warehouse")
        left_out = len(without.resolve(defs.resolve_asset_graph()))
        click.echo(
            f"Extracting {', '.join(s for s in SYSTEMS if s not in skipped)}; skipped {', '.join(skipped)} "
            f"(no SOURCES__<SYSTEM>__BASE_URL) and the {left_out} assets that need them.",
            err=True,
        )
    asset_selection = list(chosen.resolve(defs.resolve_asset_graph())) if chosen is not None else None
    instance = instance or DagsterInstance.get()
    fail_abandoned_runs(instance)  # an earlier run's killed process would otherwise look alive, and hold the queue
    return job.execute_in_process(
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
        asset_selection=asset_selection,
        # Which process runs it. No partition range: the daily-partitioned usage tables are rebuilt whole,
        # like every other table; a range run records an event per day and asset in Dagster's event log
        # (two years of days cost minutes on its SQLite storage), so ranges are for backfills.
        tags=owner_tags(),
    )


def run_backfill(start: date, end: date, instance: DagsterInstance | None = None) -> ExecuteInProcessResult:
    """Rebuild the daily-partitioned usage tables for `start`–`end` from the warehouse's upstream tables,
    check them, and publish (the `usage_backfill` job). Nothing is extracted."""
    from pipelines.definitions import defs

    start, end = checked_range(start, end)
    instance = instance or DagsterInstance.get()
    fail_abandoned_runs(instance)
    return defs.resolve_job_def("usage_backfill").execute_in_process(
        run_config={"loggers": {"progress": {}}},
        instance=instance,
        raise_on_error=False,
        tags={**range_tags(start, end), **owner_tags()},
    )


def skipped_systems() -> list[str]:
    """Systems left out because others are configured; none when none is (the sandbox serves all five)."""
    from pipelines.resources import configured_systems

    configured = configured_systems()
    return [s for s in SYSTEMS if s not in configured] if configured else []


def print_summary(
    result: ExecuteInProcessResult, seconds: float, command: str = "opsmap run", headline: bool = True
) -> None:
    """What ran, what the checks said, and the headline figures from the published warehouse."""
    materialized = result.get_asset_materialization_events()
    checks = result.get_asset_check_evaluations()
    outcome = Counter("passed" if c.passed else f"failed ({c.severity.value})" for c in checks)
    failed_steps = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    click.echo(f"\n{command} {'succeeded' if result.success else 'FAILED'} in {seconds:.1f} s")
    click.echo(f"  assets materialised: {len(materialized)}")
    click.echo(f"  checks run: {len(checks)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(outcome.items())))
    for c in checks:
        if not c.passed:
            click.echo(f"    ✗ {c.asset_key.to_user_string()} · {c.check_name} ({c.severity.value})")
    if not result.success and not failed_steps:
        # The run failed before any step: a resource (the sandbox, a source's configuration) did not start.
        for event in result.all_events:
            if event.event_type_value not in ("RESOURCE_INIT_FAILURE", "PIPELINE_FAILURE"):
                continue
            error = getattr(event.event_specific_data, "error", None)
            while error is not None and error.cause is not None:
                error = error.cause  # the root cause, not Dagster's wrapper
            lines = (error.message if error is not None else event.message or "").strip().splitlines()
            said = [line.strip() for line in lines if line.strip()]
            click.echo("  run failed before its first step: " + " … ".join(dict.fromkeys(said[:1] + said[-1:])))
            break
    for event in failed_steps:
        # The step's root cause in one line: source, endpoint, status and the config key to fix.
        reason = failure_reason(event.step_failure_data.error)  # type: ignore[union-attr]
        click.echo(f"  failed step: {event.step_key}" + (f": {reason}" if reason else ""))
    published = Paths.from_env().published
    if headline and result.success and published.exists():
        from pipelines.headline import headline_table

        click.echo("")
        click.echo(headline_table(published))
