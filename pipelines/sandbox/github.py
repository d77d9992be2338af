"""GitHub emulator: the REST v3 endpoints opsmap reads, rendered from the world as of the request.

Contract (shared/docs/source-apis.md §1 and fact 6/7, recordings under fixtures/real/github/):

- Bare-array lists (`pulls`, `commits`, reviews, deployments, statuses, releases, org repos) and
  `{total_count, workflow_runs|jobs}` wrappers for Actions; `per_page` defaults to 30 and is capped
  at 100, `page` is 1-based. Paging is announced only through `Link` (next/last on page 1,
  prev/next/last/first in the middle, prev/first on the last page, none for a single page), and
  like GitHub every link points at `/repositories/{repo_id}/...` (served too).
- `GET /repos/{o}/{r}/commits` pages with opaque cursors (`top=<ref>&last_sha=<sha>`, rel next and
  first only, as recorded), newest first; `since`/`until` filter on the committer date.
- `GET /repos/{o}/{r}/actions/runs` filters `created` (`2026-01-02`, `>=…`, `<…`, `a..b`, dates or
  ISO times), `status` (a status or a conclusion), `event`, `branch`, `head_sha`, `actor`; filtered
  queries return at most 1000 runs, as GitHub documents.
- `GET /repos/{o}/{r}/compare/{base}...{head}` (no recording: built from GitHub's documented schema,
  see tests/contract_catalogue.NOT_RECORDED): main is linear, so the status is ahead, behind or
  identical; `commits` are oldest first and capped at 250 unless the client pages with
  `per_page`/`page`; `files` are not modelled and omitted.
- Every answer carries `x-ratelimit-limit/remaining/reset/used/resource` and
  `x-github-api-version-selected`. The sandbox counts but never enforces the hourly budget; rate
  limits come from the fault plan (`rate_limited`), which rotates through GitHub's three shapes.

As-of rendering: a PR merged after `as_of` is open, commits and reviews after it are absent; a run
that has not finished is `in_progress` with a null conclusion; deployment statuses after `as_of`
are absent; `updated_at` is always the latest visible change. The `mutate` fault renders one record
of a served page (pulls, runs, deployments) as just updated (`updated_at` = the sandbox's now);
the `duplicate` fault repeats the previous page's last record (`page_slice`).

Derived values (the world does not model them, so they are computed from its facts): PR labels
(`bug` for PRs implementing Jira bugs, `enhancement` for stories, `chore` otherwise), one Actions
job per build stage with set-up/run/complete steps, one source-bundle asset per release.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from base64 import b64encode
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from pipelines.sandbox.http import HTTPError, Request, Response, Route, SystemEmulator, page_slice
from pipelines.sandbox.world import (
    Build,
    Commit,
    Deployment,
    DeploymentStatus,
    Person,
    PullRequest,
    Release,
    Service,
    Stage,
    World,
    WorldView,
)

API_VERSION = "2022-11-28"
"""The REST API version the recordings were made with; a newer dated version exists (2026-03-10)."""
KNOWN_API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})

SANDBOX_TOKEN = "ghp_sandboxSandboxSandboxSandbox00000000"
"""The token `env()` hands out; any non-empty token is accepted."""

WEB = "https://github.com"
"""Host of `html_url` links (the web UI is not emulated)."""

DEFAULT_PER_PAGE = 30  # GitHub's default page size
MAX_PER_PAGE = 100  # GitHub's maximum page size
MAX_PR_COMMITS = 250  # GET /pulls/{n}/commits lists at most 250 commits
MAX_COMPARE_COMMITS = 250  # compare lists at most 250 commits unless paginated
MAX_FILTERED_RUNS = 1000  # Actions run lists with filters return at most 1000 results

HOURLY_LIMIT = 15_000
"""15000: GitHub Enterprise Cloud's hourly limit per token. Counted for the headers, never enforced:
the sandbox's rate limits come from the fault plan."""

DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"

ORG_ID = 4_200_001
WEB_FLOW = Person("web-flow", "GitHub", "web-flow", "noreply@github.com", "", "", "", 19_864_447)
"""The committer GitHub records for merge and squash commits made in the web UI."""

RUN_WORKFLOW_NAME = "CI"
RUN_WORKFLOW_PATH = ".github/workflows/ci.yml"
JOB_ID_BASE = 20_000_000_000  # job ids: base + the stage's world id (unique across builds)
LABEL_ID_BASE = 7_100_000_000
ASSET_ID_BASE = 3_300_000_000
CHECK_SUITE_BASE = 11_000_000_000
WORKFLOW_ID_BASE = 81_000_000

LANGUAGES = ("Python", "Go", "TypeScript", "Kotlin")

# name → (color, default, description): GitHub's default labels plus one custom label.
LABELS: dict[str, tuple[str, bool, str]] = {
    "bug": ("d73a4a", True, "Something isn't working"),
    "enhancement": ("a2eeef", True, "New feature or request"),
    "chore": ("ededed", False, "Maintenance and housekeeping"),
}

STATUS_DESCRIPTIONS = {
    "queued": "Deployment queued",
    "in_progress": "Deployment started",
    "success": "Deployment finished successfully.",
    "failure": "Deployment failed.",
    "error": "Deployment errored.",
}

STAGE_CONCLUSIONS = {"SUCCESS": "success", "FAILED": "failure", "UNSTABLE": "failure", "NOT_EXECUTED": "skipped"}

Json = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------------


