"""Jira emulator: Jira Cloud REST v3 and Agile 1.0 (source-apis.md §2, facts 4 and 5, and the recordings
under `shared/fixtures/real/jira/`).

One project per `Team` (key = team key, id = `Team.project_id`) with one scrum board (`Team.board_id`).

Routes (all `GET`):

- `/rest/api/3/search/jql?jql=&nextPageToken=&maxResults=&fields=&expand=`: the enhanced search. Token
  paging: `nextPageToken` is *absent* (not null) on the last page (JRACLOUD-92184) and `isLast` says so.
  `maxResults` defaults to 50 and is capped at 100, and at `CHANGELOG_PAGE_CAP` (50) when
  `expand=changelog` — Jira returns fewer issues per page when each carries more data, so a client must
  follow the token, never count. `fields` defaults to `id` only (the enhanced search's default); `*all`
  and `*navigable` give every rendered field, `-name` drops one. The JQL must be bounded (400 otherwise)
  and may use the subset real clients send (see `parse_jql`); anything else is a 400 naming the clause.
- `/rest/api/3/issue/{issueIdOrKey}/changelog?startAt=&maxResults=`: the full history, oldest first
  (recording `issue_changelogs.jsonl`), `maxResults` ≤ 100. An embedded `expand=changelog` holds only the
  newest `embedded_changelog_limit` histories, newest first, as Jira's does (recording `issues.jsonl`).
- `/rest/api/3/project/search`, `/rest/api/3/project/{key}/versions`, `/rest/api/3/field`,
  `/rest/api/3/status`, `/rest/api/3/issuetype`.
- Agile: `/rest/agile/1.0/board` (`projectKeyOrId`, `type`; `total`) and
  `/rest/agile/1.0/board/{boardId}/sprint` (`state`; no `total`), both `startAt/maxResults/isLast`.

As of `request.view.as_of`: issues created later are absent; status, resolution and changelog show
only transitions made by then; `updated` is `Issue.updated_at(as_of)`. The world records no sprint or
fix-version edits, so those facts surface with the issue's updates (never after its `updated`): a
sprint is listed once the issue was updated after the sprint started (`visible_sprint_ids`), the fix
version once the issue is Done. Times render as Jira does, `2026-05-01T10:00:00.000+0000` (the
sandbox users' time zone is UTC); sprint dates as `...000Z`.

Faults: `duplicate` repeats a record across offset pages (`page_slice`) and the previous page's last
issue on search pages; `mutate` renders one issue of a search page as just updated (`updated` = the
present), changing nothing else.

Synthetic parts (no recording): the search/jql envelope, project search and versions, the 401 and
429 bodies and headers (documented contract: Retry-After, X-RateLimit-* with an ISO reset,
RateLimit-Reason), and the JQL error messages for clauses the sandbox does not support.
"""

from __future__ import annotations

import base64
import hashlib
import operator
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.sandbox.http import HTTPError, Request, Response, Route, SystemEmulator, json_response, page_slice
from pipelines.sandbox.world import Issue, Person, Sprint, Team, Version, World, WorldView, utc

SEARCH_PAGE_DEFAULT = 50
"""Jira's default `maxResults` for search (source-apis.md fact 4)."""
SEARCH_PAGE_CAP = 100
"""Jira Cloud's maximum `maxResults` for search/jql."""
CHANGELOG_PAGE_CAP = 50
"""The sandbox's cap when `expand=changelog`: Jira lowers the page size for heavier issues."""
CHANGELOG_ENDPOINT_CAP = 100
"""`/issue/{key}/changelog`: default and maximum `maxResults` (DevLake asks for 100)."""
AGILE_PAGE_CAP = 50
"""Agile boards and sprints, and project search: default and maximum `maxResults` (recordings: 50)."""
EMBEDDED_CHANGELOG_LIMIT = 100
"""Jira embeds at most the 100 newest histories with `expand=changelog`."""

SPRINT_FIELD = "customfield_10020"
STORY_POINTS_FIELD = "customfield_10016"
RANK_FIELD = "customfield_10019"

SANDBOX_EMAIL = "opsmap-sandbox@acme.example"
SANDBOX_API_TOKEN = "sandbox-jira-api-token"

_ISSUE_EXPAND = "operations,versionedRepresentations,editmeta,changelog,renderedFields"
_AVATAR_HOST = "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net"
_AVATAR_SIZES = ("48x48", "24x24", "16x16", "32x32")

# --- the site's configuration: statuses, issue types, priorities, fields ------------------------

