"""Reproducible fault injection for the emulator.

A fault spec is `kind=probability` pairs, e.g. `rate_limit=0.05,server_error=0.02,truncate=0.01`.
Whether a request is faulted depends only on the fault seed, the request (method, system, path,
query) and how many times that same request was seen before, so a given client behaviour meets
the same faults on every run. A request is never faulted more than `max_consecutive` times in a
row, so a client that retries always gets through.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from dataclasses import dataclass, field

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
