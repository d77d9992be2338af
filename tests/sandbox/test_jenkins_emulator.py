"""The Jenkins emulator: payloads match the real recordings, the `tree=` language and `allBuilds` ranges
behave as Jenkins', auth and proxy rate limits look real, and every answer is the world as of the clock."""

from __future__ import annotations

import dataclasses
from base64 import b64encode
from datetime import datetime, timedelta
from typing import Any

import contract_catalogue as catalogue
import orjson
import pytest
import requests

from pipelines.sandbox.contract import align, compare, load_fixture
from pipelines.sandbox.http import HTTPError, Request
from pipelines.sandbox.jenkins import JenkinsEmulator, TreeField, parse_tree
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import Build, Deployment, World
from pipelines.sources.http import POLICIES

BASIC = "Basic " + b64encode(b"opsmap:token").decode()
BASE = "http://127.0.0.1:1/jenkins"
# The Jenkins queue is recorded but not emulated: nothing waits in the sandbox's queue and no source reads it.
NOT_SERVED = {"/queue/api/json", "/queue/item/{id}/api/json"}


@pytest.fixture(scope="module")
def em(world: World) -> JenkinsEmulator:
    return JenkinsEmulator(world)


def call(
    em: JenkinsEmulator,
    path: str,
    as_of: datetime | None = None,
    faults: frozenset[str] = frozenset(),
    **query: str,
) -> tuple[int, Any]:
    """Dispatch one authorised GET straight to the emulator (no server): (status, parsed JSON or None)."""
    request = Request(
        "jenkins",
        "GET",
        path,
        {k: [v] for k, v in query.items()},
        {"Authorization": BASIC},
        BASE,
        em.world.visible(as_of),
    )
    request.faults = faults
    for route in em.route_table():
        match = route.pattern.match(path)
        if match and route.method == "GET":
            try:
                response = route.handler(request, **match.groupdict())
            except HTTPError as exc:
                return exc.status, None
            return response.status, orjson.loads(response.body)  # type: ignore[arg-type]
    return 404, None


def ok(em: JenkinsEmulator, path: str, as_of: datetime | None = None, **query: str) -> Any:
    status, body = call(em, path, as_of, **query)
    assert status == 200, f"{path}: {status}"
    return body


def job_path(full_name: str) -> str:
    return "".join(f"/job/{part}" for part in full_name.split("/"))


def ci_builds(world: World) -> list[Build]:
    return [b for b in world.builds if b.system == "jenkins"]


def jenkins_deploys(world: World) -> list[Deployment]:
    return [d for d in world.deployments if d.system == "jenkins"]


# --- the tree language ---------------------------------------------------------------------------


def test_parse_tree_nested_fields_ranges_and_star():
    tree = parse_tree("allBuilds[number,actions[causes[*]]]{0,100},jobs[name]{3},builds{5,},x{,2}")
    assert tree[0] == TreeField(
        "allBuilds",
        (TreeField("number"), TreeField("actions", (TreeField("causes", (TreeField("*"),)),))),
        (0, 100),
    )
    assert tree[1].range == (3, 4)  # {N}: just the N-th element
    assert tree[2].range == (5, None)
    assert tree[3].range == (None, 2)
    for bad in ("jobs[name", "jobs]name", "builds{a,b}", "a,,b"):
        with pytest.raises(ValueError):
            parse_tree(bad)


def test_bad_tree_is_a_400(em: JenkinsEmulator):
    assert call(em, "/api/json", tree="jobs[name")[0] == 400


def test_tree_projects_sends_class_and_omits_unknown_fields(em: JenkinsEmulator):
    body = ok(em, "/api/json", tree="jobs[name,bogus],nope")
    assert body["_class"] == "hudson.model.Hudson"
    assert "nope" not in body
    assert body["jobs"] == [
        {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "ci"},
        {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "deploy"},
    ]


