"""Jira staging models (`warehouse/staging/jira/`) built on raw tables the dlt source loaded from the sandbox.

Each build runs the real Jira source against the emulator into a temporary DuckDB file, writes
`config.settings`, builds the eight staging models with the model runner and compares them with the
world's ground truth: once at the world's end (the session sandbox) and once early in the world's
history, when most issues, sprints and versions do not exist yet and no issue names an affected version.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import polars as pl
import pytest

from pipelines.assets.config_settings import settings_rows, write_settings
from pipelines.models import Model, build_model, parse_model
from pipelines.sandbox.jira import visible_fix_version_ids, visible_sprint_ids
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World, WorldView
from pipelines.settings import WAREHOUSE_SQL_DIR
from pipelines.sources.jira import (
    CATALOGUE_COLUMNS,
    changelog_columns,
    changelog_nested_hints,
    issue_columns,
    issue_nested_hints,
    jira_source,
)

MODEL_DIR = WAREHOUSE_SQL_DIR / "staging" / "jira"
SALT = "staging-jira-test-salt"
PERSON = re.compile(r"^person:[0-9a-f]{16}$")
CATEGORY = {"To Do": "todo", "In Progress": "in_progress", "In Review": "in_progress", "Done": "done"}
"""The world's workflow: status name → normalised category (the truth speaks in status names)."""

CONTRACT: dict[str, set[str]] = {
    "stg_jira__issues": {
        "issue_id", "issue_key", "project_key", "issue_type", "summary", "status", "original_status", "epic_key",
        "created_at", "updated_at", "resolved_at", "assignee_id", "reporter_id", "priority", "story_points",
    },
    "stg_jira__issue_transitions": {
        "history_id", "issue_key", "transitioned_at", "author_id", "from_status", "to_status", "to_status_category",
    },
    "stg_jira__issue_versions": {"issue_key", "version_id", "relation"},
    "stg_jira__issue_sprints": {"issue_key", "sprint_id"},
    "stg_jira__projects": {"project_id", "project_key", "name"},
    "stg_jira__versions": {"version_id", "project_key", "name", "release_date", "is_released"},
    "stg_jira__boards": {"board_id", "name", "board_type", "project_key"},
    "stg_jira__sprints": {"sprint_id", "board_id", "name", "state", "start_at", "end_at", "complete_at"},
}  # fmt: skip
"""The staging contract of warehouse/README.md: the columns the intermediate layer and marts read."""


def staging_models() -> list[Model]:
    """The Jira staging models; each reads only raw tables, so any order is a dependency order."""
    return [parse_model(path) for path in sorted(MODEL_DIR.glob("stg_jira__*.sql"))]


def expected_person_id(display_name: str) -> str:
    """What `person_id(x)` yields under SALT (pipelines.models.install_macros), computed independently."""
    identity = re.sub(r"[^a-z0-9]", "", display_name.split("@", 1)[0].lower())
    return "person:" + hashlib.sha256(f"{SALT}:{identity}".encode()).hexdigest()[:16]


def load_raw(server: SandboxServer, folder: Path) -> Path:
    """Run the Jira source against `server` into `folder/raw.duckdb` (dataset raw_jira); return the file."""
    env = server.env()
    source = jira_source(
        base_url=env["SOURCES__JIRA__BASE_URL"],
        email=env["SOURCES__JIRA__EMAIL"],
        api_token=env["SOURCES__JIRA__API_TOKEN"],
        projects=env["SOURCES__JIRA__PROJECTS"],
        start_date=env["SOURCES__JIRA__START_DATE"],
    )
    path = folder / "raw.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="staging_jira",
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="raw_jira",
        pipelines_dir=str(folder / "dlt"),
    )
    pipeline.run(source, loader_file_format="parquet")
    return path


