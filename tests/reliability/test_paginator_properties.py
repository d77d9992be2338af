"""Property-based tests of the sources' paging and incremental logic: whatever valid pages an API
serves — any page sizes, pages that shift and repeat a record across their boundary, transient
failures on any request — nothing is lost and nothing is duplicated.

A tiny HTTP server on loopback answers what each hypothesis example says, so the sources' own code
runs unchanged over the shared HTTP layer (`make_session`, with retries but no waiting): Jira's
offset paging (changelogs), Datadog's three paginators, GitHub's Link paging and pull-request
cursor across two runs, Jenkins's build ranges and watermark across runs, and Mixpanel's export
ranges re-fetched after a broken stream.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest
from dlt.sources.helpers.rest_client import RESTClient
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.sources import github, jenkins, mixpanel
from pipelines.sources.datadog import EventsCursorPaginator, NextOffsetPaginator, ShortPagePaginator
from pipelines.sources.http import MixpanelAuth, SourceSession, make_session
from pipelines.sources.jira import full_changelog

EXAMPLES = settings(max_examples=30, deadline=None, database=None)  # database: no .hypothesis folder in the tree

FAILURES = ("server_error", "rate_limit", "cut")
"""What a flaky request gets once: a 503, a 429 saying "retry now", or its body cut in the middle."""


# --------------------------------------------------------------------------------------------------
# The loopback API
# --------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    body: Any = None  # JSON-encoded unless bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[str, dict[str, str]], Reply]


class LoopbackAPI:
    """Answers each request with `app(path, query)`; request number n (0-based) fails once as `flaky[n]`."""

    def __init__(self) -> None:
        self.app: App = lambda path, query: Reply(status=404)
        self.flaky: dict[int, str] = {}
        self.served = 0
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: without it, 40 ms a request

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                with api._lock:
                    number, api.served = api.served, api.served + 1
                failure = api.flaky.get(number)
                if failure == "server_error":
                    self._send(503, b"<html>503</html>", {"Content-Type": "text/html"})
                    return
                if failure == "rate_limit":
                    self._send(429, b'{"message": "slow down"}', {"Retry-After": "0", "X-RateLimit-Reset": "0"})
                    return
                reply = api.app(parts.path, query)
                body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
                headers = {"Content-Type": "application/json", **reply.headers}
                self._send(reply.status, body, headers, cut=failure == "cut" and len(body) > 1)

            def _send(self, status: int, body: bytes, headers: dict[str, str], cut: bool = False) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)
                if cut:  # the connection drops mid-body
                    self.wfile.flush()
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def serve(self, app: App, flaky: dict[int, str]) -> None:
        self.app, self.flaky, self.served = app, flaky, 0

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackAPI]:
    server = LoopbackAPI()
    yield server
    server.close()


def session(system: str, **kwargs: Any) -> SourceSession:
    """The shared HTTP layer with its retries, minus the waiting (the loopback API has no clock)."""
    return make_session(system, sleep=lambda seconds: None, backoff_base=0.0, **kwargs)


def flaky_requests(max_request: int = 40) -> st.SearchStrategy[dict[int, str]]:
    """A few request numbers that fail once each; at most 5, so a 6-attempt retry budget always suffices."""
    return st.dictionaries(st.integers(0, max_request), st.sampled_from(FAILURES), max_size=5)


def page_sizes() -> st.SearchStrategy[list[int]]:
    """The sizes a server chooses for successive pages (it may answer fewer than asked)."""
    return st.lists(st.integers(1, 7), min_size=1, max_size=12)


def size_of(sizes: list[int], page: int) -> int:
    return sizes[page % len(sizes)]


# --------------------------------------------------------------------------------------------------
# Jira: startAt/maxResults paging of an issue's changelog
# --------------------------------------------------------------------------------------------------


@EXAMPLES
@given(
    count=st.integers(0, 40),
    asked=st.integers(1, 10),
    answered=page_sizes(),
    end=st.sampled_from(["isLast", "total", "short"]),
    repeats=st.sets(st.integers(1, 20)),
    flaky=flaky_requests(),
)
def test_jira_offset_paging_reads_every_history_once(
    api: LoopbackAPI, count: int, asked: int, answered: list[int], end: str, repeats: set[int], flaky: dict[int, str]
) -> None:
    """Jira may answer fewer than `maxResults` (and says so in the body), a page may repeat the previous
    page's last history, and the end is `isLast`, `total` or a short page, depending on the endpoint."""
    histories = [{"id": str(1000 + i), "created": f"2026-01-01T00:00:{i % 60:02d}.000+0000"} for i in range(count)]
    pages = 0

    def app(path: str, query: dict[str, str]) -> Reply:
        nonlocal pages
        assert path.endswith("/rest/api/3/issue/10001/changelog"), path
        start, size = int(query["startAt"]), min(int(query["maxResults"]), size_of(answered, pages))
        page = histories[start : start + size]
        if pages in repeats and start > 0 and page:
            page = [histories[start - 1], *page]
        pages += 1
        body: dict[str, Any] = {"startAt": start, "maxResults": size, "values": page}
        if end == "isLast":
            body["isLast"] = start + size >= count
        elif end == "total":
            body["total"] = count
        return Reply(body)

    api.serve(app, flaky)
    client = RESTClient(base_url=f"{api.url}/", session=session("jira"))
    got = full_changelog(client, {"id": "10001"}, page_size=asked)
    assert [h["id"] for h in got] == [h["id"] for h in histories]


