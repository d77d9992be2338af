"""Extraction: the five dlt sources surfaced as Dagster assets `raw_<system>/<table>`, extracted in parallel.

One step, `extract_sources`, materialises every raw table (or the selected subset). The in-process
executor runs one step at a time, so one step per system would extract the five systems one after
another; this step runs them side by side instead:

1. the step restores each selected system's dlt state (incremental cursors) from the warehouse;
2. worker processes extract and normalise the systems, longest first (`extract_worker`): they
   never open DuckDB, so DuckDB's one-writer rule holds;
3. as each worker finishes, the step loads that system's load package (Parquet files) into the
   warehouse and reports its tables; a system that failed is reported, with what to fix, once
   the others are loaded.

The decorator needs a source object to list its resources when the code location loads, but the
real configuration (base URLs, tokens) must only be resolved at run time: a missing token must not
break the UI, and a source object cannot be run twice in one process (stack notes 4d). So each
system gets a spec-only source for the asset graph and a fresh, fully configured one per run.
"""

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    multi_asset,
)
from dagster_dlt import DagsterDltTranslator, build_dlt_asset_specs
from dagster_dlt.translator import DltResourceTranslatorData

from pipelines.assets.extract_worker import (
    LONGEST_FIRST,
    SOURCE_FACTORIES,
    Outcome,
    Task,
    default_workers,
    raw_pipeline,
    run_tasks,
    source_factory,
)
from pipelines.assets.reconciliation import probe_now
from pipelines.resources import SourcesResource, Warehouse
from pipelines.settings import SYSTEMS, Paths
from pipelines.sources.declared_tables import create_declared_tables

__all__ = [
    "SOURCE_FACTORIES",
    "SPEC_ARGS",
    "RawTranslator",
    "extraction_assets",
    "raw_pipeline",
    "source_factory",
]

# Placeholders that let each source list its resources without configuration; never used to connect.
_SPEC = "spec-only"
_SPEC_DIR = Path(tempfile.gettempdir()) / "opsmap-spec-only"
SPEC_ARGS: dict[str, dict[str, Any]] = {
    "jira": {"base_url": "http://spec-only", "email": _SPEC, "api_token": _SPEC, "projects": ["SPEC"]},
    "github": {"base_url": "http://spec-only", "access_token": _SPEC, "org": _SPEC},
    "jenkins": {"base_url": "http://spec-only", "username": _SPEC, "api_token": _SPEC},
    "datadog": {"base_url": "http://spec-only", "api_key": _SPEC, "application_key": _SPEC},
    "mixpanel": {"base_url": "http://spec-only", "api_secret": _SPEC, "project_id": _SPEC},
}
for _args in SPEC_ARGS.values():
    _args["start_date"] = "2000-01-01"

STEP_NAME = "extract_sources"


class RawTranslator(DagsterDltTranslator):
    """Asset key = the table dlt writes: `raw_<system>/<resource>`, grouped per system, no phantom deps."""

    def __init__(self, system: str) -> None:
        self.system = system

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        resource = data.resource
        doc = (resource.__doc__ or "").strip() if resource.__doc__ != type(resource).__doc__ else ""
        description = doc or f"`raw_{self.system}.{resource.name}` as loaded by dlt from the {self.system} API."
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=[f"raw_{self.system}", resource.name],
                deps=[],
                group_name=f"raw_{self.system}",
                description=f"{description}\n\nWrite disposition: {resource.write_disposition}.",
            )
        )


def _spec_pipeline(system: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"opsmap_{system}",
        destination=dlt.destinations.duckdb(str(_SPEC_DIR / "spec-only.duckdb")),
        dataset_name=f"raw_{system}",
        pipelines_dir=str(_SPEC_DIR),
    )


def raw_specs(system: str) -> dict[AssetKey, tuple[AssetSpec, str]]:
    """The asset spec of each loaded resource of a system, with the resource's name."""
    source = source_factory(system)(**SPEC_ARGS[system])
    specs = build_dlt_asset_specs(
        dlt_source=source, dlt_pipeline=_spec_pipeline(system), dagster_dlt_translator=RawTranslator(system)
    )
    names = {AssetKey([f"raw_{system}", name]): name for name in source.selected_resources}
    return {spec.key: (spec, names[spec.key]) for spec in specs}


def plan_systems(
    selected: set[AssetKey], catalogue: dict[str, dict[AssetKey, tuple[AssetSpec, str]]]
) -> dict[str, tuple[str, ...] | None]:
    """System → the resources to run (None: all of them), for the selected asset keys, longest first."""
    plan: dict[str, tuple[str, ...] | None] = {}
    for system in sorted(catalogue, key=LONGEST_FIRST.index):
        keys = catalogue[system]
        chosen = [name for key, (_, name) in keys.items() if key in selected]
        if chosen:
            plan[system] = None if len(chosen) == len(keys) else tuple(chosen)
    return plan


def _column_schema(pipeline: dlt.Pipeline, table: str) -> TableSchema:
    try:
        columns = pipeline.default_schema.get_table_columns(table)
    except KeyError:
        return TableSchema(columns=[])
    return TableSchema(
        columns=[TableColumn(name=c["name"], type=str(c.get("data_type", "?"))) for c in columns.values()]
    )


