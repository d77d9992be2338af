"""dlt source for Jenkins: jobs, builds, pipeline stages and JUnit test cases into `raw_jenkins`.

Hand-written resources, not the declarative `rest_api` source: Jenkins has no pagination to
declare. Jobs are discovered by walking folders and multibranch projects recursively, every
request shapes its answer with the `tree=` query language, and builds are paged with
`allBuilds[...]{M,N}` ranges (newest first) that stop at a per-job watermark (source-apis.md §3).

Tables (all `merge`, so a re-run or a re-read build replaces its rows):

- `jobs` (key `full_name`): every folder, multibranch project and buildable job under the root
  folders, with `parent_full_name`, `color` and `last_build__number`.
- `builds` (key `job_full_name`, `number`): every build. Jenkins' `actions` list is split by kind
  into `causes` (what started it), `interruptions` (why an aborted build stopped), `parameters`
  (values as text: strings unchanged, booleans and numbers in their JSON spelling, e.g. `true`),
  `build_data` (git: `last_built_revision__sha1`, branches, remote URLs; a pipeline using shared
  libraries has several) and `test_result` (JUnit counts); UI-only actions are dropped.
  `change_sets[].items[]` keep the commits. `timestamp` and `duration` stay epoch-ms / ms integers
  as Jenkins sends them. A build still running has `building = true` and `result = null`; it is
  re-read on later runs until it finishes.
- `build_stages` (key `job_full_name`, `build_number`, `id`): Pipeline Stage View stages of finished
  pipeline builds, with the wfapi `status` vocabulary (FAILED, not FAILURE).
- `test_cases` (key `job_full_name`, `build_number`, `suite_name`, `class_name`, `name`): one row per
  JUnit case of finished builds that published a report.

Incremental: dlt state keeps, per job, the highest build number loaded and the builds that were
still running (the "reopen" set). A later run reads a job only when the job listing shows a newer
`lastBuild` or the job has builds to reopen; it pages `allBuilds` until it meets the watermark and
re-reads the reopened builds one by one. Stages and test reports are fetched once, when a build is
first seen finished, so old builds' reports are never re-read. On a job's first load,
`start_date` bounds how far back builds are read.

Bad input (`pipelines.sources.quarantine`): job rows, build rows (before their numbers move the
watermark), stages and test cases pass their table's `Gate`; records that fail go to
`raw_jenkins.quarantine` and feed no child resource; a field failing on most of a page stops the source.

Every column the staging models read is declared with a type (child tables through nested hints),
and `builds`, `build_stages` and `test_cases` are created even when empty, so an early or small
controller loads the same shape; child tables that never received a row are created by
`create_declared_tables(pipeline)` after the load (dlt cannot create them ahead of their data).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.sources import DltResource

from pipelines.sources.http import JenkinsAuth, SourceNotFoundError, SourceSession, make_session
from pipelines.sources.quarantine import Gate, declare_table, quarantined, routed, shield

PAGE_SIZE = 100
"""allBuilds range size: 100 is what Jenkins' own `builds` list holds and DevLake requests (fact 2)."""
DEFAULT_MAX_WORKERS = 8
"""Parallel requests: this source makes many small requests; 8 hides their latency while staying
gentle with a controller that has no rate limit of its own to protect it."""

PIPELINE_RUN = "org.jenkinsci.plugins.workflow.job.WorkflowRun"
INTERRUPTED_ACTION = "jenkins.model.InterruptedBuildAction"
TEST_RESULT_ACTIONS = frozenset(
    {"hudson.tasks.junit.TestResultAction", "hudson.maven.reporters.SurefireAggregatedReport"}
)
CONTAINER_CLASSES = frozenset(
    {
        "com.cloudbees.hudson.plugins.folder.Folder",
        "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
        "jenkins.branch.OrganizationFolder",
    }
)

BUILDABLE_CLASSES = frozenset(
    {
        "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "hudson.model.FreeStyleProject",
        "hudson.maven.MavenModuleSet",
        "hudson.matrix.MatrixProject",
    }
)

