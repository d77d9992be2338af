"""The API benchmark's machinery, run small: `opsmap api` starts, every GET URL answers, figures add up.

No speed is asserted here (speed goals live in `make bench`); this keeps the benchmark from rotting.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.bench.api_bench import run_api_bench, target_paths


def test_the_benchmark_drives_every_get_endpoint_without_errors(published: Path) -> None:
    paths = target_paths(published)
    assert {name for name, _ in paths} == {"kpis", "health", "development", "analytics", "release"}
    summary = run_api_bench(published, clients=4, seconds=1.0, max_requests=300, modes=("cached",))
    cached = summary["cached"]
    assert cached["errors"] == 0
    assert summary["urls"] == len(paths)
    assert cached["cold_one_at_a_time"]["requests"] == len(paths)  # the warm-up asked every URL once
    assert 0 < cached["requests"] <= 300
    assert set(cached["by_endpoint"]) <= {"kpis", "health", "development", "analytics", "release"}
    assert cached["p50_ms"] <= cached["p99_ms"] <= cached["max_ms"]
    assert cached["requests_per_s"] > 0
    assert cached["goal_met"] == (cached["p99_ms"] < summary["cached"]["goal_p99_ms"])
