"""Reference profiles for monitoring: per-column sketches, never raw rows.

Numeric and date columns: a 101-point quantile sketch with the exact share of values at or
below each point (`cdf`, for KS) and the mean of the values between each point and the one
before (`interval_means`, for Wasserstein), decile bins with counts (for PSI and
Jensen-Shannon), null count, min, max, mean, std.
Categorical columns: category counts (the 50 most frequent, the rest pooled) and the list
of every category seen when there are at most 1,000 (`categories`, for unseen categories).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from aiops.runtime.contract import Contract

TOP_CATEGORIES = 50
MAX_KNOWN_CATEGORIES = 1000
OTHER = "__other__"
MISSING = "__missing__"


def stable_edges(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Decile edges of a model output rounded to 4 significant decimals of the data's scale
    (0.0001 for a probability), duplicates merged: float32 rounding of a score (a few 1e-8)
    can then not move a value from one bin to the next, and bins a few float32 steps apart
    (a very confident model's top deciles) become one."""
    scale = float(np.max(np.abs(x))) if len(x) else 1.0
    decimals = 4 - int(np.ceil(np.log10(scale))) if scale > 0 else 4
    return np.unique(np.round(edges, max(decimals, 0)))


def prediction_reference(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile of the served output that serving bins and monitoring tests: the score
    (classification: the positive class's probability, or the top probability) or the
    value (regression)."""
    pred = profile.get("prediction") or {}
    return pred.get("score") or pred.get("value") or {}


def numeric_profile(x: np.ndarray, output: bool = False) -> dict[str, Any]:
    """`output`: a model output, whose decile edges are `stable_edges`."""
    x = x.astype(np.float64)
    ok = x[~np.isnan(x)]
    out: dict[str, Any] = {"kind": "numeric", "rows": int(len(x)), "nulls": int(len(x) - len(ok))}
    if len(ok) == 0:
        out.update({"quantiles": [], "edges": [], "counts": [0]})
        return out
    q = np.quantile(ok, np.linspace(0, 1, 101), method="linear")
    edges = np.unique(np.quantile(ok, np.linspace(0.1, 0.9, 9), method="linear"))
    if output:
        edges = stable_edges(edges, ok)
    counts = bin_counts(ok, edges)
    cdf = np.searchsorted(np.sort(ok), q, side="right") / len(ok)  # exact share <= each quantile point
    k = np.searchsorted(q, ok, side="left")  # value in (q[k-1], q[k]]
    n_k = np.bincount(k, minlength=len(q))
    s_k = np.bincount(k, weights=ok, minlength=len(q))
    means = [float(s / n) if n else None for s, n in zip(s_k.tolist(), n_k.tolist())]
    out.update({"min": float(ok.min()), "max": float(ok.max()), "mean": float(ok.mean()), "std": float(ok.std()),
                "quantiles": q.tolist(), "cdf": cdf.tolist(), "interval_means": means, "edges": edges.tolist(),
                "counts": counts.tolist()})
    return out


def bin_counts(x: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Counts in (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="left")
    return np.bincount(idx, minlength=len(edges) + 1)


def categorical_profile(values: np.ndarray) -> dict[str, Any]:
    vals = np.array([MISSING if v is None else str(v) for v in values], dtype=object)
    cats, counts = np.unique(vals, return_counts=True)
    order = sorted(zip(cats.tolist(), counts.tolist()), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(order[:TOP_CATEGORIES])
    other = sum(c for _, c in order[TOP_CATEGORIES:])
    if other:
        kept[OTHER] = other
    out = {"kind": "categorical", "rows": int(len(vals)), "nulls": int(kept.get(MISSING, 0)),
           "counts": dict(sorted(kept.items()))}
    seen = sorted(c for c in cats.tolist() if c != MISSING)
    if len(seen) <= MAX_KNOWN_CATEGORIES:
        out["categories"] = seen
    return out


def build_profile(contract: Contract, cols: dict[str, np.ndarray], out: dict[str, np.ndarray],
                  classes: tuple[str, ...], positive: str | None, y: np.ndarray) -> dict[str, Any]:
    columns = {}
    for c in contract.request_columns:
        if c.name not in cols:
            continue
        if c.dtype in ("int", "float", "bool", "date", "datetime"):
            p = numeric_profile(np.asarray(cols[c.name], dtype=np.float64))
            p["dtype"] = c.dtype
        else:
            p = categorical_profile(cols[c.name])
            p["dtype"] = c.dtype
        if c.pii:  # sketches of a PII column could leak values: keep counts only
            p = {"kind": p["kind"], "dtype": c.dtype, "rows": p["rows"], "nulls": p["nulls"], "pii": True}
        columns[c.name] = p
    pred: dict[str, Any]
    if "value" in out:
        pred = {"kind": "regression", "value": numeric_profile(out["value"], output=True)}
        target = numeric_profile(np.asarray(y, dtype=np.float64))
    else:
        if positive is not None and len(classes) == 2:
            score = out["probabilities"][:, classes.index(positive)]
        else:
            score = out["probabilities"].max(axis=1)
        pred = {"kind": "classification", "score": numeric_profile(score, output=True),
                "labels": categorical_profile(out["label"])["counts"]}
        target = categorical_profile(np.asarray(y, dtype=object))
    return {"rows": int(len(y)), "columns": dict(sorted(columns.items())), "prediction": pred, "target": target,
            "classes": list(classes), "positive_class": positive}
