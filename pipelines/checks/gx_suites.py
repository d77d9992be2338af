"""Great Expectations suites on the mart tables, run as Dagster asset checks.

One suite per mart table lives in `expectations/<schema>.<table>.json` (GX 1.x suite format, see
`expectations/README.md`): row-count bounds, referential integrity between marts, distribution and
cross-column rules. Values that depend on the warehouse are written as placeholders this runner
resolves at validation time:

- `{"$values": "deployment.deployments.deployment_id"}` → the distinct non-null values of that column
  (referential integrity: `expect_column_values_to_be_in_set`, which ignores nulls);
- `{"$values": "development.issues.issue_key", "where": {"issue_type": "Epic"}}` → the same, of the
  rows where each named column equals the given value;
- `{"$row_count": "development.pull_requests"}` → that table's row count (relative row-count bounds).
Only mart tables can be named, and names are validated before they reach SQL.

Severity comes from each expectation's GX `severity`: `critical` expectations (referential integrity
of the tables the KPIs read) form the blocking check `gx_referential_integrity` (ERROR: the KPIs do not
build on orphaned keys); the rest form `gx_suite` (WARN, never blocks). Both checks of a table run in
one step right after the table and the tables its placeholders name (`additional_deps`); a suite may
only name tables that are not downstream of its own, or a blocking check would wait on its own
consequences (a cycle).

GX's SQL datasource does not work on DuckDB (stack-notes 4c), so each table is read through DuckDB
into a pandas dataframe batch. GX is imported lazily (~3 s, the code location loads without it) and
one ephemeral GX context serves a whole run (the job's in-process executor runs every step in one
process), so the import is paid once and one Data Docs site, in `<warehouse dir>/gx_docs/`
(git-ignored with the warehouse), covers the run; each check's metadata links its table's page.
"""

import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    multi_asset_check,
)

from pipelines.assets.reconciliation import RECONCILIATION_KEY
from pipelines.kpis.compute import MART_QUERIES
from pipelines.models import Model, load_models
from pipelines.resources import Warehouse
from pipelines.settings import EXPECTATIONS_DIR

MART_SCHEMAS = ("development", "deployment", "quality", "usage")
SUITE_CHECK = "gx_suite"
INTEGRITY_CHECK = "gx_referential_integrity"
DOCS_FOLDER = "gx_docs"
DOCS_SITE = "opsmap"
POSITION = "opsmap_position"
"""The expectation's index in its suite file, carried in its GX `meta` to match results back."""
SAMPLE = 5
"""Offending keys and values kept per failed expectation: enough to find the rows, small in the UI."""

