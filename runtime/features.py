"""Feature derivation shared by training, batch scoring and serving.

Everything ONNX expresses (imputation, scaling, one-hot, ordinal, quantile bins) lives in
`model.onnx`. What it cannot (dates in several formats, ratios, logs, clipping, fixed
bucket edges) is computed here, from validated contract columns, by the same function in
every path: its output is the ONNX feed, one `[n, 1]` input per model feature.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from aiops.runtime.contract import MISSING_CATEGORY

STRING_TRANSFORMS = ("onehot", "ordinal")
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class FeatureStep:
    name: str
    transform: str
    source: str
    other: str | None = None
    reference_days: int | None = None  # days_between: fixed reference date, as days since epoch
    part: str | None = None
    clip_min: float | None = None
    clip_max: float | None = None
    edges: tuple[float, ...] | None = None  # bucketize with fixed edges

    @property
    def onnx_type(self) -> str:
        return "string" if self.transform in STRING_TRANSFORMS else "float"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureStep":
        d = dict(d)
        if d.get("edges") is not None:
            d["edges"] = tuple(d["edges"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


_MS_PER_DAY = 86_400_000.0


def _date_part(days: np.ndarray, part: str) -> np.ndarray:
    """A part of dates or date-times given as days since 1970-01-01 (a date-time's time of day
    is a fraction of the day, read to the millisecond: `rows._date_part` does the same)."""
    out = np.full(len(days), np.nan)
    ok = ~np.isnan(days)
    ms = np.round(days[ok] * _MS_PER_DAY)
    whole = np.floor_divide(ms, _MS_PER_DAY)
    d = whole.astype("int64").astype("datetime64[D]")
    if part == "day_of_week":  # Monday = 0, as in Python
        vals = (whole.astype(np.int64) + 3) % 7
    elif part == "year":
        vals = d.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        vals = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "quarter":
        vals = (d.astype("datetime64[M]").astype(np.int64) % 12) // 3 + 1
    elif part == "day":
        vals = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    elif part == "day_of_year":
        vals = (d - d.astype("datetime64[Y]")).astype(np.int64) + 1
    elif part == "hour":
        vals = np.floor_divide(ms - whole * _MS_PER_DAY, 3_600_000.0)
    elif part == "minute":
        vals = np.floor_divide(np.mod(ms - whole * _MS_PER_DAY, 3_600_000.0), 60_000.0)
    else:
        raise ValueError(f"unknown date part {part!r}")
    out[ok] = vals
    return out


def _as_float(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float64, copy=False) if values.dtype != object else np.array(
        [np.nan if v is None else float(v) for v in values], dtype=np.float64)


def derive_one(step: FeatureStep, cols: dict[str, np.ndarray]) -> np.ndarray:
    t = step.transform
    src = cols[step.source]
    if t in STRING_TRANSFORMS:
        out = np.empty(len(src), dtype=object)
        for i, v in enumerate(src):
            if v is None or (isinstance(v, float) and v != v):
                out[i] = MISSING_CATEGORY
            elif isinstance(v, (float, np.floating)) and float(v).is_integer():
                out[i] = str(int(v))  # int and bool categories, as the contract gives them
            else:
                out[i] = str(v)
        return out.reshape(-1, 1)
    x = _as_float(src)
    with np.errstate(divide="ignore", invalid="ignore"):
        if t in ("passthrough", "impute", "scale"):
            y = x
        elif t == "log":
            y = np.where(x > -1.0, np.log1p(np.where(x > -1.0, x, 0.0)), np.nan)
        elif t == "clip":
            lo = -np.inf if step.clip_min is None else step.clip_min
            hi = np.inf if step.clip_max is None else step.clip_max
            y = np.clip(x, lo, hi)
        elif t == "ratio":
            o = _as_float(cols[step.other])
            y = np.where(o != 0, x / np.where(o != 0, o, 1.0), np.nan)
        elif t == "difference":
            y = x - _as_float(cols[step.other])
        elif t == "days_between":
            ref = _as_float(cols[step.other]) if step.other else float(step.reference_days)
            y = x - ref
        elif t == "date_part":
            y = _date_part(x, step.part or "")
        elif t == "bucketize":
            if step.edges is None:
                y = x  # quantile bins are fitted inside the ONNX graph
            else:
                e = np.asarray(step.edges, dtype=np.float64)
                y = np.clip(np.searchsorted(e, x, side="right") - 1, 0, len(e) - 2).astype(np.float64)
                y[np.isnan(x)] = np.nan
        else:
            raise ValueError(f"unknown transform {t!r}")
    y = np.where(np.isfinite(y), y, np.nan)
    return y.astype(np.float32).reshape(-1, 1)


def derive(steps: list[FeatureStep], cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ONNX feed for validated contract columns."""
    return {s.name: derive_one(s, cols) for s in steps}


def reference_days(iso: str | None) -> int | None:
    if iso is None:
        return None
    return (date.fromisoformat(iso) - _EPOCH).days
