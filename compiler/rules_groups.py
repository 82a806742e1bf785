"""Semantic rules for how a sensitive attribute's groups are named: `labels` on a coded column
({0: female, 1: male}) and `data.indicators`, an attribute spread over 0/1 columns.

The groups themselves are computed by runtime/evaluation.attribute_groups, on every path
(compile evidence, retrain, monitor)."""
from __future__ import annotations

from aiops.compiler.context import Ctx
from aiops.runtime.evaluation import MISSING_GROUP, NO_INDICATOR, SEVERAL_INDICATORS

RESERVED = (MISSING_GROUP, NO_INDICATOR, SEVERAL_INDICATORS, "(outside bins)")


def check_groups(ctx: Ctx) -> None:
    for name, col in ctx.columns.items():
        if col is not None and col.labels:
            _check_labels(ctx, name, col)
    data = ctx.spec.data
    for attr, ind in ((data.indicators if data is not None else None) or {}).items():
        if ind is not None:
            _check_indicators(ctx, attr, ind)


def _values(col) -> list[str] | None:
    """The values a column can take, written as a group key, when the contract lists them."""
    if col.dtype == "bool":  # a YAML key true is read as 'True'
        return ["True", "False", "true", "false", "1", "0"]
    if col.checks is not None and col.checks.isin is not None:
        return [str(v) for v in col.checks.isin]
    return None


def _check_labels(ctx: Ctx, name: str, col) -> None:
    base = ("data", "columns", name, "labels")
    if col.dtype in ("float", "date"):
        ctx.err("E620", "labels do not apply to the column's dtype", base,
                f"labels name the codes of an int, bool, str or category column; '{name}' has dtype {col.dtype}",
                help="remove labels; group a numeric attribute with bins in its fairness bound", key=True)
        return
    if col.pii:
        ctx.err("E620", "labels do not apply to a PII column", base,
                f"'{name}' is pii: its groups are shown masked, never by name",
                help="remove labels, or pii: true if the column is not personal data", key=True)
        return
    values = _values(col)
    for code, label in col.labels.items():
        if values is not None and code not in values:
            ctx.err("E620", "a label names a value the column cannot take", base + (code,),
                    f"'{code}' is not one of the values of '{name}': {', '.join(values)}",
                    help="name the values the contract allows (checks.isin)", key=True)
        elif values is None and col.dtype == "int" and not _is_int(code):
            ctx.err("E620", "a label names a value the column cannot take", base + (code,),
                    f"'{name}' has dtype int; '{code}' is not an integer", key=True)
        if not label.strip() or label in RESERVED:
            ctx.err("E620", "a group label is empty or reserved", base + (code,),
                    f"got '{label}'; {', '.join(RESERVED)} are the names of aiops's own groups",
                    help="give the group a readable name, e.g. female")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _check_indicators(ctx: Ctx, attr: str, ind) -> None:
    base = ("data", "indicators", attr)
    if attr in ctx.columns:
        ctx.err("E621", "an indicator attribute has the name of a contract column", base,
                f"'{attr}' is also declared in data.columns", help="give the attribute its own name, e.g. race",
                key=True)
    cols = ind.columns or {}
    if len(cols) < 2:
        ctx.err("E621", "an indicator attribute needs at least two columns", base + ("columns",),
                f"'{attr}' lists {len(cols)}; each group is one 0/1 column",
                help="list every indicator column, e.g. {race_white: white, race_black: black}")
    seen: dict[str, str] = {}
    for c, label in cols.items():
        at = base + ("columns", c)
        col = ctx.column_ref(c, at, "an indicator attribute", code="E621", key=True)
        if col is not None:
            binary = col.dtype == "bool" or (col.dtype == "int" and col.checks is not None and (
                (col.checks.isin is not None and set(col.checks.isin) <= {0, 1}) or
                (col.checks.ge is not None and col.checks.ge >= 0 and col.checks.le is not None
                 and col.checks.le <= 1)))
            if not binary:
                ctx.err("E621", "an indicator column is not 0/1", at,
                        f"'{c}' has dtype {col.dtype}" + ("" if col.dtype != "int" else " without checks: "
                                                          "{isin: [0, 1]}"),
                        help=f"declare data.columns.{c} as dtype bool, or int with checks: {{isin: [0, 1]}}",
                        key=True)
            if not col.sensitive or col.pii:
                ctx.err("E621", "an indicator column must be sensitive and not pii", at,
                        f"'{c}' is part of the sensitive attribute '{attr}'"
                        + ("; it is pii, so the monitor would see it masked" if col.pii else ""),
                        help=f"set sensitive: true (and no pii) on data.columns.{c}", key=True)
        if not str(label).strip() or label in RESERVED:
            ctx.err("E620", "a group label is empty or reserved", at,
                    f"got '{label}'; {', '.join(RESERVED)} are the names of aiops's own groups",
                    help="give the group a readable name, e.g. white")
        elif label in seen:
            ctx.err("E621", "two indicator columns have the same group name", at,
                    f"'{label}' also names '{seen[label]}'", help="give each column its own group name")
        else:
            seen[label] = c
