"""The Jira dlt source: Jira Cloud REST v3 + Agile 1.0 into the `raw_jira` dataset.

Tables (all mutable, so `merge` on their primary key):

| table | primary key | how it is read |
|---|---|---|
| `issues` | `id` | `GET /rest/api/3/search/jql`, incremental on `fields.updated` (below) |
| `issue_changelogs` | `id` (history id) | each issue's embedded histories, or `/issue/{id}/changelog` pages |
| `projects` | `id` | `GET /rest/api/3/project/search?keys=…` |
| `versions` | `id` | `GET /rest/api/3/project/{key}/versions`, per project |
| `boards` | `id` | `GET /rest/agile/1.0/board?projectKeyOrId=…`, per project |
| `sprints` | `id` | `GET /rest/agile/1.0/board/{id}/sprint`, per board |

Projects, versions, boards and sprints are a few requests per project, re-read in full every run
(versions get released and sprints close without any cursor to follow). Issues are incremental:

- the JQL is bounded, `project in (…) AND updated >= 'yyyy/MM/dd HH:mm' ORDER BY updated ASC`
  (source-apis.md §2). JQL has minute precision and is read in the Jira user's time zone, so the
  literal is the cursor's own wall-clock time (Jira renders times in that zone) minus one minute,
  floored to the minute: every run re-reads one to two minutes of the previous one;
- the re-read issues are dropped here when older than the cursor, and dlt's boundary de-duplication
  (primary key `id`) drops those already loaded at exactly the cursor; the merge absorbs the rest;
- cursors are compared as instants (`_latest`), not as strings, because the offset in Jira's
  `2020-06-12T08:13:13.360+0800` follows the user's zone and changes with daylight saving time.

Custom fields have per-site ids; the source finds the Sprint and story-points fields through
`GET /rest/api/3/field` (falling back to Jira Cloud's usual `customfield_10020` and `customfield_10016`)
and loads them under stable names, `fields.sprints` and `fields.story_points`, so the warehouse does
not depend on a site's ids. Everything else is left as the API sends it (times included; staging
casts them). The issue's `changelog` moves to `issue_changelogs` (with `issue_id` and `issue_key`)
instead of being loaded twice. Every column the staging models read is declared (column hints, below),
so it exists before any value arrives; the affected versions (`fields.versions`) stay one JSON list on
the issue row, because dlt creates a child table only with its first row and many sites never set them.

Bad input (`pipelines.sources.quarantine`): each search page's issues (with `key` and `fields.updated`
required: the changelog rows and the cursor read them), their histories and the catalogue records pass
their table's `Gate` before anything reads them; records that fail go to `raw_jira.quarantine`, take no
part in the cursor and feed no child resource; a field failing on most of a page stops the source.

Configuration (`SOURCES__JIRA__<KEY>`): `BASE_URL` (`https://<site>.atlassian.net`), `EMAIL` and
`API_TOKEN` (Basic auth; without an e-mail the token is sent as a Bearer token, e.g. a Data Center
PAT), `PROJECTS` (comma-separated keys or a list; empty = every project the account can see),
`START_DATE` (ISO date, the first run's lower bound, read in the Jira user's time zone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.sources import DltResource
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import BasePaginator, JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_resources
from requests import Request, Response

from pipelines.sources.http import JiraAuth, SourceNotFoundError, SourceSession, make_session
from pipelines.sources.quarantine import (
    Gate,
    declare_table,
    gate_resource,
    page_endpoint,
    quarantined,
    routed,
    shield,
)

SEARCH_PAGE_SIZE = 100
"""100: Jira Cloud's maximum `maxResults` for search/jql (it may return fewer; the token paging follows)."""
AGILE_PAGE_SIZE = 50
"""50: the maximum page of the Agile board and sprint lists and of project search."""
CHANGELOG_PAGE_SIZE = 100
"""100: the maximum page of `/issue/{id}/changelog`."""
JQL_OVERLAP = timedelta(minutes=1)
"""JQL dates have minute precision: re-read at least the minute before the cursor."""

SPRINT_FIELD_FALLBACK = "customfield_10020"
STORY_POINTS_FIELD_FALLBACK = "customfield_10016"
_SPRINT_SCHEMA = "com.pyxis.greenhopper.jira:gh-sprint"
_STORY_POINTS_SCHEMA = "com.pyxis.greenhopper.jira:jsw-story-points"
_STORY_POINTS_NAMES = ("story points", "story point estimate")

