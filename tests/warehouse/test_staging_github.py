"""GitHub staging models (`warehouse/staging/github/`) against the sandbox world.

The raw tables come from the real dlt source run against the emulator (explicit arguments from the
server's `env()`), into a temporary DuckDB file; the extraction's `create_declared_tables` runs after
each load, as in the nightly job. The staging models are built with the model runner, and keys,
vocabularies, times and people are compared with the ground truth (`truth_frames`) and, where the
truth exports nothing, with the world itself.

One pipeline is loaded three times, incrementally, and staging is built and checked after each load:
- `early`: the first Actions run is in progress and the first pull request is open; nothing has been
  merged, so main has no commit since the start date, no release and no compare exist yet: the
  tables (and the child tables `commits__parents`, `deployment_compares__commits`) are still empty;
- `mid`: a GitHub production deployment is in progress (queued, in progress, no final status);
- `end`: the session sandbox at the world's end.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import dlt
import duckdb
import polars as pl
import pytest

from pipelines.assets.config_settings import settings_rows, write_settings
from pipelines.checks.contracts import validate
from pipelines.models import Model, build_model, load_models
from pipelines.sandbox.github import JOB_ID_BASE, STAGE_CONCLUSIONS
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World, WorldView
from pipelines.sources.declared_tables import create_declared_tables
from pipelines.sources.github import github_source

SALT = "staging-github-test-salt"
PSEUDONYM = re.compile(r"^person:[0-9a-f]{16}$")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

# The staging contract (warehouse/README.md): table → (primary key, columns the layers above rely on).
CONTRACT: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "stg_github__repositories": (("repo",), {"repo", "repo_id", "service", "default_branch", "created_at"}),
    "stg_github__pull_requests": (
        ("repo", "pr_number"),
        {
            "repo",
            "pr_number",
            "github_id",
            "title",
            "branch",
            "body",
            "author_id",
            "state",
            "original_state",
            "is_draft",
            "created_at",
            "updated_at",
            "closed_at",
            "merged_at",
            "merge_sha",
            "head_sha",
            "base_ref",
        },
    ),
    "stg_github__pull_request_commits": (
        ("repo", "pr_number", "sha"),
        {"repo", "pr_number", "sha", "author_id", "authored_at", "committed_at", "message"},
    ),
    "stg_github__pull_request_reviews": (
        ("review_id",),
        {"review_id", "repo", "pr_number", "reviewer_id", "state", "submitted_at"},
    ),
    "stg_github__commits": (
        ("repo", "sha"),
        {"repo", "sha", "author_id", "authored_at", "committed_at", "message", "first_parent_sha", "parent_count"},
    ),
    "stg_github__deployments": (
        ("deployment_id",),
        {
            "deployment_id",
            "github_id",
            "repo",
            "service",
            "environment",
            "original_environment",
            "sha",
            "ref",
            "description",
            "creator_id",
            "creator_type",
            "triggered_by",
            "created_at",
        },
    ),
    "stg_github__deployment_statuses": (("status_id",), {"status_id", "deployment_id", "state", "created_at"}),
    "stg_github__workflow_runs": (
        ("build_id",),
        {
            "build_id",
            "run_id",
            "repo",
            "workflow_name",
            "event",
            "head_sha",
            "head_branch",
            "result",
            "original_status",
            "original_conclusion",
            "run_number",
            "run_attempt",
            "started_at",
            "finished_at",
            "actor_id",
        },
    ),
    "stg_github__workflow_jobs": (
        ("job_id",),
        {"job_id", "build_id", "name", "result", "started_at", "finished_at"},
    ),
    "stg_github__releases": (("release_id",), {"release_id", "repo", "tag", "name", "created_at", "published_at"}),
    "stg_github__deployment_compares": (
        ("repo", "base_sha", "head_sha", "commit_sha"),
        {"repo", "base_sha", "head_sha", "status", "ahead_by", "commit_sha"},
    ),
}
FINAL_STATES = {"success": "success", "failure": "failure", "error": "failure"}


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def staging_models() -> list[Model]:
    """The GitHub staging models, in the runner's dependency order."""
    return [m for m in load_models() if m.schema == "staging" and m.name.startswith("stg_github__")]


