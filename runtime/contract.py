"""The data contract's core: what a value means and which reason code a failure gets.

This module decides, for every path (compile and retrain, `aiops score`, HTTP requests and
jobs, `aiops monitor`'s data-quality figures). `contract.json` (written by the compiler from
the spec) holds, per column, the dtype, nullability, checks and PII flags. The generated
pandera schema is the reviewable rendering of the same rules; training runs it only on rows
this core accepted, as a cross-check (docs/contract.md). The serving fast path
(`runtime.http_rows`) accepts a subset of what this core accepts and defers everything else
to it; tests/test_contract_conformance.py holds every path to the same verdicts.

The rules (each failure gets one code, listed in REASON_CODES):
- null: None, a float NaN, or text that is empty or only whitespace, in every dtype;
- int: an integer, or a number or text whose value is whole ("35", "35.0", "3.5e1");
  |value| <= 2**53; float: any finite number, or text that reads as one ("NaN" is not null,
  "inf" is not finite; text numbers are ASCII, without "_");
- bool: true/false, or the text true/false in any case;
- date: text in one of the column's formats, or a date/datetime value;
- datetime: the same, with the time of day (a fraction of the day; `runtime.dates`);
- str/category: text as written (not stripped), or an integer written as its digits;
- isin, ge/le/gt/lt, regex (search), str_length (characters);
- unique: a value seen in an earlier row of the same input (file, request or job) is a
  duplicate; the first one is kept;
- row checks (`data.row_checks`, `runtime.rowchecks`): a comparison between two columns of
  a row, or a column and a literal, on the clean values; a null operand passes.
Surrounding whitespace is ignored when reading a number, a boolean or a date.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from aiops.runtime import rowchecks
from aiops.runtime.dates import parse_many
from aiops.runtime.regex_safety import compile_safe

MISSING_CATEGORY = "__missing__"

# every reason code a value or a record can get, in aiops's own words (docs/contract.md)
REASON_CODES = ("missing_field", "unknown_field", "not_an_object", "null", "wrong_type", "not_finite",
                "out_of_range", "not_in_set", "regex", "str_length", "invalid_text", "bad_date", "duplicate",
                "malformed", "row_check")  # row_check: written row_check:<the check's name>
DTYPES = ("int", "float", "str", "category", "bool", "date", "datetime")
TEMPORAL = ("date", "datetime")
CHECKS = ("nullable", "ge", "le", "gt", "lt", "isin", "regex", "min_length", "max_length", "unique", "formats")


def is_null(v: Any) -> bool:
    """The core's null: None, a float NaN, or text that is empty or only whitespace."""
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and (not v or v.isspace()))


@dataclass(frozen=True)
class ColumnRule:
    name: str
    dtype: str  # int float str category bool date datetime
    nullable: bool = False
    required: bool = True  # must be present in a scoring request
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    isin: tuple | None = None
    regex: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    unique: bool = False
    formats: tuple[str, ...] = ()
    pii: bool = False
    sensitive: bool = False
    masking: str | None = None
    source_name: str | None = None  # the column's name in a file's header, when it differs

    @property
    def numeric(self) -> bool:
        return self.dtype in ("int", "float")


@dataclass
class RowErrors:
    """Per-row reasons, as (row, column, code, message); messages never quote PII values."""

    n: int
    items: list[tuple[int, str, str, str]] = field(default_factory=list)

    def add_mask(self, mask: np.ndarray, column: str, code: str, message: str) -> None:
        for i in np.flatnonzero(mask):
            self.items.append((int(i), column, code, message))

    @property
    def bad_rows(self) -> np.ndarray:
        bad = np.zeros(self.n, dtype=bool)
        for i, *_ in self.items:
            bad[i] = True
        return bad

    def by_row(self) -> dict[int, list[tuple[str, str, str]]]:
        out: dict[int, list[tuple[str, str, str]]] = {}
        for i, col, code, msg in self.items:
            out.setdefault(i, []).append((col, code, msg))
        return out


