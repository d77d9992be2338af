"""The one HTTP layer every opsmap source uses: auth, timeouts, retries, rate limits, clear errors.

`make_session(system, ...)` returns a `SourceSession` (a `requests.Session`). Use it directly in
hand-written resources, or hand it to dlt: `RESTClient(base_url, session=s)` or the declarative
`rest_api` config `{"client": {"base_url": ..., "session": s}}`.

dlt's `RESTClient` prepares requests itself and calls `session.send(prepared, **settings)`, never
`session.request`, and passes no timeout unless the caller does. So the default timeout and every
retry live in `SourceSession.send`, the layer both dlt and `session.get(...)` go through. dlt
also attaches its own raise-for-status response hook; `send` holds the request's hooks back until
the retries are settled, so dlt cannot raise on a 503 we are about to retry, and a generic dlt
`HTTPError` for a final 4xx is replaced by our `SourceHTTPError` naming the config key to fix.

Per-system rate-limit rules follow shared/docs/source-apis.md (see `POLICIES`). Nothing here puts
a request header, an Authorization value or a credential-like query parameter into an exception,
a log line or a `repr`.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import threading
import time
from base64 import b64decode, b64encode
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from http import HTTPStatus
from importlib import metadata
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from requests.hooks import default_hooks, dispatch_hook
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError, ReadTimeoutError

logger = logging.getLogger("opsmap.http")

SYSTEMS: Final = ("jira", "github", "jenkins", "datadog", "mixpanel")

# Statuses retried as "the server had a bad moment". 501 and 505 are not transient.
TRANSIENT_STATUSES: Final = frozenset({500, 502, 503, 504})

# The config keys (dlt env-var form) that hold each system's credentials, primary key first.
CREDENTIAL_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "github": ("ACCESS_TOKEN",),
    "jira": ("API_TOKEN", "EMAIL"),
    "jenkins": ("API_TOKEN", "USERNAME"),
    "datadog": ("API_KEY", "APPLICATION_KEY"),
    "mixpanel": ("API_SECRET", "USERNAME", "PROJECT_ID"),
}

# Headers every request to a system carries, whatever the auth. GitHub: pin the API version because
# a newer dated version (2026-03-10) exists and defaults may move (source-apis.md §1).
SYSTEM_HEADERS: Final[Mapping[str, Mapping[str, str]]] = {
    "github": {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
}

# Headers that carry secrets but are not "Authorization", which requests already strips on a
# redirect to another host; we strip these too so a Datadog key never follows a redirect off-site.
_SECRET_HEADERS: Final = ("DD-API-KEY", "DD-APPLICATION-KEY")


def config_key(system: str, key: str) -> str:
    """Return the dlt environment-variable name for a source setting, e.g. `SOURCES__GITHUB__BASE_URL`."""
    return f"SOURCES__{system.upper()}__{key.upper()}"


@lru_cache(maxsize=1)
def user_agent() -> str:
    """Return the `User-Agent` sent on every request: `opsmap/<installed version>`."""
    try:
        version = metadata.version("opsmap")
    except metadata.PackageNotFoundError:  # running from a tree that was never pip-installed
        version = "0+unknown"
    return f"opsmap/{version}"


# --------------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------------

# Words that make a query parameter credential-like (matched per word of the name, so `api_key`,
# `apiKey`, `X-Amz-Signature` and `sig` match but `monkey` and `design` do not).
_SENSITIVE_WORDS: Final = frozenset(
    {"token", "key", "apikey", "secret", "password", "passwd", "pwd", "sig", "signature", "auth"}
    | {"credential", "credentials", "session", "jwt"}
)
# Substrings that are credential-like wherever they appear (e.g. `accesstoken`, `clientsecret`).
_SENSITIVE_SUBSTRINGS: Final = ("token", "secret", "password", "apikey", "api_key")
# Pagination cursors whose names contain "token" but hold nothing secret (Jira search/jql, fact 4);
# keeping them readable makes paging errors debuggable.
_CURSOR_PARAMS: Final = frozenset({"nextpagetoken", "pagetoken", "page_token", "next_page_token"})
_REDACTED: Final = "***"


def is_sensitive_param(name: str) -> bool:
    """Return True when a query-parameter name looks like it carries a credential."""
    lowered = name.lower()
    if lowered in _CURSOR_PARAMS:
        return False
    if any(s in lowered for s in _SENSITIVE_SUBSTRINGS):
        return True
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(word in _SENSITIVE_WORDS for word in words)


def redacted_endpoint(url: str) -> str:
    """Return the URL's path and query string with credential-like query values replaced by `***`.

    The host and any `user:password@` part are dropped; the rest keeps its original encoding so it
    can be pasted into a browser or curl command.
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    if not parts.query:
        return path
    kept = []
    for pair in parts.query.split("&"):
        name, sep, _value = pair.partition("=")
        kept.append(f"{name}={_REDACTED}" if sep and is_sensitive_param(unquote_plus(name)) else pair)
    return f"{path}?{'&'.join(kept)}"


