"""Failed extractions that are easy to read, and retried only when retrying can help.

A source failure reaches Dagster wrapped three or four times (Dagster's step error ← dlt's
`PipelineStepFailed` ← `ResourceExtractionError` ← our `SourceHTTPError`), and only the innermost
message says what to fix. `with_extraction_retries` wraps an extraction asset so that:

- a failure is raised as a Dagster `Failure` whose description is that innermost message: which
  source, which endpoint, what happened and which config key to check, with the same facts as
  metadata (the UI shows both on the failed step);
- a transient failure (the API stayed unreachable or kept answering 5xx / 429 through the HTTP
  layer's own retries, or the build file was briefly locked) is retried by a Dagster `RetryPolicy`;
- anything else (rejected credentials, a wrong URL or project, missing configuration, a bug) fails
  at once, because retrying cannot fix it.

`failure_reason` turns a failed step's recorded error back into that one readable line for the
terminal summary of `opsmap run`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import duckdb
import requests
from dagster import (
    AssetsDefinition,
    Backoff,
    DagsterError,
    Failure,
    In,
    Jitter,
    MetadataValue,
    OpDefinition,
    Out,
    RetryPolicy,
)
from dagster._core.definitions.decorators.op_decorator import DecoratedOpFunction
from dagster._utils.error import SerializableErrorInfo

from pipelines.sources.http import (
    SourceHTTPError,
    SourceRateLimitError,
    SourceRetriesExhaustedError,
    scrub,
)

EXTRACTION_RETRY_POLICY = RetryPolicy(max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
"""Two more attempts, about 30 s and 60 s later. Each request has already been retried up to five
times over ~30 s by the HTTP layer, so a step retry is for outages longer than that (an API
restarting, a network blip), not for single bad responses."""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    SourceRetriesExhaustedError,  # 5xx, timeouts, connection errors, truncated bodies through every retry
    SourceRateLimitError,  # still rate limited after the rate-limit budget
    requests.ConnectionError,
    requests.Timeout,
    duckdb.IOException,  # "Could not set lock on file": someone opened the build file; dlt does not retry
)
# Not transient: SourceAuthError (401/403), SourceNotFoundError (404), other 4xx, ValueError for an
# empty credential, dlt's ConfigFieldMissingException: the same request would fail the same way.


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or during, outermost first (cycle-safe)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def root_cause(exc: BaseException) -> BaseException:
    """The exception that explains `exc`: the first source HTTP error in its chain, else the innermost one."""
    chain = list(exception_chain(exc))
    for err in chain:
        if isinstance(err, SourceHTTPError):
            return err
    return chain[-1]


def is_transient(exc: BaseException) -> bool:
    """True when retrying the whole extraction later may succeed."""
    cause = root_cause(exc)
    if isinstance(cause, SourceHTTPError):
        return isinstance(cause, SourceRetriesExhaustedError | SourceRateLimitError)
    return any(isinstance(err, TRANSIENT_ERRORS) for err in exception_chain(exc))


def describe(system: str, exc: BaseException) -> str:
    """One line a person can act on: the source, the endpoint, what happened and the key to check."""
    cause = root_cause(exc)
    if isinstance(cause, SourceHTTPError):
        # Already "<system>: GET <endpoint> → <status>. Check <KEY> (...)", and secret-free by design.
        detail = str(cause).removeprefix(f"{cause.system}: ")
    else:
        detail = f"{type(cause).__name__}: {cause}".strip()
    resource = next((e.pipe_name for e in exception_chain(exc) if getattr(e, "pipe_name", None)), None)
    where = f" (resource `{resource}`)" if resource else ""
    return scrub(f"{system} extraction failed{where}: {detail}")


def extraction_failure(system: str, exc: BaseException, *, attempt: int, max_retries: int) -> Failure:
    """A Dagster `Failure` for a failed extraction; retries are allowed only for a transient cause."""
    cause = root_cause(exc)
    transient = is_transient(exc)
    metadata: dict[str, Any] = {
        "system": system,
        "error": type(cause).__name__,
        "transient": transient,
        "attempt": MetadataValue.int(attempt + 1),
    }
    if isinstance(cause, SourceHTTPError):
        if cause.endpoint:
            metadata["endpoint"] = f"{cause.method} {cause.endpoint}".strip()
        if cause.status is not None:
            metadata["status"] = MetadataValue.int(cause.status)
        if cause.config_keys:
            metadata["config_keys"] = ", ".join(cause.config_keys)
    final = not transient or attempt >= max_retries
    suffix = "" if not transient else (" (gave up after retrying)" if final else " (will retry)")
    return Failure(description=describe(system, exc) + suffix, metadata=metadata, allow_retries=not final)


def with_extraction_retries(
    assets_def: AssetsDefinition, policy: RetryPolicy = EXTRACTION_RETRY_POLICY
) -> AssetsDefinition:
    """The same extraction assets, with `policy` on their op and failures raised as readable `Failure`s.

    Works on any asset whose body is a generator (as every `@dlt_assets` body is); the system's
    name comes from the op tag `opsmap/system`. The asset graph, keys, specs and subsetting are
    unchanged: only the op is rebuilt.
    """
    op = assets_def.op
    system = str(op.tags.get("opsmap/system", op.name))
    body: Callable[..., Any] = op.compute_fn.decorated_fn  # type: ignore[union-attr]

    # functools.wraps keeps the signature Dagster inspects for the context and resource parameters.
    @functools.wraps(body)
    def extract_with_readable_failures(context: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from body(context, *args, **kwargs)
        except (Failure, DagsterError):
            raise  # already readable, or Dagster's own control flow: leave them to Dagster
        except Exception as exc:
            failure = extraction_failure(system, exc, attempt=context.retry_number, max_retries=policy.max_retries)
            # A source error carries everything actionable (dlt's wrappers only repeat it), so chain
            # the Failure to it alone; anything else keeps its whole chain for debugging.
            cause = root_cause(exc)
            raise failure from (cause if isinstance(cause, SourceHTTPError) else exc)

    # Dagster has no public way to set the retry policy of an op a decorator built (dlt_assets does
    # not forward one), so rebuild the op exactly as `OpDefinition.with_replaced_properties` does.
    retried_op = OpDefinition.dagster_internal_init(
        name=op.name,
        ins={d.name: In.from_definition(d) for d in op.input_defs},
        outs={d.name: Out.from_definition(d) for d in op.output_defs},
        compute_fn=DecoratedOpFunction(decorated_fn=extract_with_readable_failures),
        config_schema=op.config_schema,
        description=op.description,
        tags=op.tags,
        required_resource_keys=op.required_resource_keys,
        code_version=op._version,  # what with_replaced_properties passes; `.version` is deprecated
        retry_policy=policy,
        version=None,
        pool=op.pool,
    )
    return AssetsDefinition.dagster_internal_init(**{**assets_def.get_attributes_dict(), "node_def": retried_op})


def failure_reason(error: SerializableErrorInfo | None) -> str:
    """The most useful line of a failed step's recorded error (a `Failure`'s description, else the root cause)."""
    if error is None:
        return ""
    chain: list[SerializableErrorInfo] = []
    current: SerializableErrorInfo | None = error
    while current is not None and len(chain) < 20:
        chain.append(current)
        current = current.cause or current.context
    for err in chain:
        if err.cls_name == "Failure":
            return _first_line(err.message)
    for err in chain:
        if err.cls_name and err.cls_name.startswith("Source") and err.cls_name.endswith("Error"):
            return _first_line(err.message)
    return _first_line(chain[-1].message)


def _first_line(message: str) -> str:
    # Recorded messages read "module.Class: text"; keep the text, on one line.
    text = message.strip()
    head, sep, rest = text.partition(": ")
    if sep and "." in head and " " not in head:
        text = rest
    return " ".join(text.split())
