"""Which real recording stands for which emulator endpoint, and how to compare the two.

Plain data, no tests. The recordings live in ``FIXTURES_ROOT`` (``../shared/fixtures/real`` from
the repository root; provenance in its ``PROVENANCE*.md``). The comparison itself is
``pipelines.sandbox.contract``; a per-endpoint contract test does, for each endpoint and fixture::

    recorded = load_fixture(FIXTURES_ROOT / fixture.file)
    body = <the emulator's response to endpoint.method endpoint.path (+ fixture.query)>
    rec, emu = align(fixture.shape, recorded, body, endpoint.items_path)
    assert compare(rec, emu, **endpoint.options(fixture)) == []
    # and, where fixture.headers is set (names lower-cased on both sides):
    wanted = HEADERS_COMPARED[endpoint.system]
    rec_h = {k: v for k, v in load_fixture(FIXTURES_ROOT / fixture.headers).items() if k in wanted}
    assert compare(rec_h, normalize_headers(response_headers)) == []

``Fixture.shape``: ``"response"`` = the file is a whole response body; ``"items"`` = the file is a
list of items of the endpoint's list (every ``*.jsonl`` here: one list item per line, often
collected from many requests, see the ``.meta.json`` sidecars), compared with the emulated
items at ``items_path`` (concatenate the items of several emulated requests if the recording
spans several); ``"item"`` = the file is one item of the list (e.g. a single-object GET with the
same schema). ``items_path`` is ``""`` for a bare-array body and ``None`` for object endpoints.
A union over items is compared, so an emulated page (or set of pages) must show each recorded
field at least once: the sandbox world needs the same variety (a merged and an open PR, a failed
stage, an assigned issue, a paused pipeline run, ...).

Glob conventions (``*`` is the only wildcard and also matches ``.`` and ``[]``): patterns that
start with ``*[]`` are relative to one list item and match both the ``"items"`` form (``[].x``)
and the ``"response"`` form (``workflow_runs[].x``).

Wrappers: ``*.headers.json`` files wrap the recorded headers (``{"_note", "request", "status",
"headers"}``): ``load_fixture`` returns the lower-cased ``headers`` dict; compare only the names
in ``HEADERS_COMPARED``. ``*.recorded.json`` wraps a sequence of interactions: unwrap with
``contract.recorded_interactions``. The DevLake ``*.jsonl`` files are already unwrapped (the
raw-table ``data`` column, one API object per line); VCR/replay bodies are plain JSON files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FIXTURES_ROOT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"

Shape = Literal["response", "items", "item"]


@dataclass(frozen=True)
class Fixture:
    """One recording of an endpoint's response."""

    file: str  # relative to FIXTURES_ROOT
    shape: Shape
    query: str = ""  # query (or POST body) to send for a comparable response: the recorded one where known
    headers: str | None = None  # sibling *.headers.json with the recorded response headers
    status: int = 200
    ignore: tuple[str, ...] = ()  # extra compare(ignore=...) for this recording only
    any_kind: tuple[str, ...] = ()  # extra compare(any_kind=...) for this recording only
    note: str = ""


@dataclass(frozen=True)
class Endpoint:
    """An emulator route with at least one real recording."""

    route: str  # "METHOD /path/template", the path spelled as the real API does
    items_path: str | None  # response -> compared item list; "" = bare array, None = object body
    fixtures: tuple[Fixture, ...]
    ignore: tuple[str, ...] = ()
    maps: tuple[str, ...] = ()
    mixed_numbers: tuple[str, ...] = ()
    any_kind: tuple[str, ...] = ()
    core: bool = True  # False: recorded, but not needed by opsmap's sources (an emulator may skip it)
    note: str = ""

    @property
    def system(self) -> str:
        """``github``, ``jira``, ``jenkins``, ``datadog`` or ``mixpanel`` (the fixtures' folder)."""
        return self.fixtures[0].file.split("/", 1)[0]

    @property
    def method(self) -> str:
        return self.route.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.route.split(" ", 1)[1]

    def options(self, fixture: Fixture) -> dict[str, Any]:
        """Keyword arguments of ``contract.compare`` for one of this endpoint's fixtures."""
        return {
            "ignore": self.ignore + fixture.ignore,
            "maps": self.maps,
            "mixed_numbers": self.mixed_numbers,
            "any_kind": self.any_kind + fixture.any_kind,
        }