def build_staging(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """config.settings, then every Jira staging model; row counts by table."""
    write_settings(con, settings_rows())
    return {m.name: build_model(con, m)["rows"] for m in staging_models()}


@dataclass(frozen=True)
class Built:
    raw: Path
    path: Path
    view: WorldView
    rows: dict[str, int]

    @property
    def as_of(self) -> datetime:
        return self.view.as_of

    def frame(self, sql: str) -> pl.DataFrame:
        with duckdb.connect(str(self.path), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.sql(sql).pl()


def build(server: SandboxServer, world: World, folder: Path) -> Built:
    raw = load_raw(server, folder)
    path = folder / "staged.duckdb"
    shutil.copy(raw, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSMAP_PSEUDONYM_SALT", SALT)
        with duckdb.connect(str(path)) as con:
            rows = build_staging(con)
    return Built(raw, path, world.visible(server.as_of), rows)


@pytest.fixture(scope="module")
def full(sandbox: SandboxServer, world: World, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(sandbox, world, tmp_path_factory.mktemp("staging_jira_full"))


def early_as_of(world: World) -> datetime:
    """The first midnight at which the early tests have something to compare, searched in the world: an Epic
    and a Story, an epic link, a done issue, an issue in a sprint, one with a fix version, a listed version.
    It must still be early: under a third of the issues exist and no issue names an affected version (these
    only grow, so no later midnight would do)."""
    sprints = {s.sprint_id: s for s in world.sprints}
    everything = world.visible(world.config.end_at).issues()
    t = world.config.start_at
    while t <= world.config.end_at:
        issues = world.visible(t).issues()
        if (
            {"Epic", "Story"} <= {i.issue_type for i in issues}
            and any(i.epic_key for i in issues)
            and any(i.transition_at("Done", t) for i in issues)
            and any(visible_sprint_ids(i, sprints, t) for i in issues)
            and any(visible_fix_version_ids(i, t) for i in issues)
            and world.visible(t).versions()
        ):
            assert len(issues) < len(everything) / 3, f"{t}: not early any more ({len(issues)} issues)"
            assert not any(i.affected_version_ids for i in issues), f"{t}: an issue names an affected version"
            return t
        t += timedelta(days=1)
    raise AssertionError("the world never holds an Epic, a Story, an epic link, a done, a sprint and a fixed issue")


@pytest.fixture(scope="module")
def early(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with SandboxServer(world, as_of=early_as_of(world)) as server:
        yield build(server, world, tmp_path_factory.mktemp("staging_jira_early"))


@pytest.fixture(params=["full", "early"])
def built(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(request.param)


# --- comparisons with the truth ------------------------------------------------------------------


def by_key(frame: pl.DataFrame, key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in frame.iter_rows(named=True)}


def test_the_early_world_is_partial(early: Built, full: Built) -> None:
    assert 0 < early.rows["stg_jira__issues"] < full.rows["stg_jira__issues"] / 3
    assert early.rows["stg_jira__issue_sprints"] > 0 and early.rows["stg_jira__versions"] > 0
    # No issue names an affected version yet: a child table would not exist, the JSON column does.
    assert (
        early.frame("select count(*) as n from staging.stg_jira__issue_versions where relation = 'affected'")[
            "n"
        ].item()
        == 0
    )
    assert full.rows["stg_jira__issue_versions"] > 0


def test_issues_equal_the_truth(built: Built) -> None:
    truth = dict(truth_frames(built.view.world, built.as_of))["issues"]
    staged = built.frame(
        "select issue_key, issue_type, epic_key, created_at, status, original_status from staging.stg_jira__issues"
    )
    expected = {
        r["key"]: (r["type"], r["epic_key"], r["created_at"], CATEGORY[r["status"]], r["status"])
        for r in truth.iter_rows(named=True)
    }
    actual = {
        r["issue_key"]: (r["issue_type"], r["epic_key"], r["created_at"], r["status"], r["original_status"])
        for r in staged.iter_rows(named=True)
    }
    assert actual == expected
    assert staged.schema["created_at"] == pl.Datetime("us", "UTC")
    assert {t for t, *_ in expected.values()} >= {"Epic", "Story"}
    assert any(epic for _, epic, *_ in expected.values())  # epic links were compared


def test_started_and_done_from_the_transitions_equal_the_truth(built: Built) -> None:
    """Started = first move into an in-progress status, done = first into a done status (development.issues)."""
    truth = dict(truth_frames(built.view.world, built.as_of))["issues"]
    staged = built.frame(
        "select i.issue_key,"
        " min(case when t.to_status_category = 'in_progress' then t.transitioned_at end) as started_at,"
        " min(case when t.to_status_category = 'done' then t.transitioned_at end) as done_at"
        " from staging.stg_jira__issues as i"
        " left join staging.stg_jira__issue_transitions as t on t.issue_key = i.issue_key"
        " group by i.issue_key"
    )
    expected = {r["key"]: (r["started_at"], r["done_at"]) for r in truth.iter_rows(named=True)}
    assert {r["issue_key"]: (r["started_at"], r["done_at"]) for r in staged.iter_rows(named=True)} == expected
    assert any(done for _, done in expected.values())


def test_transitions_equal_the_worlds_changelogs(built: Built) -> None:
    people = built.view.world.people_by_id
    expected = {
        (tr.history_id, i.key): (
            tr.at,
            expected_person_id(people[tr.author_id].name),
            tr.from_status,
            tr.to_status,
            CATEGORY[tr.from_status],
            CATEGORY[tr.to_status],
        )
        for i in built.view.issues()
        for tr in i.transitions
        if tr.at <= built.as_of
    }
    staged = built.frame(
        "select history_id, issue_key, transitioned_at, author_id, from_status, to_status,"
        " from_status_category, to_status_category from staging.stg_jira__issue_transitions"
    )
    actual = {(r[0], r[1]): r[2:] for r in staged.iter_rows()}
    assert actual == expected and expected


def test_people_are_pseudonymised_like_every_other_tool(built: Built) -> None:
    people = built.view.world.people_by_id
    staged = by_key(
        built.frame("select issue_key, assignee_id, reporter_id from staging.stg_jira__issues"), "issue_key"
    )
    for issue in built.view.issues():
        row = staged[issue.key]
        assignee = people.get(issue.assignee_id or "")
        assert row["assignee_id"] == (expected_person_id(assignee.name) if assignee else None), issue.key
        assert row["reporter_id"] == expected_person_id(people[issue.reporter_id].name), issue.key


def test_no_person_is_named_anywhere_in_staging(built: Built) -> None:
    """Person columns hold `person:` pseudonyms only; no e-mail, display name, login or account id leaks."""
    columns = built.frame(
        "select table_name, column_name, data_type from duckdb_columns()"
        " where schema_name = 'staging' and table_name like 'stg_jira__%'"
    )
    people = built.view.world.people
    secrets = [s.lower() for p in people for s in (p.email, p.name, p.login, p.jira_account_id)]
    for table, column, data_type in columns.iter_rows():
        values = built.frame(f'select distinct "{column}" as v from staging.{table} where "{column}" is not null')["v"]
        if column.endswith("_id") and data_type == "VARCHAR":
            assert all(PERSON.match(v) for v in values), f"{table}.{column}"
        if data_type == "VARCHAR":
            texts = [str(v).lower() for v in values]
            leaked = [s for s in secrets if any(s in text for text in texts)]
            assert not leaked, f"{table}.{column} holds {leaked[:3]}"
            assert not any("@" in text for text in texts), f"{table}.{column} holds an e-mail address"


def test_sprints_equal_the_world(built: Built) -> None:
    t = built.as_of
    expected = {}
    for s in built.view.sprints():
        state = s.state_at(t)
        started = state != "future"
        expected[s.sprint_id] = (
            s.board_id,
            s.name,
            state,
            s.start_at if started else None,
            s.end_at if started else None,
            s.end_at if state == "closed" else None,
        )
    staged = built.frame(
        "select sprint_id, board_id, name, state, start_at, end_at, complete_at from staging.stg_jira__sprints"
    )
    assert {r[0]: r[1:] for r in staged.iter_rows()} == expected and expected


def test_versions_projects_and_boards_equal_the_world(built: Built) -> None:
    t = built.as_of
    versions = built.frame(
        "select version_id, project_key, name, release_date, is_released from staging.stg_jira__versions"
    )
    assert {r[0]: r[1:] for r in versions.iter_rows()} == {
        v.version_id: (v.project_key, v.name, v.release_date, v.released_at(t)) for v in built.view.versions()
    }
    teams = built.view.world.teams
    projects = built.frame("select project_id, project_key, name from staging.stg_jira__projects")
    assert set(projects.iter_rows()) == {(team.project_id, team.key, team.name) for team in teams}
    boards = built.frame("select board_id, board_type, project_key from staging.stg_jira__boards")
    assert set(boards.iter_rows()) == {(team.board_id, "scrum", team.key) for team in teams}


def test_issue_sprints_and_versions_equal_the_world(built: Built) -> None:
    t = built.as_of
    sprints = {s.sprint_id: s for s in built.view.world.sprints}
    issues = built.view.issues()
    staged = built.frame("select issue_key, sprint_id from staging.stg_jira__issue_sprints")
    assert set(staged.iter_rows()) == {(i.key, s) for i in issues for s in visible_sprint_ids(i, sprints, t)}
    staged = built.frame("select issue_key, version_id, relation from staging.stg_jira__issue_versions")
    expected = {(i.key, v, "fix") for i in issues for v in visible_fix_version_ids(i, t)}
    expected |= {(i.key, v, "affected") for i in issues for v in i.affected_version_ids}
    assert set(staged.iter_rows()) == expected


# --- the models' shape -----------------------------------------------------------------------------


def test_contract_columns_unique_keys_and_documentation(built: Built) -> None:
    models = {m.name: m for m in staging_models()}
    assert set(models) == set(CONTRACT)
    columns = built.frame(
        "select table_name, column_name, comment from duckdb_columns()"
        " where schema_name = 'staging' and table_name like 'stg_jira__%'"
    )
    for name, model in models.items():
        described = {c: doc for table, c, doc in columns.iter_rows() if table == name}
        assert CONTRACT[name] <= set(described), f"{name} lacks {CONTRACT[name] - set(described)}"
        assert all(doc and doc.strip() for doc in described.values()), f"{name} has an undocumented column"
        key = ", ".join(model.primary_key)
        dupes = built.frame(
            f"select {key}, count(*) as n from staging.{name} group by {key} having count(*) > 1"
            f" union all select {key}, 0 from staging.{name} where {' is null or '.join(model.primary_key)} is null"
        )
        assert dupes.is_empty(), f"{name}: duplicate or null keys {dupes.head(3).rows()}"
    comments = built.frame(
        "select table_name, comment from duckdb_tables()"
        " where schema_name = 'staging' and table_name like 'stg_jira__%'"
    )
    assert all(c and "Grain:" in c for _, c in comments.iter_rows())
    timestamps = columns.filter(pl.col("column_name").str.ends_with("_at"))["column_name"].unique()
    types = built.frame(
        "select column_name, data_type from duckdb_columns()"
        " where schema_name = 'staging' and table_name like 'stg_jira__%' and column_name like '%\\_at' escape '\\'"
    )
    assert set(types["column_name"]) == set(timestamps)
    assert set(types["data_type"]) == {"TIMESTAMP WITH TIME ZONE"}


DUCKDB_TYPES = {
    "text": "varchar",
    "bigint": "bigint",
    "double": "double",
    "bool": "boolean",
    "timestamp": "timestamp with time zone",
    "json": "json",
}


def hinted_tables() -> dict[str, dict[str, str]]:
    """Every raw table and column the source declares (column hints), as DuckDB types, with dlt's own columns."""
    own = {"_dlt_load_id": "text", "_dlt_id": "text"}
    child = {"_dlt_root_id": "text", "_dlt_parent_id": "text", "_dlt_list_idx": "bigint", "_dlt_id": "text"}
    tables = {
        "issues": {c: h["data_type"] for c, h in issue_columns().items()} | own,
        "issue_changelogs": {c: h["data_type"] for c, h in changelog_columns().items()} | own,
    }
    tables |= {name: dict(columns) | own for name, columns in CATALOGUE_COLUMNS.items()}
    for root, nested in (("issues", issue_nested_hints()), ("issue_changelogs", changelog_nested_hints())):
        for path, hints in nested.items():
            columns = {c: h["data_type"] for c, h in hints["columns"].items()}
            tables["__".join((root, *path))] = columns | child
    return {t: {c: DUCKDB_TYPES[d] for c, d in columns.items()} for t, columns in tables.items()}


def test_the_models_read_only_declared_raw_columns() -> None:
    """Built on raw tables holding only the columns the source declares (what a site whose optional fields
    were always null would load), every model builds: staging reads no column dlt may not have created."""
    with duckdb.connect() as con:
        con.execute("create schema raw_jira")
        for table, columns in hinted_tables().items():
            body = ", ".join(f'"{c}" {t}' for c, t in columns.items())
            con.execute(f"create table raw_jira.{table} ({body})")
        rows = build_staging(con)
    assert set(rows) == set(CONTRACT) and not any(rows.values())


# --- rules that the sandbox's data does not exercise on its own ----------------------------------------


def test_stale_loads_embedded_copies_and_renamed_statuses(full: Built, tmp_path: Path) -> None:
    """On a copy of the raw data: an older load of an issue, a stale embedded parent, a parent that was not
    loaded, and a status the site renamed. Staging keeps the latest load, trusts the parent's own row over
    its embedded copy, and takes status categories from the data rather than a list of names."""
    path = tmp_path / "mutated.duckdb"
    shutil.copy(full.raw, path)
    with duckdb.connect(str(path)) as con:
        child, epic = con.execute(
            "select key, fields__parent__key from raw_jira.issues"
            " where fields__parent__key is not null order by key limit 1"
        ).fetchone()
        orphan = con.execute(
            "select key from raw_jira.issues where fields__parent__key is not null and key <> ? order by key limit 1",
            [child],
        ).fetchone()[0]
        # An older load of the child, with another summary: an earlier load id, so it must lose.
        con.execute(
            "insert into raw_jira.issues by name select * replace"
            " ('0' as _dlt_load_id, 'stale copy' as fields__summary, _dlt_id || '-stale' as _dlt_id)"
            " from raw_jira.issues where key = ?",
            [child],
        )
        # The child's embedded parent is stale (says Task); the parent's own row says Epic.
        con.execute(
            "update raw_jira.issues set fields__parent__fields__issuetype__name = 'Task',"
            " fields__parent__fields__issuetype__hierarchy_level = 0 where key = ?",
            [child],
        )
        # The orphan's parent was not loaded (another project): the embedded copy decides.
        con.execute(
            "update raw_jira.issues set fields__parent__id = '999999', fields__parent__key = 'ELSEWHERE-1'"
            " where key = ?",
            [orphan],
        )
        # The site renamed "Done" to "Shipped": not a name the common-workflow fallback knows.
        con.execute("update raw_jira.issues set fields__status__name = 'Shipped' where fields__status__name = 'Done'")
        for column in ("from_string", "to_string"):
            con.execute(f"update raw_jira.issue_changelogs__items set {column} = 'Shipped' where {column} = 'Done'")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OPSMAP_PSEUDONYM_SALT", SALT)
            build_staging(con)
        [(latest_summary,)] = con.execute(
            "select fields__summary from raw_jira.issues where key = ? and _dlt_load_id <> '0'", [child]
        ).fetchall()
        staged = con.execute("select summary, epic_key from staging.stg_jira__issues where issue_key = ?", [child])
        assert staged.fetchall() == [(latest_summary, epic)]
        assert con.execute(
            "select epic_key from staging.stg_jira__issues where issue_key = ?", [orphan]
        ).fetchone() == ("ELSEWHERE-1",)
        shipped = con.execute(
            "select distinct to_status_category from staging.stg_jira__issue_transitions where to_status = 'Shipped'"
        ).fetchall()
        assert shipped == [("done",)]
        assert con.execute("select count(*) from staging.stg_jira__issues").fetchone() == (
            full.rows["stg_jira__issues"],
        )
