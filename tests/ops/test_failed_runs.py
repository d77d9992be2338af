"""Failed runs are easy to read, and only transient extraction failures are retried.

- A rejected credential (a real 401 from the sandbox's Mixpanel emulator) fails the extraction step
  at once, and both the step failure Dagster records (what the UI shows) and the terminal summary of
  `opsmap run` name the source, the endpoint and the config key to fix, without the secret.
- A transient failure is retried by the extraction's Dagster retry policy, then succeeds; one that
  persists gives up after the policy's retries with the same readable message.
"""

from collections import Counter
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
import requests
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DagsterInstance,
    MaterializeResult,
    RetryPolicy,
    materialize,
    multi_asset,
)
from dagster._core.definitions.dependency import NodeHandle
from dagster._serdes import serialize_value

from pipelines.failures import (
    EXTRACTION_RETRY_POLICY,
    describe,
    failure_reason,
    is_transient,
    with_extraction_retries,
)
from pipelines.runner import print_summary, run_nightly
from pipelines.sandbox.server import SandboxServer
from pipelines.sources.http import (
    SourceAuthError,
    SourceNotFoundError,
    SourceRateLimitError,
    SourceRetriesExhaustedError,
)

WRONG_SECRET = "wrong-secret-0123456789abcdef"
RIGHT_SECRET = "the-only-accepted-secret-42"


def _events_of(result: Any, kind: str) -> list[Any]:
    return [e for e in result.all_events if e.event_type_value == kind]