def expected_person_id(identity: str) -> str:
    """What `person_id(x)` yields under SALT (pipelines.models.install_macros), computed independently."""
    normalised = re.sub(r"[^a-z0-9]", "", identity.split("@", 1)[0].lower())
    return "person:" + hashlib.sha256(f"{SALT}:{normalised}".encode()).hexdigest()[:16]


def load_raw(pipeline: dlt.Pipeline, env: dict[str, str]) -> None:
    """One run of the GitHub source, configured with explicit arguments, then the declared-table step."""
    source = github_source(
        base_url=env["SOURCES__GITHUB__BASE_URL"],
        access_token=env["SOURCES__GITHUB__ACCESS_TOKEN"],
        org=env["SOURCES__GITHUB__ORG"],
        start_date=env["SOURCES__GITHUB__START_DATE"],
    )
    pipeline.run(source, loader_file_format="parquet")
    create_declared_tables(pipeline)


def build_staging(db: Path) -> None:
    with duckdb.connect(str(db)) as con:
        write_settings(con, settings_rows())
        for model in staging_models():
            build_model(con, model)


def early_as_of(world: World) -> datetime:
    """Halfway through the first GitHub Actions run (the first pull request is open, nothing merged)."""
    first = min((b for b in world.builds if b.system == "github_actions"), key=lambda b: b.started_at)
    return first.started_at + (first.finished_at - first.started_at) / 2


def mid_as_of(world: World) -> datetime:
    """Halfway through the first GitHub production deployment started after the first merge."""
    first_merge = min(p.merged_at for p in world.pull_requests if p.merged_at is not None)
    deployment = min(
        (
            d
            for d in world.deployments
            if d.system == "github" and d.environment == "production" and d.started_at > first_merge
        ),
        key=lambda d: d.started_at,
    )
    return deployment.started_at + (deployment.finished_at - deployment.started_at) / 2


@dataclass(frozen=True)
class Built:
    moment: str
    path: Path
    as_of: datetime
    start: datetime
    world: World

    @property
    def view(self) -> WorldView:
        return self.world.visible(self.as_of)

    @cached_property
    def truth(self) -> dict[str, pl.DataFrame]:
        return dict(truth_frames(self.world, self.as_of))

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        return con


