"""The serving fast path: accept clean records row by row, without numpy per column.

`Contract.validate_records` is the authority on what is valid and on every error message.
For a request of a few records its per-column numpy work costs far more than the model, so
the server first asks `RowAcceptor.accept`: it returns the same clean columns as the
contract when every record is plainly valid (native JSON types that pass every check), and
None as soon as anything is unusual; the server then asks the contract, which gives the
verdict and the per-record errors. So the fast path can only make a valid request faster,
never change a verdict; tests hold `accept` to the contract's columns on generated records.

`small_feed` builds the ONNX feed of a few rows the same way: plain casts, clips and string
features skip numpy's per-step machinery; every other step is `features.derive_one` itself.
Tests hold its feed to `features.derive` byte for byte.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .contract import MISSING_CATEGORY, ColumnRule, Contract, is_utf8
from .dates import parse_one
from .features import STRING_TRANSFORMS, FeatureStep, derive_one

_DEFER = object()  # "ask the contract"
_NULL = object()
_MAX_INT = 2**53


def _numeric(c: ColumnRule) -> Callable[[Any], Any]:
    is_int = c.dtype == "int"
    ge, le, gt, lt = (float(c.ge) if c.ge is not None else None, float(c.le) if c.le is not None else None,
                      float(c.gt) if c.gt is not None else None, float(c.lt) if c.lt is not None else None)
    allowed = frozenset(float(v) for v in c.isin if isinstance(v, (int, float)) and not isinstance(v, bool)) \
        if c.isin is not None else None

    def check(v: Any) -> Any:
        t = type(v)
        if t is int:
            if v > _MAX_INT or v < -_MAX_INT:
                return _DEFER
            f = float(v)
        elif t is float:
            if v != v:
                return _NULL
            if not math.isfinite(v) or (is_int and not v.is_integer()):
                return _DEFER
            f = v
        elif v is None:
            return _NULL
        else:
            return _DEFER
        if (ge is not None and not f >= ge) or (le is not None and not f <= le) or \
                (gt is not None and not f > gt) or (lt is not None and not f < lt) or \
                (allowed is not None and f not in allowed):
            return _DEFER
        return f
    return check


def _text(c: ColumnRule, contract: Contract) -> Callable[[Any], Any]:
    allowed = contract._isin.get(c.name)
    rx = contract._regex.get(c.name)
    lo, hi = c.min_length, c.max_length

    def check(v: Any) -> Any:
        t = type(v)
        if t is str:
            if not (v.isascii() or is_utf8(v)):
                return _DEFER
            s = v
        elif t is int:
            s = str(v)
        elif v is None:
            return _NULL
        else:
            return _DEFER
        if (allowed is not None and s not in allowed) or (rx is not None and rx.search(s) is None) or \
                (lo is not None and len(s) < lo) or (hi is not None and len(s) > hi):
            return _DEFER
        return s
    return check


def _boolean(c: ColumnRule) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is True:
            return 1.0
        if v is False:
            return 0.0
        return _NULL if v is None else _DEFER
    return check


def _date(c: ColumnRule) -> Callable[[Any], Any]:
    formats = tuple(c.formats)

    def check(v: Any) -> Any:
        if type(v) is str:
            days, ok = parse_one(v, formats)
            if not ok:
                return _DEFER
            return _NULL if days is None else float(days)
        return _NULL if v is None else _DEFER
    return check


class RowAcceptor:
    def __init__(self, contract: Contract):
        self.contract = contract
        self.target = contract.target
        self.names = tuple(c.name for c in contract.request_columns)
        self._cols = []  # (name, check, required, nullable, null value, numeric)
        for c in contract.request_columns:
            if c.dtype in ("int", "float"):
                chk, numeric = _numeric(c), True
            elif c.dtype == "bool":
                chk, numeric = _boolean(c), True
            elif c.dtype == "date":
                chk, numeric = _date(c), True
            else:
                chk, numeric = _text(c, contract), False
            self._cols.append((c.name, chk, c.required, c.nullable, np.nan if numeric else None, numeric))
        self._known = frozenset(self.names) | ({self.target} if self.target else frozenset())

    def accept(self, records: list[Any]) -> dict[str, np.ndarray] | None:
        """The contract's clean columns if every record is plainly valid, else None."""
        known = self._known
        for r in records:
            if type(r) is not dict or not known.issuperset(r):
                return None
        out: dict[str, np.ndarray] = {}
        for name, check, required, nullable, null, numeric in self._cols:
            vals = []
            append = vals.append
            for r in records:
                if name in r:
                    v = check(r[name])
                    if v is _DEFER:
                        return None
                    if v is _NULL:
                        if not nullable:
                            return None
                        v = null
                elif required:
                    return None
                else:
                    v = null
                append(v)
            if numeric:
                out[name] = np.array(vals, dtype=np.float64)
            else:
                arr = np.empty(len(vals), dtype=object)
                arr[:] = vals
                out[name] = arr
        return out


