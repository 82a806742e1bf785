"""One chunk of current data -> validated contract columns, with per-row problems.

The rules are the data contract core's (`runtime.contract.Contract`, the same object that
vets requests, batch files and training rows), and values reach it as `aiops score` hands
them over (`runtime.datafile.arrow_values`), so a value gets the same verdict here. To keep a 100k-row chunk cheap, text-like columns (strings,
categories, dates, booleans) are validated once per distinct value and the verdict is
spread back to the rows; numeric columns go through the contract's vectorised path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiops.runtime.contract import ColumnRule, Contract, RowErrors

RANGE_CODES = ("out_of_range",)


@dataclass
class Checked:
    values: np.ndarray  # parsed: float64 (int, float, date as days, bool) or object (str, category)
    null: np.ndarray  # missing in the input
    bad: np.ndarray  # breaks a contract rule (type, range, set, pattern, length, null)
    out_of_range: np.ndarray
    codes: dict[str, int] = field(default_factory=dict)  # problem code -> rows
    uniq: list | None = None  # text-like: the distinct parsed values, None last
    idx: np.ndarray | None = None  # text-like: each row's index into uniq
    unseen: np.ndarray | None = None  # text-like: which distinct values the training data never had

    def mark_unseen(self, known: frozenset) -> None:
        if self.uniq is not None:
            self.unseen = np.array([v is not None and v not in known for v in self.uniq], dtype=bool)


class ColumnChecker:
    def __init__(self, contract: Contract):
        self.contract = contract
        self.single = {c.name: Contract([c]) for c in contract.request_columns}
        self.rules = {c.name: c for c in contract.request_columns}
        self.seen: dict[str, dict] = {}  # `unique` columns: values of earlier chunks

    def missing(self, name: str, n: int) -> Checked:
        """A column absent from the input: every row breaks the contract if it is required."""
        rule = self.rules[name]
        values = np.full(n, np.nan) if _is_float_kind(rule) else np.full(n, None, dtype=object)
        bad = np.full(n, rule.required)
        return Checked(values, np.ones(n, dtype=bool), bad, np.zeros(n, dtype=bool),
                       {"missing_field": n} if rule.required else {}, [None] if not _is_float_kind(rule) else None,
                       np.zeros(n, dtype=np.int64) if not _is_float_kind(rule) else None)

    def check(self, name: str, raw: Any, n: int) -> Checked:
        rule = self.rules[name]
        if hasattr(raw, "combine_chunks"):
            raw = raw.combine_chunks()
        if hasattr(raw, "type"):  # pyarrow array
            from aiops.runtime.datafile import arrow_values

            if rule.numeric:  # read as `aiops score` reads it: dirty text reaches the core as written
                vals = arrow_values(raw, rule)
                if vals.dtype.kind in "iuf":
                    vals = vals.astype(np.float64)
                    return self._rows(rule, vals) if rule.unique else self._numeric(rule, vals)
                return self._rows(rule, vals)
            if rule.unique or not _encodable(raw.type):  # nested values (lists, structs): row by row
                arr = np.empty(len(raw), dtype=object)
                arr[:] = raw.to_pylist()
                return self._rows(rule, arr) if rule.unique else self._by_value(rule, *_factorize(arr))
            enc = raw.dictionary_encode()
            uniq = enc.dictionary.to_pylist() + [None]
            idx = enc.indices.fill_null(len(uniq) - 1).to_numpy(zero_copy_only=False).astype(np.int64)
            return self._by_value(rule, uniq, idx)
        arr = np.asarray(raw, dtype=object)
        if rule.numeric or rule.unique:
            return self._rows(rule, arr)
        uniq, idx = _factorize(arr)
        return self._by_value(rule, uniq, idx)

    def check_rows(self, checked: dict[str, Checked], n: int) -> Checked | None:
        """The contract's row checks (`Contract.check_rows`) on a chunk's checked columns: the
        rows where one is false, with their codes (`row_check:<name>`); None without checks."""
        if not self.contract.row_checks:
            return None
        errors = RowErrors(n)
        for name, c in checked.items():  # a value that failed its column's check is not compared
            errors.add_mask(c.bad, name, "", "")
        before = len(errors.items)
        self.contract.check_rows({k: c.values for k, c in checked.items()}, errors)
        return _from_errors(np.zeros(n), np.zeros(n, dtype=bool), errors.items[before:], n)

    def _numeric(self, rule: ColumnRule, x: np.ndarray) -> Checked:
        x = np.asarray(x, dtype=np.float64)
        null = np.isnan(x)
        cols, errors = self.single[rule.name].validate_columns({rule.name: x}, len(x))
        return _from_errors(cols[rule.name], null, errors.items, len(x))

    def _rows(self, rule: ColumnRule, arr: np.ndarray) -> Checked:
        nulls: dict[str, np.ndarray] = {}
        cols, errors = self.single[rule.name].validate_columns({rule.name: arr}, len(arr), nulls=nulls, seen=self.seen)
        return _from_errors(cols[rule.name], nulls[rule.name], errors.items, len(arr))

    def _by_value(self, rule: ColumnRule, uniq: list, idx: np.ndarray) -> Checked:
        u = np.empty(len(uniq), dtype=object)
        u[:] = uniq
        nulls: dict[str, np.ndarray] = {}
        cols, errors = self.single[rule.name].validate_columns({rule.name: u}, len(u), nulls=nulls)
        parsed = cols[rule.name]
        m = len(u)
        bad_u = np.zeros(m, dtype=bool)
        range_u = np.zeros(m, dtype=bool)
        code_u: dict[str, np.ndarray] = {}
        for i, _, code, _ in errors.items:
            bad_u[i] = True
            code_u.setdefault(code, np.zeros(m, dtype=bool))[i] = True
            if code in RANGE_CODES:
                range_u[i] = True
        null_u = nulls[rule.name]  # the core's null: blank text too
        per_value = np.bincount(idx, minlength=m)
        codes = {c: int(per_value[mask].sum()) for c, mask in code_u.items() if per_value[mask].sum()}
        parsed_uniq = [None if (isinstance(v, float) and v != v) else v for v in parsed.tolist()]
        return Checked(parsed[idx], null_u[idx], bad_u[idx], range_u[idx], codes,
                       parsed_uniq if parsed.dtype == object else None, idx if parsed.dtype == object else None)


def _from_errors(values: np.ndarray, null: np.ndarray, items: list, n: int) -> Checked:
    bad = np.zeros(n, dtype=bool)
    rng = np.zeros(n, dtype=bool)
    codes: dict[str, set] = {}
    for i, _, code, _ in items:
        bad[i] = True
        codes.setdefault(code, set()).add(i)
        if code in RANGE_CODES:
            rng[i] = True
    return Checked(values, null, bad, rng, {c: len(rows) for c, rows in codes.items()})


def _encodable(t: Any) -> bool:
    import pyarrow as pa

    return not (pa.types.is_nested(t) or pa.types.is_null(t))


def _is_float_kind(rule: ColumnRule) -> bool:
    return rule.dtype in ("int", "float", "bool", "date", "datetime")


def _factorize(arr: np.ndarray) -> tuple[list, np.ndarray]:
    """(distinct values with None last, index of each row); unhashable values (lists and
    objects from JSON) share one value that the contract rejects as a wrong type."""
    seen: dict[Any, int] = {}
    uniq: list = []
    idx = np.empty(len(arr), dtype=np.int64)
    for i, v in enumerate(arr.tolist()):
        if v is None or (isinstance(v, float) and v != v):
            idx[i] = -1
            continue
        try:
            k = (type(v), v)
            j = seen.get(k)
        except TypeError:
            v = k = _UNHASHABLE
            j = seen.get(k)
        if j is None:
            j = seen[k] = len(uniq)
            uniq.append(v)
        idx[i] = j
    uniq.append(None)
    idx[idx == -1] = len(uniq) - 1
    return uniq, idx


_UNHASHABLE = object()
