"""Field-path contract between real API recordings and the sandbox emulator's payloads.

A JSON value is flattened into *field paths* (``user.login``, ``labels[].name``,
``changelog.histories[].items[].field``), each with the set of *kinds* seen there. A top-level
list contributes paths starting with ``[]`` (``[].user.login``); the elements of every list
(top-level or nested) are merged, so a path is known if *any* item carries it. That is how
optional fields work: the emulated payload must carry each recorded path at least once across
its items, not on every item.

Kinds
-----
``null``, ``bool``, ``int``, ``float``, ``string``, ``object``, ``array``, refined as follows.

The empty string is ``string:empty``. Strings matching a format get ``string:<format>`` (see
``STRING_FORMATS``; checked in order, whole-string match). ISO-8601 timestamps are named
``iso8601[-<fraction>]-<zone>``: fraction ``ms`` (3 digits), ``us`` (6), ``ns`` (9) or ``frac``
(any other count); zone ``z`` (``Z``), ``offset`` (``+00:00``), ``offset-nocolon`` (``+0800``) or
``naive`` (none). Other formats: ``date`` (``2024-01-02``), ``jenkins-id-date``
(``2014-10-26_10-12-29``), ``datetime-space`` (Jenkins git ``2016-03-03 17:12:23 +0100``),
``rfc1123`` (HTTP dates), ``url`` (``http(s)://...``), ``sha40`` (40 lower-case hex). Examples:
``2024-01-02T03:04:05Z`` is ``string:iso8601-z``; Jira's ``2020-06-12T08:13:13.360+0800`` is
``string:iso8601-ms-offset-nocolon``; Datadog incidents' ``...05.123456+00:00`` is
``string:iso8601-us-offset``.

Numbers that are epoch timestamps become ``int:epoch-s|ms|us|ns`` (or ``float:epoch-...``).
Rule: the value must lie between 2000-01-01 and 2100-01-01 in that unit, i.e. in
``[946_684_800, 4_102_444_800) * 1000**k`` for k = 0 (s), 1 (ms), 2 (us), 3 (ns). These four
windows do not overlap, so the magnitude alone names the unit. The ms/us/ns windows are far above
any id or counter in these APIs, so they apply to any number except under a key naming a duration
(``DURATION_WORDS``: Datadog CI ``duration`` is in ns, and 16-68 minutes in ns fall in the ms
window). The seconds window collides with ids (GitHub ids are around 1e9), so seconds are
recognised only when the nearest object key has a time-like word (``TIME_WORDS``: ``time``,
``timestamp``, ``created``, ``ts``, ``at``, ...). Keys are split into words on ``_``, ``$``, ``-``
and camelCase (``startTimeMillis`` -> start, time, millis). Booleans are never numbers.

Comparison (``compare``)
------------------------
Each recorded path must exist in the emulated payload (else ``missing``). For a path present on
both sides, every non-null emulated kind must be *allowed* by the recorded kinds:

- ``null`` on either side is compatible with anything (a path recorded only as null accepts
  any kind); so is ``""`` (``string:empty``, the usual "no value" of ``homepage``, ``target_url``,
  ``description``) with any string kind: an emulated ``""`` is accepted wherever a string was
  recorded, and a recorded ``""`` counts as a plain ``string``;
- the same kind is allowed;
- a refined kind (``string:url``, ``int:epoch-ms``) is allowed where the recording has the plain
  base kind (``string``, ``int``): the recording made no promise about format there. The
  reverse is not allowed: a plain ``string`` where only ``string:iso8601-z`` was recorded is a
  format mismatch, and ``int:epoch-s`` where ``int:epoch-ms`` was recorded is a unit mismatch;
- ``int`` and ``float`` are distinct kinds: an ``int`` where only ``float`` was recorded (or the
  reverse, with the same epoch refinement) is allowed only on paths matching ``mixed_numbers``,
  for numbers whose JSON spelling varies (a double printed ``0`` or ``0.5``, Go printing ``1``
  where Python prints ``1.0``).

Extra emulated paths are not problems. ``ignore`` globs drop a path and everything below it;
``any_kind`` globs keep the presence check but skip the kind check (a field whose format changed
across the recorded API versions); ``maps`` globs mark objects whose keys are data (GitHub
``rate_limit.resources``, Datadog SLO ``thresholds``): the child keys of a matching path are
collapsed to ``*`` on both sides. Globs
match the full path and only ``*`` is special: it matches any run of characters, ``.`` and
``[]`` included, so ``*.fields`` matches ``[].fields`` and ``issues[].fields`` (``[]`` in a glob
is literal).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

NULL, BOOL, INT, FLOAT, STRING, OBJECT, ARRAY = "null", "bool", "int", "float", "string", "object", "array"
EMPTY = f"{STRING}:empty"

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(?P<frac>\d+))?(?P<zone>Z|[+-]\d{2}:\d{2}|[+-]\d{4})?")
_FRACTION_NAMES = {3: "ms", 6: "us", 9: "ns"}

#: Non-ISO string formats, checked in order after ISO-8601 (whole-string match).
STRING_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("date", re.compile(r"\d{4}-\d{2}-\d{2}")),
    # Old Jenkins build ids (before 1.597): 2014-10-26_10-12-29.
    ("jenkins-id-date", re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")),
    # Jenkins git changeSet `date`: 2016-03-03 17:12:23 +0100 (or a zone name).
    ("datetime-space", re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?: ?(?:[+-]\d{4}|[A-Z]{2,5}))?")),
    # HTTP dates (RFC 7231): Wed, 26 Aug 2020 13:30:00 GMT.
    ("rfc1123", re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")),
    ("url", re.compile(r"https?://\S+")),
    ("sha40", re.compile(r"[0-9a-f]{40}")),
)

#: Words (lower-case tokens of a key, split on ``_``, ``$``, ``-``, ``.`` and camelCase) that let
#: a number in the epoch-seconds window count as a timestamp.
# fmt: off
TIME_WORDS = frozenset({
    "at", "created", "date", "end", "ended", "epoch", "expires", "from", "millis", "milliseconds",
    "modified", "ms", "reset", "since", "start", "started", "time", "times", "timestamp", "to", "ts",
    "until", "updated",
})
# fmt: on

#: Words that mark a number as a duration, never an epoch timestamp.
DURATION_WORDS = frozenset({"duration", "elapsed", "latency"})

_YEAR_2000_S, _YEAR_2100_S = 946_684_800, 4_102_444_800
_EPOCH_UNITS = (("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000))
_KEY_TOKENS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def string_kind(text: str) -> str:
    """Return ``string``, ``string:empty`` or ``string:<format>`` for a JSON string."""
    if not text:
        return EMPTY
    iso = _ISO.fullmatch(text)
    if iso:
        frac, zone = iso.group("frac"), iso.group("zone")
        parts = ["iso8601"]
        if frac:
            parts.append(_FRACTION_NAMES.get(len(frac), "frac"))
        if not zone:
            parts.append("naive")
        elif zone == "Z":
            parts.append("z")
        else:
            parts.append("offset" if ":" in zone else "offset-nocolon")
        return f"{STRING}:{'-'.join(parts)}"
    for name, pattern in STRING_FORMATS:
        if pattern.fullmatch(text):
            return f"{STRING}:{name}"
    return STRING


def _key_words(key: str | None) -> set[str]:
    return {token.lower() for token in _KEY_TOKENS.findall(key or "")}


def number_kind(number: int | float, key: str | None = None) -> str:
    """Return ``int``/``float``, refined to ``<base>:epoch-<unit>`` for epoch timestamps.

    ``key`` is the nearest object key above the number (for list elements, the list's key); it
    is consulted only for the seconds window, as described in the module docstring.
    """
    base = FLOAT if isinstance(number, float) else INT
    words = _key_words(key)
    if words & DURATION_WORDS:
        return base
    for unit, scale in _EPOCH_UNITS:
        if _YEAR_2000_S * scale <= number < _YEAR_2100_S * scale:
            if unit == "s" and not words & TIME_WORDS:
                return base
            return f"{base}:epoch-{unit}"
    return base


def kind_of(value: Any, key: str | None = None) -> str:
    """Return the kind of one JSON value (``key``: nearest object key, for epoch detection)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return number_kind(value, key)
    if isinstance(value, str):
        return string_kind(value)
    if isinstance(value, Mapping):
        return OBJECT
    if isinstance(value, list | tuple):
        return ARRAY
    raise TypeError(f"not a JSON value: {type(value).__name__}")


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def matches(path: str, patterns: Iterable[str]) -> bool:
    """True if ``path`` matches one of the globs; only ``*`` is special (any run of characters)."""
    return any(_glob(pattern).fullmatch(path) for pattern in patterns)


def field_paths(value: Any, *, maps: Iterable[str] = ()) -> dict[str, set[str]]:
    """Return every field path in ``value`` with the set of kinds seen there.

    The root itself has no path. List elements are merged under ``<path>[]``; an object whose
    path matches a ``maps`` glob has its keys collapsed to ``*``.
    """
    map_globs = tuple(maps)
    paths: dict[str, set[str]] = {}

    def walk(node: Any, path: str, key: str | None) -> None:
        if path:
            paths.setdefault(path, set()).add(kind_of(node, key))
        if isinstance(node, Mapping):
            collapse = bool(map_globs) and matches(path, map_globs)
            for child_key, child in node.items():
                name = "*" if collapse else str(child_key)
                walk(child, f"{path}.{name}" if path else name, str(child_key))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, f"{path}[]", key)

    walk(value, "", None)
    return paths


