"""Dates written in several formats: one shared parser, used identically when training,
scoring a batch and serving a request (ONNX cannot parse dates)."""
from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import numpy as np

EPOCH = date(1970, 1, 1)


@lru_cache(maxsize=65536)
def _parse(text: str, formats: tuple[str, ...]) -> int | None:
    """Days since 1970-01-01 of the first format that parses `text`, or None."""
    s = text.strip()
    for fmt in formats:
        try:
            return (datetime.strptime(s, fmt).date() - EPOCH).days
        except ValueError:
            continue
    return None


def parse_one(value: object, formats: tuple[str, ...]) -> tuple[int | None, bool]:
    """(days since epoch or None, ok). None with ok=True means a missing value."""
    if value is None:
        return None, True
    if isinstance(value, float) and value != value:  # NaN
        return None, True
    if isinstance(value, datetime):
        return (value.date() - EPOCH).days, True
    if isinstance(value, date):
        return (value - EPOCH).days, True
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None, True
        return int(value.astype("datetime64[D]").astype(np.int64)), True
    if not isinstance(value, str):
        return None, False
    if value.strip() == "":
        return None, True
    days = _parse(value, formats)
    return days, days is not None


def parse_many(values, formats: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Vector form: (days as float64 with NaN for missing/invalid, invalid mask)."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind == "M":
        d = arr.astype("datetime64[D]")
        nat = np.isnat(d)
        out = d.astype(np.int64).astype(np.float64)
        out[nat] = np.nan
        return out, np.zeros(len(arr), dtype=bool)
    out = np.empty(len(arr), dtype=np.float64)
    bad = np.zeros(len(arr), dtype=bool)
    for i, v in enumerate(arr):
        days, ok = parse_one(v, formats)
        out[i] = np.nan if days is None else days
        bad[i] = not ok
    return out, bad


def iso(days: float) -> str:
    return str(np.datetime64(int(days), "D"))