def ts(moment: datetime) -> str:
    """GitHub's timestamp format: `2026-01-02T03:04:05Z` (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int | str) -> str:
    """A legacy-style global node id (`base64("011:PullRequest203756736")`), stable per object."""
    return b64encode(f"{len(kind):03d}:{kind}{number}".encode()).decode()


def sha_of(*parts: object) -> str:
    """A deterministic 40-hex id for objects the world does not name (trees)."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def parse_time(value: str) -> datetime:
    """An ISO-8601 time (`Z` or offset; naive means UTC); raises ValueError."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bound(value: str, *, upper: bool) -> datetime:
    """A `created` qualifier bound: a date stands for its whole day (start, or end when `upper`)."""
    if len(value) == 10:
        day = datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        return day + timedelta(days=1) if upper else day
    moment = parse_time(value)
    return moment + timedelta(seconds=1) if upper else moment


def created_window(qualifier: str) -> tuple[datetime | None, datetime | None]:
    """GitHub's `created` search qualifier as a half-open window [low, high).

    `2026-01-02` (that day), `>=X`, `>X`, `<=X`, `<X`, `X..Y` (inclusive), `X..*`, `*..Y`; X is a
    date or an ISO time. Raises ValueError on anything else.
    """
    q = qualifier.strip()
    if ".." in q:
        low, _, high = q.partition("..")
        return (None if low == "*" else _bound(low, upper=False), None if high == "*" else _bound(high, upper=True))
    for op in (">=", "<=", ">", "<"):
        if q.startswith(op):
            value = q[len(op) :]
            if op == ">=":
                return _bound(value, upper=False), None
            if op == ">":
                return _bound(value, upper=True), None
            if op == "<=":
                return None, _bound(value, upper=True)
            return None, _bound(value, upper=False)
    return _bound(q, upper=False), _bound(q, upper=True)


def link_header(links: Iterable[tuple[str, str]]) -> str:
    """`<url>; rel="next", <url>; rel="last"` (GitHub's order is the caller's)."""
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links)


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------


class GitHubEmulator(SystemEmulator):
    """GitHub REST v3 for the world's org: one repository per service."""

    name = "github"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.people = world.people_by_id
        self.issues = world.issues_by_key
        self.services = {s.name.lower(): s for s in world.services}
        self.services_by_id = {s.repo_id: s for s in world.services}
        self.service_index = {s.name: k for k, s in enumerate(world.services)}
        self.prs: dict[str, list[PullRequest]] = defaultdict(list)
        self.pr_by_number: dict[tuple[str, int], PullRequest] = {}
        self.pr_by_merge_sha: dict[str, PullRequest] = {}
        self.commits: dict[str, Commit] = {}
        for pr in world.pull_requests:
            self.prs[pr.repo].append(pr)
            self.pr_by_number[(pr.repo, pr.number)] = pr
            if pr.merge_sha:
                self.pr_by_merge_sha[pr.merge_sha] = pr
            for c in pr.commits:
                self.commits[c.sha] = c
        self.landed: dict[str, list[datetime]] = {}
        self.main_position: dict[str, dict[str, int]] = {}
        for repo, line in world.mainline.items():
            for c in line:
                self.commits[c.sha] = c
            # Landing order is chronological (the generator appends as PRs merge), so the main
            # branch as of any moment is a prefix of the line.
            self.landed[repo] = [c.landed_at or c.committed_at for c in line]
            self.main_position[repo] = {c.sha: k for k, c in enumerate(line)}
        self.runs: dict[str, list[Build]] = defaultdict(list)
        self.run_by_id: dict[int, Build] = {}
        for b in world.builds:
            if b.system == "github_actions":
                self.runs[self.services[b.service.lower()].repo(world.org)].append(b)
                self.run_by_id[b.run_id] = b
        self.deployments: dict[str, list[Deployment]] = defaultdict(list)
        self.deployment_by_id: dict[int, Deployment] = {}
        for d in world.deployments:
            if d.system == "github" and d.github_id is not None:
                self.deployments[d.repo].append(d)
                self.deployment_by_id[d.github_id] = d
        self.releases: dict[str, list[Release]] = defaultdict(list)
        for r in world.releases:
            self.releases[r.repo].append(r)
        self._lock = threading.Lock()
        self._used: dict[int, int] = {}  # requests served in the current hourly window
        self._limit_shapes = itertools.cycle(("primary_403", "primary_429", "secondary_403"))
        self._repo_cache: dict[tuple[str, datetime, str], Json] = {}

    # -- contract hooks --------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        routes = [
            Route.of("GET", "/rate_limit", self.get_rate_limit),
            Route.of("GET", "/orgs/{org}/repos", self.list_org_repos),
        ]
        per_repo: list[tuple[str, Callable[..., Response]]] = [
            ("", self.get_repo),
            ("/pulls", self.list_pulls),
            ("/pulls/{number}", self.get_pull),
            ("/pulls/{number}/commits", self.list_pull_commits),
            ("/pulls/{number}/reviews", self.list_pull_reviews),
            ("/commits", self.list_commits),
            ("/compare/{basehead}", self.compare),
            ("/deployments", self.list_deployments),
            ("/deployments/{deployment_id}/statuses", self.list_deployment_statuses),
            ("/actions/runs", self.list_runs),
            ("/actions/runs/{run_id}", self.get_run),
            ("/actions/runs/{run_id}/jobs", self.list_jobs),
            ("/releases/latest", self.get_latest_release),
            ("/releases", self.list_releases),
        ]
        for suffix, handler in per_repo:
            routes.append(Route.of("GET", "/repos/{owner}/{repo}" + suffix, handler))
            routes.append(Route.of("GET", "/repositories/{repo_id}" + suffix, handler))
        return routes

    def authorized(self, request: Request) -> bool:
        scheme, _, token = (request.headers.get("Authorization") or "").strip().partition(" ")
        return scheme.lower() in ("bearer", "token") and bool(token.strip())

    def unauthorized(self, request: Request) -> Response:
        sent = bool((request.headers.get("Authorization") or "").strip())
        message = "Bad credentials" if sent else "Requires authentication"
        body = {"message": message, "documentation_url": DOCS, "status": "401"}
        return self._json(body, status=401, headers=self._rate_headers(request, count=False))

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        with self._lock:
            shape = next(self._limit_shapes)
        reset = int(time.time()) + wait_seconds
        headers = self._rate_headers(request, count=False)
        if shape == "secondary_403":
            # Secondary limit: a message and Retry-After; the primary budget is not exhausted.
            body = {
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                "again. If you reach out to GitHub Support for help, please include the request ID "
                f"{self._request_id(request)}.",
                "documentation_url": f"{RATE_LIMIT_DOCS}#about-secondary-rate-limits",
                "status": "403",
            }
            return self._json(body, status=403, headers={**headers, "retry-after": str(wait_seconds)})
        status = 403 if shape == "primary_403" else 429
        headers.update(
            {"x-ratelimit-remaining": "0", "x-ratelimit-used": str(HOURLY_LIMIT), "x-ratelimit-reset": str(reset)}
        )
        body = {
            "message": f"API rate limit exceeded for user ID {self.world.people[0].github_id}. "
            "If you reach out to GitHub Support for help, please include the request ID "
            f"{self._request_id(request)}.",
            "documentation_url": f"{RATE_LIMIT_DOCS}#about-the-primary-rate-limit",
            "status": str(status),
        }
        return self._json(body, status=status, headers=headers)

    def error(self, request: Request, exc: HTTPError) -> Response:
        body = exc.body if exc.body is not None else {"message": exc.message, "documentation_url": DOCS}
        if isinstance(body, dict):
            body.setdefault("status", str(exc.status))
        return self._json(body, status=exc.status, headers=self._rate_headers(request, count=False))

    def env(self) -> dict[str, str]:
        # The first run must reach the pull requests already closed when the history starts (the
        # world opens some before its first day), as the truth lists them.
        earliest = min((pr.created_at for pr in self.world.pull_requests), default=self.world.config.start_at)
        earliest = min(earliest, self.world.config.start_at)
        return {
            "SOURCES__GITHUB__ACCESS_TOKEN": SANDBOX_TOKEN,
            "SOURCES__GITHUB__ORG": self.world.org,
            "SOURCES__GITHUB__START_DATE": earliest.date().isoformat(),
        }

    def common_headers(self, request: Request) -> dict[str, str]:
        return self._rate_headers(request, count=True)

    # -- response plumbing -----------------------------------------------------------------------

    def _rate_headers(self, request: Request, *, count: bool) -> dict[str, str]:
        now = int(time.time())
        window = now // 3600
        with self._lock:
            if window not in self._used:  # a new hour: GitHub's budget starts over
                self._used = {window: 0}
            if count:
                self._used[window] += 1
            used = self._used[window]
        version = request.headers.get("X-GitHub-Api-Version") or API_VERSION
        return {
            "x-github-api-version-selected": version if version in KNOWN_API_VERSIONS else API_VERSION,
            "x-github-media-type": "github.v3; format=json",
            "x-ratelimit-limit": str(HOURLY_LIMIT),
            "x-ratelimit-remaining": str(max(0, HOURLY_LIMIT - used)),
            "x-ratelimit-reset": str((window + 1) * 3600),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
            "x-github-request-id": self._request_id(request),
        }

    @staticmethod
    def _request_id(request: Request) -> str:
        digest = hashlib.sha1(f"{request.path}?{request.query}|{request.received_at}".encode()).hexdigest().upper()
        return f"{digest[:4]}:{digest[4:9]}:{digest[9:16]}:{digest[16:23]}:{digest[23:31]}"

    @staticmethod
    def _json(payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        body = orjson.dumps(payload)
        etag = f'W/"{hashlib.sha256(body).hexdigest()}"'
        return Response(status, body, {"etag": etag, **(headers or {})})

    def _paged(
        self,
        request: Request,
        items: list[Any],
        render: Callable[[Any], Json],
        link_path: str,
        *,
        wrap: str | None = None,
        total: int | None = None,
        mutate: Callable[[Json], None] | None = None,
    ) -> Response:
        """One page of `items` (page/per_page), rendered, with GitHub's Link header."""
        per_page = request.int_arg("per_page", DEFAULT_PER_PAGE) or DEFAULT_PER_PAGE
        per_page = min(per_page, MAX_PER_PAGE)
        page = max(1, request.int_arg("page", 1))
        rows = [render(item) for item in page_slice(items, (page - 1) * per_page, per_page, request)]
        if mutate is not None and rows and "mutate" in request.faults:
            mutate(rows[len(rows) // 2])
        last = max(1, -(-len(items) // per_page))
        links: list[tuple[str, str]] = []
        params = {k: v[0] for k, v in request.query.items() if k != "page"}

        def url(n: int) -> str:
            return request.url(link_path, {**params, "page": n})

        if page > 1:
            links.append(("prev", url(min(page - 1, last))))
        if page < last:
            links += [("next", url(page + 1)), ("last", url(last))]
        if page > 1:
            links.append(("first", url(1)))
        headers = {"link": link_header(links)} if links else {}
        body: Any = rows if wrap is None else {"total_count": len(items) if total is None else total, wrap: rows}
        return self._json(body, headers=headers)

    # -- lookups ---------------------------------------------------------------------------------

    def _service(
        self, view: WorldView, owner: str | None = None, repo: str | None = None, repo_id: str | None = None
    ) -> Service:
        service: Service | None
        if repo_id is not None:
            service = self.services_by_id.get(int(repo_id)) if repo_id.isdigit() else None
        else:
            service = self.services.get((repo or "").lower()) if (owner or "").lower() == self.world.org else None
        if service is None or service.created_at > view.as_of:
            raise HTTPError(404, "Not Found")
        return service

    def _repo_of(self, request: Request, kw: Mapping[str, str]) -> tuple[Service, str]:
        service = self._service(request.view, kw.get("owner"), kw.get("repo"), kw.get("repo_id"))
        return service, service.repo(self.world.org)

    def _pull(self, request: Request, repo: str, number: str) -> PullRequest:
        pr = self.pr_by_number.get((repo, int(number))) if number.isdigit() else None
        if pr is None or pr.created_at > request.view.as_of:
            raise HTTPError(404, "Not Found")
        return pr

    def _person(self, person_id: str) -> Person:
        return self.people[person_id]

    # -- renderers: people and repositories ------------------------------------------------------

    def user(self, base: str, person: Person) -> Json:
        """A simple-user object (`type` Bot for bots)."""
        login = person.login
        escaped = login.replace("[", "%5B").replace("]", "%5D")
        api = f"{base}/users/{escaped}"
        bot = person.is_bot
        return {
            "login": login,
            "id": person.github_id,
            "node_id": node_id("Bot" if bot else "User", person.github_id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{person.github_id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{WEB}/apps/{login.removesuffix('[bot]')}" if bot else f"{WEB}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if bot else "User",
            "user_view_type": "public",
            "site_admin": False,
        }

    def org_user(self, base: str) -> Json:
        org = self.world.org
        owner = self.user(base, Person("org", org, org, "", "", "", "", ORG_ID))
        owner.update({"node_id": node_id("Organization", ORG_ID), "type": "Organization", "html_url": f"{WEB}/{org}"})
        return owner

    def repo_minimal(self, base: str, service: Service) -> Json:
        """The repository object Actions embeds (no counts or timestamps)."""
        full = service.repo(self.world.org)
        api = f"{base}/repos/{full}"
        return {
            "id": service.repo_id,
            "node_id": node_id("Repository", service.repo_id),
            "name": service.name,
            "full_name": full,
            "private": True,
            "owner": self.org_user(base),
            "html_url": f"{WEB}/{full}",
            "description": self._description(service),
            "fork": False,
            "url": api,
            "forks_url": f"{api}/forks",
            "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events",
            "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers",
            "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges",
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}",
            "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
        }

    def _description(self, service: Service) -> str:
        team = next((t.name for t in self.world.teams if t.key == service.team_key), service.team_key)
        return f"{service.name}: a service of the {team} team"

    def repository(self, base: str, service: Service, view: WorldView) -> Json:
        """The full repository object (org listing, GET /repos/{o}/{r}, PR head/base); cached per as-of."""
        key = (service.name, view.as_of, base)
        cached = self._repo_cache.get(key)
        if cached is not None:
            return cached
        full = service.repo(self.world.org)
        pushed = self._pushed_at(full, view)
        open_prs = sum(1 for p in self.prs[full] if p.created_at <= view.as_of and not view.is_closed(p))
        size = 120 + 4 * len(view.mainline(full))
        repo = self.repo_minimal(base, service)
        repo.update(
            {
                "created_at": ts(service.created_at),
                "updated_at": ts(pushed),
                "pushed_at": ts(pushed),
                "git_url": f"git://github.com/{full}.git",
                "ssh_url": f"git@github.com:{full}.git",
                "clone_url": f"{WEB}/{full}.git",
                "svn_url": f"{WEB}/{full}",
                "homepage": f"https://{service.name}.{self.world.org}.example",
                "size": size,
                "stargazers_count": 0,
                "watchers_count": 0,
                "language": LANGUAGES[self.service_index[service.name] % len(LANGUAGES)],
                "has_issues": False,  # work is tracked in Jira
                "has_projects": False,
                "has_downloads": True,
                "has_wiki": False,
                "has_pages": False,
                "has_discussions": False,
                "forks_count": 0,
                "mirror_url": None,
                "archived": False,
                "disabled": False,
                "open_issues_count": open_prs,
                "license": {
                    "key": "apache-2.0",
                    "name": "Apache License 2.0",
                    "spdx_id": "Apache-2.0",
                    "url": f"{base}/licenses/apache-2.0",
                    "node_id": "MDc6TGljZW5zZTI=",
                },
                "allow_forking": False,
                "is_template": False,
                "web_commit_signoff_required": False,
                "topics": [service.team_key.lower(), "service"],
                "visibility": "private",
                "forks": 0,
                "open_issues": open_prs,
                "watchers": 0,
                "default_branch": "main",
            }
        )
        if len(self._repo_cache) > 256:  # as-of values change rarely; keep the cache bounded anyway
            self._repo_cache.clear()
        self._repo_cache[key] = repo
        return repo

    def _pushed_at(self, repo: str, view: WorldView) -> datetime:
        moments = [c.committed_at for p in self.prs[repo] for c in p.commits if c.committed_at <= view.as_of]
        k = bisect_right(self.landed.get(repo, []), view.as_of)
        if k:
            moments.append(self.landed[repo][k - 1])
        return max(moments) if moments else self.services[repo.split("/", 1)[1]].created_at

    # -- renderers: pull requests, commits, reviews ----------------------------------------------

    def labels(self, base: str, service: Service, pr: PullRequest) -> list[Json]:
        names = list(pr.labels)
        if not names:
            issue = self.issues.get(pr.issue_key or "")
            kind = issue.issue_type if issue else None
            names = ["bug" if kind == "Bug" else "enhancement" if kind == "Story" else "chore"]
        out = []
        for name in names:
            color, default, description = LABELS.get(name, ("ededed", False, name))
            label_id = LABEL_ID_BASE + self.service_index[service.name] * 100 + sorted(LABELS).index(name)
            out.append(
                {
                    "id": label_id,
                    "node_id": node_id("Label", label_id),
                    "url": f"{base}/repos/{service.repo(self.world.org)}/labels/{name}",
                    "name": name,
                    "color": color,
                    "default": default,
                    "description": description,
                }
            )
        return out

    def pull(self, request: Request, pr: PullRequest, *, full: bool = False) -> Json:
        """A pull request as of the request's moment (`full`: the single-PR endpoint's extra fields)."""
        view, base = request.view, request.base_url
        service = self.services[pr.repo.split("/", 1)[1]]
        api = f"{base}/repos/{pr.repo}"
        html = f"{WEB}/{pr.repo}/pull/{pr.number}"
        commits = view.pr_commits(pr)
        head_sha = commits[-1].sha if commits else pr.base_sha
        merged, closed = view.is_merged(pr), view.is_closed(pr)
        author = self.user(base, self._person(pr.author_id))
        repo = self.repository(base, service, view)
        org = self.org_user(base)
        links = {
            "self": f"{api}/pulls/{pr.number}",
            "html": html,
            "issue": f"{api}/issues/{pr.number}",
            "comments": f"{api}/issues/{pr.number}/comments",
            "review_comments": f"{api}/pulls/{pr.number}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{api}/pulls/{pr.number}/commits",
            "statuses": f"{api}/statuses/{head_sha}",
        }
        out: Json = {
            "url": links["self"],
            "id": pr.pr_id,
            "node_id": node_id("PullRequest", pr.pr_id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": links["issue"],
            "number": pr.number,
            "state": "closed" if closed else "open",
            "locked": False,
            "title": pr.title,
            "user": author,
            "body": pr.body,
            "created_at": ts(pr.created_at),
            "updated_at": ts(pr.updated_at(view.as_of)),
            "closed_at": ts(pr.closed_at) if closed and pr.closed_at else None,
            "merged_at": ts(pr.merged_at) if merged and pr.merged_at else None,
            "merge_commit_sha": pr.merge_sha if merged else None,
            "assignee": author,
            "assignees": [author],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": self.labels(base, service, pr),
            "milestone": None,
            "draft": False,
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "head": {
                "label": f"{self.world.org}:{pr.branch}",
                "ref": pr.branch,
                "sha": head_sha,
                "user": org,
                "repo": repo,
            },
            "base": {"label": f"{self.world.org}:main", "ref": "main", "sha": pr.base_sha, "user": org, "repo": repo},
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": "MEMBER",
            "auto_merge": None,
            "active_lock_reason": None,
        }
        if full:
            out.update(
                {
                    "merged": merged,
                    "mergeable": None if closed else True,
                    "rebaseable": None if closed else True,
                    "mergeable_state": "unknown" if closed else "clean",
                    "merged_by": author if merged else None,
                    "comments": 0,
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": len(commits),
                    "additions": sum(c.additions for c in commits),
                    "deletions": sum(c.deletions for c in commits),
                    "changed_files": max(1, min(len(commits) * 2, sum(c.additions for c in commits) // 40)),
                }
            )
        return out

    def commit(self, base: str, repo: str, c: Commit) -> Json:
        """A commit object as the commits, PR-commits and compare endpoints render it."""
        api = f"{base}/repos/{repo}"
        person = self._person(c.author_id)
        web_merge = c.sha in self.pr_by_merge_sha  # merge and squash commits are made in the web UI
        committer = WEB_FLOW if web_merge else person
        tree = sha_of("tree", c.sha)
        return {
            "sha": c.sha,
            "node_id": node_id("Commit", c.sha[:16]),
            "commit": {
                "author": {"name": person.name, "email": person.email, "date": ts(c.authored_at)},
                "committer": {"name": committer.name, "email": committer.email, "date": ts(c.committed_at)},
                "message": c.message,
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
                "url": f"{api}/git/commits/{c.sha}",
                "comment_count": 0,
                "verification": {
                    "verified": web_merge,
                    "reason": "valid" if web_merge else "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": ts(c.committed_at) if web_merge else None,
                },
            },
            "url": f"{api}/commits/{c.sha}",
            "html_url": f"{WEB}/{repo}/commit/{c.sha}",
            "comments_url": f"{api}/commits/{c.sha}/comments",
            "author": self.user(base, person),
            "committer": self.user(base, committer),
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{WEB}/{repo}/commit/{p}"} for p in c.parents
            ],
        }

    # -- handlers: repositories ------------------------------------------------------------------

    def get_rate_limit(self, request: Request) -> Response:
        headers = self._rate_headers(request, count=False)
        core = {
            "limit": HOURLY_LIMIT,
            "used": int(headers["x-ratelimit-used"]),
            "remaining": int(headers["x-ratelimit-remaining"]),
            "reset": int(headers["x-ratelimit-reset"]),
        }
        minute = (int(time.time()) // 60 + 1) * 60
        other = {
            "search": 30,  # search: 30 per minute (source-apis.md §1)
            "graphql": 5000,
            "integration_manifest": 5000,
            "source_import": 100,
            "code_scanning_upload": 1000,
            "actions_runner_registration": 10000,
            "scim": 15000,
            "dependency_snapshots": 100,
            "audit_log": 1750,
            "code_search": 10,
        }
        resources = {"core": core}
        for name, limit in other.items():
            reset = (
                minute if name in ("search", "code_search", "source_import", "dependency_snapshots") else core["reset"]
            )
            resources[name] = {"limit": limit, "used": 0, "remaining": limit, "reset": reset}
        return self._json({"resources": resources, "rate": core})

    def list_org_repos(self, request: Request, org: str) -> Response:
        if org.lower() != self.world.org:
            raise HTTPError(404, "Not Found")
        view = request.view
        services = [s for s in self.world.services if s.created_at <= view.as_of]
        sort = request.arg("sort", "created") or "created"
        direction = request.arg("direction") or ("asc" if sort == "full_name" else "desc")
        keys: dict[str, Callable[[Service], Any]] = {
            "created": lambda s: s.created_at,
            "updated": lambda s: self._pushed_at(s.repo(self.world.org), view),
            "pushed": lambda s: self._pushed_at(s.repo(self.world.org), view),
            "full_name": lambda s: s.name,
        }
        if sort not in keys or direction not in ("asc", "desc"):
            raise HTTPError(422, "Validation Failed")
        services.sort(key=keys[sort], reverse=direction == "desc")
        base = request.base_url
        return self._paged(request, services, lambda s: self.repository(base, s, view), f"/orgs/{self.world.org}/repos")

    def get_repo(self, request: Request, **kw: str) -> Response:
        service, _ = self._repo_of(request, kw)
        repo = dict(self.repository(request.base_url, service, request.view))
        repo.update(
            {
                "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
                "organization": self.org_user(request.base_url),
                "network_count": 0,
                "subscribers_count": len(next(t.member_ids for t in self.world.teams if t.key == service.team_key)),
            }
        )
        return self._json(repo)

    # -- handlers: pull requests -----------------------------------------------------------------

    def list_pulls(self, request: Request, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        view = request.view
        state = request.arg("state", "open") or "open"
        sort = request.arg("sort", "created") or "created"
        direction = request.arg("direction") or ("desc" if sort == "created" else "asc")
        if state not in ("open", "closed", "all") or sort not in ("created", "updated", "popularity", "long-running"):
            raise HTTPError(422, "Validation Failed")
        if direction not in ("asc", "desc"):
            raise HTTPError(422, "Validation Failed")
        prs = [p for p in self.prs[repo] if p.created_at <= view.as_of]
        if state != "all":
            prs = [p for p in prs if view.is_closed(p) == (state == "closed")]
        head = request.arg("head")
        if head:
            prs = [p for p in prs if f"{self.world.org}:{p.branch}" == head or p.branch == head]
        if (request.arg("base") or "main") != "main":
            prs = []
        if sort == "updated":
            prs.sort(key=lambda p: (p.updated_at(view.as_of), p.number), reverse=direction == "desc")
        elif sort == "long-running":
            prs.sort(key=lambda p: (view.as_of - p.created_at, p.number), reverse=direction == "desc")
        else:  # created (popularity = comment count, which is 0 everywhere, then created)
            prs.sort(key=lambda p: (p.created_at, p.number), reverse=direction == "desc")

        def just_updated(row: Json) -> None:
            row["updated_at"] = ts(view.as_of)

        return self._paged(
            request,
            prs,
            lambda p: self.pull(request, p),
            f"/repositories/{service.repo_id}/pulls",
            mutate=just_updated,
        )

    def get_pull(self, request: Request, number: str, **kw: str) -> Response:
        _, repo = self._repo_of(request, kw)
        return self._json(self.pull(request, self._pull(request, repo, number), full=True))

    def list_pull_commits(self, request: Request, number: str, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        pr = self._pull(request, repo, number)
        commits = request.view.pr_commits(pr)[:MAX_PR_COMMITS]
        base = request.base_url
        return self._paged(
            request,
            commits,
            lambda c: self.commit(base, repo, c),
            f"/repositories/{service.repo_id}/pulls/{pr.number}/commits",
        )

    def list_pull_reviews(self, request: Request, number: str, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        pr = self._pull(request, repo, number)
        base = request.base_url
        api = f"{base}/repos/{repo}"
        reviews = sorted(request.view.pr_reviews(pr), key=lambda r: (r.submitted_at, r.review_id))

        def render(r: Any) -> Json:
            head = [c for c in pr.commits if c.committed_at <= r.submitted_at]
            html = f"{WEB}/{repo}/pull/{pr.number}#pullrequestreview-{r.review_id}"
            return {
                "id": r.review_id,
                "node_id": node_id("PullRequestReview", r.review_id),
                "user": self.user(base, self._person(r.reviewer_id)),
                "body": r.body,
                "state": r.state,
                "html_url": html,
                "pull_request_url": f"{api}/pulls/{pr.number}",
                "author_association": "MEMBER",
                "_links": {"html": {"href": html}, "pull_request": {"href": f"{api}/pulls/{pr.number}"}},
                "submitted_at": ts(r.submitted_at),
                "commit_id": (head[-1] if head else pr.commits[0]).sha,
            }

        return self._paged(request, reviews, render, f"/repositories/{service.repo_id}/pulls/{pr.number}/reviews")

    # -- handlers: commits and compare -----------------------------------------------------------

    def _history(self, repo: str, view: WorldView, ref: str) -> list[Commit]:
        """Main's history newest first, from `ref` (main, HEAD or a commit on main)."""
        line = view.mainline(repo)
        if ref.lower() not in ("main", "head", "refs/heads/main"):
            position = {c.sha: k for k, c in enumerate(line)}
            matches = [sha for sha in position if sha.startswith(ref.lower())] if len(ref) >= 7 else []
            if len(matches) != 1:
                raise HTTPError(404, f"No commit found for SHA: {ref}")
            line = line[: position[matches[0]] + 1]
        return line[::-1]

    def list_commits(self, request: Request, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        view = request.view
        ref = request.arg("top") or request.arg("sha") or "main"
        history = self._history(repo, view, ref)
        since, until = request.arg("since"), request.arg("until")
        try:
            low = parse_time(since) if since else None
            high = parse_time(until) if until else None
        except ValueError as exc:
            raise HTTPError(422, "Validation Failed") from exc
        author = request.arg("author")
        filtered = [
            c
            for c in history
            if (low is None or c.committed_at >= low)
            and (high is None or c.committed_at <= high)
            and (not author or author in (self._person(c.author_id).login, self._person(c.author_id).email))
        ]
        per_page = min(request.int_arg("per_page", DEFAULT_PER_PAGE) or DEFAULT_PER_PAGE, MAX_PER_PAGE)
        offset = 0
        last_sha = request.arg("last_sha")
        if last_sha:  # the opaque cursor: continue after this commit of the history
            order = {c.sha: k for k, c in enumerate(history)}
            if last_sha not in order:
                raise HTTPError(422, "Validation Failed")
            offset = sum(1 for c in filtered if order[c.sha] <= order[last_sha])
        page = page_slice(filtered, offset, per_page, request)
        params = {k: v[0] for k, v in request.query.items() if k not in ("sha", "top", "last_sha", "page")}
        link_path = f"/repositories/{service.repo_id}/commits"
        links: list[tuple[str, str]] = []
        if offset + per_page < len(filtered):
            links.append(
                (
                    "next",
                    request.url(link_path, {**params, "top": ref, "last_sha": filtered[offset + per_page - 1].sha}),
                )
            )
        if offset > 0 or links:
            links.append(("first", request.url(link_path, {**params, "sha": ref})))
        base = request.base_url
        headers = {"link": link_header(links)} if links else {}
        return self._json([self.commit(base, repo, c) for c in page], headers=headers)

    def compare(self, request: Request, basehead: str, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        base_ref, sep, head_ref = basehead.partition("...")
        if not sep:
            base_ref, sep, head_ref = basehead.partition("..")
        if not sep or not base_ref or not head_ref:
            raise HTTPError(404, "Not Found")
        view = request.view
        line = view.mainline(repo)
        position = {c.sha: k for k, c in enumerate(line)}

        def resolve(ref: str) -> int:
            if ref.lower() in ("main", "head") and line:
                return len(line) - 1
            matches = [k for sha, k in position.items() if sha.startswith(ref.lower())] if len(ref) >= 7 else []
            if len(matches) != 1:
                raise HTTPError(404, "Not Found")
            return matches[0]

        b, h = resolve(base_ref), resolve(head_ref)
        ahead, behind = max(0, h - b), max(0, b - h)
        status = "identical" if h == b else "ahead" if h > b else "behind"
        commits = line[b + 1 : h + 1] if h > b else []
        api = f"{request.base_url}/repos/{repo}"
        headers: dict[str, str] = {}
        if "per_page" in request.query or "page" in request.query:
            per_page = min(request.int_arg("per_page", DEFAULT_PER_PAGE) or DEFAULT_PER_PAGE, MAX_PER_PAGE)
            page = max(1, request.int_arg("page", 1))
            last = max(1, -(-len(commits) // per_page))
            shown = page_slice(commits, (page - 1) * per_page, per_page, request)
            params = {k: v[0] for k, v in request.query.items() if k != "page"}
            path = f"/repositories/{service.repo_id}/compare/{basehead}"
            links = []
            if page > 1:
                links.append(("prev", request.url(path, {**params, "page": min(page - 1, last)})))
            if page < last:
                links += [
                    ("next", request.url(path, {**params, "page": page + 1})),
                    ("last", request.url(path, {**params, "page": last})),
                ]
            if page > 1:
                links.append(("first", request.url(path, {**params, "page": 1})))
            if links:
                headers["link"] = link_header(links)
        else:
            shown = commits[:MAX_COMPARE_COMMITS]
        base_commit, merge_base, org = line[b], line[min(b, h)], self.world.org
        body = {
            "url": f"{api}/compare/{basehead}",
            "html_url": f"{WEB}/{repo}/compare/{basehead}",
            "permalink_url": f"{WEB}/{repo}/compare/{org}:{base_commit.sha[:7]}...{org}:{line[h].sha[:7]}",
            "diff_url": f"{WEB}/{repo}/compare/{basehead}.diff",
            "patch_url": f"{WEB}/{repo}/compare/{basehead}.patch",
            "base_commit": self.commit(request.base_url, repo, base_commit),
            "merge_base_commit": self.commit(request.base_url, repo, merge_base),
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": [self.commit(request.base_url, repo, c) for c in shown],
        }
        return self._json(body, headers=headers)

    # -- handlers: deployments -------------------------------------------------------------------

    def deployment(self, request: Request, d: Deployment) -> Json:
        base, view = request.base_url, request.view
        api = f"{base}/repos/{d.repo}"
        statuses = view.deployment_statuses(d)
        updated = max([d.started_at, *(s.at for s in statuses)])
        description = f"Rollback to {d.sha}" if d.is_rollback else f"Deploy {d.sha[:7]} to {d.environment}"
        return {
            "url": f"{api}/deployments/{d.github_id}",
            "id": d.github_id,
            "node_id": node_id("Deployment", d.github_id or 0),
            "sha": d.sha,
            "ref": d.ref,
            "task": "deploy",
            "payload": {},
            "original_environment": d.environment,
            "environment": d.environment,
            "description": description,
            "creator": self.user(base, self._person(d.creator_id)),
            "created_at": ts(d.started_at),
            "updated_at": ts(updated),
            "statuses_url": f"{api}/deployments/{d.github_id}/statuses",
            "repository_url": api,
            "transient_environment": False,
            "production_environment": d.environment == "production",
            "performed_via_github_app": None,
        }

    def deployment_status(self, request: Request, d: Deployment, s: DeploymentStatus) -> Json:
        base = request.base_url
        api = f"{base}/repos/{d.repo}"
        log = f"https://deploy.{self.world.org}.example/{d.repo}/deployments/{d.github_id}"
        host = d.service if d.environment == "production" else f"{d.service}.{d.environment}"
        return {
            "url": f"{api}/deployments/{d.github_id}/statuses/{s.status_id}",
            "id": s.status_id,
            "node_id": node_id("DeploymentStatus", s.status_id),
            "state": s.state,
            "creator": self.user(base, self._person(s.creator_id)),
            "description": STATUS_DESCRIPTIONS.get(s.state, s.state),
            "environment": d.environment,
            "target_url": log,
            "created_at": ts(s.at),
            "updated_at": ts(s.at),
            "deployment_url": f"{api}/deployments/{d.github_id}",
            "repository_url": api,
            "environment_url": f"https://{host}.{self.world.org}.example",
            "log_url": log,
            "performed_via_github_app": None,
        }

    def list_deployments(self, request: Request, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        view = request.view
        found = [d for d in self.deployments[repo] if d.started_at <= view.as_of]
        filters = {"sha": lambda d, v: d.sha == v, "ref": lambda d, v: d.ref == v, "task": lambda d, v: v == "deploy"}
        filters["environment"] = lambda d, v: d.environment == v
        for name, keep in filters.items():
            value = request.arg(name)
            if value:
                found = [d for d in found if keep(d, value)]
        found.sort(key=lambda d: (d.started_at, d.github_id or 0), reverse=True)

        def just_updated(row: Json) -> None:
            row["updated_at"] = ts(view.as_of)

        return self._paged(
            request,
            found,
            lambda d: self.deployment(request, d),
            f"/repositories/{service.repo_id}/deployments",
            mutate=just_updated,
        )

    def list_deployment_statuses(self, request: Request, deployment_id: str, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        d = self.deployment_by_id.get(int(deployment_id)) if deployment_id.isdigit() else None
        if d is None or d.repo != repo or d.started_at > request.view.as_of:
            raise HTTPError(404, "Not Found")
        statuses = sorted(request.view.deployment_statuses(d), key=lambda s: (s.at, s.status_id), reverse=True)
        return self._paged(
            request,
            statuses,
            lambda s: self.deployment_status(request, d, s),
            f"/repositories/{service.repo_id}/deployments/{d.github_id}/statuses",
        )

    # -- handlers: Actions -----------------------------------------------------------------------

    def _run_state(self, b: Build, view: WorldView) -> tuple[str, str | None, datetime]:
        """(status, conclusion, updated_at) of a run as of the view."""
        if view.build_finished(b):
            return "completed", "success" if b.result == "SUCCESS" else "failure", b.finished_at
        started = [s.started_at for s in b.stages if s.started_at <= view.as_of]
        return "in_progress", None, max([b.started_at, *started])

    def _actor(self, b: Build) -> Person:
        pr = self.pr_by_number.get((self.services[b.service.lower()].repo(self.world.org), b.pr_number or -1))
        if pr is None:
            pr = self.pr_by_merge_sha.get(b.sha)
        if pr is not None:
            return self._person(pr.author_id)
        commit = self.commits.get(b.sha)
        return self._person(commit.author_id) if commit else self._person(self.world.people[0].person_id)

    def run(self, request: Request, b: Build) -> Json:
        base, view = request.base_url, request.view
        service = self.services[b.service.lower()]
        repo = service.repo(self.world.org)
        api = f"{base}/repos/{repo}"
        status, conclusion, updated = self._run_state(b, view)
        actor = self.user(base, self._actor(b))
        commit = self.commits.get(b.sha)
        pr = self.pr_by_number.get((repo, b.pr_number or -1))
        title = pr.title if pr else (commit.message.splitlines()[0] if commit else b.sha[:7])
        workflow_id = WORKFLOW_ID_BASE + self.service_index[service.name]
        check_suite = CHECK_SUITE_BASE + b.run_id
        minimal = self.repo_minimal(base, service)
        pulls = []
        if pr is not None and b.event == "pull_request":
            ref = {"id": service.repo_id, "url": api, "name": service.name}
            pulls.append(
                {
                    "url": f"{api}/pulls/{pr.number}",
                    "id": pr.pr_id,
                    "number": pr.number,
                    "head": {"ref": pr.branch, "sha": b.sha, "repo": ref},
                    "base": {"ref": "main", "sha": pr.base_sha, "repo": ref},
                }
            )
        head_commit = None
        if commit is not None:
            person = self._person(commit.author_id)
            committer = WEB_FLOW if commit.sha in self.pr_by_merge_sha else person
            head_commit = {
                "id": commit.sha,
                "tree_id": sha_of("tree", commit.sha),
                "message": commit.message,
                "timestamp": ts(commit.committed_at),
                "author": {"name": person.name, "email": person.email},
                "committer": {"name": committer.name, "email": committer.email},
            }
        return {
            "id": b.run_id,
            "name": RUN_WORKFLOW_NAME,
            "node_id": node_id("WorkflowRun", b.run_id),
            "head_branch": b.branch,
            "head_sha": b.sha,
            "path": RUN_WORKFLOW_PATH,
            "display_title": title,
            "run_number": b.number,
            "event": b.event,
            "status": status,
            "conclusion": conclusion,
            "workflow_id": workflow_id,
            "check_suite_id": check_suite,
            "check_suite_node_id": node_id("CheckSuite", check_suite),
            "url": f"{api}/actions/runs/{b.run_id}",
            "html_url": f"{WEB}/{repo}/actions/runs/{b.run_id}",
            "pull_requests": pulls,
            "created_at": ts(b.started_at),
            "updated_at": ts(updated),
            "actor": actor,
            "run_attempt": b.run_attempt,
            "referenced_workflows": [],
            "run_started_at": ts(b.started_at),
            "triggering_actor": actor,
            "jobs_url": f"{api}/actions/runs/{b.run_id}/jobs",
            "logs_url": f"{api}/actions/runs/{b.run_id}/logs",
            "check_suite_url": f"{api}/check-suites/{check_suite}",
            "artifacts_url": f"{api}/actions/runs/{b.run_id}/artifacts",
            "cancel_url": f"{api}/actions/runs/{b.run_id}/cancel",
            "rerun_url": f"{api}/actions/runs/{b.run_id}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{api}/actions/workflows/{workflow_id}",
            "head_commit": head_commit,
            "repository": minimal,
            "head_repository": minimal,
        }

    def _run(self, request: Request, repo: str, run_id: str) -> Build:
        b = self.run_by_id.get(int(run_id)) if run_id.isdigit() else None
        if (
            b is None
            or self.services[b.service.lower()].repo(self.world.org) != repo
            or b.started_at > request.view.as_of
        ):
            raise HTTPError(404, "Not Found")
        return b

    def list_runs(self, request: Request, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        view = request.view
        runs = [b for b in self.runs[repo] if b.started_at <= view.as_of]
        filtered = False
        created = request.arg("created")
        if created:
            try:
                low, high = created_window(created)
            except ValueError as exc:
                raise HTTPError(422, "Validation Failed") from exc
            runs = [b for b in runs if (low is None or b.started_at >= low) and (high is None or b.started_at < high)]
            filtered = True
        for name in ("head_sha", "event", "branch", "status", "actor"):
            value = request.arg(name)
            if not value:
                continue
            filtered = True
            if name == "status":
                runs = [b for b in runs if value in self._run_state(b, view)[:2]]
            elif name == "actor":
                runs = [b for b in runs if self._actor(b).login == value]
            else:
                attr = {"head_sha": "sha", "event": "event", "branch": "branch"}[name]
                runs = [b for b in runs if getattr(b, attr) == value]
        runs.sort(key=lambda b: (b.started_at, b.run_id), reverse=True)
        total = len(runs)
        if filtered:
            runs = runs[:MAX_FILTERED_RUNS]

        def just_updated(row: Json) -> None:
            row["updated_at"] = ts(view.as_of)

        return self._paged(
            request,
            runs,
            lambda b: self.run(request, b),
            f"/repositories/{service.repo_id}/actions/runs",
            wrap="workflow_runs",
            total=total,
            mutate=just_updated,
        )

    def get_run(self, request: Request, run_id: str, **kw: str) -> Response:
        _, repo = self._repo_of(request, kw)
        return self._json(self.run(request, self._run(request, repo, run_id)))

    def job(self, request: Request, b: Build, stage: Stage) -> Json:
        base, view = request.base_url, request.view
        repo = self.services[b.service.lower()].repo(self.world.org)
        api = f"{base}/repos/{repo}"
        job_id = JOB_ID_BASE + stage.stage_id
        end = stage.started_at + timedelta(milliseconds=stage.duration_ms)
        started = stage.started_at <= view.as_of
        done = end <= view.as_of
        if not started:
            status, conclusion, started_at, completed_at, steps = "queued", None, b.started_at, None, []
        else:
            status = "completed" if done else "in_progress"
            conclusion = STAGE_CONCLUSIONS.get(stage.status, "failure") if done else None
            started_at, completed_at = stage.started_at, end if done else None
            steps = self._steps(stage, end, view)
        return {
            "id": job_id,
            "run_id": b.run_id,
            "workflow_name": RUN_WORKFLOW_NAME,
            "head_branch": b.branch,
            "run_url": f"{api}/actions/runs/{b.run_id}",
            "run_attempt": b.run_attempt,
            "node_id": node_id("CheckRun", job_id),
            "head_sha": b.sha,
            "url": f"{api}/actions/jobs/{job_id}",
            "html_url": f"{WEB}/{repo}/actions/runs/{b.run_id}/job/{job_id}",
            "status": status,
            "conclusion": conclusion,
            "created_at": ts(b.started_at),
            "started_at": ts(started_at),
            "completed_at": ts(completed_at) if completed_at else None,
            "name": stage.name.lower(),
            "steps": steps,
            "check_run_url": f"{api}/check-runs/{job_id}",
            "labels": ["ubuntu-latest"],
            "runner_id": 1_000_000_000 + stage.stage_id % 1000,
            "runner_name": f"GitHub Actions {1_000_000_000 + stage.stage_id % 1000}",
            "runner_group_id": 0,
            "runner_group_name": "GitHub Actions",
        }

    @staticmethod
    def _steps(stage: Stage, end: datetime, view: WorldView) -> list[Json]:
        """Set up, run and complete steps splitting the stage's time (2 s set-up, 1 s wrap-up)."""
        setup_end = min(end, stage.started_at + timedelta(seconds=2))
        run_end = max(setup_end, end - timedelta(seconds=1))
        run_conclusion = STAGE_CONCLUSIONS.get(stage.status, "failure")
        parts = [
            ("Set up job", stage.started_at, setup_end, "success"),
            (f"Run {stage.name.lower()}", setup_end, run_end, run_conclusion),
            ("Complete job", run_end, end, "success"),
        ]
        steps = []
        for number, (name, start, stop, conclusion) in enumerate(parts, 1):
            if start > view.as_of:
                steps.append(
                    {
                        "name": name,
                        "status": "queued",
                        "conclusion": None,
                        "number": number,
                        "started_at": None,
                        "completed_at": None,
                    }
                )
                continue
            done = stop <= view.as_of
            steps.append(
                {
                    "name": name,
                    "status": "completed" if done else "in_progress",
                    "conclusion": conclusion if done else None,
                    "number": number,
                    "started_at": ts(start),
                    "completed_at": ts(stop) if done else None,
                }
            )
        return steps

    def list_jobs(self, request: Request, run_id: str, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        b = self._run(request, repo, run_id)
        return self._paged(
            request,
            list(b.stages),
            lambda s: self.job(request, b, s),
            f"/repositories/{service.repo_id}/actions/runs/{b.run_id}/jobs",
            wrap="jobs",
        )

    # -- handlers: releases ----------------------------------------------------------------------

    def release(self, request: Request, r: Release) -> Json:
        base = request.base_url
        api = f"{base}/repos/{r.repo}"
        author = self.user(base, self._person(r.author_id))
        asset_id = ASSET_ID_BASE + r.release_id % 100_000_000
        name = f"{r.repo.split('/', 1)[1]}-{r.tag}.tar.gz"
        return {
            "url": f"{api}/releases/{r.release_id}",
            "assets_url": f"{api}/releases/{r.release_id}/assets",
            "upload_url": f"{base}/uploads/repos/{r.repo}/releases/{r.release_id}/assets{{?name,label}}",
            "html_url": f"{WEB}/{r.repo}/releases/tag/{r.tag}",
            "id": r.release_id,
            "author": author,
            "node_id": node_id("Release", r.release_id),
            "tag_name": r.tag,
            "target_commitish": r.sha,
            "name": r.name,
            "draft": False,
            "immutable": False,
            "prerelease": False,
            "created_at": ts(r.created_at),
            "updated_at": ts(r.published_at),
            "published_at": ts(r.published_at),
            "assets": [
                {
                    "url": f"{api}/releases/assets/{asset_id}",
                    "id": asset_id,
                    "node_id": node_id("ReleaseAsset", asset_id),
                    "name": name,
                    "label": None,
                    "uploader": author,
                    "content_type": "application/gzip",
                    "state": "uploaded",
                    "size": 40_000 + r.release_id % 9_000,
                    "digest": f"sha256:{hashlib.sha256(name.encode()).hexdigest()}",
                    "download_count": 0,
                    "created_at": ts(r.published_at),
                    "updated_at": ts(r.published_at),
                    "browser_download_url": f"{WEB}/{r.repo}/releases/download/{r.tag}/{name}",
                }
            ],
            "tarball_url": f"{api}/tarball/{r.tag}",
            "zipball_url": f"{api}/zipball/{r.tag}",
            "body": r.body,
        }

    def _visible_releases(self, repo: str, view: WorldView) -> list[Release]:
        found = [r for r in self.releases[repo] if r.published_at <= view.as_of]
        return sorted(found, key=lambda r: (r.created_at, r.release_id), reverse=True)

    def list_releases(self, request: Request, **kw: str) -> Response:
        service, repo = self._repo_of(request, kw)
        releases = self._visible_releases(repo, request.view)
        return self._paged(
            request, releases, lambda r: self.release(request, r), f"/repositories/{service.repo_id}/releases"
        )

    def get_latest_release(self, request: Request, **kw: str) -> Response:
        _, repo = self._repo_of(request, kw)
        releases = self._visible_releases(repo, request.view)
        if not releases:
            raise HTTPError(404, "Not Found")
        return self._json(self.release(request, releases[0]))
