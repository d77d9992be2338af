"""Dagster resources: the warehouse connection and the source configuration (or the sandbox)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from pipelines.settings import SYSTEMS, Paths

log = logging.getLogger("opsmap")

DEFAULT_MEMORY_LIMIT = "50%"
T = TypeVar("T")


class Warehouse(ConfigurableResource):
    """The DuckDB file the pipeline builds (`<OPSMAP_WAREHOUSE stem>.build.duckdb`).

    During a run the resource holds the database open and every `connect()` is a cheap cursor on
    it: opening and closing the file for each step cost ≈ 45 ms (≈ 70 ms after a write) a step.
    Outside a run each `connect()` opens and closes the file. `release()` closes it for the steps
    that need the file to themselves: dlt's loads (it connects with a configuration of its own,
    which DuckDB refuses beside an open instance) and publication (which copies the file).

    Every opened database gets a memory limit (`OPSMAP_DUCKDB_MEMORY_LIMIT`, default 50% of RAM;
    beyond it DuckDB spills to `<build>.tmp`) and does not keep insertion order, which large
    aggregations and joins would otherwise have to buffer; models that need an order say ORDER BY.
    """

    path: str | None = Field(
        default=None,
        description="Published warehouse file; defaults to $OPSMAP_WAREHOUSE or warehouse/data/opsmap.duckdb.",
    )

    _in_run: bool = PrivateAttr(default=False)
    _held: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    _held_path: str | None = PrivateAttr(default=None)

    @property
    def paths(self) -> Paths:
        if self.path:
            previous = os.environ.get("OPSMAP_WAREHOUSE")
            os.environ["OPSMAP_WAREHOUSE"] = self.path
            try:
                return Paths.from_env().ensure()
            finally:
                if previous is None:
                    os.environ.pop("OPSMAP_WAREHOUSE", None)
                else:
                    os.environ["OPSMAP_WAREHOUSE"] = previous
        return Paths.from_env().ensure()

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._in_run = True

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.release()
        self._in_run = False

    def release(self) -> None:
        """Close the database held for the run (the next `connect()` opens it again)."""
        held, self._held, self._held_path = self._held, None, None
        if held is not None:
            held.close()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        build = str(self.paths.build)
        if not self._in_run:
            con = duckdb.connect(build)
            _tune(con)
        else:
            if self._held_path != build:  # the warehouse was pointed elsewhere mid-run (tests do)
                self.release()
                self._held, self._held_path = duckdb.connect(build), build
                _tune(self._held)  # the settings are the database's: its cursors share them
            con = self._held.cursor()  # type: ignore[union-attr]
        con.execute("SET TimeZone = 'UTC'")  # every `_at` column reads back as UTC, whatever the machine's zone
        try:
            yield con
        finally:
            con.close()


def memory_limit() -> str:
    """DuckDB's memory limit for the warehouse: `OPSMAP_DUCKDB_MEMORY_LIMIT` (e.g. `8GB`, `50%`)."""
    return os.environ.get("OPSMAP_DUCKDB_MEMORY_LIMIT", "").strip() or DEFAULT_MEMORY_LIMIT


def _tune(con: duckdb.DuckDBPyConnection) -> None:
    # SET, not `connect(config=…)`: settings given at connect time make every later `connect` of the
    # same file in this process (dlt's, a test's) fail unless it passes the very same configuration.
    limit = memory_limit()
    try:
        con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
    except duckdb.Error as exc:
        raise ValueError(
            f"OPSMAP_DUCKDB_MEMORY_LIMIT={limit!r} is not a DuckDB memory size (use e.g. 8GB or 50%): {exc}"
        ) from None
    con.execute("SET preserve_insertion_order = false")


def configured_systems() -> list[str]:
    """Systems whose base URL is configured (env var or .dlt/config.toml), in pipeline order."""
    import dlt

    found = []
    for system in SYSTEMS:
        if os.environ.get(f"SOURCES__{system.upper()}__BASE_URL"):
            found.append(system)
            continue
        try:
            if dlt.config.get(f"sources.{system}.base_url"):
                found.append(system)
        except Exception:  # dlt raises when the key is absent from every provider
            continue
    return found


class SourcesResource(ConfigurableResource):
    """Makes sure every source has somewhere to extract from.

    With no source configured, it starts the built-in sandbox in a child process for the run and
    points all five sources at it through `SOURCES__<SYSTEM>__…` variables; the run's log says so.

    Once extraction has loaded everything, `extraction_finished` takes the reconciliation probe's
    totals and stops the sandbox: its world (gigabytes at scale 10) would otherwise sit in memory
    beside the model builds for the rest of the run. `source_totals` hands those totals over.
    """

    sandbox_seed: int = Field(default=42, description="Seed of the sandbox world when no source is configured.")
    sandbox_scale: float = Field(default=1.0, description="Scale of the sandbox world.")
    sandbox_as_of: str | None = Field(default=None, description="Serve the sandbox world as of this ISO time.")

    _sandbox: object | None = PrivateAttr(default=None)
    _saved_env: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _totals: object | None = PrivateAttr(default=None)

    @property
    def sandbox_running(self) -> bool:
        return self._sandbox is not None

    def extraction_finished(self, probe: Callable[[], T], log: logging.Logger | None = None) -> None:
        """With the sandbox: keep `probe()`'s answer for `source_totals`, then stop the sandbox."""
        if self._sandbox is None:
            return
        self._totals = probe()
        self._stop_sandbox()
        if log:
            log.info("extraction finished: the sandbox is stopped (its totals for reconciliation were taken first)")

    def source_totals(self, probe: Callable[[], T]) -> tuple[T, bool]:
        """(the totals `extraction_finished` kept this run, True), else (`probe()` asked now, False)."""
        kept, self._totals = self._totals, None
        return (kept, True) if kept is not None else (probe(), False)  # type: ignore[return-value]

    def _stop_sandbox(self) -> None:
        proc, self._sandbox = self._sandbox, None
        if proc is not None:
            proc.stop()  # type: ignore[attr-defined]
            Path(proc.env_file).unlink(missing_ok=True)  # type: ignore[attr-defined]

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if configured_systems():
            return
        from pipelines.sandbox.server import SandboxProcess, start_timeout

        workdir = Paths.from_env().ensure().dlt_dir / "sandbox"
        workdir.mkdir(parents=True, exist_ok=True)
        _remove_dead_runs_env_files(workdir)
        env_file = workdir / f"sandbox-{os.getpid()}.env"
        env_file.unlink(missing_ok=True)
        args = ["--seed", str(self.sandbox_seed), "--scale", str(self.sandbox_scale)]
        if self.sandbox_as_of:
            args += ["--as-of", self.sandbox_as_of]
        proc = SandboxProcess(args, env_file, timeout=start_timeout(self.sandbox_scale))
        self._sandbox = proc
        # The KPIs' "last complete day" follows the sandbox world's clock, not today's date.
        env = {**proc.env, "OPSMAP_AS_OF": proc.as_of()}
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        if context.log:
            context.log.info(
                f"No source configured: extracting from the built-in sandbox at {proc.url} "
                f"(seed {self.sandbox_seed}, scale {self.sandbox_scale})."
            )

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self._stop_sandbox()
        self._totals = None
        # The sandbox's variables stay set after it stops (the KPIs read OPSMAP_AS_OF); restored here.
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()


def _remove_dead_runs_env_files(workdir: Path) -> None:
    """A killed run cannot remove its `sandbox-<pid>.env`: drop those whose process is gone."""
    for stale in workdir.glob("sandbox-*.env"):
        pid = stale.stem.removeprefix("sandbox-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.unlink(missing_ok=True)