_MIN_SCRUB_LENGTH: Final = 8
# Authorization-style values, in case an upstream message ever echoes one.
_AUTH_VALUE = re.compile(r"\b(Bearer|Basic|token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove known secret values and Authorization-style values from free text."""
    for secret in secrets:
        # Real tokens are 20-40+ characters; scrubbing shorter strings would shred ordinary words.
        if len(secret) >= _MIN_SCRUB_LENGTH:
            text = text.replace(secret, _REDACTED)
    return _AUTH_VALUE.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class SourceHTTPError(requests.HTTPError):
    """A source request failed; the message says what failed and which config key to check.

    Subclasses `requests.HTTPError` so code (and dlt) that handles requests' errors keeps working.
    `response` holds the last response, if any; treat it as sensitive (its `.request` still
    carries the auth headers). `str`, `repr` and pickling never include it.
    """

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        method: str = "",
        endpoint: str = "",
        status: int | None = None,
        config_key: str | None = None,
        config_keys: tuple[str, ...] = (),
        response: Response | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.system = system
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.config_key = config_key
        self.config_keys = config_keys or ((config_key,) if config_key else ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would pickle `response` (and the auth headers on its request); drop it.
        state = {k: v for k, v in self.__dict__.items() if k not in ("response", "request")}
        return (type(self), (str(self),), state)


_E = TypeVar("_E", bound=SourceHTTPError)


class SourceAuthError(SourceHTTPError):
    """401, or a 403 that is not a rate limit: the credentials were rejected. Never retried."""


class SourceNotFoundError(SourceHTTPError):
    """404: a wrong base URL, or a selected project/repository/job that does not exist."""


class SourceRateLimitError(SourceHTTPError):
    """Still rate limited after the rate-limit retry budget, or asked to wait longer than `max_wait`."""


class SourceRetriesExhaustedError(SourceHTTPError):
    """5xx, connection errors, timeouts or truncated bodies persisted through every retry."""


class SourceMalformedResponseError(SourceRetriesExhaustedError):
    """A JSON response body still did not parse after every retry."""


# --------------------------------------------------------------------------------------------------
# Auth helpers
# --------------------------------------------------------------------------------------------------


def _basic(username: str, password: str) -> str:
    return "Basic " + b64encode(f"{username}:{password}".encode()).decode("ascii")


def _require(value: str | None, system: str, key: str) -> str:
    if not value:
        raise ValueError(f"{system}: {config_key(system, key)} is empty; set it to use this source.")
    return value


class SourceAuth(AuthBase):
    """Base of the per-system auth helpers: secrets stay out of `repr` and are known for scrubbing."""

    system: str = ""

    def secrets(self) -> tuple[str, ...]:
        """Return every string that must never appear in a message (tokens and encoded headers)."""
        return ()

    def config_keys(self) -> tuple[str, ...]:
        """Return the config keys this auth was built from, primary first."""
        return tuple(config_key(self.system, k) for k in CREDENTIAL_KEYS[self.system][:1])

    def _public(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._public()})"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:  # pragma: no cover - abstract
        raise NotImplementedError


class GitHubAuth(SourceAuth):
    """GitHub: `Authorization: Bearer <token>` plus the JSON media type and a pinned API version."""

    system = "github"

    def __init__(self, token: str) -> None:
        self._token = _require(token, "github", "ACCESS_TOKEN")

    def secrets(self) -> tuple[str, ...]:
        """Return the token."""
        return (self._token,)

    def _public(self) -> str:
        return f"token='{_REDACTED}'"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        # Keep a media type the caller chose (e.g. `.diff`); replace only requests' `*/*` default.
        if r.headers.get("Accept") in (None, "*/*"):
            r.headers["Accept"] = SYSTEM_HEADERS["github"]["Accept"]
        r.headers.setdefault("X-GitHub-Api-Version", SYSTEM_HEADERS["github"]["X-GitHub-Api-Version"])
        return r


class JiraAuth(SourceAuth):
    """Jira: Basic `email:api_token` (Cloud) or, without an email, a Bearer PAT (Data Center)."""

    system = "jira"

    def __init__(self, api_token: str, email: str | None = None) -> None:
        self._token = _require(api_token, "jira", "API_TOKEN")
        self.email = email or None
        self._header = _basic(self.email, self._token) if self.email else f"Bearer {self._token}"

    def secrets(self) -> tuple[str, ...]:
        """Return the token and the encoded header value."""
        return (self._token, self._header.split(" ", 1)[1])

    def config_keys(self) -> tuple[str, ...]:
        """Return API_TOKEN, plus EMAIL when Basic auth is used."""
        keys = ("API_TOKEN", "EMAIL") if self.email else ("API_TOKEN",)
        return tuple(config_key("jira", k) for k in keys)

    def _public(self) -> str:
        return f"email={self.email!r}, api_token='{_REDACTED}'"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = self._header
        return r


class JenkinsAuth(SourceAuth):
    """Jenkins: Basic `username:api_token`."""

    system = "jenkins"

    def __init__(self, username: str, api_token: str) -> None:
        self.username = _require(username, "jenkins", "USERNAME")
        self._token = _require(api_token, "jenkins", "API_TOKEN")
        self._header = _basic(self.username, self._token)

    def secrets(self) -> tuple[str, ...]:
        """Return the token and the encoded header value."""
        return (self._token, self._header.split(" ", 1)[1])

    def config_keys(self) -> tuple[str, ...]:
        """Return API_TOKEN and USERNAME."""
        return (config_key("jenkins", "API_TOKEN"), config_key("jenkins", "USERNAME"))

    def _public(self) -> str:
        return f"username={self.username!r}, api_token='{_REDACTED}'"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = self._header
        return r


class DatadogAuth(SourceAuth):
    """Datadog: `DD-API-KEY` and (for reads) `DD-APPLICATION-KEY` headers."""

    system = "datadog"

    def __init__(self, api_key: str, application_key: str | None = None) -> None:
        self._api_key = _require(api_key, "datadog", "API_KEY")
        self._app_key = application_key or None

    def secrets(self) -> tuple[str, ...]:
        """Return both keys."""
        return tuple(s for s in (self._api_key, self._app_key) if s)

    def config_keys(self) -> tuple[str, ...]:
        """Return API_KEY and APPLICATION_KEY."""
        return (config_key("datadog", "API_KEY"), config_key("datadog", "APPLICATION_KEY"))

    def _public(self) -> str:
        app = f"'{_REDACTED}'" if self._app_key else "None"
        return f"api_key='{_REDACTED}', application_key={app}"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["DD-API-KEY"] = self._api_key
        if self._app_key:
            r.headers["DD-APPLICATION-KEY"] = self._app_key
        return r


class MixpanelAuth(SourceAuth):
    """Mixpanel: service account Basic `username:secret` + `project_id`, or legacy `secret:`."""

    system = "mixpanel"

    def __init__(self, secret: str, username: str | None = None, project_id: str | int | None = None) -> None:
        self._secret = _require(secret, "mixpanel", "API_SECRET")
        self.username = username or None
        self.project_id = str(project_id) if project_id not in (None, "") else None
        if self.username and not self.project_id:
            # Service-account requests without project_id are rejected (source-apis.md §4).
            raise ValueError(
                f"mixpanel: a service account ({config_key('mixpanel', 'USERNAME')}) also needs "
                f"{config_key('mixpanel', 'PROJECT_ID')}."
            )
        # Legacy project secret: the secret is the Basic username and the password is empty.
        self._header = _basic(self.username, self._secret) if self.username else _basic(self._secret, "")

    def secrets(self) -> tuple[str, ...]:
        """Return the secret and the encoded header value."""
        return (self._secret, self._header.split(" ", 1)[1])

    def config_keys(self) -> tuple[str, ...]:
        """Return API_SECRET, plus USERNAME and PROJECT_ID for a service account."""
        keys = ("API_SECRET", "USERNAME", "PROJECT_ID") if self.username else ("API_SECRET",)
        return tuple(config_key("mixpanel", k) for k in keys)

    def _public(self) -> str:
        return f"username={self.username!r}, project_id={self.project_id!r}, secret='{_REDACTED}'"

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = self._header
        if self.project_id and "project_id" not in dict(parse_qsl(urlsplit(r.url or "").query)):
            r.prepare_url(r.url, {"project_id": self.project_id})
        return r


# --------------------------------------------------------------------------------------------------
# Rate-limit policies
# --------------------------------------------------------------------------------------------------

ResetFormat = Literal["epoch", "seconds", "iso8601"]
Hint = Literal["retry_after", "reset"]


@dataclass(frozen=True)
class RateLimitHit:
    """A response was recognised as a rate limit. `wait` is None when no hint was given (back off)."""

    wait: float | None
    signal: str


@dataclass(frozen=True)
class RateLimitPolicy:
    """How one system signals "slow down" and how long it asks us to wait.

    statuses: statuses that can be rate limits; those in `needs_signal` count only when a header or
    body marker says so (a bare GitHub 403 is a permission failure, a bare Jira 503 a plain 5xx).
    hints: the wait hints to read, in order. `combine="first"` takes the first present hint,
    `combine="max"` waits long enough to satisfy every present hint.
    """

    system: str
    statuses: frozenset[int]
    needs_signal: frozenset[int] = frozenset()
    hints: tuple[Hint, ...] = ("retry_after",)
    combine: Literal["first", "max"] = "first"
    reset_header: str = "X-RateLimit-Reset"
    reset_format: ResetFormat = "seconds"
    reset_needs_exhausted: bool = False
    body_markers: tuple[str, ...] = ()
    no_hint_wait: float | None = None
    min_reset_wait: float = 0.0

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, now: float) -> RateLimitHit | None:
        """Return a `RateLimitHit` when the response is a rate limit, else None.

        `headers` should be case-insensitive (requests' `CaseInsensitiveDict`); `now` is epoch seconds.
        """
        if status not in self.statuses:
            return None
        headers = headers if isinstance(headers, CaseInsensitiveDict) else CaseInsensitiveDict(headers)
        waits: list[tuple[float, str]] = []
        for hint in self.hints:
            wait = self._retry_after(headers, now) if hint == "retry_after" else self._reset(headers, now)
            if wait is not None:
                waits.append((wait, hint))
                if self.combine == "first":
                    break
        if waits:
            wait, hint = max(waits)
            return RateLimitHit(wait=wait, signal=hint)
        if self.reset_needs_exhausted and self._exhausted(headers):  # remaining 0 but no usable reset
            return RateLimitHit(wait=self.no_hint_wait, signal="remaining")
        if self.body_markers and _body_mentions(body, self.body_markers):
            return RateLimitHit(wait=self.no_hint_wait, signal="body")
        if status in self.needs_signal:
            return None
        return RateLimitHit(wait=self.no_hint_wait, signal="status")

    def _retry_after(self, headers: Mapping[str, str], now: float) -> float | None:
        value = (headers.get("Retry-After") or "").strip()
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:  # the HTTP-date form, e.g. "Wed, 21 Oct 2015 07:28:00 GMT"
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None

    @staticmethod
    def _exhausted(headers: Mapping[str, str]) -> bool:
        return (headers.get("X-RateLimit-Remaining") or "").strip() == "0"

    def _reset(self, headers: Mapping[str, str], now: float) -> float | None:
        if self.reset_needs_exhausted and not self._exhausted(headers):
            return None
        value = (headers.get(self.reset_header) or "").strip()
        if not value:
            return None
        try:
            if self.reset_format == "seconds":
                return max(0.0, float(value))
            reset_at = float(value) if self.reset_format == "epoch" else _iso_timestamp(value)
        except ValueError:
            return None
        # A reset in the past (clock skew, or it just passed) still waits a moment before retrying.
        return max(self.min_reset_wait, reset_at - now)


