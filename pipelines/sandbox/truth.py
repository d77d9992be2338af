"""The world's ground truth as Parquet: the yardstick every correctness test diffs against.

One file per entity (columns documented in `TRUTH_COLUMNS`), computed from the world as it stood
at `as_of` (entities that did not exist yet are absent; later state changes are not applied).
Rule-based facts (a PR's first deployment, a feature's release, a bug's escape) follow the exact
rules of the metric contract (shared/docs/metrics.md), applied to what really happened.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from pipelines.sandbox.generate import first_releases
from pipelines.sandbox.world import World, WorldView

TRUTH_COLUMNS: dict[str, dict[str, str]] = {
    "issues": {
        "key": "Jira issue key, e.g. PAY-12",
        "type": "Epic | Story | Task | Bug",
        "epic_key": "key of the epic (feature) the issue belongs to; null for epics and orphans",
        "created_at": "creation time (UTC)",
        "started_at": "first move to In Progress, if it happened by as-of",
        "done_at": "first move to Done, if it happened by as-of",
        "assignee": "stable person id of the assignee",
        "status": "status at as-of (To Do | In Progress | In Review | Done)",
        "escaped": "bugs only: created after the first production deployment of its feature, or with an "
        "affected version already released; null for other types",
    },
    "features": {
        "epic_key": "the epic's key",
        "created_at": "epic creation time",
        "first_deployed_at": "first successful production deployment that shipped any of its PRs",
        "first_released_at": "first successful production deployment containing its last merged PR "
        "(the release that time to market measures); null if not released by as-of",
        "legacy": "delivered before the world's history starts (no PRs in the data)",
    },
    "pull_requests": {
        "repo": "owner/name",
        "number": "PR number",
        "issue_key": "the Jira issue it references (title, branch or body); null for chores",
        "first_commit_at": "earliest authored time of its commits",
        "merged_at": "merge time, if merged by as-of",
        "merge_sha": "the commit the merge put on main (merge or squash commit)",
        "first_deployment_id": "the first successful production deployment that shipped it",
    },
    "deployments": {
        "deployment_id": "<system>:deployment:<key>: github:deployment:<id> or jenkins:deployment:<job>#<n>",
        "system": "github | jenkins",
        "service": "the deployed service (= repository name)",
        "repo": "owner/name",
        "environment": "production | staging",
        "outcome": "success | failure | in_progress (not finished at as-of)",
        "started_at": "start time",
        "finished_at": "finish time; null while in progress",
        "sha": "deployed commit",
        "triggered_by": "person | automation",
        "is_rollback": "redeploys an earlier commit to undo a faulty change",
        "is_change_failure": "successful production deployment that was rolled back or caused an incident",
        "change_failure_reason": "rollback | incident | rollback+incident; null otherwise",
    },
    "incidents": {
        "incident_id": "Datadog incident id",
        "service": "affected service or infrastructure component",
        "created_at": "creation time",
        "resolved_at": "resolution time, if resolved by as-of",
        "caused_by_deployment_id": "the deployment that caused it; null when not caused by a deployment",
    },
    "builds": {
        "build_id": "jenkins:build:<job>#<n> or github:build:<run id>",
        "system": "jenkins | github_actions",
        "service": "service built",
        "job": "Jenkins job full name or workflow name",
        "number": "build or run number",
        "sha": "commit built",
        "branch": "branch built",
        "pr_number": "pull request built, if any",
        "result": "SUCCESS | FAILURE | UNSTABLE | ABORTED; null while running",
        "started_at": "start time",
        "finished_at": "finish time; null while running",
        "trigger": "person | automation",
    },
    "test_cases": {
        "build_id": "the build that ran it",
        "suite": "test suite",
        "class_name": "test class",
        "name": "test name",
        "status": "PASSED | FAILED | SKIPPED",
        "duration_s": "seconds",
    },
    "events_daily": {
        "day": "UTC day",
        "event": "Mixpanel event name",
        "feature_key": "the epic the event maps to (its `feature` property, or the feature map); null if none",
        "events": "number of events",
        "users": "distinct users",
    },
    "programme": {
        "programme_start": "the day the improvement programme starts",
        "world_start": "first day of history",
        "world_end": "day after the last day of history",
        "as_of": "moment the truth describes",
    },
    "anomalies": {
        "kind": "bad_release_week | flaky_test_outbreak | adoption_drop",
        "subject": "service or feature affected",
        "week_start": "Monday of the (first) affected week",
        "description": "what happened",
    },
}


def _visible_events(view: WorldView) -> pl.DataFrame:
    """Events visible at as-of; honours the Mixpanel emulator's late-processing rule when it has one."""
    try:
        module = importlib.import_module("pipelines.sandbox.mixpanel")
    except ModuleNotFoundError:
        return view.events()
    visible: Callable[[pl.DataFrame, datetime], pl.DataFrame] | None = getattr(module, "visible_events", None)
    return visible(view.world.events, view.as_of) if visible else view.events()


