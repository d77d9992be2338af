"""pandera contracts for every SQL model, derived from its header and the warehouse's naming rules.

The rules every model obeys by name (warehouse/README.md):
- `*_at` columns are UTC timestamps; `day`/`*_date`/`window_*` are dates;
- durations state their unit (`*_hours`, `*_days`, `*_minutes`, `*_ms`, `*_s`, `*_seconds`) and are ≥ 0;
- `*_rate` and `adoption_rate` lie in [0, 1];
- people appear only as pseudonyms: `author_id`, `assignee_id`, … match `person:<16 hex>`;
- the documented primary key is unique and never null.
A header may add per-column rules under `checks:` (`isin`, `ge`, `le`, `not_null`, `matches`), e.g.
`checks: {status: {isin: [todo, in_progress, done]}}`. The table is read through Arrow into polars
and validated lazily, so one run reports every failure, with a few offending rows as evidence.
"""

from __future__ import annotations

import re
from typing import Any

import pandera.polars as pa
import polars as pl

from pipelines.models import Model

DURATION = re.compile(r"(_hours|_days|_minutes|_ms|_s|_seconds)$")
PERSON = re.compile(r"(^|_)(author|assignee|reporter|reviewer|creator|commander|actor|triggered_by|person)_id$")
PSEUDONYM = r"^person:[0-9a-f]{16}$"


def column_rules(model: Model) -> dict[str, pa.Column]:
    declared: dict[str, dict[str, Any]] = model.checks
    columns: dict[str, pa.Column] = {}
    for name in model.columns:
        rules = declared.get(name, {})
        checks: list[pa.Check] = []
        dtype: Any = None
        if name.endswith("_at"):
            dtype = pl.Datetime(time_zone="UTC")
        if DURATION.search(name):
            checks.append(pa.Check.ge(0, error=f"{name} is a duration and cannot be negative"))
        if name.endswith("_rate"):
            checks.append(pa.Check.in_range(0, 1, error=f"{name} is a rate in [0, 1]"))
        if PERSON.search(name):
            checks.append(pa.Check.str_matches(PSEUDONYM, error=f"{name} must be a person pseudonym"))
        if "isin" in rules:
            checks.append(pa.Check.isin(rules["isin"]))
        if "ge" in rules:
            checks.append(pa.Check.ge(rules["ge"]))
        if "le" in rules:
            checks.append(pa.Check.le(rules["le"]))
        if "matches" in rules:
            checks.append(pa.Check.str_matches(rules["matches"]))
        not_null = rules.get("not_null", False) or name in model.primary_key
        columns[name] = pa.Column(dtype, checks=checks, nullable=not not_null, coerce=False, required=True)
    return columns


def contract(model: Model) -> pa.DataFrameSchema:
    """The pandera schema of one model's table."""
    return pa.DataFrameSchema(
        column_rules(model),
        strict=True,  # uniqueness of the key is the SQL `primary_key` check's job (cheap on any size)
        name=model.table,
        description=f"Contract of {model.table} (from {model.relpath} and the naming rules).",
    )


def validate(model: Model, frame: pl.DataFrame, sample: int = 5) -> dict[str, Any]:
    """Validate `frame` lazily; return pass/fail, the number of failures and a few failure cases."""
    try:
        contract(model).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        rows = cases.head(sample).to_dicts() if isinstance(cases, pl.DataFrame) else []
        checks = sorted({str(r.get("check")) for r in cases.to_dicts()}) if isinstance(cases, pl.DataFrame) else []
        return {
            "passed": False,
            "failures": len(cases),
            "failed_checks": checks[:20],
            "failure_cases": [{k: str(v) for k, v in r.items()} for r in rows],
        }
    return {"passed": True, "failures": 0, "failed_checks": [], "failure_cases": []}
