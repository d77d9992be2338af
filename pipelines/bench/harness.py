"""What every benchmark section shares: figures (median, min–max, ratio to a reference), peak memory
of a process tree, child processes with a clean environment, and the summary file.

A figure is measured `runs` times; each run also measures its reference (interleaved, so a busy
spell of the shared machine hits both sides), and the ratio is computed per run, then summarised.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipelines.settings import PROJECT_ROOT

GIB = 1 << 30


def stats(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, min, max and the individual values of a series of runs."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": 0, "values": []}
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "runs": len(vals),
        "values": [round(v, digits) for v in vals],
    }


def figure(
    values: Sequence[float],
    unit: str,
    *,
    reference: Sequence[float] | None = None,
    reference_what: str | None = None,
    ratio_of: str = "value / reference",
    higher_is_better: bool = True,
    goal: float | None = None,
    goal_what: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A figure with its runs summarised; with a reference, the per-run ratio summarised too.

    `goal` applies to the ratio when there is a reference, else to the value; `meets_goal` says
    whether the median reaches it (≥ when higher is better, ≤ otherwise).
    """
    out: dict[str, Any] = {"unit": unit, **stats(values)}
    judged = out["median"]
    if reference is not None:
        ratios = [v / r for v, r in zip(values, reference, strict=True) if r]
        out["reference"] = {"what": reference_what, **stats(reference)}
        out["ratio"] = {"of": ratio_of, **stats(ratios)}
        judged = out["ratio"]["median"]
    if goal is not None:
        out["goal"] = {"value": goal, "what": goal_what or ("≥" if higher_is_better else "≤")}
        out["meets_goal"] = None if judged is None else (judged >= goal if higher_is_better else judged <= goal)
    out.update(extra)
    return out


@dataclass
class TreeMemory:
    """Samples the resident memory of a process and all its descendants (every 0.2 s) in a thread.

    `peak_bytes` is the largest sum over the tree at one sample (what the machine had to hold);
    `peak_process_bytes` the largest single process.
    """

    pid: int
    interval: float = 0.2
    peak_bytes: int = 0
    peak_process_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peak_process_bytes = max(self.peak_process_bytes, rss)
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)


@dataclass
class Measured:
    """A finished child process: its exit code, wall seconds, peak memory and output tails."""

    returncode: int
    seconds: float
    peak_bytes: int
    peak_process_bytes: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system time of the child and every descendant it waited for


def child_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment for a child: quiet, offline, with `overrides` (None removes a key)."""
    env = dict(os.environ)
    env.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("DLT_PROJECT_DIR", str(PROJECT_ROOT))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_measured(args: Sequence[str], env: dict[str, str], cwd: Path = PROJECT_ROOT, timeout: float = 7200) -> Measured:
    """Run `args` to completion, timing it and sampling its process tree's memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeMemory(proc.pid) as memory:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(proc.returncode, seconds, memory.peak_bytes, memory.peak_process_bytes, out, err, cpu)


def python_module(module: str, *args: str) -> list[str]:
    """The command line running `python -m module args…` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def available_memory() -> int:
    """Bytes the machine can give a new workload now (MemAvailable)."""
    return int(psutil.virtual_memory().available)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the JSON summary atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of `fn()`."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result
