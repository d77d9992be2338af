"""Crash safety: a run killed with SIGKILL publishes nothing half-built, leaves no process behind, and
the next run builds exactly the warehouse that one uninterrupted run builds.

Each scenario starts a real `opsmap run` in a child process, in a session of its own (its sandbox and
its extraction workers share its process group), and kills it at a phase it reports in its progress
lines: in the middle of the extraction (after the first system is loaded, the others still in their
workers) or of the model builds. The reference is the session's `built_warehouse`: the same world
(seed and scale), the same pseudonymisation salt and the same sandbox clock, built in one run.

"The same warehouse" means every table of every schema has the same columns, the same number of rows
and the same content, row for row (an order-independent hash of each row). What legitimately differs
between two complete runs is left out, each for the reason given where it is left out
(`DLT_ROW_IDS`, `VOLATILE_COLUMNS`, `_is_load_history`, `SANDBOX_ORIGIN`, `FLOAT_DIGITS`); what dlt
keeps about its loads is checked for what matters instead: the incremental cursors the next run
starts from, and that no row of a load that never finished survives. The killed runs' records in the
Dagster instance must end FAILURE, not STARTED forever (`pipelines/abandoned_runs.py`).

Killing the publication itself mid-copy is staged in a child that runs `publish` with a copy that
stops half-way, which no run's timing could hit reliably.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id
from dlt.pipeline.state_sync import decompress_state

from pipelines.abandoned_runs import HOST_TAG, PID_TAG, STARTED_TAG, fail_abandoned_runs, owner_tags, process_started
from pipelines.publish import publish
from pipelines.sandbox.world import World
from pipelines.settings import PROJECT_ROOT
from pipelines.sql import connect_published

SALT = "test-salt"
"""The pseudonymisation salt `built_warehouse` ran with (tests/conftest.py): pseudonyms depend on it."""

RUN_TIMEOUT_S = 900.0
"""Bounds every wait on a child run; generous, because the machine's two cores are shared."""

CHILDREN_GRACE_S = 5.0
"""How long the sandbox and the extraction workers may outlive a run killed alone. Their own work
lasts longer than this (the workers have every system queued, the sandbox would serve forever), so
only children that notice their parent's death pass."""

EXTRACTING = re.compile(r"\] extracting .* with \d+ worker processes")
FIRST_SYSTEM_LOADED = re.compile(r"\] \w+: extracted in .* loaded in ")
MODELS_UNDER_WAY = re.compile(r"\] built intermediate\.")
"""Staging is built, the links are being built: the middle of the model builds."""

DLT_ROW_IDS = frozenset({"_dlt_id", "_dlt_parent_id", "_dlt_root_id", "_dlt_load_id"})
"""dlt's row and load identifiers: `_dlt_load_id` names the load (a timestamp), root rows' `_dlt_id`
is random, and a nested row's ids derive from its root's. They are left out of each row, but a nested
row is hashed together with its parent row's hash (`_lineage_hashes`), so which row a nested row
belongs to is still compared."""

VOLATILE_COLUMNS: dict[str, frozenset[str]] = {
    # The wall-clock time the sources were asked for their totals: when the run happened, not data.
    "quality.source_reconciliation": frozenset({"measured_at"}),
}

SANDBOX_ORIGIN = r"127\.0\.0\.1:[0-9]+"
"""Every run's sandbox listens on a free port of its own, and the APIs' payloads carry their own URLs
(GitHub's `url`, Jira's `self`, Jenkins' `url`…): the port is replaced before hashing."""

FLOAT_DIGITS = 9
"""Floating-point columns are compared to this many decimals: a sum of doubles depends on the order
the rows are added in, which a table's physical row order (different after a merge) may change."""


# --------------------------------------------------------------------------------------------------
# What a warehouse holds
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableContent:
    rows: int
    columns: tuple[tuple[str, str], ...]  # (name, type), by name: dlt may add columns in another order
    content: int  # the sum of the rows' hashes: independent of row order, sensitive to duplicates

    def __str__(self) -> str:
        return f"{self.rows} rows, {len(self.columns)} columns, content {self.content:x}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_load_history(schema: str, table: str) -> bool:
    """dlt's record of its loads, which a crash and a rerun legitimately lengthen.

    `_dlt_loads` gains the rerun's loads, `_dlt_pipeline_state` a state per load that changed it,
    `_dlt_version` the schema versions the loads saw (Mixpanel's first run replaces, later runs merge,
    and the schema says so); `<dataset>_staging` holds the rows the latest merge staged, which after
    a rerun is that rerun's increment. The cursors the state holds and the loads' completeness are
    checked on their own (`_cursors`, `_rows_of_unfinished_loads`); columns and types through the
    tables themselves.
    """
    return table.startswith("_dlt_") or schema.endswith("_staging")


