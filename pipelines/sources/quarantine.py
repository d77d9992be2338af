"""Bad input from a source: every record is checked against its table's contract before it is loaded.

Each source builds a `Gate` per table from the columns it declares (the ones the staging models read,
with their dlt types), the primary key and the few fields its own paging needs (a cursor, a path to a
child endpoint). `Gate.split(page, endpoint)` returns the records that pass and, for the others,
rows for the `quarantine` table of the same raw dataset (`raw_github.quarantine`, …): the system,
the table the record was meant for, the request that returned it, what identifies it, the field, the
reason and the record itself as JSON. The outcomes (the README's "Bad input" table says the same):

- a record missing its primary key, or a field the source needs, or a declared field whose value
  dlt cannot store in the declared type (a type change, a timestamp in an unexpected format, an
  object that became a list) is **quarantined**, not loaded. A partial row must not be merged over
  the good version an earlier run loaded, so the earlier version stays as it was;
- when one field fails on most of a page (at least `SYSTEMATIC_MIN_RECORDS` records and more than
  half of it), the API changed rather than one record went bad: the source **stops** with a
  `SourceDataError` naming the system, the request, a record and the field. Quarantining every
  record would leave the table silently stale while the run looks green;
- anything else **evolves**, as dlt does by default: a new field becomes a column (a new list, a
  child table), a type change in an undeclared field goes to a dlt variant column
  (`<column>__v_<type>`), a vanished field is loaded as NULL with its column and earlier values
  kept. The gate names new fields, variant columns and new child tables in a warning, checking the
  first record of every page and every record whose set of top-level fields is new.

Quarantine rows travel through the resource that read the record, tagged for the `quarantine`
table (`routed`): a dlt table variant with its own columns, append-only. Child resources must not
see them (`shield`), and an incremental cursor must let them through (`on_cursor_value_missing`
"include"). Every source declares the table (`declare_table`), so it exists, empty, after any load.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Final

import dlt
import orjson
from dlt.common.data_types.type_helpers import coerce_value, py_type_to_sc_type
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.common.schema.typing import TColumnSchema, TSchemaContract
from dlt.common.schema.utils import new_table
from dlt.extract.items import DataItemWithMeta, TableNameMeta
from dlt.extract.items_transform import BaseItemTransform, ItemTransform
from dlt.extract.resource import DltResource

from pipelines.sources.http import SourceHTTPError, redacted_endpoint

logger = logging.getLogger("opsmap.sources.quarantine")

QUARANTINE_TABLE: Final = "quarantine"

SYSTEMATIC_MIN_RECORDS: Final = 5
"""Five records: below that a page is too small to tell an API change from a few bad records."""
SYSTEMATIC_SHARE: Final = 0.5
"""More than half a page failing on the same field is a change of the API, not of some records."""

QUARANTINE_DESCRIPTION: Final = (
    "Records a source read but did not load because they broke their table's contract (a missing "
    "primary key, a value of the wrong type, a timestamp in an unexpected format, an object that became "
    "a list); one row per record, with the reason and the record as received. Append-only."
)
QUARANTINE_COLUMNS: Final[dict[str, tuple[str, str]]] = {
    "system": ("text", "The source system: github, jira, jenkins, datadog or mixpanel."),
    "table_name": ("text", "The raw table the record was meant for, e.g. `pull_requests`."),
    "endpoint": ("text", "The request that returned the record: method, path and query, credentials redacted."),
    "record_key": (
        "text",
        "What identifies the record as far as it could be read: its primary key (`id=123`), else another "
        "identifying field (`number=12`); null when nothing identifies it.",
    ),
    "field": ("text", "The first field that broke the contract, as a column name (`updated_at`, `user__login`)."),
    "reason": ("text", "Why the record was quarantined; every failed field, separated by `; `."),
    "payload": ("text", "The record as the source received it, as JSON text."),
    "quarantined_at": ("timestamp", "When the source quarantined the record (UTC); `_dlt_load_id` names the load."),
}
_LOAD_ID_DOC: Final = "The dlt load that stored the row (`_dlt_loads.load_id`)."
_ROW_ID_DOC: Final = "dlt's unique id of the row."
_NOT_NULL: Final = ("system", "table_name", "reason", "payload", "quarantined_at")
QUARANTINE_CONTRACT: Final[TSchemaContract] = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
"""The quarantine table's shape is ours, not an API's: a row that does not fit it is a bug, so dlt raises."""
DATA_CONTRACT: Final[TSchemaContract] = {"tables": "evolve", "columns": "evolve", "data_type": "evolve"}
"""Data tables evolve (dlt's default, made explicit): contracts can only freeze or silently discard, and
they run after the records left the source, where neither the request nor a quarantine is at hand."""

IDENTIFYING_FIELDS: Final = ("number", "key", "full_name", "name", "sha", "html_url", "url", "id")
"""Fields that name a record when its primary key cannot be read, most specific first."""


class SourceDataError(SourceHTTPError):
    """A response's data broke its table's contract on most of a page: the API changed. Never retried.

    Subclasses `SourceHTTPError` so the extraction's failure handling (`pipelines.failures`) finds it
    as the root cause and shows its message, which names the system, request, record and field.
    """

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        method: str = "",
        endpoint: str = "",
        table: str = "",
        field: str = "",
        record_key: str | None = None,
    ) -> None:
        super().__init__(message, system=system, method=method, endpoint=endpoint)
        self.table = table
        self.field = field
        self.record_key = record_key


# --------------------------------------------------------------------------------------------------
# Routing quarantine rows through dlt
# --------------------------------------------------------------------------------------------------


def quarantine_columns() -> dict[str, TColumnSchema]:
    """Column hints of the quarantine table, descriptions included (fresh dicts: dlt writes into hints)."""
    return {
        name: {"name": name, "data_type": kind, "nullable": name not in _NOT_NULL, "description": doc}  # type: ignore[typeddict-item]
        for name, (kind, doc) in QUARANTINE_COLUMNS.items()
    }


def declare_table() -> None:
    """Declare the quarantine table in the source's schema (call inside a `@dlt.source` function).

    `create_declared_tables` then creates it, empty, after the first load: a query of it never fails
    on a dataset that had nothing to quarantine yet.
    """
    load_columns: list[TColumnSchema] = [
        {"name": "_dlt_load_id", "data_type": "text", "nullable": False, "description": _LOAD_ID_DOC},
        {
            "name": "_dlt_id",
            "data_type": "text",
            "nullable": False,
            "unique": True,
            "row_key": True,
            "description": _ROW_ID_DOC,
        },
    ]
    table = new_table(
        QUARANTINE_TABLE,
        write_disposition="append",
        columns=[*quarantine_columns().values(), *load_columns],
        schema_contract=QUARANTINE_CONTRACT,
    )
    table["description"] = QUARANTINE_DESCRIPTION
    dlt.current.source_schema().update_table(table)


def routed(*resources: DltResource) -> None:
    """Let each resource send rows to the quarantine table: a table variant with the quarantine's own hints.

    A variant starts from a copy of the resource's hints (its columns, primary key, merge disposition),
    so they are cleared first. Data tables get `DATA_CONTRACT`.
    """
    for resource in resources:
        resource.apply_hints(schema_contract=DATA_CONTRACT)
        resource.apply_hints(
            table_name=QUARANTINE_TABLE,
            create_table_variant=True,
            write_disposition="append",
            columns={},
            primary_key=[],
            merge_key=[],
            nested_hints={},
            schema_contract=QUARANTINE_CONTRACT,
        )
        resource.apply_hints(table_name=QUARANTINE_TABLE, create_table_variant=True, columns=quarantine_columns())


def is_quarantine(meta: Any) -> bool:
    """True for an item tagged for the quarantine table."""
    return isinstance(meta, TableNameMeta) and meta.table_name == QUARANTINE_TABLE


def not_quarantined(item: Any, meta: Any = None) -> bool:
    """A dlt filter that drops quarantine items (their records must not feed child resources)."""
    return not is_quarantine(meta)


def shield(*children: DltResource) -> None:
    """Keep a parent's quarantine rows from reaching its child resources (transformers).

    The filter goes in front of the transformer function: a child reads its parent's records (an id,
    a name for its request path) and a quarantine row has none of them.
    """
    for child in children:
        child.add_filter(not_quarantined, insert_at=0)


def quarantined(rows: list[dict[str, Any]]) -> DataItemWithMeta:
    """Quarantine rows tagged for the quarantine table, ready to be yielded by a resource."""
    return dlt.mark.with_table_name(rows, QUARANTINE_TABLE)


def with_quarantine(rows: Any, bad: list[dict[str, Any]]) -> Iterator[Any]:
    """`rows`, then the quarantine rows if any: what a resource (or a deferred call) yields for one page."""
    yield rows
    if bad:
        yield quarantined(bad)


def page_endpoint(page: Any) -> str:
    """`GET /path?query` of a page dlt's REST client returned (credentials redacted), or "" if unknown."""
    response = getattr(page, "response", None)
    if response is None or not getattr(response, "url", None):
        return ""
    method = getattr(response.request, "method", None) or "GET"
    return f"{method} {redacted_endpoint(response.url)}"


