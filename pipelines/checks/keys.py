"""A blocking check on every SQL model: its documented primary key is unique and never null."""

from collections.abc import Sequence

from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, MetadataValue, asset_check

from pipelines.assets.warehouse_models import asset_key
from pipelines.models import Model, load_models
from pipelines.resources import Warehouse


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


def primary_key_check(model: Model) -> AssetChecksDefinition:
    @asset_check(
        asset=asset_key(model.schema, model.name),
        name="primary_key",
        blocking=True,
        description=f"({', '.join(model.primary_key)}) is unique and never null in {model.table}. "
        "Blocking: downstream models and KPIs do not build on duplicated or orphaned rows.",
    )
    def _check(warehouse: Warehouse) -> AssetCheckResult:
        with warehouse.connect() as con:
            found = key_violations(con, model.table, model.primary_key)
        passed = found["duplicate_keys"] == 0 and found["null_keys"] == 0
        return AssetCheckResult(
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=None if passed else f"{found['duplicate_keys']} duplicated and {found['null_keys']} null keys",
            metadata={
                "duplicate_keys": found["duplicate_keys"],
                "null_keys": found["null_keys"],
                "offending_keys": MetadataValue.json(found["sample"]),
                "primary_key": ", ".join(model.primary_key),
            },
        )

    return _check


def primary_key_checks(models: Sequence[Model] | None = None) -> list[AssetChecksDefinition]:
    return [primary_key_check(m) for m in (models if models is not None else load_models())]


def contract_check(model: Model) -> AssetChecksDefinition:
    from pipelines.checks.contracts import validate

    @asset_check(
        asset=asset_key(model.schema, model.name),
        name="contract",
        blocking=True,
        description=f"pandera contract of {model.table}: column types, nullability, ranges and vocabularies "
        "from its header and the naming rules (pipelines/checks/contracts.py). Blocking.",
    )
    def _check(warehouse: Warehouse) -> AssetCheckResult:
        with warehouse.connect() as con:
            frame = con.sql(f"SELECT * FROM {model.table}").pl()
        found = validate(model, frame)
        return AssetCheckResult(
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

    return _check


def contract_checks(models: Sequence[Model] | None = None) -> list[AssetChecksDefinition]:
    return [contract_check(m) for m in (models if models is not None else load_models())]