def truth_frames(world: World, as_of: datetime | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
    view = world.visible(as_of)
    t = view.as_of
    deployments = [d for d in view.deployments()]
    finished = [d for d in deployments if view.deployment_finished(d)]
    merged = [p for p in view.pull_requests() if view.is_merged(p)]
    issues = view.issues()
    epic_of = {i.key: (i.key if i.issue_type == "Epic" else i.epic_key) for i in issues}
    first_dep, released = first_releases(finished, merged, world.mainline, epic_of)
    dep_finished = {d.deployment_id: d.finished_at for d in finished}
    first_deployed: dict[str, datetime] = {}
    for pr in merged:
        epic = epic_of.get(pr.issue_key or "")
        dep = first_dep.get(f"{pr.repo}#{pr.number}")
        if epic and dep:
            at = dep_finished[dep]
            first_deployed[epic] = min(first_deployed.get(epic, at), at)
    versions = {v.version_id: v for v in world.versions}

    by_key = {i.key: i for i in issues}

    def escaped(issue_key: str) -> bool | None:
        issue = by_key[issue_key]
        if issue.issue_type != "Bug":
            return None
        shipped = first_deployed.get(issue.epic_key or "")
        if shipped is not None and issue.created_at > shipped:
            return True
        return any(versions[v].released_at(issue.created_at) for v in issue.affected_version_ids)

    yield (
        "issues",
        pl.DataFrame(
            [
                {
                    "key": i.key,
                    "type": i.issue_type,
                    "epic_key": i.epic_key,
                    "created_at": i.created_at,
                    "started_at": i.transition_at("In Progress", t),
                    "done_at": i.transition_at("Done", t),
                    "assignee": i.assignee_id,
                    "status": i.status_at(t),
                    "escaped": escaped(i.key),
                }
                for i in issues
            ],
            schema_overrides={"escaped": pl.Boolean, "epic_key": pl.String},
        ),
    )
    yield (
        "features",
        pl.DataFrame(
            [
                {
                    "epic_key": e.key,
                    "created_at": e.created_at,
                    "first_deployed_at": first_deployed.get(e.key),
                    "first_released_at": released.get(e.key),
                    "legacy": e.legacy,
                }
                for e in issues
                if e.issue_type == "Epic"
            ]
        ),
    )
    yield (
        "pull_requests",
        pl.DataFrame(
            [
                {
                    "repo": p.repo,
                    "number": p.number,
                    "issue_key": p.issue_key,
                    "first_commit_at": min((c.authored_at for c in view.pr_commits(p)), default=None),
                    "merged_at": p.merged_at if view.is_merged(p) else None,
                    "merge_sha": p.merge_sha if view.is_merged(p) else None,
                    "first_deployment_id": first_dep.get(f"{p.repo}#{p.number}"),
                }
                for p in view.pull_requests()
            ],
            schema_overrides={"issue_key": pl.String, "first_deployment_id": pl.String},
        ),
    )
    failures = change_failures(view)
    yield (
        "deployments",
        pl.DataFrame(
            [
                {
                    "deployment_id": d.deployment_id,
                    "system": d.system,
                    "service": d.service,
                    "repo": d.repo,
                    "environment": d.environment,
                    "outcome": d.outcome if view.deployment_finished(d) else "in_progress",
                    "started_at": d.started_at,
                    "finished_at": d.finished_at if view.deployment_finished(d) else None,
                    "sha": d.sha,
                    "triggered_by": d.triggered_by,
                    "is_rollback": d.is_rollback,
                    "is_change_failure": d.deployment_id in failures,
                    "change_failure_reason": failures.get(d.deployment_id),
                }
                for d in deployments
            ],
            schema_overrides={"change_failure_reason": pl.String},
        ),
    )
    yield (
        "incidents",
        pl.DataFrame(
            [
                {
                    "incident_id": i.incident_id,
                    "service": i.service,
                    "created_at": i.created_at,
                    "resolved_at": i.resolved_at if view.incident_resolved(i) else None,
                    "caused_by_deployment_id": i.caused_by_deployment_id,
                }
                for i in view.incidents()
            ],
            schema_overrides={"caused_by_deployment_id": pl.String},
        ),
    )
    builds = view.builds()
    yield (
        "builds",
        pl.DataFrame(
            [
                {
                    "build_id": b.build_id,
                    "system": b.system,
                    "service": b.service,
                    "job": b.job,
                    "number": b.number,
                    "sha": b.sha,
                    "branch": b.branch,
                    "pr_number": b.pr_number,
                    "result": b.result if view.build_finished(b) else None,
                    "started_at": b.started_at,
                    "finished_at": b.finished_at if view.build_finished(b) else None,
                    "trigger": b.trigger,
                }
                for b in builds
            ],
            schema_overrides={"pr_number": pl.Int64, "result": pl.String},
        ),
    )
    yield (
        "test_cases",
        pl.DataFrame(
            [
                {
                    "build_id": b.build_id,
                    "suite": c.suite,
                    "class_name": c.class_name,
                    "name": c.name,
                    "status": c.status,
                    "duration_s": c.duration_s,
                }
                for b in builds
                if view.build_finished(b)
                for c in b.test_cases
            ],
            schema={
                "build_id": pl.String,
                "suite": pl.String,
                "class_name": pl.String,
                "name": pl.String,
                "status": pl.String,
                "duration_s": pl.Float64,
            },
        ),
    )
    yield "events_daily", events_daily(world, _visible_events(view), {i.key for i in issues if i.issue_type == "Epic"})
    cfg = world.config
    yield (
        "programme",
        pl.DataFrame(
            [
                {
                    "programme_start": cfg.programme_start_at.date(),
                    "world_start": cfg.start_at.date(),
                    "world_end": cfg.end_at.date(),
                    "as_of": t,
                }
            ]
        ),
    )
    yield (
        "anomalies",
        pl.DataFrame(world.planted_anomalies, schema=dict.fromkeys(TRUTH_COLUMNS["anomalies"], pl.String)),
    )


def events_daily(world: World, events: pl.DataFrame, epics: set[str]) -> pl.DataFrame:
    """Daily events and distinct users per (event, feature), with the feature-map rule applied."""
    by_name = pl.DataFrame(
        {"event": list(world.feature_event_names), "mapped": list(world.feature_event_names.values())},
        schema={"event": pl.String, "mapped": pl.String},
    )
    known = pl.Series("known", sorted(epics), dtype=pl.String)
    return (
        events.join(by_name, on="event", how="left")
        .with_columns(
            day=pl.from_epoch("time", time_unit="s").dt.date(),
            feature_key=pl.when(pl.col("feature").is_in(known.implode()))
            .then(pl.col("feature"))
            .otherwise(pl.col("mapped")),
        )
        .group_by("day", "event", "feature_key")
        .agg(events=pl.len(), users=pl.col("distinct_id").n_unique())
        .sort("day", "event", "feature_key", nulls_last=True)
    )


def change_failures(view: WorldView) -> dict[str, str]:
    """Successful production deployments that failed as changes, with the reason (metrics.md).

    Rolled back: a later production deployment of the same service redeploys an earlier SHA (the
    deployment being undone is the last successful one before the rollback). Incident: an incident
    on the same service created after it and before the next successful production deployment.
    """
    prod = sorted(
        (
            d
            for d in view.deployments()
            if d.environment == "production" and view.deployment_finished(d) and d.outcome == "success"
        ),
        key=lambda d: (d.service, d.finished_at),
    )
    reasons: dict[str, set[str]] = {}
    by_service: dict[str, list] = {}
    for d in prod:
        by_service.setdefault(d.service, []).append(d)
    for service, deps in by_service.items():
        seen: set[str] = set()
        for k, d in enumerate(deps):
            if k > 0 and d.sha in seen and d.sha != deps[k - 1].sha:
                reasons.setdefault(deps[k - 1].deployment_id, set()).add("rollback")
            seen.add(d.sha)
        for inc in view.incidents():
            if inc.service != service:
                continue
            before = [d for d in deps if d.finished_at <= inc.created_at]
            if before and (inc.created_at - before[-1].finished_at).days < 7:
                reasons.setdefault(before[-1].deployment_id, set()).add("incident")
    return {k: "+".join(sorted(v)) for k, v in reasons.items()}


def write_truth(world: World, out: Path, as_of: datetime | None = None) -> list[tuple[Path, int]]:
    """Write every truth frame to `out/<entity>.parquet`; byte-identical for the same world and as-of."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in truth_frames(world, as_of):
        path = out / f"{name}.parquet"
        frame.write_parquet(path, compression="zstd", statistics=False)
        written.append((path, frame.height))
    return written
