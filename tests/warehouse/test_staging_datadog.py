"""Datadog staging models (`warehouse/staging/datadog/`) built on raw tables the dlt source loaded from the sandbox.

Each build runs the real source against the emulator into a temporary DuckDB file, writes
`config.settings`, builds the five staging models with the model runner and compares them with
the world: once at the world's end (the session sandbox) and once early, when the first incident
is open and not yet detected, so that raw columns that have only ever been null must still exist.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.assets.config_settings import settings_rows, write_settings
from pipelines.models import Model, build_model, parse_model
from pipelines.sandbox.datadog import event_v2_id, incident_is_open, incident_modified_at
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.truth import truth_frames
from pipelines.sandbox.world import World, WorldView
from pipelines.settings import WAREHOUSE_SQL_DIR
from pipelines.sources import datadog as dd_source

MODEL_DIR = WAREHOUSE_SQL_DIR / "staging" / "datadog"
SALT = "staging-datadog-test-salt"
PERSON = re.compile(r"^person:[0-9a-f]{16}$")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def staging_models() -> list[Model]:
    """The Datadog staging models; each reads only raw tables, so any order is a dependency order."""
    return [parse_model(path) for path in sorted(MODEL_DIR.glob("stg_datadog__*.sql"))]


def expected_person_id(identity_source: str) -> str:
    """What `person_id(x)` yields under SALT (pipelines.models.install_macros), computed independently."""
    identity = re.sub(r"[^a-z0-9]", "", identity_source.split("@", 1)[0].lower())
    return "person:" + hashlib.sha256(f"{SALT}:{identity}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Built:
    path: Path
    view: WorldView
    start: date

    @property
    def as_of(self) -> datetime:
        return self.view.as_of

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        return con


def load_raw(base_url: str, env: dict[str, str], path: Path, pipelines_dir: Path) -> None:
    source = dd_source.datadog_source(
        base_url=base_url,
        api_key=env["SOURCES__DATADOG__API_KEY"],
        application_key=env["SOURCES__DATADOG__APPLICATION_KEY"],
        start_date=env["SOURCES__DATADOG__START_DATE"],
    )
    pipeline = dlt.pipeline(
        pipeline_name="staging_datadog_test",
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="raw_datadog",
        pipelines_dir=str(pipelines_dir),
    )
    pipeline.run(source, loader_file_format="parquet")


def build_staging(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        write_settings(con, settings_rows())
        for model in staging_models():
            build_model(con, model)


def early_as_of(world: World) -> datetime:
    """Halfway between the first incident's creation and its detection: one open, undetected incident."""
    first = min(world.incidents, key=lambda i: i.created_at)
    return first.created_at + (first.detected_at - first.created_at) / 2


