"""The Jira emulator: payloads against the real recordings, paging, JQL, as-of rendering, faults, errors."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
import requests

from pipelines.sandbox.contract import align, compare, load_fixture
from pipelines.sandbox.http import HTTPError, Request
from pipelines.sandbox.jira import (
    SPRINT_FIELD,
    STORY_POINTS_FIELD,
    JiraEmulator,
    jira_time,
    shares_email,
    visible_sprint_ids,
)
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import Issue, World
from pipelines.sources.http import POLICIES

AUTH = {"Authorization": "Basic " + base64.b64encode(b"someone@acme.example:any-token").decode()}
BASE = "http://sandbox.test/jira"
SEARCH = "/rest/api/3/search/jql"
ALL_PROJECTS = "project in (PAY, SRCH, GRO, PLAT)"


import contract_catalogue as catalogue  # noqa: E402 - importable through tests/conftest.py

JIRA_ENDPOINTS = [e for e in catalogue.ENDPOINTS if e.system == "jira" and e.core]

# What the world does not model, so the emulator renders it as Jira does for issues without it (empty
# lists, `timetracking: {}`, no `percent` without estimates, no history metadata): comments, worklogs,
# sub-tasks, time tracking, automation metadata and assignee changes in histories, and team-managed
# (project-scoped) statuses. A world-model extension would be needed to emulate these paths.
UNMODELLED = (
    "*[].fields.comment.comments[]",
    "*[].fields.worklog.worklogs[]",
    "*[].fields.subtasks[]",
    "*[].fields.timetracking.*",
    "*[].fields.progress.percent",
    "*[].fields.aggregateprogress.percent",
    "*[].changelog.histories[].historyMetadata",
    "*[].changelog.histories[].items[].tmpFromAccountId",
    "*[].changelog.histories[].items[].tmpToAccountId",
    "*[].scope",
)


# --- helpers -------------------------------------------------------------------------------------


def call(
    emulator: JiraEmulator, world: World, path: str, at: datetime | None = None, faults: tuple[str, ...] = (), **query
) -> tuple[int, Any]:
    """Dispatch one GET to the emulator's routes, as the server does (no HTTP, no auth)."""
    params = {k: v if isinstance(v, list) else [str(v)] for k, v in query.items()}
    request = Request("jira", "GET", path, params, {}, BASE, world.visible(at), frozenset(faults))
    for route in emulator.route_table():
        match = route.pattern.match(path)
        if match:
            try:
                response = route.handler(request, **match.groupdict())
            except HTTPError as exc:
                response = emulator.error(request, exc)
            return response.status, orjson.loads(response.body)
    raise AssertionError(f"no route for {path}")


def search_all(emulator: JiraEmulator, world: World, at: datetime | None = None, **query) -> list[dict]:
    """Follow nextPageToken to the end; check the token/isLast contract on the way."""
    issues: list[dict] = []
    token: str | None = None
    while True:
        extra = {"nextPageToken": token} if token else {}
        status, body = call(emulator, world, SEARCH, at, **query, **extra)
        assert status == 200, body
        issues += body["issues"]
        if body["isLast"]:
            assert "nextPageToken" not in body  # absent, not null, on the last page (JRACLOUD-92184)
            return issues
        token = body["nextPageToken"]


def find(emulator: JiraEmulator, world: World, issue: Issue, at: datetime | None, **query) -> dict:
    """One issue as search/jql renders it (found by key through its project's search)."""
    found = [i for i in search_all(emulator, world, at, jql=f"project = {issue.project_key}", **query)]
    return next(i for i in found if i["key"] == issue.key)


def http_get(server: SandboxServer, path: str, headers: dict[str, str] | None = None, **query) -> requests.Response:
    return requests.get(
        f"{server.url}/jira{path}", params=query, headers=AUTH if headers is None else headers, timeout=10
    )


@pytest.fixture(scope="module")
def emulator(world: World) -> JiraEmulator:
    return JiraEmulator(world)


def _issue(world: World, predicate) -> Issue:
    return next(i for i in world.issues if predicate(i))


# --- (1) the contract against the real recordings ------------------------------------------------------