# --------------------------------------------------------------------------------------------------
# Datadog: next_offset, page number with a short last page, cursor with an empty last page
# --------------------------------------------------------------------------------------------------


def _ids(count: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}"} for i in range(count)]


def _lost_or_repeated(got: list[dict[str, Any]], served: list[dict[str, Any]], repeated: list[str]) -> None:
    """Every record once, plus at most the repeats the server itself sent (the load's merge on the primary
    key drops those): nothing lost, nothing repeated by the client."""
    ids = Counter(r["id"] for r in got)
    assert set(ids) == {r["id"] for r in served}
    extra = ids - Counter(r["id"] for r in served)
    assert not extra - Counter(repeated), (extra, repeated)


@EXAMPLES
@given(count=st.integers(0, 40), answered=page_sizes(), repeats=st.sets(st.integers(1, 20)), flaky=flaky_requests())
def test_datadog_next_offset_follows_the_servers_offsets(
    api: LoopbackAPI, count: int, answered: list[int], repeats: set[int], flaky: dict[int, str]
) -> None:
    """v2 incidents: a short page is not the end; `next_offset`'s absence is."""
    records, repeated, pages = _ids(count), [], 0

    def app(path: str, query: dict[str, str]) -> Reply:
        nonlocal pages
        offset = int(query.get("page[offset]", 0))
        size = size_of(answered, pages)
        page = records[offset : offset + size]
        if pages in repeats and offset > 0 and page:
            page = [records[offset - 1], *page]
            repeated.append(records[offset - 1]["id"])
        pages += 1
        pagination: dict[str, int] = {"offset": offset, "size": size}
        if offset + size < count:
            pagination["next_offset"] = offset + size
        return Reply({"data": page, "meta": {"pagination": pagination}})

    api.serve(app, flaky)
    client = RESTClient(base_url=f"{api.url}/", session=session("datadog"))
    pages_got = client.paginate("api/v2/incidents", paginator=NextOffsetPaginator(), data_selector="data")
    _lost_or_repeated([r for page in pages_got for r in page], records, repeated)


@EXAMPLES
@given(count=st.integers(0, 40), size=st.integers(1, 7), flaky=flaky_requests())
def test_datadog_monitor_pages_end_on_a_short_page(
    api: LoopbackAPI, count: int, size: int, flaky: dict[int, str]
) -> None:
    records = _ids(count)

    def app(path: str, query: dict[str, str]) -> Reply:
        page = int(query.get("page", 0))
        return Reply(records[page * size : (page + 1) * size])

    api.serve(app, flaky)
    client = RESTClient(base_url=f"{api.url}/", session=session("datadog"))
    got = client.paginate(
        "api/v1/monitor", params={"page_size": size}, paginator=ShortPagePaginator(size), data_selector="$"
    )
    assert [r["id"] for page in got for r in page] == [r["id"] for r in records]


@EXAMPLES
@given(
    count=st.integers(0, 40),
    answered=page_sizes(),
    empty_end=st.booleans(),
    flaky=flaky_requests(),
)
def test_datadog_event_cursor_reads_to_the_end(
    api: LoopbackAPI, count: int, answered: list[int], empty_end: bool, flaky: dict[int, str]
) -> None:
    """v2 events: the cursor is opaque; the list ends on an empty page (which may still carry a cursor)
    or on a page without one."""
    records, pages = _ids(count), 0

    def app(path: str, query: dict[str, str]) -> Reply:
        nonlocal pages
        offset = int(query.get("page[cursor]", "c0")[1:])
        size = size_of(answered, pages)
        pages += 1
        after = offset + size
        meta = {"page": {"after": f"c{after}"}} if after < count or empty_end else {}
        return Reply({"data": records[offset:after], "meta": meta})

    api.serve(app, flaky)
    client = RESTClient(base_url=f"{api.url}/", session=session("datadog"))
    got = client.paginate("api/v2/events", paginator=EventsCursorPaginator(), data_selector="data")
    assert [r["id"] for page in got for r in page] == [r["id"] for r in records]


