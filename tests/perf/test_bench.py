"""The benchmark harness (`make bench`): figures, the payload capture, and each section at a tiny size.

Speed goals live in the benchmark, never here: these tests check that the harness measures what it
says (right rows, right references, right shares), not how fast anything is.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import duckdb
import pytest

from pipelines.bench.harness import figure, stats
from pipelines.bench.runs import _category
from pipelines.bench.suite import acceptance
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.world import World


def test_a_figure_summarises_runs_and_ratios_per_run() -> None:
    assert stats([3, 1, 2]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3, "values": [3.0, 1.0, 2.0]}
    f = figure([10, 30, 20], "rows/s", reference=[100, 100, 50], goal=0.3)
    assert f["median"] == 20.0 and f["reference"]["median"] == 100.0
    assert f["ratio"]["values"] == [0.1, 0.3, 0.4] and f["ratio"]["median"] == 0.3
    assert f["meets_goal"] is True  # the goal applies to the ratio when there is a reference
    lower = figure([0.02, 0.04], "share", goal=0.05, higher_is_better=False)
    assert lower["meets_goal"] is True
    assert figure([0.06], "share", goal=0.05, higher_is_better=False)["meets_goal"] is False


def test_steps_are_classed_by_what_they_materialise() -> None:
    assert _category([["raw_github", "pull_requests"]], checked=False) == "extraction"
    assert _category([["staging", "stg_github__commits"]], checked=True) == "models"
    assert _category([["kpi", "dora"]], checked=False) == "kpis"
    assert _category([["reports", "kpi_report"]], checked=False) == "kpis"
    assert _category([["published_warehouse"]], checked=False) == "publication"
    assert _category([], checked=True) == "checks"
    assert _category([], checked=False) == "other"


def test_acceptance_reads_the_three_goals_back() -> None:
    summary = {
        "mixpanel": {"mb_per_s": {"ratio": {"median": 0.41}}},
        "full_run": {"scale_1": {"wall_seconds": {"median": 58.0}}},
        "incremental": {"requests": {"ratio": {"median": 0.011}}},
    }
    got = acceptance(summary)
    assert got["mixpanel_ratio_at_least_0_3"] and not got["mixpanel_ratio_at_least_0_5"]
    assert got["scale_1_full_run_under_60_s"] and got["incremental_request_share_at_most_5_pct"]
    assert acceptance({})["scale_1_full_run_under_60_s"] is None


def test_the_sandbox_captures_exactly_the_bodies_it_sends(world: World, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    with SandboxServer(world, capture_dir=capture) as server:
        env = server.env()
        request = urllib.request.Request(
            f"{server.url}/github/orgs/{env['SOURCES__GITHUB__ORG']}/repos?per_page=100",
            headers={"Authorization": "Bearer x"},
        )
        with urllib.request.urlopen(request) as response:
            sent = response.read()
        missing = urllib.request.Request(f"{server.url}/github/nope", headers={"Authorization": "Bearer x"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(missing)
    lines = (capture / "github.jsonl").read_bytes().splitlines()
    assert lines == [sent], "one line per successful body, error answers left out"
    counted = json.loads((capture / "_bytes.json").read_text())
    assert counted["seen"]["github"] == counted["written"]["github"] == len(sent) + 1


def test_the_capture_stops_writing_past_its_cap_but_keeps_counting(world: World, tmp_path: Path) -> None:
    from pipelines.sandbox.server import PayloadCapture

    capture = PayloadCapture(tmp_path, max_bytes=10)
    capture.body("jira", b'{"a":1}')  # 8 bytes with the newline: written
    capture.body("jira", b'{"b":2}')  # would pass the cap: counted only
    assert list(capture.stream("mixpanel", iter([b"1\n", b"2\n"]))) == [b"1\n", b"2\n"]
    capture.close()
    assert (tmp_path / "jira.jsonl").read_bytes() == b'{"a":1}\n'
    assert json.loads((tmp_path / "_bytes.json").read_text())["seen"] == {"jira": 16, "mixpanel": 4}


def test_mixpanel_section_measures_both_sides_on_the_same_file() -> None:
    from pipelines.bench.mixpanel import mixpanel_figures

    got = mixpanel_figures(20_000, runs=1)
    assert got["rows_loaded"] == 20_000
    assert got["mb_per_s"]["reference"]["median"] > 0 and got["mb_per_s"]["ratio"]["median"] > 0
    assert got["mb_per_s"]["goal"]["value"] == 0.5


def test_large_world_multiplies_the_raw_tables_and_rebuilds_everything(built_warehouse: dict, tmp_path: Path) -> None:
    from pipelines.bench.large_world import enlarge, rebuild

    build = tmp_path / "large.duckdb"
    shutil.copyfile(built_warehouse["paths"].build, build)

    def counts() -> tuple[int, ...]:
        with duckdb.connect(str(build), read_only=True) as con:
            row = con.execute(
                "SELECT (SELECT count(*) FROM raw_mixpanel.events), (SELECT count(*) FROM raw_jenkins.builds), "
                "(SELECT count(*) FROM staging.stg_mixpanel__events), "
                "(SELECT count(DISTINCT user_id) FROM staging.stg_mixpanel__events), "
                "(SELECT count(*) FROM staging.stg_jenkins__builds)"
            ).fetchone()
        return tuple(row)

    events, builds, staged, users, staged_builds = counts()
    got = enlarge(build, events=3 * events, builds=2 * builds)
    assert got["events"] == 3 * events and got["builds"] >= 2 * builds
    timings = rebuild(build)
    assert timings["models"] > 50 and timings["rows_built"] > got["events"]
    assert len(timings["slowest_models_seconds"]) == 8
    _, _, staged_after, users_after, staged_builds_after = counts()
    assert staged_after == 3 * staged, "every copied event survives de-duplication: new insert ids"
    assert users_after > 2 * users, "new people doing the same things"
    assert staged_builds_after > staged_builds + builds // 2, "the copied CI builds are staged"
    with duckdb.connect(str(build), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM kpi.dora").fetchone()[0] > 0


@pytest.mark.slow  # ~1-2 min: an `opsmap run` in a child process, then reads its Dagster event log
def test_a_full_run_is_timed_and_broken_down(tmp_path: Path) -> None:
    from pipelines.bench.runs import full_run

    got = full_run(0.05, tmp_path)
    assert got["ok"], got.get("output_tail")
    seconds = got["breakdown"]["seconds"]
    assert seconds["extraction"] > 0 and seconds["models"] > 0 and seconds["checks"] > 0 and seconds["kpis"] > 0
    assert sum(seconds.values()) < got["seconds"]
    assert got["breakdown"]["steps"]["extraction"] == 1, "one step extracts every system"
    assert got["peak_gib"] > got["peak_process_gib"] > 0


@pytest.mark.slow  # ~30 s at scale 0.05: five systems through the sandbox, then DuckDB on the captured bytes
def test_extraction_section_counts_rows_requests_and_bytes() -> None:
    from pipelines.bench.extraction import extraction_figures

    got = extraction_figures(0.05, runs=1)
    for system in ("github", "jira", "jenkins", "datadog", "mixpanel"):
        assert got[system]["rows"] > 0 and got[system]["requests"] > 0 and got[system]["payload_mb"] > 0
        assert got[system]["mb_per_s"]["reference"]["median"] > 0


def test_large_world_section_reports_the_rebuild_measured_in_its_child(built_warehouse: dict) -> None:
    from pipelines.bench.large_world import large_world_figures

    build = built_warehouse["paths"].build
    with duckdb.connect(str(build), read_only=True) as con:
        events = con.execute("SELECT count(*) FROM raw_mixpanel.events").fetchone()[0]
    got = large_world_figures(build, events=2 * events, builds=1)
    assert got["succeeded"] == "1/1", got["failures"]
    assert got["events"] == 2 * events
    assert got["peak_memory_gib"]["median"] > 0.1 and got["raw_rows_per_s"]["median"] > 0
    assert got["slowest_models_seconds"] and got["peak_memory_gib"]["goal"]["value"] == 8.0
