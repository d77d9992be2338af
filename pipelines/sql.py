"""`opsmap sql`: read-only queries against the published warehouse, as a table, CSV or JSON."""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import polars as pl


def connect_published(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """Open the published warehouse read-only, as it is now, in a connection of its own.

    `duckdb.connect(path)` reuses a database instance already open on the same path in this
    process, so a long-lived process (a notebook kernel, a server) that still holds a connection
    from before a publish would keep being handed the old snapshot. Attaching the file to a fresh
    in-memory database opens whatever file is at `warehouse` now; a connection opened earlier keeps
    its own, consistent snapshot until it is closed. The catalog is named after the file's stem, as
    `duckdb.connect` would name it, so fully qualified names (`opsmap.kpi.dora`) keep working.
    """
    con = duckdb.connect(":memory:")
    try:
        catalog = '"' + warehouse.stem.replace('"', '""') + '"'
        con.execute(f"ATTACH ? AS {catalog} (READ_ONLY)", [str(warehouse)])
        con.execute(f"USE {catalog}")
        con.execute("SET TimeZone = 'UTC'")  # `_at` columns read back in UTC, whatever the machine's zone
    except Exception:
        con.close()
        raise
    return con


def run_query(warehouse: Path, query: str, fmt: str = "table") -> str:
    """Run one query against the published warehouse and render it as a table, CSV or JSON."""
    con = connect_published(warehouse)
    try:
        relation = con.sql(query)
        frame = relation.pl() if relation is not None else pl.DataFrame()
    finally:
        con.close()
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        buffer = io.StringIO()
        frame.write_json(buffer)
        return buffer.getvalue() + "\n"
    with pl.Config(tbl_rows=200, tbl_cols=50, fmt_str_lengths=60, tbl_hide_dataframe_shape=False):
        return f"{frame}\n"


def interactive_shell(warehouse: Path) -> None:
    """A minimal read-only SQL prompt (statements end with `;`, `.quit` leaves)."""
    import readline  # noqa: F401 - line editing and history for input()

    print(f"opsmap sql · {warehouse} (read-only) · end statements with ';' · .tables · .quit")
    buffer: list[str] = []
    while True:
        try:
            line = input("opsmap> " if not buffer else "   ...> ")
        except EOFError:
            print()
            return
        stripped = line.strip()
        if not buffer and not stripped:
            continue
        if not buffer and stripped in (".quit", ".exit", "\\q"):
            return
        if not buffer and stripped == ".tables":
            stripped = "SELECT schema_name, table_name, comment FROM duckdb_tables() ORDER BY 1, 2;"
        buffer.append(stripped)
        if stripped.endswith(";"):
            try:
                # Lines keep their breaks: a leading `-- comment` line must not swallow the statement.
                print(run_query(warehouse, "\n".join(buffer).rstrip(";")), end="")
            except duckdb.Error as exc:
                print(f"error: {exc}")
            buffer = []