# status name → (id, statusCategory key, description)
STATUSES: dict[str, tuple[str, str, str]] = {
    "To Do": ("10000", "new", "This issue is in the backlog and ready to be picked up."),
    "In Progress": ("3", "indeterminate", "This issue is being actively worked on at the moment by the assignee."),
    "In Review": ("10001", "indeterminate", "A pull request for this issue is waiting for review."),
    "Done": ("10002", "done", "Work on this issue is complete."),
}
# statusCategory key → (id, colorName, name)  (ids and colours as Jira Cloud's, recording statuses.jsonl)
STATUS_CATEGORIES: dict[str, tuple[int, str, str]] = {
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}
# issue type name → (id, hierarchyLevel, avatarId, description)
ISSUE_TYPES: dict[str, tuple[str, int, int, str]] = {
    "Epic": ("10000", 1, 10307, "A big user story that needs to be broken down."),
    "Story": ("10001", 0, 10315, "Functionality or a feature expressed as a user goal."),
    "Task": ("10002", 0, 10318, "A small, distinct piece of work."),
    "Sub-task": ("10003", -1, 10316, "A small piece of work that's part of a larger task."),
    "Bug": ("10004", 0, 10303, "A problem or error."),
}
PRIORITIES: dict[str, str] = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
RESOLUTION_DONE = {"id": "10000", "name": "Done", "description": "Work has been completed on this issue."}


def _system_field(fid: str, name: str, schema: dict[str, Any], *, orderable: bool = True) -> dict[str, Any]:
    return {
        "id": fid,
        "key": fid,
        "name": name,
        "custom": False,
        "orderable": orderable,
        "navigable": True,
        "searchable": True,
        "clauseNames": [fid],
        "schema": {**schema, "system": fid},
    }


def _custom_field(fid: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    number = int(fid.rsplit("_", 1)[1])
    return {
        "id": fid,
        "key": fid,
        "name": name,
        "untranslatedName": name,
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": [f"cf[{number}]", name],
        "schema": {**schema, "customId": number},
    }


FIELDS: list[dict[str, Any]] = [
    _system_field("summary", "Summary", {"type": "string"}),
    _system_field("issuetype", "Issue Type", {"type": "issuetype"}),
    _system_field("status", "Status", {"type": "status"}, orderable=False),
    _system_field("project", "Project", {"type": "project"}),
    _system_field("created", "Created", {"type": "datetime"}, orderable=False),
    _system_field("updated", "Updated", {"type": "datetime"}, orderable=False),
    _system_field("resolutiondate", "Resolved", {"type": "datetime"}, orderable=False),
    _system_field("assignee", "Assignee", {"type": "user"}),
    _system_field("reporter", "Reporter", {"type": "user"}),
    _system_field("priority", "Priority", {"type": "priority"}),
    _system_field("labels", "Labels", {"type": "array", "items": "string"}),
    _system_field("parent", "Parent", {"type": "issuelink"}),
    _system_field("fixVersions", "Fix versions", {"type": "array", "items": "version"}),
    _system_field("versions", "Affects versions", {"type": "array", "items": "version"}),
    _system_field("description", "Description", {"type": "string"}),
    _custom_field(
        SPRINT_FIELD, "Sprint", {"type": "array", "items": "json", "custom": "com.pyxis.greenhopper.jira:gh-sprint"}
    ),
    _custom_field(
        STORY_POINTS_FIELD,
        "Story point estimate",
        {"type": "number", "custom": "com.pyxis.greenhopper.jira:jsw-story-points"},
    ),
    _custom_field(RANK_FIELD, "Rank", {"type": "any", "custom": "com.pyxis.greenhopper.jira:gh-lexo-rank"}),
]

_JQL_DATE_HELP = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
    "or a period format e.g. '-5d', '4w 2d'."
)
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."


# --- time formats --------------------------------------------------------------------------------


def jira_time(t: datetime) -> str:
    """Jira's timestamp form, `2020-06-12T08:13:13.360+0000` (milliseconds, offset without colon)."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def sprint_time(t: datetime) -> str:
    """Agile sprint dates: UTC with milliseconds and `Z` (recording sprints.jsonl)."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# --- as-of rules (pure helpers; tests use them as the yardstick) -----------------------------------


def resolved_at(issue: Issue, t: datetime) -> datetime | None:
    """When the issue was resolved (first moved to Done), if by `t`."""
    return issue.transition_at("Done", t)


def visible_sprint_ids(issue: Issue, sprints: dict[int, Sprint], t: datetime) -> list[int]:
    """The issue's sprints as Jira shows them at `t`.

    The world records sprint membership but not when it was edited; a sprint is shown once the issue
    was updated after the sprint started, so the Sprint field never changes without `updated` moving.
    """
    updated = issue.updated_at(t)
    return [sid for sid in issue.sprint_ids if sprints[sid].start_at <= updated]


def visible_fix_version_ids(issue: Issue, t: datetime) -> list[int]:
    """The fix version is set when the issue is resolved."""
    return list(issue.fix_version_ids) if resolved_at(issue, t) is not None else []


def status_category_changed_at(issue: Issue, t: datetime) -> datetime:
    """When the issue's status category last changed (`statuscategorychangedate`)."""
    changed = issue.created_at
    for tr in issue.transitions:
        if tr.at <= t and STATUSES[tr.from_status][1] != STATUSES[tr.to_status][1]:
            changed = tr.at
    return changed


def shares_email(person: Person) -> bool:
    """Every other person lets Jira show their e-mail address; the rest hide it (profile visibility)."""
    digits = re.sub(r"\D", "", person.person_id)
    return bool(digits) and int(digits) % 2 == 1


