"""Benchmark of the product-ops API's GET endpoints under concurrent load on loopback.

Starts `opsmap api` (uvicorn, one process) in a child process over a published warehouse, then
drives it from this process with N concurrent clients, each a keep-alive HTTP/1.1 connection sending
its next request as soon as the previous answer arrives (a closed loop: latency includes queueing).
The requests cycle through every GET endpoint — kpis, health, development and analytics of every
feature, and the releases — and the run is bounded by a duration and a request count.

Two server modes are measured:
- `cached`: as deployed; a response is computed once per warehouse version and then served from memory;
- `uncached` (`OPSMAP_API_CACHE_ENTRIES=0`): every request runs its SQL on DuckDB.
Each mode first requests every URL once, one at a time (the cold latencies: computed on DuckDB with
nothing queued), then runs the concurrent load and reports p50/p90/p99/max latency in ms, requests/s
and errors, overall and per endpoint. Goal: p99 < 100 ms at 50 clients (cached mode).

The load generator is a minimal asyncio HTTP/1.1 client (no parsing beyond the status line and
Content-Length), so that the client's own cost, on the same 2 cores, distorts the figures as little as possible.

Run: `.venv/bin/python -m pipelines.bench.api_bench [--warehouse FILE] [--clients 50] [--seconds 10]`;
from the harness: `run_api_bench(...)` returns the summary as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from pipelines.api.app import API_PREFIX

GOAL_P99_MS = 100.0
REQUEST_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target_paths(warehouse: Path) -> list[tuple[str, str]]:
    """(endpoint name, path) of every GET request the load cycles through."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        features = [r[0] for r in con.execute("SELECT feature_key FROM development.features ORDER BY 1").fetchall()]
        versions = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT regexp_replace(name, '^(.*\\s)?[vV]?', '') AS v FROM deployment.releases "
                "WHERE regexp_matches(regexp_replace(name, '^(.*\\s)?[vV]?', ''), '^[A-Za-z0-9][A-Za-z0-9._+-]*$') "
                "ORDER BY 1 LIMIT 10"
            ).fetchall()
        ]
    finally:
        con.close()
    paths = [("kpis", "/kpis"), ("health", "/health")]
    paths += [("development", f"/development/{f}") for f in features]
    paths += [("analytics", f"/analytics/{f}") for f in features]
    paths += [("release", f"/release/{v}") for v in versions]
    return [(name, API_PREFIX + path) for name, path in paths]


class ApiServer:
    """`opsmap api` in a child process on a free loopback port, with a throwaway token."""

    def __init__(self, warehouse: Path, cache_entries: int | None = None) -> None:
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        self._annotations = tempfile.TemporaryDirectory(prefix="opsmap-api-bench-")
        env = {
            **os.environ,
            "OPSMAP_WAREHOUSE": str(warehouse),
            "OPSMAP_API_TOKEN": self.token,  # passed by environment, never on a command line or in output
            "OPSMAP_ANNOTATIONS": str(Path(self._annotations.name) / "annotations.duckdb"),
        }
        if cache_entries is not None:
            env["OPSMAP_API_CACHE_ENTRIES"] = str(cache_entries)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "api", "--port", str(self.port), "--no-access-log"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"the API exited during start-up: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(f"GET {API_PREFIX}/health HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the API did not answer within {STARTUP_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self._annotations.cleanup()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    """Send one request on a keep-alive connection and read the whole answer; return the status."""
    writer.write(raw)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return int(status_line.split(b" ", 2)[1]) if status_line else 0


async def _load(
    port: int, token: str, paths: list[tuple[str, str]], clients: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    raws = [
        (name, f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        for name, path in paths
    ]
    # Warm-up: every URL once, one at a time. These are the cold latencies (each computed from
    # DuckDB, nothing queued in front of it); in cached mode they also fill the cache, as real
    # traffic would after each publication.
    cold: list[tuple[str, float, int]] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for name, raw in raws:
            started = time.perf_counter()
            status = await asyncio.wait_for(_request(reader, writer, raw), REQUEST_TIMEOUT_S)
            cold.append((name, time.perf_counter() - started, status))
    finally:
        writer.close()

    samples: list[tuple[str, float, int]] = []  # (endpoint, seconds, status)
    counter = 0
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while counter < max_requests and time.perf_counter() < deadline:
                name, raw = raws[(counter + offset) % len(raws)]
                counter += 1
                started = time.perf_counter()
                try:
                    status = await asyncio.wait_for(_request(reader, writer, raw), REQUEST_TIMEOUT_S)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                samples.append((name, time.perf_counter() - started, status))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i * 7) for i in range(clients)))
    return {"samples": samples, "seconds": time.perf_counter() - started, "cold": cold}