# --------------------------------------------------------------------------------------------------
# GitHub: Link paging of pull requests, newest-updated first, and the cursor across two runs
# --------------------------------------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _stamp(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def pull_request_histories(draw: st.DrawFn) -> tuple[dict[int, int], dict[int, int]]:
    """PR number → minute of last update, as the first run lists them and as the second run does.

    Between the runs some PRs change and some are opened: at any later minute, or (GitHub's sort index
    trailing its writes) at a minute up to 59 before the first run's newest, which that run did not list.
    """
    first = draw(st.dictionaries(st.integers(1, 60), st.integers(0, 600), max_size=25))
    newest = max(first.values(), default=0)
    later = st.integers(newest, newest + 300)
    trailing = st.integers(max(0, newest - 59), newest)
    changes = draw(st.dictionaries(st.integers(1, 80), st.one_of(later, trailing), max_size=12))
    second = {**first, **{n: m for n, m in changes.items() if first.get(n) != m}}
    return first, second


@EXAMPLES
@given(
    runs=pull_request_histories(),
    answered=page_sizes(),
    repeats=st.sets(st.integers(1, 20)),
    ties=st.randoms(use_true_random=False),
    flaky=flaky_requests(),
)
def test_github_pull_requests_across_two_runs_end_equal_to_the_repository(
    api: LoopbackAPI,
    runs: tuple[dict[int, int], dict[int, int]],
    answered: list[int],
    repeats: set[int],
    ties: Any,
    flaky: dict[int, str],
) -> None:
    first, second = runs
    listing: dict[int, int] = first
    rank = {n: ties.random() for n in range(100)}  # PRs updated the same second come in any (stable) order

    def app(path: str, query: dict[str, str]) -> Reply:
        assert path == "/repos/acme/web/pulls" and query["sort"] == "updated" and query["direction"] == "desc"
        ordered = sorted(listing.items(), key=lambda kv: (-kv[1], rank[kv[0]]))
        page, size = int(query.get("page", 1)), size_of(answered, int(query.get("page", 1)))
        start = sum(size_of(answered, p) for p in range(1, page))
        items = ordered[start : start + size]
        if page in repeats and start > 0 and items:
            items = [ordered[start - 1], *items]
        rows = [
            {"id": 5000 + n, "number": n, "state": "open", "title": f"PR {n}", "updated_at": _stamp(m)}
            for n, m in items
        ]
        links = {}
        if start + size < len(ordered):
            links["Link"] = f'<{api.url}/repos/acme/web/pulls?{_query(query, page + 1)}>; rel="next"'
        return Reply(rows, headers=links)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(github, "make_session", session)
        client = github.GitHubClient(f"{api.url}/", "token", selection_key="ORG")
    repo = {"full_name": "acme/web"}
    state: dict[str, Any] = {}
    loaded: dict[int, str] = {}
    for listing in (first, second):
        api.serve(app, flaky)
        yielded = [
            row
            for page in github.pull_request_pages(client, repo, state, None, github.gates()["pull_requests"])
            for row in page
        ]
        numbers = [row["number"] for row in yielded]
        assert len(numbers) == len(set(numbers)), f"a run yielded a PR twice: {numbers}"
        loaded.update({row["number"]: row["updated_at"] for row in yielded})
        assert loaded == {n: _stamp(m) for n, m in listing.items()}


def _query(query: dict[str, str], page: int) -> str:
    return urlencode({**query, "page": page})


# --------------------------------------------------------------------------------------------------
# Jenkins: allBuilds{M,N} ranges, newest first, the watermark and running builds across runs
# --------------------------------------------------------------------------------------------------


@dataclass
class JenkinsJob:
    """A job's builds: number → still building; new builds arrive during paging (shifting the ranges)."""

    builds: dict[int, bool] = field(default_factory=dict)
    arriving: list[int] = field(default_factory=list)  # builds that start after the first range is read

    def item(self, number: int) -> dict[str, Any]:
        building = self.builds[number]
        return {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
            "number": number,
            "id": str(number),
            "url": f"http://jenkins/job/ci/job/app/{number}/",
            "timestamp": 1_767_000_000_000 + number * 60_000,
            "duration": 0 if building else 60_000,
            "result": None if building else "SUCCESS",
            "building": building,
            "actions": [],
        }


@st.composite
def build_histories(draw: st.DrawFn) -> list[tuple[dict[int, bool], int]]:
    """Successive runs' views of a job: each run sees more builds (some still building, which finish
    later) and may see `k` more start while it pages. The last run is quiet and sees everything done."""
    runs = []
    builds: dict[int, bool] = {}
    for _ in range(draw(st.integers(1, 3))):
        for number in [n for n, building in builds.items() if building]:
            builds[number] = draw(st.booleans())
        top = max(builds, default=0)
        builds.update({top + 1 + i: draw(st.booleans()) for i in range(draw(st.integers(0, 9)))})
        runs.append((dict(builds), draw(st.integers(0, 3))))
    return [*runs, ({n: False for n in builds}, 0)]


