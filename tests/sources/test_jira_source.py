"""The Jira dlt source against the sandbox and the real recordings: raw tables equal the world, incremental
runs re-read only what changed, faults do not change the result, and a rejected token fails fast."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import orjson
import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.rest_client import RESTClient

from pipelines.sandbox.faults import FAILING_KINDS, FaultPlan
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.http import HTTPError, Request, Response, Route, SystemEmulator, json_response
from pipelines.sandbox.jira import JiraEmulator, visible_fix_version_ids, visible_sprint_ids
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldConfig
from pipelines.sources.http import JiraAuth, SourceAuthError, make_session
from pipelines.sources.jira import (
    CustomFields,
    JiraOffsetPaginator,
    changelog_rows,
    find_custom_fields,
    full_changelog,
    initial_cursor,
    issues_jql,
    jira_instant,
    jira_source,
    jql_since,
    parse_projects,
)

RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "jira"
SEARCH = "/rest/api/3/search/jql"


# --- helpers -------------------------------------------------------------------------------------


def source_args(server: SandboxServer, **overrides: Any) -> dict[str, Any]:
    env = server.env()
    args = {
        "base_url": env["SOURCES__JIRA__BASE_URL"],
        "email": env["SOURCES__JIRA__EMAIL"],
        "api_token": env["SOURCES__JIRA__API_TOKEN"],
        "projects": env.get("SOURCES__JIRA__PROJECTS"),
        "start_date": env.get("SOURCES__JIRA__START_DATE"),
    }
    return {**args, **overrides}


def new_pipeline(folder: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="test_jira",
        destination=dlt.destinations.duckdb(str(folder / "warehouse.duckdb")),
        dataset_name="raw_jira",
        pipelines_dir=str(folder / "dlt"),
    )


def load(pipeline: dlt.Pipeline, **args: Any) -> None:
    pipeline.run(jira_source(**args), loader_file_format="parquet")


def query(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(Path(pipeline.destination.config_params["credentials"]))) as con:
        return con.execute(sql).fetchall()


def world_issues(world: World, at: datetime) -> set[tuple[Any, ...]]:
    """(id, key, type, epic, status, category, created, updated, resolved) of every issue visible at `at`."""
    category = {"To Do": "new", "In Progress": "indeterminate", "In Review": "indeterminate", "Done": "done"}
    return {
        (
            str(i.issue_id),
            i.key,
            i.issue_type,
            i.epic_key,
            i.status_at(at),
            category[i.status_at(at)],
            i.created_at,
            i.updated_at(at),
            i.transition_at("Done", at),
        )
        for i in world.visible(at).issues()
    }


def raw_issues(pipeline: dlt.Pipeline) -> set[tuple[Any, ...]]:
    return set(
        query(
            pipeline,
            "select id, key, fields__issuetype__name, fields__parent__key, fields__status__name,"
            " fields__status__status_category__key, fields__created, fields__updated, fields__resolutiondate"
            " from raw_jira.issues",
        )
    )


def world_histories(world: World, at: datetime) -> set[tuple[str, str, str, str]]:
    return {
        (str(t.history_id), str(i.issue_id), t.from_status, t.to_status)
        for i in world.visible(at).issues()
        for t in i.transitions
        if t.at <= at
    }


def raw_histories(pipeline: dlt.Pipeline) -> set[tuple[str, str, str, str]]:
    return set(
        query(
            pipeline,
            "select c.id, c.issue_id, i.from_string, i.to_string from raw_jira.issue_changelogs c"
            " join raw_jira.issue_changelogs__items i on i._dlt_parent_id = c._dlt_id where i.field = 'status'",
        )
    )


def assert_no_duplicates(pipeline: dlt.Pipeline) -> None:
    for table in ("issues", "issue_changelogs", "projects", "versions", "boards", "sprints"):
        [(rows, ids)] = query(pipeline, f"select count(*), count(distinct id) from raw_jira.{table}")
        assert rows == ids, table


def access_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class CountingJira(JiraEmulator):
    """The Jira emulator, noting every request its routes answer: path, query and the issue keys returned."""

    def __init__(self, world: World, **kwargs: Any) -> None:
        super().__init__(world, **kwargs)
        self.seen: list[tuple[str, dict[str, list[str]], list[str]]] = []

    def routes(self) -> list[Route]:
        def noted(handler: Any) -> Any:
            def answer(request: Request, **params: str) -> Response:
                response = handler(request, **params)
                body = orjson.loads(response.body) if request.path == SEARCH else {}
                self.seen.append((request.path, request.query, [i["key"] for i in body.get("issues", [])]))
                return response

            return answer

        return [Route(r.method, r.pattern, noted(r.handler)) for r in super().routes()]

    def take(self) -> list[tuple[str, dict[str, list[str]], list[str]]]:
        seen, self.seen = self.seen, []
        return seen


# --- (2) a full load equals the world ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world() -> World:
    """A quarter of the session's world, for the tests that pay per request (changelog paging, faults)."""
    return generate_world(WorldConfig(seed=42, scale=0.05))