def _base(kind: str) -> str:
    return kind.split(":", 1)[0]


def _allowed(kind: str, recorded: set[str], numbers_vary: bool) -> bool:
    """Whether an emulated (non-null) kind is allowed by the recorded (non-null) kinds."""
    base = _base(kind)
    if EMPTY in recorded:
        recorded = recorded | {STRING}
    if kind == EMPTY:
        return any(_base(other) == STRING for other in recorded)
    if kind in recorded or base in recorded:
        return True
    if numbers_vary and base in (INT, FLOAT):
        swapped = (FLOAT if base == INT else INT) + kind[len(base) :]
        return swapped in recorded or _base(swapped) in recorded
    return False


def _fmt(kinds: set[str]) -> str:
    return "|".join(sorted(kinds))


def _prefixes(path: str) -> list[str]:
    """``a.b[].c`` -> ``a``, ``a.b``, ``a.b[]``, ``a.b[].c``: every ancestor path, then the path."""
    out = []
    for i, char in enumerate(path):
        if char == "." or (char == "[" and i > 0):
            out.append(path[:i])
        if char == "]":
            out.append(path[: i + 1])
    return list(dict.fromkeys([*out, path]))


def compare(
    recorded: Any,
    emulated: Any,
    *,
    ignore: Iterable[str] = (),
    maps: Iterable[str] = (),
    mixed_numbers: Iterable[str] = (),
    any_kind: Iterable[str] = (),
) -> list[str]:
    """Return the contract problems of ``emulated`` against ``recorded``, one line each.

    ``ignore``: globs of paths to skip together with everything below them. ``maps``: globs of
    paths whose child keys are data, collapsed to ``*``. ``mixed_numbers``: globs of paths where
    ``int`` and ``float`` stand for each other (``("*",)`` for everywhere). ``any_kind``: globs of
    paths checked for presence only. Problems are sorted by path; an empty list means the
    emulated payload satisfies the recording.
    """
    ignore_globs, map_globs = tuple(ignore), tuple(maps)
    number_globs, loose_globs = tuple(mixed_numbers), tuple(any_kind)
    want = field_paths(recorded, maps=map_globs)
    have = field_paths(emulated, maps=map_globs)
    problems: list[str] = []
    for path in sorted(want):
        if ignore_globs and any(matches(prefix, ignore_globs) for prefix in _prefixes(path)):
            continue
        recorded_kinds = want[path] - {NULL}
        if path not in have:
            problems.append(f"missing: {path} (recorded {_fmt(want[path])})")
            continue
        if not recorded_kinds or (loose_globs and matches(path, loose_globs)):
            continue
        numbers_vary = bool(number_globs) and matches(path, number_globs)
        bad = {k for k in have[path] - {NULL} if not _allowed(k, recorded_kinds, numbers_vary)}
        if bad:
            problems.append(f"kind mismatch: {path}: recorded {_fmt(want[path])}, emulated {_fmt(bad)}")
    return problems


