"""Tests for the shared HTTP layer, over loopback against a scripted `ThreadingHTTPServer`.

Every scenario is real HTTP: the handler plays a script of responses per path (statuses, headers,
bodies cut mid-way, slow replies). `sleep` is injected, so rate-limit waits are asserted, not waited.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from pipelines.sources.http import (
    POLICIES,
    SYSTEMS,
    DatadogAuth,
    GitHubAuth,
    JenkinsAuth,
    JiraAuth,
    MixpanelAuth,
    SourceAuthError,
    SourceHTTPError,
    SourceMalformedResponseError,
    SourceNotFoundError,
    SourceRateLimitError,
    SourceRetriesExhaustedError,
    SourceSession,
    make_session,
    redacted_endpoint,
)

CANARY = "ghp_SECRET_canary_123"
NOW = 1_700_000_000.0  # a fixed clock for reset-header arithmetic


# --------------------------------------------------------------------------------------------------
# The scripted server
# --------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One scripted response. `truncate` announces the full length, sends half and hangs up."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0
    truncate: bool = False

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body if self.body is not None else {}).encode()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class ScriptedServer:
    """Plays each path's steps in order; the last step repeats once the script is down to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scripts: dict[str, list[Step]] = {}
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do

            def do_GET(self) -> None:
                server._serve(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client hung up on a slow reply: expected

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def script(self, path: str, *steps: Step) -> str:
        with self._lock:
            self.scripts[path] = list(steps)
        return self.base + path

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for s in self.seen if urlsplit(s.path).path == path)

    def reset(self) -> None:
        with self._lock:
            self.scripts.clear()
            self.seen.clear()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        path = urlsplit(handler.path).path
        with self._lock:
            self.seen.append(Seen(handler.command, handler.path, dict(handler.headers.items())))
            script = self.scripts.get(path) or [Step(404, {"message": "unscripted"})]
            step = script.pop(0) if len(script) > 1 else script[0]
        if step.delay:
            time.sleep(step.delay)
        body = step.payload()
        handler.send_response(step.status)
        handler.send_header("Content-Type", step.content_type)
        handler.send_header("Content-Length", str(len(body) + (100 if step.truncate else 0)))
        for name, value in step.headers.items():
            handler.send_header(name, value.replace("{base}", self.base))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2] if step.truncate else body)
        handler.wfile.flush()
        if step.truncate:
            handler.close_connection = True

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def server(_server: ScriptedServer) -> ScriptedServer:
    _server.reset()
    return _server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def session_for(system: str, sleeps: list[float], **kwargs: Any) -> SourceSession:
    kwargs.setdefault("timeout", (2.0, 2.0))
    kwargs.setdefault("clock", lambda: NOW)
    return make_session(system, sleep=sleeps.append, **kwargs)


# --------------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------------


