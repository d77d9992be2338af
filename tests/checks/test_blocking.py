"""A blocking check that fails stops the KPI assets in the same run, and the run says which check.

A small selection is materialised in-process on a copy of the built warehouse: `quality/incidents`
(rebuilt from a corrupted intermediate table, so the mart carries the corruption) with its checks,
and the KPI assets downstream of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, AssetKey, AssetSelection, DagsterInstance
from quality_support import corrupt, evaluations, run_selection

INCIDENTS = AssetKey(["quality", "incidents"])
LINKS = "intermediate.int_incidents_linked_to_deployments"
KPI_KEYS = {AssetKey(["kpi", name]) for name in ("dora", "weekly_metrics", "success_metrics", "business_value")}
SELECTION = AssetSelection.assets(INCIDENTS, *KPI_KEYS)  # with their checks

ORPHAN = (
    f"UPDATE {LINKS} SET deployment_id = 'github:deployment:404' "
    f"WHERE incident_id = (SELECT min(incident_id) FROM {LINKS} WHERE deployment_id IS NOT NULL)"
)
DUPLICATE = f"INSERT INTO {LINKS} SELECT * FROM {LINKS} WHERE incident_id = (SELECT min(incident_id) FROM {LINKS})"


@pytest.mark.parametrize(
    ("corruption", "stopper", "step"),
    [
        (ORPHAN, "gx_referential_integrity", "quality__incidents_great_expectations"),
        (DUPLICATE, "primary_key", "quality__incidents"),
    ],
    ids=["orphan-foreign-key", "duplicated-key"],
)
def test_a_failing_blocking_check_stops_the_kpis(
    warehouse_copy: Path, corruption: str, stopper: str, step: str
) -> None:
    corrupt(warehouse_copy, corruption)
    instance = DagsterInstance.ephemeral()
    result = run_selection(SELECTION, instance)
    assert not result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert INCIDENTS in materialized and not (materialized & KPI_KEYS)
    failed = {k: e for k, e in evaluations(result).items() if not e.passed}
    assert list(failed) == [("quality/incidents", stopper)]
    assert failed[("quality/incidents", stopper)].blocking
    assert failed[("quality/incidents", stopper)].severity == AssetCheckSeverity.ERROR
    # The run says which check failed its step, that step is why the KPIs did not run, and they never started.
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == step and f"quality/incidents: {stopper}" in failure.event_specific_data.error.message
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(m.startswith(f"Dependencies for step kpis failed: ['{step}']") for m in messages)
    assert "kpis" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_the_same_selection_builds_the_kpis_on_clean_data(warehouse_copy: Path) -> None:
    result = run_selection(SELECTION)
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} >= KPI_KEYS
    assert all(e.passed for e in result.get_asset_check_evaluations())
