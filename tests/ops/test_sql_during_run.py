"""SQL users are never blocked by a running materialisation and never see a half-built warehouse.

A run writes `<name>.build.duckdb` and, at its end, atomically replaces the published file with a
copy (pipelines/publish.py). These tests start a real `opsmap run` in a child process and query the
published warehouse from other processes while it runs: every query must succeed, and readers must
see the old publication until the run publishes, then the new one, never anything in between.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.request import urlopen

import duckdb
import pytest

from pipelines.publish import publish
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World
from pipelines.sql import connect_published, run_query

MARKER = "stale_marker"
"""A table added to the published copy before the run: present in the old publication only."""

READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pipelines.sql import run_query

    warehouse, stop, marker = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    query = (
        f"SELECT (SELECT count(*) FROM duckdb_tables() WHERE table_name = '{marker}') AS marker, "
        "(SELECT count(*) FROM deployment.deployments) AS deployments"
    )
    deadline = time.monotonic() + 900  # bounded, whatever happens to the test
    while not stop.exists() and time.monotonic() < deadline:
        started = time.time()
        try:
            row = json.loads(run_query(warehouse, query, "json"))[0]
            print(json.dumps({"t": started, "ok": True, **row}), flush=True)
        except Exception as exc:  # a lock error or a half-written file would land here
            print(json.dumps({"t": started, "ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        time.sleep(0.2)
    """
)