def _emulated_body(server: SandboxServer, endpoint: Any, fixture: Any, world: World) -> Any:
    issue = _issue(world, lambda i: len(i.transitions) >= 2)
    path = endpoint.path.replace("{issueIdOrKey}", issue.key).replace("{boardId}", str(world.teams[0].board_id))
    query = {k: v[0] for k, v in parse_qs(fixture.query).items()}
    if "jql" not in query:
        return http_get(server, path, **query).json()
    # The recorded request's JQL is elided; every issue, all pages, shows the world's whole variety.
    query["jql"] = f"{ALL_PROJECTS} ORDER BY key ASC"
    issues: list[dict] = []
    while True:
        body = http_get(server, path, **query).json()
        issues += body["issues"]
        if "nextPageToken" not in body:
            return {"issues": issues}
        query["nextPageToken"] = body["nextPageToken"]


@pytest.mark.parametrize(
    ("endpoint", "fixture"),
    [(e, f) for e in JIRA_ENDPOINTS for f in e.fixtures],
    ids=[f"{e.route} {f.file}" for e in JIRA_ENDPOINTS for f in e.fixtures],
)
def test_payloads_match_the_recordings(sandbox: SandboxServer, world: World, endpoint: Any, fixture: Any) -> None:
    body = _emulated_body(sandbox, endpoint, fixture, world)
    recorded, emulated = align(
        fixture.shape, load_fixture(catalogue.FIXTURES_ROOT / fixture.file), body, endpoint.items_path
    )
    options = endpoint.options(fixture)
    options["ignore"] = (*options["ignore"], *UNMODELLED)
    assert compare(recorded, emulated, **options) == []


def test_every_core_jira_route_is_served(sandbox: SandboxServer) -> None:
    for endpoint in JIRA_ENDPOINTS:
        path = endpoint.path.replace("{issueIdOrKey}", "PAY-1").replace("{boardId}", "1")
        query = {"jql": "project = PAY"} if "search" in path else {}
        assert http_get(sandbox, path, **query).status_code == 200, endpoint.route


def test_custom_fields_are_discoverable_and_shaped_as_recorded(emulator: JiraEmulator, world: World) -> None:
    _, fields = call(emulator, world, "/rest/api/3/field")
    by_id = {f["id"]: f for f in fields}
    assert by_id[SPRINT_FIELD]["schema"]["custom"] == "com.pyxis.greenhopper.jira:gh-sprint"
    assert by_id[STORY_POINTS_FIELD]["schema"]["type"] == "number"
    issues = search_all(emulator, world, jql=ALL_PROJECTS, fields="*all", maxResults=100)
    sprint_refs = [s for i in issues for s in i["fields"][SPRINT_FIELD] or []]
    assert sprint_refs and {"id", "name", "state", "boardId", "goal", "startDate", "endDate"} <= set(sprint_refs[0])
    points = {i["fields"][STORY_POINTS_FIELD] for i in issues}
    assert None in points and any(isinstance(p, float) for p in points)


# --- search: paging, fields, JQL ------------------------------------------------------------------------


def test_token_paging_returns_every_matching_issue_once(emulator: JiraEmulator, world: World) -> None:
    issues = search_all(emulator, world, jql=f"{ALL_PROJECTS} ORDER BY updated ASC", maxResults=7)
    keys = [i["key"] for i in issues]
    assert len(keys) == len(set(keys)) == len(world.visible().issues())


def test_page_sizes_default_50_and_cap_100_or_50_with_changelog(emulator: JiraEmulator, world: World) -> None:
    assert len(world.issues) > 100  # otherwise the caps below prove nothing
    assert len(call(emulator, world, SEARCH, jql=ALL_PROJECTS)[1]["issues"]) == 50
    assert len(call(emulator, world, SEARCH, jql=ALL_PROJECTS, maxResults=500)[1]["issues"]) == 100
    heavy = call(emulator, world, SEARCH, jql=ALL_PROJECTS, maxResults=100, expand="changelog")[1]
    assert len(heavy["issues"]) == 50 and "nextPageToken" in heavy and heavy["isLast"] is False


def test_fields_default_to_id_and_select_or_exclude(emulator: JiraEmulator, world: World) -> None:
    plain = call(emulator, world, SEARCH, jql="project = PAY", maxResults=1)[1]["issues"][0]
    assert plain["fields"] == {} and plain["id"].isdigit() and "changelog" not in plain
    some = call(emulator, world, SEARCH, jql="project = PAY", maxResults=1, fields=["summary,status", "updated"])
    assert set(some[1]["issues"][0]["fields"]) == {"summary", "status", "updated"}
    most = call(emulator, world, SEARCH, jql="project = PAY", maxResults=1, fields="*all,-description")
    assert "description" not in most[1]["issues"][0]["fields"] and "summary" in most[1]["issues"][0]["fields"]