def test_default_depth_shows_references_and_hides_all_builds(em: JenkinsEmulator, world: World):
    job = ci_builds(world)[0].job
    body = ok(em, f"{job_path(job)}/api/json")
    assert "allBuilds" not in body
    assert body["builds"] and set(body["builds"][0]) == {"_class", "number", "url"}
    assert body["lastBuild"]["url"].endswith(f"/{body['lastBuild']['number']}/")
    star = ok(em, f"{job_path(job)}/api/json", tree="*")
    assert "allBuilds" not in star and star["fullName"] == job


def test_all_builds_ranges_are_newest_first_and_builds_keeps_only_100(em: JenkinsEmulator, world: World):
    template = ci_builds(world)[0]
    extra = [
        dataclasses.replace(template, job="ci/" + template.service + "/bulk", number=n, build_id=f"bulk#{n}")
        for n in range(1, 131)
    ]
    big = JenkinsEmulator(dataclasses.replace(world, builds=[*world.builds, *extra]))
    path = f"{job_path('ci/' + template.service + '/bulk')}/api/json"
    assert len(ok(big, path, tree="builds[number]")["builds"]) == 100
    numbers = [b["number"] for b in ok(big, path, tree="allBuilds[number]")["allBuilds"]]
    assert numbers == list(range(130, 0, -1))
    page = ok(big, path, tree="allBuilds[number]{100,200}")["allBuilds"]
    assert [b["number"] for b in page] == list(range(30, 0, -1))
    assert [b["number"] for b in ok(big, path, tree="allBuilds[number]{2}")["allBuilds"]] == [128]
    # the `duplicate` fault repeats the previous page's last build, as when a new build shifts the range
    status, dup = call(big, path, faults=frozenset({"duplicate"}), tree="allBuilds[number]{10,12}")
    assert status == 200 and [b["number"] for b in dup["allBuilds"]] == [121, 120, 119]


# --- the world as jobs and builds -------------------------------------------------------------------


def test_folders_multibranch_projects_and_jobs_mirror_the_world(em: JenkinsEmulator, world: World):
    ci = ok(em, "/job/ci/api/json", tree="jobs[name,_class]")["jobs"]
    services = sorted(s.name for s in world.services if s.ci == "jenkins")
    assert [j["name"] for j in ci] == services
    assert {j["_class"] for j in ci} == {"org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"}
    deploy = ok(em, "/job/deploy/api/json", tree="jobs[name,color]")["jobs"]
    assert sorted(j["name"] for j in deploy) == sorted(
        f"{s.name}-deploy" for s in world.services if s.deploys_via == "jenkins"
    )
    for service in services:
        listed = ok(em, f"/job/ci/job/{service}/api/json", tree="jobs[fullName,lastBuild[number]]")["jobs"]
        want = {
            b.job: max(x.number for x in ci_builds(world) if x.job == b.job)
            for b in ci_builds(world)
            if b.service == service
        }
        assert {j["fullName"]: j["lastBuild"]["number"] for j in listed} == want


def test_every_world_run_is_a_build_with_its_result(em: JenkinsEmulator, world: World):
    want: dict[tuple[str, int], str] = {(b.job, b.number): b.result for b in ci_builds(world)}
    want |= {(d.jenkins_job, d.jenkins_number): d.raw_outcome for d in jenkins_deploys(world)}  # type: ignore[misc]
    have: dict[tuple[str, int], str] = {}
    for job in sorted({job for job, _ in want}):
        for b in ok(em, f"{job_path(job)}/api/json", tree="allBuilds[number,result,building]")["allBuilds"]:
            assert b["building"] is False
            have[(job, b["number"])] = b["result"]
    assert have == want


