"""schemathesis against the OpenAPI spec: generated requests to every operation, no server errors.

Bounded to a few examples per operation (the suite runs on 2 shared cores). The requests carry the
token, so they reach the handlers rather than stopping at 401. schemathesis loads the spec when the
module is collected, before the session's warehouse exists, so it talks to a switch: the spec comes
from an app over no warehouse (the spec does not depend on the data), and while the test runs the
switch routes every request, schemathesis' own probes included, to the app over the built warehouse.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from pipelines.api import ApiSettings, create_app

EXAMPLES_PER_OPERATION = 10


class AppSwitch:
    """An ASGI app that forwards to whichever app it currently points at."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


_placeholder_dir = tempfile.TemporaryDirectory(prefix="opsmap-api-spec-")
_placeholder = create_app(
    ApiSettings(
        published=Path(_placeholder_dir.name) / "opsmap.duckdb",
        annotations=Path(_placeholder_dir.name) / "annotations.duckdb",
        token="t" * 32,
    )
)
switch = AppSwitch(_placeholder)
schema = schemathesis.openapi.from_asgi("/openapi.json", switch)


@pytest.fixture()
def over_the_built_warehouse(app: FastAPI) -> Iterator[None]:
    switch.app = app
    yield
    switch.app = _placeholder


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_answers_match_the_spec(
    case: schemathesis.Case, over_the_built_warehouse: None, auth: dict[str, str]
) -> None:
    response = case.call_and_validate(headers=auth)
    assert response.status_code < 500