ISSUE_FIELDS: tuple[str, ...] = (
    "summary",
    "issuetype",
    "status",
    "project",
    "created",
    "updated",
    "resolutiondate",
    "resolution",
    "statuscategorychangedate",
    "assignee",
    "reporter",
    "creator",
    "priority",
    "labels",
    "parent",
    "fixVersions",
    "versions",
    "components",
    "description",
    "duedate",
)
"""The issue fields loaded: asking for these, not `*all`, keeps pages full (Jira shrinks pages of heavy issues)."""

_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_EPOCH = "1970-01-01T00:00:00.000+0000"


# --- configuration helpers ------------------------------------------------------------------------


def parse_projects(projects: str | Sequence[str] | None) -> list[str]:
    """Project keys from a comma-separated string or a list; upper-cased, de-duplicated, validated."""
    if projects is None:
        return []
    items = projects.split(",") if isinstance(projects, str) else list(projects)
    keys = list(dict.fromkeys(str(k).strip().upper() for k in items if str(k).strip()))
    bad = [k for k in keys if not _PROJECT_KEY.match(k)]
    if bad:
        raise ValueError(
            f"jira: SOURCES__JIRA__PROJECTS has invalid project keys {bad}; expected keys such as PAY,SRCH"
        )
    return keys


def initial_cursor(start_date: str | date | datetime | None) -> str:
    """The first run's cursor, in Jira's time format, from `START_DATE` (midnight of that day)."""
    if start_date is None or start_date == "":
        return _EPOCH
    if isinstance(start_date, str):
        try:
            start_date = date.fromisoformat(start_date[:10])
        except ValueError as exc:
            raise ValueError(f"jira: SOURCES__JIRA__START_DATE={start_date!r} is not an ISO date (YYYY-MM-DD)") from exc
    day = start_date.date() if isinstance(start_date, datetime) else start_date
    return f"{day.isoformat()}T00:00:00.000+0000"


# --- cursors and JQL ------------------------------------------------------------------------------


def jira_instant(value: str) -> datetime:
    """Parse Jira's `2020-06-12T08:13:13.360+0800` (the offset has no colon; fact 5).

    Any ISO-8601 time with an offset parses (Python 3.11 reads `+0800`), as the issues' gate accepts;
    one without an offset is refused, since Jira writes times in the user's zone.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"jira: {value!r} has no UTC offset")
    return parsed


def _latest(values: Sequence[str]) -> str:
    """dlt `last_value_func`: the latest cursor as an instant (offsets may differ between values)."""
    return max(values, key=jira_instant)


def jql_since(cursor: str) -> str:
    """The JQL date literal for `updated >=`: the cursor's wall-clock time minus `JQL_OVERLAP`, floored."""
    return (jira_instant(cursor) - JQL_OVERLAP).strftime("%Y/%m/%d %H:%M")


def issues_jql(projects: Sequence[str], cursor: str) -> str:
    """The bounded search: the selected projects (if any) and everything updated since the cursor."""
    clauses = []
    if projects:
        # Keys are validated by `parse_projects` (letters, digits, underscore), so quoting is enough.
        clauses.append("project in (" + ", ".join(f'"{k}"' for k in projects) + ")")
    clauses.append(f"updated >= '{jql_since(cursor)}'")
    return " AND ".join(clauses) + " ORDER BY updated ASC"


# --- custom fields ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomFields:
    """The site's ids of the custom fields the warehouse uses."""

    sprint: str = SPRINT_FIELD_FALLBACK
    story_points: str = STORY_POINTS_FIELD_FALLBACK

    def ids(self) -> tuple[str, ...]:
        return (self.sprint, self.story_points)


def find_custom_fields(fields: Iterable[dict[str, Any]]) -> CustomFields:
    """Pick the Sprint and story-points fields from `/rest/api/3/field` (schema type first, then name)."""
    sprint = points = points_by_name = None
    for f in fields:
        schema = f.get("schema") or {}
        custom = schema.get("custom")
        if custom == _SPRINT_SCHEMA and sprint is None:
            sprint = f["id"]
        elif custom == _STORY_POINTS_SCHEMA and points is None:
            points = f["id"]
        elif f.get("custom") and str(f.get("name", "")).strip().lower() in _STORY_POINTS_NAMES:
            points_by_name = points_by_name or f["id"]
    return CustomFields(
        sprint=sprint or SPRINT_FIELD_FALLBACK, story_points=points or points_by_name or STORY_POINTS_FIELD_FALLBACK
    )