def _iso_timestamp(value: str) -> float:
    parsed = datetime.fromisoformat(value)  # 3.11 accepts `2024-05-01T10:15Z` and `+0000` offsets
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _body_mentions(body: bytes, markers: tuple[str, ...]) -> bool:
    try:
        message = orjson.loads(body).get("message", "")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(message, str) and any(m in message.lower() for m in markers)


POLICIES: Final[Mapping[str, RateLimitPolicy]] = {
    # Primary limit: 403/429 + remaining 0 → until the epoch reset (≥1 s). Secondary limit: Retry-After,
    # or a "rate limit"/"abuse" message with no header → 60 s, GitHub's documented minimum. Both
    # headers present → satisfy both. A 429 with no signs at all still waits the minimum minute.
    "github": RateLimitPolicy(
        system="github",
        statuses=frozenset({403, 429}),
        needs_signal=frozenset({403}),
        hints=("reset", "retry_after"),
        combine="max",
        reset_format="epoch",
        reset_needs_exhausted=True,
        body_markers=("rate limit", "abuse"),
        no_hint_wait=60.0,
        min_reset_wait=1.0,
    ),
    # X-RateLimit-Reset is seconds until reset; Retry-After is ignored, as the official client does.
    "datadog": RateLimitPolicy(system="datadog", statuses=frozenset({429}), hints=("reset",), reset_format="seconds"),
    # Retry-After (seconds) first, else X-RateLimit-Reset as ISO-8601 (`2024-05-01T10:15Z`), else back off.
    "jira": RateLimitPolicy(
        system="jira",
        statuses=frozenset({429, 503}),
        needs_signal=frozenset({503}),
        hints=("retry_after", "reset"),
        reset_format="iso8601",
        min_reset_wait=1.0,
    ),
    "mixpanel": RateLimitPolicy(system="mixpanel", statuses=frozenset({429})),
    # Jenkins sends no rate-limit headers; a proxy in front of it may send Retry-After.
    "jenkins": RateLimitPolicy(system="jenkins", statuses=frozenset({429, 503}), needs_signal=frozenset({503})),
}


