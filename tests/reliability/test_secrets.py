"""Credentials never leave dlt's configuration: not into a log line, the Dagster event log, the
warehouse or any file a run writes.

The whole `nightly` job runs in-process against a sandbox, configured like a real deployment (every
`SOURCES__<SYSTEM>__…` set, the pipeline starts no sandbox of its own) with recognisable fake
credentials that occur nowhere else: unique per test session, so a hit can only be a leak. The sandbox
records the credentials each request presented, which proves they were used. Then everything the run
produced is searched for each secret and for the encoded forms it travels in (Basic headers):

- every line written to stdout/stderr, by this process and by the extraction workers (file
  descriptors captured), and every Python log record, with logging at DEBUG (dlt's too);
- every Dagster event-log entry of the run, serialised whole (messages, materialisation and check
  metadata, step errors) and the run's record (config, tags);
- every value of every column of every table, cast to text, of the build and published warehouses,
  dlt's compressed pipeline states decoded, and the catalog's names and comments;
- every other file under the warehouse's folder (dlt's working folders and traces, reports, Data Docs).
"""

from __future__ import annotations

import base64
import gzip
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import DagsterInstance
from dagster._serdes import serialize_value
from dlt.pipeline.state_sync import decompress_state

from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.http import Request
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World, WorldConfig

WORLD = WorldConfig(seed=42, scale=0.05)
"""A small world: the claim is about where values travel, not about volume."""

TAG = secrets.token_hex(6)

SECRETS: dict[str, str] = {
    "SOURCES__GITHUB__ACCESS_TOKEN": f"ghp_FAKE_SECRET_github_{TAG}",
    "SOURCES__JIRA__API_TOKEN": f"FAKE_SECRET_jira_{TAG}",
    "SOURCES__JENKINS__API_TOKEN": f"FAKE_SECRET_jenkins_{TAG}",
    "SOURCES__DATADOG__API_KEY": f"FAKE_SECRET_dd_api_{TAG}",
    "SOURCES__DATADOG__APPLICATION_KEY": f"FAKE_SECRET_dd_app_{TAG}",
    "SOURCES__MIXPANEL__API_SECRET": f"FAKE_SECRET_mixpanel_{TAG}",
    # Not a source credential, but documented as a secret that is never stored (README).
    "OPSMAP_PSEUDONYM_SALT": f"FAKE_SECRET_salt_{TAG}",
}

AUTH_HEADERS = ("Authorization", "DD-API-KEY", "DD-APPLICATION-KEY")

BINARY_FILES = (".duckdb", ".wal", ".parquet")
"""Searched through SQL (DuckDB compresses strings) or holding only rows the warehouse holds."""


def _basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def _needles(env: dict[str, str]) -> dict[str, str]:
    """Each secret and each encoded form it is sent in, by a name for the report."""
    needles = {key: value for key, value in SECRETS.items()}
    needles["jira Basic header"] = _basic(env["SOURCES__JIRA__EMAIL"], SECRETS["SOURCES__JIRA__API_TOKEN"])
    needles["jenkins Basic header"] = _basic(env["SOURCES__JENKINS__USERNAME"], SECRETS["SOURCES__JENKINS__API_TOKEN"])
    needles["mixpanel Basic header"] = _basic(
        env["SOURCES__MIXPANEL__USERNAME"], SECRETS["SOURCES__MIXPANEL__API_SECRET"]
    )
    return needles


def _presented(headers: set[str]) -> set[str]:
    """Header values the sandbox received, with Basic credentials decoded."""
    out = set(headers)
    for value in headers:
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "basic":
            out.add(base64.b64decode(credential).decode(errors="replace"))
    return out