JOB_FIELDS = "_class,name,fullName,url,color,description,lastBuild[number],lastCompletedBuild[number]"
CONTAINER_TREE = f"{JOB_FIELDS},jobs[{JOB_FIELDS}]"
BUILD_FIELDS = (
    "_class,number,id,url,timestamp,duration,estimatedDuration,result,building,fullDisplayName,"
    "displayName,description,queueId,keepLog,"
    "actions[_class,causes[*],parameters[_class,name,value],lastBuiltRevision[SHA1,branch[SHA1,name]],remoteUrls,"
    "failCount,skipCount,totalCount,urlName],"
    "changeSets[_class,kind,items[_class,commitId,msg,timestamp,date,authorEmail,author[fullName]]]"
)
CASE_FIELDS = "className,name,status,duration,errorDetails,errorStackTrace,skipped,skippedMessage,age,failedSince"
SUITES_TREE = f"suites[name,timestamp,cases[{CASE_FIELDS}]]"
# Maven jobs publish an aggregated report whose suites sit under each module's child report.
REPORT_TREE = f"failCount,passCount,skipCount,{SUITES_TREE},childReports[result[{SUITES_TREE}]]"

_T = TypeVar("_T")
_R = TypeVar("_R")


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------


def job_path(full_name: str) -> str:
    """`ci/indexer/PR-7` → `job/ci/job/indexer/job/PR-7` (each name URL-encoded, non-ASCII included)."""
    return "/".join(f"job/{quote(part, safe='')}" for part in full_name.strip("/").split("/"))


class JenkinsClient:
    """GETs JSON from one Jenkins controller through the shared session (auth, retries, errors)."""

    def __init__(self, base_url: str, session: SourceSession, max_workers: int = DEFAULT_MAX_WORKERS) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.max_workers = max(1, max_workers)

    def get(self, path: str, tree: str | None = None) -> Any:
        """GET `<base_url>/<path>/api/json`-style URLs; `path` is relative to the base URL."""
        params = {"tree": tree} if tree else None
        response = self.session.get(f"{self.base_url}/{path.lstrip('/')}", params=params)
        return response.json()

    def get_optional(self, path: str, tree: str | None = None) -> Any | None:
        """Like `get`, but None when the object does not exist (a discarded build, no test report)."""
        try:
            return self.get(path, tree)
        except SourceNotFoundError:
            return None

    def parallel(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """`[fn(x) for x in items]` on a thread pool, results in input order; the first error propagates."""
        if len(items) <= 1 or self.max_workers == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items)), thread_name_prefix="jenkins") as pool:
            return list(pool.map(fn, items))


# --------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------


def is_container(job: dict[str, Any]) -> bool:
    """Folders, multibranch projects and organisation folders hold jobs; builds belong to the others."""
    cls = str(job.get("_class") or "")
    return cls in CONTAINER_CLASSES or cls.endswith(("Folder", "MultiBranchProject"))


def is_buildable(job: dict[str, Any]) -> bool:
    """A job that has builds: a known job type, or one answering `lastBuild` (null before its first
    build) or `color`, which only buildable jobs have."""
    if is_container(job):
        return False
    return job.get("_class") in BUILDABLE_CLASSES or "lastBuild" in job or "color" in job


def job_row(item: dict[str, Any], parent: str) -> dict[str, Any]:
    """A `jobs` row: the listing item plus its full name (computed when Jenkins omits `fullName`)."""
    row = {k: v for k, v in item.items() if k != "jobs"}
    name = str(item.get("name") or "")
    row["fullName"] = item.get("fullName") or (f"{parent}/{name}" if parent else name)
    row["parent_full_name"] = parent or None
    return row


