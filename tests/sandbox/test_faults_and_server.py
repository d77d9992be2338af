"""Fault injection is reproducible, bounded and visible in the access log; the CLI serves and exports truth."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.sandbox.faults import FaultPlan, parse_fault_spec
from pipelines.sandbox.server import SandboxServer, read_env_file, spawn_sandbox
from pipelines.sandbox.world import World


def test_parse_fault_spec_accepts_kinds_and_names_bad_parts() -> None:
    assert parse_fault_spec("rate_limit=0.05, server_error=0.02") == {"rate_limit": 0.05, "server_error": 0.02}
    assert parse_fault_spec("") == {}
    for bad, message in [("boom=0.1", "kind one of"), ("slow=lots", "not a number"), ("slow=2", "between 0 and 1")]:
        with pytest.raises(ValueError, match=message):
            parse_fault_spec(bad)


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    keys = [f"GET /github/x?page={n}" for n in range(300)]
    rates = {"rate_limit": 0.1, "server_error": 0.1, "duplicate": 0.1}
    run = lambda seed: [FaultPlan(dict(rates), seed=seed).decide(k) for k in keys]  # noqa: E731
    assert run(3) == run(3)
    assert run(3) != run(4)
    assert sum(bool(f) for f in run(3)) > 30


def test_a_retried_request_always_gets_through() -> None:
    plan = FaultPlan({"server_error": 1.0}, seed=1, max_consecutive=3)
    outcomes = [plan.decide("GET /jira/search") for _ in range(4)]
    assert outcomes[:3] == [frozenset({"server_error"})] * 3
    assert outcomes[3] == frozenset()


def _get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_faulted_servers_replay_the_same_statuses(world: World, tmp_path: Path) -> None:
    statuses = []
    for run in range(2):
        log = tmp_path / f"access-{run}.jsonl"
        with SandboxServer(
            world, faults=FaultPlan({"rate_limit": 0.2, "server_error": 0.2}, seed=9), access_log=log
        ) as server:
            for n in range(1, 30):
                _get(f"{server.url}/github/orgs/{world.org}/repos?per_page=1&page={n}", {"Authorization": "Bearer t"})
        statuses.append([json.loads(line)["status"] for line in log.read_text().splitlines()])
    assert statuses[0] == statuses[1]
    assert {403, 429, 503} & set(statuses[0]) and 200 in statuses[0]


def test_requests_without_credentials_are_refused(sandbox: SandboxServer) -> None:
    assert _get(f"{sandbox.url}/github/orgs/acme/repos", {}) == 401
    assert _get(f"{sandbox.url}/github/orgs/acme/repos", {"Authorization": "Bearer anything"}) == 200


def test_cli_serves_with_an_env_file_and_exports_truth(tmp_path: Path) -> None:
    with spawn_sandbox(seed=5, scale=0.05, workdir=tmp_path) as proc:
        env = proc.env
        assert {f"SOURCES__{s}__BASE_URL" for s in ("JIRA", "GITHUB", "JENKINS", "DATADOG", "MIXPANEL")} <= set(env)
        assert proc.as_of().startswith("2026-11-01")
    out = tmp_path / "truth"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "sandbox",
            "truth",
            "--out",
            str(out),
            "--seed",
            "5",
            "--scale",
            "0.05",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "deployments.parquet").exists() and "deployments.parquet" in done.stdout
    assert read_env_file is not None
