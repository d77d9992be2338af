"""Mixpanel emulator: the Raw Event Export API (source-apis.md §4 and fact 10).

`GET /api/2.0/export?from_date=&to_date=[&event=&where=&limit=&time_in_ms=&project_id=]` answers one
JSONL stream (`text/plain`) for the inclusive UTC date range: one `{"event", "properties"}` object
per line, no cursor, no paging. The body is rendered vectorised (polars struct → JSON per chunk of
rows) and streamed in ~1 MB chunks, so a year of a large world is never held whole in memory; the
server core gzips it when the client sends `Accept-Encoding: gzip`.

Late events: Mixpanel stores an event under the time it happened, but it becomes exportable only
once processed. A deterministic ~3 % of the world's events (chosen by insert id) is processed
1–36 h after its `time` (offline devices, batched server-side sends); the rest within seconds.
`visible_events` is the one rule for "what an export at `as_of` can see" — the truth export imports
it — and it is why a client must re-pull its trailing days.

Payload shape: the JS SDK's property set (recording `mixpanel/export_web_sdk_events_2017.jsonl`)
plus the Mixpanel-added ingestion fields (`$insert_id`, `$mp_api_endpoint`, `$mp_api_timestamp_ms`,
`mp_processing_time_ms`; `export_mixpanel_go_sdk_events.jsonl`), keys in export order (`time`,
`distinct_id`, then sorted). Absent properties are omitted, never `null` (`feature` is set only on
events tagged with an epic; `$referrer` only on in-app navigation).

Synthetic parts (no recording exists, source-apis.md §4 "error body format was not captured"):
error bodies use the documented `ErrorResponse` schema `{"error": ..., "status": "error"}`
(mixpanel/docs `openapi/src/common/responses.yaml`); 429s carry `Retry-After`.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from base64 import b64decode
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, date, datetime, timedelta

import orjson
import polars as pl

from pipelines.sandbox.http import JSON, HTTPError, Request, Response, Route, SystemEmulator, stream_response
from pipelines.sandbox.world import World, utc

EXPORT_PATH = "/api/2.0/export"

SANDBOX_PROJECT_ID = "3141592"
SANDBOX_USERNAME = "opsmap-sandbox.7c1f2e.mp-service-account"
SANDBOX_SECRET = "sandbox-mixpanel-service-account-secret"

MAX_LIMIT = 100_000
"""The export's `limit` is a cap on the events returned, at most 100000 (export.openapi.yaml)."""

PER_SECOND_LIMIT = 3
"""Mixpanel: 3 export queries per second per project (source-apis.md §4)."""
REAL_HOURLY_LIMIT = 60
"""Mixpanel: 60 export queries per hour per project (source-apis.md §4)."""
DEFAULT_HOURLY_LIMIT = 10_000
"""The sandbox default: test suites load the whole year many times an hour against one server, which
the real 60 would stall; pass `hourly_limit=REAL_HOURLY_LIMIT` to rehearse the real budget."""

CHUNK_BYTES = 1 << 20
"""Target size of one streamed body chunk (~1 MB)."""

LATE_PERCENT = 3
"""Share (percent) of events processed late, 1–36 h after they happened."""
_HOUR_MS = 3_600_000
_LATE_SPAN_MS = 35 * _HOUR_MS  # late delays cover [1 h, 36 h)
_PROMPT_SPAN_MS = 5_000  # prompt events are processed within 5 s

# Derived per-event attributes, keyed by the world's browser / os / city (generate.usage).
_BROWSER_VERSION = {"Chrome": 130, "Firefox": 131, "Safari": 17, "Edge": 130}
_SCREEN = {
    "Mac OS X": (900, 1440),
    "Windows": (1080, 1920),
    "Linux": (1080, 1920),
    "iOS": (844, 390),
    "Android": (915, 412),
}
_REGION = {
    "Berlin": ("Berlin", "DE"),
    "Lagos": ("Lagos", "NG"),
    "Austin": ("Texas", "US"),
    "Osaka": ("Osaka", "JP"),
    "Lima": ("Lima", "PE"),
    "Pune": ("Maharashtra", "IN"),
}
_JS_LIB_VERSION = "2.56.0"
_JS_API_ENDPOINT = "api-js.mixpanel.com"