class Contract:
    def __init__(self, columns: Iterable[ColumnRule], target: str | None = None, key: str | None = None,
                 row_checks: Iterable[dict[str, Any]] = ()):
        self.columns = list(columns)
        self.row_checks = [dict(r) for r in row_checks]  # {name, check, left, op, right, value}
        self.by_name = {c.name: c for c in self.columns}
        self.target = target
        self.key = key
        # a spec's pattern runs on request data: refused when it can backtrack catastrophically (UnsafeRegex)
        self._regex = {c.name: compile_safe(c.regex, f"contract column '{c.name}': regex") for c in self.columns
                       if c.regex}
        self._isin = {c.name: frozenset(str(v) for v in c.isin) for c in self.columns if c.isin is not None}

    # ------------------------------------------------------------------ io
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Contract":
        cols = []
        for c in d["columns"]:
            c = dict(c)
            c["isin"] = tuple(c["isin"]) if c.get("isin") is not None else None
            c["formats"] = tuple(c.get("formats") or ())
            cols.append(ColumnRule(**c))
        return cls(cols, d.get("target"), d.get("key"), d.get("row_checks") or ())

    @classmethod
    def load(cls, path: str | Path) -> "Contract":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        out = []
        for c in self.columns:
            d = {k: getattr(c, k) for k in ColumnRule.__dataclass_fields__}
            d["isin"] = list(c.isin) if c.isin is not None else None
            d["formats"] = list(c.formats)
            out.append(d)
        out_d: dict[str, Any] = {"columns": out, "target": self.target, "key": self.key}
        if self.row_checks:
            out_d["row_checks"] = self.row_checks
        return out_d

    @property
    def renames(self) -> dict[str, str]:
        """A file's header name -> the contract's name, for columns read under another name."""
        return {c.source_name: c.name for c in self.columns if c.source_name}

    @property
    def request_columns(self) -> list[ColumnRule]:
        return [c for c in self.columns if c.name != self.target]

    # ------------------------------------------------------------------ validation
    def validate_records(self, records: list[Any], allow_extra: bool = False,
                         seen: dict[str, dict] | None = None) -> tuple[dict[str, np.ndarray], RowErrors]:
        """Validate JSON-like records (dicts). Returns clean columns and per-row errors.
        `seen` carries the values of `unique` columns across calls (one input in parts)."""
        n = len(records)
        errors = RowErrors(n)
        raw: dict[str, list[Any]] = {c.name: [None] * n for c in self.request_columns}
        present: dict[str, np.ndarray] = {c.name: np.zeros(n, dtype=bool) for c in self.request_columns}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                errors.items.append((i, "", "not_an_object", "a record must be a JSON object"))
                continue
            for k, v in rec.items():
                if k in raw:
                    raw[k][i] = v
                    present[k][i] = True
                elif k == self.target:
                    continue
                elif not allow_extra:
                    name = k if isinstance(k, str) and len(k) <= 64 and k.isprintable() else "(unprintable name)"
                    errors.items.append((i, name, "unknown_field", "is not a column of the data contract"))
        not_obj = np.array([not isinstance(r, dict) for r in records], dtype=bool)
        for c in self.request_columns:
            missing = ~present[c.name] & ~not_obj
            if c.required:
                errors.add_mask(missing, c.name, "missing_field", "is required")
        seen = {} if seen is None else seen
        cols = {c.name: self._check_column(c, np.array(raw[c.name] + [None], dtype=object)[:-1], errors,
                                           skip=~present[c.name], seen=seen) for c in self.request_columns}
        self.check_rows(cols, errors)
        return cols, errors

    def validate_columns(self, data: dict[str, Any], n: int, *, columns: list[ColumnRule] | None = None,
                         nulls: dict[str, np.ndarray] | None = None,
                         seen: dict[str, dict] | None = None) -> tuple[dict[str, np.ndarray], RowErrors]:
        """Validate columnar data (numpy arrays or lists) of n rows, e.g. a batch chunk.
        `columns`: the rules to apply (default: the request columns; training passes all of
        them, target included). `nulls`, when given, receives each column's null mask.
        `seen` carries the values of `unique` columns across calls (one input in chunks)."""
        errors = RowErrors(n)
        cols = {}
        seen = {} if seen is None else seen
        for c in (self.request_columns if columns is None else columns):
            if c.name not in data:
                if c.required or columns is not None:
                    errors.add_mask(np.ones(n, dtype=bool), c.name, "missing_field", "is required")
                cols[c.name] = self._empty(c, n)
                if nulls is not None:
                    nulls[c.name] = np.ones(n, dtype=bool)
                continue
            cols[c.name] = self._check_column(c, data[c.name], errors, skip=np.zeros(n, dtype=bool), nulls=nulls,
                                              seen=seen)
        self.check_rows(cols, errors)
        return cols, errors

    def check_rows(self, cols: dict[str, np.ndarray], errors: RowErrors) -> None:
        """The row checks on clean columns (every path calls this once per row): a row where a
        check is false gets `row_check:<name>` on the check's left column. A check passes when
        an operand is null or failed its own column's check; a check whose columns are not all
        in `cols` is not this call's to judge."""
        if not self.row_checks:
            return
        failed: dict[str, np.ndarray] = {}
        for i, col, *_ in errors.items:
            failed.setdefault(col, np.zeros(errors.n, dtype=bool))[i] = True
        none = np.zeros(errors.n, dtype=bool)
        for r in self.row_checks:
            left, right = r["left"], r["right"]
            if left not in cols or (right is not None and right not in cols):
                continue
            skip = failed.get(left, none) | (failed.get(right, none) if right is not None else none)
            bad = rowchecks.failing(r, cols[left], cols[right] if right is not None else None, skip)
            errors.add_mask(bad, left, f"row_check:{r['name']}", rowchecks.describe(r))

    def _empty(self, c: ColumnRule, n: int) -> np.ndarray:
        if c.dtype in ("int", "float", "bool") + TEMPORAL:
            return np.full(n, np.nan)
        return np.full(n, None, dtype=object)

    def _check_column(self, c: ColumnRule, values: Any, errors: RowErrors, skip: np.ndarray,
                      nulls: dict[str, np.ndarray] | None = None, seen: dict[str, dict] | None = None) -> np.ndarray:
        arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
        n = len(arr)
        if c.dtype in ("int", "float"):
            out, null, bad_type = _to_float(arr)
            if c.dtype == "int":
                frac = ~null & ~bad_type & np.isfinite(out) & (np.floor(np.nan_to_num(out)) != np.nan_to_num(out))
                bad_type |= frac
            inf = ~null & ~bad_type & ~np.isfinite(np.nan_to_num(out, nan=0.0, posinf=np.inf, neginf=-np.inf))
            errors.add_mask(bad_type & ~skip, c.name, "wrong_type", f"must be {'an integer' if c.dtype == 'int' else 'a number'}")
            errors.add_mask(inf & ~skip, c.name, "not_finite", "must be a finite number")
            out[bad_type | inf] = np.nan
            ok = ~null & ~bad_type & ~inf
            with np.errstate(invalid="ignore"):
                for op, bound, fn in (("ge", c.ge, np.greater_equal), ("le", c.le, np.less_equal),
                                      ("gt", c.gt, np.greater), ("lt", c.lt, np.less)):
                    if bound is not None:
                        viol = ok & ~fn(out, bound)
                        sym = {"ge": ">=", "le": "<=", "gt": ">", "lt": "<"}[op]
                        errors.add_mask(viol, c.name, "out_of_range", f"must be {sym} {_num(bound)}")
            if c.isin is not None:
                allowed = np.array([float(v) for v in c.isin if _is_number(v)])
                viol = ok & ~np.isin(out, allowed)
                errors.add_mask(viol, c.name, "not_in_set", f"must be one of {', '.join(_num(v) for v in allowed)}")
        elif c.dtype == "bool":
            out = np.full(n, np.nan)
            null = np.zeros(n, dtype=bool)
            bad = np.zeros(n, dtype=bool)
            for i, v in enumerate(arr):
                if is_null(v):
                    null[i] = True
                elif isinstance(v, (bool, np.bool_)):
                    out[i] = float(v)
                elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
                    out[i] = float(v.strip().lower() == "true")
                else:
                    bad[i] = True
            errors.add_mask(bad & ~skip, c.name, "wrong_type", "must be true or false")
        elif c.dtype in TEMPORAL:
            out, bad = parse_many(arr, c.formats, time=c.dtype == "datetime")
            null = np.isnan(out) & ~bad
            errors.add_mask(bad & ~skip, c.name, "bad_date",
                            f"must be a {'date-time' if c.dtype == 'datetime' else 'date'} written as "
                            f"{' or '.join(c.formats)}")
        else:  # str / category
            out = np.empty(n, dtype=object)
            null = np.zeros(n, dtype=bool)
            bad = np.zeros(n, dtype=bool)
            bad_text = np.zeros(n, dtype=bool)
            for i, v in enumerate(arr):
                if v is None or (isinstance(v, str) and (not v or v.isspace())) or (isinstance(v, float) and v != v):
                    null[i] = True  # is_null, inlined: this loop is the batch path of a many-valued column
                    out[i] = None
                elif isinstance(v, str):
                    if v.isascii() or is_utf8(v):
                        out[i] = v
                    else:  # an unpaired surrogate (JSON "\ud800"): no encoder or model accepts it
                        bad_text[i] = True
                        out[i] = None
                elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                    out[i] = str(int(v))  # categories written as numbers
                else:
                    bad[i] = True
                    out[i] = None
            errors.add_mask(bad & ~skip, c.name, "wrong_type", "must be a string")
            errors.add_mask(bad_text & ~skip, c.name, "invalid_text", "must be valid Unicode text")
            bad |= bad_text
            ok = ~null & ~bad
            if c.isin is not None:
                allowed = self._isin[c.name]
                viol = ok & np.array([s not in allowed for s in out], dtype=bool) if n else ok
                msg = "is not an accepted category" if c.pii or len(allowed) > 12 else \
                    f"must be one of {', '.join(sorted(allowed))}"
                errors.add_mask(viol, c.name, "not_in_set", msg)
            if c.regex is not None:
                rx = self._regex[c.name]
                viol = ok & np.array([rx.search(s) is None if s is not None else False for s in out], dtype=bool)
                errors.add_mask(viol, c.name, "regex", f"must match {c.regex}")
            if c.min_length is not None or c.max_length is not None:
                lens = np.array([len(s) if s is not None else 0 for s in out])
                viol = ok & (((lens < c.min_length) if c.min_length is not None else False) |
                             ((lens > c.max_length) if c.max_length is not None else False))
                errors.add_mask(viol, c.name, "str_length",
                                f"length must be in [{c.min_length or 0}, {c.max_length if c.max_length is not None else 'inf'}]")
        if not c.nullable:
            errors.add_mask(null & ~skip, c.name, "null", "must not be null")
        if c.unique:
            self._check_unique(c, out, null | skip, errors, {} if seen is None else seen)
        if nulls is not None:
            nulls[c.name] = null
        return out

    @staticmethod
    def _check_unique(c: ColumnRule, out: np.ndarray, null: np.ndarray, errors: RowErrors,
                      seen: dict[str, dict]) -> None:
        """A value already seen (in this input) is a duplicate: the first one is kept. A value
        failing another check of this column does not count (other columns do not matter)."""
        first = seen.setdefault(c.name, {})
        failed = np.zeros(len(out), dtype=bool)
        for i, col, *_ in errors.items:
            if col == c.name:
                failed[i] = True
        dup = np.zeros(len(out), dtype=bool)
        for i, v in enumerate(out.tolist()):
            if null[i] or failed[i] or v is None or v != v:
                continue
            if v in first:
                dup[i] = True
            else:
                first[v] = True
        errors.add_mask(dup, c.name, "duplicate", "repeats the value of an earlier row (the column is unique)")


