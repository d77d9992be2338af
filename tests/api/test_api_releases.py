"""POST/GET /release/{version}: annotations stored beside the warehouse, idempotently, joined with releases."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import polars as pl
import pytest
from fastapi.testclient import TestClient

from pipelines.api import API_PREFIX, ApiSettings, create_app


def url(path: str) -> str:
    return API_PREFIX + path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def releases_named(wh: duckdb.DuckDBPyConnection, version: str) -> set[str]:
    """Warehouse releases whose name's last word, without a leading v, is the version (computed in polars)."""
    frame = wh.sql("SELECT release_id, name FROM deployment.releases").pl()
    last_word = pl.col("name").str.split(" ").list.last().str.strip_prefix("v").str.to_lowercase()
    return set(frame.filter(last_word == version.lower().removeprefix("v"))["release_id"])


def test_post_creates_then_is_idempotent_then_updates(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection, published: Path
) -> None:
    before = digest(published)
    body = {"date": "2026-01-02", "features": ["PAY-3", "GRO-3"], "notes": "first cut"}
    created = client.post(url("/release/1.2.0"), headers=auth, json=body)
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["status"] == "created"
    assert first["annotation"]["features"] == ["PAY-3", "GRO-3"]
    assert first["annotation"]["date"] == "2026-01-02"
    expected = releases_named(wh, "1.2.0")
    assert len(expected) >= 2  # several repositories released 1.2.0
    assert {r["release_id"] for r in first["matching_releases"]} == expected

    again = client.post(url("/release/1.2.0"), headers=auth, json=body)
    assert again.status_code == 200
    assert again.json()["status"] == "unchanged"
    assert again.json()["annotation"] == first["annotation"]

    changed = client.post(url("/release/1.2.0"), headers=auth, json={**body, "notes": "final"})
    assert changed.status_code == 200
    assert changed.json()["status"] == "updated"
    assert changed.json()["annotation"]["created_at"] == first["annotation"]["created_at"]
    assert changed.json()["annotation"]["updated_at"] > first["annotation"]["updated_at"]

    fetched = client.get(url("/release/1.2.0"), headers=auth).json()
    assert fetched["annotation"] == changed.json()["annotation"]
    assert fetched["status"] is None
    assert digest(published) == before  # the published warehouse is never written


def test_a_version_without_release_joins_nothing_and_jira_versions_join(
    client: TestClient, auth: dict[str, str], wh: duckdb.DuckDBPyConnection
) -> None:
    lonely = client.post(url("/release/9.9.9-rc.1"), headers=auth, json={"date": "2026-10-30"})
    assert lonely.status_code == 201
    assert lonely.json()["matching_releases"] == []
    jira_name = wh.execute("SELECT name FROM deployment.releases WHERE system = 'jira' LIMIT 1").fetchall()[0][0]
    version = jira_name.split(" ")[-1]  # "PAY 2025.11" → 2025.11: every project's version of that month
    joined = client.get(url(f"/release/{version}"), headers=auth).json()
    assert joined["annotation"] is None
    assert {r["release_id"] for r in joined["matching_releases"]} == releases_named(wh, version)
    assert {r["system"] for r in joined["matching_releases"]} == {"jira"}


def test_annotations_persist_in_their_own_file(api_settings: ApiSettings, client: TestClient, auth: dict) -> None:
    client.post(url("/release/2.0.0"), headers=auth, json={"date": "2026-03-01", "features": ["PLAT-16"]})
    assert api_settings.annotations.exists()
    con = duckdb.connect(str(api_settings.annotations), read_only=True)
    try:
        rows = con.execute("SELECT version, features FROM release_annotations WHERE version = '2.0.0'").fetchall()
    finally:
        con.close()
    assert rows == [("2.0.0", ["PLAT-16"])]
    # a second API process over the same files sees it (nothing lives only in memory)
    with TestClient(create_app(api_settings)) as other:
        assert other.get(url("/release/2.0.0"), headers=auth).json()["annotation"]["features"] == ["PLAT-16"]


def test_concurrent_identical_posts_create_once(client: TestClient, auth: dict[str, str]) -> None:
    body = {"date": "2026-05-05", "features": ["SRCH-3"]}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post(url("/release/3.0.0"), headers=auth, json=body), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert {a.json()["status"] for a in answers} == {"created", "unchanged"}


def test_unknown_features_are_404_and_store_nothing(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.post(
        url("/release/4.0.0"), headers=auth, json={"date": "2026-01-01", "features": ["PAY-3", "ZZZ-1"]}
    )
    assert answer.status_code == 404
    assert answer.json() == {"detail": "no feature ZZZ-1 in the warehouse"}
    assert client.get(url("/release/4.0.0"), headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("version", "body", "field"),
    [
        ("5.0.0", {"features": []}, "date"),
        ("5.0.0", {"date": "yesterday"}, "date"),
        ("5.0.0", {"date": "2026-02-30"}, "date"),
        ("5.0.0", {"date": "2026-01-01", "features": ["pay-3"]}, 0),
        ("5.0.0", {"date": "2026-01-01", "features": ["PAY-3", "PAY-3"]}, "body"),
        ("5.0.0", {"date": "2026-01-01", "owner": "me"}, "owner"),
        ("5.0.0", {"date": "2026-01-01", "notes": "x" * 2001}, "notes"),
        ("-5", {"date": "2026-01-01"}, "version"),
        ("5.0.0'--", {"date": "2026-01-01"}, "version"),
        ("v" + "1" * 64, {"date": "2026-01-01"}, "version"),
    ],
)
def test_invalid_releases_are_422(
    client: TestClient, auth: dict[str, str], version: str, body: dict[str, object], field: object
) -> None:
    answer = client.post(url(f"/release/{version}"), headers=auth, json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"][0]["loc"]


def test_a_release_nobody_knows_is_404(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.get(url("/release/0.0.0-never"), headers=auth)
    assert answer.status_code == 404
    assert "0.0.0-never" in answer.json()["detail"]
