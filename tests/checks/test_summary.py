"""`opsmap run` (what `make demo` runs) says how many checks ran, of every kind, and that they passed."""

from __future__ import annotations

import pytest

from pipelines.runner import print_summary

KINDS = {
    "freshness",
    "primary_key",
    "contract",
    "gx_suite",
    "gx_referential_integrity",
    "every_source_answered",
    "every_metric_present",
    "windows_and_rates",
}


def test_the_run_summary_counts_every_check(built_warehouse: dict, capsys: pytest.CaptureFixture[str]) -> None:
    result = built_warehouse["result"]
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} >= KINDS
    print_summary(result, 1.0)
    out = capsys.readouterr().out
    assert f"checks run: {len(evaluations)}  passed: {len(evaluations)}" in out
