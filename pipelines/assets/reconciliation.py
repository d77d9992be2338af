"""`quality.source_reconciliation`: rows in the warehouse against the totals the sources report.

After extraction, a small probe asks each configured source how many records it holds of every
raw entity whose API reports a total, within the same scope the extraction reads (the selected
projects, repositories and root folders, and `START_DATE`), and sets that beside the rows of the
raw table. `completeness` = warehouse rows / source total is the input of the `sync_accuracy` KPI
(the minimum over entities, `pipelines/kpis/compute.py`).

| system | entity (raw table) | the source's total (`S` = `START_DATE`) |
|---|---|---|
| github | repositories | `orgs/{org}/repos?per_page=1`: the `Link: rel="last"` page (org listing only) |
| github | pull_requests | per repo, `pulls?state=all&sort=updated&per_page=1`: `rel="last"`, less updated before S |
| github | deployments | per repo, `deployments?per_page=1`: `rel="last"`, less those created before S |
| github | releases | per repo, `releases?per_page=1`: `rel="last"` |
| github | workflow_runs | per repo, `actions/runs?created=>=S&per_page=1`: `total_count` |
| jira | projects | `project/search?keys=…&maxResults=1`: `total` |
| jira | boards | per project, `agile/1.0/board?projectKeyOrId=…&maxResults=1`: `total` |
| jenkins | builds | per job, `lastBuild.number − firstBuild.number + 1` (jobs with builds before S left out) |
| datadog | slos | `api/v1/slo?limit=1`: `metadata.page.total_count` |

Not reconciled, because the API reports no total (source-apis.md): Jira issues and sprints
(`search/jql` pages by token without a total; sprints have none), GitHub commits (cursor paging),
deployment statuses and jobs (one request per parent), Datadog incidents, monitors and events,
Jenkins jobs, stages and test cases, Mixpanel events (one streamed export, no counts).

With page size 1, `rel="last"` is the number of records: GitHub has no count endpoint outside
search, and this costs one request per list. "Less those before START_DATE" is a binary search
over the same one-record pages (the lists are newest first), about log2(n) requests per list, and
only when the oldest record predates `START_DATE`.
"""

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import polars as pl
import requests
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from pipelines.resources import SourcesResource, Warehouse
from pipelines.sources.http import (
    DatadogAuth,
    GitHubAuth,
    JenkinsAuth,
    JiraAuth,
    SourceHTTPError,
    SourceSession,
    config_key,
    make_session,
)

log = logging.getLogger("opsmap.reconciliation")

TABLE = "quality.source_reconciliation"
RECONCILIATION_KEY = AssetKey(["quality", "source_reconciliation"])
PROBE_CHECK = "every_source_answered"

RECONCILED: dict[str, tuple[str, ...]] = {
    "github": ("repositories", "pull_requests", "deployments", "releases", "workflow_runs"),
    "jira": ("projects", "boards"),
    "jenkins": ("builds",),
    "datadog": ("slos",),
}
"""The raw entities with a source-reported total, per system (the asset depends on their raw assets)."""

COLUMNS: dict[str, str] = {
    "system": "Source system: jira, github, jenkins or datadog.",
    "entity": "Raw entity, named as its table in `raw_<system>`.",
    "warehouse_rows": "Rows of the entity in the warehouse (`raw_<system>.<entity>`, within the same scope).",
    "source_total": "How many records the source reports for the entity, in the extraction's scope.",
    "completeness": "warehouse_rows / source_total (1.0 = complete; above 1 = rows the source no longer has); "
    "null when the source reports none and the warehouse has some.",
    "total_method": "Where the total comes from (the API field or paging header).",
    "measured_at": "When the source was asked (UTC).",
}

PAGE_OF_ONE = 1
"""One record per page: the `rel="last"` page number is then the record count."""
JENKINS_TREE_DEPTH = 4
"""Folder → multibranch project → branch job is three levels; one more for an organisation folder."""


@dataclass(frozen=True)
class SourceTotal:
    """What a source reports for one raw entity.

    `only`: when the total covers part of the raw table, the (column, values) that select that
    part (Jenkins jobs whose retained builds start after START_DATE).
    """

    system: str
    entity: str
    total: int
    method: str
    only: tuple[str, tuple[str, ...]] | None = None