def test_a_running_build_at_as_of(em: JenkinsEmulator, world: World):
    build = next(b for b in ci_builds(world) if b.result == "SUCCESS" and b.event == "push")
    test_stage = next(s for s in build.stages if s.name == "Test")
    as_of = test_stage.started_at + timedelta(seconds=1)
    path = f"{job_path(build.job)}/{build.number}"
    body = ok(em, f"{path}/api/json", as_of)
    assert (body["building"], body["result"], body["duration"]) == (True, None, 0)
    assert not any(a.get("_class") == "hudson.tasks.junit.TestResultAction" for a in body["actions"])
    describe = ok(em, f"{path}/wfapi/describe", as_of)
    assert describe["status"] == "IN_PROGRESS"
    assert [(s["name"], s["status"]) for s in describe["stages"]] == [
        ("Checkout", "SUCCESS"),
        ("Build", "SUCCESS"),
        ("Test", "IN_PROGRESS"),
    ]
    assert call(em, f"{path}/testReport/api/json", as_of)[0] == 404
    job = ok(em, f"{job_path(build.job)}/api/json", as_of, tree="color,lastBuild[number]")
    if job["lastBuild"]["number"] == build.number:
        assert job["color"].endswith("_anime")
    after = ok(em, f"{path}/api/json", build.finished_at)
    assert (after["building"], after["result"], after["duration"]) == (False, "SUCCESS", build.duration_ms)
    assert call(em, f"{path}/testReport/api/json", build.finished_at)[0] == 200
    # a branch job appears with its first build; a build appears when it starts
    first = min((b for b in ci_builds(world) if b.job == build.job), key=lambda b: b.started_at)
    assert call(em, f"{job_path(build.job)}/api/json", first.started_at - timedelta(seconds=1))[0] == 404
    assert call(em, f"{path}/api/json", build.started_at - timedelta(seconds=1))[0] == 404


def test_ci_build_carries_revision_changes_causes_and_tests(em: JenkinsEmulator, world: World):
    build = next(b for b in ci_builds(world) if b.event == "pull_request")
    body = ok(em, f"{job_path(build.job)}/{build.number}/api/json")
    by_class = {a.get("_class"): a for a in body["actions"]}
    assert by_class["hudson.plugins.git.util.BuildData"]["lastBuiltRevision"]["SHA1"] == build.sha
    assert by_class["hudson.plugins.git.util.BuildData"]["lastBuiltRevision"]["branch"][0]["name"] == build.branch
    cause = by_class["hudson.model.CauseAction"]["causes"][0]
    assert cause["_class"] == "jenkins.branch.BranchEventCause"
    assert f"Pull request #{build.pr_number}" in cause["shortDescription"]
    assert [i["commitId"] for cs in body["changeSets"] for i in cs["items"]] == build.changeset_shas
    assert body["timestamp"] == int(build.started_at.timestamp() * 1000) and body["id"] == str(build.number)
    counts = by_class["hudson.tasks.junit.TestResultAction"]
    assert counts["totalCount"] == len(build.test_cases)


def test_test_report_matches_the_world(em: JenkinsEmulator, world: World):
    build = next(b for b in ci_builds(world) if any(c.status == "FAILED" for c in b.test_cases))
    report = ok(em, f"{job_path(build.job)}/{build.number}/testReport/api/json")
    failed = [c for c in build.test_cases if c.status == "FAILED"]
    assert report["failCount"] == len(failed)
    assert report["passCount"] + report["failCount"] + report["skipCount"] == len(build.test_cases)
    cases = [c for s in report["suites"] for c in s["cases"]]
    assert sorted((c["className"], c["name"], c["status"]) for c in cases) == sorted(
        (c.class_name, c.name, c.status) for c in build.test_cases
    )
    bad = next(c for c in cases if c["status"] == "FAILED")
    assert bad["errorDetails"] and bad["age"] >= 1 and bad["failedSince"] <= build.number
    assert all(isinstance(c["duration"], float) for c in cases)
    deploy = jenkins_deploys(world)[0]
    assert call(em, f"{job_path(deploy.jenkins_job or '')}/{deploy.jenkins_number}/testReport/api/json")[0] == 404


