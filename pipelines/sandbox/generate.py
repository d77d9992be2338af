"""Generates the simulated organisation: a deterministic function of (seed, scale, end).

The story, in the order it is simulated (each step only reads what earlier steps made):
1. teams, people, services, sprints and fix versions;
2. epics (features) with stories, tasks and bugs, and the pull requests that implement them;
3. each repository's main branch from the merged pull requests;
4. deployments per service on a cadence, deploying main's head: staging then production,
   failures and retries, faulty changes that are rolled back or cause incidents;
5. CI builds (Jenkins multibranch or GitHub Actions) with stages and test reports;
6. Datadog monitors, SLOs and events; 7. Mixpanel usage of the released features.

Rates move from their "before" to their "after" value as the improvement programme takes effect
(`WorldConfig.mix`). Every random draw comes from a named stream, so one part of the story can
change without reshuffling the others.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from pipelines.sandbox.world import (
    Build,
    Commit,
    DatadogEvent,
    Deployment,
    DeploymentStatus,
    Incident,
    Issue,
    Monitor,
    Person,
    PullRequest,
    Release,
    Review,
    Service,
    Slo,
    Sprint,
    Stage,
    Team,
    TestCase,
    Transition,
    Version,
    World,
    WorldConfig,
    utc,
)

ORG = "acme"

# (team name, Jira project key, [(service, deploys via, CI system)])
TEAM_BLUEPRINTS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    ("Payments", "PAY", [("payments-api", "github", "github_actions"), ("ledger-worker", "jenkins", "jenkins")]),
    ("Search", "SRCH", [("search-api", "github", "github_actions"), ("indexer", "jenkins", "jenkins")]),
    ("Growth", "GRO", [("web-app", "github", "github_actions"), ("notifications", "github", "github_actions")]),
    ("Platform", "PLAT", [("auth-service", "github", "github_actions"), ("gateway", "jenkins", "jenkins")]),
]

# Features delivered before the history starts. Their usage events predate the `feature` property,
# so the feature map in warehouse/feature_map.yaml maps them by event name (fixed for every seed).
LEGACY_FEATURES: dict[str, list[tuple[str, str]]] = {
    "PAY": [("Card Payments", "Card Payment Completed"), ("Invoice Download", "Invoice Downloaded")],
    "SRCH": [("Keyword Search", "Search Performed"), ("Search Filters", "Search Filter Applied")],
    "GRO": [("Onboarding Tour", "Onboarding Step Completed"), ("Email Digest", "Digest Email Opened")],
    "PLAT": [("Single Sign-On", "SSO Login Completed"), ("API Keys", "API Key Created")],
}

INFRASTRUCTURE = ["postgres-primary", "cdn-edge", "payment-provider", "kafka-cluster"]
"""Components that incidents can hit but that nobody deploys: their incidents are never attributable."""

GENERIC_EVENTS = ["Page Viewed", "Session Started", "Signed In", "Settings Opened"]

FIRST_NAMES = [
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Leo",
    "Maya",
    "Noah",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
]
LAST_NAMES = [
    "Patel",
    "Okafor",
    "Nguyen",
    "Schmidt",
    "Rossi",
    "Kowalski",
    "Haddad",
    "Silva",
    "Tanaka",
    "Moreau",
    "Jensen",
    "Novak",
    "Ibrahim",
    "Costa",
    "Lindqvist",
    "Mensah",
]
FEATURE_ADJECTIVES = [
    "Saved",
    "Smart",
    "Instant",
    "Bulk",
    "Scheduled",
    "Shared",
    "Custom",
    "Live",
    "Guided",
    "Secure",
    "Offline",
    "Team",
    "Mobile",
    "Recurring",
    "Unified",
    "Advanced",
]
FEATURE_NOUNS = [
    "Searches",
    "Exports",
    "Reports",
    "Alerts",
    "Dashboards",
    "Payouts",
    "Invites",
    "Templates",
    "Reminders",
    "Workflows",
    "Tags",
    "Audit Log",
    "Billing",
    "Insights",
    "Webhooks",
    "Comments",
]
CHORE_TITLES = [
    "Bump dependencies",
    "Refactor configuration loading",
    "Tidy logging",
    "Upgrade base image",
    "Speed up test suite",
    "Remove dead code",
    "Update CODEOWNERS",
    "Pin linter version",
]
# Chore titles that look like Jira keys to a naive pattern but name no project: the link rule must
# only accept keys of known projects.
DECOY_TITLES = ["Support UTF-8 file names", "Parse ISO-8601 offsets", "Handle SHA-256 digests"]

STATUS_FLOW = ["To Do", "In Progress", "In Review", "Done"]
POST_PROGRAMME_SHARE = 70 * 2.2 / (270 + 70 * 2.2)
"""Share of epics created in days 250-320 when that stretch has 2.2x the density of days -20-250."""
TEST_SUITES = ["api", "domain", "storage", "integration"]


def _hex(*parts: object, n: int = 40) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:n]


def _sec(t: datetime) -> datetime:
    return t.replace(microsecond=0)


class _Generator:
    def __init__(self, config: WorldConfig) -> None:
        self.cfg = config
        self.rate = min(config.scale, 1.0)  # activity per team
        self.copies = max(1, round(config.scale)) if config.scale > 1 else 1  # teams multiply past 1
        self.start = config.start_at
        self.end = config.end_at
        self._counters: dict[str, int] = defaultdict(int)

    def rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.cfg.seed}:{stream}")

    def next_id(self, kind: str, start: int = 1) -> int:
        self._counters[kind] += 1
        return start + self._counters[kind] - 1

    def count(self, base: float, rng: random.Random) -> int:
        """A count that scales with the activity rate, rounded stochastically (small scales stay > 0)."""
        x = base * self.rate
        return int(x) + (1 if rng.random() < x - int(x) else 0)

    def hours(self, rng: random.Random, median: float, sigma: float = 0.6) -> timedelta:
        return timedelta(hours=median * math.exp(rng.gauss(0, sigma)))

    # --- 1. organisation ---------------------------------------------------------------------------

    def organisation(self) -> None:
        rng = self.rng("people")
        self.people: list[Person] = []
        self.teams: list[Team] = []
        self.services: list[Service] = []
        used_names: set[str] = set()
        for copy in range(self.copies):
            for t_index, (name, key, services) in enumerate(TEAM_BLUEPRINTS):
                suffix = "" if copy == 0 else str(copy + 1)
                team_key = f"{key}{suffix}"
                members: list[str] = []
                for _ in range(6):
                    while True:
                        full = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                        if full not in used_names:
                            break
                    used_names.add(full)
                    pid = f"p{len(self.people) + 1:04d}"
                    first, last = full.lower().split()
                    self.people.append(
                        Person(
                            person_id=pid,
                            name=full,
                            login=f"{first}{last}",
                            email=f"{first}.{last}@acme.example",
                            jira_account_id=_hex("jira-account", pid, n=24),
                            jenkins_user=f"{first}.{last}",
                            team_key=team_key,
                            github_id=5_000_000 + len(self.people),
                        )
                    )
                    members.append(pid)
                index = copy * len(TEAM_BLUEPRINTS) + t_index
                service_names = [s if copy == 0 else f"{s}-{copy + 1}" for s, _, _ in services]
                self.teams.append(
                    Team(
                        key=team_key,
                        name=f"{name}{' ' + suffix if suffix else ''}",
                        project_id=10_000 + index,
                        board_id=1 + index,
                        lead_id=members[0],
                        member_ids=members,
                        services=service_names,
                    )
                )
                for (_, via, ci), service_name in zip(services, service_names, strict=True):
                    self.services.append(
                        Service(
                            name=service_name,
                            team_key=team_key,
                            repo_id=600_000_000 + len(self.services),
                            deploys_via=via,
                            ci=ci,
                            created_at=self.start - timedelta(days=400 + 30 * len(self.services)),
                        )
                    )
        self.bot = Person(
            "bot-deploy",
            "Deploy Bot",
            "acme-deploy[bot]",
            "deploy-bot@acme.example",
            _hex("jira-account", "bot", n=24),
            "jenkins",
            "",
            9_000_001,
            is_bot=True,
        )
        self.people.append(self.bot)
        self.team_by_key = {t.key: t for t in self.teams}
        self.service_by_name = {s.name: s for s in self.services}

    def calendar(self) -> None:
        self.sprints: list[Sprint] = []
        self.versions: list[Version] = []
        first_monday = self.start - timedelta(days=self.start.weekday())
        for team in self.teams:
            n, s = 0, first_monday
            while s < self.end + timedelta(days=28):
                n += 1
                self.sprints.append(
                    Sprint(
                        self.next_id("sprint", 100),
                        team.board_id,
                        f"{team.key} Sprint {n}",
                        s + timedelta(hours=9),
                        s + timedelta(days=13, hours=17),
                        f"Sprint {n} goals",
                    )
                )
                s += timedelta(days=14)
            month = self.start.date().replace(day=1)
            while utc(month) < self.end + timedelta(days=31):
                nxt = (month + timedelta(days=32)).replace(day=1)
                self.versions.append(
                    Version(
                        self.next_id("version", 10_100),
                        team.key,
                        f"{team.key} {month:%Y.%m}",
                        nxt - timedelta(days=1),
                        f"Monthly release {month:%B %Y}",
                    )
                )
                month = nxt
        self.sprints_by_board: dict[int, list[Sprint]] = defaultdict(list)
        for sp in self.sprints:
            self.sprints_by_board[sp.board_id].append(sp)

    # --- 2. Jira issues and pull requests ----------------------------------------------------------

    def new_issue(
        self,
        team: Team,
        issue_type: str,
        summary: str,
        created: datetime,
        rng: random.Random,
        epic_key: str | None = None,
        assignee: str | None = None,
    ) -> Issue:
        n = self.next_id(f"issue-key-{team.key}")
        points = float(rng.choice([1, 2, 3, 5, 8])) if issue_type in ("Story", "Task") else None
        issue = Issue(
            issue_id=self.next_id("issue", 20_001),
            key=f"{team.key}-{n}",
            project_key=team.key,
            issue_type=issue_type,
            summary=summary,
            created_at=_sec(created),
            reporter_id=team.lead_id if issue_type != "Bug" else rng.choice(team.member_ids),
            assignee_id=assignee,
            priority=rng.choice(["Medium", "Medium", "High", "Low"]) if issue_type != "Epic" else "Medium",
            story_points=points,
            epic_key=epic_key,
            labels=[issue_type.lower()] if issue_type == "Bug" else [],
        )
        self.issues.append(issue)
        return issue

    def transition(self, issue: Issue, to_status: str, at: datetime, author: str) -> None:
        if at >= self.end:
            return
        at = max(at, issue.created_at + timedelta(minutes=1))  # nothing happens to an issue before it exists
        from_status = issue.transitions[-1].to_status if issue.transitions else "To Do"
        issue.transitions.append(Transition(self.next_id("history", 90_001), _sec(at), author, from_status, to_status))

    def work_on(
        self, issue: Issue, team: Team, start: datetime, rng: random.Random, n_prs: int = 1, title_prefix: str = ""
    ) -> list[PullRequest]:
        """Implement an issue: pull requests from `start`, and the issue's status changes."""
        author = issue.assignee_id or rng.choice(team.member_ids)
        issue.assignee_id = author
        self.transition(issue, "In Progress", start - timedelta(hours=rng.uniform(0.2, 6)), author)
        prs: list[PullRequest] = []
        t = start
        for _ in range(n_prs):
            pr = self.pull_request(team, author, t, rng, issue=issue, title_prefix=title_prefix)
            prs.append(pr)
            t = (pr.merged_at or t) + timedelta(hours=rng.uniform(1, 24))
        if prs and prs[0].created_at < self.end:
            self.transition(issue, "In Review", prs[0].created_at, author)
        last = prs[-1] if prs else None
        if last is not None and last.merged_at is not None:
            self.transition(issue, "Done", last.merged_at + timedelta(hours=rng.uniform(0.1, 4)), author)
        self.sprint_membership(issue, team)
        return prs

    def sprint_membership(self, issue: Issue, team: Team) -> None:
        start = issue.transition_at("In Progress", self.end) or issue.created_at
        done = issue.transition_at("Done", self.end) or self.end
        for sp in self.sprints_by_board[team.board_id]:
            if sp.start_at < done and sp.end_at > start and issue.issue_type != "Epic":
                issue.sprint_ids.append(sp.sprint_id)

    def pull_request(
        self,
        team: Team,
        author: str,
        first_commit: datetime,
        rng: random.Random,
        issue: Issue | None = None,
        title: str | None = None,
        title_prefix: str = "",
    ) -> PullRequest:
        service = self.service_by_name[rng.choice(team.services)]
        repo = service.repo(ORG)
        number = self.next_id(f"pr-{repo}")
        coding = self.hours(rng, self.cfg.mix(16, 6, first_commit))
        created = _sec(first_commit + coding)
        review_wait = self.hours(rng, self.cfg.mix(26, 6, first_commit), 0.7)
        merged = _sec(created + review_wait)
        abandoned = issue is None and rng.random() < 0.06
        n_commits = rng.randint(2, 6)
        commits: list[Commit] = []
        span = (merged - first_commit).total_seconds() - 1800
        for k in range(n_commits):
            at = _sec(first_commit + timedelta(seconds=max(0.0, span) * (k / n_commits) ** 1.5))
            sha = _hex(self.cfg.seed, repo, "commit", number, k)
            commits.append(
                Commit(
                    sha,
                    repo,
                    author,
                    self.commit_message(issue, k, rng),
                    at,
                    at,
                    [],
                    rng.randint(3, 220),
                    rng.randint(0, 120),
                    number,
                )
            )
        for prev, cur in itertools.pairwise(commits):
            cur.parents = [prev.sha]
        reviewers = [m for m in team.member_ids if m != author]
        reviews: list[Review] = []
        for k in range(rng.randint(1, 3)):
            at = _sec(created + (merged - created) * ((k + 1) / 4))
            state = "APPROVED" if k == 0 or rng.random() < 0.5 else rng.choice(["COMMENTED", "CHANGES_REQUESTED"])
            reviews.append(Review(self.next_id("review", 700_001), rng.choice(reviewers), state, at, "Looks good."))
        key_in = rng.random()
        summary = issue.summary if issue else (title or rng.choice(CHORE_TITLES))
        slug = "-".join(summary.lower().split()[:4]).replace(",", "")
        if issue is not None:
            if key_in < 0.65:
                pr_title, branch, body = (
                    f"{issue.key} {title_prefix}{summary}",
                    f"feature/{slug}",
                    "Implements the story.",
                )
            elif key_in < 0.9:
                pr_title, branch, body = f"{title_prefix}{summary}", f"feature/{issue.key}-{slug}", "See branch."
            else:
                pr_title, branch, body = f"{title_prefix}{summary}", f"feature/{slug}", f"Closes {issue.key}."
        else:
            pr_title, branch, body = summary, f"chore/{slug}", "Housekeeping."
        if abandoned:
            merged_at, closed_at = None, _sec(created + review_wait)
        else:
            merged_at, closed_at = merged, merged
        if merged_at is not None and merged_at >= self.end:
            merged_at = closed_at = None
        if closed_at is not None and closed_at >= self.end:
            closed_at = None
        method = None if merged_at is None else ("squash" if rng.random() < 0.1 else "merge")
        pr = PullRequest(
            pr_id=self.next_id("pr-id", 1_500_000_001),
            repo=repo,
            number=number,
            title=pr_title,
            branch=branch,
            body=body,
            author_id=author,
            created_at=created,
            commits=commits,
            reviews=[r for r in reviews if r.submitted_at < self.end],
            merged_at=merged_at,
            closed_at=closed_at,
            merge_sha=_hex(self.cfg.seed, repo, "merge", number) if merged_at else None,
            merge_method=method,
            issue_key=issue.key if issue else None,
            base_sha="",
        )
        if created < self.end:
            pr.commits = [c for c in commits if c.committed_at < self.end]
            self.pull_requests.append(pr)
        return pr

    @staticmethod
    def commit_message(issue: Issue | None, k: int, rng: random.Random) -> str:
        verbs = ["Add", "Fix", "Update", "Refine", "Test", "Document"]
        subject = issue.summary.lower() if issue else "housekeeping"
        return f"{rng.choice(verbs) if k else 'Start'} {subject}"

    def features_and_work(self) -> None:
        self.issues: list[Issue] = []
        self.pull_requests: list[PullRequest] = []
        self.feature_event_names: dict[str, str] = {}
        self.epics: list[Issue] = []
        self.expected_release: dict[str, datetime] = {}
        for team in self.teams:
            rng = self.rng(f"work-{team.key}")
            base_key = team.key.rstrip("0123456789")
            for fname, event in LEGACY_FEATURES[base_key]:
                created = self.start - timedelta(days=rng.uniform(200, 300))
                epic = self.new_issue(team, "Epic", fname, created, rng, assignee=team.lead_id)
                epic.legacy = True
                self.transition(epic, "In Progress", created + timedelta(days=5), team.lead_id)
                self.transition(epic, "Done", created + timedelta(days=60), team.lead_id)
                if team.key == base_key:
                    self.feature_event_names[event] = epic.key
                self.epics.append(epic)
            used: set[str] = set()
            for _ in range(self.count(15, rng)):
                while True:
                    name = f"{rng.choice(FEATURE_ADJECTIVES)} {rng.choice(FEATURE_NOUNS)}"
                    if name not in used:
                        break
                used.add(name)
                # Teams take on more features per day once the programme frees capacity.
                late = rng.random() < POST_PROGRAMME_SHARE
                created = self.start + timedelta(days=rng.uniform(250, 320) if late else rng.uniform(-20, 250))
                self.epic(team, name, created, rng)
            for _ in range(self.count(40, rng)):
                created = self.start + timedelta(days=rng.uniform(0, 360))
                task = self.new_issue(
                    team,
                    "Task",
                    rng.choice(["Rotate credentials", "Capacity review", "Migrate CI runners", "Renew certificates"]),
                    created,
                    rng,
                )
                self.work_on(task, team, created + self.hours(rng, 30, 0.8), rng)
            for _ in range(self.count(30, rng)):
                t = self.start + timedelta(days=rng.uniform(0, 362))
                chore = rng.choice(DECOY_TITLES) if rng.random() < 0.12 else None
                self.pull_request(team, rng.choice(team.member_ids), t, rng, title=chore)
            # bugs with no feature: escaped when their affected version was already released
            for _ in range(self.count(3, rng)):
                created = self.start + timedelta(days=rng.uniform(20, 360))
                bug = self.new_issue(team, "Bug", "Unexpected error in production", created, rng)
                released = [v for v in self.versions if v.project_key == team.key and v.released_at(created)]
                if released and rng.random() < 0.7:
                    bug.affected_version_ids = [released[-1].version_id]
                self.work_on(bug, team, created + self.hours(rng, 20, 0.8), rng, title_prefix="Fix: ")

    def epic(self, team: Team, name: str, created: datetime, rng: random.Random) -> None:
        epic = self.new_issue(team, "Epic", name, created, rng, assignee=team.lead_id)
        self.epics.append(epic)
        # the pace of the work, not of the planning, decides how long a feature takes
        span = timedelta(days=max(8.0, rng.gauss(self.cfg.mix(40, 22, created + timedelta(days=20)), 6)))
        plan = timedelta(days=rng.uniform(2, 6))
        stories = [
            f"{name}: {part}"
            for part in [
                "data model",
                "API",
                "UI",
                "permissions",
                "tracking",
                "docs",
                "migration",
                "edge cases",
                "performance",
                "rollout",
                "settings",
                "export",
                "search",
                "notifications",
                "tests",
                "cleanup",
            ]
        ]
        n = rng.randint(8, 16)
        last_merge: datetime | None = None
        first_start: datetime | None = None
        for k in range(n):
            start = created + plan + (span - plan - timedelta(days=3)) * rng.random()
            story = self.new_issue(team, "Story", stories[k], created + plan * rng.random(), rng, epic.key)
            prs = self.work_on(story, team, start, rng, n_prs=2 if rng.random() < 0.12 else 1)
            first_start = min(first_start or start, start)
            for pr in prs:
                if pr.merged_at and (last_merge is None or pr.merged_at > last_merge):
                    last_merge = pr.merged_at
        if first_start:
            self.transition(epic, "In Progress", first_start, team.lead_id)
        # bugs caught during design and review, before anything of the feature ships
        for _ in range(np.random.default_rng(rng.getrandbits(32)).poisson(1.2)):
            at = created + plan * rng.random()
            bug = self.new_issue(team, "Bug", f"{name}: wrong result in review", at, rng, epic.key)
            self.work_on(bug, team, at + self.hours(rng, 6), rng, title_prefix="Fix: ")
        if last_merge is None:
            return
        release = last_merge + timedelta(days=1)
        self.expected_release[epic.key] = release
        # bugs that escape to production after release; fewer once the programme takes effect
        lam = self.cfg.mix(1.3, 0.2, release)
        for _ in range(np.random.default_rng(rng.getrandbits(32)).poisson(lam)):
            at = release + timedelta(days=rng.expovariate(1 / 8))
            if at >= self.end:
                continue
            bug = self.new_issue(team, "Bug", f"{name}: failure reported by customers", at, rng, epic.key)
            if rng.random() < 0.8:
                self.work_on(bug, team, at + self.hours(rng, 12), rng, title_prefix="Fix: ")
        done = last_merge + timedelta(days=rng.uniform(1, 5))
        self.transition(epic, "Done", done, team.lead_id)

    # --- 3. main branches --------------------------------------------------------------------------

    def main_branches(self) -> None:
        self.mainline: dict[str, list[Commit]] = {}
        by_repo: dict[str, list[PullRequest]] = defaultdict(list)
        for pr in self.pull_requests:
            by_repo[pr.repo].append(pr)
        for service in self.services:
            repo = service.repo(ORG)
            root_at = service.created_at
            head = Commit(
                _hex(self.cfg.seed, repo, "root"),
                repo,
                self.teams[0].lead_id,
                "Initial commit",
                root_at,
                root_at,
                [],
                100,
                0,
                None,
                root_at,
            )
            line = [head]
            events: list[tuple[datetime, int, PullRequest]] = []
            for pr in by_repo[repo]:
                events.append((pr.created_at, 0, pr))
                if pr.merged_at:
                    events.append((pr.merged_at, 1, pr))
            for at, kind, pr in sorted(events, key=lambda e: (e[0], e[1], e[2].number)):
                if kind == 0:  # the branch is cut from main's head when the pull request opens
                    pr.base_sha = line[-1].sha
                    if pr.commits:
                        pr.commits[0].parents = [line[-1].sha]
                    continue
                if pr.merge_method == "squash":
                    squash = Commit(
                        pr.merge_sha or "",
                        repo,
                        pr.author_id,
                        f"{pr.title} (#{pr.number})",
                        pr.first_commit_at,
                        at,
                        [line[-1].sha],
                        sum(c.additions for c in pr.commits),
                        sum(c.deletions for c in pr.commits),
                        None,
                        at,
                    )
                    line.append(squash)
                else:
                    for c in pr.commits:
                        c.landed_at = at
                    line.extend(pr.commits)
                    merge = Commit(
                        pr.merge_sha or "",
                        repo,
                        pr.author_id,
                        f"Merge pull request #{pr.number} from {ORG}/{pr.branch}",
                        at,
                        at,
                        [line[-len(pr.commits) - 1].sha, pr.commits[-1].sha] if pr.commits else [line[-1].sha],
                        0,
                        0,
                        None,
                        at,
                    )
                    line.append(merge)
            self.mainline[repo] = line

    # --- 4. deployments and incidents --------------------------------------------------------------

    def deployments_and_incidents(self) -> None:
        self.deployments: list[Deployment] = []
        self.incidents: list[Incident] = []
        self.planted: list[dict[str, str]] = []
        bad_service = self.services[0].name
        bad_week = self.start + timedelta(days=196)
        bad_week -= timedelta(days=bad_week.weekday())
        self.planted.append(
            {
                "kind": "bad_release_week",
                "subject": bad_service,
                "week_start": bad_week.date().isoformat(),
                "description": "a burst of failed deployments and incidents",
            }
        )
        for service in self.services:
            self.deploy_service(service, bad_week if service.name == bad_service else None)
        rng = self.rng("infra-incidents")
        for _ in range(self.count(22, rng) * self.copies):
            at = self.start + timedelta(days=rng.uniform(1, 363))
            self.incident(rng.choice(INFRASTRUCTURE), at, None, rng)
        self.deployments.sort(key=lambda d: (d.started_at, d.deployment_id))
        self.incidents.sort(key=lambda i: i.created_at)
        for k, inc in enumerate(self.incidents, 1):
            inc.public_id = k

    def incident(self, service: str, created: datetime, cause: str | None, rng: random.Random) -> None:
        restore = self.hours(rng, self.cfg.mix(5.0, 1.5, created), 0.8)
        resolved = _sec(created + restore)
        severity = rng.choice(["SEV-2", "SEV-3", "SEV-3", "SEV-4"])
        self.incidents.append(
            Incident(
                incident_id=f"{_hex(self.cfg.seed, 'incident', service, created, n=8)}-"
                f"{_hex('i2', service, created, n=4)}-4{_hex('i3', created, n=3)}-a{_hex('i4', created, n=3)}-"
                f"{_hex('i5', service, created, n=12)}",
                public_id=0,
                title=f"{service}: elevated error rate",
                service=service,
                severity=severity,
                created_at=_sec(created),
                detected_at=_sec(created + timedelta(minutes=rng.uniform(0, 10))),
                resolved_at=resolved if resolved < self.end else None,
                commander_id=rng.choice([p.person_id for p in self.people if not p.is_bot]),
                customer_impacted=severity in ("SEV-1", "SEV-2"),
                caused_by_deployment_id=cause,
                modified_at=resolved if resolved < self.end else _sec(created + timedelta(minutes=30)),
            )
        )

    def deploy_service(self, service: Service, bad_week: datetime | None) -> None:
        rng = self.rng(f"deploy-{service.name}")
        team = self.team_by_key[service.team_key]
        repo = service.repo(ORG)
        line = self.mainline[repo]
        landed = [c.landed_at or c.committed_at for c in line]
        jenkins_job = f"deploy/{service.name}-deploy"
        build_no = 0
        deployed_sha: str | None = None  # what production runs now
        history: list[str] = []  # successful production SHAs, in order

        def head_at(t: datetime) -> str:
            return line[max(0, bisect_right(landed, t) - 1)].sha

        def attempt(env: str, sha: str, at: datetime, *, person: bool, fail_p: float, rollback: bool) -> Deployment:
            nonlocal build_no
            duration = timedelta(minutes=rng.uniform(3, 15))
            ok = rng.random() >= fail_p
            creator = rng.choice(team.member_ids) if person else self.bot.person_id
            if service.deploys_via == "github":
                gid = self.next_id("gh-deployment", 400_000_001)
                dep_id, raw = (
                    f"github:deployment:{gid}",
                    ("success" if ok else rng.choice(["failure", "failure", "error"])),
                )
                job, number = None, None
            else:
                build_no += 1
                gid, job, number = None, jenkins_job, build_no
                dep_id = f"jenkins:deployment:{jenkins_job}#{build_no}"
                raw = "SUCCESS" if ok else rng.choice(["FAILURE", "FAILURE", "ABORTED"])
            started = _sec(at)
            finished = _sec(at + duration)
            d = Deployment(
                dep_id,
                service.deploys_via,
                service.name,
                repo,
                env,
                sha,
                "main",
                started,
                finished,
                "success" if ok else "failure",
                "person" if person else "automation",
                creator,
                rollback,
                gid,
                job,
                number,
                raw_outcome=raw,
            )
            if gid is not None:
                d.statuses = [
                    DeploymentStatus(self.next_id("gh-status", 800_000_001), "queued", started, creator),
                    DeploymentStatus(
                        self.next_id("gh-status", 800_000_001), "in_progress", started + timedelta(seconds=20), creator
                    ),
                    DeploymentStatus(self.next_id("gh-status", 800_000_001), raw, finished, creator),
                ]
            else:
                d.stages = self.deploy_stages(started, finished, ok)
            if finished < self.end:
                self.deployments.append(d)
            return d

        t = self.start + timedelta(hours=rng.uniform(1, 24))
        while t < self.end:
            gap = timedelta(hours=rng.expovariate(1 / self.cfg.mix(52, 14, t)))
            in_bad_week = bad_week is not None and bad_week <= t < bad_week + timedelta(days=7)
            sha = head_at(t)
            if sha == deployed_sha or sha in history:  # never redeploy a commit except to roll back
                t += gap
                continue
            person = rng.random() >= self.cfg.mix(0.55, 0.96, t)
            fail_p = 0.6 if in_bad_week else self.cfg.mix(0.18, 0.04, t)
            staging = attempt(
                "staging", sha, t - timedelta(minutes=rng.uniform(20, 90)), person=person, fail_p=0.03, rollback=False
            )
            if staging.outcome != "success":
                t += gap
                continue
            prod = attempt("production", sha, t, person=person, fail_p=fail_p, rollback=False)
            if prod.outcome != "success":
                t = prod.finished_at + timedelta(minutes=rng.uniform(20, 180))
                continue
            previous = deployed_sha
            deployed_sha = sha
            history.append(sha)
            next_t = t + gap
            bad_p = 0.5 if in_bad_week else self.cfg.mix(0.17, 0.07, t)
            if previous is not None and rng.random() < bad_p:
                prod.bad = True
                mode = rng.random()
                rolled_back = mode < 0.6
                delay = timedelta(minutes=rng.uniform(*((40, 200) if self.cfg.progress(t) < 1 else (5, 35))))
                if mode >= 0.45:  # an incident, before the rollback (if any) and the next deployment
                    latest = delay.total_seconds() / 60 - 2 if rolled_back else 240
                    at = prod.finished_at + timedelta(minutes=rng.uniform(3, max(4.0, latest)))
                    self.incident(service.name, at, prod.deployment_id, rng)
                    next_t = max(next_t, at + timedelta(minutes=30))
                if rolled_back:  # redeploy what ran before
                    rb = attempt(
                        "production",
                        previous,
                        prod.finished_at + delay,
                        person=rng.random() < 0.8,
                        fail_p=0.0,
                        rollback=True,
                    )
                    deployed_sha = previous
                    history.append(previous)
                    next_t = max(next_t, rb.finished_at + timedelta(hours=2))
            t = next_t

    def deploy_stages(self, started: datetime, finished: datetime, ok: bool) -> list[Stage]:
        total = (finished - started).total_seconds() * 1000
        parts = [("Checkout", 0.1), ("Deploy", 0.6), ("Smoke Test", 0.3)]
        stages, at = [], started
        for k, (name, share) in enumerate(parts):
            ms = int(total * share)
            status = "SUCCESS" if ok or k < 1 else ("FAILED" if k == 1 else "NOT_EXECUTED")
            stages.append(Stage(self.next_id("stage", 1), name, status, at, ms))
            at += timedelta(milliseconds=ms)
        return stages

    # --- 5. CI builds ------------------------------------------------------------------------------

    def builds(self) -> None:
        self.builds_: list[Build] = []
        outbreak_service = next((s.name for s in self.services if s.ci == "jenkins"), None)
        outbreak_start = self.start + timedelta(days=245)
        outbreak_start -= timedelta(days=outbreak_start.weekday())
        if outbreak_service:
            self.planted.append(
                {
                    "kind": "flaky_test_outbreak",
                    "subject": outbreak_service,
                    "week_start": outbreak_start.date().isoformat(),
                    "description": "flaky tests fail far more often for two weeks",
                }
            )
        for service in self.services:
            rng = self.rng(f"ci-{service.name}")
            repo = service.repo(ORG)
            tests = [(suite, f"test_{suite}_{k:02d}") for suite in TEST_SUITES for k in range(10)]
            flaky = set(rng.sample(range(len(tests)), 2))
            run_number = 0
            for pr in sorted((p for p in self.pull_requests if p.repo == repo), key=lambda p: p.created_at):
                if not pr.commits:
                    continue
                head = pr.commits[-1]
                t = max(pr.created_at, head.committed_at) + timedelta(minutes=rng.uniform(1, 5))
                while True:
                    run_number += 1
                    in_outbreak = service.name == outbreak_service and outbreak_start <= t < outbreak_start + timedelta(
                        days=14
                    )
                    b = self.build(
                        service,
                        rng,
                        tests,
                        flaky,
                        run_number,
                        head.sha,
                        f"PR-{pr.number}" if service.ci == "jenkins" else pr.branch,
                        "pull_request",
                        t,
                        pr.number,
                        0.35 if in_outbreak else 0.03,
                    )
                    # a red build caused only by a flaky test is rebuilt on the same commit
                    if b.result == "UNSTABLE" and b.finished_at + timedelta(minutes=10) < (pr.merged_at or self.end):
                        t = b.finished_at + timedelta(minutes=rng.uniform(2, 10))
                        continue
                    break
                if pr.merged_at and pr.merge_sha:
                    run_number += 1
                    self.build(
                        service,
                        rng,
                        tests,
                        flaky,
                        run_number,
                        pr.merge_sha,
                        "main",
                        "push",
                        pr.merged_at + timedelta(minutes=1),
                        None,
                        0.03,
                    )
        self.builds_.sort(key=lambda b: (b.started_at, b.build_id))

    def build(
        self,
        service: Service,
        rng: random.Random,
        tests: list[tuple[str, str]],
        flaky: set[int],
        number: int,
        sha: str,
        branch: str,
        event: str,
        at: datetime,
        pr_number: int | None,
        flaky_p: float,
    ) -> Build:
        duration_ms = int(rng.uniform(4, 14) * 60_000)
        cases: list[TestCase] = []
        failed_flaky = False
        for k, (suite, name) in enumerate(tests):
            status = "PASSED"
            if k in flaky and rng.random() < flaky_p:
                status, failed_flaky = "FAILED", True
            elif rng.random() < 0.002:
                status = "SKIPPED"
            cases.append(
                TestCase(
                    suite,
                    name,
                    f"com.acme.{service.name.replace('-', '')}.{suite}.{name}",
                    status,
                    round(rng.uniform(0.01, 2.5), 3),
                    "AssertionError: timed out waiting for response" if status == "FAILED" else None,
                )
            )
        broken = rng.random() < 0.04
        result = "FAILURE" if broken else ("UNSTABLE" if failed_flaky else "SUCCESS")
        trigger_person = event == "push" and rng.random() < 0.05
        if service.ci == "jenkins":
            job = f"ci/{service.name}/{branch}"
            build_id, run_id = f"jenkins:build:{job}#{number}", number
        else:
            job = "CI"
            run_id = self.next_id("gh-run", 9_000_000_001)
            build_id = f"github:build:{run_id}"
        start = _sec(at)
        stages = []
        s_at = start
        for k, (name, share) in enumerate([("Checkout", 0.05), ("Build", 0.35), ("Test", 0.5), ("Package", 0.1)]):
            ms = int(duration_ms * share)
            status = "SUCCESS"
            if name == "Test" and result != "SUCCESS":
                status = "FAILED" if broken else "UNSTABLE"
            elif k == 3 and broken:
                status = "NOT_EXECUTED"
            stages.append(Stage(self.next_id("stage", 1), name, status, s_at, ms))
            s_at += timedelta(milliseconds=ms)
        b = Build(
            build_id,
            "jenkins" if service.ci == "jenkins" else "github_actions",
            service.name,
            job,
            number,
            run_id,
            sha,
            branch,
            event,
            start,
            duration_ms,
            result if service.ci == "jenkins" else ("SUCCESS" if result == "SUCCESS" else "FAILURE"),
            "person" if trigger_person else "automation",
            rng.choice(self.team_by_key[service.team_key].member_ids) if trigger_person else None,
            pr_number,
            stages,
            cases if service.ci == "jenkins" else [],
            [sha],
        )
        if b.finished_at < self.end:
            self.builds_.append(b)
        return b

    def renumber(self) -> None:
        """Number builds as the tools do: per Jenkins job (or Actions workflow) in the order they started.

        The simulation draws builds and deployments per service, not per job, so numbers are assigned
        afterwards; incidents that name a Jenkins deployment follow the renaming.
        """
        by_job: dict[tuple[str, str], list[Build]] = defaultdict(list)
        for b in self.builds_:
            by_job[(b.service, b.job)].append(b)
        for builds in by_job.values():
            for n, b in enumerate(sorted(builds, key=lambda b: (b.started_at, b.build_id)), 1):
                b.number = n
                if b.system == "jenkins":
                    b.run_id = n
                    b.build_id = f"jenkins:build:{b.job}#{n}"
        renamed: dict[str, str] = {}
        by_deploy_job: dict[str, list[Deployment]] = defaultdict(list)
        for d in self.deployments:
            if d.jenkins_job:
                by_deploy_job[d.jenkins_job].append(d)
        for job, deployments in by_deploy_job.items():
            for n, d in enumerate(sorted(deployments, key=lambda d: (d.started_at, d.deployment_id)), 1):
                renamed[d.deployment_id] = f"jenkins:deployment:{job}#{n}"
                d.deployment_id, d.jenkins_number = renamed[d.deployment_id], n
        for incident in self.incidents:
            if incident.caused_by_deployment_id in renamed:
                incident.caused_by_deployment_id = renamed[incident.caused_by_deployment_id]

    # --- 6. releases, Datadog ----------------------------------------------------------------------

    def releases(self) -> None:
        self.releases_: list[Release] = []
        rng = self.rng("releases")
        by_repo: dict[str, int] = defaultdict(int)
        for d in self.deployments:
            if d.environment != "production" or d.outcome != "success" or d.is_rollback:
                continue
            by_repo[d.repo] += 1
            if by_repo[d.repo] % 6:
                continue
            n = by_repo[d.repo] // 6
            self.releases_.append(
                Release(
                    self.next_id("release", 120_000_001),
                    d.repo,
                    f"v1.{n}.0",
                    f"Release 1.{n}.0",
                    d.sha,
                    rng.choice([p.person_id for p in self.people if not p.is_bot]),
                    d.started_at,
                    d.finished_at,
                    f"Changes shipped in 1.{n}.0",
                )
            )

    def datadog(self) -> None:
        rng = self.rng("datadog")
        self.monitors: list[Monitor] = []
        self.slos: list[Slo] = []
        self.dd_events: list[DatadogEvent] = []
        humans = [p.person_id for p in self.people if not p.is_bot]
        for component in [s.name for s in self.services] + INFRASTRUCTURE:
            for kind, query in [
                ("error rate", "sum:trace.http.request.errors{{service:{s}}}.as_rate() > 5"),
                ("p95 latency", "avg:trace.http.request.duration.by.service.95p{{service:{s}}} > 0.8"),
                ("saturation", "avg:system.cpu.user{{service:{s}}} > 85"),
            ]:
                if component in INFRASTRUCTURE and kind == "p95 latency":
                    continue
                created = self.start - timedelta(days=rng.uniform(30, 200))
                self.monitors.append(
                    Monitor(
                        self.next_id("monitor", 1_000_001),
                        f"[{component}] High {kind}",
                        component,
                        "query alert",
                        f"avg(last_5m):{query.format(s=component)}",
                        _sec(created),
                        _sec(created + timedelta(days=rng.uniform(1, 20))),
                        rng.choice(humans),
                        [
                            f"service:{component}",
                            "env:production",
                            "team:"
                            + (
                                self.service_by_name[component].team_key.lower()
                                if component in self.service_by_name
                                else "sre"
                            ),
                        ],
                    )
                )
        days = (self.end - self.start).days
        for service in self.services:
            incident_days = defaultdict(float)
            for inc in self.incidents:
                if inc.service == service.name:
                    end = inc.resolved_at or self.end
                    incident_days[(inc.created_at - self.start).days] += (end - inc.created_at).total_seconds()
            sli = [round(max(90.0, 100.0 - incident_days[d] / 864 - rng.uniform(0, 0.04)), 4) for d in range(days)]
            created = self.start - timedelta(days=rng.uniform(10, 60))
            self.slos.append(
                Slo(
                    _hex(self.cfg.seed, "slo", service.name, n=32),
                    f"{service.name} availability",
                    service.name,
                    99.5,
                    _sec(created),
                    _sec(created + timedelta(days=2)),
                    rng.choice(humans),
                    sli,
                )
            )
        for d in self.deployments:
            if d.environment == "production":
                self.dd_events.append(
                    DatadogEvent(
                        _hex(self.cfg.seed, "ddev", d.deployment_id, n=32)[:19],
                        f"Deployed {d.service} {d.sha[:7]}",
                        f"Deployment {d.outcome}",
                        d.service,
                        d.finished_at,
                        "deployment",
                        "info" if d.outcome == "success" else "error",
                        [f"service:{d.service}", "env:production"],
                    )
                )
        for inc in self.incidents:
            self.dd_events.append(
                DatadogEvent(
                    _hex(self.cfg.seed, "ddev", inc.incident_id, n=32)[:19],
                    f"[Triggered] [{inc.service}] High error rate",
                    "Monitor alert",
                    inc.service,
                    inc.detected_at,
                    "monitor",
                    "error",
                    [f"service:{inc.service}"],
                )
            )
        self.dd_events.sort(key=lambda e: (e.at, e.event_id))

    # --- 7. Mixpanel -------------------------------------------------------------------------------

    def usage(self, released_at: dict[str, datetime]) -> pl.DataFrame:
        """Usage events, vectorised per day: adopters of released features plus generic events."""
        rng = np.random.default_rng([self.cfg.seed, 7])
        n_users = max(50, round(5000 * self.rate * self.copies))
        anon = [_hex(self.cfg.seed, "user", k, n=16) for k in range(n_users)]
        ids = np.array(
            [
                f"{a[:8]}-{a[8:12]}-{a[12:16]}" if k % 10 >= 3 else f"user{k}@customers.example"
                for k, a in enumerate(anon)
            ]
        )
        # 30 % identified (e-mail distinct ids: personal data to pseudonymise), the rest anonymous devices
        epics = [e for e in self.epics if e.legacy or e.key in released_at]
        names = {e.key: e.summary for e in epics}
        legacy_event = {v: k for k, v in self.feature_event_names.items()}
        appeal: dict[str, float] = {}
        adopters: dict[str, np.ndarray] = {}
        for e in epics:
            release = released_at.get(e.key, self.start)
            median = 0.05 if e.legacy else self.cfg.mix(0.034, 0.045, release)
            appeal[e.key] = float(min(0.4, median * math.exp(rng.normal(0, 0.6))))
            adopters[e.key] = rng.random(n_users) < appeal[e.key]
        drop_feature = max((e for e in epics if not e.legacy), key=lambda e: appeal[e.key], default=None)
        drop_start = None
        if drop_feature is not None:
            drop_start = released_at[drop_feature.key] + timedelta(days=35)
            if drop_start + timedelta(days=14) >= self.end:
                drop_start = None
            else:
                self.planted.append(
                    {
                        "kind": "adoption_drop",
                        "subject": drop_feature.key,
                        "week_start": (drop_start - timedelta(days=drop_start.weekday())).date().isoformat(),
                        "description": "usage of the feature falls by two thirds for two weeks",
                    }
                )
        browsers = np.array(["Chrome", "Firefox", "Safari", "Edge"])
        oses = np.array(["Mac OS X", "Windows", "Linux", "iOS", "Android"])
        cities = np.array(["Berlin", "Lagos", "Austin", "Osaka", "Lima", "Pune"])
        frames: list[pl.DataFrame] = []
        day = self.start
        while day < self.end:
            weekend = day.weekday() >= 5
            active = rng.random(n_users) < (0.09 if weekend else 0.16)
            ev_user: list[np.ndarray] = []
            ev_name: list[np.ndarray] = []
            ev_feat: list[np.ndarray] = []
            for e in epics:
                if e.key in released_at and released_at[e.key] > day:
                    continue
                use_p = 0.55
                in_drop = drop_start is not None and drop_start <= day < drop_start + timedelta(days=14)
                if in_drop and drop_feature is not None and e.key == drop_feature.key:
                    use_p = 0.18
                users = np.flatnonzero(active & adopters[e.key] & (rng.random(n_users) < use_p))
                if users.size == 0:
                    continue
                reps = 1 + rng.poisson(1.0, users.size)
                users = np.repeat(users, reps)
                if e.key in legacy_event:  # instrumented before the `feature` property existed
                    name, feat = legacy_event[e.key], None
                else:
                    name, feat = f"{names[e.key]} Used", e.key
                ev_user.append(users)
                ev_name.append(np.full(users.size, name, dtype=object))
                ev_feat.append(np.full(users.size, feat, dtype=object))
            n_feature = sum(u.size for u in ev_user)
            share = self.cfg.mix(0.12, 0.06, day)
            n_generic = rng.poisson(n_feature * share / (1 - share)) if n_feature else 0
            act = np.flatnonzero(active)
            if n_generic and act.size:
                ev_user.append(rng.choice(act, n_generic))
                ev_name.append(rng.choice(np.array(GENERIC_EVENTS, dtype=object), n_generic))
                ev_feat.append(np.full(n_generic, None, dtype=object))
            if ev_user:
                users = np.concatenate(ev_user)
                n = users.size
                base = int(day.timestamp())
                times = base + np.sort(rng.integers(0, 86_400, n))
                order = rng.permutation(n)
                frames.append(
                    pl.DataFrame(
                        {
                            "time": times,
                            "event": np.concatenate(ev_name)[order].astype(str),
                            "distinct_id": ids[users[order]],
                            "feature": pl.Series(np.concatenate(ev_feat)[order].tolist(), dtype=pl.String),
                            "browser": browsers[rng.integers(0, 4, n)],
                            "os": oses[rng.integers(0, 5, n)],
                            "city": cities[rng.integers(0, 6, n)],
                            "seq": np.arange(n, dtype=np.int64),
                        }
                    )
                )
            day += timedelta(days=1)
        if not frames:
            return pl.DataFrame(schema=EVENT_SCHEMA)
        events = pl.concat(frames).sort("time", maintain_order=True)
        seed = self.cfg.seed
        return events.with_columns(
            insert_id=pl.concat_str([pl.lit(f"{seed}"), pl.col("time"), pl.col("seq")], separator="-")
            .hash(seed=seed)
            .cast(pl.String)
            .str.zfill(20),
        ).select(list(EVENT_SCHEMA))


