"""The business-value driver model reproduces the planning figures at target."""

from __future__ import annotations

import pytest

from pipelines.kpis.compute import KpiConfig
from pipelines.kpis.value import evaluate, reference_measurements, value_rows

PLAN_MUSD = {
    "development_efficiency": 4.6,
    "deployment_success": 3.8,
    "qa_effectiveness": 2.9,
    "time_to_market": 3.2,
    "product_success": 2.7,
    "total_product_impact": 17.2,
    "process_automation": 1.4,
    "qa_automation": 0.98,
    "deployment_automation": 1.1,
    "analytics": 0.75,
    "total_operational_savings": 4.23,
}


def test_every_metric_at_target_reproduces_the_plan() -> None:
    config = KpiConfig.load()
    rows = {
        r["value_line"]: r
        for r in value_rows(
            config.value_model, config.metrics, reference_measurements(config.value_model, config.metrics)
        )
    }
    for line, musd in PLAN_MUSD.items():
        assert round(rows[line]["value_at_target_usd"] / 1e6, 2) == musd, line
        assert rows[line]["measured_value_usd"] == rows[line]["value_at_target_usd"], line


def test_every_assumption_is_named_with_unit_and_justification() -> None:
    model = KpiConfig.load().value_model
    for name, spec in model["assumptions"].items():
        assert set(spec) == {"value", "unit", "why"}, name
    used = " ".join(line["formula"] for line in model["lines"])
    assert all(name in used for name in model["assumptions"]), "an assumption no formula uses"


def test_missing_measurements_give_null_with_reason() -> None:
    config = KpiConfig.load()
    rows = {r["value_line"]: r for r in value_rows(config.value_model, config.metrics, {})}
    assert rows["deployment_success"]["measured_value_usd"] is None
    assert "no baseline value of deployment_success_rate" in rows["deployment_success"]["null_reason"]
    assert rows["total_product_impact"]["measured_value_usd"] is None


def test_formula_evaluator_is_arithmetic_only() -> None:
    assert evaluate("a * (b - 1) / 2", {"a": 4, "b": 3}) == 4.0
    with pytest.raises(ValueError):
        evaluate("__import__('os')", {})
    with pytest.raises(KeyError):
        evaluate("unknown + 1", {})
