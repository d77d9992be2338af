"""Jenkins emulator: the JSON API of a controller with folders, multibranch projects and pipeline jobs.

What the world becomes (source-apis.md §3, the recordings under fixtures/real/jenkins/):

- The root holds two folders (`com.cloudbees.hudson.plugins.folder.Folder`): `ci` with one multibranch
  project (`WorkflowMultiBranchProject`) per service whose `ci == "jenkins"`, holding the branch jobs
  `main` and `PR-<n>` (`WorkflowJob`, one run per world `Build`, `Build.job` is the full name), and
  `deploy` with one pipeline job `<service>-deploy` per service deploying through Jenkins (one run per
  world `Deployment`: parameters ENVIRONMENT / GIT_SHA / ROLLBACK, the deployment's stages).
- Every object answers `…/api/json` with the `tree=` query language (`parse_tree`): nested brackets,
  `*`, `{M,N}` ranges (0-based, end exclusive; `{M,}`, `{,N}`, `{N}`), unknown fields omitted and
  `_class` always sent, as Jenkins does. `allBuilds` is rendered only when a tree names it; `builds`
  holds the newest 100 only. Without `tree`, nested model objects are shallow references
  (`{_class, number, url}`), as at Jenkins' default depth 0.
- Runs: `/job/…/{n}/api/json` (also `lastBuild`, `lastCompletedBuild`, … permalinks), Pipeline Stage
  View `…/{n}/wfapi/describe`, `…/wfapi/runs` (newest 10, `since=#N`, `fullStages=true`),
  `…/{n}/execution/node/{id}/wfapi/describe`, and the JUnit report `…/{n}/testReport/api/json`
  (404 for deploy jobs and for runs still building, which have not published a report yet).
- As of `request.view.as_of`: runs that had not started are absent; runs still going are
  `building: true`, `result: null`, `duration: 0`, wfapi `IN_PROGRESS` with only the stages started
  so far; jobs show `*_anime` colours; branch jobs appear with their first run.

Auth is HTTP Basic `user:api_token`; a request without it gets Jenkins' HTML 401 page. Jenkins sends
no rate-limit headers, so the `rate_limited` fault is what a proxy in front of it answers: 429 or 503
with `Retry-After: 1`. The `mutate` fault has no Jenkins rendering: builds carry no update time and
`allBuilds{M,N}` pages shift when a new build starts, which the `duplicate` fault already plays.

Synthetic parts (the world does not model them): changed file paths of git change sets (rendered
empty), queue waits (a small deterministic `queueDurationMillis`), artifact names (one archive per
run whose Package stage succeeded) and one flow node ("step") per stage.
"""

from __future__ import annotations

import hashlib
import html
import re
from base64 import b64decode
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pipelines.sandbox.http import (
    HTTPError,
    Request,
    Response,
    Route,
    SystemEmulator,
    json_response,
    page_slice,
)
from pipelines.sandbox.world import Build, Commit, Deployment, Person, Stage, World

HUDSON = "hudson.model.Hudson"
FOLDER = "com.cloudbees.hudson.plugins.folder.Folder"
MULTIBRANCH = "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"
PIPELINE_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
PIPELINE_RUN = "org.jenkinsci.plugins.workflow.job.WorkflowRun"

CI_FOLDER = "ci"
DEPLOY_FOLDER = "deploy"

BUILDS_LIMIT = 100
"""`builds` lists only the newest 100 runs; `allBuilds` has them all (source-apis.md fact 2)."""
WFAPI_RUNS_LIMIT = 10
"""Stage View's `wfapi/runs` answers the 10 most recent runs."""
ESTIMATE_SAMPLE = 3
"""Jenkins estimates a job's duration from its last 3 completed, at least unstable, runs."""
HEALTH_SAMPLE = 5
"""The build-stability health report looks at the last 5 completed runs."""
QUEUE_ID_BASE = 1000

SANDBOX_USERNAME = "opsmap"
SANDBOX_API_TOKEN = "11a7c0ffee5eed0b5e55ed1e55ca7ab1e0"

JENKINS_VERSION = "2.462.3"

_COLORS = {"SUCCESS": "blue", "UNSTABLE": "yellow", "FAILURE": "red", "ABORTED": "aborted", "NOT_BUILT": "notbuilt"}
# Pipeline Stage View names results differently from the build API (source-apis.md fact 1).
_WFAPI_STATUS = {"FAILURE": "FAILED", "NOT_BUILT": "NOT_EXECUTED"}
_PERMALINKS = (
    "lastBuild",
    "lastCompletedBuild",
    "lastFailedBuild",
    "lastStableBuild",
    "lastSuccessfulBuild",
    "lastUnstableBuild",
    "lastUnsuccessfulBuild",
    "firstBuild",
)
# One flow node per stage (the world has no step detail): (step name, its shell command or None).
_STEPS: dict[str, tuple[str, str | None]] = {
    "Checkout": ("Check out from version control", None),
    "Build": ("Shell Script", "make build"),
    "Test": ("Shell Script", "make test"),
    "Package": ("Shell Script", "make package"),
    "Deploy": ("Shell Script", "./deploy.sh ${ENVIRONMENT} ${GIT_SHA}"),
    "Smoke Test": ("Shell Script", "./smoke-test.sh ${ENVIRONMENT}"),
}
_HEALTH_BANDS = ((80, "80plus"), (60, "60to79"), (40, "40to59"), (20, "20to39"))
_STAGE_ERRORS: dict[str, dict[str, str | None]] = {
    "FAILED": {"message": "script returned exit code 1", "type": "hudson.AbortException"},
    "ABORTED": {"message": None, "type": "org.jenkinsci.plugins.workflow.steps.FlowInterruptedException"},
}


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _stable_int(*parts: object, modulo: int) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % modulo


# --------------------------------------------------------------------------------------------------
# The tree query language
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeField:
    """One field of a `tree=` query: its name, optional sub-tree and optional `{M,N}` range."""

    name: str
    children: tuple[TreeField, ...] | None = None
    range: tuple[int | None, int | None] | None = None


