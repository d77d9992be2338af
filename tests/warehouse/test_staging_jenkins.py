"""Jenkins staging models against the sandbox world.

The raw tables come from the real dlt source run against the sandbox; the staging models are built
with the model runner; every key, vocabulary, time and person column is then compared with the
world's ground truth (`truth_frames`, and the world itself for what the truth does not export).
The same comparison runs on an early, partial world (a deploy still running, no CI build yet, so
no change sets, stages or test reports at all) and after an incremental load a little later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from pipelines.assets.config_settings import settings_rows, write_settings
from pipelines.models import Model, build_model, parse_model
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World
from pipelines.settings import WAREHOUSE_SQL_DIR
from pipelines.sources.declared_tables import create_declared_tables
from pipelines.sources.jenkins import jenkins_source

MODEL_DIR = WAREHOUSE_SQL_DIR / "staging" / "jenkins"

# The staging contract (warehouse/README.md): table → (primary key, columns the layers above rely on).
CONTRACT: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "stg_jenkins__jobs": (
        ("job_full_name",),
        {"job_full_name", "job_name", "parent_full_name", "job_class", "kind", "url"},
    ),
    "stg_jenkins__builds": (
        ("build_id",),
        {
            "build_id",
            "job_full_name",
            "build_number",
            "repo",
            "service",
            "started_at",
            "finished_at",
            "duration_ms",
            "result",
            "original_result",
            "is_building",
            "sha",
            "branch",
            "trigger",
            "triggered_by_id",
            "cause_class",
        },
    ),
    "stg_jenkins__build_parameters": (("build_id", "name"), {"build_id", "name", "value"}),
    "stg_jenkins__build_changesets": (("build_id", "sha"), {"build_id", "sha"}),
    "stg_jenkins__build_stages": (
        ("build_id", "stage_id"),
        {"build_id", "stage_id", "stage_name", "status", "original_status", "started_at", "duration_ms"},
    ),
    "stg_jenkins__test_cases": (
        ("build_id", "suite", "class_name", "test_name"),
        {"build_id", "suite", "class_name", "test_name", "status", "original_status", "duration_s"},
    ),
}
PERSON_COLUMNS = {"stg_jenkins__builds": ["triggered_by_id"], "stg_jenkins__build_changesets": ["author_id"]}
PSEUDONYM = re.compile(r"^person:[0-9a-f]{16}$")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

# The yardsticks of the normalised vocabularies, as the contract states them.
STAGE_STATUS = {
    "SUCCESS": "success",
    "FAILED": "failed",
    "UNSTABLE": "unstable",
    "ABORTED": "aborted",
    "NOT_EXECUTED": "not_executed",
    "IN_PROGRESS": "in_progress",
    "PAUSED_PENDING_INPUT": "paused",
}
CASE_STATUS = {"PASSED": "passed", "FIXED": "passed", "FAILED": "failed", "REGRESSION": "failed", "SKIPPED": "skipped"}
DEPLOY_OUTCOME = {"success": "success", "failure": "failure", "aborted": "failure", "unstable": "failure"}


# --- building ------------------------------------------------------------------------------------


def staging_models() -> list[Model]:
    """The Jenkins staging models, each after the staging models it reads."""
    models = {m.table: m for m in (parse_model(p) for p in sorted(MODEL_DIR.glob("stg_jenkins__*.sql")))}
    ordered: list[Model] = []

    def visit(model: Model) -> None:
        if model in ordered:
            return
        for schema, name in model.upstream:
            if f"{schema}.{name}" in models:
                visit(models[f"{schema}.{name}"])
        ordered.append(model)

    for model in models.values():
        visit(model)
    return ordered


def load_raw(server: SandboxServer, db: Path, work: Path) -> dlt.Pipeline:
    """Run the Jenkins source (explicit arguments from the server) into `raw_jenkins` of `db`."""
    env = server.env()
    source = jenkins_source(
        base_url=env["SOURCES__JENKINS__BASE_URL"],
        username=env["SOURCES__JENKINS__USERNAME"],
        api_token=env["SOURCES__JENKINS__API_TOKEN"],
        root_folders=env["SOURCES__JENKINS__ROOT_FOLDERS"],
        start_date=env["SOURCES__JENKINS__START_DATE"],
    )
    pipeline = dlt.pipeline(
        pipeline_name="stg_jenkins_test",
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name="raw_jenkins",
        pipelines_dir=str(work),
    )
    pipeline.run(source, loader_file_format="parquet")
    create_declared_tables(pipeline)
    return pipeline


def build_staging(db: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db))
    write_settings(con, settings_rows())
    for model in staging_models():
        build_model(con, model)
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[dict[str, Any]]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# --- the comparison with the world ---------------------------------------------------------------


def records(frame: Any, system: str | None = None) -> list[dict[str, Any]]:
    """A truth frame's rows (an empty frame has no columns at all), optionally of one system."""
    if frame.height == 0:
        return []
    return (frame.filter(system=system) if system else frame).to_dicts()


