"""`POST /quality/validate`: the pipeline's own data-quality checks, run on the published warehouse.

The same two checks guard every SQL model in the nightly run (`pipelines/checks/`): the primary key
is unique and never null (`key_violations`), and the table honours its pandera contract
(`validate`). Table names are looked up in the model catalogue (`warehouse/**/*.sql`): the SQL
that runs names the catalogue's table, never the request's text.
"""

from __future__ import annotations

from functools import cache

from pipelines.api import schemas as s
from pipelines.api.db import Snapshot
from pipelines.models import Model, load_models


@cache
def catalogue() -> dict[str, Model]:
    """Every SQL model, by `schema.table`."""
    return {m.table: m for m in load_models()}


def validate_table(snap: Snapshot, model: Model) -> s.TableResult:
    """Run the primary-key and contract checks of one model's table on a snapshot."""
    # Imported here: the checks module pulls in Dagster (seconds), which the read endpoints never need.
    from pipelines.checks.contracts import validate
    from pipelines.checks.keys import key_violations

    # One cursor per check: key_violations leaves its last result open, which a cursor refuses to mix with more work.
    with snap.cursor() as cur:
        keys = key_violations(cur, model.table, model.primary_key)
    with snap.cursor() as cur:
        frame = cur.sql(f"SELECT * FROM {model.table}").pl()  # model.table comes from the catalogue
    contract = validate(model, frame)
    key_passed = keys["duplicate_keys"] == 0 and keys["null_keys"] == 0
    return s.TableResult(
        table=model.table,
        rows=frame.height,
        passed=key_passed and contract["passed"],
        primary_key=s.KeyCheck(
            columns=list(model.primary_key),
            passed=key_passed,
            duplicate_keys=keys["duplicate_keys"],
            null_keys=keys["null_keys"],
            sample=[{k: _plain(v) for k, v in row.items()} for row in keys["sample"]],
        ),
        contract=s.ContractCheck(**contract),
    )


def _plain(value: object) -> str | int | float | bool | None:
    """A key value as JSON can carry it (timestamps and dates as ISO text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    iso = getattr(value, "isoformat", None)
    return iso() if iso else str(value)
