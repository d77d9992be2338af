"""`opsmap sql`: read-only queries against the published warehouse, as a table, CSV or JSON."""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import polars as pl


def run_query(warehouse: Path, query: str, fmt: str = "table") -> str:
    con = duckdb.connect(str(warehouse), read_only=True)
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
        if not buffer and stripped in (".quit", ".exit", "\\q"):
            return
        if not buffer and stripped == ".tables":
            stripped = "SELECT schema_name, table_name, comment FROM duckdb_tables() ORDER BY 1, 2;"
        buffer.append(stripped)
        if stripped.endswith(";"):
            try:
                print(run_query(warehouse, " ".join(buffer).rstrip(";")), end="")
            except duckdb.Error as exc:
                print(f"error: {exc}")
            buffer = []