@pytest.fixture(scope="module")
def loaded(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> dlt.Pipeline:
    """The shared sandbox (the world's end) loaded once; small pages so every list pages."""
    pipeline = new_pipeline(tmp_path_factory.mktemp("jira_full"))
    load(pipeline, **source_args(sandbox, page_size=20))
    return pipeline


def test_issues_equal_the_world(loaded: dlt.Pipeline, world: World) -> None:
    end = world.config.end_at
    expected = world_issues(world, end)
    assert raw_issues(loaded) == expected
    types = Counter(row[2] for row in expected)
    assert set(types) == {"Epic", "Story", "Task", "Bug"}  # every kind of issue, and epic links, were compared
    assert sum(1 for row in expected if row[3]) > len(expected) / 2
    assert_no_duplicates(loaded)


def test_changelogs_equal_the_worlds_transitions(loaded: dlt.Pipeline, world: World) -> None:
    assert raw_histories(loaded) == world_histories(world, world.config.end_at)
    keys = dict(query(loaded, "select id, issue_key from raw_jira.issue_changelogs"))
    assert all(keys[str(t.history_id)] == i.key for i in world.issues for t in i.transitions)


def test_custom_fields_load_under_stable_names(loaded: dlt.Pipeline, world: World) -> None:
    end = world.config.end_at
    points = dict(query(loaded, "select key, fields__story_points from raw_jira.issues"))
    assert points == {i.key: i.story_points for i in world.issues}
    sprints = query(
        loaded,
        "select i.key, s.id from raw_jira.issues i join raw_jira.issues__fields__sprints s"
        " on s._dlt_parent_id = i._dlt_id",
    )
    by_id = {s.sprint_id: s for s in world.sprints}
    assert sorted(sprints) == sorted((i.key, s) for i in world.issues for s in visible_sprint_ids(i, by_id, end))
    fixed = query(
        loaded,
        "select i.key, v.id from raw_jira.issues i join raw_jira.issues__fields__fix_versions v"
        " on v._dlt_parent_id = i._dlt_id",
    )
    assert sorted(fixed) == sorted((i.key, str(v)) for i in world.issues for v in visible_fix_version_ids(i, end))
    assert sprints and fixed


def test_projects_boards_versions_and_sprints_equal_the_world(loaded: dlt.Pipeline, world: World) -> None:
    end = world.config.end_at
    view = world.visible(end)
    projects = set(query(loaded, "select id, key, name from raw_jira.projects"))
    assert projects == {(str(t.project_id), t.key, t.name) for t in world.teams}
    boards = set(query(loaded, "select id, location__project_key, type from raw_jira.boards"))
    assert boards == {(t.board_id, t.key, "scrum") for t in world.teams}
    versions = set(query(loaded, "select id, project_id, name, released, release_date from raw_jira.versions"))
    project_ids = {t.key: t.project_id for t in world.teams}
    assert versions == {
        (str(v.version_id), project_ids[v.project_key], v.name, v.released_at(end), v.release_date.isoformat())
        for v in view.versions()
    }
    sprints = set(query(loaded, "select id, origin_board_id, name, state from raw_jira.sprints"))
    assert sprints == {(s.sprint_id, s.board_id, s.name, s.state_at(end)) for s in view.sprints()}
    assert {row[3] for row in sprints} == {"closed", "active", "future"}


def test_pii_is_loaded_for_staging_to_pseudonymise_and_no_secret_is(
    loaded: dlt.Pipeline, sandbox: SandboxServer
) -> None:
    [(shown, hidden)] = query(
        loaded,
        "select count(fields__reporter__email_address), count(*) - count(fields__reporter__email_address)"
        " from raw_jira.issues",
    )
    assert shown > 0 and hidden > 0  # about half the people share their e-mail address
    env = sandbox.env()
    secrets = [env["SOURCES__JIRA__API_TOKEN"], _basic_header(env)]
    tables = query(loaded, "select table_name from information_schema.tables where table_schema = 'raw_jira'")
    stored = repr([query(loaded, f'select * from raw_jira."{name}"') for (name,) in tables])
    files = b"".join(f.read_bytes() for f in Path(loaded.pipelines_dir).rglob("*") if f.is_file())
    for secret in secrets:
        assert secret not in stored and secret.encode() not in files  # not in the warehouse, state or metadata


def test_the_cursor_is_the_latest_update(loaded: dlt.Pipeline, world: World) -> None:
    state = loaded.state["sources"]["jira"]["resources"]["issues"]["incremental"]["fields.updated"]
    latest = max(i.updated_at(world.config.end_at) for i in world.issues)
    assert jira_instant(state["last_value"]) == latest


def test_the_changelog_endpoint_completes_capped_changelogs(small_world: World, tmp_path: Path) -> None:
    world = small_world
    with SandboxServer(world, access_log=tmp_path / "access.jsonl") as server:
        server.emulators["jira"] = JiraEmulator(world, embedded_changelog_limit=1)
        pipeline = new_pipeline(tmp_path)
        load(pipeline, **source_args(server))
    assert raw_histories(pipeline) == world_histories(world, world.config.end_at)
    paged = Counter(e["path"].split("/")[5] for e in access_log(tmp_path / "access.jsonl") if "changelog" in e["path"])
    needed = {str(i.issue_id) for i in world.issues if len(i.transitions) > 1}
    assert set(paged) == needed  # exactly the issues whose embedded changelog was cut short
    assert_no_duplicates(pipeline)


# --- (3) incremental: day D, then day D+1 -----------------------------------------------------------


def jql_floor(cursor: datetime) -> datetime:
    """The instant the next run's `updated >=` literal stands for: the cursor minus a minute, floored (jql_since)."""
    return (cursor - timedelta(minutes=1)).replace(second=0, microsecond=0)


def latest_update(world: World, at: datetime) -> datetime:
    """The incremental cursor a run at `at` leaves behind: the latest `updated` of the issues it loaded."""
    return max(i.updated_at(at) for i in world.visible(at).issues())


def quiet_day(world: World) -> datetime:
    """A midnight D such that D..D+1 brings a few changes, new issues and updates of older ones, and the
    next run's overlap (the minute before D's cursor) holds at least one issue that did not change."""
    end = world.config.end_at
    for back in range(20, 300):
        day = end - timedelta(days=back)
        later = day + timedelta(days=1)
        cursor = latest_update(world, day)
        issues = world.visible(later).issues()
        changed = [i for i in issues if i.updated_at(later) > cursor]
        new = [i for i in changed if i.created_at > day]
        reread = [i for i in issues if jql_floor(cursor) <= i.updated_at(later) <= cursor]
        if 2 <= len(changed) <= 8 and 0 < len(new) < len(changed) and reread:
            return day
    raise AssertionError("no day with a few new and a few updated issues and an unchanged one in the overlap")


def test_the_next_days_run_reads_only_what_changed(
    private_sandbox: SandboxServer, world: World, tmp_path: Path
) -> None:
    day = quiet_day(world)
    next_day = day + timedelta(days=1)
    jira = CountingJira(world)
    private_sandbox.emulators["jira"] = jira
    pipeline = new_pipeline(tmp_path)
    args = source_args(private_sandbox, page_size=5)

    requests.put(f"{private_sandbox.url}/_sandbox/as-of", params={"at": day.isoformat()}, timeout=10)
    load(pipeline, **args)
    first = jira.take()
    assert raw_issues(pipeline) == world_issues(world, day)
    cursor = latest_update(world, day)

    requests.put(f"{private_sandbox.url}/_sandbox/as-of", params={"at": next_day.isoformat()}, timeout=10)
    load(pipeline, **args)
    second = jira.take()

    # The table is the world of D+1, with no duplicate despite the overlap.
    assert raw_issues(pipeline) == world_issues(world, next_day)
    assert raw_histories(pipeline) == world_histories(world, next_day)
    assert_no_duplicates(pipeline)

    # The second run asked from the cursor minus a minute (JQL's precision) ...
    searches = [(q["jql"][0], keys) for path, q, keys in second if path == SEARCH]
    since = f"updated >= '{(cursor - timedelta(minutes=1)):%Y/%m/%d %H:%M}'"
    assert searches and all(since in jql for jql, _ in searches)
    # ... so Jira answered the changed issues plus the unchanged one(s) of that minute, already loaded ...
    issues = world.visible(next_day).issues()
    changed = {i.key for i in issues if i.updated_at(next_day) > cursor}
    reread = {i.key for i in issues if jql_floor(cursor) <= i.updated_at(next_day) <= cursor}
    answered = {key for _, keys in searches for key in keys}
    assert changed and reread and answered == changed | reread
    # ... and only the changed ones were loaded again: the re-read ones were dropped, not merged.
    assert pipeline.last_trace.last_normalize_info.row_counts["issues"] == len(changed)

    # Issue requests fell to a few % of the first run's; the small lists are re-read in full each run.
    def issue_requests(run: list[tuple[str, Any, Any]]) -> int:
        return sum(1 for path, _, _ in run if path == SEARCH or path.endswith("/changelog"))

    assert issue_requests(second) <= max(1, issue_requests(first) // 20), (
        issue_requests(first),
        issue_requests(second),
    )
    others = [Counter(p for p, _, _ in run if p != SEARCH and not p.endswith("/changelog")) for run in (first, second)]
    assert others[0] == others[1]


# --- (4) faults -------------------------------------------------------------------------------------

FAULTS = {"rate_limit": 0.03, "server_error": 0.03, "truncate": 0.03, "slow": 0.05, "duplicate": 0.05, "mutate": 0.05}


@dataclass
class CoveringFaults(FaultPlan):
    """The seeded random plan, plus each kind forced once on a later search page, where every kind bites.

    Random faults at a few % alone might miss a kind in a small run; forcing one of each keeps the
    test's claim ("every kind was met and survived") true whatever the world's size.
    """

    forced: list[frozenset[str]] = field(
        default_factory=lambda: [
            frozenset({"duplicate", "mutate"}),
            frozenset({"rate_limit"}),
            frozenset({"server_error"}),
            frozenset({"truncate"}),
            frozenset({"slow"}),
        ]
    )

    def decide(self, key: str) -> frozenset[str]:
        kinds = super().decide(key)
        if self.forced and f"GET jira{SEARCH}?" in key and "nextPageToken=" in key:
            with self._lock:
                forced = self.forced.pop(0) if self.forced else frozenset()
            kinds = (kinds - set(FAILING_KINDS)) | forced  # a forced kind is not masked by a random failure
        return frozenset(kinds)


def test_faults_do_not_change_the_tables(small_world: World, tmp_path: Path) -> None:
    world, end = small_world, small_world.config.end_at
    log = tmp_path / "access.jsonl"
    faults = CoveringFaults(dict(FAULTS), seed=7)
    with SandboxServer(world, access_log=log, faults=faults, slow_seconds=0.05) as server:
        pipeline = new_pipeline(tmp_path)
        load(pipeline, **source_args(server, page_size=5))

    entries = [e for e in access_log(log) if e["system"] == "jira"]
    seen = Counter(kind for e in entries for kind in e["faults"])
    assert set(seen) == set(FAULTS) and not faults.forced, seen  # every kind was met, and survived
    assert sum(seen.values()) >= len(entries) * 0.1  # beyond the forced ones, a few % of each kind

    # A `mutate`d issue looked just updated while it was read; every other fact equals the world.
    rows = raw_issues(pipeline)
    truth = {row[0]: row for row in world_issues(world, end)}
    assert {row[:7] + row[8:] for row in rows} == {row[:7] + row[8:] for row in truth.values()}
    assert all(row[7] == truth[row[0]][7] or row[7] == end for row in rows)
    assert any(row[7] == end != truth[row[0]][7] for row in rows)  # the forced `mutate` reached the table
    assert raw_histories(pipeline) == world_histories(world, end)
    assert_no_duplicates(pipeline)


class EditedDuringTheRun(JiraEmulator):
    """Jira where the first issue served is edited while the client pages: it shows up again, newer, later."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.first: dict[str, Any] | None = None

    def search(self, request: Request) -> Response:
        response = super().search(request)
        body = orjson.loads(response.body)
        if self.first is None:
            self.first = body["issues"][0]
        elif body.get("isLast"):
            edited = {**self.first, "fields": {**self.first["fields"], "summary": "Edited while paging"}}
            edited["fields"]["updated"] = "2099-01-01T00:00:00.000+0000"
            body["issues"].append(edited)
        return json_response(body)


def test_an_issue_read_twice_in_one_run_keeps_its_latest_version(small_world: World, tmp_path: Path) -> None:
    with SandboxServer(small_world) as server:
        jira = EditedDuringTheRun(small_world)
        server.emulators["jira"] = jira
        pipeline = new_pipeline(tmp_path)
        load(pipeline, **source_args(server, page_size=10))
    assert jira.first is not None
    rows = query(pipeline, f"select fields__summary from raw_jira.issues where id = '{jira.first['id']}'")
    assert rows == [("Edited while paging",)]


# --- (5) the real recordings through the source's parsing path -----------------------------------------


def _recorded(name: str) -> Any:
    text = (RECORDINGS / name).read_text(encoding="utf-8")
    return (
        [json.loads(line) for line in text.splitlines() if line.strip()]
        if name.endswith(".jsonl")
        else json.loads(text)
    )


class RecordedJira(SystemEmulator):
    """Serves the real Jira recordings in their real envelopes, as a Jira site would.

    search/jql serves `issues.jsonl` (Agile-endpoint items; search/jql itself was never recorded) with
    token paging and the `fields` selection applied; embedded changelogs are cut to the newest
    `EMBEDDED` histories as Jira cuts long ones, and `/issue/{id}/changelog` serves the rest, oldest
    first. `/issue/{id}/changelog` also serves `issue_changelogs.jsonl` for its three issues. Boards and
    sprints are the recorded pages; kanban boards answer Jira's 400. Synthetic, and labelled so: the
    `/field` list (the site's ids: Sprint = customfield_10020, story points found by name), project
    search (from the issues' project object) and versions (the issues' recorded fixVersions).
    """

    name = "jira"
    EMBEDDED = 5

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.issues = _recorded("issues.jsonl")
        self.histories = {i["id"]: _oldest_first(i["changelog"]["histories"]) for i in self.issues}
        meta = json.loads((RECORDINGS / "issue_changelogs.meta.json").read_text())
        for line, history in zip(meta["per_line"], _recorded("issue_changelogs.jsonl"), strict=True):
            self.histories.setdefault(str(line["devlake_input"]["issue_id"]), []).append(history)
        self.boards = _recorded("agile_boards_page.json")

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/rest/api/3/field", lambda r: json_response(FIELDS)),
            Route.of("GET", "/rest/api/3/project/search", self.projects),
            Route.of("GET", "/rest/api/3/project/{key}/versions", self.versions),
            Route.of("GET", "/rest/agile/1.0/board", lambda r: json_response(self.boards)),
            Route.of("GET", "/rest/agile/1.0/board/{board}/sprint", self.sprints),
            Route.of("GET", SEARCH, self.search),
            Route.of("GET", "/rest/api/3/issue/{issue}/changelog", self.changelog),
        ]

    def authorized(self, request: Request) -> bool:
        return bool(request.headers.get("Authorization"))

    def env(self) -> dict[str, str]:
        return {"SOURCES__JIRA__EMAIL": "someone@example.com", "SOURCES__JIRA__API_TOKEN": "recorded-site-token"}

    def unauthorized(self, request: Request) -> Response:
        return json_response({"errorMessages": ["You are not authenticated."], "errors": {}}, 401)

    def projects(self, request: Request) -> Response:
        project = self.issues[0]["fields"]["project"]
        return json_response({"maxResults": 50, "startAt": 0, "total": 1, "isLast": True, "values": [project]})

    def versions(self, request: Request, key: str) -> Response:
        found = {v["id"]: v for i in self.issues for v in i["fields"]["fixVersions"]}
        return json_response(list(found.values()))

    def sprints(self, request: Request, board: str) -> Response:
        kind = next(b["type"] for b in self.boards["values"] if str(b["id"]) == board)
        if kind != "scrum":
            raise HTTPError(400, "", body={"errorMessages": ["The board does not support sprints"], "errors": {}})
        if board == "4":
            return json_response(_recorded("agile_board_sprints_page.json"))
        values = _recorded("sprints.jsonl") if board == "1" else []
        return json_response({"maxResults": 50, "startAt": 0, "isLast": True, "values": values})

    def search(self, request: Request) -> Response:
        wanted = set(",".join(request.query["fields"]).split(","))
        start = int(request.arg("nextPageToken") or 0)
        size = int(request.arg("maxResults") or 50)
        page = []
        for issue in self.issues[start : start + size]:
            histories = self.histories[issue["id"]]
            embedded = list(reversed(histories))[: self.EMBEDDED]
            fields = {k: v for k, v in issue["fields"].items() if k in wanted}
            changelog = {"startAt": 0, "maxResults": len(embedded), "total": len(histories), "histories": embedded}
            page.append({**issue, "fields": fields, "changelog": changelog})
        body: dict[str, Any] = {"issues": page, "isLast": start + size >= len(self.issues)}
        if not body["isLast"]:
            body["nextPageToken"] = str(start + size)
        return json_response(body)

    def changelog(self, request: Request, issue: str) -> Response:
        histories = self.histories[issue]
        start, size = int(request.arg("startAt") or 0), int(request.arg("maxResults") or 100)
        last = start + size >= len(histories)
        values = histories[start : start + size]
        return json_response(
            {"maxResults": size, "startAt": start, "total": len(histories), "isLast": last, "values": values}
        )


def _oldest_first(histories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(histories, key=lambda h: jira_instant(h["created"]))


FIELDS = [  # synthetic /field answer for the recorded site (merico.atlassian.net ids)
    {"id": "summary", "name": "Summary", "custom": False, "schema": {"type": "string", "system": "summary"}},
    {
        "id": "customfield_10020",
        "name": "Sprint",
        "custom": True,
        "schema": {
            "type": "array",
            "items": "json",
            "custom": "com.pyxis.greenhopper.jira:gh-sprint",
            "customId": 10020,
        },
    },
    {
        "id": "customfield_10024",
        "name": "Story Points",
        "custom": True,
        "schema": {"type": "number", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float"},
    },
]


@pytest.fixture(scope="module")
def recorded_site(world: World) -> Iterator[SandboxServer]:
    with SandboxServer(world) as server:
        server.emulators["jira"] = RecordedJira(world)
        yield server


def test_recorded_issues_changelogs_boards_and_sprints_load(recorded_site: SandboxServer, tmp_path: Path) -> None:
    pipeline = new_pipeline(tmp_path)
    load(pipeline, **source_args(recorded_site, projects="EE", start_date="2020-01-01", page_size=7))
    recorded = _recorded("issues.jsonl")

    loaded = dict(query(pipeline, "select id, key from raw_jira.issues"))
    assert loaded == {i["id"]: i["key"] for i in recorded}
    # Jira's `+0800` times became instants (dlt infers them), and the custom fields were renamed.
    [(updated,)] = query(pipeline, "select fields__updated from raw_jira.issues where key = 'EE-1'")
    assert updated == jira_instant(recorded[0]["fields"]["updated"])
    points = {
        k: p for k, p in query(pipeline, "select key, fields__story_points from raw_jira.issues") if p is not None
    }
    assert points == {
        i["key"]: float(i["fields"]["customfield_10024"]) for i in recorded if i["fields"]["customfield_10024"]
    }
    sprint_rows = query(pipeline, "select count(*) from raw_jira.issues__fields__sprints")[0][0]
    assert sprint_rows == sum(len(i["fields"]["customfield_10020"] or []) for i in recorded)

    # Every history of every issue, including those beyond the embedded five (paged from /changelog).
    histories = query(pipeline, "select id, issue_id from raw_jira.issue_changelogs")
    expected = {(h["id"], i["id"]) for i in recorded for h in i["changelog"]["histories"]}
    assert set(histories) == expected and len(histories) == len(expected)
    assert max(i["changelog"]["total"] for i in recorded) > RecordedJira.EMBEDDED

    boards = query(pipeline, "select id from raw_jira.boards")
    assert sorted(b for (b,) in boards) == sorted(b["id"] for b in _recorded("agile_boards_page.json")["values"])
    sprints = {s for (s,) in query(pipeline, "select id from raw_jira.sprints")}
    recorded_sprints = _recorded("agile_board_sprints_page.json")["values"] + _recorded("sprints.jsonl")
    assert sprints == {s["id"] for s in recorded_sprints}  # kanban boards' 400s were skipped
    versions = {v for (v,) in query(pipeline, "select id from raw_jira.versions")}
    assert versions == {v["id"] for i in recorded for v in i["fields"]["fixVersions"]}
    assert query(pipeline, "select key from raw_jira.projects") == [("EE",)]

    # The cursor is the latest update as an instant, whatever the offset of the recorded times.
    state = pipeline.state["sources"]["jira"]["resources"]["issues"]["incremental"]["fields.updated"]
    assert jira_instant(state["last_value"]) == max(jira_instant(i["fields"]["updated"]) for i in recorded)


def test_recorded_changelog_pages_parse(recorded_site: SandboxServer) -> None:
    session = make_session("jira", auth=JiraAuth("recorded", "someone@example.com"))
    client = RESTClient(base_url=f"{recorded_site.url}/jira/", session=session)
    meta = json.loads((RECORDINGS / "issue_changelogs.meta.json").read_text())
    per_issue = Counter(str(line["devlake_input"]["issue_id"]) for line in meta["per_line"])
    for issue_id, count in per_issue.items():
        histories = full_changelog(client, {"id": issue_id, "key": f"ID-{issue_id}"}, page_size=40)
        rows = changelog_rows({"id": issue_id, "key": f"ID-{issue_id}"}, histories)
        assert len(rows) == count and {r["issue_id"] for r in rows} == {issue_id}
        assert all(r["items"] and r["created"] for r in rows)


def test_recorded_envelopes_drive_the_offset_paginator() -> None:
    def step(body: dict[str, Any], data: list[Any]) -> tuple[int, bool]:
        paginator = JiraOffsetPaginator(50)
        response = requests.Response()
        response._content = orjson.dumps(body)
        paginator.update_state(response, data)
        return paginator.start_at, paginator.has_next_page

    sprints = _recorded("agile_board_sprints_page.json")
    assert step(sprints, sprints["values"]) == (50, False)  # isLast, no total
    boards = _recorded("agile_boards_page.json")
    assert step(boards, boards["values"]) == (50, False)
    # Jira lowered the page to 2 of the 5 asked: advance by what it answered, not by what was asked.
    assert step({"startAt": 10, "maxResults": 2, "total": 30, "values": [1, 2, 2]}, [1, 2, 2]) == (12, True)
    assert step({"startAt": 0, "maxResults": 50, "values": [1]}, [1]) == (50, False)  # short page, no total


# --- (6) a rejected token ---------------------------------------------------------------------------


class RevokedTokenJira(JiraEmulator):
    """A site that has revoked one token (the sandbox otherwise accepts any credentials)."""

    REVOKED = "revoked-jira-token-0123456789"

    def authorized(self, request: Request) -> bool:
        return self.REVOKED not in _basic_secret(request) and super().authorized(request)


def _basic_header(env: dict[str, str]) -> str:
    """The encoded Basic credential the source sends for the sandbox's e-mail and token."""
    return base64.b64encode(f"{env['SOURCES__JIRA__EMAIL']}:{env['SOURCES__JIRA__API_TOKEN']}".encode()).decode()


def _basic_secret(request: Request) -> str:
    scheme, _, credential = (request.headers.get("Authorization") or "").partition(" ")
    return base64.b64decode(credential).decode() if scheme == "Basic" else credential


def test_a_rejected_token_fails_at_once_naming_the_key_to_fix(world: World, tmp_path: Path) -> None:
    with SandboxServer(world) as server:
        server.emulators["jira"] = RevokedTokenJira(world)
        with pytest.raises(PipelineStepFailed) as failure:
            load(new_pipeline(tmp_path), **source_args(server, api_token=RevokedTokenJira.REVOKED))
        assert server.requests_served == 1
    message = str(failure.value)
    assert "SOURCES__JIRA__API_TOKEN" in message and "401" in message
    assert RevokedTokenJira.REVOKED not in message
    cause: BaseException | None = failure.value
    while cause is not None and not isinstance(cause, SourceAuthError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, SourceAuthError) and cause.config_key == "SOURCES__JIRA__API_TOKEN"


# --- configuration and cursor helpers ----------------------------------------------------------------


def test_projects_accept_a_comma_separated_string_or_a_list() -> None:
    assert parse_projects(" pay, SRCH ,pay") == ["PAY", "SRCH"]
    assert parse_projects(["GRO", "plat"]) == ["GRO", "PLAT"]
    assert parse_projects(None) == parse_projects("") == []
    with pytest.raises(ValueError, match="SOURCES__JIRA__PROJECTS"):
        parse_projects("PAY) OR (project = X")


def test_cursor_and_jql_follow_jira_time_rules() -> None:
    assert initial_cursor("2025-01-11") == "2025-01-11T00:00:00.000+0000"
    with pytest.raises(ValueError, match="SOURCES__JIRA__START_DATE"):
        initial_cursor("last tuesday")
    # The literal is the cursor's own wall clock (the user's zone, as Jira renders it) minus a minute.
    assert jql_since("2020-06-12T08:13:13.360+0800") == "2020/06/12 08:12"
    assert jql_since("2026-03-01T00:00:59.000+0000") == "2026/02/28 23:59"
    assert issues_jql(["PAY", "GRO"], "2026-03-01T10:00:00.000+0000") == (
        'project in ("PAY", "GRO") AND updated >= \'2026/03/01 09:59\' ORDER BY updated ASC'
    )
    assert issues_jql([], "2026-03-01T10:00:00.000+0000").startswith("updated >= ")


def test_custom_fields_are_found_by_schema_then_name_then_fallback() -> None:
    assert find_custom_fields(FIELDS) == CustomFields("customfield_10020", "customfield_10024")
    assert find_custom_fields([]) == CustomFields("customfield_10020", "customfield_10016")
    schema = {"custom": "com.pyxis.greenhopper.jira:jsw-story-points"}
    named = [{"id": "customfield_1", "name": "Story Points", "custom": True, "schema": {}}]
    assert find_custom_fields([*named, {"id": "customfield_2", "schema": schema}]).story_points == "customfield_2"
