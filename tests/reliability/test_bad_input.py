"""Bad input from the APIs gets a defined outcome, and nothing already loaded is lost.

Every test runs a real dlt source against the sandbox twice into one temporary DuckDB: a good run at
an earlier moment of the world, then a run at its end with bad input injected into the sandbox's
answers (`pipelines/sandbox/drift.py`). The outcomes (README, "Bad input"):

- a new field, a new list, a type change of an undeclared field, a vanished field: **evolve**, and the
  log names the new columns, the variant column and the new child table;
- a record without its primary key, with a declared field of another type, a timestamp in an
  unexpected format, or an object that became a list: **quarantined** in `raw_<system>.quarantine`
  with its reason; its version from the earlier run stays as it was;
- the same field failing on most of a page (the API changed) and JSON that stays malformed through
  the HTTP layer's retries: **stop**, with an error naming the system, the request (with its page),
  and for data, the record and the field; the earlier run's rows stay and no load is recorded.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.assets.extract_worker import source_factory
from pipelines.failures import describe, is_transient, root_cause
from pipelines.sandbox.datadog import event_v2_id
from pipelines.sandbox.drift import Record, lines, malformed, records
from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldConfig
from pipelines.sources import github, mixpanel
from pipelines.sources.declared_tables import create_declared_tables
from pipelines.sources.http import SourceMalformedResponseError, SourceRetriesExhaustedError, SourceSession
from pipelines.sources.jenkins import job_path
from pipelines.sources.jira import jira_instant
from pipelines.sources.quarantine import (
    QUARANTINE_COLUMNS,
    QUARANTINE_TABLE,
    SYSTEMATIC_MIN_RECORDS,
    Gate,
    SourceDataError,
)

WORLD = WorldConfig(seed=42, scale=0.05)
"""58 PRs over 8 repositories, 59 issues, 29 Jenkins builds, 6 incidents, a year of events: seconds a run."""
EARLIER = timedelta(days=45)
"""The good run's moment unless a test picks one when its records still change: 45 days before the end."""
GITHUB_TABLES = ("repositories", "pull_requests")


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WORLD)


@pytest.fixture()
def server(world: World) -> Iterator[SandboxServer]:
    """A sandbox of the world 45 days before its end; `at_end` moves it to the end."""
    with SandboxServer(world, as_of=world.default_as_of() - EARLIER) as running:
        yield running


def at_end(server: SandboxServer, world: World) -> datetime:
    server.as_of = world.default_as_of()
    return server.as_of


@dataclass
class Extraction:
    """One system's source run through a dlt pipeline into a temporary DuckDB, as the extraction step does."""

    system: str
    folder: Path
    loads: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pipeline = dlt.pipeline(
            pipeline_name=f"bad_input_{self.system}",
            destination=dlt.destinations.duckdb(str(self.folder / "warehouse.duckdb")),
            dataset_name=f"raw_{self.system}",
            pipelines_dir=str(self.folder / "dlt"),
        )

    def run(self, server: SandboxServer, *resources: str, **overrides: Any) -> None:
        prefix = f"SOURCES__{self.system.upper()}__"
        args = {k.removeprefix(prefix).lower(): v for k, v in server.env().items() if k.startswith(prefix)}
        source = source_factory(self.system)(**{**args, **overrides})
        if resources:
            source = source.with_resources(*resources)
        self.loads.append(self.pipeline.run(source, loader_file_format="parquet"))
        create_declared_tables(self.pipeline)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.folder / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()

    def table(self, name: str) -> set[tuple[Any, ...]]:
        """Every row of a raw table, dlt's own columns left out."""
        with duckdb.connect(str(self.folder / "warehouse.duckdb"), read_only=True) as con:
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from duckdb_columns() where schema_name = ? and table_name = ?",
                    [f"raw_{self.system}", name],
                ).fetchall()
                if not c.startswith("_dlt")
            ]
            listed = ", ".join(f'"{c}"' for c in columns)
            return set(con.execute(f'select {listed} from raw_{self.system}."{name}"').fetchall())

    def columns(self, table: str) -> set[str]:
        return {
            c
            for (c,) in self.query(
                "select column_name from duckdb_columns() where schema_name = ? and table_name = ?",
                f"raw_{self.system}",
                table,
            )
        }

    def quarantine(self) -> list[dict[str, Any]]:
        with duckdb.connect(str(self.folder / "warehouse.duckdb"), read_only=True) as con:
            relation = con.execute(f"select * from raw_{self.system}.{QUARANTINE_TABLE} order by record_key")
            names = [d[0] for d in relation.description]
            return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def dropped(name: str) -> Any:
    """A drift edit removing a field."""

    def edit(record: Record) -> None:
        record.pop(name, None)

    return edit


