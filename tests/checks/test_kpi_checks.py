"""The checks on the KPI tables: every metric present once, DORA windows and rates in range."""

from __future__ import annotations

from pathlib import Path

from quality_support import corrupt, metadata, run_checks

METRICS = ("kpi/success_metrics", "every_metric_present")
DORA = ("kpi/dora", "windows_and_rates")


def test_the_kpi_checks_pass_on_clean_data(warehouse_copy: Path) -> None:
    assert all(e.passed for e in run_checks(METRICS, DORA).values())


def test_a_missing_metric_fails_with_its_name(warehouse_copy: Path) -> None:
    corrupt(warehouse_copy, "DELETE FROM kpi.success_metrics WHERE metric = 'sync_accuracy'")
    evaluation = run_checks(METRICS)[METRICS]
    assert not evaluation.passed and metadata(evaluation)["missing"] == ["sync_accuracy"]


def test_a_rate_out_of_range_fails_with_the_row(warehouse_copy: Path) -> None:
    corrupt(warehouse_copy, "UPDATE kpi.dora SET change_failure_rate = 1.5 WHERE period_kind = 'current'")
    evaluation = run_checks(DORA)[DORA]
    assert not evaluation.passed
    [row] = metadata(evaluation)["rows_with_rates_out_of_range"]  # type: ignore[misc]
    assert row[0] == "current" and row[2] == "1.5"