_NAME = re.compile(r"[^,\[\]{}]+")
_RANGE = re.compile(r"\{\s*(\d*)\s*(?:(,)\s*(\d*)\s*)?\}")


def parse_tree(text: str) -> tuple[TreeField, ...]:
    """Parse Jenkins' `tree` parameter, e.g. `jobs[name,url],allBuilds[number,actions[causes[*]]]{0,100}`.

    Raises ValueError on unbalanced brackets or a bad range.
    """
    fields, end = _parse_fields(text, 0)
    if end != len(text):
        raise ValueError(f"unexpected {text[end]!r} at position {end}")
    return fields


def _parse_fields(text: str, pos: int) -> tuple[tuple[TreeField, ...], int]:
    fields: list[TreeField] = []
    while pos < len(text):
        match = _NAME.match(text, pos)
        if not match:
            raise ValueError(f"expected a field name at position {pos}")
        name, pos = match.group().strip(), match.end()
        children: tuple[TreeField, ...] | None = None
        if pos < len(text) and text[pos] == "[":
            children, pos = _parse_fields(text, pos + 1)
            if pos >= len(text) or text[pos] != "]":
                raise ValueError("unbalanced '[' in tree")
            pos += 1
        span: tuple[int | None, int | None] | None = None
        if pos < len(text) and text[pos] == "{":
            rng = _RANGE.match(text, pos)
            if not rng:
                raise ValueError(f"bad range at position {pos}")
            start, comma, stop = rng.groups()
            first = int(start) if start else None
            # `{N}` alone means just the N-th element, i.e. `{N,N+1}`.
            last = (int(stop) if stop else None) if comma else (first + 1 if first is not None else None)
            span, pos = (first, last), rng.end()
        fields.append(TreeField(name, children, span))
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    return tuple(fields), pos


class Node:
    """A Jenkins model object.

    `fields` values may be zero-argument callables, computed only when rendered (a job's run list is
    costly and usually not asked for). `ref` is the shallow form shown when the object is nested
    without a sub-tree; `hidden` fields (Jenkins' `allBuilds`) appear only when a tree names them.
    """

    __slots__ = ("fields", "hidden", "ref")

    def __init__(self, fields: dict[str, Any], ref: dict[str, Any], hidden: Iterable[str] = ()) -> None:
        self.fields = fields
        self.ref = ref
        self.hidden = frozenset(hidden)


def _resolve(value: Any) -> Any:
    return value() if callable(value) else value


def _shallow(value: Any) -> Any:
    if isinstance(value, Node):
        return dict(value.ref)
    if isinstance(value, list):
        return [_shallow(v) for v in value]
    if isinstance(value, dict):
        return {k: _shallow(v) for k, v in value.items()}
    return value


def render(value: Any, tree: tuple[TreeField, ...] | None, request: Request) -> Any:
    """Render a model value as JSON data: the default depth-0 shape, or the `tree` projection."""
    if tree is None:
        if isinstance(value, Node):
            return {k: _shallow(_resolve(v)) for k, v in value.fields.items() if k not in value.hidden}
        return _shallow(value)
    return _project(value, tree, request)


def _project(value: Any, tree: tuple[TreeField, ...], request: Request) -> Any:
    if isinstance(value, list):
        return [_project(v, tree, request) for v in value]
    if isinstance(value, Node):
        source, hidden = value.fields, value.hidden
    elif isinstance(value, dict):
        source, hidden = value, frozenset()
    else:
        return value
    out: dict[str, Any] = {}
    if "_class" in source:  # Jenkins sends `_class` whatever the tree asks for
        out["_class"] = source["_class"]
    for spec in tree:
        if spec.name == "*":
            for key, raw in source.items():
                if key not in hidden and key not in out:
                    out[key] = _shallow(_resolve(raw))
            continue
        if spec.name not in source:
            continue  # unknown fields are simply omitted
        item = _resolve(source[spec.name])
        if spec.range is not None and isinstance(item, list):
            start = spec.range[0] or 0
            stop = len(item) if spec.range[1] is None else spec.range[1]
            item = page_slice(item, start, max(0, stop - start), request)
        out[spec.name] = _shallow(item) if spec.children is None else _project(item, spec.children, request)
    return out


# --------------------------------------------------------------------------------------------------
# The world as Jenkins jobs and runs
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One run of a pipeline job: a world CI `Build` or a Jenkins `Deployment`."""

    job: str
    number: int
    started_at: datetime
    finished_at: datetime
    result: str  # the final Jenkins result
    stages: list[Stage]
    build: Build | None = None
    deployment: Deployment | None = None
    queue_id: int = 0

    def building(self, as_of: datetime) -> bool:
        return self.finished_at > as_of


@dataclass(slots=True)
class Job:
    """A folder, multibranch project or pipeline job, by full name (`ci/indexer/main`)."""

    full_name: str
    cls: str
    description: str | None = None
    service: str = ""
    children: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)  # by number, ascending
    first_start: datetime | None = None  # a branch job appears with its first run

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.full_name.rpartition("/")[0]

    @property
    def buildable(self) -> bool:
        return self.cls == PIPELINE_JOB


def _job_path(full_name: str) -> str:
    return "".join(f"/job/{quote(part, safe='')}" for part in full_name.split("/"))


class _Ctx:
    """Per-request rendering state: the clock, URLs, and caches of what is visible."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.as_of = request.view.as_of
        self.as_of_ms = _ms(self.as_of)
        self.base = request.base_url.rstrip("/")
        self.prefix = urlsplit(self.base).path  # hrefs in wfapi are relative to the host
        self._runs: dict[str, list[Run]] = {}
        self._positions: dict[str, dict[int, int]] = {}
        self._completed: dict[str, list[Run]] = {}
        self.estimates: dict[str, int] = {}

    # -- visibility --------------------------------------------------------------------------------

    def visible(self, job: Job) -> bool:
        return job.first_start is None or job.first_start <= self.as_of

    def runs(self, job: Job) -> list[Run]:
        """Runs started by as-of, newest (highest number) first."""
        if job.full_name not in self._runs:
            self._runs[job.full_name] = [r for r in reversed(job.runs) if r.started_at <= self.as_of]
        return self._runs[job.full_name]

    def position(self, job: Job, run: Run) -> int:
        """The run's index in `runs(job)`."""
        if job.full_name not in self._positions:
            self._positions[job.full_name] = {r.number: k for k, r in enumerate(self.runs(job))}
        return self._positions[job.full_name][run.number]

    def completed(self, job: Job) -> list[Run]:
        """Runs finished by as-of, newest first."""
        if job.full_name not in self._completed:
            self._completed[job.full_name] = [r for r in self.runs(job) if not r.building(self.as_of)]
        return self._completed[job.full_name]

    def result(self, run: Run) -> str | None:
        return None if run.building(self.as_of) else run.result

    # -- urls --------------------------------------------------------------------------------------

    def job_url(self, full_name: str) -> str:
        return f"{self.base}{_job_path(full_name)}/"

    def run_url(self, run: Run) -> str:
        return f"{self.job_url(run.job)}{run.number}/"

    def href(self, run: Run, tail: str) -> str:
        return f"{self.prefix}{_job_path(run.job)}/{run.number}/{tail}"


