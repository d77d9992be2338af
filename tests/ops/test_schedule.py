"""The nightly schedule: it clears runs a killed `opsmap run` left STARTED before requesting its own."""

from __future__ import annotations

import socket
import subprocess
import sys

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, build_schedule_context
from dagster._core.utils import make_new_run_id

from pipelines.abandoned_runs import HOST_TAG, PID_TAG, STARTED_TAG, process_started


def test_the_nightly_schedule_fails_abandoned_runs_then_requests_the_nightly_job() -> None:
    from pipelines.definitions import defs

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = {PID_TAG: str(child.pid), HOST_TAG: socket.gethostname(), STARTED_TAG: process_started(child.pid) or ""}
    child.kill()
    child.wait(timeout=60)
    with DagsterInstance.local_temp() as instance:
        abandoned = instance.add_run(
            DagsterRun(job_name="nightly", run_id=make_new_run_id(), status=DagsterRunStatus.STARTED, tags=dead)
        )
        schedule = defs.resolve_schedule_def("nightly_schedule")
        requests = schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests or []
        status = instance.get_run_by_id(abandoned.run_id).status  # type: ignore[union-attr]
    assert status == DagsterRunStatus.FAILURE
    assert len(requests) == 1 and schedule.job_name == "nightly"
