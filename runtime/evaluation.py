"""Evaluation on the holdout: metrics, slices, fairness, curves, and the gate ("blessing").

The gate passes only if every threshold passes and at least one exists: with no
thresholds, nothing is blessed.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def metric(name: str, y: np.ndarray, out: dict[str, np.ndarray], classes: tuple[str, ...],
           positive: str | None) -> float | None:
    from sklearn import metrics as M

    if len(y) == 0:
        return None
    if "value" in out:
        v = out["value"]
        if name == "r2":
            return float(M.r2_score(y, v)) if len(y) > 1 else None
        if name == "mae":
            return float(M.mean_absolute_error(y, v))
        if name == "rmse":
            return float(math.sqrt(M.mean_squared_error(y, v)))
        if name == "mape":
            return float(M.mean_absolute_percentage_error(y, v))
        raise KeyError(name)
    proba = out["probabilities"]
    label = out["label"]
    binary = len(classes) == 2 and positive is not None
    if binary:
        pos = classes.index(positive)
        yb = (y == positive).astype(int)
        p = proba[:, pos]
    if name == "accuracy":
        return float(np.mean(label == y))
    if name == "balanced_accuracy":
        return float(M.balanced_accuracy_score(y, label))
    if name in ("roc_auc", "average_precision", "brier", "precision", "recall") and not binary and name != "roc_auc":
        raise KeyError(name)
    if name == "roc_auc":
        if binary:
            return float(M.roc_auc_score(yb, p)) if 0 < yb.sum() < len(yb) else None
        present = np.isin(np.asarray(classes, dtype=object), y)
        if present.sum() < 2:
            return None
        return float(M.roc_auc_score(y, proba, multi_class="ovr", labels=list(classes)))
    if name == "average_precision":
        return float(M.average_precision_score(yb, p)) if yb.sum() > 0 else None
    if name == "brier":
        return float(M.brier_score_loss(yb, p))
    if name == "precision":
        return float(M.precision_score(yb, (label == positive).astype(int), zero_division=0))
    if name == "recall":
        return float(M.recall_score(yb, (label == positive).astype(int), zero_division=0))
    if name == "f1":
        if binary:
            return float(M.f1_score(yb, (label == positive).astype(int), zero_division=0))
        return float(M.f1_score(y, label, average="macro", zero_division=0))
    if name == "log_loss":
        return float(M.log_loss(y, np.clip(proba, 1e-15, 1), labels=list(classes)))
    raise KeyError(name)


def check_bound(value: float | None, bound: dict[str, Any]) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if bound.get("min") is not None and value < bound["min"]:
        return False
    if bound.get("max") is not None and value > bound["max"]:
        return False
    return True


def bound_text(b: dict[str, Any]) -> str:
    """'>= 0.7', '<= 0.2' or '>= 0.1 and <= 0.3': a bound as people read it."""
    parts = []
    if b.get("min") is not None:
        parts.append(f">= {b['min']}")
    if b.get("max") is not None:
        parts.append(f"<= {b['max']}")
    return " and ".join(parts)


def groups_of(values: np.ndarray, bins: list[float] | None) -> np.ndarray:
    """Group labels for a slice or a sensitive attribute: the value, or its bin '[a, b)'."""
    if bins:
        x = values.astype(np.float64)
        idx = np.searchsorted(np.asarray(bins, dtype=np.float64), x, side="right") - 1
        out = np.empty(len(x), dtype=object)
        for i, (v, j) in enumerate(zip(x, idx)):
            if np.isnan(v) or j < 0 or j >= len(bins) - 1:
                out[i] = "(outside bins)" if not np.isnan(v) else "(missing)"
            else:
                out[i] = f"[{_n(bins[j])}, {_n(bins[j + 1])})"
        return out
    return np.array(["(missing)" if v is None or (isinstance(v, float) and np.isnan(v)) else
                     (str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v))
                     for v in values], dtype=object)


def _n(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


FAIRNESS_MIN_ROWS = 10  # a group with fewer rows is listed but not compared


def fairness(metric_name: str, y: np.ndarray, label: np.ndarray, groups: np.ndarray, positive: str,
             min_rows: int = FAIRNESS_MIN_ROWS) -> dict[str, Any]:
    """Per-group selection rate / true positive rate and the disparity metric."""
    per: dict[str, dict[str, Any]] = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        sel = float(np.mean(label[m] == positive)) if m.any() else None
        pos = m & (y == positive)
        tpr = float(np.mean(label[pos] == positive)) if pos.any() else None
        per[g] = {"rows": int(m.sum()), "positives": int(pos.sum()), "selection_rate": sel, "tpr": tpr,
                  "included": bool(m.sum() >= min_rows)}
    inc = {g: v for g, v in per.items() if v["included"]}
    value: float | None = None
    if metric_name == "demographic_parity_difference":
        rates = [v["selection_rate"] for v in inc.values()]
        value = (max(rates) - min(rates)) if len(rates) >= 2 else None
    elif metric_name == "equal_opportunity_difference":
        rates = [v["tpr"] for v in inc.values() if v["tpr"] is not None and v["positives"] >= 5]
        value = (max(rates) - min(rates)) if len(rates) >= 2 else None
    elif metric_name == "disparate_impact_ratio":
        rates = [v["selection_rate"] for v in inc.values()]
        if len(rates) >= 2:
            value = (min(rates) / max(rates)) if max(rates) > 0 else 1.0
    return {"value": value, "groups": per, "min_rows": min_rows}


def curves(y: np.ndarray, out: dict[str, np.ndarray], classes: tuple[str, ...], positive: str | None) -> dict:
    """ROC, calibration and confusion matrix (classification) or residuals (regression)."""
    from sklearn import metrics as M

    if "value" in out:
        res = y - out["value"]
        qs = np.quantile(res, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]).tolist() if len(res) else []
        hist, edges = np.histogram(res, bins=30) if len(res) else (np.zeros(0), np.zeros(0))
        return {"residuals": {"quantiles": dict(zip(["p01", "p05", "p25", "p50", "p75", "p95", "p99"], qs)),
                              "histogram": {"counts": hist.tolist(), "edges": [round(e, 6) for e in edges.tolist()]}}}
    label = out["label"]
    cm = M.confusion_matrix(y, label, labels=list(classes))
    result: dict[str, Any] = {"confusion_matrix": {"labels": list(classes), "matrix": cm.tolist()}}
    if len(classes) == 2 and positive is not None:
        pos = classes.index(positive)
        yb = (y == positive).astype(int)
        p = out["probabilities"][:, pos]
        if 0 < yb.sum() < len(yb):
            fpr, tpr, _ = M.roc_curve(yb, p, drop_intermediate=True)
            keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 101)).round().astype(int))
            result["roc"] = {"fpr": [round(float(v), 6) for v in fpr[keep]],
                             "tpr": [round(float(v), 6) for v in tpr[keep]]}
        bins = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(p, bins) - 1, 0, 9)
        cal = []
        for b in range(10):
            m = idx == b
            if m.any():
                cal.append({"bin": [round(bins[b], 2), round(bins[b + 1], 2)], "rows": int(m.sum()),
                            "mean_predicted": round(float(p[m].mean()), 6),
                            "observed_rate": round(float(yb[m].mean()), 6)})
        result["calibration"] = cal
    return result