# --------------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------------

_NAMING = NamingConvention()


@lru_cache(maxsize=65536)
def _norm(key: str) -> str:
    """A raw field name as dlt names its column (`fullName` → `full_name`)."""
    return _NAMING.normalize_identifier(key)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def describe_value(value: Any) -> str:
    """A value as a reason names it: its kind, and the value itself when it is short."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    text = repr(value)
    return f"text ({text[:60]}{'…' if len(text) > 60 else ''})"


def _timestamp_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{describe_value(value)} where an ISO-8601 timestamp was expected"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"a timestamp in an unexpected format: {describe_value(value)}, expected ISO 8601 with a UTC offset"
    if parsed.tzinfo is None:
        return f"a timestamp without a UTC offset: {describe_value(value)}"
    return None


_NATURAL: Final[dict[str, tuple[type, ...]]] = {
    "text": (str, int, float, bool),  # dlt writes numbers and booleans into a text column as text
    "bigint": (int,),
    "double": (int, float),
    "bool": (bool,),
}


_FAST: Final = frozenset({(str, "text"), (int, "text"), (float, "text"), (bool, "text"), (int, "bigint")})
_FAST |= {(int, "double"), (float, "double"), (bool, "bool")}
"""(Python type, dlt type) pairs that need no check: most values of most records."""


def type_problem(kind: str, value: Any) -> str | None:
    """Why `value` cannot be loaded into a column of dlt type `kind`, or None when it can.

    dlt's own coercion decides (a numeric string is a fine bigint), except for timestamps, which must
    be ISO 8601 with an offset: dlt would read a bare number as epoch seconds, milliseconds included,
    and a naive time as UTC, which for Jira (user's time zone) is wrong.
    """
    if value is None or kind == "json":
        return None
    if kind == "timestamp":
        return _timestamp_problem(value)
    if isinstance(value, dict | list):
        return f"{describe_value(value)} where {kind} was expected"
    if isinstance(value, _NATURAL.get(kind, ())) and not (isinstance(value, bool) and kind in ("bigint", "double")):
        return None
    if kind == "date" and isinstance(value, str):
        try:
            date.fromisoformat(value)
            return None
        except ValueError:
            return f"a date in an unexpected format: {describe_value(value)}"
    try:
        coerce_value(kind, py_type_to_sc_type(type(value)), value)  # type: ignore[arg-type]
    except Exception:  # dlt raises whatever the conversion raised (ValueError, ParserError, …)
        return f"{describe_value(value)} where {kind} was expected"
    return None


def _coercible(kind: str, value: Any) -> bool:
    """Whether dlt itself stores `value` in a column of type `kind` (else it makes a variant column)."""
    if kind == "json" or (isinstance(value, _NATURAL.get(kind, ())) and not isinstance(value, bool)):
        return True
    try:
        coerce_value(kind, py_type_to_sc_type(type(value)), value)  # type: ignore[arg-type]
    except Exception:  # dlt raises whatever the conversion raised
        return False
    return True


@dataclass(frozen=True)
class _Field:
    column: str
    kind: str | None
    required: bool
    is_list: bool


@dataclass
class _Node:
    """One step of the declared paths (`user` → `login`), shared by every column below it."""

    children: dict[str, _Node] = field(default_factory=dict)
    spec: _Field | None = None
    required_below: list[str] = field(default_factory=list)
    steps: tuple[tuple[str, _Node, _Field | None, bool], ...] = ()

    def freeze(self) -> None:
        """Precompute what `Gate._walk` reads for each child: it runs for every record."""
        for child in self.children.values():
            child.freeze()
        self.steps = tuple((s, c, c.spec, bool(c.required_below)) for s, c in self.children.items())


@dataclass
class Failure:
    """One field of one record that broke the contract."""

    column: str
    reason: str


class Gate:
    """The contract of one raw table, checked record by record before dlt sees them.

    Args:
        system: "github", "jira", …
        table: the raw table's name.
        columns: the declared column hints (dlt names: `user__login` is `user.login`); each is checked
            against its `data_type`.
        primary_key: the table's key columns: a record without them is quarantined.
        required: other columns the source itself reads (cursors, child request paths).
        lists: paths (dlt names) declared as child tables: they must arrive as lists.
        json: columns stored whole as JSON (not flattened; not checked for new fields below them).
        identify: names a record for `record_key` instead of its primary key (Mixpanel's `$insert_id`).
    """

    def __init__(
        self,
        system: str,
        table: str,
        *,
        columns: Mapping[str, Mapping[str, Any]] | None = None,
        primary_key: Sequence[str] = (),
        required: Sequence[str] = (),
        lists: Sequence[str] = (),
        json: Sequence[str] = (),
        identify: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.system = system
        self.identify = identify
        self.table = table
        self.primary_key = tuple(primary_key)
        declared = {
            name: spec.get("data_type") for name, spec in (columns or {}).items() if not name.startswith("_dlt")
        }
        self.declared = set(declared) | set(lists)
        self.json = {name for name, kind in declared.items() if kind == "json"} | set(json)
        must = set(self.primary_key) | set(required)
        self._root = _Node()
        for name in sorted(set(declared) | must | set(lists)):
            self._add(name, _Field(name, declared.get(name), name in must, name in lists))
        self._root.freeze()
        self._raw: dict[str, str] = {}
        self._lock = threading.Lock()
        self._shapes: set[tuple[str, ...]] = set()
        self._reported: set[str] = set()
        self._stored: tuple[dict[str, Any], set[str]] | None = None
        self.quarantined = 0

    def _add(self, name: str, spec: _Field) -> None:
        node = self._root
        for segment in name.split("__"):
            if spec.required:
                node.required_below.append(name)
            node = node.children.setdefault(segment, _Node())
        node.spec = spec
        if spec.required:
            node.required_below.append(name)

    # -- the public part ----------------------------------------------------------------------------

    def split(self, rows: Iterable[Any], endpoint: str = "") -> tuple[list[Any], list[dict[str, Any]]]:
        """The records that pass, and quarantine rows for those that do not.

        Raises `SourceDataError` when one field fails on most of the page (see the module docstring).
        """
        page = rows if isinstance(rows, list) else list(rows)
        good: list[Any] = []
        bad: list[tuple[Any, list[Failure]]] = []
        for row in page:
            failures = self.check(row)
            if failures:
                bad.append((row, failures))
            else:
                good.append(row)
        if page:
            self._observe(good or page, endpoint)
        return good, self.reject(len(page), bad, endpoint)

    def reject(self, total: int, bad: list[tuple[Any, list[Failure]]], endpoint: str) -> list[dict[str, Any]]:
        """Quarantine rows for the records of a page of `total` that failed (each with its failures).

        Raises `SourceDataError` when one field failed on most of the page.
        """
        if not bad:
            return []
        self._stop_if_systematic(total, bad, endpoint)
        now = datetime.now(UTC)
        out = [self.quarantine_row(row, failures, endpoint, now) for row, failures in bad]
        with self._lock:
            self.quarantined += len(out)
        first = out[0]
        logger.warning(
            "%s: quarantined %d of %d %s records from %s (first: %s: %s) in raw_%s.%s",
            self.system,
            len(out),
            total,
            self.table,
            endpoint or "the API",
            first["record_key"] or "a record without a key",
            first["reason"],
            self.system,
            QUARANTINE_TABLE,
        )
        return out

    def check(self, row: Any) -> list[Failure]:
        """Every way `row` breaks the contract (empty when it is fine)."""
        if not isinstance(row, dict):
            return [Failure("", f"{describe_value(row)} where a record (an object) was expected")]
        failures: list[Failure] = []
        self._walk(self._root, row, "", failures)
        return failures

    def record_key(self, row: Any) -> str | None:
        """The record's primary key (`id=123`) if readable, else the first identifying field found."""
        if self.identify is not None:
            return self.identify(row)
        if not isinstance(row, dict):
            return None
        parts = []
        for column in self.primary_key:
            value = self._value(row, column)
            if value is not None and value != "":
                parts.append(f"{column}={value}")
        if parts and len(parts) == len(self.primary_key):
            return ", ".join(parts)
        for name in IDENTIFYING_FIELDS:
            value = self._value(row, name)
            if value is not None and value != "" and not isinstance(value, dict | list):
                return ", ".join([*parts, f"{name}={value}"])
        return ", ".join(parts) or None

    def quarantine_row(
        self, row: Any, failures: list[Failure], endpoint: str, at: datetime | None = None
    ) -> dict[str, Any]:
        """The quarantine table's row for `row`."""
        return {
            "system": self.system,
            "table_name": self.table,
            "endpoint": endpoint or None,
            "record_key": self.record_key(row),
            "field": failures[0].column or None,
            "reason": "; ".join(f"`{f.column}`: {f.reason}" if f.column else f.reason for f in failures),
            "payload": orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS).decode(),
            "quarantined_at": at or datetime.now(UTC),
        }

    # -- checks --------------------------------------------------------------------------------------

    def _raw_key(self, record: dict[str, Any], segment: str, thorough: bool = True) -> str | None:
        """The key of `record` that dlt names `segment` (`fullName` for `full_name`), or None.

        The snake_case and camelCase spellings are tried first; only a `thorough` look-up (a field that
        must be there) then normalises every key, since optional fields are often legitimately absent.
        """
        if segment in record:
            return segment
        known = self._raw.get(segment)
        if known is not None and known in record:
            return known
        camel = _camel(segment)
        if camel in record:
            self._raw[segment] = camel
            return camel
        if thorough:
            for key in record:
                if _norm(key) == segment:
                    self._raw[segment] = key
                    return key
        return None

    def _walk(self, node: _Node, record: dict[str, Any], prefix: str, failures: list[Failure]) -> None:
        for segment, child, spec, required in node.steps:
            raw = self._raw_key(record, segment, required)
            if raw is None:
                failures.extend(Failure(name, "missing") for name in child.required_below)
                continue
            value = record[raw]
            if value is None:
                failures.extend(Failure(name, "missing (null)") for name in child.required_below)
                continue
            if spec is not None:
                if spec.required and value == "":
                    failures.append(Failure(spec.column, "missing (empty)"))
                    continue
                if spec.is_list:
                    if not isinstance(value, list):
                        failures.append(Failure(spec.column, f"{describe_value(value)} where a list was expected"))
                    continue
                kind = spec.kind
                if kind == "json":
                    continue
                if kind is not None and (type(value), kind) not in _FAST and (problem := type_problem(kind, value)):
                    failures.append(Failure(spec.column, problem))
                    continue
            if child.steps:
                if isinstance(value, dict):
                    self._walk(child, value, f"{prefix}{segment}__", failures)
                else:
                    failures.append(
                        Failure(f"{prefix}{segment}", f"{describe_value(value)} where an object was expected")
                    )

    def _value(self, record: dict[str, Any], column: str) -> Any:
        value: Any = record
        for segment in column.split("__"):
            if not isinstance(value, dict):
                return None
            raw = self._raw_key(value, segment)
            if raw is None:
                return None
            value = value[raw]
        return value

    def _stop_if_systematic(self, total: int, bad: list[tuple[Any, list[Failure]]], endpoint: str) -> None:
        counts = Counter(f.column for _, failures in bad for f in failures)
        column, count = counts.most_common(1)[0]
        if count < SYSTEMATIC_MIN_RECORDS or count <= SYSTEMATIC_SHARE * total:
            return
        row, failure = next((r, f) for r, fs in bad for f in fs if f.column == column)
        key = self.record_key(row)
        method, _, path = endpoint.partition(" ") if endpoint else ("", "", "")
        raise SourceDataError(
            f"{self.system}: {endpoint or 'a response'} → field `{column}` of {self.table} failed on {count} of "
            f"{total} records (first: record {key or 'without a key'}: {failure.reason}). The API's data no "
            f"longer matches the declared columns; nothing of this run was loaded for {self.system}. Update the "
            f"column hints in pipelines/sources/{self.system}.py or fix the API's response.",
            system=self.system,
            method=method,
            endpoint=path,
            table=self.table,
            field=column,
            record_key=key,
        )

    # -- schema drift (evolve, and say so) ---------------------------------------------------------

    def _stored_table(self) -> tuple[dict[str, Any], set[str]] | None:
        """The table's columns and child tables from earlier loads, or None on its first load."""
        if self._stored is not None:
            return self._stored
        try:
            schema = dlt.current.source_schema()
            table = schema.tables.get(self.table)
            if not table or not table.get("x-normalizer", {}).get("seen-data"):
                return None
            columns = dict(table.get("columns") or {})
            children = {name for name in list(schema.tables) if name.startswith(f"{self.table}__")}
        except Exception:  # outside an extraction (no source schema), or the schema changed under us
            return None
        self._stored = (columns, children)
        return self._stored

    def _observe(self, rows: list[Any], endpoint: str) -> None:
        """Warn once per run about new columns, variant columns and child tables dlt will create."""
        sample = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                continue
            shape = tuple(row)
            if i == 0 or shape not in self._shapes:
                sample.append(row)
                if len(self._shapes) < 256:
                    self._shapes.add(shape)
        if not sample:
            return
        stored = self._stored_table()
        if stored is None:
            return
        columns, children = stored
        changes: dict[str, str] = {}
        for row in sample:
            self._flatten(row, "", columns, children, changes)
        fresh = {name: what for name, what in changes.items() if name not in self._reported}
        if not fresh:
            return
        with self._lock:
            self._reported.update(fresh)
        logger.warning(
            "%s: %s records from %s changed shape (dlt evolves raw_%s.%s as they load): %s",
            self.system,
            self.table,
            endpoint or "the API",
            self.system,
            self.table,
            "; ".join(f"`{name}` {what}" for name, what in sorted(fresh.items())),
        )

    def _flatten(
        self, record: dict[str, Any], prefix: str, columns: dict[str, Any], children: set[str], changes: dict[str, str]
    ) -> None:
        for key, value in record.items():
            if value is None:
                continue
            name = f"{prefix}{_norm(key)}"
            if name in self.json or (columns.get(name) or {}).get("data_type") == "json":
                continue
            if isinstance(value, dict):
                self._flatten(value, f"{name}__", columns, children, changes)
            elif isinstance(value, list):
                child = f"{self.table}__{name}"
                if value and child not in children and name not in self.declared:
                    changes[name] = f"is a new list: loaded into the new child table `{child}`"
            elif name not in columns:
                changes[name] = "is a new field: a new column"
            elif name not in self.declared:
                stored = columns[name].get("data_type")
                if stored and not _coercible(stored, value):
                    variant = f"{name}__v_{py_type_to_sc_type(type(value))}"
                    if variant not in columns:
                        changes[name] = (
                            f"changed type ({stored} → {describe_value(value)}): kept in the variant column `{variant}`"
                        )


class GateStep(ItemTransform[Any, dict[str, Any]]):
    """`Gate.split` as a pipe step, for resources dlt's `rest_api` builds (add it right after the page source).

    Right after the resource's generator the item is still dlt's `PageData`, whose response names the
    request; `endpoint_of` names it from a record where a step before has already rebuilt the list.
    """

    def __init__(self, gate: Gate, endpoint_of: Any = None) -> None:
        BaseItemTransform.__init__(self)
        self.gate = gate
        self.endpoint_of = endpoint_of

    def __call__(self, item: Any, meta: Any = None) -> Any:
        if is_quarantine(meta) or not isinstance(item, list | dict) or not item:
            return item
        page = item if isinstance(item, list) else [item]
        endpoint = page_endpoint(item)
        if not endpoint and self.endpoint_of is not None and isinstance(page[0], dict):
            endpoint = self.endpoint_of(page[0])
        good, bad = self.gate.split(page, endpoint)
        if not bad:
            return item
        return with_quarantine(good, bad)


def gate_resource(resource: DltResource, gate: Gate, *, at: int = 1, endpoint_of: Any = None) -> DltResource:
    """Check a `rest_api` resource's pages with `gate` (at pipe position `at`) and route its quarantine rows."""
    resource.add_step(GateStep(gate, endpoint_of), insert_at=at)
    routed(resource)
    return resource
