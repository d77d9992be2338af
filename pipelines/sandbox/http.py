"""The emulator's HTTP vocabulary: requests, responses, routes, and the contract each system module fills.

One process serves all five systems under a path prefix each (`/github`, `/jira`, `/jenkins`,
`/datadog`, `/mixpanel`). A system module (e.g. `sandbox/github.py`) subclasses `SystemEmulator`:
it lists its routes, checks its auth headers, and renders its own 401 and rate-limit responses.
The server core (`server.py`) applies faults, logging and dispatch the same way for every system.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from pipelines.sandbox.world import World, WorldView

JSON = "application/json; charset=utf-8"


class HTTPError(Exception):
    """Raised by handlers to answer with an error response (rendered by the system module)."""

    def __init__(self, status: int, message: str, *, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


@dataclass
class Request:
    """One incoming request, as a system module sees it."""

    system: str
    method: str
    path: str  # after the system prefix, e.g. "/repos/acme/web-app/pulls"
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # case-insensitive
    base_url: str  # e.g. "http://127.0.0.1:8900/github", for absolute links such as GitHub's Link header
    view: WorldView  # the world as of this request's moment
    faults: frozenset[str] = frozenset()  # fault kinds active for this request (duplicate, mutate, …)
    received_at: datetime | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def int_arg(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self.arg(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise HTTPError(400, f"Invalid value for {name!r}: {raw!r} is not an integer") from exc
        if value < minimum:
            raise HTTPError(400, f"Invalid value for {name!r}: must be >= {minimum}")
        return min(value, maximum) if maximum is not None else value

    def url(self, path: str, params: Mapping[str, object]) -> str:
        """An absolute URL on this system, e.g. for a next-page link."""
        from urllib.parse import urlencode

        query = urlencode([(k, str(v)) for k, v in params.items() if v is not None])
        return f"{self.base_url}{path}{'?' + query if query else ''}"


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""  # an iterable is streamed with chunked encoding
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON
    gzip_ok: bool = False  # compress when the client sends Accept-Encoding: gzip

    @property
    def streamed(self) -> bool:
        return not isinstance(self.body, bytes | bytearray)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(payload), dict(headers or {}))


def stream_response(chunks: Iterator[bytes], content_type: str, headers: dict[str, str] | None = None) -> Response:
    return Response(200, chunks, dict(headers or {}), content_type=content_type, gzip_ok=True)


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler

    @classmethod
    def of(cls, method: str, template: str, handler: Handler) -> Route:
        """`template` uses `{name}` for one path segment and `{name:path}` for several."""
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+?)", template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return cls(method, re.compile(f"^{regex}/?$"), handler)


class SystemEmulator:
    """What a system module provides. Subclasses set `name` and implement the hooks."""

    name: str = ""

    def __init__(self, world: World) -> None:
        self.world = world
        self._routes: list[Route] | None = None

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def route_table(self) -> list[Route]:
        if self._routes is None:
            self._routes = self.routes()
        return self._routes

    def authorized(self, request: Request) -> bool:
        """True when the request carries this system's credentials (any non-empty value)."""
        raise NotImplementedError

    def unauthorized(self, request: Request) -> Response:
        """The system's real 401 response."""
        raise NotImplementedError

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        """The system's real rate-limit response (429, or GitHub's 403) with its real headers."""
        raise NotImplementedError

    def error(self, request: Request, exc: HTTPError) -> Response:
        """The system's error body for 4xx/5xx answers raised by handlers."""
        return json_response(exc.body if exc.body is not None else {"message": exc.message}, exc.status)

    def env(self) -> dict[str, str]:
        """`SOURCES__<SYSTEM>__…` credentials (any non-empty value works) and the world's selection
        (org/repos, projects, root folders, project id) — everything but the base URL."""
        return {}

    def common_headers(self, request: Request) -> dict[str, str]:
        """Headers on every successful response (e.g. rate-limit counters)."""
        return {}


def page_slice(items: list[Any], offset: int, limit: int, request: Request) -> list[Any]:
    """items[offset:offset+limit]; under the `duplicate` fault, the previous page's last record repeats."""
    page = items[offset : offset + limit]
    if "duplicate" in request.faults and offset > 0 and page:
        page = [items[offset - 1], *page]
    return page
