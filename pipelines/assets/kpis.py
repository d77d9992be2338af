"""KPI assets: `kpi/dora`, `kpi/weekly_metrics`, `kpi/success_metrics`, `kpi/business_value`.

Computed together with polars from the marts (one read of the marts, four tables), validated by
pandera before they are written, with headline figures as metadata so the UI shows them.
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from pipelines.assets.reconciliation import RECONCILIATION_KEY
from pipelines.assets.warehouse_models import asset_key
from pipelines.kpis.compute import MART_QUERIES, KpiConfig, Marts
from pipelines.kpis.tables import TABLE_DOCS, kpi_frames, write_kpi_table
from pipelines.resources import Warehouse
from pipelines.sandbox.server import parse_as_of

MART_KEYS = sorted({asset_key(*q.split(" FROM ")[1].split(".")) for q in MART_QUERIES.values()}, key=str)


def data_as_of() -> datetime:
    """The moment the extracted data describes: the sandbox's clock, or now for real sources."""
    return parse_as_of(os.environ.get("OPSMAP_AS_OF")) or datetime.now(UTC)


def settings_from(con: object) -> dict[str, float]:
    rows = con.execute(  # type: ignore[attr-defined]
        "SELECT key, value FROM config.settings WHERE key IN ('recovery_target_minutes', 'adoption_threshold')"
    ).fetchall()
    return {k: float(v) for k, v in rows}


@multi_asset(
    specs=[
        AssetSpec(
            key=AssetKey(["kpi", name]),
            # RECONCILIATION_KEY: sync_accuracy reads quality.source_reconciliation.
            deps=[*MART_KEYS, AssetKey(["config", "settings"]), RECONCILIATION_KEY],
            group_name="kpi",
            description=f"{description}\n\nComputed with polars in `pipelines/kpis/`; definitions in "
            "`warehouse/kpi/*.yaml`.",
            kinds={"duckdb", "polars"},
        )
        for name, (description, _) in TABLE_DOCS.items()
    ],
    name="kpis",
)
def kpis(context: AssetExecutionContext, warehouse: Warehouse) -> Iterator[MaterializeResult]:
    config = KpiConfig.load()
    with warehouse.connect() as con:
        marts = Marts.load(con, data_as_of())
        frames = kpi_frames(marts, config, settings_from(con))
        for name, frame in frames.items():
            write_kpi_table(con, name, frame)
    context.log.info(f"KPIs as of {marts.as_of.isoformat()} (complete through {marts.last_complete_day})")
    success = frames["success_metrics"]
    current = frames["dora"].filter(frames["dora"]["period_kind"] == "current").to_dicts()
    headline = {
        f"{r['metric']}": MetadataValue.text(
            f"{_fmt(r['baseline_value'])} → {_fmt(r['current_value'])} (target {r['target']:g}, "
            f"{'met' if r['met'] else 'not met' if r['met'] is not None else 'n/a'})"
        )
        for r in success.to_dicts()
    }
    for name, frame in frames.items():
        metadata: dict[str, object] = {"dagster/row_count": frame.height}
        if name == "success_metrics":
            metadata.update(headline)
        if name == "dora" and current:
            c = current[0]
            metadata.update(
                {
                    "deployments_per_day": _fmt(c["deployment_frequency_per_day"]),
                    "lead_time_hours_median": _fmt(c["lead_time_hours_median"]),
                    "change_failure_rate": _fmt(c["change_failure_rate"]),
                    "recovery_hours_median": _fmt(c["failed_deployment_recovery_hours_median"]),
                    "performance_tier": c["performance_tier"] or "n/a",
                }
            )
        if name == "business_value":
            for row in frame.filter(frame["value_line"].str.starts_with("total")).to_dicts():
                metadata[row["value_line"]] = _fmt(row["measured_value_usd"])
        yield MaterializeResult(asset_key=AssetKey(["kpi", name]), metadata=metadata)


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:,.3f}" if isinstance(value, float) else str(value)
