"""SQL models in `warehouse/`: parsing, dependency discovery, building, and their Dagster assets.

A model is one `.sql` file. Its folder names its schema (`warehouse/staging/github/x.sql` →
`staging.x`, `warehouse/deployment/x.sql` → `deployment.x`) and it starts with a YAML header in a
block comment that documents it:

    /*
    description: One row per pull request ...
    grain: pull request
    primary_key: [repo, pr_number]
    columns:
      repo: Repository, owner/name.
      ...
    */
    select ...

Upstream tables are read from the SQL itself (sqlglot), so dependencies are never listed twice.
Every column must be documented: the build fails naming the file and the column otherwise, and the
documentation is written into DuckDB as table and column comments.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
import yaml
from sqlglot import exp

from pipelines.settings import WAREHOUSE_SQL_DIR

HEADER = re.compile(r"\A\s*/\*(?P<yaml>.*?)\*/", re.DOTALL)
LAYERS = ("staging", "intermediate", "development", "deployment", "quality", "usage", "kpi")


class ModelError(Exception):
    """A model file that cannot be parsed or built; the message names the file and what to fix."""


@dataclass(frozen=True)
class Model:
    path: Path
    schema: str
    name: str
    sql: str
    description: str
    grain: str
    primary_key: tuple[str, ...]
    columns: dict[str, str]
    upstream: tuple[tuple[str, str], ...]  # (schema, table) read by the SQL
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-column rules for the pandera contract
    partitioned_by: str | None = None  # a date column: the table is maintained by daily partitions (partitions.py)

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def relpath(self) -> str:
        try:
            return str(self.path.relative_to(WAREHOUSE_SQL_DIR.parent))
        except ValueError:
            return str(self.path)


def parse_model(path: Path, root: Path = WAREHOUSE_SQL_DIR) -> Model:
    text = path.read_text(encoding="utf-8")
    match = HEADER.match(text)
    if not match:
        raise ModelError(f"{path}: missing the /* YAML */ header (description, grain, primary_key, columns)")
    try:
        header = yaml.safe_load(match.group("yaml")) or {}
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: the header is not valid YAML: {exc}") from exc
    for key in ("description", "grain", "primary_key", "columns"):
        if key not in header:
            raise ModelError(f"{path}: the header lacks `{key}`")
    layer = path.relative_to(root).parts[0]
    if layer not in LAYERS:
        raise ModelError(f"{path}: models live under one of {', '.join(LAYERS)}")
    sql = text[match.end() :].strip().rstrip(";")
    columns = {str(k): str(v).strip() for k, v in (header["columns"] or {}).items()}
    pk = header["primary_key"]
    return Model(
        path=path,
        schema=layer,
        name=path.stem,
        sql=sql,
        description=str(header["description"]).strip(),
        grain=str(header["grain"]).strip(),
        primary_key=tuple([pk] if isinstance(pk, str) else pk),
        columns=columns,
        upstream=tuple(sorted(table_references(sql, path))),
        checks=_checks(header.get("checks"), columns, path),
        partitioned_by=_partition_column(header.get("partitioned_by"), columns, path),
    )


def _partition_column(raw: Any, columns: dict[str, str], path: Path) -> str | None:
    if raw is None:
        return None
    if str(raw) not in columns:
        raise ModelError(f"{path}: partitioned_by names `{raw}`, which is not a documented column")
    return str(raw)


def _checks(raw: Any, columns: dict[str, str], path: Path) -> dict[str, dict[str, Any]]:
    checks = dict(raw or {})
    unknown = [c for c in checks if c not in columns]
    if unknown:
        raise ModelError(f"{path}: `checks` names columns that are not documented: {', '.join(unknown)}")
    allowed = {"isin", "ge", "le", "not_null", "matches"}
    for column, rules in checks.items():
        bad = set(rules or {}) - allowed
        if bad:
            raise ModelError(f"{path}: checks.{column} has unknown rules {sorted(bad)} (allowed: {sorted(allowed)})")
    return checks


def table_references(sql: str, path: Path | None = None) -> set[tuple[str, str]]:
    """Schema-qualified tables the query reads (CTE names excluded)."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ModelError(f"{path}: SQL does not parse: {exc}") from exc
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs: set[tuple[str, str]] = set()
    for table in tree.find_all(exp.Table):
        if table.name in ctes and not table.db:
            continue
        if not table.db:
            raise ModelError(f"{path}: table `{table.name}` must be schema-qualified (e.g. staging.{table.name})")
        refs.add((table.db, table.name))
    return refs


@cache
def load_models(root: Path = WAREHOUSE_SQL_DIR) -> tuple[Model, ...]:
    """All models under `root`, in dependency order (upstream first)."""
    # Only the layer folders: warehouse/data/ (the default place of the warehouse and of dlt's
    # working folder, whose load packages hold .sql jobs) is local state, not models.
    models = [parse_model(p, root) for p in sorted(p for layer in LAYERS for p in (root / layer).glob("**/*.sql"))]
    by_table = {m.table: m for m in models}
    ordered: list[Model] = []
    state: dict[str, int] = {}

    def visit(m: Model, trail: tuple[str, ...]) -> None:
        if state.get(m.table) == 2:
            return
        if state.get(m.table) == 1:
            raise ModelError(f"dependency cycle: {' → '.join((*trail, m.table))}")
        state[m.table] = 1
        for schema, name in m.upstream:
            upstream = by_table.get(f"{schema}.{name}")
            if upstream:
                visit(upstream, (*trail, m.table))
        state[m.table] = 2
        ordered.append(m)

    for m in models:
        visit(m, ())
    return tuple(ordered)


