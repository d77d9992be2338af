"""Personal data stays in the raw datasets: no e-mail address and no Mixpanel `distinct_id` that the
APIs delivered appears anywhere else in the warehouse.

Staging pseudonymises people (`person:` ids) and users; `tests/warehouse/test_staging_*.py` check each
system's staging tables against the people of the sandbox world. This test is the warehouse-wide net
over the published warehouse of `built_warehouse`: every column (cast to text) of every table of every
schema that is not a raw dataset (staging, links, marts, KPIs, quality, config…) is searched

- for every e-mail address found in any value of any raw table, and every `distinct_id` of the raw
  Mixpanel events, also inside longer values (a key, a URL, a sentence);
- for anything shaped like an e-mail address at all.

Each row is rendered as text and cut into tokens at every character an e-mail address or an id does
not contain; a value is found if it is part of a token. The same search over the raw tables finds the
values (the control), so finding none elsewhere means they are not there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.sql import connect_published

EMAIL = r"[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+"
TOKEN_CHARS = "a-z0-9@._%+-"
"""What an e-mail address or a sandbox `distinct_id` is made of: rows are cut into tokens elsewhere."""

NOT_PERSONAL = "git@"
"""`git@host:org/repo.git` is a Git remote (SSH's `git` user of the hosting service), not a person."""

MIN_NEEDLE = 8
"""Values this short would match inside unrelated tokens; the sandbox's are longer (see the control)."""


def _rows_as_text(tables: list[tuple[str, str]]) -> str:
    return " UNION ALL ".join(
        f'SELECT \'{schema}.{table}\' AS tbl, lower(CAST(t AS VARCHAR)) AS text FROM "{schema}"."{table}" AS t'
        for schema, table in tables
    )


def _tokens(con: duckdb.DuckDBPyConnection, tables: list[tuple[str, str]], name: str) -> None:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT DISTINCT tbl, "
        f"unnest(regexp_split_to_array(text, '[^{TOKEN_CHARS}]+')) AS token FROM ({_rows_as_text(tables)})"
    )


def _found(con: duckdb.DuckDBPyConnection, tokens: str) -> dict[str, list[str]]:
    """Needle → the tables whose values contain it."""
    rows = con.execute(
        f"SELECT n.needle, list(DISTINCT t.tbl ORDER BY t.tbl) FROM {tokens} AS t "
        "JOIN needles AS n ON contains(t.token, n.needle) GROUP BY n.needle"
    ).fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def warehouse(built_warehouse: dict) -> Iterator[duckdb.DuckDBPyConnection]:
    assert built_warehouse["result"].success, "the session's nightly run failed"
    published: Path = built_warehouse["paths"].published
    con = connect_published(published)
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1, 2"
    ).fetchall()
    raw = [(s, t) for s, t in tables if s.startswith("raw_")]
    elsewhere = [(s, t) for s, t in tables if not s.startswith("raw_")]
    assert len(raw) > 50 and len(elsewhere) > 50, f"tables: {len(raw)} raw, {len(elsewhere)} elsewhere"

    emails = {
        e
        for (e,) in con.execute(
            f"SELECT DISTINCT unnest(regexp_extract_all(text, '{EMAIL}')) FROM ({_rows_as_text(raw)})"
        ).fetchall()
        if not e.startswith(NOT_PERSONAL)
    }
    ids = {i.lower() for (i,) in con.execute("SELECT DISTINCT distinct_id FROM raw_mixpanel.events").fetchall()}
    con.execute("CREATE TEMP TABLE needles AS SELECT unnest(?) AS needle", [sorted(emails | ids)])
    con.execute("CREATE TEMP TABLE emails AS SELECT unnest(?) AS needle", [sorted(emails)])
    con.execute("CREATE TEMP TABLE distinct_ids AS SELECT unnest(?) AS needle", [sorted(ids)])
    _tokens(con, elsewhere, "elsewhere")
    _tokens(con, raw, "raw")
    yield con
    con.close()


def test_the_search_finds_every_raw_value_in_the_raw_datasets(warehouse: duckdb.DuckDBPyConnection) -> None:
    """The control: the needles are real, distinctive, and the token search finds each of them."""
    counts = {
        name: warehouse.execute(f"SELECT count(*), min(length(needle)) FROM {name}").fetchone()
        for name in ("emails", "distinct_ids")
    }
    assert counts["emails"][0] >= 20, f"too few raw e-mail addresses to mean anything: {counts}"  # type: ignore[index]
    assert counts["distinct_ids"][0] >= 100, f"too few Mixpanel users to mean anything: {counts}"  # type: ignore[index]
    assert min(c[1] for c in counts.values()) >= MIN_NEEDLE, f"needles short enough to match by chance: {counts}"  # type: ignore[index]
    found = _found(warehouse, "raw")
    (total,) = warehouse.execute("SELECT count(*) FROM needles").fetchone()  # type: ignore[misc]
    assert len(found) == total
    assert any(t.startswith("raw_mixpanel.") for tables in found.values() for t in tables)


def test_no_raw_email_or_distinct_id_appears_outside_the_raw_datasets(warehouse: duckdb.DuckDBPyConnection) -> None:
    leaks = _found(warehouse, "elsewhere")
    sample = dict(list(sorted(leaks.items()))[:20])
    assert leaks == {}, f"{len(leaks)} personal values outside the raw datasets, e.g. {sample}"


def test_nothing_shaped_like_an_email_appears_outside_the_raw_datasets(warehouse: duckdb.DuckDBPyConnection) -> None:
    shaped = warehouse.execute(
        f"SELECT tbl, list(DISTINCT token ORDER BY token)[:5] FROM elsewhere "
        f"WHERE regexp_matches(token, '{EMAIL}') AND NOT starts_with(token, ?) GROUP BY tbl ORDER BY tbl",
        [NOT_PERSONAL],
    ).fetchall()
    assert shaped == [], f"e-mail addresses outside the raw datasets: {shaped}"
