"""The business-value driver model: each value line is a formula over a metric's change and named assumptions.

Formulas are plain arithmetic over names (`baseline`, `current`, and the assumptions in
`warehouse/kpi/value_model.yaml`), evaluated by a tiny safe evaluator — never `eval`.
"""

from __future__ import annotations

import ast
import json
import operator
from typing import Any

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(formula: str, names: dict[str, float]) -> float:
    """Evaluate +, -, *, / and parentheses over numbers and the given names."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise KeyError(f"formula {formula!r} uses unknown name {node.id!r}")
            return float(names[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"formula {formula!r}: only + - * / and names are allowed")

    return walk(ast.parse(formula, mode="eval"))


def target_value(spec: dict[str, Any], baseline: float | None) -> float | None:
    """The metric's value when it exactly meets its target."""
    target = float(spec["target"])
    if spec["target_kind"] == "absolute":
        return target
    if baseline is None:
        return None
    factor = 1 + target / 100 if spec["direction"] == "higher" else 1 - target / 100
    return baseline * factor


def value_rows(
    model: dict[str, Any], metrics: dict[str, dict[str, Any]], measured: dict[str, tuple[float | None, float | None]]
) -> list[dict[str, Any]]:
    """kpi.business_value rows: one per value line, then a total per group and a grand total.

    `measured` maps each metric to its (baseline, current) values. A metric without a measured
    baseline (sync accuracy: nothing was synced before) uses the model's reference baseline.
    """
    assumptions = {k: float(v["value"]) for k, v in model["assumptions"].items()}
    reference = model["reference_baseline"]
    rows: list[dict[str, Any]] = []
    for line in model["lines"]:
        metric = line["driver_metric"]
        baseline, current = measured.get(metric, (None, None))
        baseline_source = "measured"
        if baseline is None and metric == "sync_accuracy":
            baseline, baseline_source = float(reference[metric]), "reference"
        target = target_value(metrics[metric], baseline)
        used = {name: assumptions[name] for name in assumptions if name in line["formula"]}
        reasons: list[str] = []
        measured_usd = _apply(line["formula"], used, baseline, current, "measured", metric, reasons)
        target_usd = _apply(line["formula"], used, baseline, target, "at target", metric, reasons)
        rows.append(
            {
                "value_line": line["value_line"],
                "value_group": line["group"],
                "driver_metric": metric,
                "formula": line["formula"],
                "baseline_value": baseline,
                "baseline_source": baseline_source,
                "current_value": current,
                "target_value": target,
                "measured_value_usd": measured_usd,
                "value_at_target_usd": target_usd,
                "assumptions": json.dumps(used, sort_keys=True),
                "null_reason": "; ".join(reasons) or None,
            }
        )
    for group in [*sorted({r["value_group"] for r in rows}), "all"]:
        members = [r for r in rows if group in ("all", r["value_group"]) and not r["value_line"].startswith("total")]
        rows.append(
            {
                "value_line": f"total_{group}",
                "value_group": group,
                "driver_metric": None,
                "formula": "sum of the group's lines",
                "baseline_value": None,
                "baseline_source": None,
                "current_value": None,
                "target_value": None,
                "measured_value_usd": _total(m["measured_value_usd"] for m in members),
                "value_at_target_usd": _total(m["value_at_target_usd"] for m in members),
                "assumptions": None,
                "null_reason": None,
            }
        )
    return rows


def _apply(
    formula: str,
    assumptions: dict[str, float],
    baseline: float | None,
    current: float | None,
    what: str,
    metric: str,
    reasons: list[str],
) -> float | None:
    if baseline is None or current is None:
        reasons.append(f"{what}: no {'baseline' if baseline is None else 'current'} value of {metric}")
        return None
    return round(evaluate(formula, {**assumptions, "baseline": baseline, "current": current}), 2)


def _total(values: Any) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else round(sum(values), 2)


def reference_measurements(model: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """(reference baseline, value at target) per metric: the planning scenario the defaults reproduce."""
    out = {}
    for metric, base in model["reference_baseline"].items():
        at_target = target_value(metrics[metric], float(base))
        out[metric] = (float(base), float(at_target))  # type: ignore[arg-type]
    return out
