"""`reports/kpi_report`: the self-contained HTML KPI report (see `pipelines/report.py`)."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from pipelines.report import write_report
from pipelines.resources import Warehouse

REPORT_NAME = "kpi_report.html"


@asset(
    key=AssetKey(["reports", "kpi_report"]),
    deps=[AssetKey(["kpi", name]) for name in ("dora", "success_metrics", "business_value")],
    group_name="reports",
    kinds={"html"},
    description="A self-contained HTML report (inline SVG charts, no scripts): success metrics against targets, "
    "weekly DORA trends with the baseline and current windows, and the business-value waterfall. "
    "`opsmap report` prints its path.",
)
def kpi_report(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    paths = warehouse.paths
    warehouse.release()  # the report opens the file read-only, which DuckDB refuses beside a writable instance
    out = write_report(paths.build, paths.reports / REPORT_NAME)
    context.log.info(f"report written to {out}")
    return MaterializeResult(metadata={"path": MetadataValue.path(str(out)), "url": MetadataValue.url(out.as_uri())})
