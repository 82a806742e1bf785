"""Cross-column row checks (`data.row_checks`): their tiny grammar and their verdict.

A check is one comparison, `<column> <op> <column>` or `<column> <op> <literal>`, with op
one of `>= > <= < == !=`. A literal is a number, or text in single or double quotes (no
quote inside); for a date or datetime column the quoted text is an ISO date
(`'2013-01-01'`) or date-time (`'2013-01-01T06:00:00'`). Nothing else is accepted: a spec
is untrusted input, so a check is parsed here, never evaluated as code.

The verdict is taken on the contract core's clean values (numbers, dates and datetimes as
days since 1970-01-01, booleans as 1/0, text as written). A check with a null operand
passes (a missing value is the column's own rule: `nullable`), and so does a check whose
operand failed its own column check (the row is quarantined for that already). A row whose
check is false gets the reason `row_check:<name>` on its left column.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

OPS = (">=", "<=", "==", "!=", ">", "<")
ORDERED = (">=", "<=", ">", "<")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_GRAMMAR = re.compile(rf"^\s*({_IDENT})\s*(>=|<=|==|!=|>|<)\s*(?:({_IDENT})|({_NUMBER})|'([^'\n]*)'|\"([^\"\n]*)\")\s*$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
GRAMMAR_HELP = ("write '<column> <op> <column>' or '<column> <op> <literal>', op one of >= > <= < == !=, "
                "a literal a number or quoted text (e.g. released_at >= booked_at, or age >= 18)")


class RowCheckError(ValueError):
    """A check that is not of the grammar, or whose operands do not fit (a user error)."""


@dataclass(frozen=True)
class Parsed:
    left: str
    op: str
    right: str | None  # a column, or None with a literal
    literal: float | str | None  # a number, or quoted text (converted by `resolve` for date columns)


def parse(text: Any) -> Parsed:
    """The check's parts; RowCheckError when it is not exactly one comparison of the grammar."""
    if not isinstance(text, str) or len(text) > 500:
        raise RowCheckError("a check is one line of text of at most 500 characters")
    m = _GRAMMAR.match(text)
    if m is None:
        raise RowCheckError(f"'{text}' is not a comparison aiops can read")
    left, op, col, num, sq, dq = m.groups()
    if col is not None:
        return Parsed(left, op, col, None)
    if num is not None:
        return Parsed(left, op, None, float(num))
    return Parsed(left, op, None, sq if sq is not None else dq)


_TEMPORAL = ("date", "datetime")
_NUMERIC = ("int", "float")
_TEXT = ("str", "category")


def _kind(dtype: str) -> str:
    return "number" if dtype in _NUMERIC else "time" if dtype in _TEMPORAL else "text" if dtype in _TEXT else dtype


def resolve(p: Parsed, dtypes: dict[str, str]) -> dict[str, Any]:
    """The contract.json entry of a parsed check, given the contract's dtypes; RowCheckError
    when a column is unknown or the operands cannot be compared."""
    for c in (p.left, p.right):
        if c is not None and c not in dtypes:
            raise RowCheckError(f"'{c}' is not a column of data.columns")
    kind = _kind(dtypes[p.left])
    value: float | str | None = None
    if p.right is not None:
        other = _kind(dtypes[p.right])
        if other != kind:
            raise RowCheckError(f"'{p.left}' ({dtypes[p.left]}) and '{p.right}' ({dtypes[p.right]}) cannot be compared")
    elif kind == "number":
        if not isinstance(p.literal, float):
            raise RowCheckError(f"'{p.left}' is a number: compare it with a number, not quoted text")
        value = p.literal
    elif kind == "time":
        value = iso_days(p.literal) if isinstance(p.literal, str) else None
        if value is None:
            raise RowCheckError(f"'{p.left}' is a {dtypes[p.left]}: compare it with a quoted ISO date such as "
                                "'2013-01-01' or '2013-01-01T06:00:00'")
    elif kind == "text":
        if not isinstance(p.literal, str):
            raise RowCheckError(f"'{p.left}' is text: compare it with quoted text")
        value = p.literal
    else:
        raise RowCheckError(f"'{p.left}' is a bool: compare it with another bool column")
    if kind in ("text", "bool") and p.op in ORDERED:
        raise RowCheckError(f"'{p.op}' orders numbers and dates; '{p.left}' is {dtypes[p.left]}: use == or !=")
    return {"left": p.left, "op": p.op, "right": p.right, "value": value}


def iso_days(text: str) -> float | None:
    """An ISO date or date-time as days since 1970-01-01 (the core's clean value), or None."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    from aiops.runtime.dates import to_days

    return to_days(dt)


def describe(entry: dict[str, Any]) -> str:
    """The message of a failed check: never a row's value (it may be PII)."""
    right = entry["right"] if entry["right"] is not None else repr(entry["value"])
    return f"must be {entry['op']} {right}"


def failing(entry: dict[str, Any], left: np.ndarray, right: np.ndarray | None, skip: np.ndarray) -> np.ndarray:
    """Rows where the check is false: both operands present and usable (not in `skip`)."""
    n = len(left)
    if left.dtype.kind == "f":
        a = left
        b = right if right is not None else np.full(n, float(entry["value"]))
        b = b.astype(np.float64, copy=False)
        usable = ~skip & ~np.isnan(a) & ~np.isnan(b)
        with np.errstate(invalid="ignore"):
            ok = _compare(entry["op"], a, b)
        return usable & ~ok
    out = np.zeros(n, dtype=bool)
    bs = right.tolist() if right is not None else [entry["value"]] * n
    for i, (x, y) in enumerate(zip(left.tolist(), bs)):
        if skip[i] or x is None or y is None or x != x or y != y:
            continue
        out[i] = (x == y) != (entry["op"] == "==")
    return out


def _compare(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less, "==": np.equal,
            "!=": np.not_equal}[op](a, b)


def holds(entry: dict[str, Any], x: Any, y: Any) -> bool:
    """One row, on the fast path's clean values (float, NaN, str or None): True when the check
    passes (a null operand passes). Same comparisons as `failing`."""
    if entry["right"] is None:
        y = entry["value"]
    if x is None or y is None or x != x or y != y:
        return True
    op = entry["op"]
    if op == "==":
        return x == y
    if op == "!=":
        return x != y
    return x >= y if op == ">=" else x <= y if op == "<=" else x > y if op == ">" else x < y