def walk_jobs(client: JenkinsClient, root_folders: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    """Yield job rows, one list per folder listing, walking containers level by level.

    The root folders are read one after another, so bad credentials fail on the very first request;
    the levels below are read in parallel.
    """
    frontier: list[dict[str, Any]] = []
    if root_folders:
        for folder in root_folders:
            data = client.get(f"{job_path(folder)}/api/json", CONTAINER_TREE)
            row = job_row(data, folder.rpartition("/")[0])
            row["fullName"] = data.get("fullName") or folder
            children = [job_row(c, row["fullName"]) for c in data.get("jobs") or []]
            yield [row, *children]
            frontier += [c for c in children if is_container(c)]
    else:
        data = client.get("api/json", f"jobs[{JOB_FIELDS}]")
        children = [job_row(c, "") for c in data.get("jobs") or []]
        yield children
        frontier = [c for c in children if is_container(c)]
    while frontier:
        listings = client.parallel(
            lambda c: client.get(f"{job_path(c['fullName'])}/api/json", CONTAINER_TREE), frontier
        )
        below: list[dict[str, Any]] = []
        for container, data in zip(frontier, listings, strict=True):
            children = [job_row(c, container["fullName"]) for c in data.get("jobs") or []]
            if children:
                yield children
            below += [c for c in children if is_container(c)]
        frontier = below


# --------------------------------------------------------------------------------------------------
# Builds
# --------------------------------------------------------------------------------------------------


@dataclass
class JobBuilds:
    """What one job's read produced: new or reopened builds and the job's next state."""

    full_name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def _parameter_value(value: Any) -> Any:
    # One text column for every parameter type (a boolean ROLLBACK beside a string GIT_SHA would
    # otherwise split into variant columns in an order-dependent way).
    return value if value is None or isinstance(value, str) else json.dumps(value)


def build_row(job_full_name: str, item: dict[str, Any]) -> dict[str, Any]:
    """A `builds` row from an allBuilds/build item: `actions` split into causes, parameters, git
    build data and JUnit counts (see the module docstring)."""
    row = {k: v for k, v in item.items() if k != "actions"}
    row["job_full_name"] = job_full_name
    causes: list[dict[str, Any]] = []
    parameters: list[dict[str, Any]] = []
    build_data: list[dict[str, Any]] = []
    test_result: dict[str, Any] | None = None
    interruptions: list[dict[str, Any]] = []
    for action in item.get("actions") or []:
        if not isinstance(action, dict):
            continue
        # Aborted builds carry a second `causes` list, of why they were interrupted (e.g. a timeout).
        if action.get("_class") == INTERRUPTED_ACTION:
            interruptions += action.get("causes") or []
        else:
            causes += action.get("causes") or []
        for p in action.get("parameters") or []:
            parameters.append({**p, "value": _parameter_value(p.get("value"))})
        if "lastBuiltRevision" in action or "remoteUrls" in action:
            build_data.append({k: v for k, v in action.items() if k in ("_class", "lastBuiltRevision", "remoteUrls")})
        if action.get("_class") in TEST_RESULT_ACTIONS or action.get("urlName") == "testReport":
            test_result = {k: action.get(k) for k in ("_class", "failCount", "skipCount", "totalCount", "urlName")}
    row["causes"] = causes
    row["interruptions"] = interruptions
    row["parameters"] = parameters
    row["build_data"] = build_data
    if test_result is not None:
        row["test_result"] = test_result
    return row


def _start_ms(start_date: str | date | None) -> int | None:
    if not start_date:
        return None
    day = start_date if isinstance(start_date, date) else date.fromisoformat(str(start_date)[:10])
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def read_job_builds(
    client: JenkinsClient,
    job: dict[str, Any],
    state: dict[str, Any] | None,
    start_ms: int | None,
    gate: Gate | None = None,
) -> JobBuilds:
    """Read a job's builds newer than its watermark, and re-read the ones that were still running.

    Builds that fail the gate go to `quarantined` and move neither the watermark nor the reopen set.
    """
    name = job["fullName"]
    gate = gate or gates()["builds"]
    out = JobBuilds(name)
    last = int(state["last_number"]) if state else 0
    reopen = [int(n) for n in (state or {}).get("reopen", [])]
    seen: dict[int, dict[str, Any]] = {}
    top = last
    if has_new_builds(job, last):
        offset = 0
        while True:
            tree = f"allBuilds[{BUILD_FIELDS}]{{{offset},{offset + PAGE_SIZE}}}"
            items = client.get(f"{job_path(name)}/api/json", tree).get("allBuilds") or []
            done = len(items) < PAGE_SIZE
            endpoint = f"GET /{job_path(name)}/api/json?tree=allBuilds[…]{{{offset},{offset + PAGE_SIZE}}}"
            passed, bad = gate.split([build_row(name, item) for item in items], endpoint)
            out.quarantined += bad
            for row in passed:
                number = int(row["number"])
                top = max(top, number)
                if number <= last:  # newest first: everything from here on was loaded before
                    done = True
                    break
                if state is None and start_ms is not None and int(row.get("timestamp") or 0) < start_ms:
                    done = True  # first load: older than start_date
                    break
                seen.setdefault(number, row)  # a page shifted by a new build repeats an item
            if done:
                break
            offset += PAGE_SIZE
    for number in reopen:
        if number in seen:
            continue
        item = client.get_optional(f"{job_path(name)}/{number}/api/json", BUILD_FIELDS)
        if item is not None:  # None: the build was discarded since
            passed, bad = gate.split([build_row(name, item)], f"GET /{job_path(name)}/{number}/api/json")
            out.quarantined += bad
            if passed:
                seen[number] = passed[0]
    out.rows = [seen[n] for n in sorted(seen)]
    out.state = {"last_number": top, "reopen": [r["number"] for r in out.rows if r.get("building")]}
    return out


def has_new_builds(job: dict[str, Any], last_number: int) -> bool:
    """Whether the job listing shows a build above `last_number` (or says nothing about builds)."""
    if "lastBuild" not in job:
        return True  # the listing did not say: page to find out
    newest = (job["lastBuild"] or {}).get("number")
    return newest is not None and int(newest) > last_number


def _needs_read(job: dict[str, Any], state: dict[str, Any] | None) -> bool:
    if state and state.get("reopen"):
        return True
    return has_new_builds(job, int(state["last_number"]) if state else 0)


def _finished(build: dict[str, Any]) -> bool:
    return not build.get("building") and build.get("result") is not None


# --------------------------------------------------------------------------------------------------
# Stages and test cases
# --------------------------------------------------------------------------------------------------


def stage_rows(build: dict[str, Any], describe: dict[str, Any]) -> list[dict[str, Any]]:
    """`build_stages` rows from a `wfapi/describe` answer (hypermedia links dropped)."""
    return [
        {
            "job_full_name": build["job_full_name"],
            "build_number": build["number"],
            **{k: v for k, v in stage.items() if k not in ("_links", "stageFlowNodes")},
        }
        for stage in describe.get("stages") or []
    ]


def case_rows(build: dict[str, Any], report: dict[str, Any]) -> list[dict[str, Any]]:
    """`test_cases` rows from a testReport answer, de-duplicated on the table's key."""
    suites = list(report.get("suites") or [])
    for child in report.get("childReports") or []:
        suites += ((child or {}).get("result") or {}).get("suites") or []
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for suite in suites:
        for case in suite.get("cases") or []:
            row = {
                "job_full_name": build["job_full_name"],
                "build_number": build["number"],
                "suite_name": suite.get("name") or "",
                "suite_timestamp": suite.get("timestamp"),
                **case,
            }
            rows[(row["suite_name"], case.get("className"), case.get("name"))] = row
    return list(rows.values())


# --------------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------------


def parse_list(value: str | Iterable[str] | None) -> list[str]:
    """A list-valued setting: a comma-separated string, a JSON list string, or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(v).strip() for v in json.loads(text) if str(v).strip()]
        return [part.strip().strip("/") for part in text.split(",") if part.strip().strip("/")]
    return [str(v).strip().strip("/") for v in value if str(v).strip()]


def _columns(keys: Sequence[str] = (), **types: str) -> dict[str, TColumnSchema]:
    """Typed column hints, so every column the staging models read exists even before a value of it
    was ever seen (dlt creates no column it has only seen as null, nor one it has never seen).
    `keys` are the table's primary-key columns (not nullable); `types` maps column → dlt data type."""
    return {
        name: {"name": name, "data_type": data_type, "nullable": name not in keys} for name, data_type in types.items()
    }


# Columns the staging models (warehouse/staging/jenkins/) read, by table. Nested lists become child
# tables (`builds__causes`, …) that dlt creates only when a row first carries an element, so their
# columns are declared as nested hints and `create_declared_tables` creates the missing ones.
JOB_COLUMNS = _columns(
    ("full_name",),
    full_name="text",
    name="text",
    _class="text",
    url="text",
    parent_full_name="text",
    color="text",
    description="text",
)
BUILD_COLUMNS = _columns(
    ("job_full_name", "number"),
    job_full_name="text",
    number="bigint",
    _class="text",
    url="text",
    timestamp="bigint",
    duration="bigint",
    estimated_duration="bigint",
    building="bool",
    result="text",
    description="text",
    queue_id="bigint",
    test_result__fail_count="bigint",
    test_result__skip_count="bigint",
    test_result__total_count="bigint",
)
BUILD_NESTED_HINTS: dict[Any, Any] = {
    "causes": {"columns": _columns(_class="text", user_id="text", upstream_project="text", upstream_build="bigint")},
    "parameters": {"columns": _columns(_class="text", name="text", value="text")},
    "build_data": {"columns": _columns(_class="text", last_built_revision__sha1="text")},
    ("build_data", "remote_urls"): {"columns": _columns(value="text")},
    # `lastBuiltRevision` is an object, so its `branch` list hangs directly under `builds__build_data`.
    ("build_data", "last_built_revision", "branch"): {
        "parent_table_name": "builds__build_data",
        "columns": _columns(sha1="text", name="text"),
    },
    "change_sets": {"columns": _columns(_class="text", kind="text")},
    ("change_sets", "items"): {
        "columns": _columns(
            commit_id="text", msg="text", timestamp="bigint", author_email="text", author__full_name="text"
        )
    },
}
STAGE_COLUMNS = _columns(
    ("job_full_name", "build_number", "id"),
    job_full_name="text",
    build_number="bigint",
    id="text",
    name="text",
    status="text",
    start_time_millis="bigint",
    duration_millis="bigint",
    pause_duration_millis="bigint",
    error__type="text",
    error__message="text",
)
CASE_COLUMNS = _columns(
    ("job_full_name", "build_number", "suite_name", "class_name", "name"),
    job_full_name="text",
    build_number="bigint",
    suite_name="text",
    class_name="text",
    name="text",
    status="text",
    duration="double",
    error_details="text",
    error_stack_trace="text",
    skipped_message="text",
    age="bigint",
    failed_since="bigint",
)


def gates() -> dict[str, Gate]:
    """A fresh `Gate` per table for one run (the keys, the declared columns, the lists builds hold)."""
    build_lists = tuple(path for path in BUILD_NESTED_HINTS if isinstance(path, str))
    return {
        "jobs": Gate("jenkins", "jobs", columns=JOB_COLUMNS, primary_key=("full_name",), required=("name",)),
        "builds": Gate(
            "jenkins", "builds", columns=BUILD_COLUMNS, primary_key=("job_full_name", "number"), lists=build_lists
        ),
        "build_stages": Gate(
            "jenkins", "build_stages", columns=STAGE_COLUMNS, primary_key=("job_full_name", "build_number", "id")
        ),
        # `suite_name` is "" for a suite without a name (the source's own default), so it is not checked.
        "test_cases": Gate(
            "jenkins",
            "test_cases",
            columns=CASE_COLUMNS,
            primary_key=("job_full_name", "build_number", "class_name", "name"),
        ),
    }


def _jobs_endpoint(rows: list[dict[str, Any]]) -> str:
    parent = rows[0].get("parent_full_name") if rows and isinstance(rows[0], dict) else None
    return f"GET /{job_path(parent)}/api/json" if parent else "GET /api/json"


def _session(username: str | None, api_token: str | None, pool_size: int) -> SourceSession:
    # No credentials at all is a valid setup: Jenkins can grant anonymous read (ci.jenkins.io does).
    auth = JenkinsAuth(username or "", api_token or "") if (username or api_token) else None
    return make_session("jenkins", auth=auth, selection_key="ROOT_FOLDERS", pool_size=pool_size)


@dlt.source(name="jenkins", section="jenkins")
def jenkins_source(
    base_url: str = dlt.config.value,
    username: str | None = dlt.config.value,
    api_token: str | None = dlt.secrets.value,
    root_folders: str | list[str] | None = None,
    start_date: str | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> Sequence[DltResource]:
    """Jenkins jobs, builds, pipeline stages and test cases (dataset `raw_jenkins`).

    Args:
        base_url: the controller's URL, with its context path if any (`https://ci.example.com/jenkins`).
        username: the user the API token belongs to; with `api_token`, HTTP Basic auth. Leave both
            unset for a controller that grants anonymous read.
        api_token: a Jenkins API token (user menu → Security → API Token).
        root_folders: folders (full names) to walk, comma-separated or a list; unset: the whole controller.
        start_date: ISO date; on a job's first load, builds started before it are skipped.
        max_workers: parallel requests.
    """
    client = JenkinsClient(base_url, _session(username, api_token, max(1, max_workers)), max_workers)
    folders = parse_list(root_folders)
    start_ms = _start_ms(start_date)
    declare_table()
    gate = gates()

    @dlt.resource(name="jobs", primary_key="full_name", write_disposition="merge", columns=JOB_COLUMNS)
    def jobs() -> Iterator[list[dict[str, Any]]]:
        """Jenkins folders, multibranch projects and jobs under the root folders, one row per full name."""
        for page in walk_jobs(client, folders):
            passed, bad = gate["jobs"].split(page, _jobs_endpoint(page))
            if passed or not bad:
                yield passed
            if bad:
                yield quarantined(bad)

    @dlt.transformer(
        data_from=jobs,
        name="builds",
        primary_key=("job_full_name", "number"),
        write_disposition="merge",
        columns=BUILD_COLUMNS,
        nested_hints=BUILD_NESTED_HINTS,
    )
    def builds(job_page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Jenkins builds, one row per (job, number): result, timing, causes, parameters, git revision and
        change sets; builds still running are re-read on later loads until they finish."""
        known: dict[str, Any] = dlt.current.resource_state().setdefault("jobs", {})
        todo = [j for j in job_page if is_buildable(j) and _needs_read(j, known.get(j["fullName"]))]
        results = client.parallel(
            lambda j: read_job_builds(client, j, known.get(j["fullName"]), start_ms, gate["builds"]), todo
        )
        rows = [row for result in results for row in result.rows]
        # An empty marker still creates the table (with its declared columns) when no build exists yet.
        yield rows or dlt.mark.materialize_table_schema()
        bad = [row for result in results for row in result.quarantined]
        if bad:
            yield quarantined(bad)
        for result in results:  # after the yield: state moves only with the data it describes
            known[result.full_name] = result.state

    @dlt.transformer(
        data_from=builds,
        name="build_stages",
        primary_key=("job_full_name", "build_number", "id"),
        write_disposition="merge",
        columns=STAGE_COLUMNS,
    )
    def build_stages(build_page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Pipeline Stage View stages of finished builds, one row per (job, build number, stage id)."""
        todo = [b for b in build_page if _finished(b) and b.get("_class") == PIPELINE_RUN]

        def describe(b: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            path = f"{job_path(b['job_full_name'])}/{b['number']}/wfapi/describe"
            data = client.get_optional(path)
            return gate["build_stages"].split(stage_rows(b, data), f"GET /{path}") if data else ([], [])

        parts = client.parallel(describe, todo)
        yield [row for rows, _ in parts for row in rows] or dlt.mark.materialize_table_schema()
        bad = [row for _, failed in parts for row in failed]
        if bad:
            yield quarantined(bad)

    @dlt.transformer(
        data_from=builds,
        name="test_cases",
        primary_key=("job_full_name", "build_number", "suite_name", "class_name", "name"),
        write_disposition="merge",
        columns=CASE_COLUMNS,
    )
    def test_cases(build_page: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """JUnit test cases of finished builds, one row per (job, build number, suite, class, name)."""
        todo = [b for b in build_page if _finished(b) and b.get("test_result")]

        def report(b: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            path = f"{job_path(b['job_full_name'])}/{b['number']}/testReport/api/json"
            data = client.get_optional(path, REPORT_TREE)
            return gate["test_cases"].split(case_rows(b, data), f"GET /{path}") if data else ([], [])

        parts = client.parallel(report, todo)
        yield [row for rows, _ in parts for row in rows] or dlt.mark.materialize_table_schema()
        bad = [row for _, failed in parts for row in failed]
        if bad:
            yield quarantined(bad)

    routed(jobs, builds, build_stages, test_cases)
    # A quarantined job or build has no name or number to build the child requests from.
    shield(builds, build_stages, test_cases)
    return jobs, builds, build_stages, test_cases
