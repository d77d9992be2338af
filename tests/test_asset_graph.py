"""A snapshot of the whole asset graph (keys, groups, dependencies, checks, jobs, schedules).

An intended change to the graph is recorded by regenerating the snapshot:
`OPSMAP_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_asset_graph.py`, and reviewing the diff.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

from dagster import AssetKey

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph() -> dict[str, object]:
    from pipelines.definitions import defs

    asset_graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(asset_graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = asset_graph.get(key)
        if not node.is_materializable:
            continue
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
            **({"partitions": type(node.partitions_def).__name__} if node.partitions_def else {}),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules or []),
    }


def test_the_asset_graph_matches_its_snapshot() -> None:
    current = graph()
    if os.environ.get("OPSMAP_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert current == recorded, "the asset graph changed: regenerate the snapshot if intended (see module doc)"


def test_the_lineage_runs_from_api_to_kpi() -> None:
    assets = graph()["assets"]
    chain = [
        "raw_github/pull_requests",
        "staging/stg_github__pull_requests",
        "intermediate/int_pull_requests_linked_to_issues",
        "development/pull_requests",
        "deployment/changes",
    ]
    for upstream, downstream in itertools.pairwise(chain):
        assert upstream in assets[downstream]["deps"], f"{downstream} does not read {upstream}"
    assert "deployment/changes" in assets["kpi/dora"]["deps"]
    assert {"primary_key", "contract"} <= set(assets["deployment/deployments"]["checks"])
    assert graph()["schedules"] == ["nightly_schedule"] and "nightly" in graph()["jobs"]
    assert all(AssetKey.from_user_string(k).path[0] != "" for k in assets)