def normalize_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Lower-case HTTP header names (they are case-insensitive; recordings mix both spellings)."""
    return {str(name).lower(): value for name, value in headers.items()}


def load_fixture(path: str | Path) -> Any:
    """Load a recording: ``.jsonl`` -> list of items; ``.headers.json`` -> lower-cased headers dict;
    other ``.json`` -> the parsed body (``.recorded.json`` stays wrapped: see ``recorded_interactions``).
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    if file.name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if file.name.endswith(".headers.json"):
        return normalize_headers(data["headers"])
    return data


def recorded_interactions(wrapper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Unwrap a ``*.recorded.json`` fixture into its interactions, in order.

    Each interaction is ``{"status": int, "headers": dict (lower-cased names), "body": Any}``. The
    wrapper (``{"_note", "interactions": [{"request", "status", "headers", "body"}]}``) was added
    by the fixture collector; bodies are JSON values, or ``""`` for the recorded empty 429 bodies.
    """
    return [
        {"status": item["status"], "headers": normalize_headers(item["headers"]), "body": item["body"]}
        for item in wrapper["interactions"]
    ]


def select(value: Any, dotted: str | None) -> Any:
    """Return the sub-value at a dotted object path (``"workflow_runs"``, ``"data"``); ``None``/``""``
    returns ``value`` itself. Used to go from a response body to the item list that is compared.
    """
    if not dotted:
        return value
    for key in dotted.split("."):
        value = value[key]
    return value


def align(shape: str, recorded: Any, emulated_body: Any, items_path: str | None) -> tuple[Any, Any]:
    """Return the ``(recorded, emulated)`` pair to ``compare`` for a fixture of the given shape.

    ``shape``: ``"response"`` (the fixture is a whole response body: compare bodies),
    ``"items"`` (the fixture is a list of items, e.g. a JSONL file: compare it with the emulated
    body's items at ``items_path``) or ``"item"`` (the fixture is one item of a list endpoint: it
    is wrapped in a list and compared with the emulated items). ``items_path`` is ``""`` for a
    bare-array body. To compare against several emulated pages or requests, concatenate their
    items and pass the list as ``emulated_body`` with ``items_path=""``.
    """
    if shape == "response":
        return recorded, emulated_body
    if items_path is None:
        raise ValueError(f"shape {shape!r} needs the endpoint's items_path")
    items = select(emulated_body, items_path)
    if shape == "items":
        return recorded, items
    if shape == "item":
        return [recorded], items
    raise ValueError(f"unknown fixture shape: {shape!r}")
