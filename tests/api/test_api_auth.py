"""Token auth, the OpenAPI spec, configuration errors, and the secret staying out of logs and answers."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from pipelines.api import API_PREFIX, ApiSettings
from pipelines.api.config import ApiConfigError
from pipelines.cli import main as cli

OPEN = {f"{API_PREFIX}/health"}
SAMPLE_PARAMS = {"feature_id": "PAY-3", "version": "1.1.0"}


def url(path: str) -> str:
    return API_PREFIX + path


BODIES = {
    f"{API_PREFIX}/release/{{version}}": {"date": "2026-01-02", "features": []},
    f"{API_PREFIX}/quality/validate": {"tables": ["development.features"]},
    f"{API_PREFIX}/performance/optimize": {},
}


def protected_routes(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, concrete path, template) of every API operation but health, read from the served spec."""
    found = []
    for template, item in client.get("/openapi.json").json()["paths"].items():
        if template.startswith(API_PREFIX) and template not in OPEN:
            path = re.sub(r"{(\w+)}", lambda m: SAMPLE_PARAMS[m.group(1)], template)
            found += [(method.upper(), path, template) for method in sorted(item)]
    return found


def test_every_operation_but_health_needs_the_token(client: TestClient, token: str) -> None:
    routes = protected_routes(client)
    assert len(routes) == 7  # development, analytics, release GET/POST, validate, optimize, kpis
    wrong_same_length = "x" * len(token)
    for method, path, template in routes:
        body = BODIES.get(template)
        for headers in (
            {},
            {"Authorization": f"Bearer {wrong_same_length}"},
            {"Authorization": f"Bearer {token[:-1]}"},
            {"Authorization": f"Basic {token}"},  # the right secret in the wrong scheme
            {"Authorization": token},
            {"X-API-Token": token},
        ):
            answer = client.request(method, path, headers=headers, json=body)
            assert answer.status_code == 401, (method, path, headers.keys(), answer.text)
            assert answer.json() == {"detail": "missing or invalid bearer token"}
            assert answer.headers["www-authenticate"] == "Bearer"


def test_the_token_opens_every_operation(client: TestClient, auth: dict[str, str]) -> None:
    for method, path, template in protected_routes(client):
        answer = client.request(method, path, headers=auth, json=BODIES.get(template))
        assert answer.status_code in (200, 201), (method, path, answer.text)


def test_auth_comes_before_validation(client: TestClient) -> None:
    """An unauthenticated caller learns nothing, not even that its input was malformed."""
    assert client.get(url("/development/not-a-key")).status_code == 401
    assert client.post(url("/quality/validate"), json={"tables": ["nope"]}).status_code == 401


def test_health_is_open(client: TestClient) -> None:
    assert client.get(url("/health")).status_code == 200


def test_openapi_spec_documents_every_endpoint_and_the_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert operations == {
        ("GET", f"{API_PREFIX}/development/{{feature_id}}"),
        ("GET", f"{API_PREFIX}/analytics/{{feature_id}}"),
        ("POST", f"{API_PREFIX}/release/{{version}}"),
        ("GET", f"{API_PREFIX}/release/{{version}}"),
        ("POST", f"{API_PREFIX}/quality/validate"),
        ("POST", f"{API_PREFIX}/performance/optimize"),
        ("GET", f"{API_PREFIX}/kpis"),
        ("GET", f"{API_PREFIX}/health"),
    }
    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    for path, item in spec["paths"].items():
        for operation in item.values():
            secured = bool(operation.get("security"))
            assert secured == (path not in OPEN), path
            if secured:
                assert "401" in operation["responses"]
    development = spec["paths"][f"{API_PREFIX}/development/{{feature_id}}"]["get"]
    assert {"200", "401", "404", "422"} <= set(development["responses"])
    assert development["parameters"][0]["schema"]["pattern"]


@pytest.mark.parametrize("token", ["", "short"])
def test_a_missing_or_weak_token_is_refused(published: Path, token: str) -> None:
    with pytest.raises(ApiConfigError, match="OPSMAP_API_TOKEN"):
        ApiSettings(published=published, annotations=published.parent / "a.duckdb", token=token)


def test_opsmap_api_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSMAP_API_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["-v", "api", "--port", "0"])  # -v: the group leaves env and warnings alone
    assert result.exit_code != 0
    assert "OPSMAP_API_TOKEN must be set" in result.output


def test_the_token_never_shows(
    api_settings: ApiSettings,
    client: TestClient,
    auth: dict[str, str],
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert token not in repr(api_settings)
    with caplog.at_level(logging.DEBUG):
        answers = [
            client.get(url("/kpis"), headers=auth),
            client.get(url("/kpis"), headers={"Authorization": f"Bearer {token}x"}),
            client.get(url("/development/ZZZ-1"), headers=auth),
            client.get(url("/development/bad"), headers=auth),
            client.get("/openapi.json"),
        ]
    assert token not in caplog.text
    for answer in answers:
        assert token not in answer.text
        assert token not in str(answer.headers)