# --- configuration ------------------------------------------------------------------------------


def setting(system: str, key: str) -> str | None:
    """A source setting the way dlt resolves it: `SOURCES__<SYSTEM>__<KEY>`, then `.dlt/*.toml`."""
    value = os.environ.get(config_key(system, key))
    if value:
        return value
    import dlt

    for provider in (dlt.config, dlt.secrets):
        try:
            found = provider.get(f"sources.{system}.{key.lower()}")
        except Exception:  # dlt raises when no provider has the key
            found = None
        if found not in (None, ""):
            return ",".join(map(str, found)) if isinstance(found, list) else str(found)
    return None


def as_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def start_day(system: str) -> date | None:
    value = setting(system, "START_DATE")
    return date.fromisoformat(value[:10]) if value else None


# --- paging arithmetic --------------------------------------------------------------------------


def last_page(response: requests.Response) -> int:
    """Records in a list fetched one per page: the `rel="last"` page, or what this page holds."""
    last = response.links.get("last")
    if last:
        return int(parse_qs(urlsplit(last["url"]).query)["page"][0])
    return len(response.json())


def count_not_before(n: int, moment_of: Callable[[int], datetime | None], bound: datetime) -> int:
    """How many of `n` records, listed newest first, are at or after `bound` (binary search by page).

    `moment_of(k)` is the time of the k-th record (1-based); None when the list shrank meanwhile.
    """
    if n == 0:
        return 0
    oldest = moment_of(n)
    if oldest is not None and oldest >= bound:
        return n  # the usual case: one request tells that nothing predates the bound
    newest = moment_of(1)
    if newest is None or newest < bound:
        return 0
    low, high = 1, n  # record `low` is at/after the bound, record `high` before it
    while high - low > 1:
        mid = (low + high) // 2
        moment = moment_of(mid)
        if moment is not None and moment >= bound:
            low = mid
        else:
            high = mid
    return low


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --- probes -------------------------------------------------------------------------------------


def github_totals() -> list[SourceTotal]:
    """Repositories, pull requests, deployments, releases and Actions runs (see the module table)."""
    base = (setting("github", "BASE_URL") or "").rstrip("/")
    org = setting("github", "ORG") or ""
    selected = [r if "/" in r else f"{org}/{r}" for r in as_list(setting("github", "REPOS"))]
    session = make_session("github", auth=GitHubAuth(setting("github", "ACCESS_TOKEN") or ""), selection_key="ORG")
    start = start_day("github")

    def get(path: str, **params: Any) -> requests.Response:
        return session.get(f"{base}/{path}", params=params)

    totals: list[SourceTotal] = []
    repos = selected
    if not selected:
        first = get(f"orgs/{org}/repos", type="all", per_page=PAGE_OF_ONE)
        totals.append(SourceTotal("github", "repositories", last_page(first), 'orgs/{org}/repos: Link rel="last"'))
        repos = [r["full_name"] for r in _github_pages(session, f"{base}/orgs/{org}/repos")]

    def since(path: str, field: str, n: int, **params: Any) -> int:
        if start is None:
            return n

        def moment_of(k: int) -> datetime | None:
            items = get(path, per_page=PAGE_OF_ONE, page=k, **params).json()
            return _instant(items[0][field]) if items else None

        return count_not_before(n, moment_of, _midnight(start))

    counts = {"pull_requests": 0, "deployments": 0, "releases": 0, "workflow_runs": 0}
    for repo in repos:
        pulls = {"state": "all", "sort": "updated", "direction": "desc"}
        n = last_page(get(f"repos/{repo}/pulls", per_page=PAGE_OF_ONE, **pulls))
        counts["pull_requests"] += since(f"repos/{repo}/pulls", "updated_at", n, **pulls)
        n = last_page(get(f"repos/{repo}/deployments", per_page=PAGE_OF_ONE))
        counts["deployments"] += since(f"repos/{repo}/deployments", "created_at", n)
        counts["releases"] += last_page(get(f"repos/{repo}/releases", per_page=PAGE_OF_ONE))
        runs: dict[str, Any] = {"per_page": PAGE_OF_ONE}
        if start is not None:
            runs["created"] = f">={start.isoformat()}"
        counts["workflow_runs"] += int(get(f"repos/{repo}/actions/runs", **runs).json()["total_count"])
    since_note = f", created/updated since {start}" if start else ""
    totals += [
        SourceTotal("github", "pull_requests", counts["pull_requests"], f'pulls: Link rel="last"{since_note}'),
        SourceTotal("github", "deployments", counts["deployments"], f'deployments: Link rel="last"{since_note}'),
        SourceTotal("github", "releases", counts["releases"], 'releases: Link rel="last"'),
        SourceTotal("github", "workflow_runs", counts["workflow_runs"], f"actions/runs: total_count{since_note}"),
    ]
    return totals