@EXAMPLES
@given(history=build_histories(), size=st.integers(1, 5), flaky=flaky_requests())
def test_jenkins_builds_across_runs_end_equal_to_the_job(
    api: LoopbackAPI, history: list[tuple[dict[int, bool], int]], size: int, flaky: dict[int, str]
) -> None:
    job = JenkinsJob()

    def app(path: str, query: dict[str, str]) -> Reply:
        if path.rstrip("/").endswith("/api/json") and "allBuilds" in query.get("tree", ""):
            lo, hi = (int(x) for x in query["tree"].rsplit("{", 1)[1].rstrip("}").split(","))
            if lo > 0 and job.arriving:  # builds start while the client pages: the ranges shift
                top = max(job.builds)
                job.builds.update({top + 1 + i: True for i in range(len(job.arriving))})
                job.arriving.clear()
            newest_first = sorted(job.builds, reverse=True)
            return Reply({"allBuilds": [job.item(n) for n in newest_first[lo:hi]]})
        number = int(path.strip("/").split("/")[-3])  # …/job/app/<number>/api/json
        return Reply(job.item(number)) if number in job.builds else Reply({"message": "no build"}, status=404)

    client = jenkins.JenkinsClient(api.url, session("jenkins"), max_workers=1)
    state: dict[str, Any] | None = None
    loaded: dict[int, bool] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jenkins, "PAGE_SIZE", size)
        for builds, arriving in history:
            # Builds that started during an earlier run's paging stay, unless this view says how they are now.
            job.builds = {**job.builds, **builds}
            job.arriving = [1] * arriving
            present = set(job.builds)
            listing = {"fullName": "ci/app", "lastBuild": {"number": max(present)} if present else None}
            api.serve(app, flaky)
            out = jenkins.read_job_builds(client, listing, state, None)
            numbers = [int(r["number"]) for r in out.rows]
            assert len(numbers) == len(set(numbers)), f"a run read a build twice: {numbers}"
            watermark = int(state["last_number"]) if state else 0
            assert set(numbers) >= {n for n in present if n > watermark}, "a build newer than the watermark was lost"
            loaded.update({int(r["number"]): bool(r["building"]) for r in out.rows})
            state = out.state
    assert loaded == job.builds, "after a quiet run the table holds every build as it is now"


# --------------------------------------------------------------------------------------------------
# Mixpanel: export ranges re-fetched after a broken stream, duplicates in the export
# --------------------------------------------------------------------------------------------------


@st.composite
def exported_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events over a few days, in any order; the export repeats some of them (it is not de-duplicated upstream)."""
    base = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["Viewed", "Clicked"]), st.integers(0, 5), st.integers(0, 4 * 86_399)),
            unique=True,
            max_size=40,
        )
    )
    events = [
        {"event": e, "properties": {"time": base + t, "distinct_id": f"u{u}", "$insert_id": f"i{u}-{t}"}}
        for e, u, t in keys
    ]
    repeats = draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    return draw(st.permutations([*events, *repeats]))


@EXAMPLES
@given(events=exported_events(), days_per_request=st.integers(1, 4), flaky=flaky_requests(12))
def test_mixpanel_export_yields_each_event_once(
    api: LoopbackAPI, events: list[dict[str, Any]], days_per_request: int, flaky: dict[int, str]
) -> None:
    first = date(2026, 5, 1)

    def app(path: str, query: dict[str, str]) -> Reply:
        lo = datetime.fromisoformat(query["from_date"]).replace(tzinfo=UTC).timestamp()
        hi = (datetime.fromisoformat(query["to_date"]).replace(tzinfo=UTC) + timedelta(days=1)).timestamp()
        lines = [orjson.dumps(ev) for ev in events if lo <= ev["properties"]["time"] < hi]
        return Reply(b"".join(line + b"\n" for line in lines), headers={"Content-Type": "text/plain"})

    api.serve(app, flaky)
    auth = MixpanelAuth("secret-for-tests", username="sa.user", project_id="1")
    exporter = mixpanel.Exporter(session("mixpanel", auth=auth), api.url, pacer=mixpanel.Pacer(per_second=10_000))
    tables = list(exporter.export(first, first + timedelta(days=3), days_per_request))
    rows = [row for table in tables for row in table.select(["event", "distinct_id", "insert_id"]).to_pylist()]
    keys = [(r["event"], r["distinct_id"], r["insert_id"]) for r in rows]
    distinct = {(ev["event"], ev["properties"]["distinct_id"], ev["properties"]["$insert_id"]) for ev in events}
    assert len(keys) == len(set(keys)), "an event was yielded twice"
    assert set(keys) == distinct, "an event was lost"