def _record_credentials(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    seen: set[str] = set()
    for emulator in sandbox.emulators.values():

        def recording(request: Request, original: Callable[[Request], bool] = emulator.authorized) -> bool:
            seen.update(v for h in AUTH_HEADERS if (v := request.headers.get(h)))
            return original(request)

        monkeypatch.setattr(emulator, "authorized", recording)
    return seen


class _Records(logging.Handler):
    """Every record reaching the root logger, at every level, formatted with its arguments and traceback.

    Loggers that do not propagate (the run's progress logger) write to stderr, which is captured."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # the message with its arguments, traceback and stack


def _hits(text: str, needles: dict[str, str], where: str) -> list[str]:
    found = []
    for name, needle in needles.items():
        at = text.find(needle)
        if at >= 0:
            found.append(f"{where}: {name} in …{text[max(0, at - 80) : at + len(needle) + 40]!r}…")
    return found


def _warehouse_hits(path: Path, needles: dict[str, str]) -> list[str]:
    """Hits in every value (as text) of every table, in decoded dlt states, and in the catalog."""
    con = duckdb.connect(":memory:")
    con.execute("ATTACH ? AS w (READ_ONLY)", [str(path)])
    try:
        found: list[str] = []
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'w' ORDER BY 1, 2"
        ).fetchall()
        assert len(tables) > 100, f"{path.name}: only {len(tables)} tables; the run built little"
        condition = " OR ".join(f"contains(CAST(t AS VARCHAR), ${i + 1})" for i in range(len(needles)))
        for schema, table in tables:
            name = f'w."{schema}"."{table}"'
            for (row,) in con.execute(
                f"SELECT CAST(t AS VARCHAR) FROM {name} AS t WHERE {condition} LIMIT 3", list(needles.values())
            ).fetchall():
                found += _hits(row, needles, f"{path.name} {schema}.{table}")
            if table == "_dlt_pipeline_state":
                for (state,) in con.execute(f"SELECT state FROM {name}").fetchall():
                    found += _hits(str(decompress_state(state)), needles, f"{path.name} {schema}.{table} (decoded)")
        catalog = con.execute(
            "SELECT string_agg(concat_ws(' ', schema_name, table_name, column_name, comment), '\n') "
            "FROM duckdb_columns() WHERE database_name = 'w'"
        ).fetchone()[0]  # type: ignore[index]
        comments = con.execute(
            "SELECT string_agg(coalesce(comment, ''), '\n') FROM duckdb_tables() WHERE database_name = 'w'"
        ).fetchone()[0]  # type: ignore[index]
        return found + _hits(f"{catalog}\n{comments}", needles, f"{path.name} catalog")
    finally:
        con.close()


def _file_hits(folder: Path, needles: dict[str, str]) -> tuple[list[str], int]:
    found, searched = [], 0
    encoded = {name: needle.encode() for name, needle in needles.items()}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.endswith(BINARY_FILES):
            continue
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":  # dlt gzips its job files
            data = gzip.decompress(data)
        searched += 1
        found += [f"file {path.relative_to(folder)}: {name}" for name, needle in encoded.items() if needle in data]
    return found, searched


@pytest.fixture()
def configured_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    world: World = generate_world(WORLD)
    with SandboxServer(world) as sandbox:
        seen = _record_credentials(sandbox, monkeypatch)
        env = {**sandbox.env(), **SECRETS}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("OPSMAP_AS_OF", sandbox.as_of.isoformat())  # the KPIs' clock: the world's present
        monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
        monkeypatch.delenv("DLT_DATA_DIR", raising=False)  # beside the warehouse, so its files are searched
        monkeypatch.setenv("RUNTIME__LOG_LEVEL", "DEBUG")  # dlt's own logging, at its most talkative
        yield {"env": env, "seen": seen, "folder": tmp_path}


def test_no_secret_reaches_a_log_the_event_log_the_warehouse_or_a_file(
    configured_sandbox: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    from pipelines.runner import run_nightly
    from pipelines.settings import Paths

    env, folder = configured_sandbox["env"], configured_sandbox["folder"]
    needles = _needles(env)
    records = _Records()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        instance = DagsterInstance.ephemeral()
        result = run_nightly(instance=instance)
    finally:
        root.removeHandler(records)
        root.setLevel(previous_level)
    captured = capfd.readouterr()

    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, f"the run failed ({failed}): the search would cover a partial run"
    presented = _presented(configured_sandbox["seen"])
    unused = [
        key for key, value in SECRETS.items() if key.startswith("SOURCES__") and not any(value in p for p in presented)
    ]
    assert unused == [], f"credentials the sandbox never received (the test would prove nothing): {unused}"
    assert captured.err.strip() and records.lines, "nothing was logged: the log search would be vacuous"

    leaks = _hits(captured.out, needles, "stdout") + _hits(captured.err, needles, "stderr")
    leaks += [hit for line in records.lines for hit in _hits(line, needles, "python log")]
    entries = instance.all_logs(result.run_id)
    assert len(entries) > 100
    for entry in entries:
        leaks += _hits(serialize_value(entry), needles, f"event log ({entry.dagster_event_type or 'message'})")
    run = instance.get_run_by_id(result.run_id)
    leaks += _hits(serialize_value(run), needles, "run record")
    paths = Paths.from_env()
    for path in (paths.build, paths.published):
        leaks += _warehouse_hits(path, needles)
    file_leaks, searched = _file_hits(folder, needles)
    assert searched > 10, "the run wrote almost no files: the file search would be vacuous"
    leaks += file_leaks

    assert leaks == [], "secrets leaked:\n" + "\n".join(leaks)