_REFERENCE = re.compile(r"^(?P<schema>[a-z_]+)\.(?P<table>[a-z_][a-z0-9_]*)(\.(?P<column>[a-z_][a-z0-9_]*))?$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_RECONCILIATION_TABLE = ".".join(RECONCILIATION_KEY.path)


def kpi_tables() -> frozenset[str]:
    """The mart tables the KPI assets read (`MART_QUERIES`), and the reconciliation behind sync_accuracy."""
    return frozenset({q.split(" FROM ")[1].strip() for q in MART_QUERIES.values()} | {_RECONCILIATION_TABLE})


@dataclass(frozen=True)
class Suite:
    """One suite file: `name` is the table it guards (`schema.table`)."""

    table: str
    path: Path
    spec: dict[str, Any]

    @property
    def relpath(self) -> str:
        try:
            return str(self.path.relative_to(EXPECTATIONS_DIR.parent))
        except ValueError:
            return str(self.path)

    @property
    def key(self) -> AssetKey:
        return AssetKey(self.table.split("."))

    def expectations(self, critical: bool | None = None) -> list[dict[str, Any]]:
        """All expectations, or only the critical (True) or the other (False) ones."""
        found = self.spec.get("expectations", [])
        if critical is None:
            return list(found)
        return [e for e in found if (e.get("severity", "critical") == "critical") == critical]


def load_suites(folder: Path = EXPECTATIONS_DIR) -> dict[str, Suite]:
    """Every `expectations/*.json`, keyed by the table it names; a malformed file is an error."""
    suites: dict[str, Suite] = {}
    for path in sorted(folder.glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        name = spec.get("name")
        match = _REFERENCE.match(str(name))
        if not match or match["column"] or match["schema"] not in MART_SCHEMAS:
            raise ValueError(f"{path}: `name` must be a mart table `<schema>.<table>` ({', '.join(MART_SCHEMAS)})")
        if path.stem != name:
            raise ValueError(f"{path}: the file must be named after its table, {name}.json")
        suites[name] = Suite(name, path, spec)
    return suites


# --- placeholders -------------------------------------------------------------------------------


def _reference(text: str, want_column: bool) -> tuple[str, str | None]:
    match = _REFERENCE.match(text)
    if not match or match["schema"] not in MART_SCHEMAS or bool(match["column"]) != want_column:
        shape = "<schema>.<table>.<column>" if want_column else "<schema>.<table>"
        raise ValueError(f"placeholder reference {text!r} must be a mart {shape}")
    return f'"{match["schema"]}"."{match["table"]}"', match["column"]


def resolve(value: Any, con: Any, cache: dict[str, Any] | None = None) -> Any:
    """`value` with every `$values` / `$row_count` placeholder replaced by what the warehouse holds."""
    cache = {} if cache is None else cache
    if isinstance(value, list):
        return [resolve(v, con, cache) for v in value]
    if not isinstance(value, dict):
        return value
    if "$values" in value:
        where = dict(value.get("where") or {})
        ref = f"{value['$values']}|{json.dumps(where, sort_keys=True)}"
        if ref not in cache:
            table, column = _reference(str(value["$values"]), want_column=True)
            bad = [c for c in where if not _IDENTIFIER.match(c)]
            if bad:
                raise ValueError(f"placeholder `where` names invalid columns: {bad}")
            filters = "".join(f' AND "{c}" = ?' for c in where)
            query = f'SELECT DISTINCT "{column}" FROM {table} WHERE "{column}" IS NOT NULL{filters}'
            cache[ref] = sorted(r[0] for r in con.execute(query, list(where.values())).fetchall())
        return cache[ref]
    if "$row_count" in value:
        ref = f"rows:{value['$row_count']}"
        if ref not in cache:
            table, _ = _reference(str(value["$row_count"]), want_column=False)
            cache[ref] = int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return cache[ref]
    return {k: resolve(v, con, cache) for k, v in value.items()}


def references(value: Any) -> set[str]:
    """The tables (`schema.table`) the placeholders in `value` read."""
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    if "$values" in value:
        return {".".join(str(value["$values"]).split(".")[:2])}
    if "$row_count" in value:
        return {str(value["$row_count"])}
    return set().union(*(references(v) for v in value.values())) if value else set()


def describe_threshold(kwargs: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The expectation's bounds for a human: placeholders shown as what they stand for, not the list."""
    skip = {"column", "column_A", "column_B", "column_list", "result_format", "catch_exceptions"}
    shown: dict[str, Any] = {}
    for key, raw in kwargs.items():
        if key in skip:
            continue
        if isinstance(raw, dict) and "$values" in raw:
            where = " and ".join(f"{c} = {v!r}" for c, v in (raw.get("where") or {}).items())
            scope = f" where {where}" if where else ""
            shown[key] = f"values of {raw['$values']}{scope} ({len(resolved[key])} values)"
        elif isinstance(raw, dict) and "$row_count" in raw:
            shown[key] = f"rows of {raw['$row_count']} ({resolved[key]})"
        else:
            shown[key] = raw
    return shown


# --- validation ---------------------------------------------------------------------------------


@dataclass
class TableOutcome:
    """What one suite found on one table."""

    table: str
    rows: int = 0
    evaluated: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})  # critical → count
    failures: dict[bool, list[dict[str, Any]]] = field(default_factory=lambda: {True: [], False: []})
    error: str | None = None
    docs_url: str | None = None

    def passed(self, critical: bool) -> bool:
        return self.error is None and not self.failures[critical]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _columns_of(kwargs: Mapping[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    if "column_list" in kwargs:
        return ", ".join(kwargs["column_list"])
    return None


def failure_record(
    expectation: Mapping[str, Any], resolved: Mapping[str, Any], result: Any, key: Sequence[str]
) -> dict:
    """Evidence for one failed expectation: what, observed, threshold and a few offending keys."""
    found: dict[str, Any] = dict(result.result or {})
    if "observed_value" in found:
        observed: Any = found["observed_value"]
    elif "unexpected_count" in found:
        # GX's percentage is of the non-null values (nulls are not evaluated), so say so.
        evaluated = int(found.get("element_count") or 0) - int(found.get("missing_count") or 0)
        pct = found.get("unexpected_percent") or 0.0
        observed = f"{found['unexpected_count']} of {evaluated} non-null values unexpected ({pct:.2f}%)"
    else:
        observed = None
    offending = [
        {k: row.get(k) for k in key if k in row} or row for row in (found.get("partial_unexpected_index_list") or [])
    ][:SAMPLE]
    record = {
        "expectation": expectation["type"],
        "column": _columns_of(expectation["kwargs"]),
        "why": (expectation.get("meta") or {}).get("why"),
        "observed": observed,
        "threshold": describe_threshold(expectation["kwargs"], resolved),
        "offending_keys": offending,
        "offending_values": (found.get("partial_unexpected_list") or [])[:SAMPLE],
    }
    info = result.exception_info or {}
    if info.get("raised_exception"):
        record["exception"] = str(info.get("exception_message"))[:300]
    return _jsonable(record)


class Validator:
    """One ephemeral GX context: validates tables and keeps a Data Docs site of what it validated."""

    def __init__(self, docs_dir: Path, run_id: str = "") -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline, and nothing phones home
        import great_expectations as gx  # lazy: ~3 s, paid only when a GX check runs
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.gx = gx
        self.run_id = run_id
        self.docs_dir = docs_dir
        site = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        config = DataContextConfig(
            # In-memory stores and only our docs site (no temporary default site).
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            data_docs_sites={DOCS_SITE: site},
            progress_bars=ProgressBarsConfig(globally=False),  # no progress bars in the run's log
            analytics_enabled=False,
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.source = self.context.data_sources.add_pandas("warehouse")
        self._validations = 0
        self._fresh_docs = False

    def validate(self, con: Any, suite: Suite, key: Sequence[str]) -> TableOutcome:
        """Read the table, resolve the suite's placeholders and validate; failures split by severity."""
        outcome = TableOutcome(suite.table)
        try:
            frame = con.sql(f"SELECT * FROM {suite.table}").df()
            cache: dict[str, Any] = {}
            resolved = [resolve(e["kwargs"], con, cache) for e in suite.expectations()]
        except Exception as exc:  # a missing table or a bad placeholder: the check fails, saying why
            outcome.error = f"{type(exc).__name__}: {exc}"[:500]
            return outcome
        outcome.rows = len(frame)
        if suite.table in {s.name for s in self.context.suites.all()}:
            self.context.suites.delete(suite.table)  # validated again in this run (a retried step)
        gx_suite = self.context.suites.add(
            self.gx.ExpectationSuite(
                name=suite.table,
                notes=suite.spec.get("notes"),
                meta=suite.spec.get("meta") or {},
                expectations=[
                    # The position rides along in `meta`: GX returns results in its own order.
                    {**e, "kwargs": r, "meta": {**(e.get("meta") or {}), POSITION: i}}
                    for i, (e, r) in enumerate(zip(suite.expectations(), resolved, strict=True))
                ],
            )
        )
        self._validations += 1
        name = f"{suite.table}-{self._validations}"  # unique: a table validated twice in a run gets two
        batch = self.source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all_rows")
        definition = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=name, data=batch, suite=gx_suite)
        )
        result_format = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": SAMPLE,
            "unexpected_index_column_names": [k for k in key if k in frame.columns],
            "return_unexpected_index_query": False,
        }
        validation = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
        for result in validation.results:
            position = int(result.expectation_config.meta[POSITION])
            expectation, kwargs = suite.expectations()[position], resolved[position]
            critical = expectation.get("severity", "critical") == "critical"
            outcome.evaluated[critical] += 1
            if not result.success:
                outcome.failures[critical].append(failure_record(expectation, kwargs, result, key))
        return outcome

    def publish(self, outcome: TableOutcome) -> None:
        """Add the table's latest validation to the Data Docs site and note its page's URL."""
        if not self._fresh_docs:
            # A new run starts a new site: the pages of earlier runs would otherwise pile up nightly.
            if self.docs_dir.name == DOCS_FOLDER and self.docs_dir.exists():
                shutil.rmtree(self.docs_dir)
            self._fresh_docs = True
        mine = [
            i
            for i in self.context.validation_results_store.list_keys()
            if i.expectation_suite_identifier.name == outcome.table
        ]
        if not mine:
            return
        latest = max(mine, key=lambda i: str(i.run_id.run_time))
        self.context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[latest])
        urls = self.context.get_docs_sites_urls(resource_identifier=latest, site_name=DOCS_SITE)
        outcome.docs_url = urls[0]["site_url"] if urls and urls[0].get("site_url") else None


