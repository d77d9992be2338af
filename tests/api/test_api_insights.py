"""POST /performance/optimize (the rows of kpi.recommendations), GET /kpis and GET /health, against the warehouse
and the sandbox's truth."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from fastapi.testclient import TestClient

from pipelines.api import API_PREFIX, ApiSettings, create_app
from pipelines.api.schemas import RECOMMENDATION_KINDS
from pipelines.insights.tables import RECOMMENDATION_DOCS


def url(path: str) -> str:
    return API_PREFIX + path


# --- POST /performance/optimize: the rows of kpi.recommendations ------------------------------------

KIND_ORDER = list(RECOMMENDATION_KINDS)


def table_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """kpi.recommendations as JSON carries it: evidence parsed, dates as ISO text."""
    rows = con.sql("SELECT * FROM kpi.recommendations").pl().to_dicts()
    return [
        {
            **r,
            "evidence": json.loads(r["evidence"]),
            "period_start": r["period_start"].isoformat(),
            "period_end": r["period_end"].isoformat(),
        }
        for r in rows
    ]


def served_order(row: dict[str, Any]) -> tuple[int, str, int, str]:
    """Known kinds in the pipeline's order (others after them), then rank."""
    kind = row["kind"]
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind, row["rank"], row["subject"])


def expected(
    rows: list[dict[str, Any]],
    kinds: list[str] | None = None,
    subject: str | None = None,
    service: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """What the filters should leave, worked out here from the table's rows."""
    chosen = sorted(
        (
            r
            for r in rows
            if (kinds is None or r["kind"] in kinds)
            and (subject is None or subject.lower() in r["subject"].lower())
            and (service is None or (r["service"] or "").lower() == service.lower())
        ),
        key=served_order,
    )
    if top is None:
        return chosen
    kept: list[dict[str, Any]] = []
    for kind in dict.fromkeys(r["kind"] for r in chosen):
        kept += [r for r in chosen if r["kind"] == kind][:top]
    return kept


def optimize(client: TestClient, auth: dict[str, str], body: dict[str, object]) -> dict[str, Any]:
    answer = client.post(url("/performance/optimize"), headers=auth, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def api_over(warehouse: Path, token: str) -> TestClient:
    return TestClient(
        create_app(ApiSettings(published=warehouse, annotations=warehouse.parent / "a.duckdb", token=token))
    )


def test_optimize_serves_the_rows_of_kpi_recommendations(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection
) -> None:
    rows = table_rows(wh)
    assert len({r["kind"] for r in rows}) >= 3  # the session world has several kinds, so the filters below bite
    body = optimize(client, auth, {})
    items = body["recommendations"]
    assert len(items) == len(rows) == body["total_rows"]
    assert items == sorted(rows, key=served_order)  # every column, figures and evidence exactly as stored
    assert len({(i["kind"], i["rank"]) for i in items}) == len(items)
    assert body["period_start"] == min(r["period_start"] for r in rows)
    assert body["period_end"] == max(r["period_end"] for r in rows)
    for item in items:  # nothing without its figures
        assert item["value"] is not None and item["sample_size"] is not None and item["evidence"], item
    # no body at all is the same question
    assert client.post(url("/performance/optimize"), headers=auth).json() == body


def test_optimize_answers_from_the_table_not_its_own_figures(
    warehouse_copy: Path, token: str, auth: dict[str, str]
) -> None:
    """Whatever the table holds is what is served: changed figures, a removed row, a kind the API never heard of."""
    con = duckdb.connect(str(warehouse_copy))
    try:
        con.execute("UPDATE kpi.recommendations SET value = value * 10 + 1, sample_size = sample_size + 7")
        con.execute("DELETE FROM kpi.recommendations WHERE kind = 'lead_time_bottleneck' AND rank = 1")
        con.execute(
            "INSERT INTO kpi.recommendations SELECT 'a_newer_kind', 1, 'something', NULL, 'things', 2.5, NULL, "
            "'things', 4, period_start, period_end, 'A newer pipeline said so: 2.5 things of 4.', '{\"things\": 2.5}' "
            "FROM kpi.recommendations LIMIT 1"
        )
        rows = table_rows(con)
    finally:
        con.close()
    with api_over(warehouse_copy, token) as api:
        body = optimize(api, auth, {})
    assert body["recommendations"] == sorted(rows, key=served_order)
    assert body["recommendations"][-1]["kind"] == "a_newer_kind"
    assert body["total_rows"] == len(rows)


def test_optimize_filters_by_kind_subject_and_top(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection
) -> None:
    rows = table_rows(wh)
    kinds = sorted({r["kind"] for r in rows}, key=KIND_ORDER.index)
    service = next(r["subject"] for r in sorted(rows, key=served_order) if r["kind"] == "lead_time_bottleneck")
    cases: list[dict[str, Any]] = [
        *({"kinds": [kind]} for kind in kinds),
        {"kinds": kinds[-2:][::-1]},  # the order asked for does not change the order served
        {"subject": service.upper()},  # case-insensitive
        {"subject": service[1:-1]},  # a part of it
        {"top": 1},
        {"top": 2, "subject": service},
        {"kinds": kinds[:2], "top": 3},
        {"subject": "no subject has this text"},
        {"service": service.upper()},  # exact, case-insensitive: its lead-time row, pipelines and tests
        {"service": service[1:-1]},  # a part of a name is another service: nothing
        {"service": service, "kinds": ["failing_test"], "top": 1},
    ]
    for request in cases:
        want = expected(rows, **request)
        body = optimize(client, auth, request)
        assert body["recommendations"] == want, request
        assert body["total_rows"] == len(rows), request  # the table's size, whatever the filters
    # the filters did something: each narrowed, and top=1 kept exactly the first of each kind
    assert 0 < len(expected(rows, subject=service)) < len(rows)
    about = expected(rows, service=service)
    assert 0 < len(about) < len(rows) and {r["kind"] for r in about} > {"lead_time_bottleneck"}
    firsts = optimize(client, auth, {"top": 1})["recommendations"]
    assert [(i["kind"], i["rank"]) for i in firsts] == [
        (k, min(r["rank"] for r in rows if r["kind"] == k)) for k in kinds
    ]
    for kind in kinds:
        assert {i["kind"] for i in optimize(client, auth, {"kinds": [kind]})["recommendations"]} == {kind}


def test_a_warehouse_without_recommendations_is_503(warehouse_copy: Path, token: str, auth: dict[str, str]) -> None:
    con = duckdb.connect(str(warehouse_copy))
    try:
        con.execute("DROP TABLE kpi.recommendations")
    finally:
        con.close()
    with api_over(warehouse_copy, token) as api:
        answer = api.post(url("/performance/optimize"), headers=auth, json={})
        assert api.get(url("/kpis"), headers=auth).status_code == 200  # only what needs the table is unavailable
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert "kpi.recommendations" in detail and "opsmap run" in detail
    assert str(warehouse_copy.parent) not in detail  # no paths in answers


@pytest.mark.parametrize(
    "body",
    [
        {"top": 0},
        {"top": 1001},
        {"top": "five"},
        {"top": True},
        {"kinds": []},
        {"kinds": ["flaky_test"]},
        {"kinds": ["failing_job", "failing_job"]},
        {"kinds": "failing_job"},
        {"subject": ""},
        {"subject": "x" * 201},
        {"window": 7},
    ],
)
def test_invalid_optimize_requests_are_422(client: TestClient, auth: dict[str, str], body: dict[str, object]) -> None:
    answer = client.post(url("/performance/optimize"), headers=auth, json=body)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("body", [{"since": "2026-08-01"}, {"since": "2026-08-01", "until": "2026-09-30", "top": 5}])
def test_the_retired_window_is_refused_with_the_reason(
    client: TestClient, auth: dict[str, str], body: dict[str, object]
) -> None:
    answer = client.post(url("/performance/optimize"), headers=auth, json=body)
    assert answer.status_code == 422, answer.text
    assert "no longer accepted" in answer.text and "period_start" in answer.text


def test_the_spec_documents_the_table(client: TestClient, wh: duckdb.DuckDBPyConnection) -> None:
    """The response schema has exactly the table's columns; the kinds offered are the pipeline's."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    columns = [
        r[0]
        for r in wh.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'kpi' AND table_name = 'recommendations' "
            "ORDER BY column_index"
        ).fetchall()
    ]
    assert list(schemas["Recommendation"]["properties"]) == columns
    assert set(schemas["Recommendation"]["required"]) == set(columns)
    operation = spec["paths"][url("/performance/optimize")]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/OptimizeOut")
    assert "503" in operation["responses"] and "422" in operation["responses"]
    offered = schemas["OptimizeIn"]["properties"]["kinds"]["anyOf"][0]["items"]["enum"]
    documented = re.findall(r"`(\w+)`", RECOMMENDATION_DOCS["kind"])
    assert offered == documented == KIND_ORDER
    assert {r[0] for r in wh.execute("SELECT DISTINCT kind FROM kpi.recommendations").fetchall()} <= set(offered)


def test_kpis_are_the_kpi_tables(client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection) -> None:
    body = client.get(url("/kpis"), headers=auth).json()
    success = wh.sql("SELECT * FROM kpi.success_metrics ORDER BY metric").pl().to_dicts()
    assert [m["metric"] for m in body["success_metrics"]] == [r["metric"] for r in success]
    for got, row in zip(body["success_metrics"], success, strict=True):
        assert got["current_value"] == pytest.approx(row["current_value"])
        assert got["baseline_value"] == pytest.approx(row["baseline_value"])
        assert got["met"] == row["met"]
    dora = {r["period_kind"]: r for r in wh.sql("SELECT * FROM kpi.dora WHERE period_kind <> 'week'").pl().to_dicts()}
    for kind in ("baseline", "current"):
        assert body["dora"][kind]["deployments"] == dora[kind]["deployments"]
        assert body["dora"][kind]["period_start"] == dora[kind]["period_start"].isoformat()
        assert body["dora"][kind]["lead_time_hours_median"] == pytest.approx(dora[kind]["lead_time_hours_median"])
        assert body["dora"][kind]["performance_tier"] == dora[kind]["performance_tier"]


def test_health_reports_freshness(
    client: TestClient, api_settings: ApiSettings, wh: duckdb.DuckDBPyConnection, truth: dict[str, pl.DataFrame]
) -> None:
    body = client.get(url("/health")).json()
    published_at = datetime.fromtimestamp(api_settings.published.stat().st_mtime, UTC)
    assert body["status"] == "ok"
    assert abs((datetime.fromisoformat(body["published_at"]) - published_at).total_seconds()) < 0.001
    assert 0 <= body["age_hours"] < 2
    latest_event = wh.execute("SELECT max(occurred_at) FROM staging.stg_mixpanel__events").fetchall()[0][0]
    assert datetime.fromisoformat(body["latest_by_source"]["mixpanel"]) == latest_event
    assert datetime.fromisoformat(body["latest_data_at"]) == max(
        datetime.fromisoformat(v) for v in body["latest_by_source"].values() if v
    )
    world_end = truth["programme"]["world_end"][0]
    assert datetime.fromisoformat(body["latest_data_at"]).date() < world_end  # data stops where the world does
    assert body["warehouse"] == api_settings.published.name


def test_health_says_stale_past_the_limit(api_settings: ApiSettings) -> None:
    with TestClient(create_app(replace(api_settings, stale_after_hours=0.0))) as api:
        body = api.get(url("/health")).json()
    assert body["status"] == "stale"
    assert body["age_hours"] > 0