def test_jql_filters_project_and_minute_precision_dates_in_utc(emulator: JiraEmulator, world: World) -> None:
    end = world.config.end_at
    target = _issue(world, lambda i: i.project_key == "SRCH" and i.updated_at(end).second > 0)
    minute = target.updated_at(end).replace(second=0)
    for literal in (minute.strftime("'%Y/%m/%d %H:%M'"), minute.strftime('"%Y-%m-%d %H:%M"')):
        jql = f"project = SRCH AND updated >= {literal} AND updated <= {literal} ORDER BY key DESC"
        keys = [i["key"] for i in search_all(emulator, world, jql=jql)]
        # `updated <= minute` means up to hh:mm:00, so an issue updated at hh:mm:ss (ss > 0) is out...
        assert target.key not in keys
    jql = f"project in (SRCH) AND updated >= '{minute:%Y/%m/%d %H:%M}' AND created <= '{end:%Y-%m-%d}'"
    found = {i["key"] for i in search_all(emulator, world, jql=jql, fields="updated,project")}
    # ...and `updated >= minute` includes it: the literal is the start of the minute, read in UTC.
    expected = {i.key for i in world.issues if i.project_key == "SRCH" and i.updated_at(end) >= minute}
    assert target.key in found and found == expected


def test_order_by_is_honoured(emulator: JiraEmulator, world: World) -> None:
    issues = search_all(emulator, world, jql=f"{ALL_PROJECTS} ORDER BY created DESC", fields="created", maxResults=100)
    created = [i["fields"]["created"] for i in issues]
    assert created == sorted(created, reverse=True)
    keys = [i["key"] for i in search_all(emulator, world, jql="project = GRO ORDER BY key ASC", maxResults=100)]
    assert keys == sorted(keys, key=lambda k: int(k.split("-")[1]))


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("", "Unbounded JQL queries are not allowed here"),
        ("ORDER BY updated ASC", "Unbounded JQL queries are not allowed here"),
        ("status = Done", "unsupported clause 'status = Done'"),
        ("project = PAY OR project = GRO", "unsupported clause"),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'"),
        ("project = PAY AND updated >= '01.02.2026'", "Date value '01.02.2026' for field 'updated' is invalid"),
        ("project = PAY ORDER BY summary", "Not able to sort using field 'summary'"),
    ],
)
def test_bad_jql_is_a_400_with_jiras_error_body(emulator: JiraEmulator, world: World, jql: str, message: str) -> None:
    status, body = call(emulator, world, SEARCH, jql=jql)
    assert status == 400
    assert set(body) == {"errorMessages", "errors"} and body["errors"] == {}
    assert message in body["errorMessages"][0]


def test_a_token_from_another_query_is_rejected(emulator: JiraEmulator, world: World) -> None:
    token = call(emulator, world, SEARCH, jql="project = PAY", maxResults=1)[1]["nextPageToken"]
    status, body = call(emulator, world, SEARCH, jql="project = GRO", nextPageToken=token)
    assert status == 400 and "next page token" in body["errorMessages"][0]


# --- issues and changelogs as of a moment -------------------------------------------------------------


def test_issues_render_the_world_as_of_a_moment(emulator: JiraEmulator, world: World) -> None:
    issue = _issue(world, lambda i: i.issue_type == "Story" and len(i.transitions) == 3 and i.sprint_ids)
    done = issue.transitions[-1]
    at = done.at - timedelta(seconds=1)  # just before it was resolved
    before = find(emulator, world, issue, at, fields="*all", expand="changelog")
    fields = before["fields"]
    assert fields["status"]["name"] == issue.status_at(at) != "Done"
    assert fields["status"]["statusCategory"]["key"] == "indeterminate"
    assert fields["resolutiondate"] is None and fields["resolution"] is None and fields["fixVersions"] == []
    assert fields["updated"] == jira_time(issue.transitions[-2].at)
    histories = before["changelog"]["histories"]
    assert [h["id"] for h in histories] == [str(t.history_id) for t in reversed(issue.transitions[:-1])]
    assert before["changelog"]["total"] == len(issue.transitions) - 1
    assert [s["id"] for s in fields[SPRINT_FIELD] or []] == visible_sprint_ids(issue, emulator.sprints, at)
    assert fields["parent"]["key"] == issue.epic_key
    later = {i.key for i in world.issues if i.created_at > at}
    shown = {i["key"] for i in search_all(emulator, world, at, jql=ALL_PROJECTS)}
    assert later and not later & shown and shown == {i.key for i in world.issues if i.created_at <= at}

    after = find(emulator, world, issue, None, fields="*all")
    assert after["fields"]["status"]["statusCategory"]["key"] == "done"
    assert after["fields"]["resolutiondate"] == after["fields"]["updated"] == jira_time(done.at)
    assert [v["id"] for v in after["fields"]["fixVersions"]] == [str(v) for v in issue.fix_version_ids]