EVENT_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Int64(),  # epoch seconds, as Mixpanel exports it
    "event": pl.String(),
    "distinct_id": pl.String(),
    "insert_id": pl.String(),
    "feature": pl.String(),  # the Jira epic key the event is tagged with, or null
    "browser": pl.String(),
    "os": pl.String(),
    "city": pl.String(),
}


def first_releases(
    world_deployments: list[Deployment],
    prs: list[PullRequest],
    mainline: dict[str, list[Commit]],
    epic_of: dict[str, str | None],
) -> tuple[dict[str, str], dict[str, datetime]]:
    """Each merged PR's first successful production deployment, and each feature's release time.

    A PR ships with the first successful production deployment of its repository whose deployed
    commit has the PR's merge commit in its history (main is linear here, so: at or after it).
    A feature is released by the first deployment that contains its last merged PR.
    """
    position = {repo: {c.sha: k for k, c in enumerate(line)} for repo, line in mainline.items()}
    prod: dict[str, list[Deployment]] = defaultdict(list)
    for d in world_deployments:
        if d.environment == "production" and d.outcome == "success":
            prod[d.repo].append(d)
    first_dep: dict[str, str] = {}
    shipped_at: dict[str, datetime] = {}
    for pr in prs:
        if not pr.merge_sha:
            continue
        pos = position[pr.repo].get(pr.merge_sha)
        if pos is None:
            continue
        for d in prod[pr.repo]:
            if position[pr.repo].get(d.sha, -1) >= pos:
                first_dep[f"{pr.repo}#{pr.number}"] = d.deployment_id
                shipped_at[f"{pr.repo}#{pr.number}"] = d.finished_at
                break
    released: dict[str, datetime] = {}
    last_pr: dict[str, PullRequest] = {}
    for pr in prs:
        epic = epic_of.get(pr.issue_key or "")
        if epic and pr.merged_at and (epic not in last_pr or pr.merged_at > last_pr[epic].merged_at):  # type: ignore[operator]
            last_pr[epic] = pr
    for epic, pr in last_pr.items():
        at = shipped_at.get(f"{pr.repo}#{pr.number}")
        if at is not None:
            released[epic] = at
    return first_dep, released