def _row_text(columns: list[tuple[str, str]], alias: str) -> str:
    """A SQL expression rendering a row as text, floats rounded and the sandbox's port masked."""
    fields = []
    for name, dtype in columns:
        value = f"{alias}.{_quote(name)}"
        if dtype in ("FLOAT", "DOUBLE", "REAL"):
            value = f"round({value}, {FLOAT_DIGITS})"
        fields.append(f"'{name.replace(chr(39), chr(39) * 2)}': {value}")
    row = "{" + ", ".join(fields) + "}" if fields else "''"
    return f"regexp_replace(CAST({row} AS VARCHAR), '{SANDBOX_ORIGIN}', 'sandbox', 'g')"


def _dlt_parents(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, str]:
    """Nested table → its parent table, from the newest dlt schema stored in the dataset."""
    row = con.execute(f"SELECT schema FROM {_quote(schema)}._dlt_version ORDER BY inserted_at DESC LIMIT 1").fetchone()
    tables = json.loads(row[0])["tables"] if row else {}
    return {name: spec["parent"] for name, spec in tables.items() if spec.get("parent")}


def warehouse_content(path: Path) -> dict[str, TableContent]:
    """Every table of every schema (but dlt's load history) of the warehouse file at `path`."""
    con = connect_published(path)
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        listed = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND NOT internal",
            [catalog],
        ).fetchall()
        types: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, dtype in con.execute(
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = ?",
            [catalog],
        ).fetchall():
            types.setdefault((schema, table), []).append((column, dtype))
        tables = sorted((s, t) for s, t in listed if not _is_load_history(s, t))
        parents = {s: _dlt_parents(con, s) for s in {s for s, t in listed if t == "_dlt_version"}}
        return _lineage_hashes(con, tables, types, parents)
    finally:
        con.close()


def _lineage_hashes(
    con: duckdb.DuckDBPyConnection,
    tables: list[tuple[str, str]],
    types: dict[tuple[str, str], list[tuple[str, str]]],
    parents: dict[str, dict[str, str]],
) -> dict[str, TableContent]:
    def depth(schema: str, table: str) -> int:
        parent = parents.get(schema, {}).get(table)
        return 0 if parent is None else 1 + depth(schema, parent)

    out: dict[str, TableContent] = {}
    hashed: dict[tuple[str, str], str] = {}  # dlt table → temp table of (_dlt_id, row hash)
    for number, (schema, table) in enumerate(sorted(tables, key=lambda st: (depth(*st), st))):
        key = f"{schema}.{table}"
        all_columns = sorted(types[(schema, table)])
        kept = [(c, t) for c, t in all_columns if c not in DLT_ROW_IDS and c not in VOLATILE_COLUMNS.get(key, ())]
        source = f"{_quote(schema)}.{_quote(table)}"
        text = _row_text(kept, "t")
        parent = parents.get(schema, {}).get(table)
        if parent is not None:
            # A nested row is the same row only under the same parent row.
            row_hash, join = (
                f"hash({text}, p.h)",
                f"LEFT JOIN {hashed[(schema, parent)]} AS p ON t._dlt_parent_id = p.id",
            )
        else:
            row_hash, join = f"hash({text})", ""
        if any(c == "_dlt_id" for c, _ in all_columns):
            temp = f"lineage_{number}"
            con.execute(
                f"CREATE TEMP TABLE {temp} AS SELECT t._dlt_id AS id, {row_hash} AS h FROM {source} AS t {join}"
            )
            hashed[(schema, table)] = temp
            rows, content = con.execute(f"SELECT count(*), coalesce(sum(h::HUGEINT), 0) FROM {temp}").fetchone()  # type: ignore[misc]
        else:
            rows, content = con.execute(
                f"SELECT count(*), coalesce(sum({row_hash}::HUGEINT), 0) FROM {source} AS t {join}"
            ).fetchone()  # type: ignore[misc]
        out[key] = TableContent(int(rows), tuple(all_columns), int(content))
    return out


