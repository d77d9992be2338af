"""Reproducible fault injection for the emulator.

A fault spec is `kind=probability` pairs, e.g. `rate_limit=0.05,server_error=0.02,truncate=0.01`.
Whether a request is faulted depends only on the fault seed, the request (method, system, path,
query) and how many times that same request was seen before, so a given client behaviour meets
the same faults on every run. A request is never faulted more than `max_consecutive` times in a
row, so a client that retries always gets through.

`reject_credentials` makes one system refuse every request's credentials, with a 401 or a 403 that
carries no rate-limit signal: what a revoked token, a wrong key or a missing permission looks like.
Unlike the fault kinds it never lets a request through, as a real API would not.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import orjson

from pipelines.sandbox.http import JSON, HTTPError, Request, Response, Route, SystemEmulator

FAULT_KINDS = ("rate_limit", "server_error", "slow", "truncate", "duplicate", "mutate")
FAILING_KINDS = ("rate_limit", "server_error", "truncate")
"""Kinds that replace the response; at most one applies to a request (in this order)."""


def parse_fault_spec(spec: str | None) -> dict[str, float]:
    """Parse `kind=p,kind=p`; raises ValueError naming the bad part."""
    rates: dict[str, float] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        kind, sep, value = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in FAULT_KINDS:
            raise ValueError(f"bad fault {part!r}: expected kind=probability with kind one of {', '.join(FAULT_KINDS)}")
        try:
            p = float(value)
        except ValueError as exc:
            raise ValueError(f"bad fault {part!r}: {value!r} is not a number") from exc
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"bad fault {part!r}: probability must be between 0 and 1")
        rates[kind] = p
    return rates


@dataclass
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    max_consecutive: int = 3
    _seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _streak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return any(p > 0 for p in self.rates.values())

    def _draw(self, key: str, attempt: int, kind: str) -> float:
        digest = hashlib.sha256(f"{self.seed}|{key}|{attempt}|{kind}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def decide(self, key: str) -> frozenset[str]:
        """The faults for the next occurrence of the request identified by `key`."""
        if not self.active:
            return frozenset()
        with self._lock:
            attempt = self._seen[key]
            self._seen[key] += 1
            streak = self._streak[key]
        kinds = {k for k, p in self.rates.items() if p > 0 and self._draw(key, attempt, k) < p}
        failing = [k for k in FAILING_KINDS if k in kinds]
        if failing and streak >= self.max_consecutive:
            failing = []
        kinds = (kinds - set(FAILING_KINDS)) | set(failing[:1])
        with self._lock:
            self._streak[key] = streak + 1 if failing else 0
        return frozenset(kinds)


# --------------------------------------------------------------------------------------------------
# Rejected credentials
# --------------------------------------------------------------------------------------------------

REJECTION_STATUSES = (401, 403)

_FORBIDDEN: dict[str, tuple[str, bytes]] = {
    # (content type, body) of each system's 403 for credentials that are valid but not allowed.
    "github": (
        JSON,
        orjson.dumps(
            {
                "message": "Resource not accessible by personal access token",
                "documentation_url": "https://docs.github.com/rest/repos/repos#list-organization-repositories",
                "status": "403",
            }
        ),
    ),
    "jira": (
        JSON,
        orjson.dumps({"errorMessages": ["You do not have permission to view this resource."], "errors": {}}),
    ),
    "jenkins": (
        "text/html;charset=utf-8",
        b"<html><head><title>Error 403 Forbidden</title></head><body><h2>HTTP ERROR 403 Forbidden</h2>"
        b"<p>opsmap is missing the Overall/Read permission</p></body></html>",
    ),
    "datadog": (JSON, orjson.dumps({"errors": ["Forbidden"]})),
    "mixpanel": (
        JSON,
        orjson.dumps(
            {"error": "Permission denied: this service account has no access to the project", "status": "error"}
        ),
    ),
}


_UNAUTHORIZED: dict[str, bytes] = {
    # The 401 body of systems whose emulator answers missing credentials with something else (Datadog: 403).
    "datadog": orjson.dumps({"errors": ["Unauthorized"]}),
}


class RejectedCredentials(SystemEmulator):
    """A system emulator that refuses every request's credentials with `status` (401 or 403).

    A 401 is the system's own (`unauthorized`) where that is a 401, else a JSON 401; a 403 is the
    system's answer to credentials without permission, with no `Retry-After`, no exhausted
    `X-RateLimit-*` and no rate-limit wording, so a client must not mistake it for a rate limit.
    Everything else (routes, errors, configuration) is the wrapped emulator's.
    """

    def __init__(self, inner: SystemEmulator, status: int) -> None:
        if status not in REJECTION_STATUSES:
            raise ValueError(f"status must be one of {REJECTION_STATUSES}, not {status}")
        super().__init__(inner.world)
        self.inner = inner
        self.name = inner.name
        self.status = status
        self.refused = 0  # requests answered with `status`: a client that retries shows here
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return self.inner.route_table()

    def authorized(self, request: Request) -> bool:
        return False

    def unauthorized(self, request: Request) -> Response:
        with self._lock:
            self.refused += 1
        if self.status == 401:
            own = self.inner.unauthorized(request)
            if own.status == 401:
                return own
            return Response(401, _UNAUTHORIZED.get(self.name, orjson.dumps({"message": "Unauthorized"})))
        content_type, body = _FORBIDDEN.get(self.name, (JSON, orjson.dumps({"message": "Forbidden"})))
        return Response(403, body, content_type=content_type)

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        return self.inner.rate_limited(request, wait_seconds)

    def error(self, request: Request, exc: HTTPError) -> Response:
        return self.inner.error(request, exc)

    def env(self) -> dict[str, str]:
        return self.inner.env()


def reject_credentials(emulators: MutableMapping[str, SystemEmulator], system: str, status: int) -> RejectedCredentials:
    """Make `system` of a running sandbox (`SandboxServer.emulators`) reject every request with `status`."""
    inner = emulators[system]
    rejecting = RejectedCredentials(inner.inner if isinstance(inner, RejectedCredentials) else inner, status)
    emulators[system] = rejecting
    return rejecting
