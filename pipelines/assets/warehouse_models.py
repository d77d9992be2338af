"""One Dagster asset per SQL model in `warehouse/`, keyed `<schema>/<table>` like the table it builds."""

from collections.abc import Iterator, Sequence
from datetime import date

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    multi_asset,
)

from pipelines.checks.keys import model_check_result, model_check_specs
from pipelines.models import Model, build_model, load_models
from pipelines.partitions import USAGE_DAILY, full_range
from pipelines.resources import Warehouse

GROUPS = {
    "staging": "staging",
    "intermediate": "intermediate",
    "development": "mart_development",
    "deployment": "mart_deployment",
    "quality": "mart_quality",
    "usage": "mart_usage",
    "kpi": "kpi",
}


def asset_key(schema: str, table: str) -> AssetKey:
    """The asset key of a warehouse table: its schema and name, as in `deployment/deployments`.

    dlt's child tables (`raw_jira.issues__fields__sprints`) belong to the resource that loads their
    root table, so they map to its asset (`raw_jira/issues`).
    """
    if schema.startswith("raw_") and "__" in table:
        table = table.split("__", 1)[0]
    return AssetKey([schema, table])


def _documented_schema(model: Model, types: dict[str, str] | None = None) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name=c, type=(types or {}).get(c, "?"), description=doc) for c, doc in model.columns.items()
        ]
    )


def model_asset(model: Model) -> AssetsDefinition:
    """The model's asset and its two blocking checks (primary key, contract), evaluated in the same step.

    Subsettable, so the checks can also run on their own against the table as it stands.
    """
    key = asset_key(model.schema, model.name)
    spec = AssetSpec(
        key,
        deps=sorted({asset_key(schema, table) for schema, table in model.upstream}, key=str),
        group_name=GROUPS[model.schema],
        description=f"{model.description}\n\nGrain: {model.grain}. Primary key: {', '.join(model.primary_key)}."
        + (
            f"\n\nMaintained by daily partitions of `{model.partitioned_by}` (UTC): a run or backfill rebuilds "
            "the days it covers and keeps the others."
            if model.partitioned_by
            else ""
        )
        + f"\n\nSQL: `{model.relpath}`",
        kinds={"duckdb", "sql"},
        metadata={
            "grain": model.grain,
            "primary_key": ", ".join(model.primary_key),
            "sql_file": model.relpath,
            "dagster/column_schema": _documented_schema(model),
            "dagster/table_name": model.table,
        },
    )

    partitioned = model.partitioned_by is not None

    @multi_asset(
        specs=[spec],
        check_specs=model_check_specs(model, key),
        name="__".join(key.path),
        can_subset=True,
        partitions_def=USAGE_DAILY if partitioned else None,
        # A range of days is one query in one step, not a step per day.
        backfill_policy=BackfillPolicy.single_run() if partitioned else None,
    )
    def _build(context: AssetExecutionContext, warehouse: Warehouse) -> Iterator[MaterializeResult | AssetCheckResult]:
        with warehouse.connect() as con:
            if key in context.selected_asset_keys:
                days, every_day = _days(context) if partitioned else (None, False)
                result = build_model(con, model, days, every_day)
                built = f"{result['rows']} rows"
                if days is not None:
                    built = f"{result['rows_rebuilt']} rows for {days[0]} – {days[1]} ({result['rows']} in all)"
                context.log.info(f"built {model.table}: {built} in {result['seconds']} s")
                metadata = {
                    "dagster/row_count": MetadataValue.int(result["rows"]),
                    "dagster/column_schema": _documented_schema(model, dict(result["columns"])),
                    "build_seconds": result["seconds"],
                }
                if days is not None:
                    metadata |= {"days": f"{days[0]} – {days[1]}", "rows_rebuilt": result["rows_rebuilt"]}
                yield MaterializeResult(asset_key=key, metadata=metadata)
            for check in sorted(context.selected_asset_check_keys, key=lambda c: c.name):
                yield model_check_result(con, model, key, check.name)

    return _build


def _days(context: AssetExecutionContext) -> tuple[tuple[date, date], bool]:
    """The days a partitioned model rebuilds in this run, and whether they are all the partitions have.

    A run without partitions (a plain materialisation of the asset) rebuilds every day.
    """
    first, last = full_range()
    if not context.has_partition_key_range:
        return (first, last), True
    keys = context.partition_key_range
    days = (date.fromisoformat(keys.start), date.fromisoformat(keys.end))
    return days, days[0] <= first and days[1] >= last


def model_assets(models: Sequence[Model] | None = None) -> list[AssetsDefinition]:
    return [model_asset(m) for m in (models if models is not None else load_models())]
