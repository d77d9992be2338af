"""The worker half of the parallel extraction: extract and normalise one system's dlt pipeline.

Extraction is Python-bound (request handling, dlt's row normaliser), so threads in one process
share one core through the GIL; worker *processes* use every core. A worker never opens the
warehouse: it extracts and normalises into the pipeline's working folder (`<dlt_dir>/pipelines`),
and the Dagster step, the warehouse's one writer, loads each system's package into DuckDB as its
worker finishes (see `pipelines.assets.extract`). That keeps DuckDB's single-writer rule while the
five systems' API traffic and normalisation run side by side.

This module imports no Dagster: a worker is a fresh interpreter (multiprocessing `spawn`, safe in
a process that runs threads), and only dlt and the one source module it runs are imported there.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.extract.source import DltSource

from pipelines.settings import SYSTEMS, Paths

SOURCE_FACTORIES: dict[str, str] = {system: f"pipelines.sources.{system}:{system}_source" for system in SYSTEMS}

LONGEST_FIRST: tuple[str, ...] = ("github", "mixpanel", "jenkins", "jira", "datadog")
"""Systems in the order workers take them: longest extraction first (measured alone at scale 1:
GitHub 18 s, Mixpanel 11 s, Jenkins 6 s, Jira 2 s, Datadog 1.4 s), so the longest one starts at
once and the short ones fill the other workers around it."""

WORKERS_ENV = "OPSMAP_EXTRACT_WORKERS"
"""Worker processes for extraction; 0 or 1 extracts the systems one after another in-process."""


def source_factory(system: str) -> Callable[..., DltSource]:
    """The `@dlt.source` function of a system (`pipelines.sources.<system>:<system>_source`)."""
    module_name, _, attr = SOURCE_FACTORIES[system].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def raw_pipeline(system: str, paths: Paths) -> dlt.Pipeline:
    """The dlt pipeline loading one system into `raw_<system>` of the build warehouse."""
    # Merge loads stage rows in `raw_<system>_staging`; emptied after each load, so the published
    # warehouse does not carry a second copy of every merged raw table.
    os.environ.setdefault("LOAD__TRUNCATE_STAGING_DATASET", "true")
    return dlt.pipeline(
        pipeline_name=f"opsmap_{system}",
        destination=dlt.destinations.duckdb(str(paths.build)),
        dataset_name=f"raw_{system}",
        pipelines_dir=str(paths.dlt_dir / "pipelines"),
    )


def default_workers(tasks: int) -> int:
    """`$OPSMAP_EXTRACT_WORKERS`, else one worker per core (at least two), never more than the tasks.

    Measured on two cores, all five systems at scale 1: one after another 38.4 s, two workers
    22.5–23.6 s, three 25.7–26.1 s. GitHub alone keeps one worker busy, the four other systems the
    second, and the sandbox and the DuckDB loads fill the gaps while workers wait on HTTP.
    """
    raw = os.environ.get(WORKERS_ENV, "").strip()
    wanted = int(raw) if raw else max(2, os.cpu_count() or 2)
    return max(0, min(wanted, tasks))


@dataclass(frozen=True)
class Task:
    """One system to extract: `resources` None means every selected resource of its source."""

    system: str
    resources: tuple[str, ...] | None
    paths: Paths


@dataclass
class Outcome:
    """What a worker reports for one task: row counts and timings, or the error (picklable)."""

    system: str
    row_counts: dict[str, int] = field(default_factory=dict)
    extract_s: float = 0.0
    normalize_s: float = 0.0
    cpu_s: float = 0.0
    pid: int = 0
    error: BaseException | None = None
    resource: str | None = None  # the dlt resource (pipe) that failed, when dlt says which
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _portable(exc: BaseException) -> BaseException:
    """The exception that explains `exc`, in a form that survives pickling to the parent process.

    dlt wraps a source's error two or three times (`PipelineStepFailed` ← `ResourceExtractionError`
    ← the source's `SourceHTTPError`); the innermost source error carries what to fix and pickles
    without its response (see `pipelines.sources.http`). Anything that does not pickle becomes a
    `RuntimeError` with the same text.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    from pipelines.sources.http import SourceHTTPError

    cause = next((e for e in chain if isinstance(e, SourceHTTPError)), chain[-1])
    try:
        pickle.loads(pickle.dumps(cause))
    except Exception:  # an exception type with required arguments, or an unpicklable attribute
        return RuntimeError(f"{type(cause).__name__}: {cause}")
    return cause