def test_stage_view_uses_its_own_status_words(em: JenkinsEmulator, world: World):
    broken = next(b for b in ci_builds(world) if b.result == "FAILURE")
    describe = ok(em, f"{job_path(broken.job)}/{broken.number}/wfapi/describe")
    assert describe["status"] == "FAILED"  # the build API says FAILURE
    assert [s["status"] for s in describe["stages"]] == [s.status for s in broken.stages]
    failed = next(s for s in describe["stages"] if s["status"] == "FAILED")
    assert failed["error"]["type"] == "hudson.AbortException"
    skipped = next(s for s in describe["stages"] if s["status"] == "NOT_EXECUTED")
    assert skipped["startTimeMillis"] == 0
    runs = ok(em, f"{job_path(broken.job)}/wfapi/runs", fullStages="true")
    assert len(runs) <= 10 and all("stageFlowNodes" in s for r in runs for s in r["stages"])
    newest = int(runs[0]["id"])
    assert ok(em, f"{job_path(broken.job)}/wfapi/runs", since=f"#{newest}") == []
    stage = describe["stages"][0]
    node = ok(em, f"{job_path(broken.job)}/{broken.number}/execution/node/{stage['id']}/wfapi/describe")
    assert node["stageFlowNodes"][0]["parentNodes"] == [stage["id"]]


def test_deploy_builds_carry_parameters_and_who_started_them(em: JenkinsEmulator, world: World):
    people = world.people_by_id
    seen: set[str] = set()
    for d in jenkins_deploys(world):
        body = ok(em, f"{job_path(d.jenkins_job or '')}/{d.jenkins_number}/api/json")
        actions = {a.get("_class"): a for a in body["actions"]}
        params = {p["name"]: p["value"] for p in actions["hudson.model.ParametersAction"]["parameters"]}
        assert params == {"ENVIRONMENT": d.environment, "GIT_SHA": d.sha, "ROLLBACK": d.is_rollback}
        assert body["result"] == d.raw_outcome
        assert len(ok(em, f"{job_path(d.jenkins_job or '')}/{d.jenkins_number}/wfapi/describe")["stages"]) == len(
            d.stages
        )
        cause = actions["hudson.model.CauseAction"]["causes"][0]
        seen.add(cause["_class"])
        if d.triggered_by == "person":
            assert cause["_class"] == "hudson.model.Cause$UserIdCause"
            assert cause["userId"] == people[d.creator_id].jenkins_user
        else:
            assert cause["_class"] != "hudson.model.Cause$UserIdCause"
        if cause["_class"] == "hudson.model.Cause$UpstreamCause" and d.environment == "production":
            upstream = ok(em, f"{job_path(cause['upstreamProject'])}/{cause['upstreamBuild']}/api/json")
            up_params = {
                p["name"]: p["value"] for a in upstream["actions"] for p in a.get("parameters", []) if "parameters" in a
            }
            assert up_params["ENVIRONMENT"] == "staging" and up_params["GIT_SHA"] == d.sha
    assert {"hudson.model.Cause$UserIdCause", "hudson.model.Cause$UpstreamCause"} <= seen


# --- auth, errors, rate limits ---------------------------------------------------------------------