# --------------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------------


class HTTPStats:
    """Thread-safe counters of what a session did, for progress output and benchmarks.

    `bytes_received` counts decoded body bytes (after gzip), including error bodies; for streamed
    responses it grows as the caller reads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries: Counter[str] = Counter()
        self.rate_limit_wait_s = 0.0
        self.backoff_wait_s = 0.0
        self.bytes_received = 0

    def record_request(self) -> None:
        """Count one request sent (every attempt counts)."""
        with self._lock:
            self.requests += 1

    def record_retry(self, reason: str, wait: float, *, rate_limited: bool) -> None:
        """Count a retry and the seconds waited before it."""
        with self._lock:
            self.retries[reason] += 1
            if rate_limited:
                self.rate_limit_wait_s += wait
            else:
                self.backoff_wait_s += wait

    def record_bytes(self, n: int) -> None:
        """Add received body bytes."""
        with self._lock:
            self.bytes_received += n

    def snapshot(self) -> dict[str, Any]:
        """Return a consistent copy of all counters as plain data."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": dict(self.retries),
                "rate_limit_wait_s": self.rate_limit_wait_s,
                "backoff_wait_s": self.backoff_wait_s,
                "bytes_received": self.bytes_received,
            }

    def __repr__(self) -> str:
        return f"HTTPStats({self.snapshot()})"


