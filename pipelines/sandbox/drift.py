"""Schema drift and bad records, injected into the sandbox's answers (tests of the sources' bad-input handling).

A `DriftPlan` holds `Drift` rules: a system, a path pattern and what to do to a matching successful
answer. `records` edits the records of a JSON body (the body itself when it is a list, else the list
under `key`), `lines` edits the events of a streamed JSONL body (Mixpanel's export), and `malformed`
replaces the body with JSON cut in the middle (a stream: puts a line that is no JSON ahead of it),
every time, so a client's retries cannot get past it.
The emulators stay untouched: the server applies the plan to whatever they answered
(`SandboxServer(world, drift=plan)`, or `server.drift = plan` between runs).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipelines.sandbox.http import Request, Response

Record = dict[str, Any]
Edit = Callable[[Record], Record | None]
"""Changes one record in place or returns its replacement; returning None keeps the (edited) record."""


@dataclass
class Drift:
    """One rule: answers of `system` whose path matches `path` (a regex, searched) are changed.

    `query`: (name, value) pairs the request must also carry, e.g. `("page", "2")`.
    """

    system: str
    path: str
    edit: Edit | None = None
    key: str | None = None
    where: Callable[[Record], bool] | None = None
    limit: int | None = None
    malformed: bool = False
    stream: bool = False
    query: tuple[tuple[str, str], ...] = ()
    applied: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def matches(self, request: Request) -> bool:
        """True when this rule applies to `request`."""
        if request.system != self.system or not self._pattern.search(request.path):
            return False
        return all(value in request.query.get(name, []) for name, value in self.query)

    def _take(self, record: Record) -> bool:
        """Whether to edit `record`: it matches `where` and the rule has edits left (counted)."""
        if self.where is not None and not self.where(record):
            return False
        with self._lock:
            if self.limit is not None and self.applied >= self.limit:
                return False
            self.applied += 1
        return True

    def _edit(self, record: Record) -> Record:
        assert self.edit is not None
        replaced = self.edit(record)
        return record if replaced is None else replaced

    def apply(self, response: Response) -> Response:
        """The answer with this rule applied."""
        if self.malformed:
            with self._lock:
                self.applied += 1
            if response.streamed:  # JSONL: one line that is no JSON at all, ahead of the real ones
                response.body = self._garbled(response.body)  # type: ignore[arg-type]
                return response
            # Valid JSON up to a point, then cut: what a proxy that drops the end of a body sends.
            response.body = b'{"total_count": 3, "items": [{"id": 1}, {"id": '
            return response
        if self.stream:
            response.body = self._lines(response.body)  # type: ignore[arg-type]
            return response
        body = orjson.loads(bytes(response.body))  # type: ignore[arg-type]
        items = body if self.key is None else body.get(self.key)
        if isinstance(items, list):
            for i, record in enumerate(items):
                if isinstance(record, dict) and self._take(record):
                    items[i] = self._edit(record)
        elif isinstance(body, dict) and self.key is None and self._take(body):
            body = self._edit(body)
        response.body = orjson.dumps(body)
        return response

    @staticmethod
    def _garbled(chunks: Iterable[bytes]) -> Iterator[bytes]:
        yield b'{"event": "Signed Up", "properties": {"time": 17\n'
        yield from chunks

    def _lines(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        carry = b""
        for chunk in chunks:
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield self._edit_lines(data[:cut])
        if carry:
            yield self._edit_lines(carry)

    def _edit_lines(self, block: bytes) -> bytes:
        out = []
        for line in block.split(b"\n"):
            if line.strip():
                record = orjson.loads(line)
                if self._take(record):
                    record = self._edit(record)
                line = orjson.dumps(record)
            out.append(line)
        return b"\n".join(out)


@dataclass
class DriftPlan:
    """The rules the server applies to successful answers, in order."""

    drifts: list[Drift] = field(default_factory=list)

    def add(self, drift: Drift) -> Drift:
        """Add a rule; returns it (its `applied` counts the records or bodies it changed)."""
        self.drifts.append(drift)
        return drift

    def clear(self) -> None:
        """Drop every rule (the next run sees the emulators' own answers)."""
        self.drifts.clear()

    def apply(self, request: Request, response: Response) -> Response:
        """`response` with every matching rule applied; error answers are left alone."""
        if response.status >= 400:
            return response
        for drift in self.drifts:
            if drift.matches(request):
                response = drift.apply(response)
        return response


def records(
    system: str,
    path: str,
    edit: Edit,
    *,
    key: str | None = None,
    where: Callable[[Record], bool] | None = None,
    limit: int | None = None,
    query: tuple[tuple[str, str], ...] = (),
) -> Drift:
    """A rule editing the records of matching JSON answers (the list under `key`, else the body)."""
    return Drift(system, path, edit, key=key, where=where, limit=limit, query=query)


def lines(
    system: str, path: str, edit: Edit, *, where: Callable[[Record], bool] | None = None, limit: int | None = None
) -> Drift:
    """A rule editing the events of a streamed JSONL answer (Mixpanel's export)."""
    return Drift(system, path, edit, where=where, limit=limit, stream=True)


def malformed(system: str, path: str, *, query: tuple[tuple[str, str], ...] = ()) -> Drift:
    """A rule answering cut JSON (status 200, a JSON content type) every time."""
    return Drift(system, path, malformed=True, query=query)
