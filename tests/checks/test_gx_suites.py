"""Great Expectations suites (expectations/*.json) and their Dagster checks.

Unit part: every mart table has a valid GX 1.x suite, placeholders resolve from the warehouse and
refuse anything but a mart reference, and severities follow the rule (referential integrity of the
tables the KPIs read is `critical`, i.e. blocking). Acceptance part: on a copy of the built
warehouse, an orphan foreign key fails the blocking `gx_referential_integrity` check and a
cross-column or distribution breach fails the WARN `gx_suite` check, each with the failing
expectation, the observed value, the threshold and the offending keys; the clean copy passes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import duckdb
import pytest
from dagster import AssetCheckSeverity, AssetKey
from quality_support import corrupt, metadata, run_checks, scalar

from pipelines.checks.gx_suites import (
    INTEGRITY_CHECK,
    SUITE_CHECK,
    gx_checks,
    kpi_tables,
    load_suites,
    references,
    resolve,
)
from pipelines.models import load_models

MART_SCHEMAS = {"development", "deployment", "quality", "usage"}


# --- the suites themselves -------------------------------------------------------------------


def test_every_mart_table_has_a_suite_and_every_suite_a_table() -> None:
    marts = {m.table for m in load_models() if m.schema in MART_SCHEMAS} | {"quality.source_reconciliation"}
    assert set(load_suites()) == marts


def test_suites_are_valid_gx_suites_once_resolved() -> None:
    import great_expectations as gx

    con = duckdb.connect()
    con.execute("CREATE SCHEMA development; CREATE SCHEMA deployment; CREATE SCHEMA quality; CREATE SCHEMA usage")
    for table in {t for s in load_suites().values() for t in references(s.spec["expectations"])}:
        con.execute(f"CREATE TABLE {table} AS SELECT 'x' AS issue_key, 'Epic' AS issue_type, 'd' AS deployment_id, "
                    "'f' AS feature_key, 'b' AS build_id")  # fmt: skip
    for suite in load_suites().values():
        expectations = [{**e, "kwargs": resolve(e["kwargs"], con)} for e in suite.expectations()]
        built = gx.ExpectationSuite(name=suite.table, expectations=expectations)
        assert len(built.expectations) == len(suite.expectations()) > 0
        assert {e.severity.value for e in built.expectations} <= {"critical", "warning"}
        assert all((e.get("meta") or {}).get("why") for e in suite.expectations()), f"{suite.table}: say why"


def test_critical_means_referential_integrity_of_a_table_the_kpis_read() -> None:
    feeds_kpis = kpi_tables()
    for suite in load_suites().values():
        for e in suite.expectations():
            is_reference = isinstance(e["kwargs"].get("value_set"), dict) and "$values" in e["kwargs"]["value_set"]
            expected = "critical" if is_reference and suite.table in feeds_kpis else "warning"
            assert e["severity"] == expected, f"{suite.table}: {e['type']} on {e['kwargs'].get('column')}"


def test_a_suite_only_reads_tables_that_are_not_downstream_of_its_own() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    for suite in load_suites().values():
        downstream = _descendants(graph, suite.key)
        for table in references(suite.spec["expectations"]) - {suite.table}:
            assert table.replace(".", "/") not in downstream, f"{suite.table} reads {table}, which is built from it"


def _descendants(graph: object, key: AssetKey) -> set[str]:
    seen: set[str] = set()
    frontier = [key]
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:  # type: ignore[attr-defined]
            if child.to_user_string() not in seen:
                seen.add(child.to_user_string())
                frontier.append(child)
    return seen


def test_the_checks_are_blocking_only_for_referential_integrity() -> None:
    specs = {(s.asset_key.to_user_string(), s.name): s for c in gx_checks() for s in c.check_specs}
    assert {name for _, name in specs} == {SUITE_CHECK, INTEGRITY_CHECK}
    assert all(s.blocking == (name == INTEGRITY_CHECK) for (_, name), s in specs.items())
    assert ("quality/incidents", INTEGRITY_CHECK) in specs
    assert ("quality/test_cases", INTEGRITY_CHECK) not in specs  # not read by the KPIs: its references only warn


def test_placeholders_resolve_from_the_warehouse_and_nothing_else() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA development")
    con.execute("CREATE TABLE development.issues AS SELECT * FROM (VALUES ('A-1', 'Epic'), ('A-2', 'Story'), "
                "('A-3', 'Epic'), (NULL, 'Epic')) t(issue_key, issue_type)")  # fmt: skip
    kwargs = {
        "value_set": {"$values": "development.issues.issue_key", "where": {"issue_type": "Epic"}},
        "max_value": {"$row_count": "development.issues"},
        "min_value": 1,
    }
    assert resolve(kwargs, con) == {"value_set": ["A-1", "A-3"], "max_value": 4, "min_value": 1}
    for bad in ("staging.stg_jira__issues.issue_key", "development.issues.issue_key; DROP TABLE x", "issues"):
        with pytest.raises(ValueError):
            resolve({"value_set": {"$values": bad}}, con)
    with pytest.raises(ValueError):
        resolve({"value_set": {"$values": "development.issues.issue_key", "where": {"1=1 OR x": "y"}}}, con)


# --- the checks on a warehouse ---------------------------------------------------------------


def test_every_gx_check_ran_and_passed_in_the_nightly_run(built_warehouse: dict) -> None:
    found = built_warehouse["result"].get_asset_check_evaluations()
    gx_found = {(e.asset_key.to_user_string(), e.check_name): e for e in found if e.check_name.startswith("gx_")}
    expected = {(s.asset_key.to_user_string(), s.name) for c in gx_checks() for s in c.check_specs}
    assert set(gx_found) == expected
    assert [k for k, e in gx_found.items() if not e.passed] == []
    docs = metadata(gx_found[("deployment/deployments", SUITE_CHECK)])["data_docs"]
    page = Path(unquote(urlsplit(str(docs)).path))
    assert page.is_file() and "deployment.deployments" in page.read_text(encoding="utf-8")
    index = built_warehouse["paths"].published.parent / "gx_docs" / "index.html"
    assert index.is_file() and "quality.incidents" in index.read_text(encoding="utf-8")


def test_an_orphan_foreign_key_fails_the_blocking_integrity_check(warehouse_copy: Path) -> None:
    corrupt(
        warehouse_copy,
        "UPDATE quality.incidents SET attributed_deployment_id = 'github:deployment:404' WHERE incident_id = "
        "(SELECT min(incident_id) FROM quality.incidents WHERE attributed_deployment_id IS NOT NULL)",
    )
    victim = scalar(
        warehouse_copy,
        "SELECT incident_id FROM quality.incidents WHERE attributed_deployment_id = 'github:deployment:404'",
    )
    found = run_checks(("quality/incidents", INTEGRITY_CHECK), ("quality/incidents", SUITE_CHECK))
    integrity = found[("quality/incidents", INTEGRITY_CHECK)]
    assert not integrity.passed and integrity.severity == AssetCheckSeverity.ERROR and integrity.blocking
    [failure] = metadata(integrity)["failures"]  # type: ignore[misc]
    assert failure["expectation"] == "expect_column_values_to_be_in_set"
    assert failure["column"] == "attributed_deployment_id"
    assert failure["observed"].startswith("1 of ")
    assert failure["threshold"]["value_set"].startswith("values of deployment.deployments.deployment_id (")
    assert failure["offending_keys"] == [{"incident_id": victim}]
    assert failure["offending_values"] == ["github:deployment:404"]
    assert found[("quality/incidents", SUITE_CHECK)].passed  # the soft rules are untouched


def test_a_cross_column_breach_fails_the_suite_as_a_warning(warehouse_copy: Path) -> None:
    corrupt(
        warehouse_copy,
        "UPDATE deployment.deployments SET finished_at = started_at - INTERVAL 1 HOUR "
        "WHERE deployment_id = (SELECT min(deployment_id) FROM deployment.deployments)",
    )
    victim = scalar(warehouse_copy, "SELECT min(deployment_id) FROM deployment.deployments")
    found = run_checks(("deployment/deployments", SUITE_CHECK), ("deployment/deployments", INTEGRITY_CHECK))
    suite = found[("deployment/deployments", SUITE_CHECK)]
    assert not suite.passed and suite.severity == AssetCheckSeverity.WARN and not suite.blocking
    failures = {f["column"]: f for f in metadata(suite)["failures"]}  # type: ignore[union-attr]
    assert {"deployment_id": victim} in failures["finished_at, started_at"]["offending_keys"]
    threshold = failures["finished_at, started_at"]["threshold"]
    assert threshold == {"or_equal": True, "ignore_row_if": "either_value_is_missing"}
    assert found[("deployment/deployments", INTEGRITY_CHECK)].passed


def test_a_distribution_breach_fails_the_suite_with_the_observed_value(warehouse_copy: Path) -> None:
    corrupt(warehouse_copy, "UPDATE deployment.deployment_attempts SET outcome = 'failure'")
    suite = run_checks(("deployment/deployment_attempts", SUITE_CHECK))[("deployment/deployment_attempts", SUITE_CHECK)]
    assert not suite.passed
    [failure] = metadata(suite)["failures"]  # type: ignore[misc]
    assert failure["expectation"] == "expect_column_most_common_value_to_be_in_set"
    assert failure["observed"] == ["failure"] and failure["threshold"] == {"value_set": ["success"]}


def test_a_row_count_above_its_relative_bound_fails(warehouse_copy: Path) -> None:
    corrupt(warehouse_copy, "DELETE FROM development.pull_requests WHERE pr_number > 1")
    suite = run_checks(("deployment/changes", SUITE_CHECK))[("deployment/changes", SUITE_CHECK)]
    failures = {f["expectation"]: f for f in metadata(suite)["failures"]}  # type: ignore[union-attr]
    bound = failures["expect_table_row_count_to_be_between"]
    assert bound["observed"] > int(bound["threshold"]["max_value"].split("(")[1].rstrip(")"))
    assert bound["threshold"]["max_value"].startswith("rows of development.pull_requests")


def test_a_missing_table_fails_both_checks_saying_why(warehouse_copy: Path) -> None:
    corrupt(warehouse_copy, "DROP TABLE usage.feature_adoption")
    found = run_checks(("usage/feature_adoption", SUITE_CHECK), ("usage/feature_adoption", INTEGRITY_CHECK))
    for evaluation in found.values():
        assert not evaluation.passed
        assert "feature_adoption" in str(metadata(evaluation)["error"])