# --------------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------------

# Errors raised while sending or while reading a non-streamed body that a retry can cure. The body
# is read inside `Session.send`, so a connection closed mid-body surfaces here as
# ChunkedEncodingError (urllib3 ProtocolError/IncompleteRead) or ContentDecodingError (bad gzip).
_TRANSIENT_ERRORS: Final = (
    requests.ConnectionError,
    requests.Timeout,
    ChunkedEncodingError,
    ContentDecodingError,
    ProtocolError,
    http.client.IncompleteRead,
)

_TRUNCATION_ERRORS: Final = (
    ChunkedEncodingError,
    ContentDecodingError,
    ProtocolError,
    http.client.IncompleteRead,
)

_EXCEPTION_TEXT: Final = {
    "connect_timeout": "connection timed out",
    "read_timeout": "no response within the read timeout",
    "connect_error": "connection failed",
    "truncated_body": "the response body was cut off (connection closed mid-body)",
}


def _exception_reason(exc: BaseException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read_timeout"
    # A cut gzip stream fails to decode, so ContentDecodingError is a truncation too.
    if isinstance(exc, _TRUNCATION_ERRORS):
        return "truncated_body"
    # requests turns a read timeout in the middle of a body into ConnectionError(ReadTimeoutError).
    if exc.args and isinstance(exc.args[0], ReadTimeoutError):
        return "read_timeout"
    return "connect_error"


def _is_json(response: Response) -> bool:
    mime = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    # Exact JSON types only: x-ndjson / jsonl bodies are many documents and would never parse whole.
    return mime in ("application/json", "text/json") or mime.endswith("+json")


def _json_problem(body: bytes) -> str | None:
    """Return why `body` is not JSON, or None when it parses (an empty body is fine: 204, 202)."""
    if not body.strip():
        return None
    try:
        orjson.loads(body)
        return None
    except orjson.JSONDecodeError as exc:
        try:
            # response.json() uses the stdlib, which also accepts NaN/Infinity that orjson rejects.
            json.loads(body)
            return None
        except ValueError:
            return str(exc)


def _reason_phrase(response: Response) -> str:
    if response.reason:
        return str(response.reason)
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return ""


def _join_keys(keys: tuple[str, ...]) -> str:
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} and {keys[-1]}"


@dataclass
class _Call:
    """Per-call state of one logical request (its attempts and what they used)."""

    method: str
    endpoint: str
    replayable: bool
    secrets: tuple[str, ...]  # what this request sent as credentials, scrubbed from every message
    retries: int = 0
    rate_limit_retries: int = 0

    @property
    def credentialed(self) -> bool:
        return bool(self.secrets)