def _github_pages(session: SourceSession, url: str) -> Iterator[dict[str, Any]]:
    """Every item of a GitHub list, following `Link: rel="next"` verbatim (100 a page: the maximum)."""
    next_url: str | None = url
    params: dict[str, Any] | None = {"type": "all", "sort": "full_name", "per_page": 100}
    while next_url:
        response = session.get(next_url, params=params)
        yield from response.json()
        next_url = response.links.get("next", {}).get("url")
        params = None  # the next link carries them


def jira_totals() -> list[SourceTotal]:
    """Projects (`project/search` total) and boards (Agile `board` total, per selected project)."""
    base = (setting("jira", "BASE_URL") or "").rstrip("/")
    auth = JiraAuth(setting("jira", "API_TOKEN") or "", setting("jira", "EMAIL"))
    session = make_session("jira", auth=auth, selection_key="PROJECTS")
    keys = [k.upper() for k in as_list(setting("jira", "PROJECTS"))]

    def total(path: str, **params: Any) -> int:
        return int(session.get(f"{base}/{path}", params={**params, "maxResults": 1}).json()["total"])

    projects = total("rest/api/3/project/search", **({"keys": keys} if keys else {}))
    if keys:
        boards = sum(total("rest/agile/1.0/board", projectKeyOrId=key) for key in keys)
    else:
        boards = total("rest/agile/1.0/board")
    return [
        SourceTotal("jira", "projects", projects, "project/search: total"),
        SourceTotal("jira", "boards", boards, "agile/1.0/board: total" + (" per project" if keys else "")),
    ]


def jenkins_tree(depth: int = JENKINS_TREE_DEPTH) -> str:
    """`tree=` asking every job's full name, class and first and last build, `depth` levels down."""
    fields = "_class,fullName,firstBuild[number,timestamp],lastBuild[number]"
    tree = f"jobs[{fields}]"
    for _ in range(depth - 1):
        tree = f"jobs[{fields},{tree}]"
    return tree


