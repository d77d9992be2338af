"""The GitHub dlt source against the sandbox: raw tables equal the world, incrementally, under faults,
on real recordings, and a rejected token stops it at once with the key to fix."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import contract_catalogue
import dlt
import duckdb
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.sandbox.contract import load_fixture
from pipelines.sandbox.faults import FaultPlan
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.github import JOB_ID_BASE
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import Build, Deployment, World, WorldConfig, WorldView
from pipelines.sources.github import GitHubClient, as_list, compare_deployments, github_source, repo_names

FIXTURES = contract_catalogue.FIXTURES_ROOT / "github"
TOKEN = "ghp_testTokenThatMustNeverBeStored000001"


@pytest.fixture(autouse=True)
def _no_nagle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workaround until the sandbox server sets it: its handler writes headers and body separately,
    # and on a keep-alive connection Nagle + delayed ACK add ~40 ms to every request.
    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "disable_nagle_algorithm", True, raising=False)


# --------------------------------------------------------------------------------------------------
# Running the source
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A pipeline into a temporary DuckDB file, run against one server."""

    directory: Path
    base_url: str
    org: str = "acme"
    start_date: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pipeline = dlt.pipeline(
            pipeline_name="github_test",
            destination=dlt.destinations.duckdb(str(self.directory / "warehouse.duckdb")),
            dataset_name="raw_github",
            pipelines_dir=str(self.directory / "pipelines"),
        )

    def __call__(self) -> Any:
        source = github_source(
            base_url=self.base_url, access_token=TOKEN, org=self.org, start_date=self.start_date, **self.options
        )
        return self.pipeline.run(source, loader_file_format="parquet")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.directory / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql).fetchall()

    def rows(self, sql: str) -> set[tuple[Any, ...]]:
        """The distinct rows of a query; none when its table was never created (nothing to load yet)."""
        try:
            return set(self.query(sql))
        except duckdb.CatalogException:
            return set()


def sandbox_run(server: SandboxServer, directory: Path, **options: Any) -> Run:
    env = server.env()
    return Run(
        directory,
        env["SOURCES__GITHUB__BASE_URL"],
        env["SOURCES__GITHUB__ORG"],
        env["SOURCES__GITHUB__START_DATE"],
        options,
    )


def set_as_of(server: SandboxServer, moment: datetime) -> None:
    requests.put(f"{server.url}/_sandbox/as-of", params={"at": moment.isoformat()}, timeout=10).raise_for_status()


# --------------------------------------------------------------------------------------------------
# What the tables must hold: the world as of the server's clock, from the start date on
# --------------------------------------------------------------------------------------------------


def _final_state(view: WorldView, d: Deployment) -> str | None:
    statuses = view.deployment_statuses(d)
    return statuses[-1].state if statuses else None


def _run_state(view: WorldView, b: Build) -> tuple[str, str | None]:
    if not view.build_finished(b):
        return "in_progress", None
    return "completed", "success" if b.result == "SUCCESS" else "failure"