def _sent_secrets(headers: Mapping[str, str]) -> list[str]:
    """The credential values a prepared request carries, whoever set them (our auth, dlt's, a caller)."""
    found: list[str] = []
    for name in ("Authorization", *_SECRET_HEADERS):
        value = headers.get(name)
        if not value:
            continue
        found.append(value)
        scheme, _, credential = value.partition(" ")
        if name == "Authorization" and credential:
            found.append(credential)
            if scheme.lower() == "basic":
                try:
                    user, _, password = b64decode(credential).decode().partition(":")
                except ValueError:  # not base64 / not UTF-8: the encoded form is already listed
                    continue
                # The password, or the user when the password is empty (a legacy Mixpanel secret).
                found.append(password or user)
    return found


class SourceSession(requests.Session):
    """A `requests.Session` for one source system; build it with `make_session`.

    Thread-safe to share: per-call state lives on the stack, counters in a locked `HTTPStats`, and
    urllib3's connection pool is thread-safe.
    """

    def __init__(
        self,
        system: str,
        *,
        policy: RateLimitPolicy,
        timeout: tuple[float, float],
        max_retries: int,
        max_rate_limit_retries: int,
        backoff_base: float,
        backoff_max: float,
        max_wait: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        selection_key: str | None,
        pool_size: int,
    ) -> None:
        super().__init__()
        self.system = system
        self.policy = policy
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_rate_limit_retries = max_rate_limit_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_wait = max_wait
        self.selection_key = selection_key
        self.stats = HTTPStats()
        self._sleep = sleep
        self._clock = clock
        self.headers["User-Agent"] = user_agent()
        self.headers.update(SYSTEM_HEADERS.get(system, {}))
        # max_retries=0: urllib3 must not retry behind our back (it would double the budget).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"SourceSession(system={self.system!r}, auth={self.auth!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> SourceSession:
        # dlt's rest_api deep-copies its whole config (session included) only to validate it. A
        # session is a shared resource (pool, stats, lock), so a "copy" is the session itself.
        return self

    # -- the layer dlt calls -------------------------------------------------------------------

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Send with the default timeout, retries, rate-limit waits and clear errors.

        Response hooks (dlt's raise-for-status, rest_api response actions) run once, on the final
        response. Raises a `SourceHTTPError` subclass for any final status >= 400 a hook did not
        handle (e.g. by raising dlt's `IgnoreResponseException`).
        """
        if kwargs.get("timeout") is None:  # requests passes timeout=None explicitly; dlt passes none
            kwargs["timeout"] = self.timeout
        stream = bool(kwargs.get("stream", self.stream))
        hooks = request.hooks
        bare = request.copy()
        bare.hooks = default_hooks()
        call = _Call(
            method=(request.method or "GET").upper(),
            endpoint=redacted_endpoint(request.url or ""),
            # A generator or file body cannot be sent twice.
            replayable=request.body is None or isinstance(request.body, bytes | str),
            secrets=tuple(dict.fromkeys([*self._auth_secrets(), *_sent_secrets(request.headers)])),
        )
        while True:
            self.stats.record_request()
            try:
                response = super().send(bare, **kwargs)
            except requests.exceptions.SSLError:
                # A certificate problem will not fix itself; report it without the library text,
                # which can quote the full URL.
                raise self._error(
                    SourceHTTPError, call, "TLS/certificate error", key="BASE_URL", why="check the host"
                ) from None
            except _TRANSIENT_ERRORS as exc:
                self._retry_transient(call, _exception_reason(exc), None)
                continue
            self._track_bytes(response, stream)
            # Error bodies are small, so read them even when streamed: GitHub's rate-limit message
            # lives there, and error messages quote them.
            try:
                body = response.content if response.status_code >= 400 else b""
            except _TRANSIENT_ERRORS as exc:  # a streamed error answer cut mid-body: retry like any cut body
                response.close()
                self._retry_transient(call, _exception_reason(exc), None)
                continue
            hit = self.policy.classify(response.status_code, response.headers, body, self._clock())
            if hit is not None:
                self._retry_rate_limited(call, response, hit)
                response.close()
                continue
            if response.status_code in TRANSIENT_STATUSES:
                self._retry_transient(call, f"http_{response.status_code}", response)
                response.close()
                continue
            if not stream and response.ok and _is_json(response):
                problem = _json_problem(response.content)
                if problem is not None:
                    self._retry_transient(call, "malformed_json", response, detail=problem)
                    continue
            return self._finish(call, response, hooks, kwargs)

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        """Strip every secret header, not only Authorization, on a redirect to another host."""
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url or "", prepared_request.url or ""):
            for name in _SECRET_HEADERS:
                prepared_request.headers.pop(name, None)

    # -- retries ---------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of parallel workers apart.
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def _retry_transient(
        self, call: _Call, reason: str, response: Response | None, *, detail: str | None = None
    ) -> None:
        what = self._describe(reason, response)
        if call.retries >= self.max_retries or not call.replayable:
            attempts = call.retries + 1
            if reason == "malformed_json":
                raise self._error(
                    SourceMalformedResponseError,
                    call,
                    f"{what}, but the JSON body was malformed after {attempts} attempts ({detail}); "
                    "the server or a proxy is cutting or corrupting responses",
                    response=response,
                )
            unreachable = reason in ("connect_error", "connect_timeout")
            raise self._error(
                SourceRetriesExhaustedError,
                call,
                f"{what} after {attempts} attempts; the service kept failing, re-run later",
                key="BASE_URL" if unreachable else None,
                why="the host could not be reached" if unreachable else None,
                response=response,
            )
        wait = self._backoff(call.retries)
        call.retries += 1
        self._wait(call, reason, what, wait, call.retries, self.max_retries, rate_limited=False)

    def _retry_rate_limited(self, call: _Call, response: Response, hit: RateLimitHit) -> None:
        what = f"{response.status_code} {_reason_phrase(response)} (rate limited, {hit.signal})"
        wait = hit.wait if hit.wait is not None else self._backoff(call.rate_limit_retries)
        if wait > self.max_wait:
            raise self._rate_limit_error(
                call,
                response,
                f"{what}; the API asks to wait {wait:.0f} s, more than max_wait="
                f"{self.max_wait:.0f} s. Re-run after the limit resets",
            )
        if call.rate_limit_retries >= self.max_rate_limit_retries:
            raise self._rate_limit_error(
                call, response, f"{what}; still limited after {call.rate_limit_retries} rate-limit retries"
            )
        call.rate_limit_retries += 1
        budget = self.max_rate_limit_retries
        self._wait(call, "rate_limit", what, wait, call.rate_limit_retries, budget, rate_limited=True)

    def _rate_limit_error(self, call: _Call, response: Response, what: str) -> SourceRateLimitError:
        if self.system == "github" and not call.credentialed:
            # Unauthenticated GitHub calls get 60 requests per hour instead of 5000.
            return self._error(
                SourceRateLimitError,
                call,
                what,
                key="ACCESS_TOKEN",
                response=response,
                why="unauthenticated requests get 60 per hour",
            )
        return self._error(SourceRateLimitError, call, what, response=response)

    def _wait(
        self,
        call: _Call,
        reason: str,
        what: str,
        wait: float,
        attempt: int,
        budget: int,
        *,
        rate_limited: bool,
    ) -> None:
        logger.debug(
            "%s: %s %s → %s; retry %d/%d in %.2f s (reason=%s)",
            self.system,
            call.method,
            call.endpoint,
            what,
            attempt,
            budget,
            wait,
            reason,
        )
        self.stats.record_retry(reason, wait, rate_limited=rate_limited)
        if wait > 0:
            self._sleep(wait)

    # -- results and errors ----------------------------------------------------------------------

    def _finish(self, call: _Call, response: Response, hooks: Any, kwargs: dict[str, Any]) -> Response:
        if response.status_code < 400:
            return dispatch_hook("response", hooks, response, **kwargs)
        replaced = False
        try:
            response = dispatch_hook("response", hooks, response, **kwargs)
        except SourceHTTPError:
            raise
        except requests.HTTPError:
            # dlt's generic raise-for-status hook; raised below as our error naming the key to fix.
            replaced = True
        if replaced or response.status_code >= 400:
            raise self._status_error(call, response)
        return response

    def _status_error(self, call: _Call, response: Response) -> SourceHTTPError:
        status = response.status_code
        what = f"{status} {_reason_phrase(response)}"
        if status in (401, 403):
            keys = self._credential_keys()
            if not call.credentialed:
                why = "no credentials were sent"
            elif status == 401:
                why = "the token was rejected" if len(keys) == 1 else "the credentials were rejected"
            elif self.system == "datadog":  # Datadog answers 403 for a wrong key as well as a missing permission
                why = "the keys were rejected or lack permission for this resource"
            else:
                why = "the credentials were accepted but lack permission for this resource"
            return self._error(SourceAuthError, call, what, keys=keys, why=why, response=response)
        if status == 404:
            keys = (config_key(self.system, "BASE_URL"),)
            if self.selection_key:
                keys += (config_key(self.system, self.selection_key),)
            why = "no such resource, or the credentials cannot see it"
            return self._error(SourceNotFoundError, call, what, keys=keys, why=why, joiner=" or ", response=response)
        excerpt = self._excerpt(call, response)
        return self._error(SourceHTTPError, call, f"{what}: {excerpt}" if excerpt else what, response=response)

    def _credential_keys(self) -> tuple[str, ...]:
        if isinstance(self.auth, SourceAuth):
            return self.auth.config_keys()
        return tuple(config_key(self.system, k) for k in CREDENTIAL_KEYS[self.system])

    def _auth_secrets(self) -> tuple[str, ...]:
        return self.auth.secrets() if isinstance(self.auth, SourceAuth) else ()

    def _excerpt(self, call: _Call, response: Response, limit: int = 200) -> str:
        """A short, scrubbed excerpt of an error body (e.g. GitHub's 422 `message`)."""
        try:
            text = response.text
        except (requests.RequestException, RuntimeError):  # a streamed body already consumed
            return ""
        text = " ".join(text.split())
        if len(text) > limit:
            text = text[:limit] + "…"
        return scrub(text, call.secrets)

    def _error(
        self,
        cls: type[_E],
        call: _Call,
        what: str,
        *,
        key: str | None = None,
        keys: tuple[str, ...] = (),
        why: str | None = None,
        joiner: str | None = None,
        response: Response | None = None,
    ) -> _E:
        keys = keys or ((config_key(self.system, key),) if key else ())
        message = f"{self.system}: {call.method} {call.endpoint} → {what}."
        if keys:
            listed = joiner.join(keys) if joiner else _join_keys(keys)
            message += f" Check {listed}" + (f" ({why})." if why else ".")
        return cls(
            scrub(message, call.secrets),
            system=self.system,
            method=call.method,
            endpoint=call.endpoint,
            status=response.status_code if response is not None else None,
            config_key=keys[0] if keys else None,
            config_keys=keys,
            response=response,
        )

    def _describe(self, reason: str, response: Response | None) -> str:
        if response is not None:
            return f"{response.status_code} {_reason_phrase(response)}"
        return _EXCEPTION_TEXT.get(reason, reason)

    def _track_bytes(self, response: Response, stream: bool) -> None:
        if not stream:
            self.stats.record_bytes(len(response.content or b""))
            return
        # Streamed: count as the caller reads (iter_lines and .content both go through iter_content).
        original = response.iter_content
        stats = self.stats

        def iter_content(chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[Any]:
            for chunk in original(chunk_size=chunk_size, decode_unicode=decode_unicode):
                stats.record_bytes(len(chunk))
                yield chunk

        response.iter_content = iter_content  # type: ignore[method-assign]


def make_session(
    system: str,
    *,
    auth: AuthBase | None = None,
    max_retries: int = 5,
    max_rate_limit_retries: int = 20,
    timeout: tuple[float, float] = (10.0, 60.0),
    backoff_base: float = 1.0,
    backoff_max: float = 60.0,
    max_wait: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    selection_key: str | None = None,
    pool_size: int = 16,
) -> SourceSession:
    """Build the session a source uses for every request to `system` (one of `SYSTEMS`).

    Args:
        system: "jira", "github", "jenkins", "datadog" or "mixpanel"; picks the rate-limit policy
            and the config keys named in errors.
        auth: usually the system's helper (`GitHubAuth`, `JiraAuth`, ...); None for anonymous calls.
        max_retries: retries for 5xx, connection errors, timeouts, truncated or malformed bodies.
        max_rate_limit_retries: a separate, larger budget for rate-limit waits, which are expected
            on big backfills and say how long to wait.
        timeout: (connect, read) seconds, applied when the caller passes none. Read is per socket
            read, so a long streamed export is fine as long as bytes keep coming.
        backoff_base, backoff_max: exponential backoff with full jitter, `uniform(0, min(max, base*2^n))`.
        max_wait: the longest single wait allowed; a rate limit asking for more raises
            `SourceRateLimitError` instead of stalling the run (GitHub's primary reset can be an hour).
        sleep, clock: injectable for tests (`clock` is epoch seconds, used for reset headers).
        selection_key: the config key naming what the source selects (e.g. "REPOSITORIES"), named in
            404 errors next to BASE_URL.
        pool_size: connections kept per host; match the number of parallel resources.
    """
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")
    session = SourceSession(
        system,
        policy=POLICIES[system],
        timeout=timeout,
        max_retries=max_retries,
        max_rate_limit_retries=max_rate_limit_retries,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        max_wait=max_wait,
        sleep=sleep,
        clock=clock,
        selection_key=selection_key,
        pool_size=pool_size,
    )
    session.auth = auth
    return session