def _jenkins_jobs(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in node.get("jobs") or []:
        yield job
        yield from _jenkins_jobs(job)


def jenkins_totals() -> list[SourceTotal]:
    """Builds: per job, the retained range lastBuild − firstBuild + 1 (Jenkins numbers builds 1, 2, …)."""
    base = (setting("jenkins", "BASE_URL") or "").rstrip("/")
    username, token = setting("jenkins", "USERNAME"), setting("jenkins", "API_TOKEN")
    auth = JenkinsAuth(username or "", token or "") if (username or token) else None
    session = make_session("jenkins", auth=auth, selection_key="ROOT_FOLDERS")
    start = start_day("jenkins")
    start_ms = int(_midnight(start).timestamp() * 1000) if start else None
    folders = as_list(setting("jenkins", "ROOT_FOLDERS"))
    paths = ["/".join(f"job/{quote(p, safe='')}" for p in f.strip("/").split("/")) for f in folders] or [""]
    total, jobs, left_out = 0, [], 0
    for path in paths:
        url = f"{base}/{path}/api/json" if path else f"{base}/api/json"
        root = session.get(url, params={"tree": jenkins_tree()}).json()
        for job in _jenkins_jobs(root):
            first, last = job.get("firstBuild"), job.get("lastBuild")
            if not first or not last:
                continue  # a container, or a job without builds
            if start_ms is not None and int(first.get("timestamp") or 0) < start_ms:
                left_out += 1  # its oldest builds were never extracted, so the range is not comparable
                continue
            total += int(last["number"]) - int(first["number"]) + 1
            jobs.append(str(job["fullName"]))
    method = "per job: lastBuild.number - firstBuild.number + 1"
    if left_out:
        method += f" ({left_out} jobs with builds before {start} left out)"
    return [SourceTotal("jenkins", "builds", total, method, only=("job_full_name", tuple(sorted(jobs))))]


def datadog_totals() -> list[SourceTotal]:
    """SLOs: the v1 list's `metadata.page.total_count`."""
    base = (setting("datadog", "BASE_URL") or "").rstrip("/")
    auth = DatadogAuth(setting("datadog", "API_KEY") or "", setting("datadog", "APPLICATION_KEY"))
    session = make_session("datadog", auth=auth)
    body = session.get(f"{base}/api/v1/slo", params={"limit": 1, "offset": 0}).json()
    return [
        SourceTotal("datadog", "slos", int(body["metadata"]["page"]["total_count"]), "slo: metadata.page.total_count")
    ]


PROBES: dict[str, Callable[[], list[SourceTotal]]] = {
    "github": github_totals,
    "jira": jira_totals,
    "jenkins": jenkins_totals,
    "datadog": datadog_totals,
}


def probe_sources(systems: Sequence[str] | None = None) -> tuple[list[SourceTotal], dict[str, str]]:
    """Ask every configured system for its totals; (totals, {system: why it could not be asked})."""
    totals: list[SourceTotal] = []
    errors: dict[str, str] = {}
    for system, probe in PROBES.items():
        if systems is not None and system not in systems:
            continue
        if not setting(system, "BASE_URL"):
            continue
        try:
            totals += probe()
        except SourceHTTPError as exc:  # its message names the endpoint and config key, never a secret
            errors[system] = str(exc)
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            # Other errors may quote a URL or a body: keep only their kind.
            errors[system] = f"{type(exc).__name__} while reading the totals"
    return totals, errors


def probe_now() -> tuple[datetime, list[SourceTotal], dict[str, str]]:
    """`probe_sources()` with the moment it was asked."""
    measured_at = datetime.now(UTC)
    return (measured_at, *probe_sources())


# --- the table ----------------------------------------------------------------------------------


def warehouse_rows(con: Any, found: SourceTotal) -> int:
    """Rows of the entity's raw table (0 when it was never loaded), within `found.only` if set."""
    schema = f"raw_{found.system}"
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, found.entity]
    ).fetchone()[0]
    if not exists:
        return 0
    table = f'"{schema}"."{found.entity}"'
    if found.only is None:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    column, values = found.only
    query = f'SELECT count(*) FROM {table} WHERE "{column}" IN (SELECT unnest(?::VARCHAR[]))'
    return int(con.execute(query, [list(values)]).fetchone()[0])


