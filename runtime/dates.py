"""Dates and date-times written in several formats: one shared parser, used identically when
training, scoring a batch and serving a request (ONNX cannot parse dates).

A date's clean value is its days since 1970-01-01; a date-time's is the same with the time
of day as a fraction (`to_days`: 06:00 is .25), so that splits, windows, `days_between` and
`date_part` treat both alike. A date-time written with an offset (`%z`) is taken in UTC; one
without is taken as written."""
from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache

import numpy as np

EPOCH = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000


def to_days(dt: datetime) -> float:
    """A date-time as days since 1970-01-01, the time of day a fraction (microseconds exact
    as integers, then one correctly rounded division: the same bits as `parse_many`'s)."""
    us = ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1_000_000 + dt.microsecond
    return float((dt.date() - EPOCH).days) + us / _US_PER_DAY


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo is not None else dt


@lru_cache(maxsize=65536)
def _parse(text: str, formats: tuple[str, ...], time: bool = False) -> float | None:
    """Days since 1970-01-01 of the first format that parses `text` (with the time of day
    when `time`), or None."""
    s = text.strip()
    for fmt in formats:
        try:
            dt = _naive(datetime.strptime(s, fmt))
        except ValueError:
            continue
        return to_days(dt) if time else (dt.date() - EPOCH).days
    return None


def parse_one(value: object, formats: tuple[str, ...], time: bool = False) -> tuple[float | None, bool]:
    """(days since epoch or None, ok). None with ok=True means a missing value. `time`: a
    datetime column (the time of day is kept as a fraction of the day)."""
    if value is None:
        return None, True
    if isinstance(value, float) and value != value:  # NaN
        return None, True
    if isinstance(value, datetime):
        value = _naive(value)
        return (to_days(value) if time else (value.date() - EPOCH).days), True
    if isinstance(value, date):
        return (value - EPOCH).days, True
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None, True
        return float(_datetime64_days(np.array([value]), time)[0]), True
    if not isinstance(value, str):
        return None, False
    if value.strip() == "":
        return None, True
    days = _parse(value, formats, time)
    return days, days is not None


def _datetime64_days(arr: np.ndarray, time: bool) -> np.ndarray:
    """Days (float64, NaN for NaT) of datetime64 values; with the time of day when `time`."""
    d = arr.astype("datetime64[D]")
    nat = np.isnat(d)
    out = d.astype(np.int64).astype(np.float64)
    if time:
        us = (arr.astype("datetime64[us]") - d.astype("datetime64[us]")).astype(np.int64)
        out = out + us / _US_PER_DAY
    out[nat] = np.nan
    return out


def parse_many(values, formats: tuple[str, ...], time: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Vector form: (days as float64 with NaN for missing/invalid, invalid mask)."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind == "M":
        return _datetime64_days(arr, time), np.zeros(len(arr), dtype=bool)
    out = np.empty(len(arr), dtype=np.float64)
    bad = np.zeros(len(arr), dtype=bool)
    for i, v in enumerate(arr):
        days, ok = parse_one(v, formats, time)
        out[i] = np.nan if days is None else days
        bad[i] = not ok
    return out, bad


def iso(days: float) -> str:
    return str(np.datetime64(int(np.floor(days)), "D"))