class JenkinsEmulator(SystemEmulator):
    """The Jenkins JSON API over the world's Jenkins CI builds and deploy jobs."""

    name = "jenkins"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.jobs: dict[str, Job] = {}
        self.root: list[str] = []
        self.people: dict[str, Person] = world.people_by_id
        self.commits: dict[str, Commit] = {}
        for pr in world.pull_requests:
            for c in pr.commits:
                self.commits[c.sha] = c
        for line in world.mainline.values():
            for c in line:
                self.commits.setdefault(c.sha, c)
        self._build_jobs()

    # -- model ---------------------------------------------------------------------------------------

    def _add_job(self, job: Job) -> Job:
        self.jobs[job.full_name] = job
        if job.parent:
            self.jobs[job.parent].children.append(job.full_name)
        else:
            self.root.append(job.full_name)
        return job

    def _build_jobs(self) -> None:
        services = self.world.services
        ci = [s for s in services if s.ci == "jenkins"]
        deploys = [s for s in services if s.deploys_via == "jenkins"]
        if ci:
            self._add_job(Job(CI_FOLDER, FOLDER, "Multibranch pipelines, one per repository"))
            for s in ci:
                self._add_job(Job(f"{CI_FOLDER}/{s.name}", MULTIBRANCH, None, s.name))
        if deploys:
            self._add_job(Job(DEPLOY_FOLDER, FOLDER, "Deployment pipelines"))
            for s in deploys:
                description = f"Deploys {s.name} to staging or production"
                self._add_job(Job(f"{DEPLOY_FOLDER}/{s.name}-deploy", PIPELINE_JOB, description, s.name))
        for b in self.world.builds:
            if b.system != "jenkins":
                continue
            job = self.jobs.get(b.job) or self._add_job(Job(b.job, PIPELINE_JOB, None, b.service))
            job.runs.append(Run(b.job, b.number, b.started_at, b.finished_at, b.result, b.stages, build=b))
            job.first_start = min(job.first_start or b.started_at, b.started_at)
        for d in self.world.deployments:
            if d.system != "jenkins" or not d.jenkins_job or d.jenkins_number is None:
                continue
            run = Run(d.jenkins_job, d.jenkins_number, d.started_at, d.finished_at, d.raw_outcome, d.stages)
            run.deployment = d
            self.jobs[d.jenkins_job].runs.append(run)
        everything = [r for j in self.jobs.values() for r in j.runs]
        for k, run in enumerate(sorted(everything, key=lambda r: (r.started_at, r.job, r.number))):
            run.queue_id = QUEUE_ID_BASE + k
        for job in self.jobs.values():
            job.runs.sort(key=lambda r: r.number)
            job.children.sort(key=str.lower)  # Jenkins lists items by name
        self.root.sort(key=str.lower)
        self._main_builds: dict[tuple[str, str], Run] = {}
        for job in self.jobs.values():
            if job.name == "main" and job.parent.startswith(f"{CI_FOLDER}/"):
                for r in job.runs:
                    self._main_builds.setdefault((job.service, r.build.sha if r.build else ""), r)

    def job_at(self, ctx: _Ctx, full_name: str) -> Job:
        job = self.jobs.get(full_name)
        if job is None or not ctx.visible(job):
            raise HTTPError(404, "Not Found")
        return job

    # -- SystemEmulator hooks ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/api/json", self._root),
            Route.of("GET", "/job/{rest:path}", self._job_route),
        ]

    def authorized(self, request: Request) -> bool:
        return _basic_user(request) is not None

    def unauthorized(self, request: Request) -> Response:
        header = request.headers.get("Authorization") or ""
        user = ""
        if header.lower().startswith("basic "):
            try:
                user = b64decode(header[6:].strip()).decode("utf-8", "replace").partition(":")[0]
            except ValueError:
                user = ""
        message = f"Invalid password/token for user: {user}" if user else "Authentication required"
        body = _jetty_page(401, message, request.path)
        return Response(
            401,
            body,
            {"WWW-Authenticate": 'Basic realm="Jenkins"', "X-Jenkins": JENKINS_VERSION},
            content_type="text/html;charset=iso-8859-1",
        )

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        # Jenkins has no rate limit of its own: this is the reverse proxy in front of it, which answers
        # either 429 or 503, both with Retry-After (the shared HTTP layer honours both).
        status = 429 if _stable_int(request.path, sorted(request.query.items()), modulo=2) == 0 else 503
        title = "429 Too Many Requests" if status == 429 else "503 Service Temporarily Unavailable"
        body = f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        body += "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        return Response(status, body.encode(), {"Retry-After": str(wait_seconds)}, content_type="text/html")

    def error(self, request: Request, exc: HTTPError) -> Response:
        body = _jetty_page(exc.status, exc.message, request.path)
        return Response(exc.status, body, {"X-Jenkins": JENKINS_VERSION}, content_type="text/html;charset=utf-8")

    def env(self) -> dict[str, str]:
        runs = [r.started_at for j in self.jobs.values() for r in j.runs]
        start = min([self.world.config.start_at, *runs]).date()
        return {
            "SOURCES__JENKINS__USERNAME": SANDBOX_USERNAME,
            "SOURCES__JENKINS__API_TOKEN": SANDBOX_API_TOKEN,
            "SOURCES__JENKINS__ROOT_FOLDERS": ",".join(self.root),
            "SOURCES__JENKINS__START_DATE": start.isoformat(),
        }

    def common_headers(self, request: Request) -> dict[str, str]:
        return {"X-Jenkins": JENKINS_VERSION, "X-Content-Type-Options": "nosniff"}

    # -- handlers ---------------------------------------------------------------------------------

    def _respond(self, value: Any, ctx: _Ctx) -> Response:
        raw = ctx.request.arg("tree")
        try:
            tree = parse_tree(raw) if raw else None
        except ValueError as exc:
            raise HTTPError(400, f"Malformed tree parameter: {exc}") from exc
        return json_response(render(value, tree, ctx.request))

    def _root(self, request: Request) -> Response:
        ctx = _Ctx(request)
        jobs = [self.job_node(ctx, self.jobs[name]) for name in self.root]
        all_view = {"_class": "hudson.model.AllView", "name": "all", "url": f"{ctx.base}/"}
        fields: dict[str, Any] = {
            "_class": HUDSON,
            "assignedLabels": [{"name": "built-in"}],
            "mode": "NORMAL",
            "nodeDescription": "the Jenkins controller's built-in node",
            "nodeName": "",
            "numExecutors": 0,
            "description": None,
            "jobs": jobs,
            "overallLoad": {},
            "primaryView": all_view,
            "quietDownReason": None,
            "quietingDown": False,
            "slaveAgentPort": 50000,
            "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
            "url": f"{ctx.base}/",
            "useCrumbs": True,
            "useSecurity": True,
            "views": [all_view],
        }
        return self._respond(Node(fields, {"_class": HUDSON}), ctx)

    def _job_route(self, request: Request, rest: str) -> Response:
        ctx = _Ctx(request)
        segments = [s for s in rest.split("/") if s]
        names = [unquote(segments[0])]
        i = 1
        while i + 1 < len(segments) and segments[i] == "job":
            names.append(unquote(segments[i + 1]))
            i += 2
        job = self.job_at(ctx, "/".join(names))
        tail = segments[i:]
        if tail == ["api", "json"]:
            return self._respond(self.job_node(ctx, job), ctx)
        if tail == ["wfapi", "runs"]:
            return json_response(self.wfapi_runs(ctx, job))
        if len(tail) >= 2 and job.buildable:
            run = self._run_at(ctx, job, tail[0])
            rest_tail = tail[1:]
            if rest_tail == ["api", "json"]:
                return self._respond(self.run_node(ctx, job, run), ctx)
            if rest_tail == ["wfapi", "describe"]:
                return json_response(self.wfapi_run(ctx, run, full_stages=False))
            if rest_tail == ["testReport", "api", "json"]:
                return self._respond(self.test_report(ctx, job, run), ctx)
            if (
                len(rest_tail) == 5
                and rest_tail[:2] == ["execution", "node"]
                and rest_tail[3:] == ["wfapi", "describe"]
            ):
                return json_response(self.wfapi_node(ctx, run, rest_tail[2]))
        raise HTTPError(404, "Not Found")

    def _run_at(self, ctx: _Ctx, job: Job, token: str) -> Run:
        """A run by number or permalink (`lastBuild`, …), if it had started by as-of."""
        if token in _PERMALINKS:
            found = self._permalink(ctx, job, token)
        else:
            found = next((r for r in ctx.runs(job) if token.isdigit() and r.number == int(token)), None)
        if found is None:
            raise HTTPError(404, "Not Found")
        return found

    # -- jobs -----------------------------------------------------------------------------------------

    def _color(self, ctx: _Ctx, job: Job) -> str:
        runs = ctx.runs(job)
        done = ctx.completed(job)
        color = _COLORS.get(done[0].result, "notbuilt") if done else "notbuilt"
        return f"{color}_anime" if runs and runs[0].building(ctx.as_of) else color

    def job_ref(self, ctx: _Ctx, job: Job) -> dict[str, Any]:
        ref: dict[str, Any] = {"_class": job.cls, "name": job.name, "url": ctx.job_url(job.full_name)}
        if job.buildable:
            ref["color"] = self._color(ctx, job)
        return ref

    def job_node(self, ctx: _Ctx, job: Job) -> Node:
        """A folder, multibranch project or pipeline job with its Jenkins fields."""
        display = " » ".join(job.full_name.split("/"))
        fields: dict[str, Any] = {
            "_class": job.cls,
            "actions": self._job_actions(job),
            "description": job.description,
            "displayName": job.name,
            "displayNameOrNull": None,
            "fullDisplayName": display,
            "fullName": job.full_name,
            "name": job.name,
            "url": ctx.job_url(job.full_name),
        }
        if not job.buildable:
            all_view = {"_class": "hudson.model.AllView", "name": "All", "url": ctx.job_url(job.full_name)}
            fields["healthReport"] = []
            fields["jobs"] = lambda: [
                self.job_node(ctx, self.jobs[c]) for c in job.children if ctx.visible(self.jobs[c])
            ]
            fields["primaryView"] = all_view
            fields["views"] = [all_view]
            return Node(fields, self.job_ref(ctx, job))
        fields.update(
            {
                "buildable": True,
                "builds": lambda: [self.run_node(ctx, job, r) for r in ctx.runs(job)[:BUILDS_LIMIT]],
                "color": lambda: self._color(ctx, job),
                "healthReport": lambda: self._health(ctx, job),
                "inQueue": False,
                "keepDependencies": False,
                "nextBuildNumber": lambda: (ctx.runs(job)[0].number if ctx.runs(job) else 0) + 1,
                "property": self._job_properties(job),
                "queueItem": None,
                "concurrentBuild": True,
                "resumeBlocked": False,
                "allBuilds": lambda: [self.run_node(ctx, job, r) for r in ctx.runs(job)],
            }
        )
        for link in _PERMALINKS:
            fields[link] = _permalink_getter(self, ctx, job, link)
        return Node(fields, self.job_ref(ctx, job), hidden=("allBuilds",))

    def _permalink(self, ctx: _Ctx, job: Job, link: str) -> Run | None:
        runs, done = ctx.runs(job), ctx.completed(job)
        picks: dict[str, Callable[[], Run | None]] = {
            "lastBuild": lambda: runs[0] if runs else None,
            "firstBuild": lambda: runs[-1] if runs else None,
            "lastCompletedBuild": lambda: done[0] if done else None,
            "lastSuccessfulBuild": lambda: next((r for r in done if r.result in ("SUCCESS", "UNSTABLE")), None),
            "lastStableBuild": lambda: next((r for r in done if r.result == "SUCCESS"), None),
            "lastFailedBuild": lambda: next((r for r in done if r.result == "FAILURE"), None),
            "lastUnstableBuild": lambda: next((r for r in done if r.result == "UNSTABLE"), None),
            "lastUnsuccessfulBuild": lambda: next((r for r in done if r.result != "SUCCESS"), None),
        }
        return picks[link]()

    def _health(self, ctx: _Ctx, job: Job) -> list[dict[str, Any]]:
        recent = ctx.completed(job)[:HEALTH_SAMPLE]
        if not recent:
            return []
        failed = sum(1 for r in recent if r.result in ("FAILURE", "ABORTED"))
        score = 100 - 100 * failed // len(recent)
        band = next((b for limit, b in _HEALTH_BANDS if score > limit), "00to19")
        description = (
            "Build stability: No recent builds failed."
            if not failed
            else f"Build stability: {failed} out of the last {len(recent)} builds failed."
        )
        return [
            {
                "description": description,
                "iconClassName": f"icon-health-{band}",
                "iconUrl": f"health-{band}.png",
                "score": score,
            }
        ]

    def _job_actions(self, job: Job) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = []
        if job.full_name.startswith(f"{DEPLOY_FOLDER}/") and job.buildable:
            actions.append({"_class": "hudson.model.ParametersDefinitionProperty", **_DEPLOY_PARAMETERS})
        actions += [{}, {"_class": "org.jenkinsci.plugins.displayurlapi.actions.JobDisplayAction"}]
        actions.append({"_class": "com.cloudbees.plugins.credentials.ViewCredentialsAction"})
        return actions

    def _job_properties(self, job: Job) -> list[dict[str, Any]]:
        if job.full_name.startswith(f"{DEPLOY_FOLDER}/"):
            return [{"_class": "hudson.model.ParametersDefinitionProperty", **_DEPLOY_PARAMETERS}]
        return [{"_class": "org.jenkinsci.plugins.workflow.multibranch.BranchJobProperty", "branch": {}}]

    # -- runs -----------------------------------------------------------------------------------------

    def _estimate(self, ctx: _Ctx, job: Job) -> int:
        """Jenkins' estimatedDuration: the mean of the last 3 completed runs at least unstable, else -1."""
        if job.full_name not in ctx.estimates:
            sample = [r for r in ctx.completed(job) if r.result in ("SUCCESS", "UNSTABLE")][:ESTIMATE_SAMPLE]
            durations = [_ms(r.finished_at) - _ms(r.started_at) for r in sample]
            ctx.estimates[job.full_name] = sum(durations) // len(durations) if durations else -1
        return ctx.estimates[job.full_name]

    def run_ref(self, ctx: _Ctx, run: Run) -> dict[str, Any]:
        return {"_class": PIPELINE_RUN, "number": run.number, "url": ctx.run_url(run)}

    def run_node(self, ctx: _Ctx, job: Job, run: Run) -> Node:
        """A pipeline run (`WorkflowRun`) as the build API shows it at as-of."""
        building = run.building(ctx.as_of)
        runs = ctx.runs(job)
        index = ctx.position(job, run)
        newer = runs[index - 1] if index > 0 else None
        older = runs[index + 1] if index + 1 < len(runs) else None
        fields: dict[str, Any] = {
            "_class": PIPELINE_RUN,
            "actions": lambda: self._run_actions(ctx, job, run),
            "artifacts": lambda: self._artifacts(ctx, run),
            "building": building,
            "description": None,
            "displayName": f"#{run.number}",
            "duration": 0 if building else _ms(run.finished_at) - _ms(run.started_at),
            "estimatedDuration": lambda: self._estimate(ctx, job),
            "executor": {"_class": "hudson.model.OneOffExecutor"} if building else None,
            "fullDisplayName": f"{' » '.join(job.full_name.split('/'))} #{run.number}",
            "id": str(run.number),
            "keepLog": False,
            "number": run.number,
            "queueId": run.queue_id,
            "result": ctx.result(run),
            "timestamp": _ms(run.started_at),
            "url": ctx.run_url(run),
            "changeSets": lambda: self._change_sets(ctx, run),
            "culprits": lambda: self._culprits(ctx, run),
            "inProgress": building,
            "nextBuild": Node({}, self.run_ref(ctx, newer)) if newer else None,
            "previousBuild": Node({}, self.run_ref(ctx, older)) if older else None,
        }
        return Node(fields, self.run_ref(ctx, run))

    def _run_actions(self, ctx: _Ctx, job: Job, run: Run) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = [{"_class": "hudson.model.CauseAction", "causes": self._causes(ctx, job, run)}]
        sha, branch = "", ""
        if run.deployment is not None:
            d = run.deployment
            actions.append(
                {
                    "_class": "hudson.model.ParametersAction",
                    "parameters": [
                        {"_class": "hudson.model.StringParameterValue", "name": "ENVIRONMENT", "value": d.environment},
                        {"_class": "hudson.model.StringParameterValue", "name": "GIT_SHA", "value": d.sha},
                        {"_class": "hudson.model.BooleanParameterValue", "name": "ROLLBACK", "value": d.is_rollback},
                    ],
                }
            )
            sha, branch = d.sha, "detached"  # the pipeline checks out GIT_SHA, not a branch head
        elif run.build is not None:
            actions.append({"_class": "jenkins.scm.api.SCMRevisionAction"})
            sha, branch = run.build.sha, run.build.branch
        actions.append({"_class": "org.jenkinsci.plugins.workflow.libs.LibrariesAction"})
        actions.append(
            {
                "_class": "hudson.plugins.git.util.BuildData",
                "lastBuiltRevision": {"SHA1": sha, "branch": [{"SHA1": sha, "name": branch}]},
                "remoteUrls": [f"https://github.com/{self.world.org}/{self._service(job)}.git"],
                "scmName": "",
            }
        )
        cases = run.build.test_cases if run.build is not None else []
        if cases and not run.building(ctx.as_of):
            actions.append(
                {
                    "_class": "hudson.tasks.junit.TestResultAction",
                    "failCount": sum(1 for c in cases if c.status == "FAILED"),
                    "skipCount": sum(1 for c in cases if c.status == "SKIPPED"),
                    "totalCount": len(cases),
                    "urlName": "testReport",
                }
            )
        actions += [
            {},
            {"_class": "org.jenkinsci.plugins.displayurlapi.actions.RunDisplayAction"},
            {"_class": "org.jenkinsci.plugins.pipeline.modeldefinition.actions.RestartDeclarativePipelineAction"},
            {"_class": "org.jenkinsci.plugins.workflow.job.views.FlowGraphAction"},
            {},
        ]
        return actions

    def _service(self, job: Job) -> str:
        return job.service or self.jobs[job.parent].service

    def _causes(self, ctx: _Ctx, job: Job, run: Run) -> list[dict[str, Any]]:
        if run.build is not None:
            b = run.build
            if b.trigger == "person":
                person = self.people.get(b.triggered_by_id or "")
                return [_user_cause(person)]
            if b.event == "pull_request":
                first = job.runs[0] is run
                verb = "opened" if first else "updated"
                return [
                    {
                        "_class": "jenkins.branch.BranchEventCause",
                        "shortDescription": f"Pull request #{b.pr_number} {verb}",
                    }
                ]
            return [
                {"_class": "jenkins.branch.BranchEventCause", "shortDescription": f"Push event to branch {b.branch}"}
            ]
        d = run.deployment
        assert d is not None
        if d.triggered_by == "person":
            return [_user_cause(self.people.get(d.creator_id))]
        if d.is_rollback:
            note = "rollback requested by alerting"
            return [
                {
                    "_class": "hudson.model.Cause$RemoteCause",
                    "shortDescription": f"Started by remote host 10.20.0.15 with note: {note}",
                    "addr": "10.20.0.15",
                    "note": note,
                }
            ]
        upstream = self._upstream(job, run)
        if upstream is None:
            return [
                {"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause", "shortDescription": "Started by timer"}
            ]
        return [
            {
                "_class": "hudson.model.Cause$UpstreamCause",
                "shortDescription": f'Started by upstream project "{upstream.job}" build number {upstream.number}',
                "upstreamBuild": upstream.number,
                "upstreamProject": upstream.job,
                "upstreamUrl": f"{_job_path(upstream.job).lstrip('/')}/",
            }
        ]

    def _upstream(self, job: Job, run: Run) -> Run | None:
        """Production deploys are triggered by the staging deploy of the same commit, staging deploys
        by the main branch's CI build of it."""
        d = run.deployment
        assert d is not None
        if d.environment == "production":
            for other in reversed(job.runs):
                od = other.deployment
                if (
                    other.number < run.number
                    and od is not None
                    and od.environment == "staging"
                    and od.sha == d.sha
                    and od.outcome == "success"
                    and other.finished_at <= run.started_at
                ):
                    return other
            return None
        main = self._main_builds.get((self._service(job), d.sha))
        return main if main is not None and main.finished_at <= run.started_at else None

    def _change_sets(self, ctx: _Ctx, run: Run) -> list[dict[str, Any]]:
        if run.build is None:
            return []
        items = [self._change(ctx, self.commits[sha]) for sha in run.build.changeset_shas if sha in self.commits]
        return [{"_class": "hudson.plugins.git.GitChangeSetList", "items": items, "kind": "git"}] if items else []

    def _change(self, ctx: _Ctx, commit: Commit) -> dict[str, Any]:
        person = self.people.get(commit.author_id)
        message = commit.message
        return {
            "_class": "hudson.plugins.git.GitChangeSet",
            "affectedPaths": [],  # the world does not model file paths
            "commitId": commit.sha,
            "timestamp": _ms(commit.committed_at),
            "author": _user_ref(ctx, person),
            "authorEmail": person.email if person else "",
            "comment": message if message.endswith("\n") else message + "\n",
            "date": commit.committed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000"),
            "id": commit.sha,
            "msg": message.splitlines()[0] if message else "",
            "paths": [],
        }

    def _culprits(self, ctx: _Ctx, run: Run) -> list[dict[str, Any]]:
        if run.build is None:
            return []
        seen: dict[str, dict[str, Any]] = {}
        for sha in run.build.changeset_shas:
            commit = self.commits.get(sha)
            if commit is not None and commit.author_id not in seen:
                seen[commit.author_id] = _user_ref(ctx, self.people.get(commit.author_id))
        return list(seen.values())

    def _artifacts(self, ctx: _Ctx, run: Run) -> list[dict[str, str]]:
        if run.build is None or run.building(ctx.as_of):
            return []
        packaged = any(s.name == "Package" and s.status == "SUCCESS" for s in run.stages)
        if not packaged:
            return []
        name = f"{run.build.service}-{run.build.sha[:7]}.tar.gz"
        return [{"displayPath": name, "fileName": name, "relativePath": f"dist/{name}"}]

    # -- Pipeline Stage View (wfapi) ------------------------------------------------------------------

    def _stages(self, ctx: _Ctx, run: Run) -> list[tuple[Stage, str, int, int]]:
        """(stage, status, startTimeMillis, durationMillis) as Stage View shows them at as-of."""
        building = run.building(ctx.as_of)
        out: list[tuple[Stage, str, int, int]] = []
        for s in run.stages:
            start = _ms(s.started_at)
            if building:
                if s.status == "NOT_EXECUTED" or s.started_at > ctx.as_of:
                    continue
                if start + s.duration_ms > ctx.as_of_ms:
                    out.append((s, "IN_PROGRESS", start, ctx.as_of_ms - start))
                    continue
            if s.status == "NOT_EXECUTED":
                out.append((s, s.status, 0, 0))  # never started: Stage View reports time 0
                continue
            out.append((s, s.status, start, s.duration_ms))
        return out

    def _stage_json(self, ctx: _Ctx, run: Run, stage: Stage, status: str, start: int, duration: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "_links": {"self": {"href": ctx.href(run, f"execution/node/{stage.stage_id}/wfapi/describe")}},
            "id": str(stage.stage_id),
            "name": stage.name,
            "execNode": "",
            "status": status,
        }
        if status in _STAGE_ERRORS:
            out["error"] = dict(_STAGE_ERRORS[status])
        out.update({"startTimeMillis": start, "durationMillis": duration, "pauseDurationMillis": 0})
        return out

    def _flow_node(self, ctx: _Ctx, run: Run, stage: Stage, status: str, start: int, duration: int) -> dict[str, Any]:
        node_id = str(stage.stage_id * 10 + 1)  # never a stage id of the same run (they are consecutive)
        step, command = _STEPS.get(stage.name, ("Shell Script", None))
        out: dict[str, Any] = {
            "_links": {
                "self": {"href": ctx.href(run, f"execution/node/{node_id}/wfapi/describe")},
                "log": {"href": ctx.href(run, f"execution/node/{node_id}/wfapi/log")},
                "console": {"href": ctx.href(run, f"execution/node/{node_id}/log")},
            },
            "id": node_id,
            "name": step,
            "execNode": "",
            "status": status,
        }
        if command:
            out["parameterDescription"] = command
        if status in _STAGE_ERRORS:
            out["error"] = dict(_STAGE_ERRORS[status])
        out.update(
            {
                "startTimeMillis": start,
                "durationMillis": duration,
                "pauseDurationMillis": 0,
                "parentNodes": [str(stage.stage_id)],
            }
        )
        return out

    def wfapi_run(self, ctx: _Ctx, run: Run, *, full_stages: bool) -> dict[str, Any]:
        """The Stage View description of one run (`wfapi/describe`, or an element of `wfapi/runs`)."""
        building = run.building(ctx.as_of)
        start = _ms(run.started_at)
        end = ctx.as_of_ms if building else _ms(run.finished_at)
        status = "IN_PROGRESS" if building else _WFAPI_STATUS.get(run.result, run.result)
        stages = []
        for stage, st_status, st_start, st_duration in self._stages(ctx, run):
            item = self._stage_json(ctx, run, stage, st_status, st_start, st_duration)
            if full_stages:
                item["stageFlowNodes"] = [self._flow_node(ctx, run, stage, st_status, st_start, st_duration)]
            stages.append(item)
        return {
            "_links": {
                "self": {"href": ctx.href(run, "wfapi/describe")},
                "changesets": {"href": ctx.href(run, "wfapi/changesets")},
                "artifacts": {"href": ctx.href(run, "wfapi/artifacts")},
            },
            "id": str(run.number),
            "name": f"#{run.number}",
            "status": status,
            "startTimeMillis": start,
            "endTimeMillis": end,
            "durationMillis": end - start,
            # The world has no queue waits; a small stable value keeps the field realistic.
            "queueDurationMillis": 5 + _stable_int(run.job, run.number, modulo=2000),
            "pauseDurationMillis": 0,
            "stages": stages,
        }

    def wfapi_runs(self, ctx: _Ctx, job: Job) -> list[dict[str, Any]]:
        """`wfapi/runs`: the newest 10 runs, or those after `since=#N`; stage steps with fullStages."""
        if not job.buildable:
            raise HTTPError(404, "Not Found")
        runs = ctx.runs(job)
        since = ctx.request.arg("since") or ""
        if since.startswith("#") and since[1:].isdigit():
            runs = [r for r in runs if r.number > int(since[1:])]
        full = (ctx.request.arg("fullStages") or "").lower() == "true"
        return [self.wfapi_run(ctx, r, full_stages=full) for r in runs[:WFAPI_RUNS_LIMIT]]

    def wfapi_node(self, ctx: _Ctx, run: Run, node_id: str) -> dict[str, Any]:
        """`execution/node/{id}/wfapi/describe` of a stage: the stage with its flow nodes."""
        for stage, status, start, duration in self._stages(ctx, run):
            if str(stage.stage_id) == node_id:
                out = self._stage_json(ctx, run, stage, status, start, duration)
                out["stageFlowNodes"] = [self._flow_node(ctx, run, stage, status, start, duration)]
                return out
        raise HTTPError(404, "Not Found")

    # -- JUnit report -------------------------------------------------------------------------------

    def test_report(self, ctx: _Ctx, job: Job, run: Run) -> Node:
        """The JUnit `TestResult` of a finished CI run; 404 when the run published none."""
        if run.build is None or not run.build.test_cases or run.building(ctx.as_of):
            raise HTTPError(404, "Not Found")
        cases = run.build.test_cases
        suites: dict[str, list[dict[str, Any]]] = {}
        for case in cases:
            suites.setdefault(case.suite, []).append(self._case(ctx, job, run, case))
        test_stage = next((s for s in run.stages if s.name == "Test"), None)
        stamp = (test_stage or run.stages[0]).started_at.strftime("%Y-%m-%dT%H:%M:%S") if run.stages else None
        suite_list = [
            {
                "cases": items,
                "duration": round(sum(c["duration"] for c in items), 3),
                "enclosingBlockNames": [],
                "enclosingBlocks": [],
                "id": None,
                "name": name,
                "nodeId": None,
                "properties": {},
                "stderr": None,
                "stdout": None,
                "timestamp": stamp,
            }
            for name, items in suites.items()
        ]
        failed = sum(1 for c in cases if c.status == "FAILED")
        skipped = sum(1 for c in cases if c.status == "SKIPPED")
        fields = {
            "_class": "hudson.tasks.junit.TestResult",
            "testActions": [],
            "duration": round(sum(c.duration_s for c in cases), 3),
            "empty": False,
            "failCount": failed,
            "passCount": len(cases) - failed - skipped,
            "skipCount": skipped,
            "suites": suite_list,
        }
        return Node(fields, {"_class": "hudson.tasks.junit.TestResult"})

    def _case(self, ctx: _Ctx, job: Job, run: Run, case: Any) -> dict[str, Any]:
        age, since = (0, 0)
        if case.status == "FAILED":
            age, since = self._failure_streak(ctx, job, run, case.class_name, case.name)
        trace = None
        if case.error:
            trace = f"{case.error}\n\tat {case.class_name}({case.name.split('_')[-1]}.java:42)\n"
        return {
            "testActions": [],
            "age": age,
            "className": case.class_name,
            "duration": float(case.duration_s),
            "errorDetails": case.error,
            "errorStackTrace": trace,
            "failedSince": since,
            "name": case.name,
            "properties": {},
            "skipped": case.status == "SKIPPED",
            "skippedMessage": None,
            "status": case.status,
            "stderr": None,
            "stdout": None,
        }

    def _failure_streak(self, ctx: _Ctx, job: Job, run: Run, class_name: str, name: str) -> tuple[int, int]:
        """(age, failedSince): how many runs in a row, up to this one, failed the case, and where it began."""
        age, since = 1, run.number
        older = [r for r in ctx.completed(job) if r.number < run.number]
        for r in older:
            case = next(
                (c for c in (r.build.test_cases if r.build else []) if c.class_name == class_name and c.name == name),
                None,
            )
            if case is None or case.status != "FAILED":
                break
            age, since = age + 1, r.number
        return age, since