def finished_builds(jenkins: Extraction) -> set[tuple[Any, ...]]:
    """(job, number, result, duration, timestamp) of the builds that had finished: they never change."""
    sql = "select job_full_name, number, result, duration, timestamp from raw_jenkins.builds where not building"
    return set(jenkins.query(sql))


def running(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return set()


def older_rows(rows: set[tuple[Any, ...]], before: datetime) -> set[tuple[Any, ...]]:
    """The (insert_id, event, time) rows whose time is before `before`."""
    return {row for row in rows if row[2] < before}


def updated_between(world: World, after: datetime, before: datetime) -> list[Any]:
    """PRs created before `after` and changed between the two moments, by repository and number."""
    return sorted(
        (p for p in world.pull_requests if p.created_at < after < p.updated_at(before)),
        key=lambda p: (p.repo, p.number),
    )


def while_open(server: SandboxServer, lifetimes: Iterable[tuple[datetime, datetime]]) -> datetime:
    """Move the sandbox to just after the latest of these (created, last updated) spans of two days or
    more began: at least that record then changes between the good run and the end."""
    server.as_of = max(created for created, updated in lifetimes if updated - created > timedelta(days=2))
    server.as_of += timedelta(hours=1)
    return server.as_of


def before_the_last(server: SandboxServer, moments: Iterable[datetime], count: int) -> datetime:
    """Move the sandbox to just before the `count`-th latest of these moments: that many are new after it."""
    server.as_of = sorted(moments)[-count] - timedelta(seconds=1)
    return server.as_of


def while_prs_are_open(server: SandboxServer, world: World) -> datetime:
    end = world.default_as_of()
    return while_open(server, ((p.created_at, p.updated_at(end)) for p in world.pull_requests))


# --------------------------------------------------------------------------------------------------
# Quarantine: one record breaks the contract
# --------------------------------------------------------------------------------------------------


def test_a_record_missing_its_primary_key_is_quarantined_and_its_loaded_version_stays(
    world: World, server: SandboxServer, tmp_path: Path
) -> None:
    gh = Extraction("github", tmp_path)
    t1 = while_prs_are_open(server, world)
    gh.run(server, *GITHUB_TABLES)
    assert gh.quarantine() == []  # the table exists, empty, after a clean run
    prs = "select repo_full_name, number, id, updated_at from raw_github.pull_requests"
    before = {(repo, number): row for repo, number, *row in gh.query(prs)}
    end = at_end(server, world)
    bad, *others = updated_between(world, t1, end)
    assert others, "the world must change other PRs too"
    server.drift.add(
        records(
            "github",
            r"/pulls$",
            dropped("id"),
            where=lambda r: r["number"] == bad.number and r["base"]["repo"]["full_name"] == bad.repo,
        )
    )
    gh.run(server, *GITHUB_TABLES)

    after = {(repo, number): row for repo, number, *row in gh.query(prs)}
    # The quarantined PR keeps the version the good run loaded; the other changed PRs moved on.
    assert after[(bad.repo, bad.number)] == before[(bad.repo, bad.number)]
    assert after[(bad.repo, bad.number)][1] < bad.updated_at(end)
    assert all(after[(p.repo, p.number)][1] == p.updated_at(end) for p in others)
    assert len(after) == len(world.visible(end).pull_requests())  # nothing lost, nothing else held back
    [row] = gh.quarantine()
    assert row["system"] == "github" and row["table_name"] == "pull_requests"
    assert row["field"] == "id" and row["reason"] == "`id`: missing"
    assert row["record_key"] == f"number={bad.number}"
    assert row["endpoint"].startswith(f"GET /github/repos/{bad.repo}/pulls?")
    payload = json.loads(row["payload"])
    assert payload["number"] == bad.number and "id" not in payload
    assert row["quarantined_at"] is not None


def test_a_timestamp_in_an_unexpected_format_is_quarantined_and_the_cursor_ignores_it(
    world: World, server: SandboxServer, tmp_path: Path
) -> None:
    jira = Extraction("jira", tmp_path)
    t1 = before_the_last(server, (i.updated_at(world.default_as_of()) for i in world.issues), 12)
    jira.run(server, "issues", "issue_changelogs")
    before = dict(jira.query("select key, fields__updated from raw_jira.issues"))
    cursor = jira.pipeline.state["sources"]["jira"]["resources"]["issues"]["incremental"]["fields.updated"]
    first_cursor = jira_instant(cursor["last_value"])
    end = at_end(server, world)
    changed = sorted(
        (i for i in world.visible(end).issues() if i.created_at < t1 < i.updated_at(end)), key=lambda i: i.key
    )
    bad = changed[0]

    def us_format(issue: Record) -> None:
        issue["fields"]["updated"] = bad.updated_at(end).strftime("%m/%d/%Y %H:%M")

    server.drift.add(records("jira", r"/search/jql$", us_format, key="issues", where=lambda i: i["key"] == bad.key))
    jira.run(server, "issues", "issue_changelogs")

    after = dict(jira.query("select key, fields__updated from raw_jira.issues"))
    assert after[bad.key] == before[bad.key] < bad.updated_at(end)
    assert all(after[i.key] == i.updated_at(end) for i in changed[1:])
    [row] = jira.quarantine()
    assert (row["system"], row["table_name"], row["field"]) == ("jira", "issues", "fields__updated")
    assert row["record_key"] == f"id={bad.issue_id}"
    assert (
        "timestamp in an unexpected format" in row["reason"]
        and bad.updated_at(end).strftime("%m/%d/%Y") in row["reason"]
    )
    assert "/rest/api/3/search/jql?" in row["endpoint"]
    # The cursor is the latest update of the issues that loaded: the bad one neither moved nor broke it.
    state = jira.pipeline.state["sources"]["jira"]["resources"]["issues"]["incremental"]["fields.updated"]
    loaded = [i.updated_at(end) for i in world.visible(end).issues() if i != bad and i.updated_at(end) > t1]
    assert loaded and jira_instant(state["last_value"]) == max([first_cursor, *loaded])


def test_an_epoch_number_in_a_timestamp_field_is_quarantined(
    world: World, server: SandboxServer, tmp_path: Path
) -> None:
    dd = Extraction("datadog", tmp_path)
    dd.run(server, "incidents")
    before = {
        row[0]: row for row in dd.query("select id, attributes__modified, attributes__title from raw_datadog.incidents")
    }
    at_end(server, world)
    target = sorted(before)[0]

    def epoch_ms(incident: Record) -> None:
        incident["attributes"]["modified"] = 1761955200000
        incident["attributes"]["title"] = "rewritten"  # would show, had the record been merged

    server.drift.add(records("datadog", r"/api/v2/incidents$", epoch_ms, key="data", where=lambda i: i["id"] == target))
    dd.run(server, "incidents")

    after = {
        row[0]: row for row in dd.query("select id, attributes__modified, attributes__title from raw_datadog.incidents")
    }
    assert after[target] == before[target]  # the incident keeps what the good run loaded
    assert set(after) == {i.incident_id for i in world.visible(server.as_of).incidents()}
    [row] = dd.quarantine()
    assert (row["table_name"], row["field"], row["record_key"]) == ("incidents", "attributes__modified", f"id={target}")
    assert "a number (1761955200000) where an ISO-8601 timestamp was expected" in row["reason"]
    assert row["endpoint"].startswith("GET /datadog/api/v2/incidents?")


def test_a_declared_field_of_another_type_is_quarantined_a_coercible_one_loads(
    world: World, server: SandboxServer, tmp_path: Path
) -> None:
    jenkins = Extraction("jenkins", tmp_path)
    t1 = before_the_last(server, (b.started_at for b in world.builds if b.system == "jenkins"), 10)
    jenkins.run(server, "jobs", "builds")
    before = finished_builds(jenkins)
    end = at_end(server, world)
    new = sorted(
        (b for b in world.visible(end).builds() if b.system == "jenkins" and t1 < b.started_at),
        key=lambda b: b.build_id,
    )
    bad = new[0]

    def worded_duration(build: Record) -> None:
        build["duration"] = "about three minutes"

    def quoted_estimate(build: Record) -> None:
        build["estimatedDuration"] = str(build["estimatedDuration"])

    job_builds = re.escape(f"/{job_path(bad.job)}/api/json")
    server.drift.add(
        records("jenkins", job_builds, worded_duration, key="allBuilds", where=lambda b: b["number"] == bad.number)
    )
    quoted = server.drift.add(records("jenkins", r"/api/json$", quoted_estimate, key="allBuilds"))
    jenkins.run(server, "jobs", "builds")

    loaded = {(job, n) for job, n in jenkins.query("select job_full_name, number from raw_jenkins.builds")}
    assert (bad.job, bad.number) not in loaded
    assert {(b.job, b.number) for b in new[1:]} <= loaded
    assert before <= finished_builds(jenkins) | {(job, n) for job, n, *_ in running(before)}
    # "123" is a fine bigint: loaded as a number, no variant column.
    assert quoted.applied > 0 and not any(c.startswith("estimated_duration__v_") for c in jenkins.columns("builds"))
    [row] = jenkins.quarantine()
    assert (row["table_name"], row["field"]) == ("builds", "duration")
    assert row["record_key"] == f"job_full_name={bad.job}, number={bad.number}"
    assert "text ('about three minutes') where bigint was expected" in row["reason"]
    assert "allBuilds" in row["endpoint"]


def test_a_nested_object_that_became_a_list_is_quarantined(world: World, server: SandboxServer, tmp_path: Path) -> None:
    dd = Extraction("datadog", tmp_path)
    t1 = before_the_last(server, (e.at for e in world.datadog_events), 5)
    dd.run(server, "events")
    before = dd.table("events")
    end = at_end(server, world)
    new = sorted((e for e in world.visible(end).datadog_events() if e.at > t1), key=lambda e: e.at)
    bad = new[-1]

    def listed(event: Record) -> None:
        event["attributes"] = [event["attributes"]]

    bad_id = event_v2_id(bad)
    server.drift.add(records("datadog", r"/api/v2/events$", listed, key="data", where=lambda e: e["id"] == bad_id))
    dd.run(server, "events")

    ids = {i for (i,) in dd.query("select id from raw_datadog.events")}
    assert bad_id not in ids and {event_v2_id(e) for e in new[:-1]} <= ids
    assert before <= dd.table("events")
    [row] = dd.quarantine()
    assert (row["table_name"], row["field"], row["record_key"]) == ("events", "attributes", f"id={bad_id}")
    assert row["reason"] == "`attributes`: a list where an object was expected"
    assert "events__attributes" not in {t for (t,) in dd.query("select table_name from duckdb_tables()")}


def test_mixpanel_events_without_a_name_or_with_millisecond_times_are_quarantined(
    world: World, server: SandboxServer, tmp_path: Path
) -> None:
    mp = Extraction("mixpanel", tmp_path)
    t1 = server.as_of
    window = {"start_date": (t1 - timedelta(days=20)).date().isoformat(), "end_date": t1.date().isoformat()}
    mp.run(server, **window)
    first = mp.query("select count(*) from raw_mixpanel.events")[0][0]
    older = set(mp.query("select insert_id, event, time from raw_mixpanel.events"))
    assert first > 0 and mp.quarantine() == []
    end = at_end(server, world)

    def in_milliseconds(event: Record) -> None:
        event["properties"]["time"] *= 1000

    def in_seconds(event: Record) -> bool:
        return event["properties"]["time"] < 10**11

    ms = server.drift.add(lines("mixpanel", r"/export$", in_milliseconds, limit=1))
    nameless = server.drift.add(lines("mixpanel", r"/export$", dropped("event"), where=in_seconds, limit=1))
    mp.run(server, start_date=window["start_date"], end_date=end.date().isoformat())

    assert ms.applied == 1 and nameless.applied == 1
    by_field = {r["field"]: r for r in mp.quarantine()}
    assert set(by_field) == {"time", "event"}
    assert (
        by_field["time"]["reason"].startswith("`time`: a number (")
        and "is not a time in 2000–2100" in by_field["time"]["reason"]
    )
    assert by_field["event"]["reason"] == "`event`: missing"
    assert all(r["record_key"].startswith("$insert_id=") for r in by_field.values())
    assert all(r["endpoint"].startswith("GET /api/2.0/export?from_date=") for r in by_field.values())
    events = mp.query("select count(*), count(event), count(time) from raw_mixpanel.events")[0]
    assert events[0] == events[1] == events[2] > first
    # The days before the re-pulled window keep the good run's events, untouched.
    kept = "select insert_id, event, time from raw_mixpanel.events where time < ?"
    re_pulled_from = datetime.combine(t1.date() - timedelta(days=2), datetime.min.time(), t1.tzinfo)
    assert set(mp.query(kept, re_pulled_from)) == older_rows(older, re_pulled_from)


# --------------------------------------------------------------------------------------------------
# Evolve: new fields, undeclared type changes, vanished fields, undeclared objects turned lists
# --------------------------------------------------------------------------------------------------


def test_new_fields_evolve_into_columns_and_the_log_names_them(
    world: World, server: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gh = Extraction("github", tmp_path)
    gh.run(server, "repositories", "releases")
    releases = gh.query("select count(*) from raw_github.releases")[0][0]
    at_end(server, world)

    def drift(release: Record) -> None:
        release["ai_notes"] = "summarised"
        release["author"]["pronouns"] = "they"
        release["author"]["id"] = f"user-{release['author']['id']}"  # bigint → text: a variant column
        release["reactions_seen"] = [{"emoji": "+1", "count": 2}]

    server.drift.add(records("github", r"/releases$", drift))
    with caplog.at_level(logging.WARNING, logger="opsmap.sources.quarantine"):
        gh.run(server, "repositories", "releases")

    columns = gh.columns("releases")
    assert {"ai_notes", "author__pronouns", "author__id", "author__id__v_text"} <= columns
    tables = {t for (t,) in gh.query("select table_name from duckdb_tables() where schema_name = 'raw_github'")}
    assert "releases__reactions_seen" in tables
    assert gh.query("select count(*) from raw_github.releases")[0][0] >= releases
    assert gh.query("select count(*) from raw_github.releases where ai_notes is null") == [(0,)]
    assert gh.quarantine() == []
    log = caplog.text
    assert "github: releases records from GET /repos/" in log
    for name in (
        "`ai_notes` is a new field",
        "`author__pronouns` is a new field",
        "new child table `releases__reactions_seen`",
    ):
        assert name in log
    assert "`author__id` changed type (bigint → text ('user-" in log
    assert "kept in the variant column `author__id__v_text`" in log


def test_a_vanished_field_loads_as_null_and_an_object_turned_list_becomes_a_child_table(
    world: World, server: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gh = Extraction("github", tmp_path)
    t1 = while_prs_are_open(server, world)
    gh.run(server, *GITHUB_TABLES)
    bodies = dict(gh.query("select id, body from raw_github.pull_requests where body is not null"))
    end = at_end(server, world)
    changed = {p.pr_id for p in updated_between(world, t1, end)}

    def drift(pr: Record) -> None:
        pr.pop("body", None)
        pr["_links"] = [pr["_links"]]

    server.drift.add(records("github", r"/pulls$", drift))
    with caplog.at_level(logging.WARNING, logger="opsmap.sources.quarantine"):
        gh.run(server, *GITHUB_TABLES)

    after = dict(gh.query("select id, body from raw_github.pull_requests"))
    assert "body" in gh.columns("pull_requests")
    assert all(after[i] is None for i in changed)  # re-read without the field: the API's current state
    assert {i: b for i, b in bodies.items() if i not in changed} == {
        i: after[i] for i in bodies if i not in changed
    }  # rows not re-read keep their values
    assert gh.quarantine() == []
    assert "pull_requests___links" in {t for (t,) in gh.query("select table_name from duckdb_tables()")}
    assert "`_links` is a new list: loaded into the new child table `pull_requests___links`" in caplog.text


# --------------------------------------------------------------------------------------------------
# Stop: the API changed, or its JSON stays broken
# --------------------------------------------------------------------------------------------------


def test_a_field_failing_on_most_of_a_page_stops_naming_system_endpoint_record_and_field(
    world: World, server: SandboxServer, tmp_path: Path
) -> None:
    gh = Extraction("github", tmp_path)
    gh.run(server, *GITHUB_TABLES)
    before = gh.table("pull_requests")
    loads = gh.query("select count(*) from raw_github._dlt_loads")
    at_end(server, world)

    def listed_user(pr: Record) -> None:
        pr["user"] = [pr["user"]]

    server.drift.add(records("github", r"/pulls$", listed_user))
    with pytest.raises(PipelineStepFailed) as failed:
        gh.run(server, *GITHUB_TABLES)

    error = root_cause(failed.value)
    assert isinstance(error, SourceDataError)
    assert (error.system, error.table, error.field) == ("github", "pull_requests", "user")
    # It reaches the extraction step from a worker process intact (`extract_worker._portable` pickles it).
    assert pickle.loads(pickle.dumps(error)).field == "user" and not is_transient(failed.value)
    assert error.method == "GET" and "/pulls?" in error.endpoint and error.record_key.startswith("id=")
    message = describe("github", failed.value)
    assert message.startswith("github extraction failed (resource `pull_requests`): GET /github/repos/")
    assert f"record {error.record_key}" in message and "field `user`" in message
    assert "a list where an object was expected" in message
    # Nothing of the bad run loaded; what the good run loaded is all there.
    assert gh.table("pull_requests") == before
    assert gh.query("select count(*) from raw_github._dlt_loads") == loads
    assert gh.quarantine() == []


def test_malformed_json_on_one_page_stops_naming_the_page_and_keeps_what_was_loaded(
    world: World, server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SourceSession, "_backoff", lambda self, attempt: 0.0)  # the retries, without their waits
    monkeypatch.setattr(github, "PAGE_SIZE", 2)  # pages of 2: the PRs changed since the good run fill several
    gh = Extraction("github", tmp_path)
    updates = [p.updated_at(world.default_as_of()) for p in world.pull_requests]
    before_the_last(server, updates, len(updates) // 2)  # half the PRs change after the good run
    gh.run(server, *GITHUB_TABLES)
    before = gh.table("pull_requests")
    at_end(server, world)
    broken = server.drift.add(malformed("github", r"/pulls$", query=(("page", "2"),)))
    with pytest.raises(PipelineStepFailed) as failed:
        gh.run(server, *GITHUB_TABLES)

    error = root_cause(failed.value)
    assert isinstance(error, SourceMalformedResponseError) and error.system == "github"
    assert broken.applied == 6  # the first answer and five retries, all cut
    assert "/pulls?" in error.endpoint and "page=2" in error.endpoint
    assert "JSON body was malformed after 6 attempts" in str(error)
    assert describe("github", failed.value).startswith("github extraction failed (resource `pull_requests`): GET ")
    assert gh.table("pull_requests") == before


def test_a_mixpanel_export_line_that_is_no_json_stops_naming_the_range(
    world: World, server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mixpanel.random, "uniform", lambda low, high: 0.0)  # re-fetches without their waits
    mp = Extraction("mixpanel", tmp_path)
    t1 = server.as_of
    start = (t1 - timedelta(days=20)).date().isoformat()
    mp.run(server, start_date=start, end_date=t1.date().isoformat())
    before = set(mp.query("select insert_id, event, time from raw_mixpanel.events"))
    end = at_end(server, world)
    broken = server.drift.add(malformed("mixpanel", r"/export$"))
    with pytest.raises(PipelineStepFailed) as failed:
        mp.run(server, start_date=start, end_date=end.date().isoformat())

    error = root_cause(failed.value)
    assert isinstance(error, SourceRetriesExhaustedError) and error.system == "mixpanel"
    assert error.endpoint.startswith("/api/2.0/export?from_date=") and "to_date=" in error.endpoint
    assert "the stream broke 6 times (last: MalformedExport: a line of" in str(error)
    assert broken.applied == 6  # the first answer and five re-fetches
    assert before and set(mp.query("select insert_id, event, time from raw_mixpanel.events")) == before


# --------------------------------------------------------------------------------------------------
# The contract itself, without HTTP
# --------------------------------------------------------------------------------------------------


def test_the_gate_reasons_about_each_kind_of_bad_value() -> None:
    gate = Gate(
        "github",
        "things",
        columns={
            "id": {"data_type": "bigint"},
            "at": {"data_type": "timestamp"},
            "user__login": {"data_type": "text"},
            "flag": {"data_type": "bool"},
            "doc": {"data_type": "json"},
        },
        primary_key=("id",),
        lists=("tags",),
    )

    def reasons(**record: Any) -> dict[str, str]:
        return {f.column: f.reason for f in gate.check({"id": 1, **record})}

    assert reasons(at="2026-01-02T03:04:05Z", user={"login": 7}, flag=True, doc=[1], tags=[]) == {}
    assert reasons(id="12") == {}  # dlt stores "12" in a bigint column
    assert reasons(id=None) == {"id": "missing (null)"}
    assert reasons(id="twelve") == {"id": "text ('twelve') where bigint was expected"}
    assert reasons(at="2026-01-02 03:04") == {"at": "a timestamp without a UTC offset: text ('2026-01-02 03:04')"}
    assert "unexpected format" in reasons(at="02/01/2026")["at"]
    assert reasons(at=1767322000) == {"at": "a number (1767322000) where an ISO-8601 timestamp was expected"}
    assert reasons(user=[{"login": "a"}]) == {"user": "a list where an object was expected"}
    assert reasons(user={"login": {"name": "a"}}) == {"user__login": "an object where text was expected"}
    assert reasons(tags={"a": 1}) == {"tags": "an object where a list was expected"}
    assert reasons(flag="maybe") == {"flag": "text ('maybe') where bool was expected"}
    # Fewer than SYSTEMATIC_MIN_RECORDS failures are quarantined; as many, on most of a page, stop.
    few = [{"id": None}] * (SYSTEMATIC_MIN_RECORDS - 1) + [{"id": 1}]
    assert len(gate.split(few)[1]) == SYSTEMATIC_MIN_RECORDS - 1
    with pytest.raises(SourceDataError, match="field `id` of things failed on 5 of 6 records"):
        gate.split([{"id": None}] * SYSTEMATIC_MIN_RECORDS + [{"id": 1}], "GET /things?page=3")


def test_the_quarantine_table_is_documented_in_the_schema(server: SandboxServer, tmp_path: Path) -> None:
    dd = Extraction("datadog", tmp_path)
    dd.run(server, "monitors")
    table = dd.pipeline.default_schema.tables[QUARANTINE_TABLE]
    assert table.get("description")
    documented = {name for name, column in table["columns"].items() if column.get("description")}
    assert set(QUARANTINE_COLUMNS) | {"_dlt_load_id"} <= documented
    assert table["write_disposition"] == "append"
    assert dd.columns(QUARANTINE_TABLE) >= set(QUARANTINE_COLUMNS) and dd.quarantine() == []