@pytest.fixture(scope="module", params=["end", "early"])
def built(
    request: pytest.FixtureRequest, world: World, sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp(f"staging_datadog_{request.param}")
    path = folder / "warehouse.duckdb"
    as_of = sandbox.as_of if request.param == "end" else early_as_of(world)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSMAP_PSEUDONYM_SALT", SALT)
        mp.setattr(dd_source, "utc_now", lambda: as_of)  # SLO history up to the start of as-of's day
        if request.param == "end":
            env = sandbox.env()
            load_raw(env["SOURCES__DATADOG__BASE_URL"], env, path, folder / "dlt")
        else:
            with SandboxServer(world, as_of=as_of) as server:
                env = server.env()
                load_raw(env["SOURCES__DATADOG__BASE_URL"], env, path, folder / "dlt")
        build_staging(path)
    yield Built(path, world.visible(as_of), date.fromisoformat(env["SOURCES__DATADOG__START_DATE"]))


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def tag_value(tags: list[str], key: str) -> str | None:
    """The value of the first `key:value` tag (the sandbox's `env:` values are all production names)."""
    return next((t.split(":", 1)[1] for t in tags if t.startswith(f"{key}:")), None)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# keys and values against the world
# --------------------------------------------------------------------------------------------------


def test_incidents_equal_the_truth(built: Built) -> None:
    view = built.view
    truth = dict(truth_frames(view.world, built.as_of))["incidents"]
    expected = {
        (r["incident_id"], r["service"], r["created_at"], r["resolved_at"]) for r in truth.iter_rows(named=True)
    }
    with built.connect() as con:
        got = set(rows(con, "select incident_id, service, created_at, resolved_at from staging.stg_datadog__incidents"))
        details = {
            r[0]: r[1:]
            for r in rows(
                con,
                "select incident_id, public_id, title, severity, state, original_state, detected_at, modified_at, "
                "customer_impacted, commander_id from staging.stg_datadog__incidents",
            )
        }
    assert expected, "the build should see at least one incident"
    assert got == expected
    for inc in view.incidents():
        resolved = view.incident_resolved(inc)
        detected = inc.detected_at if inc.detected_at <= built.as_of else None
        state = "resolved" if resolved else "active"
        assert details[inc.incident_id] == (
            inc.public_id,
            inc.title,
            inc.severity,
            state,
            state,
            detected,
            incident_modified_at(inc, view),
            inc.customer_impacted,
            None,  # the list carries the commander's uuid only: no cross-tool person id to give
        ), inc.incident_id


def test_monitors_equal_the_world(built: Built) -> None:
    view = built.view
    people = view.world.people_by_id
    with built.connect() as con:
        got = {
            r[0]: r[1:]
            for r in rows(
                con,
                "select monitor_id, name, service, environment, monitor_type, overall_state, created_at, modified_at, "
                "creator_id from staging.stg_datadog__monitors",
            )
        }
    expected = {}
    for m in view.monitors():
        alert = any(i.service == m.service and incident_is_open(i, built.as_of) for i in view.world.incidents)
        creator = expected_person_id(people[m.creator_id].email)
        state = "alert" if alert else "ok"
        expected[m.monitor_id] = (
            m.name,
            m.service,
            "production",
            m.monitor_type,
            state,
            m.created_at,
            m.modified_at,
            creator,
        )
    assert got == expected


def test_slos_equal_the_world(built: Built) -> None:
    view = built.view
    people = view.world.people_by_id
    with built.connect() as con:
        got = {
            r[0]: r[1:]
            for r in rows(
                con, "select slo_id, name, service, target, created_at, creator_id from staging.stg_datadog__slos"
            )
        }
    expected = {
        s.slo_id: (s.name, s.service, s.target, s.created_at, expected_person_id(people[s.creator_id].email))
        for s in view.slos()
    }
    assert got == expected


def test_slo_history_has_one_row_per_complete_day_with_the_world_sli(built: Built) -> None:
    world_start = built.view.world.config.start_at.date()
    expected: dict[tuple[str, date], float] = {}
    for slo in built.view.slos():
        day = max(slo.created_at.date() + timedelta(days=1), built.start, world_start)
        while _midnight(day + timedelta(days=1)) <= built.as_of:
            expected[(slo.slo_id, day)] = slo.daily_sli[(day - world_start).days]
            day += timedelta(days=1)
    with built.connect() as con:
        got = {
            (r[0], r[1]): r[2] for r in rows(con, "select slo_id, day, sli_value from staging.stg_datadog__slo_history")
        }
    assert expected and got.keys() == expected.keys()
    worst = max(abs(got[k] - v) for k, v in expected.items())
    assert worst < 1e-9, worst  # percent, as the world states it


def test_events_equal_the_world(built: Built) -> None:
    since = _midnight(built.start)
    expected = {
        event_v2_id(e): (e.title, e.text, e.service, tag_value(e.tags, "env"), e.source, e.alert_type, e.at)
        for e in built.view.datadog_events()
        if e.at >= since
    }
    with built.connect() as con:
        got = {
            r[0]: r[1:]
            for r in rows(
                con,
                "select event_id, title, message, service, environment, source, alert_type, occurred_at "
                "from staging.stg_datadog__events",
            )
        }
    assert expected and got == expected


# --------------------------------------------------------------------------------------------------
# shape: keys, types, people, documentation
# --------------------------------------------------------------------------------------------------


def test_every_model_is_built_with_unique_non_null_keys(built: Built) -> None:
    with built.connect() as con:
        for model in staging_models():
            key = ", ".join(model.primary_key)
            total, distinct, null_keys = con.execute(
                f"select count(*), count(distinct ({key})), count(*) filter (where "
                + " or ".join(f"{k} is null" for k in model.primary_key)
                + f") from {model.table}"
            ).fetchone()
            assert total > 0, model.table
            assert (distinct, null_keys) == (total, 0), model.table


def test_times_are_utc_timestamptz_and_days_are_dates(built: Built) -> None:
    with built.connect() as con:
        columns = rows(
            con,
            "select table_name, column_name, data_type from duckdb_columns() "
            "where schema_name = 'staging' and table_name like 'stg_datadog__%'",
        )
    timed = [(t, c, kind) for t, c, kind in columns if c.endswith("_at")]
    assert timed and all(kind == "TIMESTAMP WITH TIME ZONE" for _, _, kind in timed), timed
    assert ("stg_datadog__slo_history", "day", "DATE") in columns


def test_people_appear_only_as_person_ids(built: Built) -> None:
    """Columns documented as a person_id hold `person:<16 hex>` (or null); no e-mail, login or name anywhere."""
    people = built.view.world.people
    raw_identities = {v.lower() for p in people for v in (p.email, p.login, p.name, p.jenkins_user)}
    with built.connect() as con:
        for model in staging_models():
            person_columns = [c for c, doc in model.columns.items() if doc.lower().startswith("person_id")]
            for column in person_columns:
                values = [r[0] for r in rows(con, f"select distinct {column} from {model.table}")]
                assert all(v is None or PERSON.match(v) for v in values), (model.table, column, values[:3])
            text_columns = [
                r[0]
                for r in rows(
                    con,
                    "select column_name from duckdb_columns() where schema_name = 'staging' "
                    f"and table_name = '{model.name}' and data_type = 'VARCHAR'",
                )
            ]
            for column in text_columns:
                for (value,) in rows(con, f"select distinct {column} from {model.table} where {column} is not null"):
                    assert not EMAIL.search(value), (model.table, column, value)
                    lowered = value.lower()
                    leaked = [x for x in raw_identities if x in lowered]
                    assert not leaked, (model.table, column, value, leaked)
        creators = {r[0] for r in rows(con, "select creator_id from staging.stg_datadog__monitors")}
    # an e-mail pseudonymises like the same engineer's GitHub login
    assert creators and creators <= {expected_person_id(p.login) for p in people}


def test_every_column_has_a_comment(built: Built) -> None:
    with built.connect() as con:
        columns = rows(
            con,
            "select table_name, column_name, comment from duckdb_columns() "
            "where schema_name = 'staging' and table_name like 'stg_datadog__%'",
        )
        tables = rows(
            con,
            "select table_name, comment from duckdb_tables() "
            "where schema_name = 'staging' and table_name like 'stg_datadog__%'",
        )
    assert {t for t, _ in tables} == {m.name for m in staging_models()}
    assert all(comment for _, comment in tables), tables
    missing = [(t, c) for t, c, comment in columns if not comment]
    assert not missing, missing


def test_a_stale_duplicate_from_an_older_load_is_dropped(built: Built, tmp_path: Path) -> None:
    """dlt's merge already de-duplicates; the models still keep only the newest load of a key."""
    copy = tmp_path / "copy.duckdb"
    shutil.copy(built.path, copy)
    stale = {
        "incidents": "'stale' as attributes__title",
        "monitors": "'stale' as name",
        "slos": "'stale' as name",
        "events": "'stale' as attributes__attributes__title",
        "slo_history": "-1.0 as sli_value",
    }

    def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
        return {m.table: rows(con, f"select * from {m.table} order by all") for m in staging_models()}

    with duckdb.connect(str(copy)) as con:
        before = snapshot(con)
        for table, change in stale.items():
            con.execute(
                f"insert into raw_datadog.{table} by name "
                f"select * replace ({change}, '0000000000.0' as _dlt_load_id) from raw_datadog.{table}"
            )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSMAP_PSEUDONYM_SALT", SALT)
        build_staging(copy)
    with duckdb.connect(str(copy)) as con:
        assert snapshot(con) == before