_DEPLOY_PARAMETERS: dict[str, Any] = {
    "parameterDefinitions": [
        {
            "_class": "hudson.model.ChoiceParameterDefinition",
            "defaultParameterValue": {
                "_class": "hudson.model.StringParameterValue",
                "name": "ENVIRONMENT",
                "value": "staging",
            },
            "description": "Where to deploy",
            "name": "ENVIRONMENT",
            "type": "ChoiceParameterDefinition",
            "choices": ["staging", "production"],
        },
        {
            "_class": "hudson.model.StringParameterDefinition",
            "defaultParameterValue": {"_class": "hudson.model.StringParameterValue", "name": "GIT_SHA", "value": ""},
            "description": "Commit to deploy",
            "name": "GIT_SHA",
            "type": "StringParameterDefinition",
        },
        {
            "_class": "hudson.model.BooleanParameterDefinition",
            "defaultParameterValue": {
                "_class": "hudson.model.BooleanParameterValue",
                "name": "ROLLBACK",
                "value": False,
            },
            "description": "Redeploy an earlier commit to undo a faulty change",
            "name": "ROLLBACK",
            "type": "BooleanParameterDefinition",
        },
    ]
}


def _permalink_getter(em: JenkinsEmulator, ctx: _Ctx, job: Job, link: str) -> Callable[[], Node | None]:
    def get() -> Node | None:
        run = em._permalink(ctx, job, link)
        return em.run_node(ctx, job, run) if run is not None else None

    return get