def expected(world: World, as_of: datetime, start: datetime, repos: set[str] | None = None) -> dict[str, set[Any]]:
    """Every table's key set (with the facts that matter) as the world stood at `as_of`."""
    view = world.visible(as_of)
    org = world.org
    names = {s.repo(org) for s in world.services if s.created_at <= as_of and (repos is None or s.name in repos)}
    prs = [p for p in view.pull_requests() if p.repo in names and p.updated_at(as_of) >= start]
    deployments = [d for d in view.deployments() if d.system == "github" and d.repo in names and d.started_at >= start]
    runs = [
        b
        for b in view.builds()
        if b.system == "github_actions" and f"{org}/{b.service}" in names and b.started_at >= start
    ]
    out: dict[str, set[Any]] = {
        "repositories": names,
        "pull_requests": {
            (p.repo, p.number, view.is_merged(p), p.merge_sha if view.is_merged(p) else None, view.is_closed(p))
            for p in prs
        },
        "pull_request_commits": {(p.pr_id, c.sha) for p in prs for c in view.pr_commits(p)},
        "pull_request_reviews": {(p.pr_id, r.review_id, r.state) for p in prs for r in view.pr_reviews(p)},
        "commits": {(r, c.sha) for r in names for c in view.mainline(r) if c.committed_at >= start},
        "deployments": {(d.github_id, d.repo, d.environment, d.sha) for d in deployments},
        "deployment_statuses": {
            (d.github_id, s.status_id, s.state) for d in deployments for s in view.deployment_statuses(d)
        },
        "workflow_runs": {(b.run_id, b.sha, *_run_state(view, b)) for b in runs},
        "workflow_jobs": {(JOB_ID_BASE + s.stage_id, b.run_id) for b in runs for s in b.stages},
        "releases": {(r.release_id, r.repo, r.tag) for r in view.releases() if r.repo in names},
    }
    compares: set[Any] = set()
    shipped: set[Any] = set()
    for repo in names:
        production = sorted(
            (d for d in deployments if d.repo == repo and d.environment == "production"),
            key=lambda d: (d.started_at, d.github_id),
        )
        line = [c.sha for c in view.mainline(repo)]
        previous = None
        for d in production:
            state = _final_state(view, d)
            if state not in ("success", "failure", "error"):
                break  # the source pairs it once it ends
            if state != "success":
                continue
            if previous is not None:
                compares.add((repo, previous.sha, d.sha))
                low, high = line.index(previous.sha), line.index(d.sha)
                shipped |= {(repo, previous.sha, d.sha, sha) for sha in line[low + 1 : high + 1]}
            previous = d
    out["deployment_compares"] = compares
    out["deployment_compares__commits"] = shipped
    return out


def loaded(run: Run) -> dict[str, set[Any]]:
    """The same key sets, read back from the warehouse."""
    return {
        "repositories": {r[0] for r in run.query("select full_name from raw_github.repositories")},
        "pull_requests": run.rows(
            "select repo_full_name, number, merged_at is not null, merge_commit_sha, state = 'closed' "
            "from raw_github.pull_requests"
        ),
        "pull_request_commits": run.rows("select pull_request_id, sha from raw_github.pull_request_commits"),
        "pull_request_reviews": run.rows("select pull_request_id, id, state from raw_github.pull_request_reviews"),
        "commits": run.rows("select repo_full_name, sha from raw_github.commits"),
        "deployments": run.rows("select id, repo_full_name, environment, sha from raw_github.deployments"),
        "deployment_statuses": run.rows("select deployment_id, id, state from raw_github.deployment_statuses"),
        "workflow_runs": run.rows("select id, head_sha, status, conclusion from raw_github.workflow_runs"),
        "workflow_jobs": run.rows("select id, run_id from raw_github.workflow_jobs"),
        "releases": run.rows("select id, repo_full_name, tag_name from raw_github.releases"),
        "deployment_compares": run.rows(
            "select repo_full_name, base_sha, head_sha from raw_github.deployment_compares"
        ),
        "deployment_compares__commits": run.rows(
            "select c.repo_full_name, c.base_sha, c.head_sha, k.sha from raw_github.deployment_compares c "
            "join raw_github.deployment_compares__commits k on k._dlt_parent_id = c._dlt_id"
        ),
    }


def assert_tables_equal_world(
    run: Run, world: World, as_of: datetime, repos: set[str] | None = None, *, every_table: bool = False
) -> None:
    """Each table's key set equals the world's (`every_table`: and none of them is empty)."""
    start = datetime.fromisoformat(run.start_date or "1970-01-01").replace(tzinfo=UTC)
    want, got = expected(world, as_of, start, repos), loaded(run)
    for table in want:
        missing, extra = want[table] - got[table], got[table] - want[table]
        assert not missing and not extra, f"{table}: missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
        assert want[table] or not every_table, f"{table}: the world has none, so the test proves nothing"


PRIMARY_KEYS = {
    "repositories": "id",
    "pull_requests": "id",
    "pull_request_commits": "pull_request_id, sha",
    "pull_request_reviews": "id",
    "commits": "repo_full_name, sha",
    "deployments": "id",
    "deployment_statuses": "id",
    "deployment_compares": "repo_full_name, base_sha, head_sha",
    "workflow_runs": "id",
    "workflow_jobs": "id",
    "releases": "id",
}


def assert_no_duplicates(run: Run) -> None:
    for table, key in PRIMARY_KEYS.items():
        [(rows, keys)] = run.query(f"select count(*), count(distinct ({key})) from raw_github.{table}")
        assert rows == keys > 0, table
    for child in ("pull_requests__labels", "workflow_jobs__steps", "deployment_compares__commits"):
        [(rows, keys)] = run.query(
            f"select count(*), count(distinct (_dlt_parent_id, _dlt_list_idx)) from raw_github.{child}"
        )
        assert rows == keys > 0, child