def _raw_datasets(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT schema_name FROM duckdb_tables() WHERE table_name = '_dlt_pipeline_state' "
            "AND database_name = current_database() ORDER BY 1"
        ).fetchall()
    ]


def _cursors(path: Path) -> dict[str, Any]:
    """Each dataset's pipeline state as dlt restores it (newest state of a finished load), minus
    `start_value`: where the latest extraction started, which after a rerun is the killed run's end."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "start_value"}
        return value

    con = connect_published(path)
    try:
        out = {}
        for dataset in _raw_datasets(con):
            row = con.execute(
                f"SELECT s.state FROM {_quote(dataset)}._dlt_pipeline_state AS s "
                f"JOIN {_quote(dataset)}._dlt_loads AS l ON l.load_id = s._dlt_load_id "
                "WHERE l.status = 0 ORDER BY l.load_id DESC LIMIT 1"
            ).fetchone()
            out[dataset] = strip(decompress_state(row[0])["sources"]) if row else None
        return out
    finally:
        con.close()


def _rows_of_unfinished_loads(path: Path) -> dict[str, int]:
    """Raw tables holding rows whose load never finished (dlt records a load once all of it is in)."""
    con = connect_published(path)
    try:
        found = {}
        for dataset in _raw_datasets(con):
            for (table,) in con.execute(
                "SELECT table_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND column_name = '_dlt_load_id' AND NOT starts_with(table_name, '_dlt_')",
                [dataset],
            ).fetchall():
                (count,) = con.execute(
                    f"SELECT count(*) FROM {_quote(dataset)}.{_quote(table)} WHERE _dlt_load_id NOT IN "
                    f"(SELECT load_id FROM {_quote(dataset)}._dlt_loads WHERE status = 0)"
                ).fetchone()  # type: ignore[misc]
                if count:
                    found[f"{dataset}.{table}"] = int(count)
        return found
    finally:
        con.close()


def _differences(got: dict[str, TableContent], want: dict[str, TableContent]) -> list[str]:
    lines = []
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            lines.append(f"{key}: got {got.get(key) or 'no table'}; uninterrupted run: {want.get(key) or 'no table'}")
    return lines


@pytest.fixture(scope="module")
def reference(built_warehouse: dict) -> dict[str, Any]:
    """What one uninterrupted run publishes, for the comparisons."""
    assert built_warehouse["result"].success, "the session's uninterrupted run failed: nothing to compare with"
    published = built_warehouse["paths"].published
    content = warehouse_content(published)
    assert len(content) > 100, "the reference warehouse is missing most of its tables"
    assert _rows_of_unfinished_loads(published) == {}
    return {"path": published, "content": content, "cursors": _cursors(published)}


# --------------------------------------------------------------------------------------------------
# Runs in child processes
# --------------------------------------------------------------------------------------------------


def _process_group(pgid: int) -> dict[int, str]:
    """Live (not zombie) processes of a process group: pid → command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        state, _, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            found[int(entry)] = cmdline.strip()
    return found


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@dataclass
class Run:
    """`opsmap run` in a child process of its own session, watched while it runs.

    `seen` collects every process of its group (the run, its sandbox, its extraction workers,
    Dagster's log tailers) and `published_states` every state the published file was seen in.
    """

    folder: Path
    world: World
    name: str
    proc: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list)
    seen: dict[int, str] = field(default_factory=dict)
    published_states: set[tuple[int, int, int] | None] = field(default_factory=set)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _done: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def published(self) -> Path:
        return self.folder / "opsmap.duckdb"

    def start(self) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__") and k != "OPSMAP_AS_OF"}
        env.update(
            OPSMAP_WAREHOUSE=str(self.published),
            DAGSTER_HOME=str(self.folder / "dagster_home"),
            OPSMAP_PSEUDONYM_SALT=SALT,
            RUNTIME__DLTHUB_TELEMETRY="false",
            GX_ANALYTICS_ENABLED="false",
        )
        env.pop("DLT_DATA_DIR", None)  # beside the warehouse, where a user's run keeps it
        env["OPSMAP_EXTRACT_WORKERS"] = "2"  # worker processes whatever the machine's core count
        with (self.folder / f"{self.name}.out").open("w") as summary:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "run", *self._world_options()],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=summary,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group: its children can be found, and killed with it
            )
        self._threads = [threading.Thread(target=t, daemon=True) for t in (self._read, self._watch)]
        for thread in self._threads:
            thread.start()
        return self

    def _world_options(self) -> list[str]:
        return ["--sandbox-seed", str(self.world.config.seed), "--sandbox-scale", str(self.world.config.scale)]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with (self.folder / f"{self.name}.err").open("w") as copy:
            for line in self.proc.stderr:
                copy.write(line)
                copy.flush()
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._done.set()
            self._changed.notify_all()

    def _watch(self) -> None:
        while not self._done.is_set() or self.proc.poll() is None:
            self.seen.update(_process_group(self.proc.pid))
            self.published_states.add(_file_state(self.published))
            time.sleep(0.05)

    def wait_for(self, pattern: re.Pattern[str]) -> str:
        """The first progress line matching `pattern`; fails if the run ends or stalls first."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with self._changed:
            while True:
                match = next((line for line in self.lines if pattern.search(line)), None)
                if match is not None:
                    return match
                if self._done.is_set():
                    pytest.fail(f"{self.name} ended before {pattern.pattern!r}:\n" + "\n".join(self.lines[-30:]))
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.name} printed no {pattern.pattern!r} in {RUN_TIMEOUT_S:.0f} s")
                self._changed.wait(timeout=1.0)

    def wait_for_process(self, fragment: str, count: int = 1) -> None:
        """Until `count` processes whose command line contains `fragment` run in the group."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while sum(fragment in cmd for cmd in _process_group(self.proc.pid).values()) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{self.name}: never saw {count} `{fragment}` processes; saw {self.seen}")
            time.sleep(0.05)

    def kill(self, *, group: bool) -> None:
        """SIGKILL the run (and with `group`, everything in its process group) and reap it."""
        self.seen.update(_process_group(self.proc.pid))
        if group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self._join()

    def finish(self) -> int:
        code = self.proc.wait(timeout=RUN_TIMEOUT_S)
        self._join()
        return code

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=60)

    def survivors(self, grace_s: float) -> dict[int, str]:
        """Processes of the run's group still alive after `grace_s` seconds (none should be)."""
        deadline = time.monotonic() + grace_s
        while (alive := _process_group(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return alive

    def cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in _process_group(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=60)


@pytest.fixture()
def runs(world: World) -> Iterator[list[Run]]:
    """Starts runs; whatever they leave running is killed at teardown, whatever the test asserted."""
    started: list[Run] = []
    yield started
    for run in started:
        run.cleanup()


def _start(runs: list[Run], folder: Path, world: World) -> Run:
    run = Run(folder, world, f"run{len(runs) + 1}").start()
    runs.append(run)
    return run


def _copy_warehouse(built: dict, folder: Path) -> None:
    """The session's build and published files, as a previous nightly run left them."""
    paths = built["paths"]
    assert paths.published.name == "opsmap.duckdb"
    for source in (paths.build, paths.published):
        for path in (source, source.with_name(source.name + ".wal")):
            if path.exists():
                (folder / path.name).write_bytes(path.read_bytes())


def _assert_killed_cleanly(run: Run, before: tuple[str | None, set[tuple[int, int, int] | None]]) -> None:
    digest, states = before
    assert run.published_states == states, (
        f"{run.name}: the published file changed while the run was killed mid-way: {run.published_states} "
        f"(before: {states})"
    )
    assert _digest(run.published) == digest, f"{run.name}: the published file is not the previous publication"
    leftovers = run.survivors(CHILDREN_GRACE_S)
    assert leftovers == {}, f"{run.name}: processes left running after the kill: {leftovers}"
    if digest is not None:
        con = connect_published(run.published)  # the previous publication still opens read-only
        try:
            assert con.execute("SELECT count(*) FROM kpi.dora").fetchone()[0] > 0  # type: ignore[index]
        finally:
            con.close()


def _assert_rebuilt(run: Run, reference: dict[str, Any], killed: int) -> None:
    code = run.finish()
    assert code == 0, f"{run.name} failed (exit {code}):\n" + "\n".join(run.lines[-40:])
    assert run.survivors(CHILDREN_GRACE_S) == {}, f"{run.name} left processes running"
    differences = _differences(warehouse_content(run.published), reference["content"])
    assert differences == [], "the rerun's warehouse differs from an uninterrupted run's:\n" + "\n".join(differences)
    assert _cursors(run.published) == reference["cursors"], "the next run would start from other cursors"
    assert _rows_of_unfinished_loads(run.published) == {}, "rows of a load that never finished survived"
    assert list(run.folder.glob(".opsmap.publish-*")) == [], "a publication's temporary copy was left behind"
    pending = list((run.folder / "dlt" / "pipelines").glob("*/load/normalized/*"))
    assert pending == [], f"load packages left unloaded: {pending}"
    # A killed run left STARTED would look alive in the UI forever and hold the run queue
    # (`max_concurrent_runs: 1`): the rerun marks it failed before it starts.
    statuses = _run_statuses(run.folder)
    assert statuses == [DagsterRunStatus.FAILURE] * killed + [DagsterRunStatus.SUCCESS], statuses


def _run_statuses(folder: Path) -> list[DagsterRunStatus]:
    """The statuses of the runs in the folder's Dagster instance, oldest first."""
    with DagsterInstance.from_config(str(folder / "dagster_home")) as instance:
        return [run.status for run in reversed(instance.get_runs())]


# --------------------------------------------------------------------------------------------------
# The scenarios
# --------------------------------------------------------------------------------------------------


def test_a_run_killed_mid_extraction_keeps_the_publication_and_the_rerun_rebuilds_the_same_warehouse(
    built_warehouse: dict, world: World, reference: dict[str, Any], runs: list[Run], tmp_path: Path
) -> None:
    """A nightly run over a warehouse a previous run published dies half-way through its extraction.

    Only the run process is killed, as the OOM killer would: its sandbox and extraction workers must
    stop by themselves, before the rerun restores the pipelines' state in the folders they wrote to.
    """
    _copy_warehouse(built_warehouse, tmp_path)
    published = tmp_path / "opsmap.duckdb"
    before = (_digest(published), {_file_state(published)})

    run = _start(runs, tmp_path, world)
    run.wait_for(FIRST_SYSTEM_LOADED)  # one system's load is in; the others are in their workers
    run.kill(group=False)
    _assert_killed_cleanly(run, before)

    _assert_rebuilt(_start(runs, tmp_path, world), reference, killed=1)


def test_the_sandbox_and_the_extraction_workers_stop_when_the_run_is_killed_alone(
    world: World, runs: list[Run], tmp_path: Path
) -> None:
    """SIGKILL on the run process only (the OOM killer's way): its children must not live on.

    Orphaned workers would go on extracting every queued system into the pipelines' working
    folders, where the next run drops and restores state; an orphaned sandbox would serve forever.
    """
    run = _start(runs, tmp_path, world)
    run.wait_for(EXTRACTING)
    run.wait_for_process("multiprocessing.spawn", count=2)  # the extraction workers have started
    children = {pid: cmd for pid, cmd in _process_group(run.proc.pid).items() if pid != run.proc.pid}
    assert any("sandbox serve" in cmd for cmd in children.values()), f"no sandbox child: {children}"
    run.kill(group=False)
    survivors = run.survivors(CHILDREN_GRACE_S)
    assert survivors == {}, f"still running {CHILDREN_GRACE_S:.0f} s after the run was killed: {survivors}"
    assert not (tmp_path / "opsmap.duckdb").exists(), "a run killed in its extraction published something"


PUBLISH_THEN_HANG = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pipelines.publish as publish

    def half_a_copy(source, target):
        data = Path(source).read_bytes()
        Path(target).write_bytes(data[: len(data) // 2])
        print("half copied", flush=True)
        time.sleep(600)  # killed here, mid-copy

    publish.shutil.copyfile = half_a_copy
    publish.publish(Path(sys.argv[1]), Path(sys.argv[2]))
    """
)


def test_a_publication_killed_mid_copy_leaves_the_previous_one_and_the_next_clears_its_debris(
    tmp_path: Path,
) -> None:
    build, published = tmp_path / "opsmap.build.duckdb", tmp_path / "opsmap.duckdb"
    con = duckdb.connect(str(build))
    con.execute("CREATE SCHEMA kpi; CREATE TABLE kpi.dora AS SELECT 1 AS generation")
    con.close()
    publish(build, published)
    con = duckdb.connect(str(build))
    con.execute("CREATE OR REPLACE TABLE kpi.dora AS SELECT 2 AS generation FROM range(100000)")
    con.close()
    first = _digest(published)

    child = subprocess.Popen(
        [sys.executable, "-c", PUBLISH_THEN_HANG, str(build), str(published)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "half copied"
        debris = list(tmp_path.glob(".opsmap.publish-*.duckdb"))
        assert len(debris) == 1 and debris[0].stat().st_size > 0, "the publication was not caught mid-copy"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)

    assert _digest(published) == first, "a publication killed mid-copy changed the published file"
    con = connect_published(published)
    assert con.execute("SELECT DISTINCT generation FROM kpi.dora").fetchall() == [(1,)]
    con.close()

    publish(build, published)
    assert list(tmp_path.glob(".opsmap.publish-*")) == [], "the dead publication's partial copy is still there"
    con = connect_published(published)
    assert con.execute("SELECT DISTINCT generation FROM kpi.dora").fetchall() == [(2,)]
    con.close()


def test_only_runs_whose_process_has_ended_are_marked_failed() -> None:
    """`fail_abandoned_runs` fails the runs of dead processes, never a live run or another host's."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = {PID_TAG: str(child.pid), HOST_TAG: socket.gethostname(), STARTED_TAG: process_started(child.pid) or ""}
    child.kill()
    child.wait(timeout=60)
    tags = {
        "dead": dead,
        "alive": owner_tags(),
        "pid reused": {**owner_tags(), STARTED_TAG: "1"},  # this process's pid, another process's start
        "another host": {**dead, HOST_TAG: f"not-{socket.gethostname()}"},
        "not opsmap's": {},
    }
    with DagsterInstance.ephemeral() as instance:
        ids = {
            name: instance.add_run(
                DagsterRun(job_name="nightly", run_id=make_new_run_id(), status=DagsterRunStatus.STARTED, tags=t)
            ).run_id
            for name, t in tags.items()
        }
        failed = fail_abandoned_runs(instance)
        statuses = {name: instance.get_run_by_id(run_id).status for name, run_id in ids.items()}  # type: ignore[union-attr]
    assert sorted(name for name, run_id in ids.items() if run_id in failed) == ["dead", "pid reused"]
    assert statuses == {
        "dead": DagsterRunStatus.FAILURE,
        "alive": DagsterRunStatus.STARTED,
        "pid reused": DagsterRunStatus.FAILURE,
        "another host": DagsterRunStatus.STARTED,
        "not opsmap's": DagsterRunStatus.STARTED,
    }


# --------------------------------------------------------------------------------------------------
# Heavier variants: each phase, from scratch and over a previous publication
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase",
    [EXTRACTING, FIRST_SYSTEM_LOADED, MODELS_UNDER_WAY],
    ids=["extraction-starting", "extraction-half-loaded", "model-builds"],
)
def test_a_first_run_killed_publishes_nothing_and_the_rerun_builds_the_uninterrupted_warehouse(
    phase: re.Pattern[str], world: World, reference: dict[str, Any], runs: list[Run], tmp_path: Path
) -> None:
    run = _start(runs, tmp_path, world)
    run.wait_for(phase)
    run.kill(group=True)
    _assert_killed_cleanly(run, (None, {None}))
    assert (tmp_path / "opsmap.build.duckdb").exists(), "the killed run had not started building"

    _assert_rebuilt(_start(runs, tmp_path, world), reference, killed=1)


@pytest.mark.slow
def test_runs_killed_in_extraction_and_in_the_model_builds_keep_the_publication_and_a_rerun_rebuilds_it(
    built_warehouse: dict, world: World, reference: dict[str, Any], runs: list[Run], tmp_path: Path
) -> None:
    """Nightly runs over a warehouse a previous run published: two die (whole process groups), the
    third completes."""
    _copy_warehouse(built_warehouse, tmp_path)
    published = tmp_path / "opsmap.duckdb"
    before = (_digest(published), {_file_state(published)})

    run = _start(runs, tmp_path, world)
    run.wait_for(FIRST_SYSTEM_LOADED)
    run.kill(group=True)
    _assert_killed_cleanly(run, before)

    run = _start(runs, tmp_path, world)
    run.wait_for(MODELS_UNDER_WAY)
    run.kill(group=True)
    _assert_killed_cleanly(run, before)

    _assert_rebuilt(_start(runs, tmp_path, world), reference, killed=2)