def _stats(latencies: list[float]) -> dict[str, float | int | None]:
    if not latencies:
        return {"requests": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Latency percentiles, throughput and errors of one load run, overall and per endpoint."""
    samples = run["samples"]
    per_endpoint: dict[str, list[float]] = defaultdict(list)
    for name, latency, status in samples:
        if status == 200:
            per_endpoint[name].append(latency)
    overall = _stats([t for _, t, status in samples if status == 200])
    return {
        **overall,
        "requests_per_s": round(len(samples) / run["seconds"], 1) if run["seconds"] else None,
        "errors": sum(1 for _, _, status in samples if status != 200) + sum(1 for *_, st in run["cold"] if st != 200),
        "seconds": round(run["seconds"], 2),
        "cold_one_at_a_time": _stats([t for _, t, status in run["cold"] if status == 200]),
        "by_endpoint": {name: _stats(values) for name, values in sorted(per_endpoint.items())},
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": overall["p99_ms"] is not None and overall["p99_ms"] < GOAL_P99_MS,
    }


def run_api_bench(
    warehouse: Path | None = None,
    clients: int = 50,
    seconds: float = 10.0,
    max_requests: int = 50_000,
    modes: tuple[str, ...] = ("cached", "uncached"),
) -> dict[str, Any]:
    """Drive the GET endpoints with `clients` concurrent clients; return p50/p99 latency and requests/s per mode.

    `warehouse` is a published warehouse file (default: $OPSMAP_WAREHOUSE, else one is built from the
    sandbox at scale 0.2 in a temporary folder, which takes about two minutes).
    """
    from pipelines.settings import Paths

    warehouse = warehouse or Paths.from_env().published
    with tempfile.TemporaryDirectory(prefix="opsmap-api-bench-wh-") as scratch:
        if not warehouse.exists():
            warehouse = _build_small_warehouse(Path(scratch))
        paths = target_paths(warehouse)
        result: dict[str, Any] = {
            "benchmark": "api",
            "clients": clients,
            "seconds_limit": seconds,
            "max_requests": max_requests,
            "urls": len(paths),
            "warehouse_mb": round(warehouse.stat().st_size / 1e6, 1),
        }
        for mode in modes:
            with ApiServer(warehouse, cache_entries=None if mode == "cached" else 0) as server:
                run = asyncio.run(_load(server.port, server.token, paths, clients, seconds, max_requests))
            result[mode] = summarise(run)
    return result


def _build_small_warehouse(folder: Path) -> Path:
    """A published warehouse from the sandbox (seed 42, scale 0.2), for when none is configured."""
    from dagster import DagsterInstance

    from pipelines.runner import run_nightly

    published = folder / "opsmap.duckdb"
    previous = os.environ.get("OPSMAP_WAREHOUSE")
    os.environ["OPSMAP_WAREHOUSE"] = str(published)
    try:
        outcome = run_nightly(sandbox={"sandbox_seed": 42, "sandbox_scale": 0.2}, instance=DagsterInstance.ephemeral())
    finally:
        if previous is None:
            os.environ.pop("OPSMAP_WAREHOUSE", None)
        else:
            os.environ["OPSMAP_WAREHOUSE"] = previous
    if not outcome.success or not published.exists():
        raise RuntimeError("building the benchmark warehouse failed")
    return published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, default=None, help="Published warehouse file to serve.")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each mode's run.")
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--mode", action="append", choices=["cached", "uncached"], help="Default: both.")
    args = parser.parse_args()
    summary = run_api_bench(
        args.warehouse, args.clients, args.seconds, args.max_requests, tuple(args.mode or ("cached", "uncached"))
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