# --------------------------------------------------------------------------------------------------
# The processing rule (pure; imported by the truth export)
# --------------------------------------------------------------------------------------------------


def _insert_id_digits(insert_id: pl.Expr) -> pl.Expr:
    # World insert ids are 20 zero-padded decimal digits of a 64-bit hash (generate.usage), so the
    # trailing nine digits are uniform: cheap, vectorised and stable across polars versions.
    return insert_id.str.slice(-9).cast(pl.Int64)


def processing_delay_ms(insert_id: pl.Expr | None = None) -> pl.Expr:
    """How long after its `time` each event is processed, in ms (an expression over `insert_id`).

    `LATE_PERCENT` % of events (those whose insert id's trailing digits fall below it, mod 100) are
    processed 1–36 h late; the others 0–5 s after they happened.
    """
    digits = _insert_id_digits(pl.col("insert_id") if insert_id is None else insert_id)
    spread = digits // 100 % 1_000_000  # the other digits, uniform in [0, 10^6)
    late = _HOUR_MS + spread * (_LATE_SPAN_MS // 1_000_000)  # 126 ms steps over [1 h, 36 h)
    return pl.when(digits % 100 < LATE_PERCENT).then(late).otherwise(spread % _PROMPT_SPAN_MS)


def processing_time_ms() -> pl.Expr:
    """`mp_processing_time_ms` of each event: `time` (epoch s) in ms plus the processing delay."""
    return pl.col("time") * 1000 + processing_delay_ms()


def visible_events(events: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """The events an export at `as_of` returns: they happened before `as_of` and were processed by then.

    `events` has the world's event schema (`generate.EVENT_SCHEMA`); row order is kept.
    """
    as_of_ms = int(as_of.timestamp() * 1000)
    return events.filter((pl.col("time") * 1000 < as_of_ms) & (processing_time_ms() <= as_of_ms))


def is_late(events: pl.DataFrame) -> pl.Series:
    """Which events are processed late (more than an hour after they happened)."""
    return events.select(processing_delay_ms() >= _HOUR_MS).to_series()


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _lookup(column: str, mapping: dict[str, object], dtype: pl.DataType) -> pl.Expr:
    return pl.col(column).replace_strict(mapping, default=None, return_dtype=dtype)


def _slug(event: pl.Expr) -> pl.Expr:
    return event.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-")


def render_lines(events: pl.DataFrame, *, org: str = "acme", time_in_ms: bool = False) -> pl.Series:
    """Render events (world schema) as export JSON lines, one string per event, no newline.

    Vectorised: one polars struct is JSON-encoded per row, then the absent optional properties
    (encoded as `null`) are cut out so they are omitted as in real exports.
    """
    digits = _insert_id_digits(pl.col("insert_id"))
    delay = processing_delay_ms()
    time_ms = pl.col("time") * 1000
    processed = time_ms + delay
    host = f"https://app.{org}.example"
    navigated = digits // 7 % 2 == 0  # half the events follow an in-app page (have a $referrer)
    searched = pl.col("distinct_id").str.slice(-1).is_in(["0", "1", "2", "3"])  # arrived from search
    properties = pl.struct(
        (time_ms + digits % 1000 if time_in_ms else pl.col("time")).alias("time"),
        pl.col("distinct_id"),
        pl.col("browser").alias("$browser"),
        (_lookup("browser", _BROWSER_VERSION, pl.Int64()) + digits // 11 % 3).alias("$browser_version"),
        pl.col("city").alias("$city"),
        pl.concat_str([pl.lit(f"{host}/"), _slug(pl.col("event"))]).alias("$current_url"),
        pl.when(searched)
        .then(pl.lit("https://www.google.com/"))
        .otherwise(pl.lit("$direct"))
        .alias("$initial_referrer"),
        pl.when(searched)
        .then(pl.lit("www.google.com"))
        .otherwise(pl.lit("$direct"))
        .alias("$initial_referring_domain"),
        pl.col("insert_id").alias("$insert_id"),
        pl.lit(_JS_LIB_VERSION).alias("$lib_version"),
        pl.lit(_JS_API_ENDPOINT).alias("$mp_api_endpoint"),
        (time_ms + delay * 9 // 10).alias("$mp_api_timestamp_ms"),
        pl.col("os").alias("$os"),
        pl.when(navigated).then(pl.lit(f"{host}/home")).alias("$referrer"),
        pl.when(navigated).then(pl.lit(f"app.{org}.example")).alias("$referring_domain"),
        _lookup("city", {k: v[0] for k, v in _REGION.items()}, pl.String()).alias("$region"),
        _lookup("os", {k: v[0] for k, v in _SCREEN.items()}, pl.Int64()).alias("$screen_height"),
        _lookup("os", {k: v[1] for k, v in _SCREEN.items()}, pl.Int64()).alias("$screen_width"),
        pl.col("feature"),
        _lookup("city", {k: v[1] for k, v in _REGION.items()}, pl.String()).alias("mp_country_code"),
        pl.lit("web").alias("mp_lib"),
        processed.alias("mp_processing_time_ms"),
    )
    encoded = events.select(pl.struct(pl.col("event"), properties.alias("properties")).struct.json_encode())
    # A JSON-encoded string value escapes its quotes, so these literals can only match the keys.
    return (
        encoded.to_series()
        .str.replace(',"$referrer":null,"$referring_domain":null', "", literal=True)
        .str.replace(',"feature":null', "", literal=True)
    )


def iter_body(
    events: pl.DataFrame,
    *,
    org: str = "acme",
    time_in_ms: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    duplicate_every: int = 0,
) -> Iterator[bytes]:
    """Yield the JSONL body in chunks of about `chunk_bytes`, each ending with a newline.

    `duplicate_every` > 0 repeats every n-th line (exports are not deduplicated: source-apis.md fact 10).
    """
    rows_per_chunk = max(1, chunk_bytes // 640)  # ~640 bytes per rendered event
    for offset in range(0, events.height, rows_per_chunk):
        block = events.slice(offset, rows_per_chunk)
        if duplicate_every:
            repeat = (pl.int_range(pl.len()) % duplicate_every == duplicate_every - 1).cast(pl.Int64) + 1
            block = block.select(pl.all().repeat_by(repeat).explode())
        lines = render_lines(block, org=org, time_in_ms=time_in_ms)
        yield (lines.str.join("\n").item() + "\n").encode()


# --------------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------------

_PROPERTY_COLUMNS = {
    "$time": "time",
    "time": "time",
    "distinct_id": "distinct_id",
    "$insert_id": "insert_id",
    "$browser": "browser",
    "$os": "os",
    "$city": "city",
    "feature": "feature",
}
_OPS = {
    "==": pl.Expr.__eq__,
    "!=": pl.Expr.__ne__,
    ">=": pl.Expr.__ge__,
    ">": pl.Expr.__gt__,
    "<=": pl.Expr.__le__,
    "<": pl.Expr.__lt__,
}
_TERM = re.compile(
    r'\s*properties\["(?P<prop>[^"]+)"\]\s*(?P<op>==|!=|>=|<=|>|<)\s*'
    r'(?:datetime\((?P<epoch>\d+)\)|"(?P<text>[^"]*)"|(?P<number>-?\d+(?:\.\d+)?))\s*'
)


def where_filter(expression: str) -> pl.Expr:
    """A polars filter for the subset of segmentation expressions the sandbox understands.

    Supported: `properties["<name>"] <op> <value>` terms joined by `and`, where value is a string,
    a number or `datetime(<epoch seconds>)` (the form Airbyte sends for sub-day increments).
    """
    condition = pl.lit(True)
    for term in re.split(r"\s+and\s+", expression.strip()):
        match = _TERM.fullmatch(term)
        if not match or match["prop"] not in _PROPERTY_COLUMNS:
            raise HTTPError(400, f"unsupported where expression in the sandbox: {term.strip()!r}")
        column = pl.col(_PROPERTY_COLUMNS[match["prop"]])
        if match["epoch"] is not None:
            value: object = int(match["epoch"])
        elif match["number"] is not None:
            value = float(match["number"])
        else:
            value = match["text"]
        condition = condition & _OPS[match["op"]](column, value)
    return condition


def _parse_day(request: Request, name: str) -> date:
    raw = request.arg(name)
    if not raw:
        raise HTTPError(400, f"'{name}' is a required parameter")
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise HTTPError(400, f"'{name}' must be a date in yyyy-mm-dd format, got {raw!r}") from exc


def _parse_events(request: Request) -> list[str] | None:
    raw = request.arg("event")
    if not raw:
        return None
    try:
        names = json.loads(raw)
    except ValueError as exc:
        raise HTTPError(400, "'event' must be a JSON-encoded array of event names") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise HTTPError(400, "'event' must be a JSON-encoded array of event names")
    return names


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, _, password = b64decode(encoded.strip()).decode().partition(":")
    except ValueError:
        return None
    return (user, password) if user else None


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------


class _Window:
    """Accepted-request times per project in a sliding window (thread-safe)."""

    def __init__(self, limit: int | None, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def wait(self, key: str, now: float) -> float:
        """Seconds until a request of `key` would fit (0: it fits now)."""
        if self.limit is None:
            return 0.0
        seen = self._seen[key]
        while seen and seen[0] <= now - self.seconds:
            seen.popleft()
        return 0.0 if len(seen) < self.limit else seen[0] + self.seconds - now

    def add(self, key: str, now: float) -> None:
        if self.limit is not None:
            self._seen[key].append(now)


class MixpanelEmulator(SystemEmulator):
    """The Raw Event Export API over the world's usage events.

    `per_second_limit` and `hourly_limit` are the export's query limits per project (Mixpanel: 3 and
    60); `hourly_limit` defaults to `DEFAULT_HOURLY_LIMIT` so that the sandbox serves many full loads
    an hour. `None` turns a limit off. `accepted_secrets`, when given, are the only secrets accepted
    (like a real project); by default any non-empty credentials are.
    """

    name = "mixpanel"

    def __init__(
        self,
        world: World,
        *,
        per_second_limit: int | None = PER_SECOND_LIMIT,
        hourly_limit: int | None = DEFAULT_HOURLY_LIMIT,
        accepted_secrets: Collection[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(world)
        self.accepted_secrets = frozenset(accepted_secrets) if accepted_secrets is not None else None
        self._second = _Window(per_second_limit, 1.0)
        self._hour = _Window(hourly_limit, 3600.0)
        self._lock = threading.Lock()
        self._monotonic = monotonic

    def routes(self) -> list[Route]:
        return [Route.of("GET", EXPORT_PATH, self.export)]

    # -- auth, errors, limits ------------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        """Service account `username:secret`, or the legacy project secret `secret:`."""
        credentials = _basic_credentials(request)
        if credentials is None:
            return False
        user, password = credentials
        return self.accepted_secrets is None or (password or user) in self.accepted_secrets

    def unauthorized(self, request: Request) -> Response:
        return self._error_response(401, "Unable to authenticate request")

    def rate_limited(self, request: Request, wait_seconds: int) -> Response:
        return self._error_response(
            429,
            "Query rate limit exceeded: the export allows 60 queries per hour and 3 per second",
            {"Retry-After": str(max(1, wait_seconds))},
        )

    def error(self, request: Request, exc: HTTPError) -> Response:
        return self._error_response(exc.status, exc.message)

    @staticmethod
    def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        body = orjson.dumps({"error": message, "status": "error"})
        return Response(status, body, dict(headers or {}), content_type=JSON)

    def env(self) -> dict[str, str]:
        return {
            "SOURCES__MIXPANEL__USERNAME": SANDBOX_USERNAME,
            "SOURCES__MIXPANEL__API_SECRET": SANDBOX_SECRET,
            "SOURCES__MIXPANEL__PROJECT_ID": SANDBOX_PROJECT_ID,
            "SOURCES__MIXPANEL__START_DATE": self.world.config.start_at.date().isoformat(),
        }

    def _admit(self, project: str) -> float:
        """Count the query against the project's limits; the seconds to wait if it is over one."""
        now = self._monotonic()
        with self._lock:
            wait = max(self._second.wait(project, now), self._hour.wait(project, now))
            if wait <= 0:
                self._second.add(project, now)
                self._hour.add(project, now)
            return wait

    # -- the endpoint --------------------------------------------------------------------------------

    def export(self, request: Request) -> Response:
        """`GET /api/2.0/export`: the JSONL stream of the visible events in [from_date, to_date]."""
        credentials = _basic_credentials(request)
        assert credentials is not None  # the server checked `authorized` first
        user, password = credentials
        project_id = request.arg("project_id")
        if password and not project_id:  # a service account must name the project
            raise HTTPError(400, "project_id is required when authenticating with a service account")
        wait = self._admit(project_id or user)
        if wait > 0:
            return self.rate_limited(request, math.ceil(wait))
        frame = self.select(request)
        duplicate_every = 25 if "duplicate" in request.faults else 0
        body = iter_body(
            frame,
            org=self.world.org,
            time_in_ms=request.arg("time_in_ms", "false") == "true",
            duplicate_every=duplicate_every,
        )
        if "truncate" in request.faults and hash_of(request) % 2 == 0:
            # Half the truncations are Mixpanel's own: a short body ending in `terminated early`.
            # (The server core cuts the other half's connection after two chunks.)
            body = _terminated_early(body)
        # `mutate` does not apply: the export has no pages for a record to move between.
        return stream_response(body, "text/plain; charset=utf-8")

    def select(self, request: Request) -> pl.DataFrame:
        """The world's events the request asks for, in time order (validates the parameters)."""
        from_day, to_day = _parse_day(request, "from_date"), _parse_day(request, "to_date")
        today = request.view.as_of.astimezone(UTC).date()  # project time zone: UTC (created after 2023)
        if to_day > today:
            raise HTTPError(400, f"to_date cannot be later than today ({today.isoformat()})")
        if from_day > to_day:
            raise HTTPError(400, "from_date cannot be later than to_date")
        raw_limit = request.arg("limit")
        limit = request.int_arg("limit", MAX_LIMIT, minimum=1)
        if raw_limit and limit > MAX_LIMIT:
            raise HTTPError(400, f"limit cannot be over {MAX_LIMIT}")
        names = _parse_events(request)
        where = request.arg("where")
        lo, hi = int(utc(from_day).timestamp()), int((utc(to_day) + timedelta(days=1)).timestamp())
        frame = visible_events(request.view.events(), request.view.as_of)
        frame = frame.filter((pl.col("time") >= lo) & (pl.col("time") < hi))
        if names is not None:
            frame = frame.filter(pl.col("event").is_in(names))
        if where:
            frame = frame.filter(where_filter(where))
        return frame.head(limit) if raw_limit else frame


def hash_of(request: Request) -> int:
    """A stable number for a request's query (picks between fault variants deterministically)."""
    text = "&".join(f"{k}={v}" for k in sorted(request.query) for v in request.query[k])
    return sum(text.encode()) * 2654435761 % 2**32


def _terminated_early(body: Iterator[bytes]) -> Iterator[bytes]:
    """Part of the first chunk, then Mixpanel's bare `terminated early` line, in one chunk."""
    first = next(body, b"")
    lines = first.split(b"\n")
    kept = b"\n".join(lines[: len(lines) // 2])
    yield (kept + b"\n" if kept else b"") + b"terminated early\n"


__all__ = [
    "EXPORT_PATH",
    "MAX_LIMIT",
    "REAL_HOURLY_LIMIT",
    "SANDBOX_PROJECT_ID",
    "MixpanelEmulator",
    "is_late",
    "iter_body",
    "processing_delay_ms",
    "processing_time_ms",
    "render_lines",
    "visible_events",
    "where_filter",
]
