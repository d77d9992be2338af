"""The SQL model runner: headers, lineage parsed from SQL, documentation enforced and written to DuckDB."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from pipelines.models import ModelError, build_model, load_models, parse_model, table_references
from pipelines.settings import WAREHOUSE_SQL_DIR


def test_every_model_parses_and_its_upstream_exists() -> None:
    models = load_models()
    assert models, "no models found"
    tables = {m.table for m in models}
    for m in models:
        assert m.columns and m.primary_key and m.grain, m.relpath
        assert set(m.primary_key) <= set(m.columns), f"{m.relpath}: primary key not documented"
        for schema, name in m.upstream:
            known = f"{schema}.{name}" in tables or schema.startswith("raw_") or schema == "config"
            assert known, f"{m.relpath} reads {schema}.{name}, which nothing builds"


def test_models_come_in_dependency_order() -> None:
    seen: set[str] = set()
    for m in load_models():
        for schema, name in m.upstream:
            if schema not in ("config",) and not schema.startswith("raw_"):
                assert f"{schema}.{name}" in seen, f"{m.table} built before {schema}.{name}"
        seen.add(m.table)


def test_table_references_ignore_ctes_and_require_schemas() -> None:
    sql = "with a as (select * from staging.x) select * from a join intermediate.y using (k)"
    assert table_references(sql) == {("staging", "x"), ("intermediate", "y")}
    with pytest.raises(ModelError, match="schema-qualified"):
        table_references("select * from bare_table")


def _model(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "staging" / "demo"
    folder.mkdir(parents=True)
    path = folder / "stg_demo__things.sql"
    path.write_text(body, encoding="utf-8")
    return path


def test_build_writes_comments_and_rejects_undocumented_columns(tmp_path: Path) -> None:
    header = "/*\ndescription: Things.\ngrain: thing\nprimary_key: [id]\ncolumns:\n  id: The id.\n"
    good = parse_model(_model(tmp_path, header + "*/\nselect 1 as id"), tmp_path)
    con = duckdb.connect()
    result = build_model(con, good)
    assert result["rows"] == 1
    assert con.execute("select comment from duckdb_columns() where table_name = 'stg_demo__things'").fetchone() == (
        "The id.",
    )
    assert "Grain: thing" in con.execute("select comment from duckdb_tables()").fetchone()[0]
    bad = parse_model(_model(tmp_path / "b", header + "*/\nselect 1 as id, 2 as secret_extra"), tmp_path / "b")
    with pytest.raises(ModelError, match="secret_extra"):
        build_model(con, bad)
    assert con.execute("select count(*) from staging.stg_demo__things").fetchone() == (1,)  # rolled back, not lost


def test_header_errors_name_the_file(tmp_path: Path) -> None:
    path = _model(tmp_path, "/*\ndescription: x\n*/\nselect 1")
    with pytest.raises(ModelError, match=re.escape("stg_demo__things.sql: the header lacks `grain`")):
        parse_model(path, tmp_path)


def test_models_live_only_in_known_layers() -> None:
    layers = {p.relative_to(WAREHOUSE_SQL_DIR).parts[0] for p in WAREHOUSE_SQL_DIR.glob("*/**/*.sql")}
    assert layers - {"data"} <= {"staging", "intermediate", "development", "deployment", "quality", "usage", "kpi"}


def test_sql_files_outside_the_layers_are_not_models(tmp_path: Path) -> None:
    # A run leaves dlt's load packages (with .sql jobs) under warehouse/data/; the next start must not read them.
    _model(tmp_path, "/*\ndescription: x\ngrain: one row\nprimary_key: [a]\ncolumns:\n  a: A.\n*/\nselect 1 as a")
    job = tmp_path / "data" / "dlt" / "pipelines" / "opsmap_jira" / "load" / "loaded" / "1" / "issues.0.sql"
    job.parent.mkdir(parents=True)
    job.write_text("DELETE FROM raw_jira.issues;")
    assert [m.table for m in load_models.__wrapped__(tmp_path)] == ["staging.stg_demo__things"]
