"""Runs whose process died are marked failed, so they neither look alive forever nor hold the run queue.

`opsmap run` executes a job inside its own process (`execute_in_process`). When that process is
killed (SIGKILL, the OOM killer, a reboot) nothing records the end of its run: the run stays STARTED
in the Dagster instance, the UI shows it running forever, and the instance's run queue
(`max_concurrent_runs: 1`, see `settings.dagster_yaml`) counts it as the one run in progress, so no
queued run (the schedule's, the UI's) is ever launched again. So every run records which process
executes it (`owner_tags`), and every run first fails the runs whose process is gone
(`fail_abandoned_runs`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

PID_TAG = "opsmap/pid"
HOST_TAG = "opsmap/host"
STARTED_TAG = "opsmap/process_started"
"""The process's start time (Linux): a later process given the same pid is not the run's."""

LIVE_STATUSES = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def process_started(pid: int) -> str | None:
    """Start time of a live process, in clock ticks after boot (`/proc/<pid>/stat`); None if gone or unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has ended; it only awaits reaping


def owner_tags() -> dict[str, str]:
    """Tags naming this process, for the run it is about to execute."""
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    started = process_started(os.getpid())
    if started is not None:
        tags[STARTED_TAG] = started
    return tags


def _alive(pid: int, started: str | None) -> bool:
    if started is not None:
        return process_started(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def fail_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed every live-looking run this host's opsmap started in a process that has ended.

    Runs launched any other way (the daemon, the UI) carry no owner tags and are left to Dagster.
    Returns the ids of the runs marked failed.
    """
    failed = []
    host = socket.gethostname()
    for record in instance.get_run_records(filters=RunsFilter(statuses=LIVE_STATUSES)):
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if run.tags.get(HOST_TAG) != host or not pid.isdigit():
            continue
        if _alive(int(pid), run.tags.get(STARTED_TAG)):
            continue
        instance.report_run_failed(
            run, message=f"The process that ran this run (pid {pid}) ended without finishing it (killed?)."
        )
        failed.append(run.run_id)
    return failed