def reconciliation_frame(con: Any, totals: Sequence[SourceTotal], measured_at: datetime) -> pl.DataFrame:
    """One row per entity: warehouse rows, the source's total and their ratio."""
    rows = []
    for found in totals:
        have = warehouse_rows(con, found)
        if found.total:
            completeness: float | None = have / found.total
        else:
            completeness = 1.0 if have == 0 else None
        rows.append(
            {
                "system": found.system,
                "entity": found.entity,
                "warehouse_rows": have,
                "source_total": found.total,
                "completeness": completeness,
                "total_method": found.method,
                "measured_at": measured_at,
            }
        )
    schema = {
        "system": pl.String,
        "entity": pl.String,
        "warehouse_rows": pl.Int64,
        "source_total": pl.Int64,
        "completeness": pl.Float64,
        "total_method": pl.String,
        "measured_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame(rows, schema=schema)


def write_table(con: Any, frame: pl.DataFrame) -> None:
    """Replace the table and document it (every warehouse table and column carries a comment)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS quality")
    con.register("reconciliation_frame", frame.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS SELECT * FROM reconciliation_frame")
    finally:
        con.unregister("reconciliation_frame")
    doc = (
        "Per raw entity, rows in the warehouse against the total the source reports (where its API has one); "
        "completeness feeds the sync_accuracy KPI. Grain: one row per system and entity."
    )
    con.execute(f"COMMENT ON TABLE {TABLE} IS '{doc}'")
    for column, text in COLUMNS.items():
        con.execute(f"COMMENT ON COLUMN {TABLE}.{column} IS '{text.replace(chr(39), chr(39) * 2)}'")


@asset(
    key=RECONCILIATION_KEY,
    deps=[AssetKey([f"raw_{system}", entity]) for system, entities in RECONCILED.items() for entity in entities],
    group_name="mart_quality",
    kinds={"duckdb", "python"},
    description="Per raw entity, rows in the warehouse against the total the source reports, and their ratio "
    "(`completeness`), the input of the `sync_accuracy` KPI. The totals come from a small probe of each source "
    "after extraction (`pipelines/assets/reconciliation.py` lists the endpoints).",
    metadata={
        "dagster/table_name": TABLE,
        "grain": "one row per system and raw entity",
        "primary_key": "system, entity",
    },
    check_specs=[
        AssetCheckSpec(
            PROBE_CHECK,
            asset=RECONCILIATION_KEY,
            description="Every configured source answered the reconciliation probe (a source that did not is "
            "missing from the table, so sync_accuracy would be measured without it). WARN.",
        )
    ],
)
def source_reconciliation(
    context: AssetExecutionContext, warehouse: Warehouse, sources: SourcesResource
) -> MaterializeResult:
    # `sources` is required so that, with no source configured, the sandbox is up and configured; after
    # extraction in the same run it has stopped the sandbox and hands over the totals it took then.
    (measured_at, totals, errors), kept = sources.source_totals(probe_now)
    for system, why in errors.items():
        context.log.warning(f"reconciliation: no totals from {system}: {why}")
    with warehouse.connect() as con:
        frame = reconciliation_frame(con, totals, measured_at)
        write_table(con, frame)
    worst = frame.sort("completeness", nulls_last=True).head(1).to_dicts()
    context.log.info(f"reconciled {frame.height} entities; lowest completeness: {worst[0] if worst else 'n/a'}")
    probed = AssetCheckResult(
        check_name=PROBE_CHECK,
        passed=not errors,
        severity=AssetCheckSeverity.WARN,
        description=f"no totals from {', '.join(sorted(errors))}" if errors else None,
        metadata={
            "systems_answered": MetadataValue.json(sorted({t.system for t in totals})),
            "errors": MetadataValue.json(errors),
        },
    )
    return MaterializeResult(
        check_results=[probed],
        metadata={
            "dagster/row_count": frame.height,
            "min_completeness": MetadataValue.float(float(frame["completeness"].min()))
            if frame["completeness"].drop_nulls().len()
            else MetadataValue.text("n/a"),
            "reconciliation": MetadataValue.md(_markdown(frame)),
            "probe_errors": MetadataValue.json(errors),
            "probed": MetadataValue.text(
                f"{measured_at.isoformat()}, " + ("when extraction finished" if kept else "in this step")
            ),
        },
    )


def _markdown(frame: pl.DataFrame) -> str:
    lines = ["| system | entity | warehouse | source | completeness |", "|---|---|---|---|---|"]
    for r in frame.to_dicts():
        ratio = "n/a" if r["completeness"] is None else f"{r['completeness']:.3f}"
        lines.append(f"| {r['system']} | {r['entity']} | {r['warehouse_rows']} | {r['source_total']} | {ratio} |")
    return "\n".join(lines)


@asset_check(
    asset=RECONCILIATION_KEY,
    name="primary_key",
    blocking=True,
    description=f"(system, entity) is unique and never null in {TABLE}. Blocking: sync_accuracy reads it.",
)
def reconciliation_primary_key(warehouse: Warehouse) -> AssetCheckResult:
    from pipelines.checks.keys import key_check_result

    with warehouse.connect() as con:
        return key_check_result(con, TABLE, ("system", "entity"))
