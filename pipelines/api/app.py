"""The product-ops API: `/api/v1/product-ops/…` over the published warehouse (FastAPI).

Every endpoint but `health` needs `Authorization: Bearer $OPSMAP_API_TOKEN` (compared in
constant time; 401 otherwise). Inputs are validated by their OpenAPI schema (422 with the failing
field), an unknown feature or version is a 404, and no SQL is assembled from request text: values
are bound parameters and table names come from the model catalogue. See `db.py` for how reads stay
read-only and how release annotations are written.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the nested endpoint functions,
# which name objects local to create_app (the bearer scheme, ValidateIn), so they must be evaluated in place.
import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Body, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.api import queries
from pipelines.api import schemas as s
from pipelines.api.config import ApiSettings
from pipelines.api.db import AnnotationStore, Snapshot, WarehouseReader, WarehouseUnavailable
from pipelines.api.quality import catalogue, validate_table

log = logging.getLogger("opsmap.api")

API_PREFIX = "/api/v1/product-ops"
JSON = "application/json"

NOT_AUTHENTICATED = {"model": s.Problem, "description": "Missing or invalid bearer token."}
UNAVAILABLE = {"model": s.Problem, "description": "No published warehouse to read (run the pipeline)."}
NOT_FOUND = {"model": s.Problem, "description": "No such feature."}
BAD_BODY = {"model": s.Problem, "description": "The body is not valid JSON."}

FeatureIdPath = Annotated[
    str, Path(pattern=s.FEATURE_ID_PATTERN, description="Jira epic key of the feature, e.g. PAY-3.", examples=["PAY-3"])
]
VersionPath = Annotated[
    str, Path(pattern=s.VERSION_PATTERN, description="Release version, e.g. 1.1.0 or 2025.11.", examples=["1.1.0"])
]


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API over the published warehouse named by `settings` (default: from the environment)."""
    settings = settings or ApiSettings.from_env()
    reader = WarehouseReader(settings.published, settings.annotations, settings.cache_entries)
    store = AnnotationStore(settings.annotations)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Create the (empty) store up front, so SQL users can attach it before the first annotation;
        # the API itself works without it (the first write creates it).
        await run_in_threadpool(store.ensure)
        if not settings.published.exists():
            log.warning(
                "no published warehouse at %s yet: endpoints answer 503 until `opsmap run` publishes one",
                settings.published,
            )
        yield
        reader.close()

    app = FastAPI(
        title="opsmap product-ops API",
        version="1.0.0",
        summary="Feature development, usage, releases, data quality, bottlenecks and KPIs from the opsmap warehouse.",
        description=(
            "Read-only over the published warehouse (replaced atomically by every pipeline run); release "
            "annotations are stored in their own small DuckDB file beside it. Authenticate with "
            "`Authorization: Bearer <OPSMAP_API_TOKEN>`; `health` is open so that probes need no secret."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.reader = reader

    @app.exception_handler(WarehouseUnavailable)
    async def _unavailable(_: Request, exc: WarehouseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's 405 lists the methods of one route; a path served by two (GET and POST
        # /release/{version}) must list both, so Allow is taken from the spec.
        if exc.status_code == 405:
            allowed = allowed_methods(app, request.url.path)
            if allowed:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return await http_exception_handler(request, exc)

    @app.exception_handler(duckdb.Error)
    async def _database_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        # The message may name files and SQL: log it for operators, answer with nothing internal.
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "internal database error"}, status_code=500)

    bearer = HTTPBearer(auto_error=False, description="The API token (`OPSMAP_API_TOKEN`).")
    expected = settings.token.encode()

    # async: FastAPI would run a plain function in the thread pool, a costly hop for a comparison.
    async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected):  # constant time: the comparison leaks no prefix
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Security(require_token)],
        responses={401: NOT_AUTHENTICATED, 503: UNAVAILABLE},
    )
    open_api = APIRouter(prefix=API_PREFIX, responses={503: UNAVAILABLE})

    # --- helpers ---------------------------------------------------------------------------------

    @contextmanager
    def reading(*tables: str) -> Iterator[tuple[Snapshot, duckdb.DuckDBPyConnection]]:
        with reader.snapshot() as snap, snap.cursor() as cur:
            missing = [t for t in tables if t not in snap.tables]
            if missing:
                raise WarehouseUnavailable(
                    f"the published warehouse lacks {', '.join(missing)}: run `opsmap run` to build and publish "
                    + ("it" if len(missing) == 1 else "them")
                )
            yield snap, cur

    def compute_cached(key: tuple[Any, ...], tables: tuple[str, ...], compute: Callable[[Any], BaseModel]) -> bytes:
        with reading(*tables) as (snap, cur):
            body = snap.cached(key)
            if body is None:
                body = compute(cur).model_dump_json().encode()
                snap.remember(key, body)
            return body

    async def serve_cached(
        key: tuple[Any, ...], tables: tuple[str, ...], compute: Callable[[Any], BaseModel]
    ) -> Response:
        # Fast path on the event loop: a response already computed for this version of the files.
        snap = reader.current()
        body = snap.cached(key) if snap is not None else None
        if body is None:  # DuckDB work happens in the thread pool, never on the event loop
            body = await run_in_threadpool(compute_cached, key, tables, compute)
        return Response(body, media_type=JSON)

    def feature_or_404(cur: duckdb.DuckDBPyConnection, feature_id: str) -> dict[str, Any]:
        row = queries.feature(cur, feature_id)
        if row is None:
            raise HTTPException(404, f"no feature {feature_id} in the warehouse")
        return row

    # --- features --------------------------------------------------------------------------------

    development_tables = ("development.features", "development.issues", "development.pull_requests",
                          "deployment.changes", "quality.defects", "quality.test_cases")  # fmt: skip

    @api.get(
        "/development/{feature_id}",
        response_model=s.Development,
        responses={404: NOT_FOUND},
        summary="A feature's development progress",
        description="Issues by status and type, pull requests, cycle and lead times, delivery milestones, and "
        "quality signals (bugs, escaped bugs, test runs and the tests that were flaky on the feature's commits).",
    )
    async def development(feature_id: FeatureIdPath) -> Response:
        def compute(cur: duckdb.DuckDBPyConnection) -> BaseModel:
            return queries.development(cur, feature_or_404(cur, feature_id))

        return await serve_cached(("development", feature_id), development_tables, compute)

    analytics_tables = ("development.features", "usage.feature_adoption", "usage.active_users_daily",
                        "intermediate.int_events_linked_to_features")  # fmt: skip

    @api.get(
        "/analytics/{feature_id}",
        response_model=s.Analytics,
        responses={404: NOT_FOUND},
        summary="A feature's usage",
        description="Adoption over the window after release, users and events (all time and the last 28 days of "
        "data), the feature's share of tracked events, and its weekly trend.",
    )
    async def analytics(
        feature_id: FeatureIdPath,
        weeks: Annotated[int, Query(ge=1, le=104, description="Complete ISO weeks in the trend.")] = 12,
    ) -> Response:
        def compute(cur: duckdb.DuckDBPyConnection) -> BaseModel:
            return queries.analytics(cur, feature_or_404(cur, feature_id), weeks)

        return await serve_cached(("analytics", feature_id, weeks), analytics_tables, compute)

    # --- releases --------------------------------------------------------------------------------

    def release_out(cur: duckdb.DuckDBPyConnection, version: str, status: str | None) -> s.ReleaseOut:
        return s.ReleaseOut(
            version=version,
            annotation=queries.annotation(cur, version),
            status=status,  # type: ignore[arg-type]
            matching_releases=queries.matching_releases(cur, version),
        )

    @api.post(
        "/release/{version}",
        response_model=s.ReleaseOut,
        status_code=201,
        responses={
            200: {"model": s.ReleaseOut, "description": "Already stored: unchanged or updated."},
            400: BAD_BODY,
            404: {"model": s.Problem, "description": "A named feature is not in the warehouse."},
        },
        summary="Register a release annotation",
        description="Stores (version, date, features, notes) in the annotation store beside the warehouse. "
        "Idempotent: the same request again changes nothing (200, `unchanged`); a different body for the same "
        "version replaces it (200, `updated`). Every feature must be an epic in the warehouse (else 404). The "
        "answer joins the annotation with the GitHub releases and Jira versions of the same version.",
    )
    def register_release(version: VersionPath, release: s.ReleaseIn, response: Response) -> s.ReleaseOut:
        with reading("development.features", "deployment.releases") as (_, cur):
            known = queries.known_features(cur, release.features)
        unknown = [f for f in release.features if f not in known]
        if unknown:  # a reference to a feature that does not exist, like GET /development/{unknown}
            raise HTTPException(404, f"no feature {', '.join(unknown)} in the warehouse")
        try:
            _, status = store.upsert(version, release.date, tuple(release.features), release.notes)
        except OSError as exc:  # a read-only or full disk: the caller can retry later
            log.error("cannot write the annotation store: %s", exc)
            raise HTTPException(503, "the annotation store cannot be written right now") from exc
        response.status_code = 201 if status == "created" else 200
        with reading("deployment.releases") as (_, cur):  # a new snapshot: it attaches the file just written
            return release_out(cur, version, status)

    @api.get(
        "/release/{version}",
        response_model=s.ReleaseOut,
        responses={404: {"model": s.Problem, "description": "No annotation and no release of that version."}},
        summary="A release annotation and the releases it joins",
    )
    async def get_release(version: VersionPath) -> Response:
        def compute(cur: duckdb.DuckDBPyConnection) -> BaseModel:
            found = release_out(cur, version, None)
            if found.annotation is None and not found.matching_releases:
                raise HTTPException(404, f"no annotation and no release named {version}")
            return found

        return await serve_cached(("release", version), ("deployment.releases",), compute)

    # --- data quality ----------------------------------------------------------------------------

    tables = sorted(catalogue())
    TableName = Enum("TableName", {t: t for t in tables}, type=str)  # type: ignore[misc]
    ValidateIn = create_model(
        "ValidateIn",
        tables=(
            list[TableName],  # type: ignore[valid-type]
            Field(min_length=1, max_length=len(tables), description="Tables to check, `schema.table`."),
        ),
        __doc__="The tables whose checks to run.",
    )

    @api.post(
        "/quality/validate",
        response_model=s.ValidateOut,
        responses={
            400: BAD_BODY,
            404: {"model": s.Problem, "description": "A named table is not in the published warehouse."},
        },
        summary="Run the data-quality checks of the named tables",
        description="For each table: the primary key is unique and never null, and the rows honour the table's "
        "pandera contract (types, nullability, ranges, vocabularies) — the checks the nightly run blocks on. "
        "Unknown names are a 422 (the schema lists the valid ones).",
    )
    def validate(request: ValidateIn) -> s.ValidateOut:  # type: ignore[valid-type]
        names = list(dict.fromkeys(t.value for t in request.tables))  # type: ignore[attr-defined]
        with reader.snapshot() as snap:
            missing = [n for n in names if n not in snap.tables]
            if missing:
                raise HTTPException(404, f"not in the published warehouse: {', '.join(missing)}")
            results = [validate_table(snap, catalogue()[n]) for n in names]
            return s.ValidateOut(
                passed=all(r.passed for r in results), warehouse_published_at=snap.published_at, tables=results
            )

    # --- performance -----------------------------------------------------------------------------

    @api.post(
        "/performance/optimize",
        response_model=s.OptimizeOut,
        responses={
            400: BAD_BODY,
            503: {
                "model": s.Problem,
                "description": "No published warehouse, or one without kpi.recommendations (run `opsmap run`).",
            },
        },
        summary="The bottlenecks the data shows, with their figures",
        description="The rows of `kpi.recommendations`, as the last pipeline run computed them over the KPIs' "
        "current window: per service, the slowest lead-time phase (coding, pickup, review, deploy; medians); the CI "
        "pipelines and test cases that fail most (with the flaky share); released features whose 28-day adoption "
        "stayed below the threshold. Each comes with the value it rests on, what that is compared with, the sample "
        "behind it and every figure as `evidence`; nothing is computed here but the selection. Filter by kind and "
        "subject or service, and keep the first `top` per kind. Read-only.",
    )
    async def optimize(params: Annotated[s.OptimizeIn | None, Body()] = None) -> Response:
        chosen = params or s.OptimizeIn()
        return await serve_cached(
            ("optimize", chosen.model_dump_json()), ("kpi.recommendations",), lambda cur: queries.optimize(cur, chosen)
        )

    # --- KPIs and health -------------------------------------------------------------------------

    @api.get(
        "/kpis",
        response_model=s.Kpis,
        summary="Success metrics and DORA, baseline and current",
        description="The nine success metrics (baseline, current, improvement, target, met) and DORA's keys over "
        "the baseline and current windows, as the last pipeline run computed them.",
    )
    async def kpis() -> Response:
        return await serve_cached(("kpis",), ("kpi.success_metrics", "kpi.dora"), queries.kpis)

    def freshness(snap: Snapshot, latest: tuple[dict[str, datetime | None], int]) -> Response:
        by_source, annotations = latest
        age = (datetime.now(UTC) - snap.published_at).total_seconds() / 3600
        known = [t for t in by_source.values() if t is not None]
        body = s.Health(
            status="ok" if age <= settings.stale_after_hours else "stale",
            warehouse=settings.published.name,
            published_at=snap.published_at,
            age_hours=round(age, 4),
            stale_after_hours=settings.stale_after_hours,
            latest_data_at=max(known) if known else None,
            latest_by_source=by_source,
            annotations=annotations,
        )
        return Response(body.model_dump_json(), media_type=JSON)

    def freshness_from_sql() -> Response:
        with reading() as (snap, cur):
            latest = queries.latest_by_source(cur, snap.tables), queries.annotation_count(cur)
            snap.remember(("health",), latest)
            return freshness(snap, latest)

    @open_api.get(
        "/health",
        response_model=s.Health,
        summary="Warehouse freshness",
        description="When the published warehouse was last replaced and the latest data time it holds, per "
        "source. `stale` past OPSMAP_API_STALE_HOURS; 503 when there is no warehouse. No token needed.",
    )
    async def health() -> Response:
        # The data times are fixed per version of the files; only the age is computed per request.
        snap = reader.current()
        latest = snap.cached(("health",)) if snap is not None else None
        if latest is None:
            return await run_in_threadpool(freshness_from_sql)
        return freshness(snap, latest)  # type: ignore[arg-type]

    app.include_router(api)
    app.include_router(open_api)
    return app


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the spec documents for the path that `path` matches."""
    for template, item in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), path):
            return sorted(method.upper() for method in item)
    return []


def serve(port: int, host: str = "127.0.0.1", access_log: bool = True) -> None:
    """Run the API with uvicorn until interrupted (settings from the environment)."""
    import uvicorn

    app = create_app()
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
