"""`make bench`: run every benchmark section and write the JSON summary (see `pipelines/bench/__init__.py`).

Environment:

| variable | default | meaning |
|---|---|---|
| `BENCH_JSON` | `bench/results/latest.json` | where the summary goes (written after every section) |
| `BENCH_QUICK` | unset | `1`: the fast subset (scale 1 once, small Mixpanel file, small large world; no scale 10) |
| `BENCH_SECTIONS` | all | a comma-separated subset of `SECTIONS` (e.g. `mixpanel,dagster`) |
| `BENCH_RUNS` | 3 (quick: 1) | runs per figure at scale 1 (scale 10 and the large world: 1) |
| `BENCH_LARGE_SCALE` | 10 | the second sandbox scale (`0`: none) |
| `BENCH_EVENTS`, `BENCH_BUILDS` | 100 M, 10 M (quick: 5 M, 0.5 M) | size of the large world |
| `BENCH_MERGE` | unset | `1`: keep the sections already in `BENCH_JSON`, replace only those run now |
| `BENCH_SCALE1_WAREHOUSE` | unset | a built scale-1 `*.build.duckdb` to reuse (else the full run's) |
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.bench.harness import GIB, available_memory, write_summary
from pipelines.settings import PROJECT_ROOT

SECTIONS = ("extraction", "mixpanel", "full_run", "incremental", "dagster", "large_world", "api")
SCALE_10_MEMORY_GIB = 21.0
"""What a scale-10 sandbox needs free: generating its world peaks at ~18.5 GiB (measured), the run
itself a few more. Below that, scale-10 figures are recorded as skipped, with the reason."""
INCREMENTAL_DAY = date(2026, 10, 31)  # the default world's last day: D, then D+1 = its end


@dataclass(frozen=True)
class Profile:
    """How much each section measures."""

    name: str
    runs: int
    large_scale: float | None
    mixpanel_events: int
    incremental_scale: float
    large_events: int
    large_builds: int
    api_seconds: float


def profile_from_env() -> Profile:
    quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0", "false", "no")
    runs = int(os.environ.get("BENCH_RUNS") or (1 if quick else 3))
    large = os.environ.get("BENCH_LARGE_SCALE")
    return Profile(
        name="quick" if quick else "full",
        runs=max(1, runs),
        large_scale=None if quick or (large or "").strip() == "0" else float(large or 10),
        mixpanel_events=int(os.environ.get("BENCH_MIXPANEL_EVENTS") or (200_000 if quick else 1_000_000)),
        incremental_scale=1.0,  # fixed per-run requests (catalogues, trailing windows) dominate smaller worlds
        large_events=int(os.environ.get("BENCH_EVENTS") or (5_000_000 if quick else 100_000_000)),
        large_builds=int(os.environ.get("BENCH_BUILDS") or (500_000 if quick else 10_000_000)),
        api_seconds=5.0 if quick else 10.0,
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("dlt", "dagster", "duckdb", "polars", "pyarrow"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "?"
    return out


def _scale_10_allowed(scale: float) -> str | None:
    """None when a sandbox of `scale` fits in memory now, else why it is skipped."""
    if scale <= 1:
        return None
    free = available_memory() / GIB
    need = SCALE_10_MEMORY_GIB * (scale / 10) ** 2  # events grow with the square of the scale
    if free < need:
        return f"skipped: a scale-{scale:g} sandbox needs ~{need:.0f} GiB free, {free:.1f} GiB available now"
    return None


class Suite:
    """Runs the sections in order, writing the summary after each; a failing section is recorded, not fatal."""

    def __init__(self, out: Path, profile: Profile, sections: tuple[str, ...]) -> None:
        self.out = out
        self.profile = profile
        self.sections = sections
        self.started = time.perf_counter()
        self.workdir = Path(tempfile.mkdtemp(prefix="opsmap-bench-"))
        given = os.environ.get("BENCH_SCALE1_WAREHOUSE")
        # Kept from the full run (or given), reused by the Dagster, large-world and API sections.
        self.scale_1_build = Path(given) if given else self.workdir / "scale1.build.duckdb"
        previous: dict[str, Any] = {}
        if os.environ.get("BENCH_MERGE", "").strip() not in ("", "0") and out.exists():
            previous = json.loads(out.read_text(encoding="utf-8"))
        self.summary: dict[str, Any] = {
            **previous,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "profile": profile.name,
            "machine": {
                "cpus": os.cpu_count(),
                "memory_gib": round(__import__("psutil").virtual_memory().total / GIB, 1),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                **_versions(),
            },
            "how_to_read": (
                "Each figure: median, min and max over `runs` runs; with a reference measured in the same "
                "runs, `ratio` is value / reference per run, summarised the same way. The machine is shared: "
                "compare ratios, and read absolute seconds with `load_average_at_start`."
            ),
        }

    def section(self, name: str, fn: Callable[[], Any]) -> None:
        if name.split(".")[0] not in self.sections:
            return
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        load = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: say how busy it was
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # one broken section must not lose the others' figures
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        if isinstance(result, dict):
            result.setdefault("bench_seconds", round(time.perf_counter() - started, 1))
            result.setdefault("load_average_at_start", load)
        head, _, tail = name.partition(".")
        if tail:
            self.summary.setdefault(head, {})[tail] = result
        else:
            self.summary[head] = result
        self.summary["seconds_total"] = round(time.perf_counter() - self.started, 1)
        write_summary(self.out, self.summary)
        print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        from pipelines.bench.extraction import extraction_figures
        from pipelines.bench.large_world import large_world_figures
        from pipelines.bench.mixpanel import mixpanel_figures
        from pipelines.bench.runs import dagster_overhead_figures, full_run_figures, incremental_figures

        p = self.profile
        scales = [1.0] + ([p.large_scale] if p.large_scale else [])
        if not p.large_scale:
            why = "quick profile" if p.name == "quick" else "BENCH_LARGE_SCALE=0"
            self.summary["second_scale"] = f"not measured: {why}"

        def at(scale: float, fn: Callable[[], Any]) -> Callable[[], Any]:
            def guarded() -> Any:
                reason = _scale_10_allowed(scale)
                return {"scale": scale, "skipped": reason} if reason else fn()

            return guarded

        # The full run at scale 1 goes first: its warehouse feeds the Dagster and large-world sections.
        keep = None if os.environ.get("BENCH_SCALE1_WAREHOUSE") else self.scale_1_build
        self.section("full_run.scale_1", lambda: full_run_figures(1.0, p.runs, keep_warehouse=keep))
        for scale in scales:
            runs = p.runs if scale == 1 else 1
            self.section(f"extraction.scale_{scale:g}", at(scale, lambda s=scale, r=runs: extraction_figures(s, r)))
        self.section("mixpanel", lambda: mixpanel_figures(p.mixpanel_events, p.runs))
        self.section("incremental", lambda: incremental_figures(p.incremental_scale, min(p.runs, 2), INCREMENTAL_DAY))
        self.section("dagster", lambda: dagster_overhead_figures(self._scale_1_build(), p.runs))
        self.section(
            "large_world",
            lambda: large_world_figures(self._scale_1_build(), events=p.large_events, builds=p.large_builds),
        )
        self.section("api", self._api)
        for scale in scales[1:]:
            self.section(f"full_run.scale_{scale:g}", at(scale, lambda s=scale: full_run_figures(s, 1)))
        self.summary["acceptance"] = acceptance(self.summary)
        self.summary["derived"] = derived(self.summary)
        self.summary["seconds_total"] = round(time.perf_counter() - self.started, 1)
        write_summary(self.out, self.summary)
        return self.summary

    def _scale_1_build(self) -> Path:
        if not self.scale_1_build.exists():
            raise RuntimeError("no scale-1 warehouse: the full_run section did not succeed (or was not selected)")
        return self.scale_1_build

    def _api(self) -> Any:
        from pipelines.bench import api_bench

        published = self.workdir / "api" / "opsmap.duckdb"
        published.parent.mkdir(exist_ok=True)
        published.write_bytes(self._scale_1_build().read_bytes())
        return api_bench.run_api_bench(published, seconds=self.profile.api_seconds)


def _get(summary: dict[str, Any], *path: str) -> Any:
    node: Any = summary
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def acceptance(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 9's acceptance figures, read back from the summary (None when not measured)."""
    ratio = _get(summary, "mixpanel", "mb_per_s", "ratio", "median")
    wall = _get(summary, "full_run", "scale_1", "wall_seconds", "median")
    share = _get(summary, "incremental", "requests", "ratio", "median")
    return {
        "mixpanel_ratio": ratio,
        "mixpanel_ratio_at_least_0_3": None if ratio is None else ratio >= 0.3,
        "mixpanel_ratio_at_least_0_5": None if ratio is None else ratio >= 0.5,
        "scale_1_full_run_seconds": wall,
        "scale_1_full_run_under_60_s": None if wall is None else wall < 60,
        "incremental_request_share": share,
        "incremental_request_share_at_most_5_pct": None if share is None else share <= 0.05,
    }


