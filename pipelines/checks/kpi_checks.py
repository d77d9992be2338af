"""Checks on the KPI tables: every metric and window present, rates within [0, 1]."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue, asset_check

from pipelines.kpis.compute import KpiConfig
from pipelines.resources import Warehouse


@asset_check(
    asset=AssetKey(["kpi", "success_metrics"]),
    name="every_metric_present",
    description="kpi.success_metrics has exactly one row per metric of warehouse/kpi/success_metrics.yaml.",
)
def every_metric_present(warehouse: Warehouse) -> AssetCheckResult:
    expected = set(KpiConfig.load().metrics)
    with warehouse.connect() as con:
        found = [r[0] for r in con.execute("SELECT metric FROM kpi.success_metrics").fetchall()]
    missing, extra = expected - set(found), set(found) - expected
    duplicated = {m for m in found if found.count(m) > 1}
    return AssetCheckResult(
        passed=not (missing or extra or duplicated),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "missing": MetadataValue.json(sorted(missing)),
            "unexpected": MetadataValue.json(sorted(extra)),
            "duplicated": MetadataValue.json(sorted(duplicated)),
            "metrics": len(found),
        },
    )


@asset_check(
    asset=AssetKey(["kpi", "dora"]),
    name="windows_and_rates",
    description="kpi.dora has one baseline and one current row, and every rate lies in [0, 1].",
)
def dora_windows_and_rates(warehouse: Warehouse) -> AssetCheckResult:
    with warehouse.connect() as con:
        windows = dict(
            con.execute(
                "SELECT period_kind, count(*) FROM kpi.dora WHERE period_kind <> 'week' GROUP BY period_kind"
            ).fetchall()
        )
        bad = con.execute(
            "SELECT period_kind, period_start, change_failure_rate, deployment_rework_rate FROM kpi.dora "
            "WHERE change_failure_rate NOT BETWEEN 0 AND 1 OR deployment_rework_rate NOT BETWEEN 0 AND 1 LIMIT 5"
        ).fetchall()
    passed = windows == {"baseline": 1, "current": 1} and not bad
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "windows": MetadataValue.json(windows),
            "rows_with_rates_out_of_range": MetadataValue.json([[str(v) for v in r] for r in bad]),
        },
    )


KPI_CHECKS = [every_metric_present, dora_windows_and_rates]
