"""One Dagster asset per SQL model in `warehouse/`, keyed `<schema>/<table>` like the table it builds."""

from collections.abc import Sequence

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from pipelines.models import Model, build_model, load_models
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
    @asset(
        key=asset_key(model.schema, model.name),
        deps=sorted({asset_key(schema, table) for schema, table in model.upstream}, key=str),
        group_name=GROUPS[model.schema],
        description=f"{model.description}\n\nGrain: {model.grain}. Primary key: {', '.join(model.primary_key)}."
        f"\n\nSQL: `{model.relpath}`",
        kinds={"duckdb", "sql"},
        metadata={
            "grain": model.grain,
            "primary_key": ", ".join(model.primary_key),
            "sql_file": model.relpath,
            "dagster/column_schema": _documented_schema(model),
            "dagster/table_name": model.table,
        },
    )
    def _build(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        with warehouse.connect() as con:
            result = build_model(con, model)
        context.log.info(f"built {model.table}: {result['rows']} rows in {result['seconds']} s")
        return MaterializeResult(
            metadata={
                "dagster/row_count": MetadataValue.int(result["rows"]),
                "dagster/column_schema": _documented_schema(model, dict(result["columns"])),
                "build_seconds": result["seconds"],
            }
        )

    return _build


def model_assets(models: Sequence[Model] | None = None) -> list[AssetsDefinition]:
    return [model_asset(m) for m in (models if models is not None else load_models())]