def discover_custom_fields(client: RESTClient) -> CustomFields:
    """Ask the site for its field ids; a server without `/field` gets the usual Cloud ids."""
    try:
        response = client.get("rest/api/3/field")
    except SourceNotFoundError:
        return CustomFields()
    return find_custom_fields(response.json())


# --- parsing: one issue → an issue row and changelog rows ---------------------------------------------


def _number(value: Any) -> float | None:
    """Story points as a number: sites store them as floats, some as numeric strings (`"-1"`)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def issue_row(issue: dict[str, Any], custom: CustomFields) -> dict[str, Any]:
    """The `issues` row: the API's issue without its changelog, custom fields under stable names."""
    row = {k: v for k, v in issue.items() if k != "changelog"}
    if not isinstance(issue.get("fields"), dict | None):
        return row  # left as sent: the gate quarantines it, naming `fields`
    fields = dict(issue.get("fields") or {})
    fields["sprints"] = fields.pop(custom.sprint, None)
    fields["story_points"] = _number(fields.pop(custom.story_points, None))
    row["fields"] = fields
    return row


def changelog_rows(issue: dict[str, Any], histories: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`issue_changelogs` rows: each history (id, author, created, items) with its issue's id and key."""
    rows: dict[str, dict[str, Any]] = {}
    for i, history in enumerate(histories):
        # A history without an id is kept apart (its gate quarantines it), not merged with another.
        key = str(history["id"]) if isinstance(history, dict) and history.get("id") is not None else f"#{i}"
        rows[key] = (
            {**history, "issue_id": issue["id"], "issue_key": issue["key"]} if isinstance(history, dict) else history
        )
    return list(rows.values())


def embedded_changelog(issue: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The histories embedded by `expand=changelog` and how many the issue has in all."""
    changelog = issue.get("changelog") or {}
    histories = list(changelog.get("histories") or [])
    return histories, int(changelog.get("total", len(histories)))


# --- column hints ------------------------------------------------------------------------------------
# dlt creates a column only once it has seen a non-null value, and a child table only once a list had an
# item: every raw column the staging models (`warehouse/staging/jira/`) read is declared here, with the
# type dlt infers from real data, so it exists from the first load of a small or early site. Child tables
# get their columns declared too (`nested_hints`), but dlt still creates them only with their first row.
# Fresh dicts per call: dlt writes into the hints it is given.


def _hint(data_type: str) -> TColumnSchema:
    return {"data_type": data_type, "nullable": True}  # type: ignore[typeddict-item]


def _nested(columns: dict[str, str], parent: str | None = None) -> dict[str, Any]:
    """A `nested_hints` entry: the child table's column types (nested hints need each column's name).

    `parent` names the parent table when the list sits in a nested object (`fields.sprints` of `issues`):
    dlt flattens the object into the parent's columns, so there is no `issues__fields` table in between.
    """
    hints: dict[str, Any] = {"columns": {name: {"name": name, **_hint(t)} for name, t in columns.items()}}
    return hints | ({"parent_table_name": parent} if parent else {})


def issue_columns() -> dict[str, TColumnSchema]:
    """Column hints for `issues`."""
    return {
        "id": _hint("text"),
        "key": _hint("text"),
        "fields__summary": _hint("text"),
        "fields__description": _hint("json"),  # an ADF document: keep it whole
        "fields__created": _hint("timestamp"),
        # An issue edited while the run pages is read twice; the merge keeps its latest version.
        "fields__updated": {**_hint("timestamp"), "dedup_sort": "desc"},
        "fields__resolutiondate": _hint("timestamp"),
        "fields__statuscategorychangedate": _hint("timestamp"),
        "fields__project__id": _hint("text"),
        "fields__project__key": _hint("text"),
        "fields__issuetype__name": _hint("text"),
        "fields__issuetype__hierarchy_level": _hint("bigint"),
        "fields__status__id": _hint("text"),
        "fields__status__name": _hint("text"),
        "fields__status__status_category__key": _hint("text"),
        "fields__resolution__name": _hint("text"),
        "fields__priority__name": _hint("text"),
        "fields__assignee__display_name": _hint("text"),
        "fields__reporter__display_name": _hint("text"),
        "fields__parent__id": _hint("text"),
        "fields__parent__key": _hint("text"),
        "fields__parent__fields__issuetype__name": _hint("text"),
        "fields__parent__fields__issuetype__hierarchy_level": _hint("bigint"),
        "fields__story_points": _hint("double"),
        # Affected versions: one JSON list on the row, not a child table. Most issues never have one (a
        # site may never set any), and a child table would not exist until the first one did.
        "fields__versions": _hint("json"),
    }


def issue_nested_hints() -> dict[tuple[str, ...], dict[str, Any]]:
    """Child tables of `issues`: the Sprint field's sprints and the fix versions."""
    return {
        ("fields", "sprints"): _nested({"id": "bigint", "name": "text", "board_id": "bigint"}, parent="issues"),
        ("fields", "fix_versions"): _nested({"id": "text", "name": "text"}, parent="issues"),
    }


def changelog_columns() -> dict[str, TColumnSchema]:
    """Column hints for `issue_changelogs`."""
    return {
        "id": _hint("text"),
        "created": _hint("timestamp"),
        "issue_id": _hint("text"),
        "issue_key": _hint("text"),
        "author__display_name": _hint("text"),  # absent when Jira itself (an automation) made the change
    }


def changelog_nested_hints() -> dict[tuple[str, ...], dict[str, Any]]:
    """`issue_changelogs__items`: one row per changed field of a history."""
    return {
        ("items",): _nested(
            {
                "field": "text",
                "field_id": "text",
                "from": "text",
                "from_string": "text",
                "to": "text",
                "to_string": "text",
            }
        )
    }


CATALOGUE_COLUMNS: dict[str, dict[str, str]] = {
    "projects": {"id": "text", "key": "text", "name": "text", "project_type_key": "text"},
    "versions": {
        "id": "text",
        "project_id": "bigint",
        "name": "text",
        "description": "text",
        "release_date": "text",  # `2026-05-01`: staging casts it to a date
        "released": "bool",
        "archived": "bool",
    },
    "boards": {
        "id": "bigint",
        "name": "text",
        "type": "text",
        "location__project_id": "bigint",
        "location__project_key": "text",
    },
    "sprints": {
        "id": "bigint",
        "origin_board_id": "bigint",
        "name": "text",
        "state": "text",
        "goal": "text",
        # Set once the sprint starts (start, end) and completes: a site with only planned sprints has none.
        "start_date": "timestamp",
        "end_date": "timestamp",
        "complete_date": "timestamp",
    },
}
"""Column types of the catalogue tables (as dlt infers them from the API's values), per resource."""


def catalogue_columns(resource: str) -> dict[str, TColumnSchema]:
    return {name: _hint(data_type) for name, data_type in CATALOGUE_COLUMNS[resource].items()}


# --- paging -----------------------------------------------------------------------------------------


class JiraOffsetPaginator(BasePaginator):
    """`startAt`/`maxResults` paging as Jira does it (Agile lists, project search, issue changelogs).

    The next `startAt` is the page's `startAt` plus the `maxResults` the server *answered* with: Jira may
    lower the page size (JRACLOUD-92183), so neither the requested size nor the item count is safe to
    add. The end is `isLast`, else `total`, else a short page (the sprint list has no `total`).
    """

    def __init__(self, page_size: int) -> None:
        super().__init__()
        self.page_size = page_size
        self.start_at = 0

    def init_request(self, request: Request) -> None:
        self.start_at = 0
        self._has_next_page = True
        self.update_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        body = response.json()
        count = len(data or [])
        if not isinstance(body, dict):
            self._has_next_page = False
            return
        start = int(body.get("startAt", self.start_at))
        step = int(body.get("maxResults") or count)
        if body.get("isLast") is not None:
            last = bool(body["isLast"])
        elif body.get("total") is not None:
            last = start + step >= int(body["total"])
        else:
            last = count < step
        self.start_at = start + step
        self._has_next_page = not last and step > 0

    def update_request(self, request: Request) -> None:
        request.params = {**(request.params or {}), "startAt": self.start_at, "maxResults": self.page_size}


def full_changelog(client: RESTClient, issue: dict[str, Any], page_size: int = CHANGELOG_PAGE_SIZE) -> list[dict]:
    """Every history of an issue from `/issue/{id}/changelog`, oldest first, de-duplicated by id."""
    seen: dict[str, dict[str, Any]] = {}
    for page in client.paginate(
        f"rest/api/3/issue/{issue['id']}/changelog",
        paginator=JiraOffsetPaginator(page_size),
        data_selector="values",
    ):
        for history in page:
            has_id = isinstance(history, dict) and history.get("id") is not None
            seen.setdefault(str(history["id"]) if has_id else f"#{len(seen)}", history)
    return list(seen.values())


def search_issues(client: RESTClient, jql: str, fields: Sequence[str], page_size: int) -> Iterator[list[dict]]:
    """Pages of `search/jql` with embedded changelogs; the token is absent on the last page (fact 4)."""
    params = {"jql": jql, "fields": ",".join(fields), "expand": "changelog", "maxResults": page_size}
    paginator = JSONResponseCursorPaginator(cursor_path="nextPageToken", cursor_param="nextPageToken")
    yield from client.paginate("rest/api/3/search/jql", params=params, paginator=paginator, data_selector="issues")


# --- resources --------------------------------------------------------------------------------------


class IssueRow(dict):  # type: ignore[type-arg]
    """An `issues` row that also carries its changelog rows, as attributes that are not loaded with it.

    The `issue_changelogs` transformer reads them from the rows that reach the end of the `issues`
    pipe (after dlt's incremental filter), so a changelog is loaded exactly when its issue is; so are
    the quarantine rows of its histories that failed their gate.
    """

    changelog: list[dict[str, Any]]
    quarantined: list[dict[str, Any]]


def gates() -> dict[str, Gate]:
    """A fresh `Gate` per table for one run: key, the fields this source reads, the declared columns."""
    issues = Gate(
        "jira",
        "issues",
        columns=issue_columns(),
        primary_key=("id",),
        required=("key", "fields__updated"),  # the changelog rows' key; the cursor
        lists=tuple("__".join(path) for path in issue_nested_hints()),
    )
    changelogs = Gate("jira", "issue_changelogs", columns=changelog_columns(), primary_key=("id",), lists=("items",))
    catalogue = {
        name: Gate(
            "jira",
            name,
            columns=catalogue_columns(name),
            primary_key=("id",),
            required=("key",) if name == "projects" else (),  # versions and boards are read per project key
        )
        for name in CATALOGUE_COLUMNS
    }
    return {"issues": issues, "issue_changelogs": changelogs, **catalogue}


def issue_pages(
    client: RESTClient,
    projects: Sequence[str],
    cursor: str,
    page_size: int,
    checks: dict[str, Gate] | None = None,
) -> Iterator[Any]:
    """`issues` rows (with their changelog rows attached) per search page, for issues updated since `cursor`.

    Hand-written rather than declarative: an issue's changelog may need more requests, and it goes
    to its own table, which a single rest_api endpoint cannot do. Issues that fail their gate are
    yielded as quarantine rows (without their changelog) and take no part in the cursor.
    """
    gate = checks or gates()
    custom = discover_custom_fields(client)
    since = jira_instant(cursor)
    latest: dict[str, datetime] = {}  # issue id → newest `updated` yielded this run (pages can repeat issues)
    for page in search_issues(client, issues_jql(projects, cursor), (*ISSUE_FIELDS, *custom.ids()), page_size):
        endpoint = page_endpoint(page)
        candidates = [(issue, issue_row(issue, custom)) for issue in page]
        passed, bad = gate["issues"].split([row for _, row in candidates], endpoint)
        kept = {id(row) for row in passed}
        rows = []
        for issue, fields_row in candidates:
            if id(fields_row) not in kept:
                continue
            updated = jira_instant(fields_row["fields"]["updated"])
            if updated < since or (issue["id"] in latest and latest[issue["id"]] >= updated):
                continue  # the JQL overlap re-reads loaded issues; a page may repeat the previous page's last
            latest[issue["id"]] = updated
            histories, total = embedded_changelog(issue)
            if total > len(histories):
                histories = full_changelog(client, issue)
            row = IssueRow(fields_row)
            row.changelog, row.quarantined = gate["issue_changelogs"].split(changelog_rows(issue, histories), endpoint)
            rows.append(row)
        if rows:
            yield rows
        if bad:
            yield quarantined(bad)


def _issue_resources(
    client: RESTClient, projects: list[str], initial: str, page_size: int, gates: dict[str, Gate]
) -> list[DltResource]:
    @dlt.resource(
        name="issues",
        primary_key="id",
        write_disposition="merge",
        columns=issue_columns(),
        nested_hints=issue_nested_hints(),
    )
    def issues(
        updated: dlt.sources.incremental[str] = dlt.sources.incremental(
            # "include": quarantine rows have no `fields.updated` and must pass the cursor untouched.
            "fields.updated",
            initial_value=initial,
            last_value_func=_latest,
            on_cursor_value_missing="include",
        ),
    ) -> Iterator[Any]:
        """Jira issues, merged on `id`, incremental on `fields.updated` through bounded JQL."""
        yield from issue_pages(client, projects, updated.start_value, page_size, gates)

    @dlt.transformer(
        name="issue_changelogs",
        primary_key="id",
        write_disposition="merge",
        data_from=issues,
        columns=changelog_columns(),
        nested_hints=changelog_nested_hints(),
    )
    def issue_changelogs(rows: list[IssueRow] | IssueRow) -> Iterator[list[dict[str, Any]]]:
        """Issue histories (status changes and other edits), one row per history id, with `issue_id`."""
        for row in rows if isinstance(rows, list) else [rows]:
            if row.changelog:
                yield row.changelog
            if row.quarantined:
                yield quarantined(row.quarantined)

    routed(issues, issue_changelogs)
    shield(issue_changelogs)
    return [issues, issue_changelogs]


def _catalogue_resources(
    session: SourceSession, base_url: str, projects: list[str], page_size: int, gates: dict[str, Gate]
) -> list[DltResource]:
    """Projects, their versions and boards, and the boards' sprints: declarative rest_api resources."""
    project_params: dict[str, Any] = {"keys": projects} if projects else {}
    config: dict[str, Any] = {
        "client": {"base_url": base_url.rstrip("/") + "/", "session": session},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "projects",
                "columns": catalogue_columns("projects"),
                "endpoint": {
                    "path": "rest/api/3/project/search",
                    "params": project_params,
                    "paginator": JiraOffsetPaginator(page_size),
                    "data_selector": "values",
                },
            },
            {
                "name": "versions",
                "columns": catalogue_columns("versions"),
                "endpoint": {
                    "path": "rest/api/3/project/{resources.projects.key}/versions",
                    "paginator": "single_page",
                    "data_selector": "$",
                },
            },
            {
                "name": "boards",
                "columns": catalogue_columns("boards"),
                "endpoint": {
                    "path": "rest/agile/1.0/board",
                    "params": {"projectKeyOrId": "{resources.projects.key}"},
                    "paginator": JiraOffsetPaginator(page_size),
                    "data_selector": "values",
                },
            },
            {
                "name": "sprints",
                "columns": catalogue_columns("sprints"),
                "endpoint": {
                    "path": "rest/agile/1.0/board/{resources.boards.id}/sprint",
                    "paginator": JiraOffsetPaginator(page_size),
                    "data_selector": "values",
                    # Kanban boards have no sprints: Jira answers 400 "The board does not support sprints".
                    "response_actions": [{"status_code": 400, "content": "support sprints", "action": "ignore"}],
                },
            },
        ],
    }
    resources = rest_api_resources(config)
    for resource in resources:
        gate_resource(resource, gates[resource.name])
    # Versions and boards are read per project key, sprints per board id: never for a quarantine row.
    shield(*(r for r in resources if r.name != "projects"))
    return resources


