"""Publishing: readers get a complete, read-only copy of the warehouse, swapped in atomically.

DuckDB lets one process write a file, and while it writes nobody else may even open it. So the
pipeline builds `<name>.build.duckdb`, and publication copies it to a temporary file beside the
published one and `os.replace`s it into place. A reader that already has the old file open keeps
its snapshot; new readers see the new warehouse; nobody ever sees a half-built one.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path

import duckdb


def publish(build: Path, published: Path) -> Path:
    """Checkpoint the build database and atomically replace the published copy with it."""
    con = duckdb.connect(str(build))
    try:
        con.execute("CHECKPOINT")
    finally:
        con.close()
    prefix = f".{published.stem}.publish-"
    # A publication killed between its copy and the rename leaves its temporary copy behind; runs
    # never overlap (one writer), so any such file is a dead run's and would only pile up.
    for stale in published.parent.glob(f"{glob.escape(prefix)}*.duckdb"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=published.parent, prefix=prefix, suffix=".duckdb")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(build, tmp)
        os.replace(tmp, published)
    finally:
        tmp.unlink(missing_ok=True)
    return published