# --------------------------------------------------------------------------------------------------
# (2) A full run equals the world
# --------------------------------------------------------------------------------------------------


def test_a_full_run_loads_the_world(sandbox: SandboxServer, world: World, tmp_path: Path) -> None:
    run = sandbox_run(sandbox, tmp_path)
    run()
    assert_tables_equal_world(run, world, sandbox.as_of, every_table=True)
    assert_no_duplicates(run)
    # Declared write dispositions and keys, as the warehouse's merge relies on them.
    schema = run.pipeline.default_schema
    for table, key in PRIMARY_KEYS.items():
        assert schema.get_table(table)["write_disposition"] == "merge", table
        assert {c for c, h in schema.get_table_columns(table).items() if h.get("primary_key")} == set(key.split(", "))
    assert "deployment_bundles" not in schema.tables  # the hidden feeder resource loads nothing
    # Timestamps stay as GitHub sends them, parsed to UTC by dlt; nullable facts exist as columns.
    [(merged_type,)] = run.query(
        "select data_type from information_schema.columns where table_schema = 'raw_github' "
        "and table_name = 'pull_requests' and column_name = 'merged_at'"
    )
    assert merged_type == "TIMESTAMP WITH TIME ZONE"
    # The token reaches neither the warehouse nor the pipeline's state.
    text_columns = run.query(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'raw_github' and data_type = 'VARCHAR'"
    )
    union = " union all ".join(
        f'select count(*) from raw_github."{t}" where "{c}" like \'%{TOKEN[-12:]}%\'' for t, c in text_columns
    )
    assert sum(n for (n,) in run.query(union)) == 0
    assert TOKEN not in json.dumps(run.pipeline.state, default=str)


def test_a_repository_selection_reads_only_those_repositories(
    sandbox: SandboxServer, world: World, tmp_path: Path
) -> None:
    chosen = [s.name for s in world.services if s.deploys_via == "github"][:2]
    run = sandbox_run(sandbox, tmp_path, repos=f"{chosen[0]}, {world.org}/{chosen[1]}")
    run()
    assert_tables_equal_world(run, world, sandbox.as_of, repos=set(chosen), every_table=True)


def test_an_unknown_repository_in_the_selection_names_the_setting(sandbox: SandboxServer, tmp_path: Path) -> None:
    run = sandbox_run(sandbox, tmp_path, repos="no-such-repo")
    with pytest.raises(PipelineStepFailed) as failure:
        run()
    assert "SOURCES__GITHUB__REPOS" in str(failure.value) and "404" in str(failure.value)


def test_compares_page_through_every_commit_and_skip_pairs_github_cannot_compare(
    sandbox: SandboxServer, world: World
) -> None:
    api = GitHubClient(sandbox.env()["SOURCES__GITHUB__BASE_URL"], TOKEN, selection_key="ORG")
    repo = f"{world.org}/{world.services[0].name}"
    line = [c.sha for c in world.visible().mainline(repo)]
    head = {"id": 2, "sha": line[-1], "environment": "production"}
    row = compare_deployments(api, repo, {"id": 1, "sha": line[-151]}, head)
    assert row is not None and (row["status"], row["ahead_by"], row["total_commits"]) == ("ahead", 150, 150)
    assert [c["sha"] for c in row["commits"]] == line[-150:]  # two pages of 100, oldest first
    assert compare_deployments(api, repo, {"id": 1, "sha": "0" * 40}, head) is None


def test_list_settings_accept_strings_and_lists() -> None:
    assert as_list(" a, b ,,c") == ["a", "b", "c"] == as_list(["a", " b", "", "c"])
    assert as_list(None) == []
    assert repo_names("acme", ["web", "other/x"]) == ["acme/web", "other/x"]


# --------------------------------------------------------------------------------------------------
# (3) Incremental: successive nightly runs
# --------------------------------------------------------------------------------------------------