# Response headers worth comparing (lower-case); the rest (CSP, HSTS, X-OAuth-Scopes and
# github-authentication-token-expiration, which depend on the token type, ...) are not contract.
HEADERS_COMPARED: dict[str, tuple[str, ...]] = {
    "github": (
        "content-type",
        "etag",
        "link",
        "retry-after",
        "x-github-api-version-selected",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-resource",
        "x-ratelimit-used",
    ),
    "datadog": (
        "content-type",
        "x-ratelimit-limit",
        "x-ratelimit-name",
        "x-ratelimit-period",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ),
}

_GH_JOB_STEP_TIMES = ("*[].steps[].started_at", "*[].steps[].completed_at")
_JIRA_CUSTOM = "*[].fields.customfield_*"

GITHUB: tuple[Endpoint, ...] = (
    Endpoint(
        "GET /repos/{owner}/{repo}/pulls",
        "",
        (
            Fixture(
                "github/pull_requests.jsonl",
                "items",
                "state=all&direction=asc&per_page=100",
                note="DevLake 2022 (panjf2000/ants), 49 PRs: the modern field set; canonical",
            ),
            Fixture(
                "github/pulls_list_state_closed_2012.json",
                "response",
                "state=closed",
                headers="github/pulls_list_state_closed_2012.headers.json",
                note="2012 API: a strict subset of today's fields (no node_id, labels, draft, ...); "
                "same types, so it passes whenever the JSONL does",
            ),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        "",
        (
            Fixture("github/pull_request_reviews.jsonl", "items", "per_page=100", note="3 PRs"),
            Fixture(
                "github/pull_review_get.json",
                "item",
                note="GET .../reviews/{review_id}, same schema; older recording without node_id",
            ),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/pulls/{pull_number}/commits",
        "",
        (Fixture("github/pull_request_commits.jsonl", "items", "per_page=100", note="43 PRs"),),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/commits",
        "",
        (
            Fixture(
                "github/commits_list_since_until_page1.json",
                "response",
                "since=2013-03-01T00:00:00Z&until=2013-03-31T00:00:00Z",
                headers="github/commits_list_since_until_page1.headers.json",
                note="2013 field set (no node_id, commit.verification); Link rel=next uses "
                "/repositories/{id}/commits?...&top=master&last_sha=... cursors",
            ),
            Fixture(
                "github/commits_list_since_until_page2.json",
                "response",
                "since=2013-03-01T00:00:00Z&until=2013-03-31T00:00:00Z&top=master&last_sha=ee29dedd...",
                headers="github/commits_list_since_until_page2.headers.json",
                note="last page (Link has rel=first only)",
            ),
            Fixture(
                "github/pull_request_commits.jsonl",
                "items",
                note="not a recording of this route but the same `commit` schema (OpenAPI "
                "components/schemas/commit) with today's fields; the only modern evidence",
            ),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/issues",
        "",
        (
            Fixture(
                "github/issues.jsonl",
                "items",
                "state=all&direction=asc&per_page=100",
                note="DevLake 2022; includes PRs-as-issues (with a pull_request object) and a milestone",
            ),
            *(
                Fixture(
                    f"github/issues_list_per_page3_page{page}.json",
                    "response",
                    f"per_page=3&page={page[0]}",
                    headers=f"github/issues_list_per_page3_page{page}.headers.json",
                    note="octokit 2022; page 2+ requested as /repositories/{id}/issues; last page "
                    "Link has prev/first only",
                )
                for page in ("1", "2", "3", "4", "5_last")
            ),
        ),
        core=False,  # opsmap tracks issues in Jira; GitHub issues are not extracted
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/deployments",
        "",
        (
            Fixture(
                "github/deployments_list.json",
                "response",
                headers="github/deployments_list.headers.json",
            ),
        ),
        # payload is free-form JSON chosen by whoever created the deployment ({"test": true} here).
        ignore=("*[].payload.*",),
        # the recorded ref happens to be a commit SHA; real refs are also branch or tag names.
        any_kind=("*[].ref",),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        "",
        (
            Fixture(
                "github/deployment_statuses_list.json",
                "response",
                headers="github/deployment_statuses_list.headers.json",
            ),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/actions/runs",
        "workflow_runs",
        (
            Fixture(
                "github/actions_runs_list_page1.json",
                "response",
                "exclude_pull_requests=1",
                headers="github/actions_runs_list_page1.headers.json",
                note="2023, 30 of 593 runs, Link to page 20; canonical",
            ),
            Fixture(
                "github/actions_runs_list_by_head_sha.json",
                "response",
                "head_sha=7aab33f4294ba5141f17bed0aeb1a929f7afc155",
                headers="github/actions_runs_list_by_head_sha.headers.json",
            ),
            Fixture(
                "github/actions_runs_list_created_filter.json",
                "response",
                "created=2022-12-24",
                headers="github/actions_runs_list_created_filter.headers.json",
            ),
            Fixture(
                "github/workflow_runs.jsonl",
                "items",
                "per_page=100",
                note="DevLake 2021-22: same fields minus display_title/triggering_actor",
            ),
            Fixture("github/actions_run_get.json", "item", note="GET .../actions/runs/{run_id}"),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        "jobs",
        (
            Fixture(
                "github/actions_job_get.json",
                "item",
                note="GET .../actions/jobs/{job_id}, recorded 2025-11: canonical step time format "
                "(steps[].started_at = ...:05Z, no fraction)",
            ),
            Fixture(
                "github/actions_run_jobs_list.json",
                "response",
                headers="github/actions_run_jobs_list.headers.json",
                any_kind=_GH_JOB_STEP_TIMES,
                note="2023: steps[] times were ...:05.000Z then",
            ),
            Fixture(
                "github/workflow_jobs.jsonl",
                "items",
                "per_page=100",
                any_kind=_GH_JOB_STEP_TIMES,
                note="DevLake 2021: steps[] times were runner-local ...:05.000+08:00 then; "
                "lacks created_at, labels, workflow_name, head_branch (added later)",
            ),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/releases",
        "",
        (
            Fixture(
                "github/release_latest.json",
                "item",
                note="no list recording; /releases items share the release schema",
            ),
        ),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/releases/latest",
        None,
        (Fixture("github/release_latest.json", "response"),),
    ),
    Endpoint(
        "GET /rate_limit",
        None,
        (Fixture("github/rate_limit_get.json", "response", headers="github/rate_limit_get.headers.json"),),
        # resource names depend on the token and plan (scim, audit_log, actions_runner_registration...).
        maps=("resources",),
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
        "check_runs",
        (
            Fixture("github/check_runs_for_ref.json", "response", headers="github/check_runs_for_ref.headers.json"),
            Fixture(
                "github/check_runs_for_ref_per_page1.json",
                "response",
                "per_page=1",
                headers="github/check_runs_for_ref_per_page1.headers.json",
            ),
        ),
        # `app` is the GitHub App that created the run: its permission set is that app's own.
        maps=("*[].app.permissions",),
        core=False,
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/actions/runs/{run_id}/timing",
        None,
        (Fixture("github/actions_run_timing.json", "response"),),
        maps=("billable",),  # keyed by runner OS (UBUNTU, MACOS, WINDOWS)
        core=False,
    ),
    Endpoint(
        "GET /repos/{owner}/{repo}/pulls/comments",
        "",
        (Fixture("github/pull_request_review_comments.jsonl", "items", "per_page=100"),),
        core=False,
    ),
    Endpoint(
        "GET /search/issues",
        "items",
        (Fixture("github/search_issues.json", "response", "q=...", headers="github/search_issues.headers.json"),),
        core=False,
        note="X-RateLimit-Resource: search (30/min)",
    ),
)

JIRA: tuple[Endpoint, ...] = (
    Endpoint(
        "GET /rest/api/3/search/jql",
        "issues",
        (
            Fixture(
                "jira/issues.jsonl",
                "items",
                "jql=...&fields=*all&expand=changelog&maxResults=100",
                note="NOT a recording of search/jql (none exists): items of the Agile board issue "
                "endpoint (below), the same issue objects; envelope {issues, nextPageToken, isLast} "
                "is unrecorded",
            ),
        ),
        ignore=(
            _JIRA_CUSTOM,  # site-specific ids (sprint is customfield_10020 here; see the Agile entry)
            # Agile API additions, absent from platform search results:
            "*[].fields.sprint",
            "*[].fields.closedSprints",
            "*[].fields.flagged",
            "*[].fields.epic",
        ),
        # v3 renders rich text as Atlassian Document Format objects; the recording (agile 1.0) has
        # strings. Presence is still checked.
        any_kind=(
            "*[].fields.comment.comments[].body",
            "*[].fields.worklog.worklogs[].comment",
            "*[].fields.description",
            "*[].fields.environment",
        ),
    ),
    Endpoint(
        "GET /rest/agile/1.0/board/{boardId}/issue",
        "issues",
        (
            Fixture(
                "jira/issues.jsonl",
                "items",
                "expand=changelog&jql=updated >= '2006/01/02 15:04' ORDER BY created ASC&maxResults=100",
                note="DevLake, merico.atlassian.net board 8; changelog embedded as "
                "{startAt,maxResults,total,histories[]}; times ...13.360+0800",
            ),
        ),
        # custom field ids are per site; here 10020 = Sprint (list of sprint objects, dates ...000Z),
        # 10014 = Epic Link, 10015/10060 = Start/End date ("2021-03-01"), 10019 = Rank (from the
        # changelog items). Emulate your own ids and check them in your own tests.
        ignore=(_JIRA_CUSTOM,),
        core=False,
    ),
    Endpoint(
        "GET /rest/agile/1.0/sprint/{sprintId}/issue",
        "issues",
        (
            Fixture(
                "jira/agile_sprint_issues_page.json",
                "response",
                # pre-GDPR (Server-era) user fields that Jira Cloud no longer sends.
                ignore=tuple(f"*[].fields.assignee.{key}" for key in ("key", "name", "emailAddress")),
                note="go-jira mock (trimmed, older): offset envelope expand/startAt/maxResults/total; "
                "an issue with an epic object",
            ),
        ),
        ignore=(_JIRA_CUSTOM,),
        core=False,
    ),
    Endpoint(
        "GET /rest/api/3/issue/{issueIdOrKey}/changelog",
        "values",
        (
            Fixture(
                "jira/issue_changelogs.jsonl",
                "items",
                "maxResults=100&startAt=0",
                note="276 histories of 3 issues; envelope {self,nextPage,maxResults,startAt,total,"
                "isLast,values} unrecorded",
            ),
        ),
    ),
    Endpoint(
        "GET /rest/agile/1.0/board",
        "values",
        (
            Fixture(
                "jira/agile_boards_page.json",
                "response",
                note="go-jira mock data (anonymised real response)",
            ),
        ),
    ),
    Endpoint(
        "GET /rest/agile/1.0/board/{boardId}/sprint",
        "values",
        (
            Fixture(
                "jira/sprints.jsonl",
                "items",
                "maxResults=50&startAt=0",
                note="DevLake, Jira Cloud: dates ...00.000Z; canonical",
            ),
            Fixture(
                "jira/agile_board_sprints_page.json",
                "response",
                # go-jira's hand-edited sprints carry -07:00 offsets (server-era); Cloud sends Z.
                any_kind=("*[].startDate", "*[].endDate", "*[].completeDate"),
                note="envelope startAt/maxResults/isLast (no total on this endpoint)",
            ),
        ),
    ),
    Endpoint(
        "GET /rest/api/3/status",
        "",
        (
            Fixture(
                "jira/statuses.jsonl",
                "items",
                note="recorded on /rest/api/2/status (same shape); scope{} only on team-managed statuses",
            ),
        ),
    ),
    Endpoint(
        "GET /rest/api/3/issuetype",
        "",
        (Fixture("jira/issue_types.jsonl", "items"),),
    ),
    Endpoint(
        "GET /rest/api/2/issue/{issueIdOrKey}/worklog",
        "worklogs",
        (Fixture("jira/issue_worklog_items.jsonl", "items", note="14 issues; comment is a string in v2"),),
        core=False,
    ),
)

# Stage-view plugin test data from 2014, when Jenkins build ids were dates (2014-10-26_10-12-29).
_WFAPI_2014 = "stage-view plugin test data (2014): date build ids, no queueDurationMillis"

JENKINS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET /api/json",
        "jobs",
        (
            Fixture(
                "jenkins/root_jobs_list.json",
                "response",
                "tree=jobs[name,url,color]",
                note="cdancy/jenkins-rest mock from a real Jenkins (request unrecorded); color only on buildable jobs",
            ),
        ),
    ),
    Endpoint(
        "GET /job/{folder}/api/json",
        "jobs",
        (
            Fixture(
                "jenkins/multibranch_jobs_tree_items.jsonl",
                "items",
                "tree=jobs[fullName,name,class,url,color,description]",
                note="branch jobs of a multibranch project (WorkflowJob); `_class` is always sent",
            ),
            Fixture(
                "jenkins/folder_jobs_list.json",
                "response",
                "tree=jobs[name,url,color]",
                note="cdancy mock (request unrecorded): a FreeStyleProject without color",
            ),
        ),
    ),
    Endpoint(
        "GET /job/{name}/api/json",
        "allBuilds",
        (
            Fixture(
                "jenkins/job_allbuilds_tree_items.jsonl",
                "items",
                "tree=allBuilds[number,timestamp,duration,estimatedDuration,fullDisplayName,result,"
                "actions[lastBuiltRevision[SHA1,branch[name]],remoteUrls,mercurialRevisionNumber,"
                "causes[*]],changeSet[kind,revisions[revision]]]{0,100}",
                note="7 FreeStyleBuild + 2 WorkflowRun; changeSet exists only on freestyle builds; "
                "actions[] holds {} for every action without a requested field",
            ),
            Fixture(
                "jenkins/multibranch_job_allbuilds_tree_items.jsonl",
                "items",
                "tree=allBuilds[timestamp,number,duration,building,estimatedDuration,fullDisplayName,"
                "result,actions[lastBuiltRevision[SHA1,branch[name]],remoteUrls,mercurialRevisionNumber,"
                "causes[*]],changeSet[kind,revisions[revision]]]",
                note="pipeline branch job (WorkflowRun): result FAILURE/ABORTED/SUCCESS; remoteUrls "
                "may be ssh (git@...)",
            ),
        ),
    ),
    Endpoint(
        "GET /job/{name}/{number}/api/json",
        None,
        (
            Fixture(
                "jenkins/build_get.json",
                "response",
                note="freestyle-style build (changeSet singular); compare with such a build",
            ),
            Fixture(
                "jenkins/build_get_with_git_changesets.json",
                "response",
                note="pipeline-style build (changeSets[] from the git plugin; date "
                "'2016-03-03 17:12:23 +0100'); compare with such a build",
            ),
        ),
        note="cdancy mocks: edited by maintainers, and from a Jenkins that did not send _class yet",
    ),
    Endpoint(
        "GET /job/{name}/{number}/wfapi/describe",
        "stages",
        (
            Fixture(
                "jenkins/wfapi_describe_stage_items.jsonl",
                "items",
                note="DevLake, 12 runs; failed stages carry error{type,message}",
            ),
            Fixture("jenkins/multibranch_wfapi_describe_stage_items.jsonl", "items", note="13 runs"),
            Fixture(
                "jenkins/wfapi_describe.json",
                "response",
                any_kind=("id",),
                note="cdancy mock: date build id, PAUSED_PENDING_INPUT run (_links.pendingInputActions)",
            ),
        ),
    ),
    Endpoint(
        "GET /job/{name}/wfapi/runs",
        "",
        (
            Fixture(
                "jenkins/wfapi_runs_ci_jenkins_io_core_master.json",
                "response",
                "fullStages=true",
                note="real ci.jenkins.io run: modern numeric-string id, queueDurationMillis, "
                "stages[].stageFlowNodes[] (only with fullStages=true); canonical",
            ),
            Fixture("jenkins/wfapi_runs.json", "response", any_kind=("[].id",), note="cdancy; a paused run"),
            Fixture("jenkins/wfapi_runs_failed.json", "response", any_kind=("[].id",), note=_WFAPI_2014),
            Fixture(
                "jenkins/wfapi_runs_in_progress.json",
                "response",
                any_kind=("[].id",),
                note=_WFAPI_2014 + "; an IN_PROGRESS run still has an epoch endTimeMillis (not 0)",
            ),
            Fixture(
                "jenkins/wfapi_runs_not_executed_stages.json",
                "response",
                any_kind=("[].id",),
                note=_WFAPI_2014 + "; NOT_EXECUTED stages have startTimeMillis 0",
            ),
            Fixture("jenkins/wfapi_runs_unstable.json", "response", any_kind=("[].id",), note=_WFAPI_2014),
        ),
    ),
    Endpoint(
        "GET /job/{name}/{number}/testReport/api/json",
        None,
        (
            Fixture(
                "jenkins/test_report_failed.json",
                "response",
                note="jenkinsapi copy of a real JUnit report (2 FAILED cases); durations are floats "
                "(0.0), suites[].timestamp/id null; no _class/empty (older Jenkins)",
            ),
        ),
        # childReports only belongs to aggregated (Maven) reports; its url is a placeholder ('url1').
        ignore=("childReports",),
    ),
    Endpoint(
        "GET /job/{name}/api/json",
        None,
        (Fixture("jenkins/job_get.json", "response", note="cdancy mock; builds[] are {number,url} refs"),),
        core=False,
    ),
    Endpoint(
        "GET /job/{name}/{number}/execution/node/{id}/wfapi/describe",
        None,
        (Fixture("jenkins/wfapi_node_describe.json", "response"),),
        core=False,
    ),
    Endpoint(
        "GET /queue/api/json",
        "items",
        (Fixture("jenkins/queue_get.json", "response"),),
        core=False,
    ),
    Endpoint(
        "GET /queue/item/{id}/api/json",
        None,
        tuple(
            Fixture(f"jenkins/queue_item_{state}.json", "response")
            for state in ("pending", "left_running", "cancelled")
        ),
        core=False,
    ),
)

# Metric values and SLO targets/monitor thresholds are doubles that Datadog's v1 (0.0) and v2 (Go: 1)
# encoders print differently, and thresholds echo what the client sent: int and float may swap.
_DD_NUMBERS = ("*threshold*", "data.series.*", "*values[]*")

DATADOG: tuple[Endpoint, ...] = (
    Endpoint(
        "GET /api/v2/incidents",
        "data",
        (
            Fixture("datadog/incidents_list.json", "response", note="6 incidents, newest field set (slug, is_test)"),
            Fixture("datadog/incidents_list_page0.json", "response", "page[size]=2"),
            Fixture(
                "datadog/incidents_list_page1.json",
                "response",
                "page[size]=2&page[offset]=2",
                note="short last page: meta.pagination has no next_offset",
            ),
        ),
        note="times are ...:05.123456+00:00; declared/detected drop the fraction when it is 0 "
        "(Python isoformat). Always write 6 digits to satisfy every fixture",
    ),
    Endpoint(
        "GET /api/v1/monitor",
        "",
        (
            Fixture("datadog/monitors_list_page0.json", "response", "page_size=2&page=0"),
            Fixture("datadog/monitors_list_page1.json", "response", "page_size=2&page=1", note="short last page"),
            Fixture(
                "datadog/monitors_list_400_error.json",
                "response",
                "group_states=notagroupstate",
                status=400,
                note='{"errors": [str]}',
            ),
        ),
        maps=("*[].options.silenced",),  # scope -> mute-until epoch or null
        mixed_numbers=_DD_NUMBERS,
        note="created_at is epoch ms next to created (ISO us offset); overall_state_modified is ISO "
        "here but epoch s in /monitor/search",
    ),
    Endpoint(
        "GET /api/v1/slo",
        "data",
        (
            Fixture("datadog/slo_list_page0.json", "response", "limit=2", note="metric SLOs (query{})"),
            Fixture(
                "datadog/slo_list_page1.json",
                "response",
                "limit=2&offset=2",
                note="a monitor SLO (monitor_ids[]); short last page",
            ),
        ),
        mixed_numbers=_DD_NUMBERS,
        note="created_at/modified_at are epoch SECONDS",
    ),
    Endpoint(
        "GET /api/v1/slo/{slo_id}/history",
        None,
        (
            Fixture(
                "datadog/slo_history.json",
                "response",
                "from_ts=1704236088&to_ts=1704322488",
                note="metric SLO: series.times[] are float epoch ms, from_ts/to_ts epoch s",
            ),
        ),
        maps=("data.thresholds", "data.overall.precision"),  # keyed by timeframe ("7d")
        # the recorded SLO had a zero denominator, so overall.errors is filled and sli_value null.
        ignore=("data.overall.errors",),
        mixed_numbers=_DD_NUMBERS,
    ),
    Endpoint(
        "GET /api/v2/events",
        "data",
        (
            Fixture(
                "datadog/events_v2_list_page0.json", "response", "filter[from]=now-15m&filter[to]=now&page[limit]=2"
            ),
            Fixture("datadog/events_v2_list_page1.json", "response", "...&page[cursor]=<meta.page.after>"),
            Fixture(
                "datadog/events_v2_list_page2_empty.json",
                "response",
                "...&page[cursor]=<meta.page.after>",
                note='final page is exactly {"data": []} (compare cannot check the absence of meta/links)',
            ),
        ),
        note="attributes.timestamp is ISO Z; attributes.attributes.timestamp is epoch ms",
    ),
    Endpoint(
        "POST /api/v2/events/search",
        "data",
        (
            Fixture("datadog/events_v2_search_page0.json", "response", '{"page":{"limit":2},...}'),
            Fixture("datadog/events_v2_search_page1.json", "response", '{"page":{"cursor":...}}'),
            Fixture("datadog/events_v2_search_400_error.json", "response", status=400, note="bad cursor"),
        ),
        core=False,
    ),
    Endpoint(
        "GET /api/v2/incidents/{incident_id}",
        None,
        (Fixture("datadog/incident_get.json", "response"),),
        core=False,
    ),
    Endpoint(
        "GET /api/v2/incidents/search",
        "data.attributes.incidents",
        (Fixture("datadog/incidents_search.json", "response", "query=state:(active OR stable OR resolved)"),),
        core=False,
    ),
    Endpoint(
        "GET /api/v1/monitor/search",
        "monitors",
        (Fixture("datadog/monitors_search.json", "response"),),
        core=False,
        note="creator.id is an int or an object in the same recording",
    ),
    Endpoint(
        "GET /api/v1/monitor/groups/search",
        "groups",
        (Fixture("datadog/monitors_groups_search.json", "response"),),
        core=False,
    ),
    Endpoint(
        "GET /api/v1/slo/correction",
        "data",
        (
            Fixture("datadog/slo_corrections_page0.json", "response", "limit=2"),
            Fixture("datadog/slo_corrections_page1.json", "response", "limit=2&offset=2"),
        ),
        core=False,
    ),
    Endpoint(
        "GET /api/v1/slo/search",
        "data.attributes.slos",
        (Fixture("datadog/slo_search.json", "response", "page[number]=0&page[size]=20&query=..."),),
        mixed_numbers=_DD_NUMBERS,
        core=False,
    ),
    Endpoint(
        "GET /api/v2/downtime",
        "data",
        (
            Fixture("datadog/downtimes_v2_page0.json", "response", "page[limit]=2"),
            Fixture("datadog/downtimes_v2_page1.json", "response", "page[limit]=2&page[offset]=2"),
        ),
        core=False,
    ),
    Endpoint(
        "POST /api/v2/dora/deployments",
        "data",
        (Fixture("datadog/dora_deployments.json", "response", '{"data":{"attributes":{"from":...,"to":...}}}'),),
        core=False,
    ),
    Endpoint(
        "GET /api/v2/ci/pipelines/events",
        "data",
        (
            Fixture("datadog/ci_pipelines_events_page0.json", "response", "filter[from]=...&page[limit]=2"),
            Fixture(
                "datadog/ci_pipelines_events_page1.json",
                "response",
                "...&page[cursor]=...",
                note="data: [] but meta.page.after still set",
            ),
        ),
        core=False,
        note="attributes.attributes.start/duration are in NANOseconds",
    ),
    Endpoint(
        "POST /api/v2/ci/pipelines/events/search",
        "data",
        (
            Fixture("datadog/ci_pipelines_events_search_page0.json", "response"),
            Fixture("datadog/ci_pipelines_events_search_page1.json", "response"),
        ),
        core=False,
    ),
    Endpoint(
        "GET /api/v2/ci/tests/events",
        "data",
        (
            Fixture("datadog/ci_tests_events_page0.json", "response", "page[limit]=2"),
            Fixture("datadog/ci_tests_events_page1.json", "response", "...&page[cursor]=..."),
        ),
        core=False,
    ),
    Endpoint(
        "GET /api/v1/query",
        None,
        (Fixture("datadog/metrics_query_v1.json", "response", "from=<s>&to=<s>&query=system.cpu.idle{*}"),),
        mixed_numbers=(*_DD_NUMBERS, "series[].pointlist[][]"),
        core=False,
        note="pointlist is [[epoch ms, value], ...]; from_date/to_date epoch ms",
    ),
    Endpoint(
        "POST /api/v2/query/timeseries",
        None,
        (Fixture("datadog/metrics_query_timeseries_v2.json", "response"),),
        mixed_numbers=_DD_NUMBERS,
        core=False,
        note="values print whole doubles as ints ([[1,1,87]])",
    ),
    Endpoint(
        "POST /api/v2/query/scalar",
        None,
        (Fixture("datadog/metrics_query_scalar_v2.json", "response"),),
        mixed_numbers=_DD_NUMBERS,
        core=False,
        note="columns[].values print 9.0 here, while timeseries prints 1",
    ),
)

MIXPANEL: tuple[Endpoint, ...] = (
    Endpoint(
        "GET /api/2.0/export",
        "",
        (
            Fixture(
                "mixpanel/export_docs_example.jsonl",
                "items",
                "from_date=...&to_date=...",
                note="official docs example: the Mixpanel-added core (time s, $insert_id, mp_processing_time_ms)",
            ),
            Fixture(
                "mixpanel/export_mixpanel_go_sdk_events.jsonl",
                "items",
                "from_date=2023-01-01&to_date=2023-01-02&project_id=117",
                note="2023 ingestion fields $mp_api_endpoint, $mp_api_timestamp_ms (ms)",
            ),
            Fixture(
                "mixpanel/export_web_sdk_events_2017.jsonl",
                "items",
                note="JS SDK 2.10 (2017): browser/geo properties; pre-2019, so no $insert_id",
            ),
            Fixture(
                "mixpanel/export_segment_sourced_event.jsonl",
                "items",
                # Segment sends $browser_version as "91.0.4472.101" where the JS SDK sends 56, and
                # noninteraction is a Segment-only custom property.
                ignore=("*[].properties.$browser_version", "*[].properties.noninteraction"),
            ),
        ),
        note="host data.mixpanel.com; the body is JSONL (text/plain): parse it into a list of items "
        "before align(); time is epoch SECONDS, *_ms properties epoch ms",
    ),
)

ENDPOINTS: tuple[Endpoint, ...] = GITHUB + JIRA + JENKINS + DATADOG + MIXPANEL

# Error and rate-limit recordings that belong to no single route (shapes for fault injection).
ERROR_FIXTURES: tuple[Fixture, ...] = (
    Fixture(
        "github/validation_error_422.json", "response", headers="github/validation_error_422.headers.json", status=422
    ),
    Fixture(
        "github/rate_limit_403_unauthenticated.json",
        "response",
        headers="github/rate_limit_403_unauthenticated.headers.json",
        status=403,
        note="2013 primary-limit body {message}; x-ratelimit-remaining: 0",
    ),
    Fixture(
        "github/secondary_rate_limit_403_search.json",
        "response",
        headers="github/secondary_rate_limit_403_search.headers.json",
        status=403,
        note="secondary limit {message, documentation_url} + Retry-After: 60",
    ),
    Fixture(
        "datadog/rate_limit_429_then_200_logs_events.recorded.json",
        "response",
        status=429,
        note="unwrap with contract.recorded_interactions: three 429s (empty body, x-ratelimit-remaining 9, "
        "x-ratelimit-reset 3/2/1 s) then a 200 /api/v2/logs/events page",
    ),
)

# Routes opsmap may emulate for which no real recording was found: build them from the documented
# contract (docs/source-apis.md) and label them synthetic.
NOT_RECORDED: tuple[str, ...] = (
    "github GET /repos/{owner}/{repo}/compare/{basehead}",
    "jira GET /rest/api/3/search/jql envelope (issues[] items: see jira/issues.jsonl)",
    "jira GET /rest/api/3/project, /rest/api/3/project/{key}/versions (fixVersions[] inside issues only)",
    "datadog GET /api/v1/events",
    "mixpanel error bodies; github 429 bodies; jira 429 headers",
)