# --- JQL -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>>=|<=|!=|!~|=|>|<|~)
      | (?P<punct>[(),])
      | (?P<word>[^\s=!<>~(),"']+)
    )""",
    re.VERBOSE,
)
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_SORTABLE = ("updated", "created", "key")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "=": operator.eq,
}


@dataclass
class Bound:
    """One `created`/`updated` comparison."""

    op: str  # >=, >, <=, <, =
    at: datetime

    def accepts(self, value: datetime) -> bool:
        return _COMPARISONS[self.op](value, self.at)


@dataclass
class JqlQuery:
    """The supported JQL subset: `project = X | in (…)`, `created`/`updated` bounds, AND, ORDER BY."""

    projects: set[str] | None = None  # keys; None: any project
    bounds: dict[str, list[Bound]] = field(default_factory=lambda: {"created": [], "updated": []})
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    restricted: bool = False


def _jql_error(message: str) -> HTTPError:
    return HTTPError(400, message, body={"errorMessages": [message], "errors": {}})


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _jql_error(
                f"Error in the JQL Query: The character '{text[pos:].strip()[:1]}' is a reserved JQL character."
            )
        kind = m.lastgroup or "word"
        value = m.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = m.end()
    return out


def _parse_date(field_name: str, literal: str) -> datetime:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(literal, fmt).replace(tzinfo=UTC)  # the sandbox users' zone is UTC
        except ValueError:
            continue
    raise _jql_error(f"Date value '{literal}' for field '{field_name}' is invalid. {_JQL_DATE_HELP}")


def parse_jql(text: str, project_keys: Callable[[str], str | None]) -> JqlQuery:
    """Parse the JQL subset real clients use; raise a 400 naming anything else.

    `project_keys` resolves a project key or id to its key (None: no such project).
    """
    tokens = _tokens(text)
    query = JqlQuery()
    clause_tokens, order_tokens = _split_order(tokens)
    for clause in _split_and(clause_tokens):
        _apply_clause(query, clause, project_keys)
    query.order = _parse_order(order_tokens)
    return query


def _split_order(tokens: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    for i in range(len(tokens) - 1):
        if (
            tokens[i][0] == "word"
            and tokens[i][1].lower() == "order"
            and tokens[i + 1][0] == "word"
            and tokens[i + 1][1].lower() == "by"
        ):
            return tokens[:i], tokens[i + 2 :]
    return tokens, []


def _split_and(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    clauses: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for kind, value in tokens:
        depth += (value == "(") - (value == ")") if kind == "punct" else 0
        if kind == "word" and value.lower() == "and" and depth == 0:
            clauses.append([])
        else:
            clauses[-1].append((kind, value))
    if clauses == [[]]:
        return []
    for clause in clauses:
        if not clause:
            raise _jql_error("Error in the JQL Query: Expecting a field name but got 'AND'.")
    return clauses


def _clause_text(clause: list[tuple[str, str]]) -> str:
    return " ".join(f'"{v}"' if k == "string" else v for k, v in clause)


def _unsupported(clause: list[tuple[str, str]]) -> HTTPError:
    return _jql_error(
        f"Error in the JQL Query: unsupported clause '{_clause_text(clause)}' (the sandbox supports "
        "project =/in, created and updated comparisons joined by AND, and ORDER BY updated, created or key)."
    )


def _apply_clause(query: JqlQuery, clause: list[tuple[str, str]], project_keys: Callable[[str], str | None]) -> None:
    if len(clause) < 3 or clause[0][0] != "word":
        raise _unsupported(clause)
    name = clause[0][1].lower()
    if any(kind == "word" and value.lower() in ("or", "not") for kind, value in clause):
        raise _unsupported(clause)
    if name == "project":
        values = _project_values(clause)
        if values is None:
            raise _unsupported(clause)
        keys = set()
        for value in values:
            key = project_keys(value)
            if key is None:
                raise _jql_error(f"The value '{value}' does not exist for the field 'project'.")
            keys.add(key)
        query.projects = keys if query.projects is None else query.projects & keys
    elif name in ("created", "updated"):
        if (
            len(clause) != 3
            or clause[1][0] != "op"
            or clause[1][1] not in _COMPARISONS
            or clause[2][0] not in ("string", "word")
        ):
            raise _unsupported(clause)
        query.bounds[name].append(Bound(clause[1][1], _parse_date(name, clause[2][1])))
    else:
        raise _unsupported(clause)
    query.restricted = True


def _project_values(clause: list[tuple[str, str]]) -> list[str] | None:
    op_kind, op = clause[1]
    if op_kind == "op" and op == "=" and len(clause) == 3 and clause[2][0] in ("string", "word"):
        return [clause[2][1]]
    if op_kind == "word" and op.lower() == "in" and clause[2] == ("punct", "(") and clause[-1] == ("punct", ")"):
        inner = clause[3:-1]
        values = [v for k, v in inner[0::2] if k in ("string", "word")]
        commas = inner[1::2]
        if values and len(values) == len(inner[0::2]) and all(c == ("punct", ",") for c in commas):
            return values
    return None


def _parse_order(tokens: list[tuple[str, str]]) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for part in _split_commas(tokens):
        if not part or part[0][0] not in ("word", "string") or len(part) > 2:
            raise _jql_error(f"Error in the JQL Query: unsupported ORDER BY '{_clause_text(part)}'.")
        name = part[0][1].lower()
        if name not in _SORTABLE:
            raise _jql_error(f"Not able to sort using field '{part[0][1]}'.")
        direction = part[1][1].lower() if len(part) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise _jql_error(f"Error in the JQL Query: unsupported ORDER BY '{_clause_text(part)}'.")
        order.append((name, direction == "desc"))
    return order


def _split_commas(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    if not tokens:
        return []
    parts: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if token == ("punct", ","):
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


# --- tokens --------------------------------------------------------------------------------------


def _fingerprint(jql: str) -> str:
    return hashlib.sha256(jql.encode()).hexdigest()[:12]


def encode_page_token(offset: int, jql: str) -> str:
    """An opaque `nextPageToken` bound to the query it continues."""
    return base64.urlsafe_b64encode(f"{offset}|{_fingerprint(jql)}".encode()).decode().rstrip("=")


def decode_page_token(token: str, jql: str) -> int:
    """The offset a `nextPageToken` continues from; a 400 if it belongs to another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset_text, fingerprint = raw.split("|", 1)
        offset = int(offset_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _jql_error("The provided next page token is invalid or expired.") from exc
    if fingerprint != _fingerprint(jql) or offset < 0:
        raise _jql_error("The provided next page token is invalid or expired.")
    return offset


# --- the emulator --------------------------------------------------------------------------------


class JiraEmulator(SystemEmulator):
    """Jira Cloud (REST v3 + Agile 1.0) over the world's teams, issues, sprints and versions."""

    name = "jira"

    def __init__(self, world: World, *, embedded_changelog_limit: int = EMBEDDED_CHANGELOG_LIMIT) -> None:
        super().__init__(world)
        self.embedded_changelog_limit = embedded_changelog_limit
        self.teams = {t.key: t for t in world.teams}
        self.teams_by_id = {str(t.project_id): t for t in world.teams}
        self.boards = {t.board_id: t for t in world.teams}
        self.people = world.people_by_id
        self.issues_by_key = world.issues_by_key
        self.issues_by_id = {str(i.issue_id): i for i in world.issues}
        self.sprints = {s.sprint_id: s for s in world.sprints}
        self.versions = {v.version_id: v for v in world.versions}

    # -- the SystemEmulator hooks -------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/rest/api/3/search/jql", self.search),
            Route.of("GET", "/rest/api/3/issue/{issue}/changelog", self.changelog),
            Route.of("GET", "/rest/api/3/project/search", self.project_search),
            Route.of("GET", "/rest/api/3/project/{project}/versions", self.project_versions),
            Route.of("GET", "/rest/api/3/field", self.fields),
            Route.of("GET", "/rest/api/3/status", self.statuses),
            Route.of("GET", "/rest/api/3/issuetype", self.issue_types),
            Route.of("GET", "/rest/agile/1.0/board", self.board_list),
            Route.of("GET", "/rest/agile/1.0/board/{board}/sprint", self.board_sprints),
        ]

    def authorized(self, request: Request) -> bool:
        """Basic `email:api_token` (Cloud) or a Bearer token (Data Center PAT / OAuth)."""
        scheme, _, credential = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return bool(credential.strip())
        if scheme.lower() != "basic":
            return False
        try:
            user, _, secret = base64.b64decode(credential, validate=True).decode().partition(":")
        except ValueError:
            return False
        return bool(user and secret)

    def unauthorized(self, request: Request) -> Response:
        body = {
            "errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
            "errors": {},
        }
        return json_response(body, 401, {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"})

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        # X-RateLimit-Reset is an ISO timestamp with minute precision, not epoch (source-apis.md §2).
        reset = (datetime.now(UTC) + timedelta(seconds=wait_seconds + 59)).strftime("%Y-%m-%dT%H:%MZ")
        headers = {
            "Retry-After": str(wait_seconds),
            "X-RateLimit-Limit": "350",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
            "X-RateLimit-NearLimit": "true",
            "RateLimit-Reason": "jira-burst-based",
        }
        return json_response({"errorMessages": ["Rate limit exceeded."], "errors": {}}, 429, headers)

    def error(self, request: Request, exc: HTTPError) -> Response:
        body = exc.body if exc.body is not None else {"errorMessages": [exc.message], "errors": {}}
        return json_response(body, exc.status)

    def env(self) -> dict[str, str]:
        earliest = min((i.created_at for i in self.world.issues), default=self.world.config.start_at)
        return {
            "SOURCES__JIRA__EMAIL": SANDBOX_EMAIL,
            "SOURCES__JIRA__API_TOKEN": SANDBOX_API_TOKEN,
            "SOURCES__JIRA__PROJECTS": ",".join(t.key for t in self.world.teams),
            # The first run must reach the legacy epics, created up to ~300 days before the history starts.
            "SOURCES__JIRA__START_DATE": earliest.date().isoformat(),
        }

    # -- lookups ------------------------------------------------------------------------------

    def _project_key(self, key_or_id: str) -> str | None:
        team = self.teams.get(key_or_id.upper()) or self.teams_by_id.get(key_or_id)
        return team.key if team else None

    def _team(self, key_or_id: str) -> Team:
        key = self._project_key(key_or_id)
        if key is None:
            raise HTTPError(404, f"No project could be found with key '{key_or_id}'.")
        return self.teams[key]

    def _issue(self, view: WorldView, key_or_id: str) -> Issue:
        issue = self.issues_by_key.get(key_or_id.upper()) or self.issues_by_id.get(key_or_id)
        if issue is None or issue.created_at > view.as_of:
            raise HTTPError(404, "Issue does not exist or you do not have permission to see it.")
        return issue

    # -- search ---------------------------------------------------------------------------------

    def search(self, request: Request) -> Response:
        """`GET /rest/api/3/search/jql`: bounded JQL, token paging, `fields` selection, `expand=changelog`."""
        jql = request.arg("jql") or ""
        query = parse_jql(jql, self._project_key)
        if not query.restricted:
            raise _jql_error(UNBOUNDED_JQL)
        expand = _csv(request.query.get("expand", []))
        with_changelog = "changelog" in expand
        cap = CHANGELOG_PAGE_CAP if with_changelog else SEARCH_PAGE_CAP
        limit = max(1, request.int_arg("maxResults", SEARCH_PAGE_DEFAULT, minimum=0, maximum=cap))
        token = request.arg("nextPageToken")
        offset = decode_page_token(token, jql) if token else 0
        matches = self._matching(request.view, query)
        page = page_slice(matches, offset, limit, request)
        wanted = _wanted_fields(request.query.get("fields", []))
        mutated = _pick(page, token) if "mutate" in request.faults else None
        issues = []
        for issue in page:
            rendered = self.render_issue(request, issue, wanted, with_changelog)
            if issue is mutated and "updated" in rendered["fields"]:
                rendered["fields"]["updated"] = jira_time(request.view.as_of)
            issues.append(rendered)
        body: dict[str, Any] = {"issues": issues}
        if offset + limit < len(matches):
            body["nextPageToken"] = encode_page_token(offset + limit, jql)
        body["isLast"] = offset + limit >= len(matches)
        return json_response(body)

    def _matching(self, view: WorldView, query: JqlQuery) -> list[Issue]:
        t = view.as_of
        found = [
            i
            for i in view.issues()
            if (query.projects is None or i.project_key in query.projects)
            and all(b.accepts(i.created_at) for b in query.bounds["created"])
            and all(b.accepts(i.updated_at(t)) for b in query.bounds["updated"])
        ]
        found.sort(key=lambda i: i.issue_id)  # ties (and no ORDER BY) in a stable order, so pages never overlap
        for name, descending in reversed(query.order):
            found.sort(key=_sort_key(name, t), reverse=descending)
        return found

    # -- issue rendering ------------------------------------------------------------------------

    def render_issue(
        self, request: Request, issue: Issue, wanted: Callable[[str], bool], changelog: bool
    ) -> dict[str, Any]:
        """One issue as search/jql returns it (recording issues.jsonl)."""
        t = request.view.as_of
        base = request.base_url
        body: dict[str, Any] = {
            "expand": _ISSUE_EXPAND,
            "id": str(issue.issue_id),
            "self": f"{base}/rest/api/3/issue/{issue.issue_id}",
            "key": issue.key,
            "fields": {name: value for name, value in self._fields(base, issue, t).items() if wanted(name)},
        }
        if changelog:
            histories = self._histories(base, issue, t)
            embedded = list(reversed(histories))[: self.embedded_changelog_limit]  # newest first, as Jira
            body["changelog"] = {
                "startAt": 0,
                "maxResults": len(embedded),
                "total": len(histories),
                "histories": embedded,
            }
        return body

    def _fields(self, base: str, issue: Issue, t: datetime) -> dict[str, Any]:
        team = self.teams[issue.project_key]
        resolved = resolved_at(issue, t)
        reporter = self.people[issue.reporter_id]
        assignee = self.people.get(issue.assignee_id or "")
        sprint_ids = visible_sprint_ids(issue, self.sprints, t)
        empty_progress = {"progress": 0, "total": 0}
        return {
            "summary": issue.summary,
            "issuetype": _issue_type(base, issue.issue_type),
            "status": _status(base, issue.status_at(t)),
            "project": _project_ref(base, team),
            "created": jira_time(issue.created_at),
            "updated": jira_time(issue.updated_at(t)),
            "resolutiondate": jira_time(resolved) if resolved else None,
            "resolution": {"self": f"{base}/rest/api/3/resolution/10000", **RESOLUTION_DONE} if resolved else None,
            "statuscategorychangedate": jira_time(status_category_changed_at(issue, t)),
            "assignee": _user(base, assignee) if assignee else None,
            "reporter": _user(base, reporter),
            "creator": _user(base, reporter),
            "priority": _priority(base, issue.priority),
            "labels": list(issue.labels),
            "parent": self._parent(base, issue, t),
            "fixVersions": [self._version_ref(base, v, t) for v in visible_fix_version_ids(issue, t)],
            "versions": [self._version_ref(base, v, t) for v in issue.affected_version_ids],
            "components": [],
            "description": _description(issue),
            "environment": None,
            "duedate": None,
            "security": None,
            "lastViewed": None,
            "watches": {"self": f"{base}/rest/api/3/issue/{issue.key}/watchers", "watchCount": 1, "isWatching": False},
            "votes": {"self": f"{base}/rest/api/3/issue/{issue.key}/votes", "votes": 0, "hasVoted": False},
            # The world models no comments, worklogs, attachments, links, sub-tasks or time tracking:
            # Jira renders those as empty containers.
            "comment": {
                "comments": [],
                "self": f"{base}/rest/api/3/issue/{issue.issue_id}/comment",
                "maxResults": 0,
                "total": 0,
                "startAt": 0,
            },
            "worklog": {"startAt": 0, "maxResults": 20, "total": 0, "worklogs": []},
            "attachment": [],
            "issuelinks": [],
            "subtasks": [],
            "timetracking": {},
            "timeestimate": None,
            "timeoriginalestimate": None,
            "timespent": None,
            "aggregatetimeestimate": None,
            "aggregatetimeoriginalestimate": None,
            "aggregatetimespent": None,
            "progress": dict(empty_progress),
            "aggregateprogress": dict(empty_progress),
            "workratio": -1,
            "issuerestriction": {"issuerestrictions": {}, "shouldDisplay": False},
            SPRINT_FIELD: [self._sprint_ref(self.sprints[s], t) for s in sprint_ids] or None,
            STORY_POINTS_FIELD: issue.story_points,
            RANK_FIELD: f"0|i{issue.issue_id:05d}:",
        }

    def _parent(self, base: str, issue: Issue, t: datetime) -> dict[str, Any] | None:
        epic = self.issues_by_key.get(issue.epic_key or "")
        if epic is None:
            return None
        return {
            "id": str(epic.issue_id),
            "key": epic.key,
            "self": f"{base}/rest/api/3/issue/{epic.issue_id}",
            "fields": {
                "summary": epic.summary,
                "status": _status(base, epic.status_at(t)),
                "priority": _priority(base, epic.priority),
                "issuetype": _issue_type(base, epic.issue_type),
            },
        }

    def _version_ref(self, base: str, version_id: int, t: datetime) -> dict[str, Any]:
        v = self.versions[version_id]
        return {
            "self": f"{base}/rest/api/3/version/{v.version_id}",
            "id": str(v.version_id),
            "description": v.description,
            "name": v.name,
            "archived": False,
            "released": v.released_at(t),
            "releaseDate": v.release_date.isoformat(),
        }

    @staticmethod
    def _sprint_ref(sprint: Sprint, t: datetime) -> dict[str, Any]:
        """A sprint as the Sprint custom field holds it (recording issues.jsonl: `boardId`, not `originBoardId`)."""
        state = sprint.state_at(t)
        ref: dict[str, Any] = {"id": sprint.sprint_id, "name": sprint.name, "state": state, "boardId": sprint.board_id}
        ref["goal"] = sprint.goal
        if state != "future":
            ref["startDate"] = sprint_time(sprint.start_at)
            ref["endDate"] = sprint_time(sprint.end_at)
        if state == "closed":
            ref["completeDate"] = sprint_time(sprint.end_at)
        return ref

    def _histories(self, base: str, issue: Issue, t: datetime) -> list[dict[str, Any]]:
        """Every status change made by `t`, oldest first (recording issue_changelogs.jsonl)."""
        out = []
        for tr in issue.transitions:
            if tr.at > t:
                continue
            old, new = STATUSES[tr.from_status], STATUSES[tr.to_status]
            items: list[dict[str, Any]] = [
                {
                    "field": "status",
                    "fieldtype": "jira",
                    "fieldId": "status",
                    "from": old[0],
                    "fromString": tr.from_status,
                    "to": new[0],
                    "toString": tr.to_status,
                }
            ]
            if tr.to_status == "Done" and resolved_at(issue, t) == tr.at:
                items.append(
                    {
                        "field": "resolution",
                        "fieldtype": "jira",
                        "fieldId": "resolution",
                        "from": None,
                        "fromString": None,
                        "to": RESOLUTION_DONE["id"],
                        "toString": RESOLUTION_DONE["name"],
                    }
                )
            author = self.people[tr.author_id]
            out.append(
                {
                    "id": str(tr.history_id),
                    "author": _user(base, author, hidden_email=""),
                    "created": jira_time(tr.at),
                    "items": items,
                }
            )
        return out

    # -- changelog --------------------------------------------------------------------------------

    def changelog(self, request: Request, issue: str) -> Response:
        """`GET /rest/api/3/issue/{issueIdOrKey}/changelog`: every history so far, oldest first, offset pages."""
        found = self._issue(request.view, issue)
        histories = self._histories(request.base_url, found, request.view.as_of)
        start = request.int_arg("startAt", 0)
        limit = max(1, request.int_arg("maxResults", CHANGELOG_ENDPOINT_CAP, maximum=CHANGELOG_ENDPOINT_CAP))
        path = f"/rest/api/3/issue/{issue}/changelog"
        last = start + limit >= len(histories)
        body: dict[str, Any] = {"self": request.url(path, {"startAt": start, "maxResults": limit})}
        if not last:
            body["nextPage"] = request.url(path, {"startAt": start + limit, "maxResults": limit})
        body |= {
            "maxResults": limit,
            "startAt": start,
            "total": len(histories),
            "isLast": last,
            "values": page_slice(histories, start, limit, request),
        }
        return json_response(body)

    # -- projects, versions, site metadata ----------------------------------------------------------

    def project_search(self, request: Request) -> Response:
        """`GET /rest/api/3/project/search`: one project per team, filtered by `keys` and `query`."""
        keys = {k.upper() for k in _csv(request.query.get("keys", []))}
        text = (request.arg("query") or "").lower()
        teams = [
            t
            for t in self.world.teams
            if (not keys or t.key in keys) and (not text or text in t.key.lower() or text in t.name.lower())
        ]
        start = request.int_arg("startAt", 0)
        limit = max(1, request.int_arg("maxResults", AGILE_PAGE_CAP, maximum=AGILE_PAGE_CAP))
        base = request.base_url
        values = [
            {
                "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
                **_project_ref(base, t),
                "style": "classic",
                "isPrivate": False,
                "properties": {},
            }
            for t in page_slice(teams, start, limit, request)
        ]
        path = "/rest/api/3/project/search"
        body: dict[str, Any] = {"self": request.url(path, {"startAt": start, "maxResults": limit})}
        last = start + limit >= len(teams)
        if not last:
            body["nextPage"] = request.url(path, {"startAt": start + limit, "maxResults": limit})
        body |= {"maxResults": limit, "startAt": start, "total": len(teams), "isLast": last, "values": values}
        return json_response(body)

    def project_versions(self, request: Request, project: str) -> Response:
        """`GET /rest/api/3/project/{key}/versions`: a bare array, released as of the request's moment."""
        team = self._team(project)
        t = request.view.as_of
        versions = sorted(
            (v for v in request.view.versions() if v.project_key == team.key), key=lambda v: v.release_date
        )
        return json_response([self._version(request.base_url, v, team, t) for v in versions])

    def _version(self, base: str, v: Version, team: Team, t: datetime) -> dict[str, Any]:
        released = v.released_at(t)
        body = self._version_ref(base, v.version_id, t)
        body["userReleaseDate"] = v.release_date.strftime("%d/%b/%y")
        if not released:
            body["overdue"] = utc(v.release_date) + timedelta(days=1) <= t
        body["projectId"] = team.project_id
        return body

    def fields(self, request: Request) -> Response:
        """`GET /rest/api/3/field`: the site's fields, including the Sprint and story-points custom fields."""
        return json_response(FIELDS)

    def statuses(self, request: Request) -> Response:
        """`GET /rest/api/3/status`: the workflow's four statuses."""
        base = request.base_url
        return json_response([_status(base, name) | {"untranslatedName": name} for name in STATUSES])

    def issue_types(self, request: Request) -> Response:
        """`GET /rest/api/3/issuetype`."""
        base = request.base_url
        return json_response([_issue_type(base, name) for name in ISSUE_TYPES])

    # -- agile ----------------------------------------------------------------------------------

    def board_list(self, request: Request) -> Response:
        """`GET /rest/agile/1.0/board`: one scrum board per team, filtered by `projectKeyOrId` and `type`."""
        project = request.arg("projectKeyOrId")
        board_type = request.arg("type")
        teams = list(self.world.teams)
        if project:
            key = self._project_key(project)
            if key is None:
                raise HTTPError(400, f"No project could be found with key or id '{project}'.")
            teams = [t for t in teams if t.key == key]
        if board_type and "scrum" not in _csv([board_type]):
            teams = []  # every sandbox board is a scrum board
        start = request.int_arg("startAt", 0)
        limit = max(1, request.int_arg("maxResults", AGILE_PAGE_CAP, maximum=AGILE_PAGE_CAP))
        base = request.base_url
        values = [
            {
                "id": t.board_id,
                "self": f"{base}/rest/agile/1.0/board/{t.board_id}",
                "name": f"{t.key} board",
                "type": "scrum",
                "location": {
                    "projectId": t.project_id,
                    "displayName": f"{t.name} ({t.key})",
                    "projectName": t.name,
                    "projectKey": t.key,
                    "projectTypeKey": "software",
                    "avatarURI": f"/rest/api/3/universal_avatar/view/type/project/avatar/{t.project_id}?size=small",
                    "name": f"{t.name} ({t.key})",
                },
            }
            for t in page_slice(teams, start, limit, request)
        ]
        last = start + limit >= len(teams)
        return json_response(
            {"maxResults": limit, "startAt": start, "total": len(teams), "isLast": last, "values": values}
        )

    def board_sprints(self, request: Request, board: str) -> Response:
        """`GET /rest/agile/1.0/board/{boardId}/sprint`: planned, active and closed sprints; no `total`."""
        team = self.boards.get(int(board)) if board.isdigit() else None
        if team is None:
            raise HTTPError(404, "Board does not exist or you do not have permission to see it.")
        t = request.view.as_of
        states = set(_csv(request.query.get("state", [])))
        sprints = sorted(
            (
                s
                for s in request.view.sprints()
                if s.board_id == team.board_id and (not states or s.state_at(t) in states)
            ),
            key=lambda s: s.start_at,
        )
        start = request.int_arg("startAt", 0)
        limit = max(1, request.int_arg("maxResults", AGILE_PAGE_CAP, maximum=AGILE_PAGE_CAP))
        values = [self._sprint(request.base_url, s, t) for s in page_slice(sprints, start, limit, request)]
        last = start + limit >= len(sprints)
        return json_response({"maxResults": limit, "startAt": start, "isLast": last, "values": values})

    def _sprint(self, base: str, sprint: Sprint, t: datetime) -> dict[str, Any]:
        """A sprint as the board's sprint list shows it (recording sprints.jsonl; no dates until it starts)."""
        ref = self._sprint_ref(sprint, t)
        body: dict[str, Any] = {"id": sprint.sprint_id, "self": f"{base}/rest/agile/1.0/sprint/{sprint.sprint_id}"}
        body["state"] = ref["state"]
        body["name"] = sprint.name
        for key in ("startDate", "endDate", "completeDate"):
            if key in ref:
                body[key] = ref[key]
        body["originBoardId"] = sprint.board_id
        body["goal"] = sprint.goal
        return body


# --- renderers ------------------------------------------------------------------------------------


def _csv(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated query values, flattened (`fields=a,b&fields=c`)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _wanted_fields(values: list[str]) -> Callable[[str], bool]:
    names = _csv(values) or ["id"]  # the enhanced search returns only ids unless asked
    everything = any(n in ("*all", "*navigable") for n in names)
    excluded = {n[1:] for n in names if n.startswith("-")}
    included = {n for n in names if not n.startswith(("-", "*"))}
    return lambda name: name not in excluded and (everything or name in included)


def _pick(page: list[Issue], token: str | None) -> Issue | None:
    """The issue a `mutate` fault touches: deterministic per page."""
    if not page:
        return None
    return page[zlib.crc32((token or "first").encode()) % len(page)]


def _sort_key(name: str, t: datetime) -> Callable[[Issue], Any]:
    if name == "updated":
        return lambda i: i.updated_at(t)
    if name == "created":
        return lambda i: i.created_at
    return lambda i: (i.project_key, int(i.key.rsplit("-", 1)[1]))


def _avatars(seed: str) -> dict[str, str]:
    return {size: f"{_AVATAR_HOST}/{seed}/{size.split('x')[0]}" for size in _AVATAR_SIZES}


def _user(base: str, person: Person, *, hidden_email: str | None = None) -> dict[str, Any]:
    """A user object. A hidden e-mail is omitted in issue fields and `""` in changelog authors, as recorded."""
    body: dict[str, Any] = {
        "self": f"{base}/rest/api/3/user?accountId={person.jira_account_id}",
        "accountId": person.jira_account_id,
    }
    if shares_email(person):
        body["emailAddress"] = person.email
    elif hidden_email is not None:
        body["emailAddress"] = hidden_email
    body |= {
        "avatarUrls": _avatars(person.jira_account_id),
        "displayName": person.name,
        "active": True,
        "timeZone": "UTC",
        "accountType": "atlassian",
    }
    return body


def _status(base: str, name: str) -> dict[str, Any]:
    sid, category, description = STATUSES[name]
    cid, colour, cname = STATUS_CATEGORIES[category]
    return {
        "self": f"{base}/rest/api/3/status/{sid}",
        "description": description,
        "iconUrl": f"{base}/images/icons/statuses/generic.png",
        "name": name,
        "id": sid,
        "statusCategory": {
            "self": f"{base}/rest/api/3/statuscategory/{cid}",
            "id": cid,
            "key": category,
            "colorName": colour,
            "name": cname,
        },
    }


def _issue_type(base: str, name: str) -> dict[str, Any]:
    tid, level, avatar, description = ISSUE_TYPES[name]
    return {
        "self": f"{base}/rest/api/3/issuetype/{tid}",
        "id": tid,
        "description": description,
        "iconUrl": f"{base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{avatar}?size=medium",
        "name": name,
        "untranslatedName": name,
        "subtask": level < 0,
        "avatarId": avatar,
        "hierarchyLevel": level,
    }


def _priority(base: str, name: str) -> dict[str, str]:
    pid = PRIORITIES[name]
    return {
        "self": f"{base}/rest/api/3/priority/{pid}",
        "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
        "name": name,
        "id": pid,
    }


def _project_ref(base: str, team: Team) -> dict[str, Any]:
    return {
        "self": f"{base}/rest/api/3/project/{team.project_id}",
        "id": str(team.project_id),
        "key": team.key,
        "name": team.name,
        "projectTypeKey": "software",
        "simplified": False,
        "avatarUrls": {
            size: f"{base}/rest/api/3/universal_avatar/view/type/project/avatar/{team.project_id}?size={size}"
            for size in _AVATAR_SIZES
        },
    }


def _description(issue: Issue) -> dict[str, Any]:
    """Atlassian Document Format, as v3 renders rich text."""
    text = f"{issue.issue_type}: {issue.summary}."
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }
