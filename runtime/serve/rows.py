"""The serving fast path: records to the ONNX feed in plain Python, without numpy per column.

`Contract.validate_records` is the authority on what is valid and on every error message.
For a request of a few records its per-column numpy work costs far more than the model, so
the server first asks `FeatureRows.rows`: per record, `RowAcceptor`'s checks give the same
clean values as the contract when the record is plainly valid (native JSON types that pass
every check), and None as soon as anything is unusual; the server then asks the contract,
which gives the verdict and the per-record errors. So the fast path can only make a valid
request faster, never change a verdict. `RowAcceptor.accept` does the same for many records
at once, as numpy columns (large requests, jobs).

`scalar_step` is `features.derive_one` for one value, in Python: the same operations in
the same double arithmetic (numpy's log1p, numpy's clip semantics), then the same cast to
float32. Tests hold `FeatureRows`' feed to `features.derive` bit for bit, on every
transform, on edge values and on generated records.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from datetime import date
from typing import Any, Callable

import numpy as np

from aiops.runtime.contract import MISSING_CATEGORY, ColumnRule, Contract, is_utf8
from aiops.runtime.dates import parse_one
from aiops.runtime.rowchecks import holds
from aiops.runtime.features import STRING_TRANSFORMS, FeatureStep

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
            if not v or v.isspace():  # the core's null
                return _NULL
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
    time = c.dtype == "datetime"

    def check(v: Any) -> Any:
        if type(v) is str:
            days, ok = parse_one(v, formats, time)
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
            elif c.dtype in ("date", "datetime"):
                chk, numeric = _date(c), True
            else:
                chk, numeric = _text(c, contract), False
            self._cols.append((c.name, chk, c.required, c.nullable, np.nan if numeric else None, numeric))
        self._known = frozenset(self.names) | ({self.target} if self.target else frozenset())
        # `unique` columns: a request whose records repeat a value is left to the contract
        self._unique = tuple(k for k, c in enumerate(contract.request_columns) if c.unique)
        # row checks (runtime.rowchecks): a record where one is false is left to the contract
        at = {name: k for k, name in enumerate(self.names)}
        self._row_checks = tuple((r, at[r["left"]], at.get(r["right"], 0) if r["right"] is not None else 0)
                                 for r in contract.row_checks
                                 if r["left"] in at and (r["right"] is None or r["right"] in at))

    def values(self, r: Any) -> list[Any] | None:
        """A record's clean values in contract column order (floats holding finite values or
        NaN, str or None), or None as soon as anything is unusual (ask the contract)."""
        if type(r) is not dict or not self._known.issuperset(r):
            return None
        vals = []
        append = vals.append
        for name, check, required, nullable, null, _numeric in self._cols:
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
        for r, i, j in self._row_checks:
            if not holds(r, vals[i], vals[j]):
                return None
        return vals

    def distinct(self, rows: list[list[Any]], seen: dict[str, dict] | None = None) -> bool:
        """False when records repeat a value of a `unique` column, among themselves or with
        `seen` (earlier parts of the same input): the contract then decides. When True and
        `seen` is given, their values are added to it, as `Contract.validate_records` does."""
        new = []
        for k in self._unique:
            name = self.names[k]
            vals = [r[k] for r in rows if r[k] is not None and r[k] == r[k]]
            if len(set(vals)) != len(vals) or (seen is not None and any(v in seen.get(name, ()) for v in vals)):
                return False
            new.append((name, vals))
        if seen is not None:
            for name, vals in new:
                seen.setdefault(name, {}).update(dict.fromkeys(vals, True))
        return True

    def accept(self, records: list[Any], seen: dict[str, dict] | None = None) -> dict[str, np.ndarray] | None:
        """The contract's clean columns if every record is plainly valid, else None. `seen`:
        the values of `unique` columns in earlier parts of the same input (a job's chunks)."""
        rows = []
        for r in records:
            vals = self.values(r)
            if vals is None:
                return None
            rows.append(vals)
        if self._unique and not self.distinct(rows, seen):
            return None
        out: dict[str, np.ndarray] = {}
        for (name, *_rest, numeric), col in zip(self._cols, zip(*rows) if rows else [()] * len(self._cols)):
            if numeric:
                out[name] = np.array(col, dtype=np.float64)
            else:
                arr = np.empty(len(col), dtype=object)
                arr[:] = col
                out[name] = arr
        return out


_CASTS = ("passthrough", "impute", "scale")
_NAN = math.nan
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _finite(y: float) -> float:
    return y if y - y == 0.0 else _NAN  # inf - inf and nan - nan are nan


def _category(v: Any) -> str:
    """derive_one's category text for a clean value: MISSING_CATEGORY for a missing one; a
    number (numeric, date and bool columns hold floats) as "3" for 3.0 and "2.5" for 2.5;
    text as it is."""
    if v is None or v != v:
        return MISSING_CATEGORY
    if type(v) is float:
        return str(int(v)) if v.is_integer() else str(v)
    return v


def scalar_step(s: FeatureStep, at: dict[str, int]) -> Callable[[list[Any]], Any]:
    """`features.derive_one` for one row, on Python values: a function of the row's clean
    values (in contract column order: floats holding finite values or NaN, str or None)
    giving the feature value before the cast to float32, with the same bits as derive."""
    i = at[s.source]
    t = s.transform
    if t in STRING_TRANSFORMS:
        return lambda v: _category(v[i])
    if t in _CASTS or (t == "bucketize" and s.edges is None):
        return lambda v: v[i]
    if t == "clip":  # np.clip: a value equal to a bound is kept (-0.0 stays -0.0); NaN stays NaN
        lo = -math.inf if s.clip_min is None else float(s.clip_min)
        hi = math.inf if s.clip_max is None else float(s.clip_max)

        def clip(v: list[Any]) -> float:
            x = v[i]
            if x == x:
                if not x >= lo:
                    x = lo
                if not x <= hi:
                    x = hi
            return x
        return clip
    if t == "log":  # numpy's log1p, not math's: they differ in the last bit
        log1p = np.log1p
        return lambda v: float(log1p(v[i])) if v[i] > -1.0 else _NAN
    if t in ("ratio", "difference", "days_between"):
        j = at[s.other] if s.other else None
        ref = float(s.reference_days) if s.reference_days is not None else _NAN
        if t == "ratio":  # IEEE double arithmetic, as numpy's
            return lambda v: _finite(v[i] / v[j]) if v[j] != 0 else _NAN
        if j is None:
            return lambda v: _finite(v[i] - ref)
        return lambda v: _finite(v[i] - v[j])
    if t == "date_part":
        return _date_part(i, s.part or "")
    if t == "bucketize":
        edges = [float(e) for e in s.edges]
        top = len(edges) - 2

        def bucket(v: list[Any]) -> float:
            x = v[i]
            if x != x:
                return _NAN
            return float(min(max(bisect_right(edges, x) - 1, 0), top))
        return bucket
    raise ValueError(f"unknown transform {t!r}")


def _date_part(i: int, part: str) -> Callable[[list[Any]], float]:
    """features._date_part for one value: days (a date-time's time of day a fraction) read to
    the millisecond, with the same rounding (half to even) and floor divisions."""
    def split(x: float) -> tuple[int, int]:
        ms = round(x * 86_400_000.0)
        whole = ms // 86_400_000
        return whole, ms - whole * 86_400_000

    if part == "day_of_week":  # Monday = 0, as in Python
        return lambda v: _NAN if v[i] != v[i] else float((split(v[i])[0] + 3) % 7)
    if part == "hour":
        return lambda v: _NAN if v[i] != v[i] else float(split(v[i])[1] // 3_600_000)
    if part == "minute":
        return lambda v: _NAN if v[i] != v[i] else float(split(v[i])[1] % 3_600_000 // 60_000)
    get = {"year": lambda d: d.year, "month": lambda d: d.month, "quarter": lambda d: (d.month - 1) // 3 + 1,
           "day": lambda d: d.day, "day_of_year": lambda d: d.timetuple().tm_yday}.get(part)
    if get is None:
        raise ValueError(f"unknown date part {part!r}")
    return lambda v: _NAN if v[i] != v[i] else float(get(date.fromordinal(_EPOCH_ORDINAL + split(v[i])[0])))


class FeatureRows:
    """Records to feature rows and feature rows to the ONNX feed, for requests of a few
    records: plain Python per value, then one numpy call per input type.

    A feature row is a pair (float features, string features) in the model's input order.
    `rows(records)` gives one per record, or None as soon as a record is not plainly valid
    (`RowAcceptor` decides, the contract then gives the verdict and the errors). `feed(rows)`
    builds the feed; a single row is written into buffers kept for the purpose, twice when
    `twice` (the Predictor's `lone_row_twice`, see `Predictor.lone_feed`), so a one-record
    request allocates no input arrays. The
    buffers make `feed` usable from one thread only: the server's event loop.
    Tests hold every feed to `features.derive` of the contract's columns, bit for bit."""

    def __init__(self, acceptor: RowAcceptor, steps: list[FeatureStep], input_names: list[str], twice: bool = True):
        self.acceptor = acceptor
        at = {name: k for k, (name, *_rest) in enumerate(acceptor._cols)}
        by_name = {s.name: s for s in steps}
        order = [by_name[n] for n in input_names]
        self.float_names = [s.name for s in order if s.onnx_type == "float"]
        self.string_names = [s.name for s in order if s.onnx_type == "string"]
        self._float_fns = [scalar_step(s, at) for s in order if s.onnx_type == "float"]
        self._string_fns = [scalar_step(s, at) for s in order if s.onnx_type == "string"]
        self._twice = twice
        copies = 2 if twice else 1
        self._fbuf = np.zeros((len(self.float_names), copies, 1), dtype=np.float32)
        self._sbuf = np.full((len(self.string_names), copies, 1), MISSING_CATEGORY, dtype=object)
        self._one = {**{n: self._fbuf[k] for k, n in enumerate(self.float_names)},
                     **{n: self._sbuf[k] for k, n in enumerate(self.string_names)}}

    def row(self, vals: list[Any]) -> tuple[list[float], list[str]]:
        return [f(vals) for f in self._float_fns], [f(vals) for f in self._string_fns]

    def rows(self, records: list[Any]) -> list[tuple[list[float], list[str]]] | None:
        out = []
        acc = self.acceptor
        if acc._unique and len(records) > 1:
            vals_all = [acc.values(r) for r in records]
            if any(v is None for v in vals_all) or not acc.distinct(vals_all):
                return None
            return [self.row(v) for v in vals_all]
        for r in records:
            vals = acc.values(r)
            if vals is None:
                return None
            out.append(self.row(vals))
        return out

    def feed(self, rows: list[tuple[list[float], list[str]]]) -> dict[str, np.ndarray]:
        """The ONNX feed of these rows; one row comes back as two identical rows when `twice`."""
        if len(rows) == 1:
            f, s = rows[0]
            if f:
                self._fbuf[:, 0, 0] = f  # the C double -> float cast, as astype(np.float32)
                if self._twice:
                    self._fbuf[:, 1, 0] = f
            if s:
                self._sbuf[:, 0, 0] = s
                if self._twice:
                    self._sbuf[:, 1, 0] = s
            return self._one
        n = len(rows)
        feed = {}
        if self.float_names:
            fs = np.array([r[0] for r in rows], dtype=np.float32).T.copy()  # one contiguous row per input
            feed.update((name, fs[k].reshape(n, 1)) for k, name in enumerate(self.float_names))
        if self.string_names:
            ss = np.empty((len(self.string_names), n), dtype=object)
            ss.T[:] = [r[1] for r in rows]
            feed.update((name, ss[k].reshape(n, 1)) for k, name in enumerate(self.string_names))
        return feed
