"""`quality.source_reconciliation`: the probe's totals, the table, its checks and the sync_accuracy KPI."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import requests
from dagster import AssetCheckSeverity, AssetKey, AssetSelection
from quality_support import corrupt, evaluations, metadata, run_checks, run_selection

from pipelines.assets.reconciliation import (
    PROBE_CHECK,
    RECONCILIATION_KEY,
    count_not_before,
    last_page,
    probe_sources,
)
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World

GITHUB_ENTITIES = {"repositories", "pull_requests", "deployments", "releases", "workflow_runs"}


# --- paging arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize("bound_index", [0, 1, 2, 7, 99, 100])
def test_counting_records_at_or_after_a_bound_by_binary_search(bound_index: int) -> None:
    # 100 records newest first, one a day; the first `bound_index` of them are at or after the bound.
    newest = datetime(2026, 5, 1, tzinfo=UTC)
    moments = [newest - timedelta(days=k) for k in range(100)]
    bound = moments[bound_index - 1] if bound_index else newest + timedelta(days=1)
    asked: list[int] = []

    def moment_of(k: int) -> datetime:
        asked.append(k)
        return moments[k - 1]

    assert count_not_before(100, moment_of, bound) == bound_index
    assert len(asked) <= 2 + 7  # the oldest, the newest, then log2(100) probes at most


def test_a_list_that_shrinks_while_counting_is_read_as_ending_there() -> None:
    assert count_not_before(3, lambda k: None, datetime(2026, 1, 1, tzinfo=UTC)) == 0
    assert count_not_before(0, lambda k: pytest.fail("no request for an empty list"), datetime.now(UTC)) == 0


def test_the_last_page_of_a_one_per_page_list_is_its_length() -> None:
    response = requests.Response()
    response.headers["Link"] = (
        '<http://x/pulls?per_page=1&page=2>; rel="next", <http://x/pulls?per_page=1&page=37>; rel="last"'
    )
    assert last_page(response) == 37
    single = requests.Response()
    single._content = b'[{"id": 1}]'
    assert last_page(single) == 1


# --- the probe against the sandbox ---------------------------------------------------------------


def test_the_probe_reports_the_worlds_totals(
    sandbox: SandboxServer, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    totals, errors = probe_sources()
    assert errors == {}
    found = {(t.system, t.entity): t.total for t in totals}
    assert {e for s, e in found if s == "github"} == GITHUB_ENTITIES
    view = world.visible(sandbox.as_of)
    assert found[("github", "pull_requests")] == len(view.pull_requests())
    assert found[("github", "releases")] == len(view.releases())
    assert found[("datadog", "slos")] == len(view.slos())
    assert found[("jira", "projects")] == found[("jira", "boards")] == len(world.teams)
    assert found[("jenkins", "builds")] > 0


def test_a_later_start_date_counts_only_what_the_extraction_would_read(
    private_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = private_sandbox.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    start = date(2026, 6, 1)
    monkeypatch.setenv("SOURCES__GITHUB__START_DATE", start.isoformat())
    totals, _ = probe_sources(["github"])
    found = {t.entity: t.total for t in totals}
    # The oracle: read every PR and deployment and count by hand.
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {env['SOURCES__GITHUB__ACCESS_TOKEN']}"
    base, bound = env["SOURCES__GITHUB__BASE_URL"], datetime(2026, 6, 1, tzinfo=UTC)
    repos = [r["full_name"] for r in session.get(f"{base}/orgs/acme/repos", params={"per_page": 100}).json()]

    def count(path: str, field: str, **params: object) -> tuple[int, int]:
        """(records at or after the bound, all records) of one list, read in full."""
        since = every = 0
        url: str | None = f"{base}/{path}"
        query: dict[str, object] | None = {"per_page": 100, **params}
        while url:
            response = session.get(url, params=query)
            items = response.json()
            every += len(items)
            since += sum(datetime.fromisoformat(x[field].replace("Z", "+00:00")) >= bound for x in items)
            url, query = response.links.get("next", {}).get("url"), None
        return since, every

    pulls = [count(f"repos/{r}/pulls", "updated_at", state="all") for r in repos]
    deployments = [count(f"repos/{r}/deployments", "created_at") for r in repos]
    assert found["pull_requests"] == sum(p[0] for p in pulls)
    assert found["deployments"] == sum(d[0] for d in deployments)
    assert 0 < found["pull_requests"] < sum(p[1] for p in pulls)  # the start date really cut some off


def test_an_unreachable_source_is_reported_without_its_secret(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sandbox.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCES__JIRA__BASE_URL", env["SOURCES__JIRA__BASE_URL"] + "/no-such-site")
    totals, errors = probe_sources(["jira", "datadog"])
    assert {t.system for t in totals} == {"datadog"} and set(errors) == {"jira"}
    assert env["SOURCES__JIRA__API_TOKEN"] not in errors["jira"] and "404" in errors["jira"]


# --- the table and the KPI after the nightly run -------------------------------------------------


def test_the_nightly_run_reconciles_every_entity_completely(built_warehouse: dict) -> None:
    con = duckdb.connect(str(built_warehouse["paths"].published), read_only=True)
    try:
        table = con.sql("SELECT * FROM quality.source_reconciliation").pl()
        documented = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'quality' "
            "AND table_name = 'source_reconciliation' AND coalesce(comment, '') <> ''"
        ).fetchone()[0]
        sync = con.execute("SELECT current_value FROM kpi.success_metrics WHERE metric = 'sync_accuracy'").fetchone()[0]
    finally:
        con.close()
    assert set(zip(table["system"], table["entity"], strict=True)) >= {("github", e) for e in GITHUB_ENTITIES} | {
        ("jira", "projects"),
        ("jira", "boards"),
        ("jenkins", "builds"),
        ("datadog", "slos"),
    }
    assert (table["warehouse_rows"] == table["source_total"]).all() and (table["completeness"] == 1.0).all()
    assert documented == len(table.columns)
    assert sync == pytest.approx(table["completeness"].min())
    from pipelines.definitions import defs

    kpi = defs.resolve_asset_graph().get(AssetKey(["kpi", "success_metrics"]))
    assert RECONCILIATION_KEY in kpi.parent_keys


def test_the_nightly_run_takes_the_totals_when_extraction_finishes(built_warehouse: dict) -> None:
    # The sandbox stops then (a scale-10 world holds gigabytes), so a live probe later would fail the check.
    events = built_warehouse["result"].all_events
    [materialised] = [
        e
        for e in events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.step_key == "quality__source_reconciliation"
    ]
    assert materialised.materialization.metadata["probed"].text.endswith("when extraction finished")
    [probe] = [
        e
        for e in events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.step_key == "quality__source_reconciliation"
    ]
    assert probe.event_specific_data.passed


class _FakeSandbox:
    def __init__(self, env_file: Path) -> None:
        self.env_file, self.stopped = env_file, 0

    def stop(self) -> None:
        self.stopped += 1


def test_the_sandbox_stops_once_extraction_finished_and_the_totals_are_handed_over_once(tmp_path: Path) -> None:
    from pipelines.resources import SourcesResource

    resource = SourcesResource()
    fake = _FakeSandbox(tmp_path / "sandbox.env")
    fake.env_file.write_text("")
    resource._sandbox = fake
    asked: list[int] = []

    def probe() -> int:
        asked.append(len(asked))
        return len(asked)

    resource.extraction_finished(probe)
    assert fake.stopped == 1 and not fake.env_file.exists() and not resource.sandbox_running
    assert resource.source_totals(probe) == (1, True)  # kept from extraction, not asked again
    assert resource.source_totals(probe) == (2, False) and asked == [0, 1]  # a later step asks afresh
    resource.extraction_finished(probe)  # no sandbox any more: nothing to take or stop
    assert fake.stopped == 1 and asked == [0, 1]


def test_missing_rows_lower_completeness_and_warn_with_the_entity(
    warehouse_copy: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    corrupt(warehouse_copy, "DELETE FROM raw_github.pull_requests WHERE number % 2 = 0")
    result = run_selection(AssetSelection.assets(RECONCILIATION_KEY))  # the asset and its checks
    assert result.success
    con = duckdb.connect(str(warehouse_copy), read_only=True)
    try:
        row = con.execute(
            "SELECT warehouse_rows, source_total, completeness FROM quality.source_reconciliation "
            "WHERE system = 'github' AND entity = 'pull_requests'"
        ).fetchone()
    finally:
        con.close()
    assert row[0] < row[1] and row[2] == pytest.approx(row[0] / row[1])
    found = evaluations(result)
    suite = found[("quality/source_reconciliation", "gx_suite")]
    assert not suite.passed and suite.severity == AssetCheckSeverity.WARN
    [failure] = metadata(suite)["failures"]  # type: ignore[misc]
    assert failure["column"] == "completeness" and failure["offending_keys"] == [
        {"system": "github", "entity": "pull_requests"}
    ]
    assert found[("quality/source_reconciliation", "primary_key")].passed
    assert found[("quality/source_reconciliation", PROBE_CHECK)].passed


def test_a_duplicated_entity_fails_the_reconciliation_primary_key(warehouse_copy: Path) -> None:
    corrupt(
        warehouse_copy,
        "INSERT INTO quality.source_reconciliation SELECT * FROM quality.source_reconciliation WHERE entity = 'slos'",
    )
    evaluation = run_checks(("quality/source_reconciliation", "primary_key"))[
        ("quality/source_reconciliation", "primary_key")
    ]
    assert not evaluation.passed and evaluation.blocking
    assert metadata(evaluation)["offending_keys"] == [{"system": "datadog", "entity": "slos", "rows": 2}]


def test_a_source_that_does_not_answer_fails_the_probe_check_without_leaking_its_secret(
    warehouse_copy: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sandbox.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCES__JIRA__BASE_URL", env["SOURCES__JIRA__BASE_URL"] + "/no-such-site")
    result = run_selection(AssetSelection.assets(RECONCILIATION_KEY))
    assert result.success  # a WARN: the table is still written, without the silent system
    probed = evaluations(result)[("quality/source_reconciliation", PROBE_CHECK)]
    assert not probed.passed and probed.severity == AssetCheckSeverity.WARN
    evidence = metadata(probed)
    assert set(evidence["errors"]) == {"jira"} and "404" in evidence["errors"]["jira"]  # type: ignore[index, operator]
    assert env["SOURCES__JIRA__API_TOKEN"] not in str(evidence)
    con = duckdb.connect(str(warehouse_copy), read_only=True)
    try:
        systems = {r[0] for r in con.execute("SELECT DISTINCT system FROM quality.source_reconciliation").fetchall()}
    finally:
        con.close()
    assert systems == {"github", "jenkins", "datadog"}
