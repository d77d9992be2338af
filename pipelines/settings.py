"""Where things live, resolved lazily from the environment (never at import time).

| variable | default | meaning |
|---|---|---|
| `OPSMAP_WAREHOUSE` | `warehouse/data/opsmap.duckdb` | the published warehouse SQL users read |
| `DAGSTER_HOME` | `.dagster_home/` in the project | Dagster's run history, schedules, event log |
| `DLT_DATA_DIR` | `warehouse/data/dlt/` | dlt's local working folder (its state lives in the warehouse) |

The pipeline never writes the published file directly: it builds `<name>.build.duckdb` next to
it and, once the run's blocking checks pass, publishes a copy atomically (see `publish.py`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_SQL_DIR = PROJECT_ROOT / "warehouse"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DEFAULT_WAREHOUSE = WAREHOUSE_SQL_DIR / "data" / "opsmap.duckdb"
DEFAULT_DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"

SYSTEMS = ("jira", "github", "jenkins", "datadog", "mixpanel")


@dataclass(frozen=True)
class Paths:
    published: Path  # what SQL users, notebooks and the API open read-only
    build: Path  # what the pipeline writes (dlt loads, models, KPIs)
    dlt_dir: Path
    reports: Path

    @classmethod
    def from_env(cls) -> Paths:
        published = Path(os.environ.get("OPSMAP_WAREHOUSE") or DEFAULT_WAREHOUSE).expanduser().resolve()
        build = published.with_name(f"{published.stem}.build{published.suffix or '.duckdb'}")
        dlt_dir = Path(os.environ.get("DLT_DATA_DIR") or published.parent / "dlt").expanduser().resolve()
        return cls(published=published, build=build, dlt_dir=dlt_dir, reports=published.parent / "reports")

    def ensure(self) -> Paths:
        for folder in (self.published.parent, self.dlt_dir, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self


_DAGSTER_YAML_V1 = """\
# Written by opsmap on first use. Runs are kept here so the UI shows history across restarts.
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1  # DuckDB allows one writing process: never overlap two runs
"""
_DAGSTER_YAML = (
    _DAGSTER_YAML_V1
    + """\
event_log_storage:  # Dagster's SQLite event log, connections kept open (pipelines/event_log.py)
  module: pipelines.event_log
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {event_logs}  # where Dagster's default storage keeps them: the history carries over
"""
)
# What earlier versions wrote, replaced by the current file when found unchanged.
_EARLIER_DAGSTER_YAMLS = (_DAGSTER_YAML_V1,)


def dagster_yaml(home: Path) -> str:
    """The dagster.yaml opsmap writes into a new Dagster home."""
    return _DAGSTER_YAML.replace("{event_logs}", json.dumps(str(home / "history" / "runs")))


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at the project-local folder unless the user set one; create it if needed."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text(encoding="utf-8") in _EARLIER_DAGSTER_YAMLS:
        config.write_text(dagster_yaml(home), encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