@pytest.fixture(scope="module")
def moments(world: World, sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Load early → mid → end into one pipeline; after each load build staging and keep a copy."""
    folder = tmp_path_factory.mktemp("staging_github")
    db = folder / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="staging_github_test",
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name="raw_github",
        pipelines_dir=str(folder / "dlt"),
    )
    built: dict[str, Built] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSMAP_PSEUDONYM_SALT", SALT)
        for moment, as_of in (("early", early_as_of(world)), ("mid", mid_as_of(world)), ("end", sandbox.as_of)):
            if moment == "end":
                env = sandbox.env()
                load_raw(pipeline, env)
            else:
                with SandboxServer(world, as_of=as_of) as server:
                    env = server.env()
                    load_raw(pipeline, env)
            build_staging(db)
            copy = folder / f"{moment}.duckdb"
            shutil.copy(db, copy)
            start = datetime.fromisoformat(env["SOURCES__GITHUB__START_DATE"]).replace(tzinfo=UTC)
            built[moment] = Built(moment, copy, as_of, start, world)
    return built


@pytest.fixture(params=["early", "mid", "end"])
def built(request: pytest.FixtureRequest, moments: dict[str, Built]) -> Built:
    return moments[request.param]


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def truth_records(built: Built, name: str, system: str | None = None) -> list[dict[str, Any]]:
    """A truth frame's rows at the moment (an empty frame has no columns), optionally of one system."""
    frame = built.truth[name]
    if frame.height == 0:
        return []
    return (frame.filter(system=system) if system else frame).to_dicts()


def whole_seconds(moment: datetime | None) -> datetime | None:
    """GitHub reports times in whole seconds (the world keeps milliseconds)."""
    return moment.replace(microsecond=0) if moment is not None else None


def login_id(world: World, person_id: str) -> str:
    return expected_person_id(world.people_by_id[person_id].login)


# --------------------------------------------------------------------------------------------------
# The moments are what they claim to be
# --------------------------------------------------------------------------------------------------


def test_the_moments_cover_empty_tables_and_work_in_progress(moments: dict[str, Built]) -> None:
    with moments["early"].connect() as con:
        counts = {
            m.name: con.execute(f"select count(*) from {m.table}").fetchone()[0]  # type: ignore[index]
            for m in staging_models()
        }
        raw_children = con.execute(
            "select count(*) from raw_github.commits__parents union all "
            "select count(*) from raw_github.deployment_compares__commits"
        ).fetchall()
    assert {k for k, n in counts.items() if n == 0} >= {
        "stg_github__commits",
        "stg_github__releases",
        "stg_github__deployment_compares",
        "stg_github__pull_request_reviews",
    }, counts
    assert raw_children == [(0,), (0,)]  # created empty by the declared-table step
    with moments["early"].connect() as con:
        assert con.execute("select result from staging.stg_github__workflow_runs").fetchall() == [("in_progress",)]
    with moments["mid"].connect() as con:
        running = con.execute(
            "select count(*) from staging.stg_github__deployments as d where d.environment = 'production' "
            "and not exists (select 1 from staging.stg_github__deployment_statuses as s "
            "where s.deployment_id = d.deployment_id and s.state in ('success', 'failure', 'error'))"
        ).fetchone()
    assert running == (1,)


# --------------------------------------------------------------------------------------------------
# Keys and values against the truth
# --------------------------------------------------------------------------------------------------


def test_repositories_equal_the_services(built: Built) -> None:
    with built.connect() as con:
        got = {
            r["repo"]: (r["repo_id"], r["service"], r["owner"], r["default_branch"], r["created_at"])
            for r in rows(con, "select * from staging.stg_github__repositories")
        }
    org = built.world.org
    expected = {s.repo(org): (s.repo_id, s.name, org, "main", s.created_at) for s in built.world.services}
    assert got == expected


def test_pull_requests_equal_the_truth(built: Built) -> None:
    truth = {(r["repo"], r["number"]): r for r in truth_records(built, "pull_requests")}
    with built.connect() as con:
        got = {(r["repo"], r["pr_number"]): r for r in rows(con, "select * from staging.stg_github__pull_requests")}
        first_commit = {
            (r["repo"], r["pr_number"]): r["first_commit_at"]
            for r in rows(
                con,
                "select repo, pr_number, min(authored_at) as first_commit_at "
                "from staging.stg_github__pull_request_commits group by repo, pr_number",
            )
        }
    assert truth and set(got) == set(truth)
    for key, want in truth.items():
        have = got[key]
        assert (have["merged_at"], have["merge_sha"]) == (want["merged_at"], want["merge_sha"]), key
        assert first_commit.get(key) == want["first_commit_at"], key
    view = built.view
    for pr in view.pull_requests():
        have = got[(pr.repo, pr.number)]
        state = "merged" if view.is_merged(pr) else "closed" if view.is_closed(pr) else "open"
        assert have["state"] == state, pr.number
        assert have["original_state"] == ("open" if state == "open" else "closed"), pr.number
        assert (have["github_id"], have["title"], have["branch"], have["body"]) == (
            pr.pr_id,
            pr.title,
            pr.branch,
            pr.body,
        )
        assert have["author_id"] == login_id(built.world, pr.author_id)
        assert have["created_at"] == pr.created_at and have["updated_at"] == pr.updated_at(built.as_of)
        assert have["closed_at"] == (pr.closed_at if view.is_closed(pr) else None)
        assert (have["base_ref"], have["base_sha"], have["is_draft"]) == ("main", pr.base_sha, False)
        commits = view.pr_commits(pr)
        assert have["head_sha"] == (commits[-1].sha if commits else have["head_sha"])


def test_pull_request_commits_and_reviews_equal_the_world(built: Built) -> None:
    view, world = built.view, built.world
    expected_commits = {
        (pr.repo, pr.number, c.sha): (login_id(world, c.author_id), c.authored_at, c.committed_at, c.message)
        for pr in view.pull_requests()
        for c in view.pr_commits(pr)
    }
    expected_reviews = {
        r.review_id: (pr.repo, pr.number, pr.pr_id, login_id(world, r.reviewer_id), r.state.lower(), r.submitted_at)
        for pr in view.pull_requests()
        for r in view.pr_reviews(pr)
    }
    with built.connect() as con:
        commits = {
            (r["repo"], r["pr_number"], r["sha"]): (r["author_id"], r["authored_at"], r["committed_at"], r["message"])
            for r in rows(con, "select * from staging.stg_github__pull_request_commits")
        }
        reviews = {
            r["review_id"]: (
                r["repo"],
                r["pr_number"],
                r["pull_request_github_id"],
                r["reviewer_id"],
                r["state"],
                r["submitted_at"],
            )
            for r in rows(con, "select * from staging.stg_github__pull_request_reviews")
        }
        originals = {
            r[0] for r in con.execute("select original_state from staging.stg_github__pull_request_reviews").fetchall()
        }
    assert expected_commits and commits == expected_commits
    assert reviews == expected_reviews
    assert originals <= {"APPROVED", "CHANGES_REQUESTED", "COMMENTED"}


def test_main_commits_equal_the_mainline(built: Built) -> None:
    """main's history since the start date (the source's `since`), with first parent and parent count."""
    world = built.world
    expected = {
        (repo, c.sha): (
            login_id(world, c.author_id),
            c.authored_at,
            c.committed_at,
            c.message,
            c.parents[0] if c.parents else None,
            len(c.parents),
            len(c.parents) > 1,
        )
        for repo in world.mainline
        for c in built.view.mainline(repo)
        if c.committed_at >= built.start
    }
    with built.connect() as con:
        got = {
            (r["repo"], r["sha"]): (
                r["author_id"],
                r["authored_at"],
                r["committed_at"],
                r["message"],
                r["first_parent_sha"],
                r["parent_count"],
                r["is_merge"],
            )
            for r in rows(con, "select * from staging.stg_github__commits")
        }
    assert got == expected
    if built.moment == "end":
        assert {v[5] for v in got.values()} == {1, 2}  # ordinary and merge commits both occur


LATEST_OUTCOME = """
    with latest as (
        select
            deployment_id,
            state,
            created_at,
            row_number() over (partition by deployment_id order by created_at desc, status_id desc) as recency
        from staging.stg_github__deployment_statuses
        where state <> 'inactive'
    )
    select
        d.*,
        s.state as latest_state,
        case
            when s.state = 'success' then 'success'
            when s.state in ('failure', 'error') then 'failure'
            else 'in_progress'
        end as outcome,
        case when s.state in ('success', 'failure', 'error') then s.created_at end as finished_at
    from staging.stg_github__deployments as d
    left join latest as s on s.deployment_id = d.deployment_id and s.recency = 1
"""
"""Each deployment with the outcome its latest status that is not `inactive` gives (as the marts read it)."""


def test_deployments_with_their_latest_status_equal_the_truth(built: Built) -> None:
    truth = {r["deployment_id"]: r for r in truth_records(built, "deployments", "github")}
    with built.connect() as con:
        got = {r["deployment_id"]: r for r in rows(con, LATEST_OUTCOME)}
    assert truth and set(got) == set(truth)
    for key, want in truth.items():
        have = got[key]
        assert (have["repo"], have["service"], have["environment"], have["sha"]) == (
            want["repo"],
            want["service"],
            want["environment"],
            want["sha"],
        ), key
        assert (have["outcome"], have["created_at"], have["finished_at"]) == (
            want["outcome"],
            want["started_at"],
            want["finished_at"],
        ), key
        assert have["triggered_by"] == want["triggered_by"], key
    people = built.world.people_by_id
    for d in built.view.deployments():
        if d.system != "github":
            continue
        have = got[d.deployment_id]
        creator = people[d.creator_id]
        assert have["github_id"] == d.github_id and have["original_environment"] == d.environment
        assert have["ref"] == d.ref and have["creator_id"] == expected_person_id(creator.login)
        assert have["creator_type"] == ("Bot" if creator.is_bot else "User")
        assert have["triggered_by"] == ("automation" if creator.is_bot else "person")
        if built.view.deployment_finished(d):
            assert have["latest_state"] == d.raw_outcome, d.deployment_id


def test_deployment_statuses_equal_the_world(built: Built) -> None:
    view = built.view
    expected = {
        s.status_id: (d.deployment_id, d.github_id, d.repo, s.state, s.at, login_id(built.world, s.creator_id))
        for d in view.deployments()
        if d.system == "github"
        for s in view.deployment_statuses(d)
    }
    with built.connect() as con:
        got = {
            r["status_id"]: (
                r["deployment_id"],
                r["deployment_github_id"],
                r["repo"],
                r["state"],
                r["created_at"],
                r["creator_id"],
            )
            for r in rows(con, "select * from staging.stg_github__deployment_statuses")
        }
    assert expected and got == expected


def test_workflow_runs_equal_the_truth(built: Built) -> None:
    """Runs vs the truth's `github_actions` builds (the emulator reports any unsuccessful run as `failure`)."""
    truth = {r["build_id"]: r for r in truth_records(built, "builds", "github_actions")}
    with built.connect() as con:
        got = {r["build_id"]: r for r in rows(con, "select * from staging.stg_github__workflow_runs")}
    assert truth and set(got) == set(truth)
    builds = {b.build_id: b for b in built.view.builds()}
    for key, want in truth.items():
        have = got[key]
        result = "in_progress" if want["result"] is None else "success" if want["result"] == "SUCCESS" else "failure"
        assert have["result"] == result, key
        assert have["original_status"] == ("in_progress" if want["result"] is None else "completed"), key
        assert have["original_conclusion"] == (None if want["result"] is None else result), key
        assert (have["workflow_name"], have["run_number"], have["head_sha"], have["head_branch"]) == (
            want["job"],
            want["number"],
            want["sha"],
            want["branch"],
        ), key
        assert (have["started_at"], have["finished_at"]) == (
            whole_seconds(want["started_at"]),
            whole_seconds(want["finished_at"]),
        ), key
        b = builds[key]
        assert (have["run_id"], have["event"], have["run_attempt"]) == (b.run_id, b.event, b.run_attempt), key
        assert have["repo"] == f"{built.world.org}/{b.service}" and have["service"] == b.service, key
        assert PSEUDONYM.match(have["actor_id"]), key


def test_workflow_jobs_equal_the_world(built: Built) -> None:
    """One job per stage of each run (the emulator's rendering), with its result and times as of the moment."""
    view = built.view
    expected = {}
    for b in view.builds():
        if b.system != "github_actions":
            continue
        for stage in b.stages:
            end = stage.started_at + timedelta(milliseconds=stage.duration_ms)
            started, done = stage.started_at <= built.as_of, end <= built.as_of
            result = STAGE_CONCLUSIONS.get(stage.status, "failure") if done else "in_progress"
            expected[JOB_ID_BASE + stage.stage_id] = (
                b.build_id,
                stage.name.lower(),
                result,
                whole_seconds(stage.started_at if started else b.started_at),
                whole_seconds(end) if done else None,
            )
    with built.connect() as con:
        got = {
            r["job_id"]: (r["build_id"], r["name"], r["result"], r["started_at"], r["finished_at"])
            for r in rows(con, "select * from staging.stg_github__workflow_jobs")
        }
    assert expected and got == expected
    if built.moment == "end":
        assert {v[2] for v in got.values()} >= {"success", "failure", "skipped"}


def test_releases_equal_the_world(built: Built) -> None:
    expected = {
        r.release_id: (r.repo, r.tag, r.name, r.sha, login_id(built.world, r.author_id), r.created_at, r.published_at)
        for r in built.view.releases()
    }
    with built.connect() as con:
        got = {
            r["release_id"]: (
                r["repo"],
                r["tag"],
                r["name"],
                r["target"],
                r["author_id"],
                r["created_at"],
                r["published_at"],
            )
            for r in rows(con, "select * from staging.stg_github__releases")
        }
    assert got == expected
    assert expected or built.moment != "end"


def test_compares_list_the_commits_each_production_deployment_shipped(built: Built) -> None:
    """Consecutive successful production deployments of a repository, and main's commits between them."""
    view = built.view
    expected: set[tuple[str, str, str, str, str, int]] = set()
    for repo in built.world.mainline:
        line = [c.sha for c in view.mainline(repo)]
        previous = None
        for d in sorted(
            (
                d
                for d in view.deployments()
                if d.system == "github" and d.repo == repo and d.environment == "production"
            ),
            key=lambda d: (d.started_at, d.github_id),
        ):
            if not view.deployment_finished(d):
                break  # the source pairs it once it ends
            if d.outcome != "success":
                continue
            if previous is not None and previous.sha != d.sha:
                low, high = line.index(previous.sha), line.index(d.sha)
                for position, sha in enumerate(line[low + 1 : high + 1], 1):
                    expected.add((repo, previous.sha, d.sha, sha, d.deployment_id, position))
            previous = d
    with built.connect() as con:
        got = {
            (r["repo"], r["base_sha"], r["head_sha"], r["commit_sha"], r["head_deployment_id"], r["commit_position"])
            for r in rows(con, "select * from staging.stg_github__deployment_compares")
        }
        statuses = {
            r[0] for r in con.execute("select distinct status from staging.stg_github__deployment_compares").fetchall()
        }
    assert got == expected
    assert expected or built.moment != "end"
    assert statuses <= {"ahead"}  # main is linear in the sandbox, and only compares with commits have rows


# --------------------------------------------------------------------------------------------------
# Shape: keys, types, people, documentation
# --------------------------------------------------------------------------------------------------


def test_every_model_is_built_with_the_contract_columns_and_unique_non_null_keys(built: Built) -> None:
    assert {m.name for m in staging_models()} == set(CONTRACT)
    with built.connect() as con:
        for model in staging_models():
            key, columns = CONTRACT[model.name]
            assert model.primary_key == key, model.name
            present = {r[0] for r in con.execute(f"describe {model.table}").fetchall()}
            assert columns <= present, (model.name, columns - present)
            cols = ", ".join(key)
            total, distinct, null_keys = con.execute(
                f"select count(*), count(distinct ({cols})), count(*) filter (where "
                + " or ".join(f"{k} is null" for k in key)
                + f") from {model.table}"
            ).fetchone()  # type: ignore[misc]
            assert (distinct, null_keys) == (total, 0), model.name


def test_every_model_meets_its_pandera_contract(built: Built) -> None:
    """The blocking `contract` asset check: naming rules (`_at` UTC, person ids) and the header's `checks`."""
    with built.connect() as con:
        for model in staging_models():
            found = validate(model, con.sql(f"select * from {model.table}").pl())
            assert found["passed"], (model.name, found["failure_cases"])


def test_times_are_utc_timestamptz(built: Built) -> None:
    with built.connect() as con:
        columns = con.execute(
            "select table_name, column_name, data_type from duckdb_columns() "
            "where schema_name = 'staging' and table_name like 'stg_github__%' and suffix(column_name, '_at')"
        ).fetchall()
    assert len(columns) > 20
    assert all(kind == "TIMESTAMP WITH TIME ZONE" for _, _, kind in columns), columns


def test_people_appear_only_as_person_ids(built: Built) -> None:
    """Person columns hold `person:<16 hex>` (or null); no e-mail, login, name or Jenkins user id anywhere."""
    people = built.world.people
    identities = {v.lower() for p in people for v in (p.email, p.login, p.name, p.jenkins_user)}
    with built.connect() as con:
        for model in staging_models():
            person_columns = [c for c, doc in model.columns.items() if doc.lower().startswith("person_id")]
            for column in person_columns:
                values = {r[0] for r in con.execute(f"select distinct {column} from {model.table}").fetchall()}
                assert all(v is None or PSEUDONYM.match(v) for v in values), (model.name, column)
            text_columns = [
                r[0]
                for r in con.execute(
                    "select column_name from duckdb_columns() where schema_name = 'staging' "
                    f"and table_name = '{model.name}' and data_type = 'VARCHAR'"
                ).fetchall()
            ]
            for column in text_columns:
                values = con.execute(
                    f"select distinct {column} from {model.table} where {column} is not null"
                ).fetchall()
                for (value,) in values:
                    assert not EMAIL.search(value), (model.name, column, value)
                    leaked = [x for x in identities if x in value.lower()]
                    assert not leaked, (model.name, column, value, leaked)
        authors = {r[0] for r in con.execute("select author_id from staging.stg_github__pull_requests").fetchall()}
    # a GitHub login pseudonymises like the same engineer's e-mail in other tools
    assert authors and authors <= {expected_person_id(p.email) for p in people}


def test_every_table_and_column_has_a_comment(built: Built) -> None:
    with built.connect() as con:
        columns = con.execute(
            "select table_name, column_name, comment from duckdb_columns() "
            "where schema_name = 'staging' and table_name like 'stg_github__%'"
        ).fetchall()
        tables = con.execute(
            "select table_name, comment from duckdb_tables() "
            "where schema_name = 'staging' and table_name like 'stg_github__%'"
        ).fetchall()
    assert {t for t, _ in tables} == set(CONTRACT)
    assert all(comment for _, comment in tables), tables
    missing = [(t, c) for t, c, comment in columns if not comment]
    assert not missing, missing


# --------------------------------------------------------------------------------------------------
# Defensive rules, on a copy of the end warehouse
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def end_copy(moments: dict[str, Built], tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "copy.duckdb"
    shutil.copy(moments["end"].path, copy)
    yield copy


def rebuild(path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSMAP_PSEUDONYM_SALT", SALT)
        build_staging(path)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {m.table: con.execute(f"select * from {m.table} order by all").fetchall() for m in staging_models()}


def test_a_stale_duplicate_from_an_older_load_is_dropped(end_copy: Path) -> None:
    """dlt's merge already de-duplicates; the models still keep only the newest load of every key."""
    stale = {
        "repositories": "'stale' as default_branch",
        "pull_requests": "'stale' as title",
        "pull_request_commits": "'stale' as commit__message",
        "pull_request_reviews": "'STALE' as state",
        "commits": "'stale' as commit__message",
        "deployments": "'stale' as environment",
        "deployment_statuses": "'stale' as state",
        "deployment_compares": "'stale' as status",
        "workflow_runs": "'stale' as conclusion",
        "workflow_jobs": "'stale' as name",
        "releases": "'stale' as tag_name",
    }
    with duckdb.connect(str(end_copy)) as con:
        before = snapshot(con)
        for table, change in stale.items():
            con.execute(
                f"insert into raw_github.{table} by name "
                f"select * replace ({change}, '0000000000.0' as _dlt_load_id) from raw_github.{table}"
            )
    rebuild(end_copy)
    with duckdb.connect(str(end_copy)) as con:
        assert snapshot(con) == before


def test_environments_follow_the_settings_and_inactive_statuses_are_kept_apart(
    end_copy: Path, moments: dict[str, Built]
) -> None:
    """Environment names match `config.settings` case-insensitively (others are kept, lower-cased); an
    `inactive` status (real GitHub marks superseded deployments so) is kept, and the outcome read from
    the latest status that is not inactive still equals the truth."""
    with duckdb.connect(str(end_copy)) as con:
        ids = [r[0] for r in con.execute("select id from raw_github.deployments order by id limit 3").fetchall()]
        for github_id, name in zip(ids, ("PROD", " Stage ", "QA-eu"), strict=True):
            con.execute("update raw_github.deployments set environment = ? where id = ?", [name, github_id])
        con.execute(
            "insert into raw_github.deployment_statuses by name "
            "select * replace (id + 900000000 as id, 'inactive' as state, created_at + interval 1 day as created_at) "
            "from raw_github.deployment_statuses where state = 'success'"
        )
    rebuild(end_copy)
    with duckdb.connect(str(end_copy)) as con:
        environments = con.execute(
            "select github_id, environment, original_environment from staging.stg_github__deployments "
            f"where github_id in ({', '.join(map(str, ids))}) order by github_id"
        ).fetchall()
        inactive = con.execute(
            "select count(*) from staging.stg_github__deployment_statuses where state = 'inactive'"
        ).fetchone()
        outcomes = {r["deployment_id"]: (r["outcome"], r["finished_at"]) for r in rows(con, LATEST_OUTCOME)}
    assert [(e, o) for _, e, o in environments] == [("production", "PROD"), ("staging", " Stage "), ("qa-eu", "QA-eu")]
    assert inactive and inactive[0] > 0
    truth = truth_records(moments["end"], "deployments", "github")
    assert outcomes == {r["deployment_id"]: (r["outcome"], r["finished_at"]) for r in truth}