_CASTS = ("passthrough", "impute", "scale")


def small_feed(steps: list[FeatureStep], cols: dict[str, np.ndarray], copies: int = 1) -> dict[str, np.ndarray]:
    """`features.derive` for a few clean rows, as the contract leaves them: numeric columns
    are float64 holding finite values or NaN, text columns are objects holding str or None.
    Plain casts, clips, logs and string features are built directly; every other step, and
    any column that is not as described, goes through `features.derive_one`.

    copies=2 repeats the rows (for one record: `Predictor.run_feed` scores a single row as
    two, so that it gets the same bits as inside a batch; giving it two saves the copy)."""
    n = len(next(iter(cols.values()))) if cols else 0
    return _one_row(steps, cols, copies) if n == 1 else _many(steps, cols, copies)


def _many(steps: list[FeatureStep], cols: dict[str, np.ndarray], copies: int) -> dict[str, np.ndarray]:
    feed = {}
    for s in steps:
        src = cols[s.source]
        t = s.transform
        y = None
        if src.dtype == np.float64:
            if t in _CASTS:
                y = src.astype(np.float32)
            elif t == "clip":
                lo = -np.inf if s.clip_min is None else s.clip_min
                hi = np.inf if s.clip_max is None else s.clip_max
                y = np.clip(src, lo, hi).astype(np.float32)
            elif t == "log" and bool((src > -1.0).all()):  # log1p of a finite x > -1 is finite
                y = np.log1p(src).astype(np.float32)
        elif t in STRING_TRANSFORMS and src.dtype == object:
            vals = [MISSING_CATEGORY if v is None else v for v in src.tolist()]
            if all(type(v) is str for v in vals):
                y = np.empty(len(vals), dtype=object)
                y[:] = vals
        if y is None:
            y = derive_one(s, cols).reshape(-1)
        feed[s.name] = (np.tile(y, copies) if copies > 1 else y).reshape(-1, 1)
    return feed


def _one_row(steps: list[FeatureStep], cols: dict[str, np.ndarray], copies: int) -> dict[str, np.ndarray]:
    feed = {}
    for s in steps:
        src = cols[s.source]
        t = s.transform
        if t in STRING_TRANSFORMS and src.dtype == object:
            v = src[0]
            if v is None:
                v = MISSING_CATEGORY
            if type(v) is str:
                feed[s.name] = np.array([[v]] * copies, dtype=object)
                continue
        elif t in _CASTS and src.dtype == np.float64:
            feed[s.name] = np.array([[src[0]]] * copies, dtype=np.float32)  # the C double -> float cast
            continue
        elif t in ("ratio", "difference") and src.dtype == np.float64 and cols[s.other].dtype == np.float64:
            x, o = float(src[0]), float(cols[s.other][0])  # IEEE double arithmetic, as numpy's
            y = (x / o if o != 0 else math.nan) if t == "ratio" else x - o
            feed[s.name] = np.array([[y if math.isfinite(y) else math.nan]] * copies, dtype=np.float32)
            continue
        y = _many([s], cols, 1)[s.name] if t in ("clip", "log") else derive_one(s, cols)
        feed[s.name] = np.repeat(y, copies, axis=0) if copies > 1 else y
    return feed