@dlt.source(name="jira", section="jira")
def jira_source(
    base_url: str = dlt.config.value,
    email: str | None = dlt.secrets.value,
    api_token: str = dlt.secrets.value,
    projects: str | list[str] | None = dlt.config.value,
    start_date: str | None = dlt.config.value,
    page_size: int = SEARCH_PAGE_SIZE,
) -> list[DltResource]:
    """Jira issues (incremental), their changelogs, projects, versions, boards and sprints.

    Args:
        base_url: the site, e.g. `https://acme.atlassian.net` (`SOURCES__JIRA__BASE_URL`).
        email: the account's e-mail for Basic auth; empty for a Bearer token (`SOURCES__JIRA__EMAIL`).
        api_token: the API token (`SOURCES__JIRA__API_TOKEN`).
        projects: project keys, comma-separated or a list; empty loads every visible project.
        start_date: ISO date, the first run's lower bound on `updated` (empty: everything).
        page_size: issues asked per search page (≤ 100); Agile lists use at most 50.
    """
    keys = parse_projects(projects)
    session = make_session("jira", auth=JiraAuth(api_token, email), selection_key="PROJECTS")
    client = RESTClient(base_url=base_url.rstrip("/") + "/", session=session)
    size = max(1, min(int(page_size), SEARCH_PAGE_SIZE))
    declare_table()
    gate = gates()
    catalogue = _catalogue_resources(session, base_url, keys, min(size, AGILE_PAGE_SIZE), gate)
    return [*catalogue, *_issue_resources(client, keys, initial_cursor(start_date), size, gate)]