_RUN_VALIDATOR: list[Validator] = []
"""The validator of the current run (in-process executor: every check step of a run shares it)."""


def run_validator(docs_dir: Path, run_id: str) -> Validator:
    """The run's validator, created (and the GX context with it) by the run's first GX check."""
    if not _RUN_VALIDATOR or _RUN_VALIDATOR[0].run_id != run_id or _RUN_VALIDATOR[0].docs_dir != docs_dir:
        _RUN_VALIDATOR[:] = [Validator(docs_dir, run_id)]
    return _RUN_VALIDATOR[0]


# --- the Dagster checks -------------------------------------------------------------------------


def _description(suite: Suite, critical: bool) -> str:
    if critical:
        return (
            f"Referential integrity of {suite.table} from `{suite.relpath}` (its `critical` expectations). "
            "Blocking: the KPIs do not build on orphaned keys."
        )
    return (
        f"Great Expectations suite `{suite.relpath}` on {suite.table}: row counts, distributions and "
        "cross-column rules (`warning` expectations). WARN: never blocks."
    )


def _result(suite: Suite, outcome: TableOutcome, critical: bool) -> AssetCheckResult:
    failures = outcome.failures[critical]
    passed = outcome.passed(critical)
    if outcome.error:
        description = f"could not validate: {outcome.error}"
    elif failures:
        names = "; ".join(f"{f['expectation']} ({f['column'] or 'table'})" for f in failures[:3])
        description = f"{len(failures)} of {outcome.evaluated[critical]} expectations failed: {names}"
    else:
        description = None
    metadata: dict[str, Any] = {
        "suite": MetadataValue.path(suite.relpath),
        "rows": outcome.rows,
        "expectations": outcome.evaluated[critical],
        "failed": len(failures),
        "failures": MetadataValue.json(failures),
    }
    if outcome.error:
        metadata["error"] = outcome.error
    if outcome.docs_url:
        metadata["data_docs"] = MetadataValue.url(outcome.docs_url)
    return AssetCheckResult(
        asset_key=suite.key,
        check_name=INTEGRITY_CHECK if critical else SUITE_CHECK,
        passed=passed,
        severity=AssetCheckSeverity.ERROR if critical else AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def primary_keys(models: Sequence[Model] | None = None) -> dict[str, tuple[str, ...]]:
    """Each mart table's primary key (the offending rows' identity in the evidence)."""
    keys = {m.table: m.primary_key for m in (models if models is not None else load_models())}
    keys[_RECONCILIATION_TABLE] = ("system", "entity")
    return keys


def suite_check(suite: Suite, key: Sequence[str]) -> AssetChecksDefinition:
    """`gx_suite` (WARN) and, with critical expectations, `gx_referential_integrity` (blocking) on one table."""
    deps = [AssetKey(t.split(".")) for t in sorted(references(suite.spec.get("expectations", []))) if t != suite.table]
    specs = [AssetCheckSpec(SUITE_CHECK, asset=suite.key, additional_deps=deps, description=_description(suite, False))]
    if suite.expectations(critical=True):
        specs.append(
            AssetCheckSpec(
                INTEGRITY_CHECK,
                asset=suite.key,
                additional_deps=deps,
                blocking=True,
                description=_description(suite, True),
            )
        )

    @multi_asset_check(specs=specs, name=f"{'__'.join(suite.key.path)}_great_expectations", can_subset=True)
    def _check(context: AssetCheckExecutionContext, warehouse: Warehouse) -> Iterator[AssetCheckResult]:
        validator = run_validator(warehouse.paths.published.parent / DOCS_FOLDER, context.run.run_id)
        with warehouse.connect() as con:
            outcome = validator.validate(con, suite, key)
        try:
            validator.publish(outcome)
        except Exception as exc:  # the docs are a convenience: never let them hide the results
            context.log.warning(f"Data Docs not updated for {suite.table}: {type(exc).__name__}: {exc}")
        selected = set(context.selected_asset_check_keys)
        for spec in specs:
            if spec.key in selected:
                yield _result(suite, outcome, spec.name == INTEGRITY_CHECK)

    return _check


def gx_checks(
    suites: Mapping[str, Suite] | None = None, models: Sequence[Model] | None = None
) -> list[AssetChecksDefinition]:
    """One GX check step per suite in `expectations/` (see `suite_check`)."""
    suites = dict(suites if suites is not None else load_suites())
    keys = primary_keys(models)
    unknown = sorted(set(suites) - set(keys))
    if unknown:
        raise ValueError(f"expectations/ has suites for tables the warehouse does not build: {', '.join(unknown)}")
    return [suite_check(suite, keys[table]) for table, suite in suites.items()]
