"""The last step of a run: publish the build warehouse for readers (see `pipelines/publish.py`)."""

from collections.abc import Sequence

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from pipelines.publish import publish
from pipelines.resources import Warehouse


def publication_asset(upstream: Sequence[AssetKey]) -> AssetsDefinition:
    @asset(
        key=AssetKey(["published_warehouse"]),
        deps=list(upstream),
        group_name="publication",
        kinds={"duckdb"},
        description=(
            "The read-only copy of the warehouse that SQL users, notebooks and the API open "
            "($OPSMAP_WAREHOUSE). It is replaced atomically, and only when every upstream asset "
            "materialised and no blocking check failed, so readers never see a half-built warehouse."
        ),
    )
    def published_warehouse(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        paths = warehouse.paths
        warehouse.release()  # the file is copied: nothing of this process may hold it open
        target = publish(paths.build, paths.published)
        context.log.info(f"published {target}")
        return MaterializeResult(
            metadata={
                "path": MetadataValue.path(str(target)),
                "size_mb": round(target.stat().st_size / 1e6, 2),
            }
        )

    return published_warehouse