def test_embedded_changelog_is_capped_newest_first_and_the_endpoint_pages_oldest_first(world: World) -> None:
    capped = JiraEmulator(world, embedded_changelog_limit=1)
    issue = _issue(world, lambda i: len(i.transitions) == 3)
    found = find(capped, world, issue, None, expand="changelog")
    assert found["changelog"]["total"] == 3 and found["changelog"]["maxResults"] == 1
    assert [h["id"] for h in found["changelog"]["histories"]] == [str(issue.transitions[-1].history_id)]
    ids, start = [], 0
    while True:
        status, page = call(capped, world, f"/rest/api/3/issue/{issue.key}/changelog", startAt=start, maxResults=2)
        assert status == 200 and page["total"] == 3 and page["startAt"] == start
        ids += [h["id"] for h in page["values"]]
        if page["isLast"]:
            assert "nextPage" not in page
            break
        assert page["nextPage"].endswith(f"startAt={start + 2}&maxResults=2")
        start += page["maxResults"]
    assert ids == [str(t.history_id) for t in issue.transitions]
    done = call(capped, world, f"/rest/api/3/issue/{issue.issue_id}/changelog")[1]["values"][-1]
    assert [(i["field"], i["toString"]) for i in done["items"]] == [("status", "Done"), ("resolution", "Done")]
    assert call(capped, world, "/rest/api/3/issue/NOPE-1/changelog")[0] == 404


def test_users_carry_account_ids_and_about_half_their_email(emulator: JiraEmulator, world: World) -> None:
    issues = search_all(
        emulator, world, jql=ALL_PROJECTS, fields="assignee,reporter", expand="changelog", maxResults=50
    )
    users = [i["fields"]["reporter"] for i in issues] + [
        i["fields"]["assignee"] for i in issues if i["fields"]["assignee"]
    ]
    by_account = {p.jira_account_id: p for p in world.people}
    for user in users:
        person = by_account[user["accountId"]]
        assert user["displayName"] == person.name
        assert user.get("emailAddress") == (person.email if shares_email(person) else None)  # hidden: no key
    authors = [h["author"] for i in issues for h in i["changelog"]["histories"]]
    assert {a["emailAddress"] for a in authors if not shares_email(by_account[a["accountId"]])} == {""}
    people = [p for p in world.people if not p.is_bot]
    assert 0.4 <= sum(map(shares_email, people)) / len(people) <= 0.6


# --- projects, versions, boards, sprints ---------------------------------------------------------------


def test_project_search_and_versions(emulator: JiraEmulator, world: World) -> None:
    status, page = call(emulator, world, "/rest/api/3/project/search", keys=["PAY", "GRO"], maxResults=1)
    assert status == 200 and page["total"] == 2 and page["isLast"] is False and page["values"][0]["key"] == "PAY"
    at = world.config.start_at + timedelta(days=100)
    _, versions = call(emulator, world, "/rest/api/3/project/PAY/versions", at)
    expected = [v for v in world.visible(at).versions() if v.project_key == "PAY"]
    assert [v["id"] for v in versions] == [str(v.version_id) for v in sorted(expected, key=lambda v: v.release_date)]
    assert [v["released"] for v in versions] == [
        v.released_at(at) for v in sorted(expected, key=lambda v: v.release_date)
    ]
    assert True in {v["released"] for v in versions} and False in {v["released"] for v in versions}
    assert call(emulator, world, "/rest/api/3/project/NOPE/versions")[0] == 404


def test_boards_and_sprint_states_as_of(emulator: JiraEmulator, world: World) -> None:
    _, boards = call(emulator, world, "/rest/agile/1.0/board", projectKeyOrId="SRCH")
    team = next(t for t in world.teams if t.key == "SRCH")
    assert boards["total"] == 1 and boards["values"][0]["id"] == team.board_id
    assert boards["values"][0]["location"]["projectKey"] == "SRCH"
    at = world.config.start_at + timedelta(days=200)
    _, page = call(emulator, world, f"/rest/agile/1.0/board/{team.board_id}/sprint", at)
    assert "total" not in page and page["isLast"] is True
    expected = sorted((s for s in world.visible(at).sprints() if s.board_id == team.board_id), key=lambda s: s.start_at)
    assert [(s["id"], s["state"]) for s in page["values"]] == [(s.sprint_id, s.state_at(at)) for s in expected]
    states = {s["state"] for s in page["values"]}
    assert states == {"closed", "active", "future"}
    future = next(s for s in page["values"] if s["state"] == "future")
    assert "startDate" not in future and "completeDate" not in future
    _, active = call(emulator, world, f"/rest/agile/1.0/board/{team.board_id}/sprint", at, state="active")
    assert [s["state"] for s in active["values"]] == ["active"]
    assert call(emulator, world, "/rest/agile/1.0/board/999/sprint")[0] == 404