def generate_world(config: WorldConfig | None = None) -> World:
    """Build the whole world for `config` (deterministic: same config, same world)."""
    cfg = config or WorldConfig()
    g = _Generator(cfg)
    g.organisation()
    g.calendar()
    g.features_and_work()
    for issue in g.issues:
        if issue.issue_type != "Epic":
            done = issue.transition_at("Done", g.end)
            if done is not None:
                for v in g.versions:
                    if v.project_key == issue.project_key and utc(v.release_date) >= done.replace(
                        hour=0, minute=0, second=0
                    ):
                        issue.fix_version_ids = [v.version_id]
                        break
    g.pull_requests.sort(key=lambda p: (p.repo, p.number))
    g.main_branches()
    g.deployments_and_incidents()
    g.builds()
    g.renumber()
    g.releases()
    g.datadog()
    epic_of = {i.key: (i.key if i.issue_type == "Epic" else i.epic_key) for i in g.issues}
    _, released = first_releases(g.deployments, g.pull_requests, g.mainline, epic_of)
    events = g.usage(released)
    return World(
        config=cfg,
        org=ORG,
        teams=g.teams,
        people=g.people,
        services=g.services,
        infrastructure=list(INFRASTRUCTURE),
        issues=sorted(g.issues, key=lambda i: i.issue_id),
        sprints=g.sprints,
        versions=g.versions,
        pull_requests=g.pull_requests,
        mainline=g.mainline,
        releases=g.releases_,
        builds=g.builds_,
        deployments=g.deployments,
        incidents=g.incidents,
        monitors=g.monitors,
        slos=g.slos,
        datadog_events=g.dd_events,
        events=events,
        feature_event_names=g.feature_event_names,
        planted_anomalies=g.planted,
    )
