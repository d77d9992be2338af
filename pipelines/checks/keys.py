"""The two blocking checks every SQL model has: its primary key and its pandera contract.

They run in the model's own step, on the connection that built the table (see
`pipelines/assets/warehouse_models.py`): a separate step per check cost ≈ 100 ms of Dagster and
DuckDB overhead each, a third of a scale-1 run. Selected on their own (the UI's "Execute checks"),
they evaluate the table as it is, without rebuilding it.
"""

from collections.abc import Sequence

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from pipelines.models import Model

PRIMARY_KEY = "primary_key"
CONTRACT = "contract"


def key_violations(con: object, table: str, key: Sequence[str], sample: int = 5) -> dict[str, object]:
    """Duplicate and null keys of `table`, with a few offending key values as evidence."""
    cols = ", ".join(f'"{c}"' for c in key)
    dupes = con.execute(  # type: ignore[attr-defined]
        f"SELECT {cols}, count(*) AS n FROM {table} GROUP BY {cols} HAVING count(*) > 1 ORDER BY n DESC LIMIT {sample}"
    ).fetchall()
    dup_count = con.execute(  # type: ignore[attr-defined]
        f"SELECT count(*) FROM (SELECT {cols} FROM {table} GROUP BY {cols} HAVING count(*) > 1)"
    ).fetchall()[0][0]
    nulls = con.execute(  # type: ignore[attr-defined]
        f"SELECT count(*) FROM {table} WHERE {' OR '.join(f'{c} IS NULL' for c in cols.split(', '))}"
    ).fetchall()[0][0]
    return {
        "duplicate_keys": int(dup_count),
        "null_keys": int(nulls),
        "sample": [dict(zip([*key, "rows"], row, strict=True)) for row in dupes],
    }


def model_check_specs(model: Model, asset: AssetKey) -> list[AssetCheckSpec]:
    """The primary-key and contract checks of one model, both blocking."""
    return [
        AssetCheckSpec(
            PRIMARY_KEY,
            asset=asset,
            blocking=True,
            description=f"({', '.join(model.primary_key)}) is unique and never null in {model.table}. "
            "Blocking: downstream models and KPIs do not build on duplicated or orphaned rows.",
        ),
        AssetCheckSpec(
            CONTRACT,
            asset=asset,
            blocking=True,
            description=f"pandera contract of {model.table}: column types, nullability, ranges and vocabularies "
            "from its header and the naming rules (pipelines/checks/contracts.py). Blocking.",
        ),
    ]


def key_check_result(con: object, table: str, key: Sequence[str], asset: AssetKey | None = None) -> AssetCheckResult:
    """The `primary_key` check of `table`: `key` unique and never null, with offending keys as evidence."""
    found = key_violations(con, table, key)
    passed = found["duplicate_keys"] == 0 and found["null_keys"] == 0
    return AssetCheckResult(
        asset_key=asset,
        check_name=PRIMARY_KEY,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=None if passed else f"{found['duplicate_keys']} duplicated and {found['null_keys']} null keys",
        metadata={
            "duplicate_keys": found["duplicate_keys"],
            "null_keys": found["null_keys"],
            "offending_keys": MetadataValue.json(found["sample"]),
            "primary_key": ", ".join(key),
        },
    )


def primary_key_result(con: object, model: Model, asset: AssetKey) -> AssetCheckResult:
    return key_check_result(con, model.table, model.primary_key, asset)


def contract_result(con: object, model: Model, asset: AssetKey) -> AssetCheckResult:
    from pipelines.checks.contracts import validate

    frame = con.sql(f"SELECT * FROM {model.table}").pl()  # type: ignore[attr-defined]
    found = validate(model, frame)
    return AssetCheckResult(
        asset_key=asset,
        check_name=CONTRACT,
        passed=found["passed"],
        severity=AssetCheckSeverity.ERROR,
        description=None if found["passed"] else f"{found['failures']} failure cases",
        metadata={
            "rows": frame.height,
            "failures": found["failures"],
            "failed_checks": MetadataValue.json(found["failed_checks"]),
            "failure_cases": MetadataValue.json(found["failure_cases"]),
        },
    )


def model_check_result(con: object, model: Model, asset: AssetKey, check_name: str) -> AssetCheckResult:
    """Evaluate one of `model_check_specs` on the table as it is now."""
    if check_name == PRIMARY_KEY:
        return primary_key_result(con, model, asset)
    if check_name == CONTRACT:
        return contract_result(con, model, asset)
    raise ValueError(f"{model.table} has no check named {check_name!r}")
