"""The Jenkins dlt source against the sandbox: raw tables equal the world (full, incremental, faulted),
real Jenkins payloads go through the same parsing path, and bad credentials fail fast and cleanly."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import dlt
import pytest
import requests

from pipelines.sandbox.faults import FAULT_KINDS, FaultPlan
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldConfig
from pipelines.sources.http import SourceAuthError
from pipelines.sources.jenkins import (
    build_row,
    case_rows,
    is_buildable,
    is_container,
    jenkins_source,
    parse_list,
    stage_rows,
    walk_jobs,
)

TEST_SEED = 42  # the session world's seed (tests/conftest.py)
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "jenkins"
TABLES = ("jobs", "builds", "build_stages", "test_cases")


# --- helpers -------------------------------------------------------------------------------------


def new_pipeline(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"jenkins_{uuid.uuid4().hex[:8]}",
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="raw_jenkins",
        pipelines_dir=str(tmp_path / "dlt"),
    )


def source_for(server: SandboxServer, **overrides: Any) -> Any:
    """The source with explicit arguments from the server's configuration (nothing read from env)."""
    env = server.env()
    args: dict[str, Any] = {
        "base_url": env["SOURCES__JENKINS__BASE_URL"],
        "username": env["SOURCES__JENKINS__USERNAME"],
        "api_token": env["SOURCES__JENKINS__API_TOKEN"],
        "root_folders": env["SOURCES__JENKINS__ROOT_FOLDERS"],
        "start_date": env["SOURCES__JENKINS__START_DATE"],
    }
    return jenkins_source(**{**args, **overrides})


