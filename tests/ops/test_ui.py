"""The Dagster UI: `dagster dev -w workspace.yaml` on a free port, read through its GraphQL endpoint.

The server is started once for the module, in its own session so that it and everything it spawns
(webserver, daemon, code server) can be stopped as one process group. Stack notes §7: `dagster dev`
ignores SIGTERM when SIGINT was ignored at its start (a background job of a non-interactive shell),
so a launcher resets both signals to their defaults before it execs `dagster dev`, and anything
still alive after a grace period is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import Request, urlopen

import pytest

from pipelines.settings import PROJECT_ROOT, dagster_yaml

STARTUP_TIMEOUT_S = 240  # ~10 s on an idle machine; the code location imports the whole pipeline
STOP_GRACE_S = 30

GraphQL = Callable[[str], dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Resets SIGINT and SIGTERM to their defaults, then becomes `dagster dev` (exec keeps the defaults).
# A launcher instead of `preexec_fn`, which is unsafe in a process with threads (the test session has some).
LAUNCHER = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after the grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (a code server, the daemon)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def graphql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphQL]:
    folder = tmp_path_factory.mktemp("ui")
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(home), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(
        DAGSTER_HOME=str(home),
        OPSMAP_WAREHOUSE=str(folder / "warehouse" / "opsmap.duckdb"),
        DLT_PROJECT_DIR=str(PROJECT_ROOT),
        RUNTIME__DLTHUB_TELEMETRY="false",
        GX_ANALYTICS_ENABLED="false",
    )
    port = _free_port()
    dagster = Path(sys.executable).with_name("dagster")
    log = (folder / "dagster-dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", f"-p{port}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def query(text: str) -> dict[str, Any]:
        request = Request(
            f"{base}/graphql", data=json.dumps({"query": text}).encode(), headers={"Content-Type": "application/json"}
        )
        with urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"dagster dev exited:\n{(folder / 'dagster-dev.log').read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"dagster dev not ready in {STARTUP_TIMEOUT_S} s"
            try:
                entries = query(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )["workspaceOrError"]["locationEntries"]
            except (URLError, ConnectionError, TimeoutError):
                entries = []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                loaded = [e["locationOrLoadError"] for e in entries]
                assert all(x["__typename"] == "RepositoryLocation" for x in loaded), loaded
                break
            time.sleep(0.5)
        yield query
    finally:
        _stop(proc)
        log.close()


def _asset_nodes(graphql: GraphQL) -> dict[str, dict[str, Any]]:
    nodes = graphql(
        "{ assetNodes { assetKey { path } groupName description dependencyKeys { path } "
        "assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } } }"
    )["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def test_the_ui_shows_the_asset_graph_from_api_tables_to_kpis(graphql: GraphQL) -> None:
    nodes = _asset_nodes(graphql)
    for key in ("raw_github/pull_requests", "staging/stg_github__pull_requests", "deployment/deployments", "kpi/dora"):
        assert key in nodes, key
    assert "published_warehouse" in nodes

    def upstream(key: str) -> set[str]:
        seen: set[str] = set()
        todo = [key]
        while todo:
            for dep in nodes[todo.pop()]["dependencyKeys"]:
                name = "/".join(dep["path"])
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
        return seen

    # Lineage: the DORA KPI traces back through the deployment mart to the raw API tables.
    lineage = upstream("kpi/dora")
    assert {"deployment/deployments", "raw_github/pull_requests", "raw_github/deployments"} <= lineage
    assert upstream("published_warehouse") >= set(nodes) - {"published_warehouse"}
    # Groups per layer and system, and a description on every asset.
    groups = {n["groupName"] for n in nodes.values()}
    assert {"raw_github", "raw_jira", "staging", "intermediate", "kpi"} <= groups
    assert [k for k, n in nodes.items() if not (n["description"] or "").strip()] == []


def test_the_ui_shows_every_asset_check_the_code_defines(graphql: GraphQL) -> None:
    from pipelines.definitions import defs

    nodes = _asset_nodes(graphql)
    shown = {
        (key, check["name"])
        for key, node in nodes.items()
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
        for check in node["assetChecksOrError"]["checks"]
    }
    defined = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert shown == defined
    marts = [k for k in nodes if k.split("/")[0] in ("development", "deployment", "quality", "usage")]
    assert marts
    assert [k for k in marts if not any(key == k for key, _ in shown)] == [], "a mart without checks"


def test_the_ui_shows_the_nightly_job_and_its_schedule(graphql: GraphQL) -> None:
    repositories = graphql(
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name } "
        "schedules { name cronSchedule executionTimezone pipelineName scheduleState { status } } } } } }"
    )["repositoriesOrError"]["nodes"]
    jobs = {job["name"] for repo in repositories for job in repo["jobs"]}
    schedules = {s["name"]: s for repo in repositories for s in repo["schedules"]}
    assert "nightly" in jobs
    schedule = schedules["nightly_schedule"]
    assert schedule["pipelineName"] == "nightly"
    assert schedule["cronSchedule"] == "0 2 * * *"
    assert schedule["executionTimezone"] == os.environ.get("OPSMAP_SCHEDULE_TIMEZONE", "UTC")
    assert schedule["scheduleState"]["status"] == "STOPPED"  # schedules start stopped; switched on deliberately