def extract_and_normalize(task: Task) -> Outcome:
    """Extract one system from its API and normalise it into a load package; never opens DuckDB.

    The pipeline's state must already be restored from the warehouse (the parent does it before
    handing out tasks), so the incremental cursors are current. Never raises: an error comes back
    in the outcome, with the dlt resource that failed.
    """
    started, cpu = time.perf_counter(), time.process_time()
    outcome = Outcome(task.system, pid=os.getpid())
    try:
        pipeline = raw_pipeline(task.system, task.paths)
        source = source_factory(task.system)()
        if task.resources is not None:
            source = source.with_resources(*task.resources)
        # Parquet loader files: DuckDB loads them ~75x faster than dlt's default insert_values.
        pipeline.extract(source, loader_file_format="parquet")
        outcome.extract_s = time.perf_counter() - started
        info = pipeline.normalize()
        outcome.row_counts = {str(k): int(v) for k, v in info.row_counts.items()}
        outcome.normalize_s = time.perf_counter() - started - outcome.extract_s
    except Exception as exc:
        outcome.error = _portable(exc)
        from pipelines.failures import exception_chain  # only on failure: it imports Dagster, workers need not

        chain_names = [getattr(e, "pipe_name", None) for e in exception_chain(exc)]
        outcome.resource = next((n for n in chain_names if n), None)
        outcome.traceback = traceback.format_exc()
    outcome.cpu_s = time.process_time() - cpu
    return outcome


# --------------------------------------------------------------------------------------------------
# The worker pool
# --------------------------------------------------------------------------------------------------


EXIT_WITH_PARENT_CODE = 70
"""A worker's exit code when it quits because the run process that started it is gone."""


def _exit_with_parent() -> None:
    """End this worker as soon as its parent (the run process) dies, however it dies.

    A run killed with SIGKILL (or by the OOM killer) cannot stop its workers, and the task queue
    already holds every system: an orphaned worker would go on extracting into the pipelines'
    working folders, which the next run drops and restores, racing it there. `multiprocessing`
    gives a spawned child a sentinel on a pipe only the parent holds open; it becomes readable
    when the parent exits, so waiting on it costs nothing and needs no polling.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch(sentinel: int) -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(EXIT_WITH_PARENT_CODE)  # no cleanup: the run that owned this work is gone

    threading.Thread(target=watch, args=(parent.sentinel,), name="opsmap-exit-with-parent", daemon=True).start()


def _worker_loop(tasks: Any, results: Any) -> None:
    """A worker process: take tasks until the `None` sentinel, report each outcome."""
    _exit_with_parent()
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(("started", task.system, os.getpid()))
        results.put(("done", extract_and_normalize(task), os.getpid()))


class WorkerPool:
    """`spawn`ed worker processes that extract systems in parallel; outcomes arrive as they finish.

    Workers start as soon as the pool is created, so their interpreter start-up and imports overlap
    with the parent restoring each pipeline's state; tasks are queued afterwards with `submit`.
    A worker that dies (killed, out of memory) fails its task instead of hanging the run.
    """

    POLL_S = 0.5

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._processes = [
            ctx.Process(target=_worker_loop, args=(self._tasks, self._results), name=f"opsmap-extract-{i}")
            for i in range(workers)
        ]
        for process in self._processes:
            process.start()
        self._pending: set[str] = set()
        self._running: dict[int, str] = {}  # pid → system

    def submit(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            self._pending.add(task.system)
            self._tasks.put(task)
        for _ in self._processes:
            self._tasks.put(None)

    def outcomes(self) -> Iterator[Outcome]:
        """Each task's outcome in completion order."""
        while self._pending:
            try:
                kind, payload, pid = self._results.get(timeout=self.POLL_S)
            except queue.Empty:
                yield from self._reap_dead()
                continue
            if kind == "started":
                self._running[pid] = payload
                continue
            self._running.pop(pid, None)
            self._pending.discard(payload.system)
            yield payload

    def _reap_dead(self) -> Iterator[Outcome]:
        for process in self._processes:
            if process.exitcode is None or process.pid not in self._running:
                continue
            system = self._running.pop(process.pid)
            self._pending.discard(system)
            yield Outcome(system, error=RuntimeError(f"the extraction worker died (exit code {process.exitcode})"))
        if not any(p.is_alive() for p in self._processes) and self._pending:
            lost = sorted(self._pending)
            self._pending.clear()
            for system in lost:
                yield Outcome(system, error=RuntimeError("no extraction worker is left to run it"))

    def close(self, *, force: bool = False) -> None:
        """Wait for the workers to exit (they do once the queue is drained); `force` terminates them."""
        for process in self._processes:
            if force:
                process.terminate()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for q in (self._tasks, self._results):
            q.close()
            q.join_thread()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(force=exc_type is not None)


def run_tasks(prepare: Callable[[], Sequence[Task]], planned: int, workers: int) -> Iterator[Outcome]:
    """Outcomes of the tasks `prepare()` returns, in completion order.

    With `workers` ≥ 2 and more than one planned task, `min(workers, planned)` worker processes are
    started first and `prepare` runs while they start up (the parent restores each pipeline's state
    from the warehouse there); otherwise the tasks run one after another in this process, where a
    worker's start-up would only add time.
    """
    if workers <= 1 or planned <= 1:
        for task in prepare():
            yield extract_and_normalize(task)
        return
    with WorkerPool(min(workers, planned)) as pool:
        pool.submit(prepare())
        yield from pool.outcomes()