def nightly_moment(world: World) -> datetime:
    """The latest moment with a run in progress after which, within a day, PRs change and new
    deployments and runs start (so the second run has every kind of work to pick up)."""
    gha = [b for b in world.builds if b.system == "github_actions"]
    for b in sorted(gha, key=lambda b: b.started_at, reverse=True):
        moment = b.started_at + timedelta(seconds=30)
        later = moment + timedelta(days=1)
        if (
            any(moment < p.updated_at(later) <= later for p in world.pull_requests if p.created_at <= later)
            and any(moment < d.started_at <= later for d in world.deployments if d.system == "github")
            and any(moment < c.started_at <= later for c in gha)
        ):
            return moment
    raise AssertionError("the world has no busy day")


def test_the_next_nightly_run_reads_only_what_changed(
    private_sandbox: SandboxServer, world: World, tmp_path: Path
) -> None:
    day = nightly_moment(world)
    set_as_of(private_sandbox, day)
    run = sandbox_run(private_sandbox, tmp_path)
    run()
    first = private_sandbox.requests_served
    assert_tables_equal_world(run, world, day)
    # A run was in progress at D: the next run must re-read it (the D+1 comparison sees it completed).
    assert run.query("select count(*) from raw_github.workflow_runs where status = 'in_progress'") == [(1,)]

    set_as_of(private_sandbox, day + timedelta(days=1))
    run()
    second = private_sandbox.requests_served - first
    assert_tables_equal_world(run, world, day + timedelta(days=1), every_table=True)
    assert_no_duplicates(run)
    # Every repository still costs one list request per resource; everything else is the day's news.
    assert second <= 0.05 * first, (second, first)


def test_a_deployment_in_progress_is_reread_until_it_ends_and_then_compared(tmp_path: Path) -> None:
    world = small_world()
    deployment = next(
        d
        for d in world.deployments
        if d.system == "github"
        and d.environment == "production"
        and d.outcome == "success"
        and not d.is_rollback
        and any(
            p.environment == "production" and p.outcome == "success" and p.started_at < d.started_at
            for p in world.deployments
            if p.repo == d.repo and p.system == "github"
        )
    )
    moment = deployment.statuses[1].at + timedelta(seconds=5)  # in progress
    with SandboxServer(world, as_of=moment) as server:
        run = sandbox_run(server, tmp_path)
        run()
        assert_tables_equal_world(run, world, moment)
        latest = run.query(
            f"select state from raw_github.deployment_statuses where deployment_id = {deployment.github_id} "
            "order by created_at desc limit 1"
        )
        assert latest == [("in_progress",)]
        assert not run.rows(
            f"select 1 from raw_github.deployment_compares where head_deployment_id = {deployment.github_id}"
        )
        after = deployment.finished_at + timedelta(minutes=1)
        set_as_of(server, after)
        run()
        assert_tables_equal_world(run, world, after)
        assert (
            run.query(
                f"select status from raw_github.deployment_compares where head_deployment_id = {deployment.github_id}"
            )
            != []
        )


# --------------------------------------------------------------------------------------------------
# (4) Faults: rate limits, 5xx, truncated bodies, duplicates across pages, records changing mid-paging
# --------------------------------------------------------------------------------------------------

_SMALL: dict[str, World] = {}


def small_world() -> World:
    """A quarter of the shared world's activity: enough of every entity, a third of the requests."""
    if "world" not in _SMALL:
        _SMALL["world"] = generate_world(WorldConfig(seed=42, scale=0.05))
    return _SMALL["world"]


def test_the_source_survives_faults_and_still_loads_the_world(tmp_path: Path) -> None:
    world = small_world()
    faults = FaultPlan(
        {"rate_limit": 0.03, "server_error": 0.03, "truncate": 0.02, "duplicate": 0.03, "mutate": 0.02, "slow": 0.005},
        seed=7,
    )
    log = tmp_path / "access.jsonl"
    with SandboxServer(world, faults=faults, access_log=log, slow_seconds=1.0) as server:
        run = sandbox_run(server, tmp_path)
        run()
        assert_tables_equal_world(run, world, server.as_of)
        assert_no_duplicates(run)
    seen = defaultdict(int)
    for line in log.read_text().splitlines():
        for kind in json.loads(line)["faults"]:
            seen[kind] += 1
    assert {"rate_limit", "server_error", "truncate", "duplicate", "mutate"} <= set(seen), dict(seen)