def person(con: duckdb.DuckDBPyConnection, identity: str | None) -> str | None:
    """The pseudonym the warehouse gives an identity (login, Jenkins user id, e-mail)."""
    return con.execute("select person_id(?)", [identity]).fetchone()[0] if identity else None


def deploy_pattern(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("select value from config.settings where key = 'deploy_job_pattern'").fetchone()[0]


def assert_staging_equals_world(con: duckdb.DuckDBPyConnection, world: World, as_of: datetime) -> None:
    truth = dict(truth_frames(world, as_of))
    view = world.visible(as_of)
    people = world.people_by_id
    login = {pid: p.login for pid, p in people.items()}

    # builds: CI builds equal the truth's Jenkins builds, deploy-job builds its Jenkins deployments
    builds = {r["build_id"]: r for r in rows(con, "select * from staging.stg_jenkins__builds")}
    pattern = re.compile(deploy_pattern(con))
    ci = {k: r for k, r in builds.items() if not pattern.search(r["job_full_name"])}
    deploys = {k: r for k, r in builds.items() if pattern.search(r["job_full_name"])}
    want_ci = {r["build_id"]: r for r in records(truth["builds"], "jenkins")}
    assert set(ci) == set(want_ci)
    triggered_by = {b.build_id: b.triggered_by_id for b in view.builds() if b.system == "jenkins"}
    for build_id, want in want_ci.items():
        have = ci[build_id]
        assert (have["job_full_name"], have["build_number"]) == (want["job"], want["number"]), build_id
        assert have["result"] == (want["result"].lower() if want["result"] else "in_progress"), build_id
        assert have["original_result"] == want["result"], build_id
        assert have["is_building"] == (want["result"] is None), build_id
        assert (have["started_at"], have["finished_at"]) == (want["started_at"], want["finished_at"]), build_id
        if want["finished_at"] is not None:
            assert have["duration_ms"] == (want["finished_at"] - want["started_at"]) // timedelta(milliseconds=1)
        assert (have["sha"], have["branch"], have["service"]) == (want["sha"], want["branch"], want["service"])
        assert have["repo"] == f"{world.org}/{want['service']}", build_id
        assert have["trigger"] == want["trigger"], build_id
        expected_person = person(con, login.get(triggered_by[build_id] or ""))
        assert have["triggered_by_id"] == (expected_person if want["trigger"] == "person" else None), build_id

    want_deploys = {
        r["deployment_id"].replace("jenkins:deployment:", "jenkins:build:", 1): r
        for r in records(truth["deployments"], "jenkins")
    }
    assert set(deploys) == set(want_deploys)
    params: dict[str, dict[str, str]] = {}
    for r in rows(con, "select build_id, name, value from staging.stg_jenkins__build_parameters"):
        params.setdefault(r["build_id"], {})[r["name"]] = r["value"]
    assert set(params) == set(deploys)  # only the deploy jobs take parameters
    creators = {d.deployment_id: d.creator_id for d in view.deployments() if d.system == "jenkins"}
    raw_outcomes = {d.deployment_id: d.raw_outcome for d in view.deployments() if d.system == "jenkins"}
    for build_id, want in want_deploys.items():
        have = deploys[build_id]
        assert DEPLOY_OUTCOME.get(have["result"], have["result"]) == want["outcome"], build_id
        finished = want["outcome"] != "in_progress"
        assert have["original_result"] == (raw_outcomes[want["deployment_id"]] if finished else None), build_id
        assert (have["started_at"], have["finished_at"]) == (want["started_at"], want["finished_at"]), build_id
        assert (have["sha"], have["service"], have["repo"]) == (want["sha"], want["service"], want["repo"])
        assert have["trigger"] == want["triggered_by"], build_id
        if want["triggered_by"] == "person":
            assert have["triggered_by_id"] == person(con, login[creators[want["deployment_id"]]]), build_id
        assert params[build_id] == {
            "ENVIRONMENT": want["environment"],
            "GIT_SHA": want["sha"],
            "ROLLBACK": "true" if want["is_rollback"] else "false",
        }, build_id

    # change sets: the commits each CI build listed, with their pseudonymised authors
    commits = {c.sha: c for pr in world.pull_requests for c in pr.commits}
    for line in world.mainline.values():
        commits.update({c.sha: c for c in line})
    want_changes = {
        (b.build_id, sha): commits[sha] for b in view.builds() if b.system == "jenkins" for sha in b.changeset_shas
    }
    changes = {(r["build_id"], r["sha"]): r for r in rows(con, "select * from staging.stg_jenkins__build_changesets")}
    assert set(changes) == set(want_changes)
    for key, commit in want_changes.items():
        assert changes[key]["committed_at"] == commit.committed_at, key
        assert changes[key]["author_id"] == person(con, login[commit.author_id]), key

    # stages of finished builds and deploys, with the wfapi vocabulary normalised
    runs = [(b.build_id, b.finished_at, b.stages) for b in view.builds() if b.system == "jenkins"]
    runs += [
        (f"jenkins:build:{d.jenkins_job}#{d.jenkins_number}", d.finished_at, d.stages)
        for d in view.deployments()
        if d.system == "jenkins"
    ]
    want_stages = {
        (build_id, str(s.stage_id)): (
            s.name,
            STAGE_STATUS[s.status],
            s.status,
            None if s.status == "NOT_EXECUTED" else s.started_at,
            0 if s.status == "NOT_EXECUTED" else s.duration_ms,
        )
        for build_id, finished_at, stages in runs
        if finished_at <= as_of
        for s in stages
    }
    stages = {
        (r["build_id"], r["stage_id"]): (
            r["stage_name"],
            r["status"],
            r["original_status"],
            r["started_at"],
            r["duration_ms"],
        )
        for r in rows(con, "select * from staging.stg_jenkins__build_stages")
    }
    assert stages == want_stages

    # test cases of finished CI builds
    want_cases = {
        (r["build_id"], r["suite"], r["class_name"], r["name"]): (
            CASE_STATUS[r["status"]],
            r["status"],
            r["duration_s"],
        )
        for r in records(truth["test_cases"])
        if r["build_id"].startswith("jenkins:")
    }
    cases = {
        (r["build_id"], r["suite"], r["class_name"], r["test_name"]): (
            r["status"],
            r["original_status"],
            r["duration_s"],
        )
        for r in rows(con, "select * from staging.stg_jenkins__test_cases")
    }
    assert cases == want_cases

    # jobs: the two folders, a multibranch project per CI service, a deploy job per deploying
    # service, and the branch jobs that have run
    want_jobs: dict[str, str] = {}
    ci_services = [s.name for s in world.services if s.ci == "jenkins"]
    deploy_services = [s.name for s in world.services if s.deploys_via == "jenkins"]
    if ci_services:
        want_jobs["ci"] = "folder"
        want_jobs.update({f"ci/{s}": "multibranch" for s in ci_services})
    if deploy_services:
        want_jobs["deploy"] = "folder"
        want_jobs.update({f"deploy/{s}-deploy": "pipeline" for s in deploy_services})
    want_jobs.update({b.job: "pipeline" for b in view.builds() if b.system == "jenkins"})
    jobs = {r["job_full_name"]: r for r in rows(con, "select * from staging.stg_jenkins__jobs")}
    assert {k: r["kind"] for k, r in jobs.items()} == want_jobs
    for name, r in jobs.items():
        assert r["parent_full_name"] == (name.rpartition("/")[0] or None), name
        assert r["job_name"] == name.rpartition("/")[2], name


def assert_well_formed(con: duckdb.DuckDBPyConnection, world: World) -> None:
    """Contract columns, unique keys, UTC timestamps, documentation and pseudonyms, in every table."""
    columns = rows(
        con,
        "select table_name, column_name, data_type, comment from duckdb_columns() "
        "where schema_name = 'staging' and starts_with(table_name, 'stg_jenkins__')",
    )
    by_table: dict[str, list[dict[str, Any]]] = {}
    for c in columns:
        by_table.setdefault(c["table_name"], []).append(c)
    assert set(by_table) == set(CONTRACT)
    forbidden = {
        text
        for p in world.people
        if not p.is_bot
        for text in (p.name, p.login, p.email, p.jenkins_user, p.email.split("@")[0])
    }
    for table, (key, contract_columns) in CONTRACT.items():
        names = {c["column_name"] for c in by_table[table]}
        assert contract_columns <= names, (table, contract_columns - names)
        assert not [c["column_name"] for c in by_table[table] if not (c["comment"] or "").strip()], table
        for c in by_table[table]:
            if c["column_name"].endswith("_at"):
                assert c["data_type"] == "TIMESTAMP WITH TIME ZONE", (table, c["column_name"])
        key_list = ", ".join(key)
        duplicates = con.execute(
            f"select {key_list}, count(*) from staging.{table} group by {key_list} having count(*) > 1 limit 3"
        ).fetchall()
        assert not duplicates, (table, duplicates)
        nulls = con.execute(
            f"select count(*) from staging.{table} where {' or '.join(f'{k} is null' for k in key)}"
        ).fetchone()[0]
        assert nulls == 0, table
        for column in PERSON_COLUMNS.get(table, []):
            values = [v for (v,) in con.execute(f"select distinct {column} from staging.{table}").fetchall()]
            assert all(v is None or PSEUDONYM.match(v) for v in values), (table, column)
        for c in by_table[table]:
            if c["data_type"] != "VARCHAR":
                continue
            values = [
                v for (v,) in con.execute(f'select distinct "{c["column_name"]}" from staging.{table}').fetchall()
            ]
            leaks = [v for v in values if v and (EMAIL.search(v) or any(f in v for f in forbidden))]
            assert not leaks, (table, c["column_name"], leaks[:3])


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def staged(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """Raw Jenkins tables of the whole world (the session sandbox), and the staging models built on them."""
    folder = tmp_path_factory.mktemp("stg_jenkins")
    load_raw(sandbox, folder / "warehouse.duckdb", folder / "dlt")
    con = build_staging(folder / "warehouse.duckdb")
    yield con
    con.close()


def test_staging_equals_the_world(staged: duckdb.DuckDBPyConnection, sandbox: SandboxServer, world: World) -> None:
    assert_staging_equals_world(staged, world, sandbox.as_of)


def test_staging_is_well_formed_documented_and_pseudonymised(staged: duckdb.DuckDBPyConnection, world: World) -> None:
    assert_well_formed(staged, world)
    # every kind of row occurred, so the checks above compared something
    for table in CONTRACT:
        assert staged.execute(f"select count(*) from staging.{table}").fetchone()[0] > 0, table
    people, triggers, upstream = staged.execute(
        "select count(triggered_by_id), count(distinct trigger), count(upstream_build_id) "
        "from staging.stg_jenkins__builds"
    ).fetchone()
    assert people > 0 and triggers == 2 and upstream > 0
    assert staged.execute("select count(author_id) from staging.stg_jenkins__build_changesets").fetchone()[0] > 0


def test_early_and_partial_worlds_build(world: World, tmp_path: Path) -> None:
    """At the first deploy's midpoint nothing has finished: no CI build, change set, stage or test
    report exists yet, so dlt never saw those tables. The models still build, equal to the world;
    an incremental load a little later (a CI build finished, the next one running) fills them."""
    deploys = sorted((d for d in world.deployments if d.system == "jenkins"), key=lambda d: d.started_at)
    ci = sorted((b for b in world.builds if b.system == "jenkins"), key=lambda b: b.started_at)
    first = deploys[0]
    early = first.started_at + (first.finished_at - first.started_at) / 2
    later = ci[1].started_at + timedelta(minutes=1)
    assert early < ci[0].started_at and ci[0].finished_at < later < ci[1].finished_at
    assert ci[0].changeset_shas and ci[0].test_cases

    db = tmp_path / "warehouse.duckdb"
    with SandboxServer(world, as_of=early) as server:
        load_raw(server, db, tmp_path / "dlt")
        con = build_staging(db)
        assert con.execute("select result from staging.stg_jenkins__builds").fetchall() == [("in_progress",)]
        assert_staging_equals_world(con, world, early)
        assert_well_formed(con, world)
        con.close()

        server.as_of = later  # the next nightly run, incremental
        load_raw(server, db, tmp_path / "dlt")
        con = build_staging(db)
        assert_staging_equals_world(con, world, later)
        assert_well_formed(con, world)
        for table in ("stg_jenkins__build_changesets", "stg_jenkins__test_cases", "stg_jenkins__build_stages"):
            assert con.execute(f"select count(*) from staging.{table}").fetchone()[0] > 0, table
        con.close()