# --- faults ---------------------------------------------------------------------------------------------


def test_mutate_renders_one_issue_as_just_updated_and_changes_nothing_else(
    emulator: JiraEmulator, world: World
) -> None:
    at = world.config.start_at + timedelta(days=250)
    query = {"jql": f"{ALL_PROJECTS} ORDER BY updated ASC", "fields": "*all", "expand": "changelog", "maxResults": 20}
    clean = call(emulator, world, SEARCH, at, **query)[1]["issues"]
    mutated = call(emulator, world, SEARCH, at, ("mutate",), **query)[1]["issues"]
    changed = [(a, b) for a, b in zip(clean, mutated, strict=True) if a != b]
    assert len(changed) == 1
    before, after = changed[0]
    assert after["fields"]["updated"] == jira_time(at) != before["fields"]["updated"]
    after["fields"]["updated"] = before["fields"]["updated"]
    assert after == before


def test_duplicate_repeats_the_previous_pages_last_record(emulator: JiraEmulator, world: World) -> None:
    first = call(emulator, world, SEARCH, jql="project = PAY ORDER BY key ASC", maxResults=5)[1]
    query = {"jql": "project = PAY ORDER BY key ASC", "maxResults": 5, "nextPageToken": first["nextPageToken"]}
    second = call(emulator, world, SEARCH, None, ("duplicate",), **query)[1]
    assert second["issues"][0]["key"] == first["issues"][-1]["key"] and len(second["issues"]) == 6
    sprints = call(emulator, world, "/rest/agile/1.0/board/1/sprint", None, ("duplicate",), startAt=3, maxResults=3)
    plain = call(emulator, world, "/rest/agile/1.0/board/1/sprint", startAt=2, maxResults=4)
    assert sprints[1]["values"] == plain[1]["values"]


# --- auth, rate limits, configuration -------------------------------------------------------------------


def test_missing_or_malformed_credentials_get_jiras_401(sandbox: SandboxServer) -> None:
    for headers in ({}, {"Authorization": "Basic bm8tY29sb24="}, {"Authorization": "Bearer "}):
        response = http_get(sandbox, "/rest/api/3/field", headers=headers)
        assert response.status_code == 401
        assert response.json()["errorMessages"][0].startswith("You are not authenticated")
        assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert http_get(sandbox, "/rest/api/3/field", headers={"Authorization": "Bearer a-pat"}).status_code == 200


def test_rate_limit_answer_carries_jiras_headers(emulator: JiraEmulator, world: World) -> None:
    request = Request("jira", "GET", SEARCH, {}, {}, BASE, world.visible())
    response = emulator.rate_limited(request, 1)
    assert response.status == 429
    headers = response.headers
    assert headers["Retry-After"] == "1" and headers["RateLimit-Reason"] == "jira-burst-based"
    assert headers["X-RateLimit-Remaining"] == "0" and int(headers["X-RateLimit-Limit"]) > 0
    assert datetime.strptime(headers["X-RateLimit-Reset"], "%Y-%m-%dT%H:%MZ")  # ISO, minute precision, not epoch
    assert orjson.loads(response.body)["errorMessages"]
    hit = POLICIES["jira"].classify(429, headers, response.body, datetime.now().timestamp())
    assert hit is not None and hit.wait == 1.0  # the shared HTTP layer waits the announced second


def test_env_selects_every_project_from_before_the_first_issue(emulator: JiraEmulator, world: World) -> None:
    env = emulator.env()
    assert env["SOURCES__JIRA__PROJECTS"].split(",") == [t.key for t in world.teams]
    assert env["SOURCES__JIRA__EMAIL"] and env["SOURCES__JIRA__API_TOKEN"]
    start = datetime.fromisoformat(env["SOURCES__JIRA__START_DATE"]).date()
    assert start <= min(i.created_at for i in world.issues).date()
