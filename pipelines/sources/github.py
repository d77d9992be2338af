"""GitHub → `raw_github`: repositories, pull requests, main's commits, deployments, Actions runs, releases.

Tables (primary key; write disposition; incremental cursor), every child row carrying `repo_full_name`:

| table | primary key | disposition | cursor (per repository, in the resource state) |
|---|---|---|---|
| repositories | id | merge | none: the org listing (or one GET per selected repo) every run |
| pull_requests | id | merge | `updated_at`, read newest-updated first, paging stops below the cursor - 1 h |
| pull_request_commits | pull_request_id, sha | merge | the PRs loaded this run (new or updated) |
| pull_request_reviews | id | merge | the PRs loaded this run |
| commits | repo_full_name, sha | merge | `since` = newest committer date - `commits_lookback_days` |
| deployments | id | merge | `created_at`, newest first; held at the oldest deployment not yet final |
| deployment_statuses | id | merge | the deployments loaded this run |
| deployment_compares | repo_full_name, base_sha, head_sha | merge | pairs of successful production deployments |
| workflow_runs | id | merge | `created>=` the day of the oldest run still in progress (or the newest run) |
| workflow_jobs | id | merge | the runs loaded this run (new or changed) |
| releases | id | merge | none: a repository has a few releases a year; re-read, since they can be edited |

Immutable entities (commits, statuses, jobs of finished runs) are merged too, because every cursor
overlaps the previous run; merge de-duplicates them, as it does records repeated across pages.

Every column the staging models (`warehouse/staging/github/`) read is declared with a type
(`COLUMNS`, and `NESTED_HINTS` for the child tables `commits__parents` and
`deployment_compares__commits`), and a resource with nothing to load yields dlt's empty marker, so
every table exists, with those columns, after the first load of even an empty or early account;
child tables that never received a row are created by the extraction's `create_declared_tables`.

Why most resources are hand-written (dlt's declarative `rest_api` serves `releases`): `rest_api`
keeps one incremental cursor per resource, but GitHub's cursors are per repository (a repository
added to the selection later must still get its history), pull requests have no `since` filter and
need an early stop that `rest_api` cannot apply to a child resource, deployments are "done" only
once their statuses say so, and runs must be re-read until they complete. Every request still goes
through dlt's `RESTClient` and `HeaderLinkPaginator` (GitHub announces pages only in `Link`, and its
next links switch to `/repositories/{id}/...` or opaque commit cursors, so they are followed
verbatim) over the shared session of `pipelines.sources.http` (auth, retries, rate limits, errors).

Bad input (`pipelines.sources.quarantine`): every page passes its table's `Gate` (`gates()`: the key,
`REQUIRED` fields the cursors and child requests read, the declared `COLUMNS` with their types) before
any cursor logic; records that fail go to `raw_github.quarantine`, and a field failing on most of a
page stops the source. Child resources never see a parent's quarantine rows.

Parallelism: per-PR, per-run and per-repository work is yielded as deferred calls that dlt runs in
its extract thread pool (5 workers by default, `EXTRACT__WORKERS`), well under GitHub's 100
concurrent requests; the primary budget (5000 requests/hour per token) is what bounds a backfill.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import dlt
from dlt.common.jsonpath import JSONPath, compile_path
from dlt.common.schema.typing import TColumnSchema
from dlt.extract.items import DataItemWithMeta
from dlt.extract.resource import DltResource
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.client import PageData
from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator
from dlt.sources.rest_api import rest_api_resources

from pipelines.sources.http import GitHubAuth, SourceNotFoundError, SourceSession, make_session
from pipelines.sources.quarantine import (
    Gate,
    declare_table,
    gate_resource,
    page_endpoint,
    quarantined,
    routed,
    shield,
    with_quarantine,
)

logger = logging.getLogger("opsmap.sources.github")

PAGE_SIZE = 100  # GitHub's maximum page size
PR_COMMITS_CAP = 250  # GitHub lists at most 250 commits of a pull request
RUNS_RESULT_CAP = 1000  # filtered Actions run lists return at most 1000 runs
PR_OVERLAP = timedelta(hours=1)
"""Re-read PRs updated up to an hour before the cursor: GitHub's sort index trails writes slightly, and
timestamps have whole-second precision. Re-read PRs whose `updated_at` is unchanged are skipped."""
DEPLOYMENT_OVERLAP = timedelta(minutes=10)
"""Deployments are listed by creation time; ten minutes covers one being created while we page."""
DEFAULT_COMMITS_LOOKBACK_DAYS = 30
"""`since` filters on the committer date, and commits of a merged branch keep their original dates, so
they land on main after newer commits. 30 days covers branches open up to a month (the sandbox's
longest is 11 days); older branches' commits still arrive through `pull_request_commits`."""
FINAL_DEPLOYMENT_STATES = frozenset({"success", "failure", "error"})
"""Deployment states that end a deployment (GitHub may later mark a success `inactive`; not tracked)."""