def is_utf8(s: str) -> bool:
    """False for text holding unpaired surrogates, which cannot be encoded."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: float) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def _to_float(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, null mask, wrong-type mask)."""
    if arr.dtype.kind in "iuf":
        out = arr.astype(np.float64)
        return out, np.isnan(out), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "b":
        return arr.astype(np.float64), np.zeros(len(arr), dtype=bool), np.zeros(len(arr), dtype=bool)
    n = len(arr)
    out = np.full(n, np.nan)
    null = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    for i, v in enumerate(arr):
        if v is None:
            null[i] = True
        elif isinstance(v, (bool, np.bool_)):
            bad[i] = True
        elif isinstance(v, (int, np.integer)):
            if abs(int(v)) > 2**53:
                bad[i] = True
            else:
                out[i] = float(v)
        elif isinstance(v, (float, np.floating)):
            if math.isnan(v):
                null[i] = True
            else:
                out[i] = float(v)
        elif isinstance(v, str):
            s = v.strip()
            if s == "":
                null[i] = True
            elif not s.isascii() or "_" in s:  # Python's float() reads "1_000" and other scripts' digits
                bad[i] = True
            else:
                try:
                    out[i] = float(s)
                except ValueError:
                    bad[i] = True
                else:
                    if math.isnan(out[i]):
                        bad[i] = True
                        out[i] = np.nan
        else:
            bad[i] = True
    return out, null, bad