def query(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


@dataclass
class Expected:
    """The raw tables' content the world implies at a moment."""

    jobs: set[str] = field(default_factory=set)
    builds: dict[tuple[str, int], tuple[str | None, bool]] = field(default_factory=dict)
    parameters: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    users: dict[tuple[str, int], str] = field(default_factory=dict)
    stages: Counter[tuple[str, int, str, str]] = field(default_factory=Counter)
    cases: Counter[tuple[str, int, str, str, str]] = field(default_factory=Counter)


def expected(world: World, as_of: datetime) -> Expected:
    """Builds started by as-of (running ones with no result), and stages/tests of the finished ones."""
    out = Expected({"ci", "deploy"})
    people = world.people_by_id
    for s in world.services:
        if s.ci == "jenkins":
            out.jobs.add(f"ci/{s.name}")
        if s.deploys_via == "jenkins":
            out.jobs.add(f"deploy/{s.name}-deploy")
    for b in world.builds:
        if b.system != "jenkins" or b.started_at > as_of:
            continue
        done = b.finished_at <= as_of
        out.jobs.add(b.job)
        out.builds[(b.job, b.number)] = (b.result if done else None, not done)
        if b.trigger == "person":  # the world names no one for these: Jenkins' anonymous user
            out.users[(b.job, b.number)] = people[b.triggered_by_id].jenkins_user if b.triggered_by_id else None
        if done:
            out.stages.update((b.job, b.number, s.name, s.status) for s in b.stages)
            out.cases.update((b.job, b.number, c.class_name, c.name, c.status) for c in b.test_cases)
    for d in world.deployments:
        if d.system != "jenkins" or d.started_at > as_of or d.jenkins_job is None or d.jenkins_number is None:
            continue
        key = (d.jenkins_job, d.jenkins_number)
        done = d.finished_at <= as_of
        out.builds[key] = (d.raw_outcome if done else None, not done)
        out.parameters[key] = {"ENVIRONMENT": d.environment, "GIT_SHA": d.sha, "ROLLBACK": json.dumps(d.is_rollback)}
        if d.triggered_by == "person":
            out.users[key] = people[d.creator_id].jenkins_user
        if done:
            out.stages.update((d.jenkins_job, d.jenkins_number, s.name, s.status) for s in d.stages)
    return out


def loaded(pipeline: dlt.Pipeline) -> Expected:
    """The same picture, read back from the warehouse."""
    out = Expected({name for (name,) in query(pipeline, "select full_name from raw_jenkins.jobs")})
    for job, number, result, building in query(
        pipeline, "select job_full_name, number, result, building from raw_jenkins.builds"
    ):
        out.builds[(job, number)] = (result, building)
    params: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for job, number, name, value in query(
        pipeline,
        "select b.job_full_name, b.number, p.name, p.value from raw_jenkins.builds b "
        "join raw_jenkins.builds__parameters p on p._dlt_parent_id = b._dlt_id",
    ):
        params[(job, number)][name] = value
    out.parameters = dict(params)
    for job, number, user in query(
        pipeline,
        "select b.job_full_name, b.number, c.user_id from raw_jenkins.builds b "
        "join raw_jenkins.builds__causes c on c._dlt_parent_id = b._dlt_id "
        "where c._class = 'hudson.model.Cause$UserIdCause'",
    ):
        out.users[(job, number)] = user
    out.stages = Counter(
        query(pipeline, "select job_full_name, build_number, name, status from raw_jenkins.build_stages")
    )
    out.cases = Counter(
        query(pipeline, "select job_full_name, build_number, class_name, name, status from raw_jenkins.test_cases")
    )
    return out


def assert_equal_to_world(pipeline: dlt.Pipeline, world: World, as_of: datetime) -> None:
    want, have = expected(world, as_of), loaded(pipeline)
    assert have.jobs == want.jobs
    assert have.builds == want.builds
    assert have.parameters == want.parameters
    assert have.users == want.users
    assert have.stages == want.stages
    assert have.cases == want.cases


def access_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- (2) a full load against the shared sandbox ----------------------------------------------------


def test_full_load_equals_the_world(sandbox: SandboxServer, world: World, tmp_path: Path, monkeypatch):
    # Configured the way the pipeline runs it: env vars only, the source called with no arguments.
    for key, value in sandbox.env().items():
        if key.startswith("SOURCES__JENKINS__"):
            monkeypatch.setenv(key, value)
    pipeline = new_pipeline(tmp_path)
    pipeline.run(jenkins_source(), loader_file_format="parquet")
    assert_equal_to_world(pipeline, world, sandbox.as_of)
    # git revision, change sets and test counts survive the split of `actions`
    shas = dict(
        query(
            pipeline,
            "select b.job_full_name || '#' || b.number, d.last_built_revision__sha1 from raw_jenkins.builds b "
            "join raw_jenkins.builds__build_data d on d._dlt_parent_id = b._dlt_id",
        )
    )
    ci = [b for b in world.builds if b.system == "jenkins"]
    assert all(shas[f"{b.job}#{b.number}"] == b.sha for b in ci)
    totals = dict(
        query(pipeline, "select job_full_name || '#' || number, test_result__total_count from raw_jenkins.builds")
    )
    assert all(totals[f"{b.job}#{b.number}"] == len(b.test_cases) for b in ci)
    # the token is nowhere in the warehouse or the pipeline's working files
    token = sandbox.env()["SOURCES__JENKINS__API_TOKEN"].encode()
    files = [tmp_path / "warehouse.duckdb", *(p for p in (tmp_path / "dlt").rglob("*") if p.is_file())]
    assert not [str(p) for p in files if token in p.read_bytes()]


# --- (3) incremental: the nightly run of D, then D + 1 day -----------------------------------------


def pick_moment(world: World) -> datetime:
    """A late moment D when builds are running and new ones start within a day.

    Jenkins numbers a job's builds in start order, which the number watermark relies on. The world
    numbers CI builds per service and deploys per attempt, so a few builds start after a
    higher-numbered build of the same job; D is chosen so no such pair straddles it.
    """
    runs = [(b.job, b.number, b.started_at, b.finished_at) for b in world.builds if b.system == "jenkins"]
    runs += [
        (d.jenkins_job or "", d.jenkins_number or 0, d.started_at, d.finished_at)
        for d in world.deployments
        if d.system == "jenkins"
    ]
    starts = sorted((start for _, _, start, _ in runs), reverse=True)
    for start in starts[len(starts) // 10 :]:  # leave a few days of builds after D
        d0 = start + timedelta(minutes=2)
        d1 = d0 + timedelta(days=1)
        running = {job for job, _, s, e in runs if s <= d0 < e}
        if not running or not any(d0 < s <= d1 for _, _, s, _ in runs):
            continue
        top: dict[str, int] = defaultdict(int)
        for job, number, s, _ in runs:
            if s <= d0:
                top[job] = max(top[job], number)
        if not any(d0 < s <= d1 and number < top[job] for job, number, s, _ in runs):
            return d0
    raise AssertionError("no moment with running builds in this world")


def test_incremental_runs_read_only_what_changed(world: World, tmp_path: Path):
    d0 = pick_moment(world)
    d1 = d0 + timedelta(days=1)
    log = tmp_path / "access.log"
    with SandboxServer(world, as_of=d0, access_log=log) as server:
        pipeline = new_pipeline(tmp_path)
        pipeline.run(source_for(server), loader_file_format="parquet")
        first = access_log(log)
        assert_equal_to_world(pipeline, world, d0)
        running = {k for k, (_, building) in loaded(pipeline).builds.items() if building}
        assert running, "D must catch builds in progress"

        requests.put(f"{server.url}/_sandbox/as-of", params={"at": d1.isoformat()}, timeout=10)
        pipeline.run(source_for(server), loader_file_format="parquet")
        second = access_log(log)[len(first) :]

    assert len(second) <= 0.05 * len(first), (len(second), len(first))
    assert_equal_to_world(pipeline, world, d1)
    after = loaded(pipeline).builds
    assert all(not after[k][1] and after[k][0] for k in running)  # reopened and completed
    # reports and stages are read once, when a build is first seen finished
    finished_at_d0 = {k for k, (_, building) in expected(world, d0).builds.items() if not building}
    for entry in second:
        m = re.search(r"^(/job/.+)/(\d+)/(wfapi/describe|testReport/api/json)$", entry["path"])
        if m:
            job = "/".join(p for p in unquote(m.group(1)).split("/") if p and p != "job")
            assert (job, int(m.group(2))) not in finished_at_d0, entry["path"]


# --- (4) faults ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world() -> World:
    """A quarter of the session world: enough jobs and builds for every fault kind to strike."""
    return generate_world(WorldConfig(seed=TEST_SEED, scale=0.05))


def test_faulted_load_equals_the_world(small_world: World, tmp_path: Path):
    world = small_world
    plan = FaultPlan(rates={kind: 0.04 for kind in FAULT_KINDS}, seed=11)
    log = tmp_path / "access.log"
    with SandboxServer(world, faults=plan, access_log=log, slow_seconds=0.2) as server:
        pipeline = new_pipeline(tmp_path)
        pipeline.run(source_for(server), loader_file_format="parquet")
        as_of = server.as_of
    faulted = Counter(kind for entry in access_log(log) for kind in entry["faults"])
    assert {"rate_limit", "server_error", "truncate", "duplicate", "slow"} <= set(faulted), faulted
    assert_equal_to_world(pipeline, world, as_of)


# --- (5) real Jenkins payloads through the parsing path ----------------------------------------------


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


class _RecordedJenkins:
    """A stub controller serving DevLake's recordings of one real multibranch project.

    The items (branch jobs, their allBuilds, their Stage View stages) are real; only the folder and
    list envelopes around them are written here.
    """

    FOLDER = "github_org"
    PROJECT = "devlake-jenkins"

    def __init__(self) -> None:
        self.jobs = _lines("multibranch_jobs_tree_items.jsonl")
        self.builds: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in _lines("multibranch_job_allbuilds_tree_items.jsonl"):
            branch = item["fullDisplayName"].split(" » ")[-1].split(" #")[0]
            self.builds[branch].append(item)
        self.stages: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for stage in _lines("multibranch_wfapi_describe_stage_items.jsonl"):
            branch, number = re.findall(r"/job/([^/]+)/(\d+)/execution/", stage["_links"]["self"]["href"])[-1]
            self.stages[(branch, int(number))].append(stage)

    def answer(self, path: str, tree: str) -> Any:
        names = [unquote(p) for p in re.findall(r"job/([^/]+)", path)]
        if path.endswith("/wfapi/describe"):
            key = (names[-1], int(path.split("/")[-3]))
            return {"id": str(key[1]), "stages": self.stages[key]} if key in self.stages else None
        if names == [self.FOLDER]:
            project = {"_class": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"}
            project |= {"name": self.PROJECT, "fullName": f"{self.FOLDER}/{self.PROJECT}"}
            return {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": self.FOLDER, "jobs": [project]}
        if names == [self.FOLDER, self.PROJECT]:
            return {
                "_class": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
                "jobs": self.jobs,
            }
        if len(names) == 3 and names[2] in self.builds:
            items = sorted(self.builds[names[2]], key=lambda b: -b["number"])
            start, stop = map(int, re.search(r"\{(\d+),(\d+)\}$", tree).groups())  # type: ignore[union-attr]
            return {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "allBuilds": items[start:stop]}
        return None


@pytest.fixture()
def recorded_jenkins() -> Iterator[tuple[str, _RecordedJenkins]]:
    stub = _RecordedJenkins()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            body = stub.answer(parts.path, (parse_qs(parts.query).get("tree") or [""])[0])
            data = json.dumps(body).encode() if body is not None else b"<html>Not Found</html>"
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json;charset=utf-8" if body is not None else "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", stub
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_recorded_multibranch_project_loads(recorded_jenkins: tuple[str, _RecordedJenkins], tmp_path: Path):
    url, stub = recorded_jenkins
    pipeline = new_pipeline(tmp_path)
    source = jenkins_source(base_url=url, username="u", api_token="recorded", root_folders=["github_org"])
    pipeline.run(source, loader_file_format="parquet")
    jobs = {name for (name,) in query(pipeline, "select full_name from raw_jenkins.jobs")}
    assert jobs == {"github_org", "github_org/devlake-jenkins", *(j["fullName"] for j in stub.jobs)}
    builds = set(query(pipeline, "select job_full_name, number, result from raw_jenkins.builds"))
    assert builds == {
        (f"github_org/devlake-jenkins/{branch}", b["number"], b["result"])
        for branch, items in stub.builds.items()
        for b in items
    }
    stages = query(pipeline, "select job_full_name, build_number, id, status from raw_jenkins.build_stages")
    want = {
        (f"github_org/devlake-jenkins/{branch}", number, s["id"], s["status"])
        for (branch, number), items in stub.stages.items()
        if any(b["number"] == number for b in stub.builds[branch])
        for s in items
    }
    assert set(stages) == want and len(stages) == len(want)
    shas = {sha for (sha,) in query(pipeline, "select last_built_revision__sha1 from raw_jenkins.builds__build_data")}
    assert shas == {
        a["lastBuiltRevision"]["SHA1"]
        for items in stub.builds.values()
        for b in items
        for a in b["actions"]
        if "lastBuiltRevision" in a
    }
    causes = {c for (c,) in query(pipeline, "select distinct _class from raw_jenkins.builds__causes")}
    assert causes == {"jenkins.branch.BranchEventCause", "jenkins.branch.BranchIndexingCause"}
    interrupted = query(
        pipeline,
        "select b.result, i._class from raw_jenkins.builds b "
        "join raw_jenkins.builds__interruptions i on i._dlt_parent_id = b._dlt_id",
    )
    assert interrupted == [("ABORTED", "org.jenkinsci.plugins.workflow.steps.TimeoutStepExecution$ExceededTimeout")] * 2


def test_recorded_builds_reports_and_stages_parse():
    # freestyle and pipeline items from DevLake's allBuilds requests
    rows = [build_row("a/b", item) for item in _lines("job_allbuilds_tree_items.jsonl")]
    assert {r["build_data"][0]["lastBuiltRevision"]["SHA1"] for r in rows if r["build_data"]} == {
        "0f886c74949c3ee7e489188911c7dc0c1d547418",
        "ceeffdfdd06bce232f9adb3a656265bad13a8473",
    }
    assert all(r["causes"][0]["userId"] == "merico" for r in rows)
    # a build with parameters: values become text, booleans in JSON spelling
    build = build_row("fish", json.loads((FIXTURES / "build_get.json").read_text()))
    assert build["parameters"] == [{"name": "bear", "value": "true"}, {"name": "fish", "value": "salmon"}]
    assert build["causes"][0]["userName"] == "anonymous" and "test_result" not in build
    git = build_row("fish", json.loads((FIXTURES / "build_get_with_git_changesets.json").read_text()))
    assert git["changeSets"][0]["items"][0]["commitId"] == "d27afa0805201322d846d7defc29b82c88d9b5ce"
    # a JUnit report (and its aggregated-report childReports, whose result is null here)
    report = json.loads((FIXTURES / "test_report_failed.json").read_text())
    cases = case_rows({"job_full_name": "t", "number": 7}, report)
    assert [(c["suite_name"], c["status"]) for c in cases] == [("nosetests", "FAILED")] * 2
    assert cases[1]["errorDetails"] == "No module named mock" and cases[1]["build_number"] == 7
    # Stage View: stages without their links
    stages = stage_rows(
        {"job_full_name": "w", "number": 16}, json.loads((FIXTURES / "wfapi_describe.json").read_text())
    )
    assert [s["status"] for s in stages] == ["SUCCESS", "SUCCESS", "PAUSED_PENDING_INPUT"]
    assert all("_links" not in s for s in stages)


def test_recorded_job_lists_walk():
    class Client:
        def __init__(self) -> None:
            self.paths: list[str] = []

        def get(self, path: str, tree: str | None = None) -> Any:
            self.paths.append(path)
            if path == "api/json":
                return json.loads((FIXTURES / "root_jobs_list.json").read_text())
            return json.loads((FIXTURES / "folder_jobs_list.json").read_text())

        def parallel(self, fn: Any, items: list[Any]) -> list[Any]:
            return [fn(x) for x in items]

    client = Client()
    pages = list(walk_jobs(client, []))  # type: ignore[arg-type]
    root = pages[0]
    assert [j["fullName"] for j in root if is_container(j)] == ["Test MultiBranch Project", "Test Folder"]
    assert [j["fullName"] for j in root if is_buildable(j)] == ["Test Tool", "Test Free Style", "Test Workflow Job"]
    assert client.paths[1:] == ["job/Test%20MultiBranch%20Project/api/json", "job/Test%20Folder/api/json"]
    assert pages[1][0]["fullName"] == "Test MultiBranch Project/Test Project"
    assert pages[1][0]["parent_full_name"] == "Test MultiBranch Project"


def test_list_settings_accept_strings_and_lists():
    assert parse_list("ci, deploy/") == ["ci", "deploy"]
    assert parse_list('["ci", "deploy"]') == ["ci", "deploy"]
    assert parse_list(["ci"]) == ["ci"] and parse_list(None) == []


# --- (6) credentials ------------------------------------------------------------------------------


def test_rejected_credentials_fail_on_the_first_request(private_sandbox: SandboxServer, tmp_path: Path):
    pipeline = new_pipeline(tmp_path)
    with pytest.raises(Exception) as failure:
        pipeline.run(source_for(private_sandbox, username=None, api_token=None), loader_file_format="parquet")
    error = failure.value
    while error is not None and not isinstance(error, SourceAuthError):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    assert isinstance(error, SourceAuthError) and error.status == 401
    assert "SOURCES__JENKINS__API_TOKEN" in str(error)
    assert private_sandbox.requests_served == 1


def test_half_configured_credentials_name_the_missing_key(private_sandbox: SandboxServer):
    with pytest.raises(ValueError, match="SOURCES__JENKINS__API_TOKEN"):
        source_for(private_sandbox, api_token=None)
    assert private_sandbox.requests_served == 0
