"""The simulated organisation's domain model: what really happened, in tool-neutral terms.

The generator (`generate.py`) fills a `World`; the emulators (`github.py`, `jira.py`, …) render it
as each API's payloads, and `truth.py` exports it as the yardstick for tests. Every entity keeps its
full timeline, so a view "as of" any moment can be rendered: later entities are absent and later
state changes are not yet applied (see `World.visible`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import polars as pl

DEFAULT_END = date(2026, 11, 1)
"""The default world ends (exclusive) at 2026-11-01 00:00 UTC, whatever day it is generated."""

HISTORY_DAYS = 365
PROGRAMME_OFFSET_DAYS = 273
"""The improvement programme starts about nine months into the year."""
PROGRAMME_RAMP_DAYS = 14
"""Rates shift gradually over two weeks after the programme starts."""


def utc(d: date) -> datetime:
    """Midnight UTC of a calendar day."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """The parameters that fully determine a world (same config → same world, on any day)."""

    seed: int = 42
    scale: float = 1.0
    end: date = DEFAULT_END

    @property
    def end_at(self) -> datetime:
        return utc(self.end)

    @property
    def start_at(self) -> datetime:
        return self.end_at - timedelta(days=HISTORY_DAYS)

    @property
    def programme_start_at(self) -> datetime:
        return self.start_at + timedelta(days=PROGRAMME_OFFSET_DAYS)

    def progress(self, t: datetime) -> float:
        """How far the improvement programme has taken effect at `t`: 0 before, 1 after the ramp."""
        elapsed = (t - self.programme_start_at).total_seconds()
        return min(1.0, max(0.0, elapsed / (PROGRAMME_RAMP_DAYS * 86400)))

    def mix(self, before: float, after: float, t: datetime) -> float:
        """A rate that moves from `before` to `after` as the programme takes effect."""
        return before + (after - before) * self.progress(t)


# --- people and organisation -------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    person_id: str  # stable, tool-neutral, e.g. "p007"
    name: str
    login: str  # GitHub login
    email: str
    jira_account_id: str
    jenkins_user: str
    team_key: str
    github_id: int
    is_bot: bool = False


@dataclass(slots=True)
class Service:
    name: str  # also the repository name and the Datadog `service` tag
    team_key: str
    repo_id: int
    deploys_via: str  # "github" (GitHub Deployments) or "jenkins" (a Jenkins deploy job)
    ci: str  # "github_actions" or "jenkins"
    created_at: datetime

    def repo(self, org: str) -> str:
        return f"{org}/{self.name}"


@dataclass(slots=True)
class Team:
    key: str  # also the Jira project key
    name: str
    project_id: int
    board_id: int
    lead_id: str
    member_ids: list[str]
    services: list[str]


# --- Jira ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Transition:
    history_id: int
    at: datetime
    author_id: str
    from_status: str
    to_status: str


@dataclass(slots=True)
class Issue:
    issue_id: int
    key: str
    project_key: str
    issue_type: str  # Epic | Story | Task | Bug
    summary: str
    created_at: datetime
    reporter_id: str
    assignee_id: str | None
    priority: str
    story_points: float | None
    epic_key: str | None = None
    labels: list[str] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    sprint_ids: list[int] = field(default_factory=list)
    fix_version_ids: list[int] = field(default_factory=list)
    affected_version_ids: list[int] = field(default_factory=list)
    legacy: bool = False  # an epic delivered before the world's history starts

    def status_at(self, t: datetime) -> str:
        status = "To Do"
        for tr in self.transitions:
            if tr.at <= t:
                status = tr.to_status
        return status

    def transition_at(self, to_status: str, t: datetime) -> datetime | None:
        """When the issue first entered `to_status`, if it had by `t`."""
        for tr in self.transitions:
            if tr.to_status == to_status and tr.at <= t:
                return tr.at
        return None

    def updated_at(self, t: datetime) -> datetime:
        seen = [tr.at for tr in self.transitions if tr.at <= t]
        return max([self.created_at, *seen])


@dataclass(slots=True)
class Sprint:
    sprint_id: int
    board_id: int
    name: str
    start_at: datetime
    end_at: datetime
    goal: str

    def state_at(self, t: datetime) -> str:
        if t < self.start_at:
            return "future"
        return "active" if t < self.end_at else "closed"


@dataclass(slots=True)
class Version:
    version_id: int
    project_key: str
    name: str
    release_date: date
    description: str

    def released_at(self, t: datetime) -> bool:
        return utc(self.release_date) + timedelta(days=1) <= t


# --- GitHub --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Commit:
    sha: str
    repo: str
    author_id: str
    message: str
    authored_at: datetime
    committed_at: datetime
    parents: list[str]
    additions: int
    deletions: int
    pr_number: int | None = None  # the pull request the commit was written on (None for merge commits)
    landed_at: datetime | None = None  # when it became reachable from main (None: never, e.g. squashed)


@dataclass(slots=True)
class Review:
    review_id: int
    reviewer_id: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED
    submitted_at: datetime
    body: str


@dataclass(slots=True)
class PullRequest:
    pr_id: int
    repo: str
    number: int
    title: str
    branch: str
    body: str
    author_id: str
    created_at: datetime
    commits: list[Commit]
    reviews: list[Review]
    merged_at: datetime | None
    closed_at: datetime | None
    merge_sha: str | None  # the commit the merge put on the main branch (merge or squash commit)
    merge_method: str | None  # "merge" | "squash" | None when never merged
    issue_key: str | None  # the Jira issue it really implements (None: a chore, or a decoy key)
    base_sha: str  # main's head when the branch was cut
    labels: list[str] = field(default_factory=list)

    @property
    def first_commit_at(self) -> datetime:
        return min(c.authored_at for c in self.commits)

    def updated_at(self, t: datetime) -> datetime:
        moments = [self.created_at]
        moments += [c.committed_at for c in self.commits if c.committed_at <= t]
        moments += [r.submitted_at for r in self.reviews if r.submitted_at <= t]
        for m in (self.merged_at, self.closed_at):
            if m is not None and m <= t:
                moments.append(m)
        return max(moments)


@dataclass(slots=True)
class Release:
    release_id: int
    repo: str
    tag: str
    name: str
    sha: str
    author_id: str
    created_at: datetime
    published_at: datetime
    body: str


# --- CI ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Stage:
    stage_id: int
    name: str
    status: str  # wfapi vocabulary: SUCCESS | FAILED | UNSTABLE | ABORTED | NOT_EXECUTED
    started_at: datetime
    duration_ms: int


@dataclass(slots=True)
class TestCase:
    suite: str
    name: str
    class_name: str
    status: str  # PASSED | FAILED | SKIPPED
    duration_s: float
    error: str | None = None


@dataclass(slots=True)
class Build:
    """One CI run: a Jenkins build of a multibranch job or a GitHub Actions workflow run."""

    build_id: str  # "jenkins:build:<job full name>#<n>" or "github:build:<run id>"
    system: str  # "jenkins" | "github_actions"
    service: str
    job: str  # Jenkins job full name, or the workflow name
    number: int  # Jenkins build number, or the Actions run number
    run_id: int  # Actions run id (Jenkins: same as number)
    sha: str
    branch: str
    event: str  # push | pull_request | ...
    started_at: datetime
    duration_ms: int
    result: str  # SUCCESS | FAILURE | UNSTABLE | ABORTED
    trigger: str  # "person" | "automation"
    triggered_by_id: str | None
    pr_number: int | None
    stages: list[Stage] = field(default_factory=list)
    test_cases: list[TestCase] = field(default_factory=list)
    changeset_shas: list[str] = field(default_factory=list)
    run_attempt: int = 1

    @property
    def finished_at(self) -> datetime:
        return self.started_at + timedelta(milliseconds=self.duration_ms)


# --- deployments ---------------------------------------------------------------------------------


@dataclass(slots=True)
class DeploymentStatus:
    status_id: int
    state: str  # GitHub vocabulary: queued | in_progress | success | failure | error
    at: datetime
    creator_id: str


@dataclass(slots=True)
class Deployment:
    """One deployment attempt, through GitHub Deployments or a Jenkins deploy job."""

    deployment_id: str  # "github:deployment:<id>" or "jenkins:deployment:<job full name>#<n>"
    system: str  # "github" | "jenkins"
    service: str
    repo: str
    environment: str  # "production" | "staging"
    sha: str
    ref: str
    started_at: datetime
    finished_at: datetime
    outcome: str  # "success" | "failure"
    triggered_by: str  # "person" | "automation"
    creator_id: str
    is_rollback: bool
    github_id: int | None = None  # GitHub deployment id
    jenkins_job: str | None = None
    jenkins_number: int | None = None
    statuses: list[DeploymentStatus] = field(default_factory=list)
    raw_outcome: str = ""  # the tool's own word (failure | error | FAILURE | ABORTED | success | SUCCESS)
    stages: list[Stage] = field(default_factory=list)
    bad: bool = False  # generator intent: this change is faulty (causes a rollback or an incident)


# --- Datadog -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Incident:
    incident_id: str  # Datadog's uuid
    public_id: int
    title: str
    service: str  # a deployable service, or an infrastructure component with no deployments
    severity: str
    created_at: datetime
    detected_at: datetime
    resolved_at: datetime | None
    commander_id: str
    customer_impacted: bool
    caused_by_deployment_id: str | None
    modified_at: datetime


@dataclass(slots=True)
class Monitor:
    monitor_id: int
    name: str
    service: str
    monitor_type: str
    query: str
    created_at: datetime
    modified_at: datetime
    creator_id: str
    tags: list[str]


@dataclass(slots=True)
class Slo:
    slo_id: str
    name: str
    service: str
    target: float
    created_at: datetime
    modified_at: datetime
    creator_id: str
    daily_sli: list[float]  # one value per day of history, from the world's start


@dataclass(slots=True)
class DatadogEvent:
    event_id: str
    title: str
    text: str
    service: str
    at: datetime
    source: str
    alert_type: str
    tags: list[str]


# --- the world -----------------------------------------------------------------------------------


@dataclass
class World:
    """Everything that happened, in full; emulators render `visible(as_of)` views of it."""

    config: WorldConfig
    org: str
    teams: list[Team]
    people: list[Person]
    services: list[Service]
    infrastructure: list[str]
    issues: list[Issue]
    sprints: list[Sprint]
    versions: list[Version]
    pull_requests: list[PullRequest]
    mainline: dict[str, list[Commit]]  # repo → commits reachable from main, oldest first
    releases: list[Release]
    builds: list[Build]
    deployments: list[Deployment]
    incidents: list[Incident]
    monitors: list[Monitor]
    slos: list[Slo]
    datadog_events: list[DatadogEvent]
    events: pl.DataFrame  # Mixpanel events, one row per event (see generate.EVENT_SCHEMA)
    feature_event_names: dict[str, str]  # event name → epic key, for events without the property
    planted_anomalies: list[dict[str, str]]

    @property
    def people_by_id(self) -> dict[str, Person]:
        return {p.person_id: p for p in self.people}

    @property
    def issues_by_key(self) -> dict[str, Issue]:
        return {i.key: i for i in self.issues}

    def default_as_of(self) -> datetime:
        return self.config.end_at

    def visible(self, as_of: datetime | None = None) -> WorldView:
        return WorldView(self, as_of or self.default_as_of())


@dataclass
class WorldView:
    """The world as it stood at `as_of`: entity lists filtered to what existed then.

    Entities keep their full timelines; renderers apply `as_of` to state (status, merged,
    finished, resolved) through the helpers on each entity and on this view.
    """

    world: World
    as_of: datetime

    def issues(self) -> list[Issue]:
        return [i for i in self.world.issues if i.created_at <= self.as_of]

    def pull_requests(self) -> list[PullRequest]:
        return [p for p in self.world.pull_requests if p.created_at <= self.as_of]

    def pr_commits(self, pr: PullRequest) -> list[Commit]:
        return [c for c in pr.commits if c.committed_at <= self.as_of]

    def pr_reviews(self, pr: PullRequest) -> list[Review]:
        return [r for r in pr.reviews if r.submitted_at <= self.as_of]

    def is_merged(self, pr: PullRequest) -> bool:
        return pr.merged_at is not None and pr.merged_at <= self.as_of

    def is_closed(self, pr: PullRequest) -> bool:
        return pr.closed_at is not None and pr.closed_at <= self.as_of

    def mainline(self, repo: str) -> list[Commit]:
        return [c for c in self.world.mainline.get(repo, []) if c.landed_at and c.landed_at <= self.as_of]

    def builds(self) -> list[Build]:
        return [b for b in self.world.builds if b.started_at <= self.as_of]

    def build_finished(self, b: Build) -> bool:
        return b.finished_at <= self.as_of

    def deployments(self) -> list[Deployment]:
        return [d for d in self.world.deployments if d.started_at <= self.as_of]

    def deployment_finished(self, d: Deployment) -> bool:
        return d.finished_at <= self.as_of

    def deployment_statuses(self, d: Deployment) -> list[DeploymentStatus]:
        return [s for s in d.statuses if s.at <= self.as_of]

    def releases(self) -> list[Release]:
        return [r for r in self.world.releases if r.published_at <= self.as_of]

    def incidents(self) -> list[Incident]:
        return [i for i in self.world.incidents if i.created_at <= self.as_of]

    def incident_resolved(self, i: Incident) -> bool:
        return i.resolved_at is not None and i.resolved_at <= self.as_of

    def monitors(self) -> list[Monitor]:
        return [m for m in self.world.monitors if m.created_at <= self.as_of]

    def slos(self) -> list[Slo]:
        return [s for s in self.world.slos if s.created_at <= self.as_of]

    def datadog_events(self) -> list[DatadogEvent]:
        return [e for e in self.world.datadog_events if e.at <= self.as_of]

    def sprints(self) -> list[Sprint]:
        # Jira lists future sprints too; a sprint is planned two weeks before it starts.
        return [s for s in self.world.sprints if s.start_at - timedelta(days=14) <= self.as_of]

    def versions(self) -> list[Version]:
        return [v for v in self.world.versions if utc(v.release_date) - timedelta(days=45) <= self.as_of]

    def events(self) -> pl.DataFrame:
        limit = int(self.as_of.timestamp())
        return self.world.events.filter(pl.col("time") < limit)
