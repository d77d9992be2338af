"""What a killed run leaves behind is cleared by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.resources import _remove_dead_runs_env_files


def test_the_sandbox_env_files_of_dead_runs_are_removed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    dead = tmp_path / f"sandbox-{child.pid}.env"
    alive = tmp_path / f"sandbox-{os.getpid()}.env"
    other = tmp_path / "sandbox-notes.env"
    for f in (dead, alive, other):
        f.write_text("SOURCES__GITHUB__BASE_URL=http://127.0.0.1:1\n")
    _remove_dead_runs_env_files(tmp_path)
    assert not dead.exists() and alive.exists() and other.exists()
