"""The headline figures `opsmap run` and `make demo` print, read from the published warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {f"{s}.{t}" for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}


def headline_table(warehouse: Path) -> str:
    """A plain-text table of the KPIs (success metrics against targets, DORA), or what exists so far."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = _tables(con)
        lines: list[str] = []
        if "kpi.success_metrics" in tables:
            rows = con.execute(
                "SELECT metric, unit, baseline_value, current_value, improvement_pct, target, target_kind, met "
                "FROM kpi.success_metrics ORDER BY metric"
            ).fetchall()
            lines.append(f"{'success metric':<26}{'baseline':>12}{'current':>12}{'change %':>10}{'target':>10}  met")
            for metric, unit, base, cur, imp, target, kind, met in rows:
                tgt = f"{target:+.0f}%" if kind == "improvement_pct" else _fmt(target, unit)
                lines.append(
                    f"{metric:<26}{_fmt(base, unit):>12}{_fmt(cur, unit):>12}{_fmt(imp, 'pct'):>10}{tgt:>10}  "
                    f"{'yes' if met else ('no' if met is not None else 'n/a')}"
                )
        if "kpi.dora" in tables:
            lines.append("")
            lines.append(f"{'DORA (current window)':<34}{'value':>12}  tier")
            row = con.execute(
                "SELECT deployment_frequency_per_day, lead_time_hours_median, change_failure_rate, "
                "failed_deployment_recovery_hours_median, performance_tier "
                "FROM kpi.dora WHERE period_kind = 'current'"
            ).fetchall()
            row = row[0] if row else None
            if row:
                names = ["deployments per day", "lead time (h, median)", "change failure rate", "recovery (h, median)"]
                for name, value in zip(names, row[:4], strict=True):
                    lines.append(f"{name:<34}{_fmt(value, ''):>12}")
                lines.append(f"{'overall tier':<34}{row[4] or 'n/a':>12}")
        if "kpi.business_value" in tables:
            lines.append("")
            for group, measured, at_target in con.execute(
                "SELECT value_line, measured_value_usd, value_at_target_usd FROM kpi.business_value "
                "WHERE value_line LIKE 'total%' ORDER BY value_line"
            ).fetchall():
                lines.append(f"{group:<34}{_usd(measured):>12} measured   {_usd(at_target):>10} at target")
        if not lines:
            marts = sorted(t for t in tables if t.split(".")[0] in ("development", "deployment", "quality", "usage"))
            lines.append("rows per mart table")
            for t in marts:
                count = con.execute(f"SELECT count(*) FROM {t}").fetchall()[0]
                lines.append(f"  {t:<40}{count[0] if count else 0:>10}")
        return "\n".join(lines)
    finally:
        con.close()


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("ratio", "rate"):
        return f"{value * 100:.1f}%"
    if unit == "pct":
        return f"{value:+.1f}"
    return f"{value:,.2f}"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value / 1e6:,.2f}M"