def test_5xx_then_success_is_retried_with_jittered_backoff(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/flaky", Step(500), Step(502), Step(200, {"ok": True}))
    s = session_for("jenkins", sleeps, backoff_base=0.5)
    assert s.get(url).json() == {"ok": True}
    assert server.hits("/flaky") == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter, doubling
    stats = s.stats.snapshot()
    assert stats["requests"] == 3 and stats["retries"] == {"http_500": 1, "http_502": 1}
    assert stats["bytes_received"] > 0


def test_5xx_exhausted_raises_clear_error(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/down", Step(503))
    s = session_for("datadog", sleeps, max_retries=2)
    with pytest.raises(SourceRetriesExhaustedError) as info:
        s.get(url)
    assert server.hits("/down") == 3
    assert str(info.value) == (
        "datadog: GET /down → 503 Service Unavailable after 3 attempts; the service kept failing, re-run later."
    )
    assert info.value.status == 503


def test_truncated_body_is_retried(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/cut", Step(200, {"items": list(range(50))}, truncate=True), Step(200, {"items": [1]}))
    s = session_for("github", sleeps)
    assert s.get(url).json() == {"items": [1]}
    assert server.hits("/cut") == 2
    assert s.stats.snapshot()["retries"] == {"truncated_body": 1}


def test_malformed_json_is_retried_then_reported(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/bad", Step(200, b'{"items": [1, 2'), Step(200, {"items": [1, 2]}))
    s = session_for("jira", sleeps, max_retries=2)
    assert s.get(url).json() == {"items": [1, 2]}
    assert s.stats.snapshot()["retries"] == {"malformed_json": 1}

    url = server.script("/always-bad", Step(200, b'{"items": [1, 2'))
    with pytest.raises(SourceMalformedResponseError) as info:
        s.get(url)
    assert server.hits("/always-bad") == 3
    assert "JSON body was malformed after 3 attempts" in str(info.value)
    assert isinstance(info.value, SourceRetriesExhaustedError)


def test_non_json_and_ndjson_bodies_are_not_validated(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/lines", Step(200, b'{"a":1}\n{"a":2}\n', content_type="application/x-ndjson"))
    s = session_for("mixpanel", sleeps)
    assert s.get(url).text.count("\n") == 2
    assert server.hits("/lines") == 1


def test_slow_response_beyond_default_read_timeout_is_retried(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/slow", Step(200, {"late": True}, delay=0.6), Step(200, {"late": False}))
    s = session_for("jenkins", sleeps, timeout=(1.0, 0.15))
    assert s.get(url).json() == {"late": False}  # no timeout passed: the session default applies
    assert s.stats.snapshot()["retries"] == {"read_timeout": 1}


def test_unreachable_host_names_base_url(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = session_for("jenkins", sleeps, max_retries=1)
    with pytest.raises(SourceRetriesExhaustedError) as info:
        s.get(f"http://127.0.0.1:{port}/job/x/api/json?tree=builds")
    assert info.value.config_key == "SOURCES__JENKINS__BASE_URL"
    assert "connection failed after 2 attempts" in str(info.value)
    assert s.stats.snapshot()["retries"] == {"connect_error": 1}


# --------------------------------------------------------------------------------------------------
# Rate limits: each system's headers, over the wire
# --------------------------------------------------------------------------------------------------

JIRA_NOW = datetime(2024, 5, 1, 10, 14, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("system", "step", "clock", "expected_wait"),
    [
        ("datadog", Step(429, headers={"X-RateLimit-Reset": "3", "Retry-After": "30"}), NOW, 3.0),
        ("jira", Step(429, headers={"Retry-After": "7"}), NOW, 7.0),
        ("jira", Step(429, headers={"X-RateLimit-Reset": "2024-05-01T10:15Z"}), JIRA_NOW, 60.0),
        ("jira", Step(503, headers={"Retry-After": "5"}), NOW, 5.0),
        ("mixpanel", Step(429, headers={"Retry-After": "11"}), NOW, 11.0),
        ("jenkins", Step(429, headers={"retry-after": "4"}), NOW, 4.0),  # case-insensitive lookup
        ("jenkins", Step(503, headers={"Retry-After": "2"}), NOW, 2.0),
        ("github", Step(429, headers={"Retry-After": "60"}), NOW, 60.0),
        (
            "github",
            Step(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 120)}),
            NOW,
            120.0,
        ),
        (  # a reset already in the past still waits the 1 s minimum
            "github",
            Step(403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 5)}),
            NOW,
            1.0,
        ),
        (
            "github",
            Step(403, {"message": "You have exceeded a secondary rate limit. Please wait."}),
            NOW,
            60.0,
        ),
        (
            "github",
            Step(403, {"message": "You have triggered an abuse detection mechanism."}, {"Retry-After": "30"}),
            NOW,
            30.0,
        ),
    ],
)
def test_rate_limit_waits_follow_each_systems_headers(
    server: ScriptedServer, sleeps: list[float], system: str, step: Step, clock: float, expected_wait: float
) -> None:
    url = server.script("/limited", step, Step(200, {"ok": 1}))
    s = session_for(system, sleeps, clock=lambda: clock)
    assert s.get(url).json() == {"ok": 1}
    assert sleeps == [pytest.approx(expected_wait)]
    stats = s.stats.snapshot()
    assert stats["retries"] == {"rate_limit": 1}
    assert stats["rate_limit_wait_s"] == pytest.approx(expected_wait)


def test_rate_limit_without_hints_backs_off(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/export", Step(429), Step(429), Step(200, {"ok": 1}))
    s = session_for("mixpanel", sleeps, backoff_base=2.0)
    s.get(url)
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 2.0 and 0 <= sleeps[1] <= 4.0


def test_rate_limits_use_their_own_larger_budget(server: ScriptedServer, sleeps: list[float]) -> None:
    limited = Step(429, headers={"Retry-After": "1"})
    url = server.script("/busy", limited, limited, limited, Step(200, {"ok": 1}))
    s = session_for("mixpanel", sleeps, max_retries=0, max_rate_limit_retries=3)
    assert s.get(url).json() == {"ok": 1}  # three rate-limit retries although max_retries=0

    url = server.script("/busier", limited)
    with pytest.raises(SourceRateLimitError, match="still limited after 3 rate-limit retries"):
        s.get(url)
    assert server.hits("/busier") == 4


def test_wait_longer_than_max_wait_raises_instead_of_sleeping(server: ScriptedServer, sleeps: list[float]) -> None:
    reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 3600)}
    url = server.script("/repos/acme/x/pulls", Step(403, {"message": "API rate limit exceeded"}, reset))
    s = session_for("github", sleeps, max_wait=600)  # no auth: the hint names the token
    with pytest.raises(SourceRateLimitError) as info:
        s.get(url, params={"state": "all"})
    assert sleeps == [] and server.hits("/repos/acme/x/pulls") == 1
    assert "asks to wait 3600 s, more than max_wait=600 s" in str(info.value)
    assert info.value.config_key == "SOURCES__GITHUB__ACCESS_TOKEN"


# --------------------------------------------------------------------------------------------------
# Errors that are not retried, and secrets
# --------------------------------------------------------------------------------------------------


def test_github_403_without_rate_limit_signs_is_an_auth_error_after_one_request(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    url = server.script("/repos/acme/x", Step(403, {"message": "Resource not accessible by integration"}))
    s = session_for("github", sleeps, auth=GitHubAuth(CANARY))
    with pytest.raises(SourceAuthError) as info:
        s.get(url)
    assert server.hits("/repos/acme/x") == 1 and sleeps == []
    assert info.value.status == 403
    assert info.value.config_key == "SOURCES__GITHUB__ACCESS_TOKEN"
    assert "lack permission" in str(info.value)


def test_401_message_names_the_key_and_never_the_secret(
    server: ScriptedServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="opsmap.http")
    url = server.script(
        "/repos/acme/x/pulls",
        Step(500, {"echo": f"Bearer {CANARY}"}),  # a retry, so there is a log line to inspect
        Step(401, {"message": f"Bad credentials {CANARY}"}),
    )
    s = session_for("github", sleeps, auth=GitHubAuth(CANARY))
    with pytest.raises(SourceAuthError) as info:
        s.get(url, params={"state": "all"})
    exc = info.value
    assert str(exc) == (
        "github: GET /repos/acme/x/pulls?state=all → 401 Unauthorized. "
        "Check SOURCES__GITHUB__ACCESS_TOKEN (the token was rejected)."
    )
    assert server.hits("/repos/acme/x/pulls") == 2  # the 500 was retried, the 401 was not
    assert server.seen[-1].headers["Authorization"] == f"Bearer {CANARY}"  # it was really sent
    logged = [r.getMessage() for r in caplog.records]
    assert any("retry 1/5" in m and "reason=http_500" in m for m in logged)
    for text in (str(exc), repr(exc), repr(s), repr(s.auth), *logged):
        assert CANARY not in text
    assert CANARY.encode() not in pickle.dumps(exc)
    assert pickle.loads(pickle.dumps(exc)).config_key == "SOURCES__GITHUB__ACCESS_TOKEN"


def test_credential_query_parameters_are_redacted(
    server: ScriptedServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="opsmap.http")
    url = server.script("/api/v1/monitor", Step(502), Step(403, {"errors": ["Forbidden"]}))
    s = session_for("datadog", sleeps, auth=DatadogAuth(CANARY, "app_" + CANARY))
    with pytest.raises(SourceAuthError) as info:
        s.get(url, params={"api_key": CANARY, "application_key": CANARY, "page": 0, "sig": CANARY})
    assert info.value.endpoint == "/api/v1/monitor?api_key=***&application_key=***&page=0&sig=***"
    assert "SOURCES__DATADOG__API_KEY and SOURCES__DATADOG__APPLICATION_KEY" in str(info.value)
    for text in (str(info.value), repr(info.value), repr(s.auth), *(r.getMessage() for r in caplog.records)):
        assert CANARY not in text


@pytest.mark.parametrize(
    ("system", "auth", "expected"),
    [
        ("jira", JiraAuth(CANARY, email="a@b.c"), "SOURCES__JIRA__API_TOKEN and SOURCES__JIRA__EMAIL"),
        ("jira", JiraAuth(CANARY), "SOURCES__JIRA__API_TOKEN (the token was rejected)"),
        ("jenkins", JenkinsAuth("bot", CANARY), "SOURCES__JENKINS__API_TOKEN and SOURCES__JENKINS__USERNAME"),
        ("mixpanel", MixpanelAuth(CANARY), "SOURCES__MIXPANEL__API_SECRET (the token was rejected)"),
        (
            "mixpanel",
            MixpanelAuth(CANARY, username="svc", project_id=42),
            "SOURCES__MIXPANEL__API_SECRET, SOURCES__MIXPANEL__USERNAME and SOURCES__MIXPANEL__PROJECT_ID",
        ),
        ("github", None, "SOURCES__GITHUB__ACCESS_TOKEN (no credentials were sent)"),
    ],
)
def test_401_names_each_systems_credential_keys(
    server: ScriptedServer, sleeps: list[float], system: str, auth: Any, expected: str
) -> None:
    url = server.script("/secured", Step(401))
    s = session_for(system, sleeps, auth=auth)
    with pytest.raises(SourceAuthError) as info:
        s.get(url)
    assert f"{system}: GET /secured" in str(info.value) and expected in str(info.value)
    assert CANARY not in str(info.value) + repr(auth)
    assert server.hits("/secured") == 1


def test_404_names_base_url_and_selection_key(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/repos/acme/nope", Step(404, {"message": "Not Found"}))
    s = session_for("github", sleeps, selection_key="REPOSITORIES")
    with pytest.raises(SourceNotFoundError) as info:
        s.get(url)
    assert str(info.value) == (
        "github: GET /repos/acme/nope → 404 Not Found. Check SOURCES__GITHUB__BASE_URL or "
        "SOURCES__GITHUB__REPOSITORIES (no such resource, or the credentials cannot see it)."
    )
    assert isinstance(info.value, requests.HTTPError)  # still catchable as requests' error
    assert info.value.response is not None and info.value.response.status_code == 404


def test_other_4xx_quotes_a_scrubbed_excerpt(server: ScriptedServer, sleeps: list[float]) -> None:
    body = {"error": f"to_date cannot be later than today ({CANARY})"}
    url = server.script("/api/2.0/export", Step(400, body))
    s = session_for("mixpanel", sleeps, auth=MixpanelAuth(CANARY))
    with pytest.raises(SourceHTTPError) as info:
        s.get(url)
    assert type(info.value) is SourceHTTPError and info.value.status == 400
    assert "to_date cannot be later than today (***)" in str(info.value)


# --------------------------------------------------------------------------------------------------
# Auth helpers and headers, as received by the server
# --------------------------------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("system", "auth", "expected_headers", "expected_query"),
    [
        (
            "github",
            GitHubAuth(CANARY),
            {
                "Authorization": f"Bearer {CANARY}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            "",
        ),
        ("jira", JiraAuth(CANARY, email="me@acme.io"), {"Authorization": _basic("me@acme.io", CANARY)}, ""),
        ("jira", JiraAuth(CANARY), {"Authorization": f"Bearer {CANARY}"}, ""),
        ("jenkins", JenkinsAuth("bot", CANARY), {"Authorization": _basic("bot", CANARY)}, ""),
        ("datadog", DatadogAuth(CANARY, "app"), {"DD-API-KEY": CANARY, "DD-APPLICATION-KEY": "app"}, ""),
        (
            "mixpanel",
            MixpanelAuth(CANARY, username="svc", project_id=42),
            {"Authorization": _basic("svc", CANARY)},
            "from_date=2024-01-01&project_id=42",
        ),
        ("mixpanel", MixpanelAuth(CANARY), {"Authorization": _basic(CANARY, "")}, "from_date=2024-01-01"),
    ],
)
def test_auth_helpers_send_the_right_headers(
    server: ScriptedServer,
    sleeps: list[float],
    system: str,
    auth: Any,
    expected_headers: dict[str, str],
    expected_query: str,
) -> None:
    url = server.script("/who", Step(200, {}))
    session_for(system, sleeps, auth=auth).get(url, params={"from_date": "2024-01-01"})
    seen = server.seen[-1]
    for name, value in expected_headers.items():
        assert seen.headers[name] == value
    assert seen.headers["User-Agent"].startswith("opsmap/")
    assert urlsplit(seen.path).query == (expected_query or "from_date=2024-01-01")
    assert CANARY not in repr(auth)


def test_auth_helpers_reject_missing_credentials() -> None:
    with pytest.raises(ValueError, match="SOURCES__GITHUB__ACCESS_TOKEN is empty"):
        GitHubAuth("")
    with pytest.raises(ValueError, match="SOURCES__MIXPANEL__PROJECT_ID"):
        MixpanelAuth("secret", username="svc")
    with pytest.raises(ValueError, match="unknown system"):
        make_session("gitlab")


def test_secret_headers_do_not_follow_a_redirect_to_another_host(server: ScriptedServer, sleeps: list[float]) -> None:
    server.script("/landing", Step(200, {"landed": True}))
    url = server.script("/moved", Step(302, headers={"Location": f"http://localhost:{server.port}/landing"}))
    s = session_for("datadog", sleeps, auth=DatadogAuth(CANARY, "app_key_value"))
    assert s.get(url).json() == {"landed": True}
    landing = next(x for x in server.seen if x.path == "/landing")
    assert "DD-API-KEY" not in landing.headers and "DD-APPLICATION-KEY" not in landing.headers


# --------------------------------------------------------------------------------------------------
# Streams, hooks, threads
# --------------------------------------------------------------------------------------------------


def test_streamed_request_retries_status_and_leaves_the_body_to_the_caller(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    lines = b'{"event":"a"}\n{"event":"b"}\n'
    url = server.script(
        "/api/2.0/export",
        Step(503),
        Step(429, headers={"Retry-After": "3"}),
        Step(200, lines, content_type="text/plain"),
    )
    s = session_for("mixpanel", sleeps)
    response = s.get(url, stream=True)
    assert sleeps[1:] == [3.0] and s.stats.snapshot()["retries"] == {"http_503": 1, "rate_limit": 1}
    before = s.stats.snapshot()["bytes_received"]
    assert [json.loads(line) for line in response.iter_lines() if line] == [{"event": "a"}, {"event": "b"}]
    assert s.stats.snapshot()["bytes_received"] - before == len(lines)


def test_response_hooks_run_once_on_the_final_response(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/hooked", Step(500), Step(200, {"ok": 1}))
    statuses: list[int] = []
    s = session_for("jira", sleeps)
    s.get(url, hooks={"response": [lambda r, *a, **k: statuses.append(r.status_code)]})
    assert statuses == [200]


def test_one_session_shared_by_threads(server: ScriptedServer, sleeps: list[float]) -> None:
    url = server.script("/shared", Step(200, {"ok": 1}))
    s = session_for("github", sleeps)

    def work() -> None:
        for _ in range(5):
            s.get(url).raise_for_status()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.stats.snapshot()["requests"] == 40 == server.hits("/shared")


# --------------------------------------------------------------------------------------------------
# dlt integration: RESTClient and the declarative rest_api source call session.send
# --------------------------------------------------------------------------------------------------


def _issue_pages(server: ScriptedServer) -> None:
    path = "/repos/acme/app/issues"
    link = '<{base}%s?page=%d>; rel="next"'
    server.script(
        path,
        Step(200, [{"id": 1}, {"id": 2}], {"Link": link % (path, 2)}),
        Step(500),  # page 2: a 5xx first
        Step(200, [{"id": 3}, {"id": 4}], {"Link": link % (path, 3)}),
        Step(429, headers={"Retry-After": "2"}),  # page 3: a rate limit first
        Step(200, [{"id": 5}]),
    )


def test_dlt_rest_client_pages_through_retries(server: ScriptedServer, sleeps: list[float]) -> None:
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator

    _issue_pages(server)
    s = session_for("github", sleeps, auth=GitHubAuth(CANARY))
    client = RESTClient(base_url=server.base, session=s, paginator=HeaderLinkPaginator())
    pages = list(client.paginate("/repos/acme/app/issues", params={"per_page": 2}))
    assert [row["id"] for page in pages for row in page] == [1, 2, 3, 4, 5]
    assert s.stats.snapshot()["retries"] == {"http_500": 1, "rate_limit": 1}
    assert sleeps[-1] == 2.0
    assert all(x.headers["Authorization"] == f"Bearer {CANARY}" for x in server.seen)  # session auth used

    # dlt's own raise-for-status hook does not replace our error, and auth errors are not retried.
    server.script("/repos/acme/private/issues", Step(401))
    with pytest.raises(SourceAuthError, match="Check SOURCES__GITHUB__ACCESS_TOKEN"):
        list(client.paginate("/repos/acme/private/issues"))
    assert server.hits("/repos/acme/private/issues") == 1


def test_credentials_set_by_dlt_auth_are_scrubbed_too(server: ScriptedServer, sleeps: list[float]) -> None:
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

    server.script("/search", Step(422, {"message": f"Validation Failed for {CANARY}"}), Step(401))
    s = session_for("github", sleeps)  # no session auth: dlt's auth wins, as in a rest_api "auth" config
    client = RESTClient(base_url=server.base, session=s, auth=BearerTokenAuth(CANARY))
    with pytest.raises(SourceHTTPError) as info:
        client.get("/search")
    assert '422 Unprocessable Entity: {"message": "Validation Failed for ***"}' in str(info.value)
    with pytest.raises(SourceAuthError, match=r"\(the token was rejected\)"):
        client.get("/search")


def test_dlt_rest_api_source_uses_the_session(server: ScriptedServer, sleeps: list[float]) -> None:
    from dlt.sources.rest_api import rest_api_resources

    _issue_pages(server)
    server.script("/repos/acme/app/gone", Step(404))
    s = session_for("github", sleeps)
    issues, gone = rest_api_resources(
        {
            "client": {"base_url": server.base + "/", "session": s, "paginator": {"type": "header_link"}},
            "resources": [
                {"name": "issues", "endpoint": {"path": "repos/acme/app/issues"}},
                {
                    "name": "gone",
                    "endpoint": {
                        "path": "repos/acme/app/gone",
                        "response_actions": [{"status_code": 404, "action": "ignore"}],
                    },
                },
            ],
        }
    )
    assert [row["id"] for row in issues] == [1, 2, 3, 4, 5]
    assert list(gone) == []  # rest_api's response actions still see the final 404
    assert s.stats.snapshot()["retries"] == {"http_500": 1, "rate_limit": 1}


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


def test_redacted_endpoint() -> None:
    url = "https://u:pw@api.example.com/a/b?state=all&access_token=x&apiKey=y&nextPageToken=abc&page%5Bsize%5D=5"
    assert redacted_endpoint(url) == "/a/b?state=all&access_token=***&apiKey=***&nextPageToken=abc&page%5Bsize%5D=5"
    assert redacted_endpoint("https://h/x?monkey=1&design=2&X-Amz-Signature=s") == (
        "/x?monkey=1&design=2&X-Amz-Signature=***"
    )


def test_policies_cover_every_system_and_ignore_plain_errors() -> None:
    assert set(POLICIES) == set(SYSTEMS)
    empty = requests.structures.CaseInsensitiveDict()
    assert POLICIES["github"].classify(403, empty, b'{"message": "Must have admin rights"}', NOW) is None
    assert POLICIES["jira"].classify(503, empty, b"", NOW) is None  # plain 5xx, not a rate limit
    assert POLICIES["datadog"].classify(500, empty, b"", NOW) is None
    hit = POLICIES["github"].classify(429, empty, b"", NOW)
    assert hit is not None and hit.wait == 60.0
    hit = POLICIES["github"].classify(403, {"x-ratelimit-remaining": "0"}, b"", NOW)  # no reset header
    assert hit is not None and hit.wait == 60.0
    hit = POLICIES["github"].classify(403, {"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"}, b"", NOW)
    assert hit is not None and hit.wait is not None and hit.wait > 10**9  # HTTP-date form of Retry-After
    # Datadog ignores Retry-After, as the official client does; without its reset header it backs off.
    hit = POLICIES["datadog"].classify(429, {"Retry-After": "30"}, b"", NOW)
    assert hit is not None and hit.wait is None