def _columns(keys: tuple[str, ...] = (), **types: str) -> dict[str, TColumnSchema]:
    """Typed column hints (`keys`: the primary-key columns, not nullable; `types`: column → dlt type).

    dlt creates a column only once it has seen a non-null value of it, so columns that can be null in
    a whole load (only open PRs, only running builds, no draft release, no fork) would otherwise
    appear late, and the staging models (`warehouse/staging/github/`) that read them would fail on a
    small or early account. Nested names (`user__login`) address flattened object fields.
    """
    return {name: {"name": name, "data_type": t, "nullable": name not in keys} for name, t in types.items()}


COLUMNS: dict[str, dict[str, TColumnSchema]] = {
    "repositories": _columns(
        ("id",),
        id="bigint",
        name="text",
        full_name="text",
        owner__login="text",
        default_branch="text",
        private="bool",
        visibility="text",
        archived="bool",
        language="text",
        created_at="timestamp",
        updated_at="timestamp",
        pushed_at="timestamp",
    ),
    "pull_requests": _columns(
        ("id",),
        id="bigint",
        number="bigint",
        repo_full_name="text",
        state="text",
        title="text",
        body="text",
        draft="bool",
        author_association="text",
        created_at="timestamp",
        updated_at="timestamp",
        closed_at="timestamp",
        merged_at="timestamp",
        merge_commit_sha="text",
        user__login="text",
        user__type="text",
        head__ref="text",
        head__sha="text",
        head__repo__full_name="text",
        base__ref="text",
        base__sha="text",
    ),
    "pull_request_commits": _columns(
        ("pull_request_id", "sha"),
        pull_request_id="bigint",
        pull_request_number="bigint",
        repo_full_name="text",
        sha="text",
        author__login="text",
        committer__login="text",
        commit__author__email="text",
        commit__author__date="timestamp",
        commit__committer__email="text",
        commit__committer__date="timestamp",
        commit__message="text",
    ),
    "pull_request_reviews": _columns(
        ("id",),
        id="bigint",
        pull_request_id="bigint",
        pull_request_number="bigint",
        repo_full_name="text",
        user__login="text",
        state="text",
        author_association="text",
        submitted_at="timestamp",
        commit_id="text",
    ),
    "commits": _columns(
        ("repo_full_name", "sha"),
        repo_full_name="text",
        sha="text",
        author__login="text",
        committer__login="text",
        commit__author__email="text",
        commit__author__date="timestamp",
        commit__committer__email="text",
        commit__committer__date="timestamp",
        commit__message="text",
    ),
    "deployments": _columns(
        ("id",),
        id="bigint",
        repo_full_name="text",
        sha="text",
        ref="text",
        task="text",
        environment="text",
        description="text",
        production_environment="bool",
        transient_environment="bool",
        creator__login="text",
        creator__type="text",
        created_at="timestamp",
        updated_at="timestamp",
    ),
    "deployment_statuses": _columns(
        ("id",),
        id="bigint",
        deployment_id="bigint",
        repo_full_name="text",
        state="text",
        description="text",
        environment="text",
        creator__login="text",
        created_at="timestamp",
    ),
    "deployment_compares": _columns(
        ("repo_full_name", "base_sha", "head_sha"),
        repo_full_name="text",
        base_sha="text",
        head_sha="text",
        base_deployment_id="bigint",
        head_deployment_id="bigint",
        environment="text",
        status="text",
        ahead_by="bigint",
        behind_by="bigint",
        total_commits="bigint",
        merge_base_sha="text",
    ),
    "workflow_runs": _columns(
        ("id",),
        id="bigint",
        repo_full_name="text",
        name="text",
        path="text",
        workflow_id="bigint",
        display_title="text",
        event="text",
        status="text",
        conclusion="text",
        head_branch="text",
        head_sha="text",
        run_number="bigint",
        run_attempt="bigint",
        created_at="timestamp",
        updated_at="timestamp",
        run_started_at="timestamp",
        actor__login="text",
        triggering_actor__login="text",
    ),
    "workflow_jobs": _columns(
        ("id",),
        id="bigint",
        run_id="bigint",
        run_attempt="bigint",
        repo_full_name="text",
        name="text",
        status="text",
        conclusion="text",
        created_at="timestamp",
        started_at="timestamp",
        completed_at="timestamp",
        runner_name="text",
    ),
    "releases": _columns(
        ("id",),
        id="bigint",
        repo_full_name="text",
        tag_name="text",
        name="text",
        target_commitish="text",
        draft="bool",
        prerelease="bool",
        created_at="timestamp",
        published_at="timestamp",
        author__login="text",
    ),
}
"""Every column the staging models read, by table: declared so each exists from the first load."""
COMMIT_LIST_COLUMNS = _columns(
    sha="text",
    author__login="text",
    commit__author__email="text",
    commit__author__date="timestamp",
    commit__committer__date="timestamp",
)
NESTED_HINTS: dict[str, dict[Any, Any]] = {
    "commits": {"parents": {"columns": _columns(sha="text")}},
    "deployment_compares": {"commits": {"columns": COMMIT_LIST_COLUMNS}},
}
"""Child tables the staging models read (`commits__parents`, `deployment_compares__commits`). dlt
creates a child table only with its first row, so a load that never had one (no commit on main yet,
no compare with commits) declares it in the schema without creating it; the extraction then creates
it empty (`pipelines.sources.declared_tables.create_declared_tables`)."""