DEFAULT_SALT = "opsmap-sandbox-salt"


def install_macros(con: duckdb.DuckDBPyConnection, salt: str | None = None) -> None:
    """Connection-local macros the models use to pseudonymise people.

    TEMP macros live only in this connection, so the salt (a secret) is never stored in the file.
    """
    salt = salt or os.environ.get("OPSMAP_PSEUDONYM_SALT") or DEFAULT_SALT
    con.execute("SET TimeZone = 'UTC'")  # date parts and casts of timestamps are UTC days
    con.execute(
        "CREATE OR REPLACE TEMP MACRO person_identity(x) AS "
        "nullif(regexp_replace(lower(split_part(x, '@', 1)), '[^a-z0-9]', '', 'g'), '')"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP MACRO pseudonym(kind, x) AS CASE WHEN x IS NULL OR x = '' THEN NULL "
        f"ELSE kind || ':' || substr(sha256({_literal(salt)} || ':' || x), 1, 16) END"
    )
    con.execute("CREATE OR REPLACE TEMP MACRO person_id(x) AS pseudonym('person', person_identity(x))")
    con.execute("CREATE OR REPLACE TEMP MACRO user_id(x) AS pseudonym('user', x)")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build_model(
    con: duckdb.DuckDBPyConnection, model: Model, days: tuple[date, date] | None = None, every_day: bool = False
) -> dict[str, Any]:
    """(Re)build one model's table atomically, document it, and return its row count and columns.

    With `days` (a partitioned model), only the rows of those days (inclusive) are replaced, unless
    they are `every_day` the partitions have: then the table is recreated with just those days.
    """
    started = time.perf_counter()
    install_macros(con)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {model.schema}")
        if days is None:
            con.execute(f"CREATE OR REPLACE TABLE {model.table} AS {model.sql}")
        else:
            _replace_days(con, model, days, every_day)
        described = con.execute(f"DESCRIBE {model.table}").fetchall()
        actual = [(row[0], row[1]) for row in described]
        undocumented = [c for c, _ in actual if c not in model.columns]
        missing = [c for c in model.columns if c not in {name for name, _ in actual}]
        if undocumented or missing:
            problems = []
            if undocumented:
                problems.append(f"columns without a description: {', '.join(undocumented)}")
            if missing:
                problems.append(f"documented columns the query does not return: {', '.join(missing)}")
            raise ModelError(f"{model.relpath}: {'; '.join(problems)}")
        con.execute(f"COMMENT ON TABLE {model.table} IS {_literal(table_comment(model))}")
        for column, _ in actual:
            con.execute(f'COMMENT ON COLUMN {model.table}."{column}" IS {_literal(model.columns[column])}')
        rows = con.execute(f"SELECT count(*) FROM {model.table}").fetchall()[0]
        rebuilt = rows
        if days is not None:
            rebuilt = con.execute(
                f"SELECT count(*) FROM {model.table} WHERE {model.partitioned_by} BETWEEN ? AND ?", list(days)
            ).fetchall()[0]
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return {
        "rows": int(rows[0]) if rows else 0,
        "rows_rebuilt": int(rebuilt[0]) if rebuilt else 0,
        "columns": actual,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _replace_days(con: duckdb.DuckDBPyConnection, model: Model, days: tuple[date, date], every_day: bool) -> None:
    """Delete and rebuild the rows of `days` in a partitioned model's table; create it if it is new."""
    column = model.partitioned_by
    if column is None:
        raise ModelError(f"{model.relpath}: built for days {days[0]} – {days[1]} but has no `partitioned_by`")
    selected = f"SELECT * FROM ({model.sql}) AS model WHERE model.{column} BETWEEN ? AND ?"
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [model.schema, model.name],
    ).fetchall()[0][0]
    if every_day or not exists:
        con.execute(f"CREATE OR REPLACE TABLE {model.table} AS {selected}", list(days))
        return
    current = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {model.table}").fetchall()]
    wanted = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM ({model.sql}) AS model").fetchall()]
    if current != wanted:
        raise ModelError(
            f"{model.relpath}: the query's columns changed ({wanted}) but {model.table} still has {current}; "
            f"rebuild every day with `opsmap run` (or `opsmap backfill` over the whole range)"
        )
    con.execute(f"DELETE FROM {model.table} WHERE {column} BETWEEN ? AND ?", list(days))
    con.execute(f"INSERT INTO {model.table} {selected}", list(days))


def table_comment(model: Model) -> str:
    return f"{model.description} Grain: {model.grain}. Primary key: {', '.join(model.primary_key)}."
