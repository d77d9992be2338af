"""The one Dagster `Definitions` object: every asset, check, job, schedule and resource of opsmap."""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)
from dagster_dlt import DagsterDltResource

from pipelines.abandoned_runs import fail_abandoned_runs
from pipelines.assets.config_settings import config_feature_map, config_settings
from pipelines.assets.extract import extraction_assets
from pipelines.assets.insights import INSIGHT_ASSETS, INSIGHT_CHECKS, with_insight_deps
from pipelines.assets.kpis import kpis
from pipelines.assets.publication import publication_asset
from pipelines.assets.reconciliation import reconciliation_primary_key, source_reconciliation
from pipelines.assets.report import kpi_report
from pipelines.assets.warehouse_models import model_assets
from pipelines.checks.freshness import freshness_checks
from pipelines.checks.gx_suites import gx_checks
from pipelines.checks.kpi_checks import KPI_CHECKS
from pipelines.failures import with_extraction_retries
from pipelines.progress import progress_logger
from pipelines.resources import SourcesResource, Warehouse

NIGHTLY_CRON = "0 2 * * *"


def build_definitions() -> Definitions:
    # Extraction retries transient failures (a Dagster RetryPolicy) and fails with one readable line.
    extraction = [with_extraction_retries(a) for a in extraction_assets()]
    assets = [*extraction, config_settings, config_feature_map, *model_assets(), kpis, kpi_report]
    assets.append(source_reconciliation)  # after extraction; the KPIs read it (sync_accuracy)
    # Insights (anomalies, forecasts, predictions, recommendations); the report shows them, so it waits for them.
    assets = [*(with_insight_deps(a) if a is kpi_report else a for a in assets), *INSIGHT_ASSETS]
    upstream = [key for a in assets for key in a.keys]
    assets.append(publication_asset(upstream))
    nightly = define_asset_job(
        "nightly",
        # The terminal shows concise progress; the UI's event log keeps every detail regardless.
        config={"loggers": {"progress": {}}},
        selection=AssetSelection.all(),
        description="Extract all five systems, rebuild every model, mart and KPI, run the checks, publish.",
    )
    usage_backfill = define_asset_job(
        "usage_backfill",
        config={"loggers": {"progress": {}}},
        selection=AssetSelection.assets(*[a for a in assets if a.partitions_def is not None])
        | AssetSelection.assets("published_warehouse"),
        description="Rebuild the daily-partitioned usage tables for a range of days from the warehouse's upstream "
        "tables, check them, publish. `opsmap backfill --start --end`, or a backfill launched from the UI.",
    )

    @schedule(
        name="nightly_schedule",
        job=nightly,
        cron_schedule=NIGHTLY_CRON,
        # Schedules are static definitions, so the timezone is read when the code location loads.
        execution_timezone=os.environ.get("OPSMAP_SCHEDULE_TIMEZONE", "UTC"),
        default_status=DefaultScheduleStatus.STOPPED,
        description="Nightly at 02:00 (OPSMAP_SCHEDULE_TIMEZONE, default UTC).",
    )
    def nightly_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        # A killed `opsmap run` leaves its run STARTED, and the run queue would hold this one behind it.
        fail_abandoned_runs(context.instance)
        return RunRequest()

    return Definitions(
        assets=assets,
        asset_checks=[
            *KPI_CHECKS,
            reconciliation_primary_key,
            *gx_checks(),
            *freshness_checks(extraction),
            *INSIGHT_CHECKS,
        ],
        jobs=[nightly, usage_backfill],
        schedules=[nightly_schedule],
        resources={"dlt": DagsterDltResource(), "warehouse": Warehouse(), "sources": SourcesResource()},
        loggers={"progress": progress_logger},
        # DuckDB allows one writing process; in-process is also 5-6x faster than a process per step on 2 cores.
        executor=in_process_executor,
    )


defs = build_definitions()