KEYS: dict[str, tuple[str, ...]] = {
    "repositories": ("id",),
    "pull_requests": ("id",),
    "pull_request_commits": ("sha",),
    "pull_request_reviews": ("id",),
    "commits": ("sha",),
    "deployments": ("id",),
    "deployment_statuses": ("id",),
    "workflow_runs": ("id",),
    "workflow_jobs": ("id",),
    "releases": ("id",),
}
"""The primary-key fields each API record must carry (the keys this source adds, such as `repo_full_name`
or `pull_request_id`, come from the parent and are not checked)."""
REQUIRED: dict[str, tuple[str, ...]] = {
    "repositories": ("full_name",),  # the child requests' path
    "pull_requests": ("number", "updated_at"),  # the child requests' path; the cursor
    "commits": ("commit__committer__date",),  # the cursor
    "deployments": ("sha", "environment", "created_at"),  # compares, production pairing, the cursor
    "deployment_statuses": ("state", "created_at"),  # a deployment's outcome is its latest state
    "workflow_runs": ("status", "created_at", "updated_at"),  # re-read until completed; the cursor
}
"""Fields this source reads itself, beyond the key: a record without them cannot be paged or linked."""


def gates() -> dict[str, Gate]:
    """A fresh `Gate` per table for one run of the source (gates remember what they reported)."""
    lists = {
        table: tuple("__".join(path) if isinstance(path, tuple) else path for path in hints)
        for table, hints in NESTED_HINTS.items()
    }
    return {
        table: Gate(
            "github",
            table,
            columns=COLUMNS[table],
            primary_key=key,
            required=REQUIRED.get(table, ()),
            lists=lists.get(table, ()),
        )
        for table, key in KEYS.items()
    }


def _hints(table: str) -> dict[str, TColumnSchema]:
    """A fresh copy of a table's column hints (dlt writes into the hints it is given)."""
    return copy.deepcopy(COLUMNS[table])


def _nested(table: str) -> dict[Any, Any]:
    """A fresh copy of a table's nested (child table) hints."""
    return copy.deepcopy(NESTED_HINTS[table])