def derived(summary: dict[str, Any]) -> dict[str, Any]:
    """Figures read across sections: the parallel extraction step against the sources one by one."""
    alone = [
        _get(summary, "extraction", "scale_1", system, "seconds", "median")
        for system in ("github", "mixpanel", "jenkins", "jira", "datadog")
    ]
    share = _get(summary, "full_run", "scale_1", "share_of_wall", "extraction", "median")
    wall = _get(summary, "full_run", "scale_1", "wall_seconds", "median")
    if None in alone or share is None or wall is None:
        return {}
    step = share * wall
    return {
        "extraction_sources_one_by_one_seconds": round(sum(alone), 1),
        "extraction_step_in_full_run_seconds": round(step, 1),
        "extraction_parallel_speedup": round(sum(alone) / step, 2) if step else None,
        "note": "one-by-one: each source extracted, normalised and loaded alone (extraction section); "
        "step: the full run's extraction step, all five in worker processes, loads included",
    }


def main() -> None:
    """Entry point of `python -m pipelines.bench` (what `make bench` runs)."""
    out = Path(os.environ.get("BENCH_JSON") or "bench/results/latest.json")
    if not out.is_absolute():
        out = PROJECT_ROOT / out
    wanted = tuple(s.strip() for s in (os.environ.get("BENCH_SECTIONS") or ",".join(SECTIONS)).split(",") if s.strip())
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown BENCH_SECTIONS: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    # The full run at scale 1 feeds the Dagster, large-world and API sections.
    given = os.environ.get("BENCH_SCALE1_WAREHOUSE")
    if {"dagster", "large_world", "api"} & set(wanted) and "full_run" not in wanted and not given:
        wanted = (*wanted, "full_run")
    suite = Suite(out, profile_from_env(), wanted)
    try:
        summary = suite.run()
    finally:
        shutil.rmtree(suite.workdir, ignore_errors=True)  # the kept warehouse copies: ~200 MB at scale 1
    print(f"[bench] wrote {out} in {summary['seconds_total']:.0f} s", file=sys.stderr)
    for key, value in summary["acceptance"].items():
        print(f"  {key}: {value}", file=sys.stderr)
