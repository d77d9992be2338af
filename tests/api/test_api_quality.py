"""POST /quality/validate, and reading a warehouse that is replaced under a running API."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from pipelines.api import API_PREFIX, ApiSettings, create_app
from pipelines.models import load_models


def url(path: str) -> str:
    return API_PREFIX + path


def api_over(copy: Path, token: str) -> TestClient:
    return TestClient(create_app(ApiSettings(published=copy, annotations=copy.parent / "notes.duckdb", token=token)))


def test_validate_runs_both_checks_on_each_table(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection
) -> None:
    names = ["development.features", "quality.test_cases", "staging.stg_jira__issues"]
    answer = client.post(url("/quality/validate"), headers=auth, json={"tables": names})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["passed"] is True
    assert [t["table"] for t in body["tables"]] == names
    models = {m.table: m for m in load_models()}
    for result in body["tables"]:
        assert result["rows"] == wh.execute(f"SELECT count(*) FROM {result['table']}").fetchall()[0][0]
        assert result["primary_key"]["columns"] == list(models[result["table"]].primary_key)
        assert result["primary_key"] == {**result["primary_key"], "passed": True, "duplicate_keys": 0, "null_keys": 0}
        assert result["contract"]["passed"] is True


def test_validate_finds_what_was_broken(warehouse_copy: Path, token: str, auth: dict[str, str]) -> None:
    con = duckdb.connect(str(warehouse_copy))
    try:
        con.execute("INSERT INTO development.features SELECT * FROM development.features LIMIT 1")  # a duplicate key
        con.execute("UPDATE development.features SET status = 'bogus' WHERE feature_key = 'PAY-3'")
        con.execute(  # a null key
            "UPDATE development.issues SET issue_key = NULL "
            "WHERE issue_key = (SELECT min(issue_key) FROM development.issues WHERE issue_type = 'Story')"
        )
    finally:
        con.close()
    with api_over(warehouse_copy, token) as api:
        body = api.post(
            url("/quality/validate"),
            headers=auth,
            json={"tables": ["development.features", "development.issues", "deployment.changes"]},
        ).json()
    features, issues, changes = body["tables"]
    assert body["passed"] is False
    assert features["passed"] is False
    assert features["primary_key"]["duplicate_keys"] == 1
    assert features["primary_key"]["sample"][0]["rows"] == 2
    assert features["contract"]["passed"] is False
    assert any("isin" in check for check in features["contract"]["failed_checks"])
    assert any("bogus" in str(case) for case in features["contract"]["failure_cases"])
    assert issues["primary_key"]["null_keys"] == 1
    assert changes["passed"] is True


def test_a_table_missing_from_the_warehouse_is_404(warehouse_copy: Path, token: str, auth: dict[str, str]) -> None:
    con = duckdb.connect(str(warehouse_copy))
    try:
        con.execute("DROP TABLE quality.slo_status")
    finally:
        con.close()
    with api_over(warehouse_copy, token) as api:
        answer = api.post(url("/quality/validate"), headers=auth, json={"tables": ["quality.slo_status"]})
    assert answer.status_code == 404
    assert "quality.slo_status" in answer.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"tables": []},
        {"tables": ["nope.nothing"]},
        {"tables": ["development.features; DROP TABLE development.features"]},
        {"tables": "development.features"},
        {},
    ],
)
def test_unknown_or_missing_tables_are_422(client: TestClient, auth: dict[str, str], body: dict[str, object]) -> None:
    answer = client.post(url("/quality/validate"), headers=auth, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][:2] == ["body", "tables"]


def test_a_newly_published_warehouse_is_read_at_once(warehouse_copy: Path, token: str, auth: dict[str, str]) -> None:
    """Publication replaces the file; the API's next request reads the new one (and drops cached answers)."""
    with api_over(warehouse_copy, token) as api:
        assert api.get(url("/development/PAY-3"), headers=auth).status_code == 200
        kpis_before = api.get(url("/kpis"), headers=auth).json()
        # publish a new version the way pipelines/publish.py does: write a copy, then os.replace it in
        staged = warehouse_copy.with_name("staged.duckdb")
        shutil.copyfile(warehouse_copy, staged)
        con = duckdb.connect(str(staged))
        try:
            con.execute("DELETE FROM development.features WHERE feature_key = 'PAY-3'")
            con.execute("UPDATE kpi.success_metrics SET current_value = 0.5 WHERE metric = 'automation_rate'")
        finally:
            con.close()
        os.replace(staged, warehouse_copy)
        assert api.get(url("/development/PAY-3"), headers=auth).status_code == 404
        kpis_after = api.get(url("/kpis"), headers=auth).json()
    before = {m["metric"]: m["current_value"] for m in kpis_before["success_metrics"]}
    after = {m["metric"]: m["current_value"] for m in kpis_after["success_metrics"]}
    assert before["automation_rate"] != 0.5
    assert after == {**before, "automation_rate": 0.5}


def test_no_warehouse_is_503(tmp_path: Path, token: str, auth: dict[str, str]) -> None:
    with api_over(tmp_path / "absent.duckdb", token) as api:
        for answer in (api.get(url("/health")), api.get(url("/kpis"), headers=auth)):
            assert answer.status_code == 503
            assert "opsmap run" in answer.json()["detail"]
            assert str(tmp_path) not in answer.json()["detail"]  # no paths in answers