def _results(
    system: str,
    outcome: Outcome,
    pipeline: dlt.Pipeline,
    keys: dict[AssetKey, tuple[AssetSpec, str]],
    selected: set[AssetKey],
    load_s: float,
) -> Iterator[MaterializeResult]:
    for key, (_, name) in keys.items():
        if key not in selected:
            continue
        table = pipeline.default_schema.naming.normalize_table_identifier(name)
        metadata: dict[str, Any] = {
            "dataset_name": f"raw_{system}",
            "dagster/column_schema": _column_schema(pipeline, table),
            "dagster/table_name": f"raw_{system}.{table}",
            "extract_seconds": round(outcome.extract_s, 2),
            "normalize_seconds": round(outcome.normalize_s, 2),
            "load_seconds": round(load_s, 2),
        }
        rows = outcome.row_counts.get(table)
        if rows:
            metadata["rows_loaded"] = MetadataValue.int(rows)
        yield MaterializeResult(asset_key=key, metadata=metadata)


def _failure(failed: dict[str, tuple[BaseException, str | None]], attempt: int) -> Failure:
    """One `Failure` naming each failed system and what to fix; retried only if every cause is transient."""
    from pipelines.failures import EXTRACTION_RETRY_POLICY, extraction_failure

    retries = EXTRACTION_RETRY_POLICY.max_retries
    parts = []
    for system, (error, resource) in failed.items():
        wrapped = _SystemFailed(system, resource)
        wrapped.__cause__ = error
        parts.append((system, extraction_failure(system, wrapped, attempt=attempt, max_retries=retries)))
    metadata: dict[str, Any] = {"failed_systems": ", ".join(failed)}
    for system, failure in parts:
        metadata.update({f"{system}/{k}": v for k, v in failure.metadata.items()})
    return Failure(
        description=" | ".join(f.description or system for system, f in parts),
        metadata=metadata,
        allow_retries=all(f.allow_retries for _, f in parts),
    )


class _SystemFailed(Exception):
    """A system's extraction failed; `pipe_name` is the dlt resource that failed (for the message)."""

    def __init__(self, system: str, pipe_name: str | None) -> None:
        super().__init__(f"{system} extraction failed")
        self.pipe_name = pipe_name


def extract_sources(
    context: AssetExecutionContext,
    paths: Paths,
    catalogue: dict[str, dict[AssetKey, tuple[AssetSpec, str]]],
) -> Iterator[MaterializeResult]:
    """Extract the selected systems in parallel, load each into the warehouse as it finishes.

    Yields a `MaterializeResult` per loaded table; raises one `Failure` at the end naming every
    system that failed (the others are loaded and reported first).
    """
    selected = set(context.selected_asset_keys)
    plan = plan_systems(selected, catalogue)
    failed: dict[str, tuple[BaseException, str | None]] = {}
    workers = default_workers(len(plan))
    started = time.perf_counter()

    def prepare() -> list[Task]:
        tasks = []
        for system, resources in plan.items():
            try:
                # As dagster-dlt does: drop the local working state and restore it (cursors, schema)
                # from the warehouse, the one place state lives. Done here, by the writer, because
                # the workers must not open the DuckDB file.
                raw_pipeline(system, paths).drop().sync_destination()
            except Exception as exc:
                failed[system] = (exc, None)
                continue
            tasks.append(Task(system, resources, paths))
        return tasks

    context.log.info(
        f"extracting {', '.join(plan)} with {workers if workers > 1 and len(plan) > 1 else 'no'} worker processes"
    )
    for outcome in run_tasks(prepare, len(plan), workers):
        system = outcome.system
        if not outcome.ok:
            assert outcome.error is not None
            failed[system] = (outcome.error, outcome.resource)
            context.log.debug(f"{system} extraction failed in worker:\n{outcome.traceback}")
            continue
        loading = time.perf_counter()
        try:
            pipeline = raw_pipeline(system, paths)  # a fresh object: it reads what the worker wrote
            pipeline.load().raise_on_failed_jobs()
            created = create_declared_tables(pipeline)
        except Exception as exc:
            failed[system] = (exc, None)
            continue
        load_s = time.perf_counter() - loading
        if created:
            context.log.info(f"created empty declared tables in raw_{system}: {', '.join(created)}")
        context.log.info(
            f"{system}: extracted in {outcome.extract_s:.1f} s, normalised in {outcome.normalize_s:.1f} s "
            f"(worker cpu {outcome.cpu_s:.1f} s), loaded in {load_s:.1f} s; "
            f"{time.perf_counter() - started:.1f} s into the step"
        )
        yield from _results(system, outcome, pipeline, catalogue[system], selected, load_s)
    if failed:
        raise _failure(failed, context.retry_number)


def extraction_asset(systems: tuple[str, ...] = SYSTEMS) -> AssetsDefinition:
    """The one extraction step: a multi-asset over every raw table of `systems`, subsettable."""
    catalogue = {system: raw_specs(system) for system in systems}
    specs = [spec for keys in catalogue.values() for spec, _ in keys.values()]

    @multi_asset(
        specs=specs,
        name=STEP_NAME,
        can_subset=True,
        # `failures.with_extraction_retries` names the system from this tag for errors raised
        # outside a system's own work (per-system errors arrive as a Failure naming each system).
        op_tags={"opsmap/system": ",".join(systems)},
        description="Extract the selected systems in parallel worker processes and load each into its "
        "`raw_<system>` dataset (Parquet load packages; the step is the warehouse's one writer).",
    )
    def _extract(context: AssetExecutionContext, warehouse: Warehouse, sources: SourcesResource) -> Iterator[Any]:
        warehouse.release()  # dlt opens the file with a configuration of its own
        yield from extract_sources(context, warehouse.paths, catalogue)
        # Reached only when every selected system loaded: a failed step may be retried, which needs the sandbox.
        sources.extraction_finished(probe_now, context.log)

    return _extract


def extraction_assets(systems: tuple[str, ...] = SYSTEMS) -> list[AssetsDefinition]:
    """The extraction assets (one step for every system; see the module docstring)."""
    return [extraction_asset(systems)]