def _user_ref(ctx: _Ctx, person: Person | None) -> dict[str, str]:
    user = person.jenkins_user if person else "unknown"
    return {"absoluteUrl": f"{ctx.base}/user/{quote(user, safe='')}", "fullName": person.name if person else user}


def _user_cause(person: Person | None) -> dict[str, Any]:
    if person is None:  # no one recorded: Jenkins' anonymous user
        return {
            "_class": "hudson.model.Cause$UserIdCause",
            "shortDescription": "Started by user anonymous",
            "userId": None,
            "userName": "anonymous",
        }
    return {
        "_class": "hudson.model.Cause$UserIdCause",
        "shortDescription": f"Started by user {person.name}",
        "userId": person.jenkins_user,
        "userName": person.name,
    }


def _basic_user(request: Request) -> str | None:
    """The user of a well-formed Basic header with a non-empty user and token, else None."""
    header = request.headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        user, sep, token = b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:
        return None
    return user if sep and user and token else None


def _jetty_page(status: int, message: str, path: str) -> bytes:
    """Jenkins' (Jetty's) HTML error page."""
    msg, uri = html.escape(message), html.escape(path)
    return (
        '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
        f"<title>Error {status} {msg}</title>\n</head>\n<body><h2>HTTP ERROR {status} {msg}</h2>\n<table>\n"
        f"<tr><th>URI:</th><td>{uri}</td></tr>\n<tr><th>STATUS:</th><td>{status}</td></tr>\n"
        f"<tr><th>MESSAGE:</th><td>{msg}</td></tr>\n<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n"
        '<hr/><a href="https://eclipse.org/jetty">Powered by Jetty:// 10.0.20</a><hr/>\n\n</body>\n</html>\n'
    ).encode()