def _or_empty(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows`, or dlt's empty marker that still creates the table (with its declared columns)."""
    return rows or dlt.mark.materialize_table_schema()


Screened = tuple[list[dict[str, Any]], list[dict[str, Any]]]
"""The rows that passed their table's gate, and the quarantine rows of those that did not."""


def _rows_or_empty(fetch: Callable[..., Screened], *args: Any) -> Iterator[Any]:
    """`fetch(*args)`'s rows, or the empty marker when there are none, then its quarantine rows (a
    deferred call's result: dlt iterates a generator it returns)."""
    rows, bad = fetch(*args)
    yield from with_quarantine(_or_empty(rows), bad)


def _materialized(pages: Iterable[Any]) -> Iterator[Any]:
    """The pages, or one empty marker when there are none, so the table exists after any load."""
    empty = True
    for page in pages:
        empty = empty and isinstance(page, DataItemWithMeta)  # quarantine rows do not fill the table
        yield page
    if empty:
        yield dlt.mark.materialize_table_schema()


def _screen(gate: Gate, page: Any, endpoint: str = "") -> Screened:
    """`gate.split` of one page, naming the request the page came from."""
    return gate.split(page, page_endpoint(page) or endpoint)


WORKERS = 5  # dlt's default extract pool; the session keeps a connection per worker and then some


# --------------------------------------------------------------------------------------------------
# Configuration helpers
# --------------------------------------------------------------------------------------------------


def as_list(value: str | Iterable[str] | None) -> list[str]:
    """A list-valued setting given as a comma-separated string or a list; blanks are dropped."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def parse_time(value: str) -> datetime:
    """An ISO-8601 date or time as an aware UTC datetime (a date means its midnight UTC)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """GitHub's time format for query parameters: `2026-01-02T03:04:05Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def repo_names(org: str, repos: list[str]) -> list[str]:
    """Selected repositories as `owner/name` (a bare name belongs to `org`)."""
    return [r if "/" in r else f"{org}/{r}" for r in repos]


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------


class GitHubClient:
    """dlt's REST client over the shared GitHub session: Link paging, JSON bodies."""

    def __init__(self, base_url: str, access_token: str, *, selection_key: str) -> None:
        self.session: SourceSession = make_session(
            "github", auth=GitHubAuth(access_token), selection_key=selection_key, pool_size=2 * WORKERS
        )
        self.rest = RESTClient(base_url=base_url, session=self.session, paginator=HeaderLinkPaginator())

    def pages(self, path: str, params: Mapping[str, Any] | None = None, selector: str | None = None) -> Iterator[Any]:
        """Pages of a list endpoint, following `Link: rel="next"` verbatim (`selector`: the list's key)."""
        yield from self.rest.paginate(path, params=dict(params or {}), data_selector=_selector(selector or "$"))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """One JSON object."""
        return self.rest.get(path, params=dict(params or {})).json()

    def get_page(self, path: str) -> PageData[Any]:
        """One JSON object as a one-record page that, like a listed page, knows its request."""
        response = self.rest.get(path)
        return PageData([response.json()], request=response.request, response=response, paginator=None, auth=None)  # type: ignore[arg-type]


@cache
def _selector(path: str) -> JSONPath:
    """A compiled JSONPath for a data selector. dlt compiles a string selector on every page (jsonpath-ng
    builds a parser each time: 13 % of this source's CPU at scale 1); a compiled one is used as is."""
    return compile_path(path)


def _repo_states(resource_state: dict[str, Any]) -> dict[str, Any]:
    return resource_state.setdefault("repos", {})


# --------------------------------------------------------------------------------------------------
# Repositories
# --------------------------------------------------------------------------------------------------


def list_repositories(api: GitHubClient, org: str, selected: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The org's repositories page by page, or one GET per selected repository (404 names REPOS).

    Yields lists: `rest_api` child resources (`releases`) iterate their parent's items.
    """
    if selected:
        for full_name in selected:
            yield api.get_page(f"repos/{full_name}")
        return
    # sort=full_name: a stable order while paging (the default, created, shifts as repos are added).
    yield from api.pages(f"orgs/{org}/repos", {"type": "all", "sort": "full_name", "per_page": PAGE_SIZE})


def _repos_of(items: Any) -> list[dict[str, Any]]:
    return items if isinstance(items, list) else [items]


def _tag(rows: Iterable[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    return [{**row, **extra} for row in rows]


# --------------------------------------------------------------------------------------------------
# Pull requests
# --------------------------------------------------------------------------------------------------


def pull_request_pages(
    api: GitHubClient, repo: dict[str, Any], state: dict[str, Any], start: datetime | None, gate: Gate
) -> Iterator[Any]:
    """New or updated PRs of one repository, newest-updated first, stopping below the cursor.

    Pulls have no `since`: `sort=updated&direction=desc` puts changes first, so paging stops at the
    first page reaching below the cursor (minus `PR_OVERLAP`). PRs re-read in the overlap with an
    unchanged `updated_at` are skipped, as are PRs repeated across pages. PRs that fail the gate are
    yielded as quarantine rows and take no part in the cursor.
    """
    full = repo["full_name"]
    mine = _repo_states(state).setdefault(full, {})
    cursor = mine.get("updated_at")
    lower = parse_time(cursor) - PR_OVERLAP if cursor else start
    recent: dict[str, str] = mine.get("recent", {})
    seen: dict[str, str] = {}
    params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": PAGE_SIZE}
    for page in api.pages(f"repos/{full}/pulls", params):
        passed, bad = _screen(gate, page)
        rows, reached_bottom = [], False
        for pr in passed:
            updated = pr["updated_at"]
            if lower is not None and parse_time(updated) < lower:
                reached_bottom = True
                continue
            key = str(pr["id"])
            if key in seen or recent.get(key) == updated:
                continue
            seen[key] = updated
            rows.append({**pr, "repo_full_name": full})
        if rows:
            yield rows
        if bad:
            yield quarantined(bad)
        if reached_bottom:
            break
    if seen:
        newest = max([*seen.values(), *([cursor] if cursor else [])], key=parse_time)
        floor = parse_time(newest) - PR_OVERLAP
        keep = {**recent, **seen}
        mine["updated_at"] = newest
        mine["recent"] = {k: v for k, v in keep.items() if parse_time(v) >= floor}


def pull_request_children(api: GitHubClient, pr: dict[str, Any], kind: str, gate: Gate) -> Screened:
    """A PR's commits (at most 250, GitHub's cap) or reviews, tagged with the PR's keys; and quarantine rows."""
    full, number = pr["repo_full_name"], pr["number"]
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for page in api.pages(f"repos/{full}/pulls/{number}/{kind}", {"per_page": PAGE_SIZE}):
        passed, failed = _screen(gate, page)
        rows += passed
        bad += failed
        # Distinct SHAs: a page that repeats the previous one's last commit must not use up the cap.
        if kind == "commits" and len({r.get("sha") for r in rows}) + len(bad) >= PR_COMMITS_CAP:
            break
    return _tag(rows, pull_request_id=pr["id"], pull_request_number=number, repo_full_name=full), bad


# --------------------------------------------------------------------------------------------------
# Commits on the default branch
# --------------------------------------------------------------------------------------------------


def commit_pages(
    api: GitHubClient,
    repo: dict[str, Any],
    state: dict[str, Any],
    start: datetime | None,
    lookback: timedelta,
    gate: Gate,
) -> Iterator[Any]:
    """The default branch's commits since the cursor minus the lookback (see `DEFAULT_COMMITS_LOOKBACK_DAYS`)."""
    full = repo["full_name"]
    mine = _repo_states(state).setdefault(full, {})
    cursor = mine.get("committed_at")
    since = parse_time(cursor) - lookback if cursor else start
    if since is not None and start is not None:
        since = max(since, start)
    params: dict[str, Any] = {"sha": repo.get("default_branch") or "main", "per_page": PAGE_SIZE}
    if since is not None:
        params["since"] = iso(since)
    seen: set[str] = set()
    newest = cursor
    for page in api.pages(f"repos/{full}/commits", params):
        passed, bad = _screen(gate, page)
        rows = []
        for c in passed:
            if c["sha"] in seen:
                continue
            seen.add(c["sha"])
            committed = c["commit"]["committer"]["date"]
            if newest is None or parse_time(committed) > parse_time(newest):
                newest = committed
            rows.append({**c, "repo_full_name": full})
        if rows:
            yield rows
        if bad:
            yield quarantined(bad)
    if newest:
        mine["committed_at"] = newest


# --------------------------------------------------------------------------------------------------
# Actions runs and jobs
# --------------------------------------------------------------------------------------------------


def _run_pages(api: GitHubClient, path: str, low: date, high: date | None) -> Iterator[list[dict[str, Any]]]:
    """Runs created in [low, high] (open-ended when `high` is None), newest first, page by page.

    Filtered run lists stop at 1000 results, so a window whose first page reports a larger
    `total_count` is halved (its first page is dropped, not re-requested).
    """
    if high is None:
        qualifier = f">={low.isoformat()}"
    else:
        qualifier = low.isoformat() if low >= high else f"{low.isoformat()}..{high.isoformat()}"
    pages = api.pages(path, {"created": qualifier, "per_page": PAGE_SIZE}, selector="workflow_runs")
    first = next(pages, None)
    if first is None:
        return
    last_day = high or max(low, datetime.now(UTC).date())
    if first.response.json().get("total_count", 0) > RUNS_RESULT_CAP and low < last_day:
        pages.close()
        middle = low + (last_day - low) // 2
        # Newest first, like an unsplit window: the later half, then the earlier one.
        yield from _run_pages(api, path, middle + timedelta(days=1), high)
        yield from _run_pages(api, path, low, middle)
        return
    yield first
    yield from pages


def workflow_run_pages(
    api: GitHubClient, repo: dict[str, Any], state: dict[str, Any], start: datetime | None, gate: Gate
) -> Iterator[Any]:
    """New runs and runs changed since last seen (still running then), newest first.

    The cursor is a day: `created>=` the day of the oldest run still in progress at the last run
    (or of the newest run). Completed runs re-read within that day are skipped when unchanged.
    """
    full = repo["full_name"]
    path = f"repos/{full}/actions/runs"
    mine = _repo_states(state).setdefault(full, {})
    created_from = mine.get("created_from")
    low = date.fromisoformat(created_from) if created_from else (start.date() if start else None)
    done: dict[str, list[str]] = mine.get("done", {})  # id → [created day, updated_at] of completed runs
    if low is None:
        pages = api.pages(path, {"per_page": PAGE_SIZE}, selector="workflow_runs")
    else:
        pages = _run_pages(api, path, low, None)
    seen: set[str] = set()
    open_days: list[str] = []
    newest_day = created_from
    finished: dict[str, list[str]] = {}
    for page in pages:
        passed, bad = _screen(gate, page)
        rows = []
        for run in passed:
            key, day = str(run["id"]), run["created_at"][:10]
            newest_day = max(newest_day or day, day)
            if key in seen:
                continue
            seen.add(key)
            if run["status"] != "completed":
                open_days.append(day)
            else:
                finished[key] = [day, run["updated_at"]]
                if done.get(key) == finished[key]:
                    continue
            rows.append({**run, "repo_full_name": full})
        if rows:
            yield rows
        if bad:
            yield quarantined(bad)
    next_from = min(open_days) if open_days else newest_day
    if next_from:
        mine["created_from"] = next_from
        mine["done"] = {k: v for k, v in {**done, **finished}.items() if v[0] >= next_from}


def workflow_jobs_of(api: GitHubClient, run: dict[str, Any], gate: Gate) -> Screened:
    """The jobs (with steps) of a run's latest attempt; and quarantine rows."""
    path = f"repos/{run['repo_full_name']}/actions/runs/{run['id']}/jobs"
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for page in api.pages(path, {"filter": "latest", "per_page": PAGE_SIZE}, selector="jobs"):
        passed, failed = _screen(gate, page)
        rows += passed
        bad += failed
    return _tag(rows, repo_full_name=run["repo_full_name"]), bad


# --------------------------------------------------------------------------------------------------
# Deployments, their statuses and the changes between production deployments
# --------------------------------------------------------------------------------------------------


@dataclass
class DeploymentBundle:
    """What one repository's deployments pass yields: rows for three tables."""

    repo_full_name: str
    deployments: list[dict[str, Any]]
    statuses: list[dict[str, Any]]
    compares: list[dict[str, Any]]
    quarantined: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # table → quarantine rows


def compare_deployments(
    api: GitHubClient, full: str, base: dict[str, Any], head: dict[str, Any]
) -> dict[str, Any] | None:
    """`compare/{base}...{head}` of two deployments' SHAs with every commit (paged past GitHub's 250).

    None when GitHub no longer knows one of the SHAs (a force-pushed or deleted branch): the pair
    is skipped with a warning rather than failing the run.
    """
    path = f"repos/{full}/compare/{base['sha']}...{head['sha']}"
    summary: dict[str, Any] = {}
    commits: list[dict[str, Any]] = []
    shas: set[str] = set()
    try:
        for page in api.pages(path, {"per_page": PAGE_SIZE}, selector="commits"):
            if not summary:
                summary = page.response.json()
            # A page that shifted repeats the previous page's last commit; a compare lists each commit once.
            for commit in page:
                if commit["sha"] not in shas:
                    shas.add(commit["sha"])
                    commits.append(commit)
    except SourceNotFoundError:
        logger.warning("github: %s: no compare for deployments %s...%s (404); skipped", full, base["id"], head["id"])
        return None
    return {
        "repo_full_name": full,
        "base_sha": base["sha"],
        "head_sha": head["sha"],
        "base_deployment_id": base["id"],
        "head_deployment_id": head["id"],
        "environment": head["environment"],
        "status": summary.get("status"),
        "ahead_by": summary.get("ahead_by"),
        "behind_by": summary.get("behind_by"),
        "total_commits": summary.get("total_commits"),
        "merge_base_sha": (summary.get("merge_base_commit") or {}).get("sha"),
        "html_url": summary.get("html_url"),
        "commits": commits,
    }


def deployment_bundle(
    api: GitHubClient,
    repo: dict[str, Any],
    mine: dict[str, Any],
    start: datetime | None,
    production: frozenset[str],
    gates: Mapping[str, Gate],
) -> DeploymentBundle:
    """One repository's new or unfinished deployments, their statuses, and the compares they complete.

    Deployments are listed newest first by creation time, down to the floor kept in the state: the
    creation time of the oldest deployment that was not final at the last run. A deployment already
    seen in a final state is skipped. Consecutive successful production deployments are compared
    in creation order, continuing from the last successful one of earlier runs; a production
    deployment still running holds the pairing (and the floor) until it ends. Deployments and statuses
    that fail their gate are kept aside as quarantine rows and play no part in any of this.
    """
    full = repo["full_name"]
    floor = mine.get("floor")
    lower = parse_time(floor) - DEPLOYMENT_OVERLAP if floor else start
    final: dict[str, str] = mine.get("final", {})  # id → created_at of deployments seen final
    found: dict[str, dict[str, Any]] = {}
    bad: dict[str, list[dict[str, Any]]] = {"deployments": [], "deployment_statuses": []}
    for page in api.pages(f"repos/{full}/deployments", {"per_page": PAGE_SIZE}):
        passed, failed = _screen(gates["deployments"], page)
        bad["deployments"] += failed
        reached_bottom = False
        for d in passed:
            if lower is not None and parse_time(d["created_at"]) < lower:
                reached_bottom = True
                continue
            key = str(d["id"])
            if key not in found and key not in final:
                found[key] = {**d, "repo_full_name": full}
        if reached_bottom:
            break
    statuses: list[dict[str, Any]] = []
    latest: dict[str, str] = {}
    for key, d in found.items():
        rows = []
        for page in api.pages(f"repos/{full}/deployments/{d['id']}/statuses", {"per_page": PAGE_SIZE}):
            passed, failed = _screen(gates["deployment_statuses"], page)
            rows += passed
            bad["deployment_statuses"] += failed
        rows.sort(key=lambda s: (s["created_at"], s["id"]))
        # GitHub marks superseded deployments `inactive`; the outcome is the last state before that.
        decisive = [r for r in rows if r["state"] != "inactive"]
        latest[key] = decisive[-1]["state"] if decisive else "pending"
        statuses += _tag(rows, deployment_id=d["id"], repo_full_name=full)
    compares, held = _pair_production(api, full, found, latest, mine, production)
    _advance_deployment_floor(mine, found, latest, held)
    return DeploymentBundle(full, list(found.values()), statuses, compares, bad)


def _advance_deployment_floor(
    mine: dict[str, Any], found: dict[str, dict[str, Any]], latest: dict[str, str], held: set[str]
) -> None:
    """Move the floor to the oldest deployment not final (or held), else to the newest seen."""
    floor = mine.get("floor")
    pending = [d["created_at"] for k, d in found.items() if latest[k] not in FINAL_DEPLOYMENT_STATES or k in held]
    created = [d["created_at"] for d in found.values()] + ([floor] if floor else [])
    if not created:
        return
    next_floor = min(pending, key=parse_time) if pending else max(created, key=parse_time)
    finals = {k: d["created_at"] for k, d in found.items() if latest[k] in FINAL_DEPLOYMENT_STATES and k not in held}
    keep_from = parse_time(next_floor) - DEPLOYMENT_OVERLAP
    merged = {**mine.get("final", {}), **finals}
    mine["floor"] = next_floor
    mine["final"] = {k: at for k, at in merged.items() if parse_time(at) >= keep_from}


def _pair_production(
    api: GitHubClient,
    full: str,
    found: dict[str, dict[str, Any]],
    latest: dict[str, str],
    mine: dict[str, Any],
    production: frozenset[str],
) -> tuple[list[dict[str, Any]], set[str]]:
    """Compares between consecutive successful production deployments; the ids held for next time."""
    ordered = sorted(
        (d for d in found.values() if d["environment"] in production),
        key=lambda d: (parse_time(d["created_at"]), d["id"]),
    )
    previous = mine.get("last_success")
    compares: list[dict[str, Any]] = []
    held: set[str] = set()
    for k, d in enumerate(ordered):
        state = latest[str(d["id"])]
        if state not in FINAL_DEPLOYMENT_STATES:
            held = {str(x["id"]) for x in ordered[k:]}
            break
        if state != "success":
            continue
        if previous is not None and (row := compare_deployments(api, full, previous, d)) is not None:
            compares.append(row)
        previous = {"id": d["id"], "sha": d["sha"], "environment": d["environment"]}
    if previous is not None:
        mine["last_success"] = previous
    return compares, held


# --------------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------------


def _deferred(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """A call dlt runs in its extract thread pool (a resource may yield callables)."""

    def call() -> Any:
        return fn(*args)

    return call


@dlt.source(name="github", section="github")
def github_source(
    base_url: str = dlt.config.value,
    access_token: str = dlt.secrets.value,
    org: str = dlt.config.value,
    repos: str | list[str] | None = None,
    start_date: str | None = None,
    production_environments: str | list[str] = "production",
    commits_lookback_days: int = DEFAULT_COMMITS_LOOKBACK_DAYS,
) -> list[DltResource]:
    """GitHub REST v3 into `raw_github` (tables and cursors: see the module docstring).

    Args:
        base_url: `https://api.github.com`, or `https://<host>/api/v3` for GitHub Enterprise Server.
        access_token: a token that can read the repositories, their Actions and deployments.
        org: the organisation whose repositories are read.
        repos: repository names (or `owner/name`) to read instead of all of the org's; a list or a
            comma-separated string.
        start_date: ISO date; the first run's lower bound for PRs (last update), commits, runs and
            deployments (creation). Omitted: the whole history.
        production_environments: deployment environment names that count as production, for
            `deployment_compares`; a list or a comma-separated string.
        commits_lookback_days: how far `since` reaches behind the newest commit on later runs.
    """
    selected = repo_names(org, as_list(repos))
    api = GitHubClient(base_url, access_token, selection_key="REPOS" if selected else "ORG")
    declare_table()
    gate = gates()
    start = parse_time(start_date) if start_date else None
    production = frozenset(as_list(production_environments))
    lookback = timedelta(days=int(commits_lookback_days))

    @dlt.resource(name="repositories", write_disposition="merge", primary_key="id", columns=_hints("repositories"))
    def repositories() -> Iterator[list[dict[str, Any]]]:
        """The organisation's repositories (or the selected ones), re-read in full every run."""
        for page in list_repositories(api, org, selected):
            passed, bad = _screen(gate["repositories"], page)
            if passed or not bad:
                yield passed
            if bad:
                yield quarantined(bad)

    @dlt.transformer(
        data_from=repositories,
        name="pull_requests",
        write_disposition="merge",
        primary_key="id",
        columns=_hints("pull_requests"),
    )
    def pull_requests(items: Any) -> Iterator[list[dict[str, Any]]]:
        """Pull requests created or updated since the last run (any state), per repository."""
        state = dlt.current.resource_state()
        yield from _materialized(
            page
            for repo in _repos_of(items)
            for page in pull_request_pages(api, repo, state, start, gate["pull_requests"])
        )

    @dlt.transformer(
        data_from=pull_requests,
        name="pull_request_commits",
        write_disposition="merge",
        primary_key=("pull_request_id", "sha"),
        columns=_hints("pull_request_commits"),
    )
    def pull_request_commits(prs: Any) -> Iterator[Any]:
        """The commits of each PR loaded this run (at most 250 per PR, GitHub's cap)."""
        for pr in _repos_of(prs):
            yield _deferred(_rows_or_empty, pull_request_children, api, pr, "commits", gate["pull_request_commits"])
        if not prs:
            yield dlt.mark.materialize_table_schema()

    @dlt.transformer(
        data_from=pull_requests,
        name="pull_request_reviews",
        write_disposition="merge",
        primary_key="id",
        columns=_hints("pull_request_reviews"),
    )
    def pull_request_reviews(prs: Any) -> Iterator[Any]:
        """The reviews of each PR loaded this run."""
        for pr in _repos_of(prs):
            yield _deferred(_rows_or_empty, pull_request_children, api, pr, "reviews", gate["pull_request_reviews"])
        if not prs:
            yield dlt.mark.materialize_table_schema()

    @dlt.transformer(
        data_from=repositories,
        name="commits",
        write_disposition="merge",
        primary_key=("repo_full_name", "sha"),
        columns=_hints("commits"),
        nested_hints=_nested("commits"),
    )
    def commits(items: Any) -> Iterator[list[dict[str, Any]]]:
        """Commits on each repository's default branch, newest first, since the commit cursor."""
        state = dlt.current.resource_state()
        yield from _materialized(
            page
            for repo in _repos_of(items)
            for page in commit_pages(api, repo, state, start, lookback, gate["commits"])
        )

    @dlt.transformer(
        data_from=repositories,
        name="workflow_runs",
        write_disposition="merge",
        primary_key="id",
        columns=_hints("workflow_runs"),
    )
    def workflow_runs(items: Any) -> Iterator[list[dict[str, Any]]]:
        """GitHub Actions runs created since the run cursor; runs in progress are re-read until completed."""
        state = dlt.current.resource_state()
        yield from _materialized(
            page
            for repo in _repos_of(items)
            for page in workflow_run_pages(api, repo, state, start, gate["workflow_runs"])
        )

    @dlt.transformer(
        data_from=workflow_runs,
        name="workflow_jobs",
        write_disposition="merge",
        primary_key="id",
        columns=_hints("workflow_jobs"),
    )
    def workflow_jobs(runs: Any) -> Iterator[Any]:
        """The jobs (with their steps) of each run loaded this run."""
        for run in _repos_of(runs):
            yield _deferred(_rows_or_empty, workflow_jobs_of, api, run, gate["workflow_jobs"])
        if not runs:
            yield dlt.mark.materialize_table_schema()

    # Deployments, statuses and compares come from one pass per repository (statuses decide both
    # the cursor and which deployments pair up); this hidden resource feeds the three tables.
    @dlt.transformer(data_from=repositories, name="deployment_bundles", selected=False)
    def deployment_bundles(items: Any) -> Iterator[Callable[[], Any]]:
        """Not loaded: one `DeploymentBundle` per repository for the three deployment tables."""
        states = _repo_states(dlt.current.resource_state())
        for repo in _repos_of(items):
            mine = states.setdefault(repo["full_name"], {})
            yield _deferred(deployment_bundle, api, repo, mine, start, production, gate)

    @dlt.transformer(
        data_from=deployment_bundles,
        name="deployments",
        write_disposition="merge",
        primary_key="id",
        columns=_hints("deployments"),
    )
    def deployments(bundle: DeploymentBundle) -> Iterator[list[dict[str, Any]]]:
        """Deployments created since the deployment cursor, and those still running at the last run."""
        yield from with_quarantine(_or_empty(bundle.deployments), bundle.quarantined.get("deployments", []))

    @dlt.transformer(
        data_from=deployment_bundles,
        name="deployment_statuses",
        write_disposition="merge",
        primary_key="id",
        columns=_hints("deployment_statuses"),
    )
    def deployment_statuses(bundle: DeploymentBundle) -> Iterator[list[dict[str, Any]]]:
        """All statuses of each deployment loaded this run, tagged with `deployment_id`."""
        yield from with_quarantine(_or_empty(bundle.statuses), bundle.quarantined.get("deployment_statuses", []))

    @dlt.transformer(
        data_from=deployment_bundles,
        name="deployment_compares",
        write_disposition="merge",
        primary_key=("repo_full_name", "base_sha", "head_sha"),
        columns=_hints("deployment_compares"),
        nested_hints=_nested("deployment_compares"),
    )
    def deployment_compares(bundle: DeploymentBundle) -> Iterator[list[dict[str, Any]]]:
        """`base...head` between consecutive successful production deployments, with the commits shipped."""
        yield _or_empty(bundle.compares)

    releases = _releases(api, repositories, gate["releases"])
    routed(
        repositories,
        pull_requests,
        pull_request_commits,
        pull_request_reviews,
        commits,
        workflow_runs,
        workflow_jobs,
        deployments,
        deployment_statuses,
    )
    # A parent's quarantine rows have no id or name to build a child's request from.
    shield(pull_requests, commits, workflow_runs, deployment_bundles, releases)
    shield(pull_request_commits, pull_request_reviews, workflow_jobs)
    return [
        repositories,
        pull_requests,
        pull_request_commits,
        pull_request_reviews,
        commits,
        workflow_runs,
        workflow_jobs,
        deployment_bundles,
        deployments,
        deployment_statuses,
        deployment_compares,
        releases,
    ]


def _releases(api: GitHubClient, repositories: DltResource, gate: Gate) -> DltResource:
    """`releases` declaratively: a child of `repositories`, re-read in full (merge on id)."""
    resources = rest_api_resources(
        {
            "client": {"base_url": api.rest.base_url, "session": api.session, "paginator": HeaderLinkPaginator()},
            "resources": [
                repositories,
                {
                    "name": "releases",
                    "write_disposition": "merge",
                    "primary_key": "id",
                    "columns": _hints("releases"),
                    "endpoint": {
                        "path": "repos/{resources.repositories.full_name}/releases",
                        "params": {"per_page": PAGE_SIZE},
                        "data_selector": "$",
                    },
                    "include_from_parent": ["full_name"],
                    "processing_steps": [{"map": _rename_parent_key}],
                },
            ],
        }
    )
    release_resource = next(r for r in resources if r.name == "releases")
    release_resource.__doc__ = "Each repository's releases, re-read in full every run (a few a year per repository)."
    # A repository without releases answers an empty page: load it as the empty marker, so that the
    # table exists even when no repository has a release yet.
    release_resource.add_step(_empty_page_marker)
    # After the rename (position 2), so the gate sees the table's own columns; the request is then
    # known only from the record's repository.
    return gate_resource(release_resource, gate, at=2, endpoint_of=_releases_endpoint)


def _releases_endpoint(row: dict[str, Any]) -> str:
    return f"GET /repos/{row.get('repo_full_name')}/releases"


def _empty_page_marker(page: Any) -> Any:
    """An empty page as dlt's empty marker (which creates the table); any other item unchanged."""
    return dlt.mark.materialize_table_schema() if isinstance(page, list) and not page else page


def _rename_parent_key(row: dict[str, Any]) -> dict[str, Any]:
    """`rest_api` names the parent field `_repositories_full_name`; every table here says `repo_full_name`."""
    row["repo_full_name"] = row.pop("_repositories_full_name")
    return row
