"""The simulated world: deterministic, consistent as of any moment, and shaped by the programme."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import polars as pl

from pipelines.sandbox.generate import generate_world
from pipelines.sandbox.truth import TRUTH_COLUMNS, truth_frames, write_truth
from pipelines.sandbox.world import World, WorldConfig


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def test_same_seed_gives_byte_identical_truth(tmp_path: Path) -> None:
    config = WorldConfig(seed=7, scale=0.1)
    write_truth(generate_world(config), tmp_path / "a")
    write_truth(generate_world(config), tmp_path / "b")
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert set(_digests(tmp_path / "a")) == {f"{name}.parquet" for name in TRUTH_COLUMNS}


def test_different_seeds_give_different_worlds() -> None:
    a = generate_world(WorldConfig(seed=1, scale=0.1))
    b = generate_world(WorldConfig(seed=2, scale=0.1))
    assert [p.title for p in a.pull_requests] != [p.title for p in b.pull_requests]


def test_truth_columns_are_documented(world: World) -> None:
    for name, frame in truth_frames(world):
        assert set(frame.columns) == set(TRUTH_COLUMNS[name]), name


def test_as_of_hides_the_future(world: World) -> None:
    as_of = world.config.end_at - timedelta(days=60)
    frames = dict(truth_frames(world, as_of))
    for name, column in [
        ("issues", "created_at"),
        ("pull_requests", "first_commit_at"),
        ("deployments", "started_at"),
        ("incidents", "created_at"),
        ("builds", "started_at"),
    ]:
        assert frames[name].filter(pl.col(column) > as_of).height == 0, name
    assert frames["pull_requests"].filter(pl.col("merged_at") > as_of).height == 0
    assert frames["issues"].filter(pl.col("done_at") > as_of).height == 0
    assert frames["incidents"].filter(pl.col("resolved_at") > as_of).height == 0
    assert frames["events_daily"]["day"].max() < as_of.date()
    full = dict(truth_frames(world))
    assert frames["pull_requests"].height < full["pull_requests"].height


def test_every_kind_of_entity_and_link_occurs(world: World) -> None:
    f = dict(truth_frames(world))
    issues, prs, deps, incidents = f["issues"], f["pull_requests"], f["deployments"], f["incidents"]
    assert set(issues["type"]) == {"Epic", "Story", "Task", "Bug"}
    assert set(issues.filter(pl.col("type") == "Bug")["escaped"]) == {True, False}
    assert prs["issue_key"].null_count() > 0 and prs["issue_key"].drop_nulls().len() > 0
    assert set(deps["system"]) == {"github", "jenkins"} and set(deps["environment"]) == {"production", "staging"}
    assert set(deps["outcome"]) >= {"success", "failure"} and set(deps["triggered_by"]) == {"person", "automation"}
    assert deps["is_rollback"].any() and deps["is_change_failure"].any()
    assert (
        incidents["caused_by_deployment_id"].null_count() > 0
        and incidents["caused_by_deployment_id"].drop_nulls().len()
    )
    assert f["test_cases"].height > 0 and f["events_daily"]["feature_key"].null_count() > 0


def test_the_programme_improves_deployment_success() -> None:
    world = generate_world(WorldConfig(seed=42, scale=1.0))
    deps = dict(truth_frames(world))["deployments"].filter(
        (pl.col("environment") == "production") & (pl.col("outcome") != "in_progress")
    )
    start = world.config.programme_start_at + timedelta(days=14)

    def success(frame: pl.DataFrame) -> float:
        return frame.filter(pl.col("outcome") == "success").height / frame.height

    before = success(deps.filter(pl.col("started_at") < world.config.programme_start_at))
    after = success(deps.filter(pl.col("started_at") >= start))
    assert before < 0.88 < 0.93 < after


def test_rule_based_change_failures_match_what_happened(world: World) -> None:
    deps = dict(truth_frames(world))["deployments"]
    intended = {d.deployment_id for d in world.deployments if d.bad}
    assert set(deps.filter("is_change_failure")["deployment_id"]) == intended