def test_auth_errors_are_jenkins_html_pages(sandbox: SandboxServer):
    base = f"{sandbox.url}/jenkins/api/json"
    anonymous = requests.get(base, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["Content-Type"].startswith("text/html")
    assert "Authentication required" in anonymous.text
    no_token = requests.get(base, auth=("alice", ""), timeout=10)
    assert no_token.status_code == 401 and "Invalid password/token for user: alice" in no_token.text
    good = requests.get(base, auth=("alice", "t0ken"), timeout=10)
    assert good.status_code == 200 and good.headers["X-Jenkins"]
    missing = requests.get(f"{sandbox.url}/jenkins/job/nope/api/json", auth=("alice", "t0ken"), timeout=10)
    assert missing.status_code == 404 and "HTTP ERROR 404" in missing.text


def test_rate_limit_is_a_proxy_429_or_503_with_retry_after(em: JenkinsEmulator):
    statuses = set()
    for k in range(12):
        request = Request("jenkins", "GET", f"/job/x{k}/api/json", {}, {}, BASE, em.world.visible())
        response = em.rate_limited(request, 1)
        statuses.add(response.status)
        assert response.headers["Retry-After"] == "1"
        hit = POLICIES["jenkins"].classify(response.status, response.headers, bytes(response.body), 0.0)  # type: ignore[arg-type]
        assert hit is not None and hit.wait == 1.0
    assert statuses == {429, 503}


def test_env_points_the_source_at_the_world(em: JenkinsEmulator, world: World):
    env = em.env()
    assert env["SOURCES__JENKINS__ROOT_FOLDERS"] == "ci,deploy"
    assert env["SOURCES__JENKINS__USERNAME"] and env["SOURCES__JENKINS__API_TOKEN"]
    start = datetime.fromisoformat(env["SOURCES__JENKINS__START_DATE"]).date()
    assert all(b.started_at.date() >= start for b in ci_builds(world))
    assert all(d.started_at.date() >= start for d in jenkins_deploys(world))


# --- contract against the real recordings ------------------------------------------------------------


def _emulated(em: JenkinsEmulator, world: World) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """For each recording: the emulated body to compare with, and paths the sandbox cannot have."""
    services = sorted(s.name for s in world.services if s.ci == "jenkins")
    deploy_jobs = sorted({d.jenkins_job or "" for d in jenkins_deploys(world)})
    main_jobs = [f"ci/{s}/main" for s in services]
    builds = ci_builds(world)
    packaged = next(b for b in builds if b.result == "SUCCESS")
    person_deploy = next(d for d in jenkins_deploys(world) if d.triggered_by == "person")
    failing = [b for b in builds if b.result != "SUCCESS"][:4] + [b for b in builds if b.result == "SUCCESS"][:2]
    flaky = next(b for b in builds if any(c.status == "FAILED" for c in b.test_cases))
    # The recorded run's stages all ran (epoch startTimeMillis); a run whose every stage ran, failing if any.
    ran = next(b for b in [*failing, *builds] if all(s.status != "NOT_EXECUTED" for s in b.stages))

    def all_builds(jobs: list[str], tree: str) -> list[Any]:
        return [b for j in jobs for b in ok(em, f"{job_path(j)}/api/json", tree=tree.split("=", 1)[1])["allBuilds"]]

    def describe(b: Build) -> Any:
        return ok(em, f"{job_path(b.job)}/{b.number}/wfapi/describe")

    fx = {f.file: f for e in catalogue.JENKINS for f in e.fixtures}
    freestyle = ("*changeSet", "*builtOn")  # FreeStyleBuild-only fields; pipeline runs have changeSets[]
    no_paths = ("*affectedPaths[]", "*paths[]")  # the world does not model changed files
    # Stages that never ran report startTimeMillis 0 (wfapi_runs_not_executed_stages.json); these
    # recordings hold only stages that ran.
    stage_items = [s for b in failing for s in describe(b)["stages"] if s["status"] != "NOT_EXECUTED"]
    return {
        # The sandbox root holds only folders, and folders have no colour.
        "jenkins/root_jobs_list.json": (ok(em, "/api/json", tree="jobs[name,url,color]"), ("jobs[].color",)),
        "jenkins/multibranch_jobs_tree_items.jsonl": (
            ok(
                em,
                f"/job/ci/job/{services[0]}/api/json",
                tree=fx["jenkins/multibranch_jobs_tree_items.jsonl"].query[5:],
            ),
            (),
        ),
        "jenkins/folder_jobs_list.json": (ok(em, "/job/deploy/api/json", tree="jobs[name,url,color]"), ()),
        "jenkins/job_allbuilds_tree_items.jsonl": (
            {"allBuilds": all_builds(deploy_jobs, fx["jenkins/job_allbuilds_tree_items.jsonl"].query)},
            # The recorded tree does not ask for `building`; one DevLake row has it anyway (edited test data).
            (*freestyle, "[].building"),
        ),
        "jenkins/multibranch_job_allbuilds_tree_items.jsonl": (
            {"allBuilds": all_builds(main_jobs, fx["jenkins/multibranch_job_allbuilds_tree_items.jsonl"].query)},
            (),
        ),
        # Badges (`text`, `iconPath`) come from the badge plugin, which the sandbox's Jenkins lacks.
        "jenkins/build_get.json": (
            [
                ok(em, f"{job_path(packaged.job)}/{packaged.number}/api/json"),
                ok(em, f"{job_path(person_deploy.jenkins_job or '')}/{person_deploy.jenkins_number}/api/json"),
            ],
            (*freestyle, "*actions[].text", "*actions[].iconPath"),
        ),
        "jenkins/build_get_with_git_changesets.json": (
            [
                ok(em, f"{job_path(packaged.job)}/{packaged.number}/api/json"),
                ok(em, f"{job_path(person_deploy.jenkins_job or '')}/{person_deploy.jenkins_number}/api/json"),
            ],
            (*freestyle, *no_paths),
        ),
        "jenkins/wfapi_describe_stage_items.jsonl": ({"stages": stage_items}, ()),
        "jenkins/multibranch_wfapi_describe_stage_items.jsonl": ({"stages": stage_items}, ()),
        # No sandbox pipeline waits for input, so no run links to pendingInputActions.
        "jenkins/wfapi_describe.json": (describe(ran), ("_links.pendingInputActions",)),
        **{
            file: (
                ok(em, f"{job_path(main_jobs[0])}/wfapi/runs", fullStages="true"),
                ("[]._links.pendingInputActions",),
            )
            for file in fx
            if file.startswith("jenkins/wfapi_runs")
        },
        "jenkins/test_report_failed.json": (ok(em, f"{job_path(flaky.job)}/{flaky.number}/testReport/api/json"), ()),
        # Nothing is ever queued in the sandbox; scm/upstream/downstream belong to freestyle projects.
        "jenkins/job_get.json": (
            ok(em, f"{job_path(deploy_jobs[0])}/api/json"),
            ("queueItem", "scm", "upstreamProjects", "downstreamProjects"),
        ),
        "jenkins/wfapi_node_describe.json": (
            ok(
                em,
                f"{job_path(failing[0].job)}/{failing[0].number}/execution/node/{failing[0].stages[0].stage_id}/wfapi/describe",
            ),
            (),
        ),
    }


def test_payloads_match_the_real_recordings(em: JenkinsEmulator, world: World):
    emulated = _emulated(em, world)
    checked = 0
    problems: dict[str, list[str]] = {}
    for endpoint in catalogue.JENKINS:
        if endpoint.path in NOT_SERVED:
            continue
        for fixture in endpoint.fixtures:
            assert fixture.file in emulated, f"no emulated counterpart for {fixture.file}"
            body, ignore = emulated[fixture.file]
            recorded = load_fixture(catalogue.FIXTURES_ROOT / fixture.file)
            if isinstance(body, list) and fixture.shape == "response" and endpoint.items_path is None:
                rec, emu = [recorded], body  # several emulated objects: one must show each recorded field
            else:
                rec, emu = align(fixture.shape, recorded, body, endpoint.items_path)
            options = endpoint.options(fixture)
            options["ignore"] = (*options["ignore"], *ignore)
            found = compare(rec, emu, **options)
            if found:
                problems[fixture.file] = found
            checked += 1
    assert not problems, problems
    assert checked >= 18


def test_stages_that_never_ran_report_time_zero(em: JenkinsEmulator, world: World):
    """Real Stage View sends 0 for a NOT_EXECUTED stage's start and duration (wfapi_runs_not_executed_stages.json),
    and the epoch start of every stage that ran: on every finished run of the world that skipped a stage."""
    runs = [(b.job, b.number, b.stages) for b in ci_builds(world)]
    runs += [(d.jenkins_job or "", d.jenkins_number, d.stages) for d in jenkins_deploys(world)]
    skipping = [run for run in runs if any(s.status == "NOT_EXECUTED" for s in run[2])]
    assert skipping, "no run of this world skipped a stage"
    for job, number, stages in skipping:
        shown = ok(em, f"{job_path(job)}/{number}/wfapi/describe")["stages"]
        assert [(s["name"], s["status"]) for s in shown] == [(s.name, s.status) for s in stages], (job, number)
        for stage, item in zip(stages, shown, strict=True):
            if stage.status == "NOT_EXECUTED":
                assert (item["startTimeMillis"], item["durationMillis"]) == (0, 0), (job, number, stage.name)
            else:
                assert item["startTimeMillis"] == int(stage.started_at.timestamp() * 1000), (job, number, stage.name)