def _child_env(folder: Path, as_of: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(
        OPSMAP_WAREHOUSE=str(folder / "opsmap.duckdb"),
        DAGSTER_HOME=str(folder / "dagster_home"),
        DLT_DATA_DIR=str(folder / "dlt"),
        OPSMAP_PSEUDONYM_SALT="test-salt",  # the salt the built warehouse was pseudonymised with
        RUNTIME__DLTHUB_TELEMETRY="false",
        GX_ANALYTICS_ENABLED="false",
    )
    env.pop("OPSMAP_AS_OF", None)
    if as_of:  # the KPIs' clock: the sandbox world's present, as in the session's run
        env["OPSMAP_AS_OF"] = as_of
    return env


def _copy_built_warehouse(built: dict, folder: Path) -> Path:
    """A private copy of the session's warehouse (build + published), the published one marked as old."""
    paths = built["paths"]
    assert built["result"].success, "the session's nightly run failed; nothing to read"
    for source, name in ((paths.build, "opsmap.build.duckdb"), (paths.published, "opsmap.duckdb")):
        shutil.copyfile(source, folder / name)
        wal = source.with_name(source.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, folder / (name + ".wal"))
    published = folder / "opsmap.duckdb"
    con = duckdb.connect(str(published))
    try:
        con.execute(f"CREATE TABLE main.{MARKER} AS SELECT 1 AS old")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return published


def _world_as_of(sandbox: SandboxServer) -> str:
    with urlopen(f"{sandbox.url}/_sandbox/as-of", timeout=10) as response:
        return str(json.loads(response.read())["as_of"])


class _Lines(threading.Thread):
    """Reads a child's stream line by line, stamping each line with the time it arrived."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[tuple[float, str]] = []

    def run(self) -> None:
        for line in iter(self.stream.readline, ""):
            self.lines.append((time.time(), line.rstrip("\n")))


def _read_during_run(folder: Path, published: Path, run_args: list[str], as_of: str | None) -> dict:
    """Start `opsmap run …` and a reader process; query with `opsmap sql` too; return what happened."""
    env = _child_env(folder, as_of)
    stop = folder / "stop-reader"
    inode_before = published.stat().st_ino
    run = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", *run_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its sandbox and extraction workers go with it if it must be killed
    )
    progress, summary = _Lines(run.stderr), _Lines(run.stdout)
    progress.start()
    summary.start()
    reader_log = folder / "reader.err"
    with reader_log.open("w") as err:  # a file, not a pipe nobody drains while the run goes
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(published), str(stop), MARKER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    reads = _Lines(reader.stdout)
    reads.start()
    cli_queries = []
    try:
        deadline = time.monotonic() + 900
        while run.poll() is None and time.monotonic() < deadline:
            # `opsmap sql` itself, as a person would type it, from yet another process.
            started = time.time()
            cli = subprocess.run(
                [sys.executable, "-m", "pipelines.cli", "sql", "SELECT count(*) AS n FROM kpi.dora", "--format=json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            cli_queries.append({"t": started, "rc": cli.returncode, "out": cli.stdout, "err": cli.stderr})
            time.sleep(0.5)
        run.wait(timeout=max(1.0, deadline - time.monotonic()))
        # Let the reader query the new publication at least once before stopping it.
        finished = time.time()
        settle = time.monotonic() + 60
        while time.monotonic() < settle and reader.poll() is None:
            if any(json.loads(line)["t"] > finished for _, line in list(reads.lines)):
                break
            time.sleep(0.2)
    finally:
        stop.touch()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        try:
            reader.wait(timeout=60)
        except subprocess.TimeoutExpired:
            reader.kill()
    progress.join(timeout=10)
    summary.join(timeout=10)
    reads.join(timeout=10)
    return {
        "rc": run.returncode,
        "progress": progress.lines,
        "summary": "\n".join(line for _, line in summary.lines),
        "reads": [json.loads(line) for _, line in reads.lines],
        "reader_stderr": reader_log.read_text(),
        "cli": cli_queries,
        "replaced": published.stat().st_ino != inode_before,
    }


def _assert_readers_were_never_blocked(outcome: dict) -> None:
    reads = outcome["reads"]
    failures = [r for r in reads if not r["ok"]]
    assert failures == [], f"reads failed while the run wrote: {failures[:3]}\n{outcome['reader_stderr'][-2000:]}"
    cli = outcome["cli"]
    assert cli, "no `opsmap sql` query ran while the run was going"
    for query in cli:
        assert query["rc"] == 0, query["err"]
        assert "lock" not in query["err"].lower()
        assert json.loads(query["out"])[0]["n"] > 0

    progress_text = "\n".join(line for _, line in outcome["progress"])
    assert outcome["rc"] == 0, f"the run failed:\n{outcome['summary']}\n{progress_text[-3000:]}"
    # The materialisation window: from the first asset the run reports to the publication.
    stamps = [t for t, line in outcome["progress"] if line.split("] ", 1)[-1].startswith("  ")]
    published_at = [t for t, line in outcome["progress"] if "published_warehouse" in line]
    assert stamps and published_at, f"no progress seen from the run:\n{progress_text[-3000:]}"
    window = (min(stamps), max(published_at))
    during = [r for r in reads if window[0] <= r["t"] <= window[1]]
    assert len(during) >= 3, f"only {len(during)} reads overlapped the run's writes {window}; reads: {len(reads)}"
    # Old publication (with the marker) until the swap, then the new one, never back and never empty.
    markers = [r["marker"] for r in reads]
    assert markers[0] == 1 and markers[-1] == 0, markers
    assert markers == sorted(markers, reverse=True), f"a reader went back to the old snapshot: {markers}"
    assert all(r["deployments"] > 0 for r in reads)
    assert outcome["replaced"], "the run did not replace the published file"


def test_sql_keeps_working_while_a_run_rebuilds_and_publishes(
    built_warehouse: dict, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A real `opsmap run` of the deployment mart and everything downstream (KPIs, report, checks, publication)."""
    published = _copy_built_warehouse(built_warehouse, tmp_path)
    outcome = _read_during_run(tmp_path, published, ["--select", "group:mart_deployment+"], _world_as_of(sandbox))
    _assert_readers_were_never_blocked(outcome)
    assert "opsmap run succeeded" in outcome["summary"]


@pytest.mark.slow
def test_sql_keeps_working_through_a_whole_nightly_run(built_warehouse: dict, world: World, tmp_path: Path) -> None:
    """The whole job (extraction from a fresh sandbox included) while readers query the old publication."""
    published = _copy_built_warehouse(built_warehouse, tmp_path)
    args = ["--sandbox-seed", str(world.config.seed), "--sandbox-scale", str(world.config.scale)]
    # The child starts its own sandbox of the session's world, which sets the KPIs' clock itself.
    outcome = _read_during_run(tmp_path, published, args, as_of=None)
    _assert_readers_were_never_blocked(outcome)
    assert any("raw_github/pull_requests" in line for _, line in outcome["progress"])


# --- snapshots across a publish -------------------------------------------------------------------


def _write_build(build: Path, value: int, rows: int) -> None:
    con = duckdb.connect(str(build))
    try:
        con.execute("CREATE OR REPLACE TABLE t AS SELECT ? AS v FROM range(?)", [value, rows])
    finally:
        con.close()


SNAPSHOT_READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipelines.sql import connect_published

    con = connect_published(Path(sys.argv[1]))
    read = lambda: con.execute("SELECT min(v), max(v), count(*) FROM t").fetchone()
    print(*read(), flush=True)
    sys.stdin.readline()  # the test publishes a new warehouse meanwhile
    print(*read(), flush=True)
    """
)


def test_a_reader_keeps_its_snapshot_across_a_publish_and_new_readers_see_the_new_one(tmp_path: Path) -> None:
    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    _write_build(build, value=1, rows=10)
    publish(build, published)

    reader = subprocess.Popen(
        [sys.executable, "-c", SNAPSHOT_READER, str(published)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().split() == ["1", "1", "10"]
        # In this process too: a connection opened before the publish.
        old_here = connect_published(published)

        _write_build(build, value=2, rows=100_000)
        publish(build, published)  # while two readers hold the old file open

        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["1", "1", "10"], reader.stderr.read() if reader.stderr else ""
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()

    try:
        assert old_here.execute("SELECT max(v), count(*) FROM t").fetchone() == (1, 10)
        # A new reader, even in a process that still holds the old snapshot, sees the new warehouse
        # (a plain duckdb.connect would hand back the cached old database instance here).
        fresh = connect_published(published)
        assert fresh.execute("SELECT min(v), max(v), count(*) FROM t").fetchone() == (2, 2, 100_000)
        fresh.close()
        assert json.loads(run_query(published, "SELECT count(*) AS n FROM t", "json")) == [{"n": 100_000}]
    finally:
        old_here.close()
    # Nothing but the published file (and its build) is left behind: no temporary copies.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.build.duckdb", "w.duckdb"]


def test_the_published_warehouse_is_read_only_to_readers(tmp_path: Path) -> None:
    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    _write_build(build, value=1, rows=3)
    publish(build, published)
    con = connect_published(published)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DROP TABLE t")
    finally:
        con.close()
    assert run_query(published, "SELECT count(*) AS n FROM t", "csv") == "n\n3\n"
