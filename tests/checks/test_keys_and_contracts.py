"""The blocking checks every SQL model has: its primary key and its pandera contract.

Each is shown failing, with evidence, on a corrupted copy of the built warehouse (a duplicated key,
a negative duration, an impossible status) and passing on the clean copy.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetCheckSeverity
from quality_support import corrupt, metadata, run_checks, scalar

DEPLOYMENTS = "deployment/deployments"
ATTEMPTS = "deployment/deployment_attempts"


def test_primary_key_and_contract_pass_on_clean_data(warehouse_copy: Path) -> None:
    found = run_checks((DEPLOYMENTS, "primary_key"), (DEPLOYMENTS, "contract"), (ATTEMPTS, "contract"))
    assert all(e.passed for e in found.values()), {k: e.description for k, e in found.items() if not e.passed}


def test_a_duplicated_key_fails_the_primary_key_check(warehouse_copy: Path) -> None:
    corrupt(
        warehouse_copy,
        "INSERT INTO deployment.deployments SELECT * FROM deployment.deployments ORDER BY deployment_id LIMIT 1",
    )
    duplicated = scalar(warehouse_copy, "SELECT min(deployment_id) FROM deployment.deployments")
    evaluation = run_checks((DEPLOYMENTS, "primary_key"))[(DEPLOYMENTS, "primary_key")]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR and evaluation.blocking
    evidence = metadata(evaluation)
    assert evidence["duplicate_keys"] == 1
    assert evidence["offending_keys"] == [{"deployment_id": duplicated, "rows": 2}]


def test_a_negative_duration_fails_the_contract(warehouse_copy: Path) -> None:
    victim = scalar(warehouse_copy, "SELECT min(deployment_id) FROM deployment.deployments WHERE recovery_hours > 0")
    corrupt(warehouse_copy, f"UPDATE deployment.deployments SET recovery_hours = -2.5 WHERE deployment_id = '{victim}'")
    evaluation = run_checks((DEPLOYMENTS, "contract"))[(DEPLOYMENTS, "contract")]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    evidence = metadata(evaluation)
    assert evidence["failures"] == 1
    assert any("recovery_hours" in check for check in evidence["failed_checks"])  # type: ignore[union-attr]
    assert [case["failure_case"] for case in evidence["failure_cases"]] == ["-2.5"]  # type: ignore[union-attr]


def test_an_impossible_status_fails_the_contract(warehouse_copy: Path) -> None:
    corrupt(
        warehouse_copy,
        "UPDATE deployment.deployment_attempts SET outcome = 'exploded' "
        "WHERE deployment_id = (SELECT min(deployment_id) FROM deployment.deployment_attempts)",
    )
    evaluation = run_checks((ATTEMPTS, "contract"))[(ATTEMPTS, "contract")]
    assert not evaluation.passed
    cases = metadata(evaluation)["failure_cases"]
    assert [(c["column"], c["failure_case"]) for c in cases] == [("outcome", "exploded")]  # type: ignore[union-attr]