def test_a_rejected_credential_fails_at_once_naming_source_endpoint_and_key(
    private_sandbox: SandboxServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    private_sandbox.emulators["mixpanel"].accepted_secrets = frozenset({RIGHT_SECRET})
    for key, value in private_sandbox.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCES__MIXPANEL__API_SECRET", WRONG_SECRET)
    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
    monkeypatch.setenv("OPSMAP_PSEUDONYM_SALT", "test-salt")

    result = run_nightly(selection="group:raw_mixpanel", instance=DagsterInstance.ephemeral())

    assert not result.success
    assert _events_of(result, "STEP_UP_FOR_RETRY") == [], "a rejected credential must not be retried"
    [failure] = _events_of(result, "STEP_FAILURE")
    assert failure.step_key in _extraction_ops()
    data = failure.step_failure_data
    message = data.user_failure_data.description
    assert message.startswith("mixpanel extraction failed")
    for fact in ("/mixpanel/api/2.0/export", "401", "SOURCES__MIXPANEL__API_SECRET"):
        assert fact in message, (fact, message)
    # The same facts as metadata on the failed step, per failed system.
    metadata = {k: v.value for k, v in data.user_failure_data.metadata.items()}
    facts = {k.rsplit("/", 1)[-1]: v for k, v in metadata.items() if k.startswith("mixpanel/") or "/" not in k}
    assert facts["system"] == "mixpanel"
    assert facts["status"] == 401
    assert facts["transient"] is False
    assert "SOURCES__MIXPANEL__API_SECRET" in facts["config_keys"]
    assert facts["endpoint"].startswith("GET /mixpanel/api/2.0/export")

    print_summary(result, 1.0)
    summary = capsys.readouterr().out
    [line] = [line for line in summary.splitlines() if "failed step" in line]
    assert line.strip().startswith(f"failed step: {failure.step_key}: mixpanel extraction failed")
    assert "SOURCES__MIXPANEL__API_SECRET" in line and "401" in line and "/mixpanel/api/2.0/export" in line

    # The secret is nowhere: not in the events Dagster stores (the UI's event log), not in the summary.
    recorded = "".join(serialize_value(e) for e in result.all_events)
    assert WRONG_SECRET not in recorded
    assert WRONG_SECRET not in summary


def _extraction_ops() -> set[str]:
    """The ops that materialise the raw tables (whatever way extraction is split into steps)."""
    from pipelines.definitions import defs

    return {
        a.op.name
        for a in defs.resolve_asset_graph().assets_defs
        if a.is_executable and any(k.path[0].startswith("raw_") for k in a.keys)
    }


def test_the_nightly_job_retries_extraction_only() -> None:
    from pipelines.definitions import defs

    job = defs.resolve_job_def("nightly")
    policies = {node.name: job.get_retry_policy_for_handle(NodeHandle(node.name, None)) for node in job.graph.nodes}
    extraction = {name: policy for name, policy in policies.items() if name in _extraction_ops()}
    assert extraction, "no extraction op in the nightly job"
    assert set(extraction.values()) == {EXTRACTION_RETRY_POLICY}
    # Models, KPIs and checks fail the same way twice: retrying them would only delay the report.
    assert [name for name, policy in policies.items() if policy and name not in extraction] == []


# --- the retry policy, on a stand-in extraction asset ------------------------------------------------


def _flaky_extraction(fail_times: int, error: Exception) -> tuple[Any, Counter]:
    """An asset shaped like a dlt extraction (a generator, tagged with its system) that fails `fail_times`."""
    calls: Counter = Counter()

    @multi_asset(
        specs=[AssetSpec(AssetKey(["raw_demo", "things"]))],
        name="extract_demo",
        op_tags={"opsmap/system": "demo"},
    )
    def extract_demo(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
        calls["attempts"] += 1
        if calls["attempts"] <= fail_times:
            raise RuntimeError("dlt: extraction of resource `things` failed") from error
        yield MaterializeResult(asset_key=AssetKey(["raw_demo", "things"]), metadata={"rows": 3})

    return extract_demo, calls


def _unreachable() -> SourceRetriesExhaustedError:
    return SourceRetriesExhaustedError(
        "demo: GET /api/things → connection refused after 5 retries. Check SOURCES__DEMO__BASE_URL.",
        system="demo",
        method="GET",
        endpoint="/api/things",
        config_key="SOURCES__DEMO__BASE_URL",
    )


def test_a_transient_failure_is_retried_and_then_succeeds() -> None:
    asset, calls = _flaky_extraction(fail_times=1, error=_unreachable())
    retried = with_extraction_retries(asset, RetryPolicy(max_retries=2, delay=0.01))
    result = materialize([retried], raise_on_error=False)
    assert result.success
    assert calls["attempts"] == 2
    assert len(_events_of(result, "STEP_UP_FOR_RETRY")) == 1
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [AssetKey(["raw_demo", "things"])]


def test_a_persistent_transient_failure_gives_up_with_a_readable_message() -> None:
    asset, calls = _flaky_extraction(fail_times=99, error=_unreachable())
    retried = with_extraction_retries(asset, RetryPolicy(max_retries=1, delay=0.01))
    result = materialize([retried], raise_on_error=False)
    assert not result.success
    assert calls["attempts"] == 2
    [failure] = _events_of(result, "STEP_FAILURE")
    reason = failure_reason(failure.step_failure_data.error)
    assert reason.startswith("demo extraction failed: GET /api/things")
    assert "SOURCES__DEMO__BASE_URL" in reason and reason.endswith("(gave up after retrying)")


def test_a_permanent_failure_is_not_retried() -> None:
    asset, calls = _flaky_extraction(fail_times=99, error=_rejected())
    result = materialize([with_extraction_retries(asset, RetryPolicy(max_retries=3, delay=0.01))], raise_on_error=False)
    assert not result.success
    assert calls["attempts"] == 1
    assert _events_of(result, "STEP_UP_FOR_RETRY") == []


def _rejected() -> SourceAuthError:
    return SourceAuthError(
        "demo: GET /api/things → 401 Unauthorized. Check SOURCES__DEMO__TOKEN (the credentials were rejected).",
        system="demo",
        method="GET",
        endpoint="/api/things",
        status=401,
        config_key="SOURCES__DEMO__TOKEN",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_unreachable(), True),
        (SourceRateLimitError("demo: still rate limited", system="demo"), True),
        (requests.ConnectionError("connection refused"), True),
        (duckdb.IOException('Could not set lock on file "opsmap.build.duckdb"'), True),
        (_rejected(), False),
        (SourceNotFoundError("demo: GET /api/nope → 404 Not Found", system="demo", status=404), False),
        (ValueError("github: SOURCES__GITHUB__ACCESS_TOKEN is empty; set it to use this source."), False),
        (KeyError("name"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_only_failures_that_retrying_can_fix_are_transient(error: Exception, transient: bool) -> None:
    try:
        raise RuntimeError("wrapped by dlt") from error
    except RuntimeError as wrapped:
        assert is_transient(wrapped) is transient


def test_the_description_names_the_resource_and_drops_the_repeated_system_name() -> None:
    class ResourceExtractionError(Exception):  # the shape of dlt's: it carries the resource (pipe) name
        pipe_name = "things"

    try:
        try:
            raise _rejected()
        except SourceAuthError as exc:
            raise ResourceExtractionError("extraction of resource `things` caused an exception") from exc
    except ResourceExtractionError as wrapped:
        assert describe("demo", wrapped) == (
            "demo extraction failed (resource `things`): GET /api/things → 401 Unauthorized. "
            "Check SOURCES__DEMO__TOKEN (the credentials were rejected)."
        )


def test_a_step_failure_that_is_not_an_extraction_is_summarised_by_its_root_cause() -> None:
    @multi_asset(specs=[AssetSpec("model")], name="build_model")
    def build_model(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
        try:
            raise KeyError("column deployed_at")
        except KeyError as exc:
            raise RuntimeError("model step failed") from exc
        yield MaterializeResult()  # pragma: no cover - makes this a generator like the others

    result = materialize([build_model], raise_on_error=False)
    [failure] = _events_of(result, "STEP_FAILURE")
    assert failure_reason(failure.step_failure_data.error) == "KeyError: 'column deployed_at'"
    assert failure_reason(None) == ""


def test_a_run_that_fails_before_its_first_step_says_why(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main

    monkeypatch.setenv("OPSMAP_WAREHOUSE", str(tmp_path / "opsmap.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for system in ("JIRA", "GITHUB", "JENKINS", "DATADOG", "MIXPANEL"):
        monkeypatch.delenv(f"SOURCES__{system}__BASE_URL", raising=False)
    outcome = CliRunner().invoke(main, ["run", "--sandbox-scale", "0.05", "--sandbox-as-of", "not-a-date"])
    assert outcome.exit_code == 1
    assert "opsmap run FAILED" in outcome.output and "assets materialised: 0" in outcome.output
    assert "run failed before its first step: RuntimeError: the sandbox failed to start" in outcome.output
    assert "Invalid isoformat string: 'not-a-date'" in outcome.output