# --------------------------------------------------------------------------------------------------
# (5) Real recordings go through the source's parsing path
# --------------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class RecordingServer:
    """Serves recorded GitHub answers on 127.0.0.1: `routes` maps (path, page) to a recording;
    a `handler` decides for paths with ids. Recorded `Link` URLs are rewritten to this server."""

    def __init__(self, resolve: Callable[[str, dict[str, str]], Recorded]) -> None:
        self.resolve = resolve
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                outer.requests.append(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                answer = outer.resolve(parts.path, query)
                body = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    if name not in ("content-length", "content-encoding", "transfer-encoding", "status"):
                        self.send_header(name, value.replace("https://api.github.com", outer.url))
                if "content-type" not in answer.headers:
                    self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fixture(name: str) -> Any:
    return load_fixture(FIXTURES / name)


def headers(name: str) -> dict[str, str]:
    return dict(fixture(name))


def _by_request_url(name: str, pattern: str) -> dict[str, list[Any]]:
    """JSONL items grouped by the id in each line's recorded request URL (from the .meta.json sidecar)."""
    items = fixture(name)
    meta = json.loads((FIXTURES / name.replace(".jsonl", ".meta.json")).read_text())
    grouped: dict[str, list[Any]] = defaultdict(list)
    for item, line in zip(items, meta["per_line"], strict=True):
        match = re.search(pattern, line["request_url"])
        grouped[match.group(1) if match else ""].append(item)
    return grouped


def _chain(server_url: str, path: str, pages: list[Recorded]) -> Callable[[int], Recorded]:
    """Serve recordings as successive pages of one list: a `Link: rel="next"` joins each to the next
    (kept when the recording has its own)."""

    def page(n: int) -> Recorded:
        if n > len(pages):
            return Recorded(200, [] if isinstance(pages[0].body, list) else {**pages[0].body, "workflow_runs": []})
        answer = pages[n - 1]
        extra = {}
        if n < len(pages) and "link" not in answer.headers:
            extra["link"] = f'<{server_url}{path}?page={n + 1}>; rel="next"'
        return Recorded(answer.status, answer.body, {**answer.headers, **extra})

    return page


def test_real_recordings_go_through_the_sources_parsing_path(tmp_path: Path) -> None:
    pulls = fixture("pull_requests.jsonl")
    repo = pulls[0]["base"]["repo"]  # a real repository object, as GitHub embeds it
    full = repo["full_name"]
    pr_commits = _by_request_url("pull_request_commits.jsonl", r"/pulls/(\d+)/commits")
    pr_reviews = _by_request_url("pull_request_reviews.jsonl", r"/pulls/(\d+)/reviews")
    pr_reviews[str(pulls[0]["number"])].append(fixture("pull_review_get.json"))
    runs_jsonl = fixture("workflow_runs.jsonl")
    jobs_by_run = _by_request_url("workflow_jobs.jsonl", r"/runs/(\d+)/jobs")
    for job in (fixture("actions_job_get.json"),):
        jobs_by_run[str(job["run_id"])].append(job)
    jobs_list = fixture("actions_run_jobs_list.json")
    deployments = fixture("deployments_list.json")
    state: dict[str, Callable[[int], Recorded]] = {}

    def resolve(path: str, query: dict[str, str]) -> Recorded:
        page = int(query.get("page", 1))
        if path == "/orgs/acme/repos":
            return Recorded(200, [repo], headers("pulls_list_state_closed_2012.headers.json"))
        if path == f"/repos/{full}/pulls":
            return state["pulls"](page)
        if m := re.fullmatch(rf"/repos/{full}/pulls/(\d+)/(commits|reviews)", path):
            source = pr_commits if m.group(2) == "commits" else pr_reviews
            return Recorded(200, source.get(m.group(1), []))
        if path == f"/repos/{full}/commits":
            return Recorded(
                200,
                fixture("commits_list_since_until_page1.json"),
                headers("commits_list_since_until_page1.headers.json"),
            )
        if path == "/repositories/3544490/commits" and "last_sha" in query:
            return Recorded(
                200,
                fixture("commits_list_since_until_page2.json"),
                headers("commits_list_since_until_page2.headers.json"),
            )
        if path in (f"/repos/{full}/actions/runs", "/repositories/146139403/actions/runs"):
            return state["runs"](page)
        if m := re.fullmatch(rf"/repos/{full}/actions/runs/(\d+)/jobs", path):
            if m.group(1) == str(jobs_list["jobs"][0]["run_id"]):
                return Recorded(200, jobs_list, headers("actions_run_jobs_list.headers.json"))
            jobs = jobs_by_run.get(m.group(1), [])
            return Recorded(200, {"total_count": len(jobs), "jobs": jobs})
        if path == f"/repos/{full}/deployments":
            return Recorded(200, deployments, headers("deployments_list.headers.json"))
        if m := re.fullmatch(rf"/repos/{full}/deployments/(\d+)/statuses", path):
            statuses = fixture("deployment_statuses_list.json") if m.group(1) == str(deployments[0]["id"]) else []
            return Recorded(200, statuses, headers("deployment_statuses_list.headers.json"))
        if path == f"/repos/{full}/releases":
            return Recorded(200, [fixture("release_latest.json")])
        return Recorded(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

    with RecordingServer(resolve) as server:
        state["pulls"] = _chain(
            server.url,
            f"/repos/{full}/pulls",
            [
                Recorded(200, pulls),
                Recorded(
                    200,
                    fixture("pulls_list_state_closed_2012.json"),
                    headers("pulls_list_state_closed_2012.headers.json"),
                ),
            ],
        )
        runs_page1 = Recorded(
            200, fixture("actions_runs_list_page1.json"), headers("actions_runs_list_page1.headers.json")
        )
        later_runs = [
            Recorded(
                200,
                fixture("actions_runs_list_by_head_sha.json"),
                headers("actions_runs_list_by_head_sha.headers.json"),
            ),
            Recorded(
                200,
                fixture("actions_runs_list_created_filter.json"),
                headers("actions_runs_list_created_filter.headers.json"),
            ),
            Recorded(
                200,
                {"total_count": len(runs_jsonl) + 1, "workflow_runs": [*runs_jsonl, fixture("actions_run_get.json")]},
            ),
        ]
        # Page 1's recorded Link points at /repositories/146139403/...&page=2; the pages GitHub
        # served next were not recorded, so the other run recordings stand in for them.
        state["runs"] = _chain(server.url, "/repositories/146139403/actions/runs", [runs_page1, *later_runs])
        run = Run(tmp_path, server.url, "acme", None, {"production_environments": "test"})
        run()
        served = server.requests

    pull_ids = {p["id"] for p in pulls} | {p["id"] for p in fixture("pulls_list_state_closed_2012.json")}
    assert run.query("select count(*) from raw_github.pull_requests") == [(len(pull_ids),)]
    commit_shas = {
        c["sha"]
        for name in ("commits_list_since_until_page1.json", "commits_list_since_until_page2.json")
        for c in fixture(name)
    }
    assert run.query("select count(*) from raw_github.commits") == [(len(commit_shas),)]
    assert any("last_sha=" in r for r in served) and any("/repositories/146139403/actions/runs" in r for r in served)
    run_ids = {r["id"] for p in [runs_page1, *later_runs] for r in p.body["workflow_runs"]}
    assert run.query("select count(*) from raw_github.workflow_runs") == [(len(run_ids),)]
    assert run.query("select count(*) from raw_github.deployments") == [(len(deployments),)]
    assert run.query("select count(*) from raw_github.deployment_statuses") == [(3,)]
    assert run.query("select count(*) from raw_github.releases") == [(1,)]
    for table in ("pull_request_commits", "pull_request_reviews", "workflow_jobs"):
        assert run.query(f"select count(*) > 0 from raw_github.{table}") == [(True,)], table


# --------------------------------------------------------------------------------------------------
# (6) A rejected token stops the source at once and names the key to fix
# --------------------------------------------------------------------------------------------------


def test_a_rejected_token_stops_after_one_request_naming_the_key(tmp_path: Path) -> None:
    body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}
    with RecordingServer(lambda path, query: Recorded(401, body, {"x-ratelimit-limit": "60"})) as server:
        run = Run(tmp_path, server.url, "acme", "2026-01-01")
        with pytest.raises(PipelineStepFailed) as failure:
            run()
        assert len(server.requests) == 1
    message = str(failure.value)
    assert "SOURCES__GITHUB__ACCESS_TOKEN" in message and "401" in message
    assert TOKEN not in message and TOKEN[-12:] not in message
