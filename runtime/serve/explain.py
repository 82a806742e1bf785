"""Per-prediction explanations by occlusion against the reference profile.

For each model feature j the record is copied once per reference value r_jk of that
feature (drawn from evidence/profile.json: 20 quantile points of a numeric column, every
category with its training share), with only feature j replaced. All copies run through
onnxruntime as one batch. The contribution of j is

    score(x) - sum_k w_k * score(x with feature j := r_jk)

on the log-odds scale of the explained class (classification) or the value (regression).
For a linear model on that scale (logistic or linear regression: every ONNX input enters
the score additively) this is exact: it equals coefficient times (encoded value minus its
reference mean), and the contributions add up to score(x) - baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops.runtime.features import FeatureStep, derive_one
from aiops.runtime.predictor import Predictor

_QUANTILE_POINTS = 20
_PAIR_POINTS = 10
_LINEAR_OPS = {"LinearClassifier", "LinearRegressor"}
_ADDITIVE_OPS = {"Concat", "Gather", "Imputer", "OneHotEncoder", "Reshape", "Scaler", "Cast", "Identity",
                 "Normalizer", "Binarizer", "LabelEncoder", "ZipMap"}


@dataclass(frozen=True)
class _Ref:
    step: FeatureStep
    values: np.ndarray  # [K, 1] feed values
    weights: np.ndarray  # [K], sum 1


def _column_points(prof: dict[str, Any] | None, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, weights) describing a column's reference distribution, or None."""
    if not prof:
        return None
    if prof.get("kind") == "numeric" and prof.get("quantiles"):
        q = np.asarray(prof["quantiles"], dtype=np.float64)
        at = np.linspace(0, 100, 2 * k + 1)[1::2] * (len(q) - 1) / 100.0
        vals = np.interp(at, np.arange(len(q)), q)
        return vals, np.full(k, 1.0 / k)
    counts = prof.get("counts")
    if prof.get("kind") == "categorical" and isinstance(counts, dict) and counts:
        keys = sorted(counts)
        w = np.asarray([counts[c] for c in keys], dtype=np.float64)
        vals = np.empty(len(keys), dtype=object)
        vals[:] = keys
        return vals, w / w.sum()
    return None


_AFFINE_OPS = {"Sub", "Div", "Mul", "Add"}  # with a constant operand: the exact scalers of compiler/export.py


def is_linear(model_path: Path) -> bool:
    """True when the ONNX graph is per-feature preprocessing plus a linear model."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    consts = {i.name for i in graph.initializer}
    if any(n.op_type in _AFFINE_OPS and not any(i in consts for i in n.input) for n in graph.node):
        return False  # arithmetic between two inputs is not per-feature
    ops = {n.op_type for n in graph.node}
    return bool(ops & _LINEAR_OPS) and ops <= (_LINEAR_OPS | _ADDITIVE_OPS | _AFFINE_OPS)


class Explainer:
    def __init__(self, predictor: Predictor, profile: dict[str, Any], importance: dict[str, Any], linear: bool):
        self.p = predictor
        self.linear = linear
        task = predictor.meta.task
        # exact only when the explained score is linear: binary log-odds or a regression value
        self.exact = linear and (task == "regression" or len(predictor.meta.classes) == 2)
        self.importance = {f["name"]: f.get("mean") for f in (importance or {}).get("features", [])}
        cols = (profile or {}).get("columns", {})
        self.refs: list[_Ref] = []
        self.unexplained: list[str] = []
        for s in predictor.steps:
            ref = self._reference(s, cols)
            if ref is None:
                self.unexplained.append(s.name)
            else:
                self.refs.append(ref)
        self.rows = sum(len(r.weights) for r in self.refs)

    def _reference(self, s: FeatureStep, cols: dict[str, Any]) -> _Ref | None:
        if s.other:
            a, b = _column_points(cols.get(s.source), _PAIR_POINTS), _column_points(cols.get(s.other), _PAIR_POINTS)
            if a is None or b is None:
                return None
            va, vb = np.repeat(a[0], len(b[0])), np.tile(b[0], len(a[0]))
            w = np.outer(a[1], b[1]).reshape(-1)
            ref_cols = {s.source: va, s.other: vb}
        else:
            pts = _column_points(cols.get(s.source), _QUANTILE_POINTS)
            if pts is None:
                return None
            ref_cols, w = {s.source: pts[0]}, pts[1]
        return _Ref(s, derive_one(s, ref_cols), w)

    def _score(self, out: dict[str, np.ndarray], cls: int | None) -> np.ndarray:
        if "value" in out:
            return out["value"]
        p = np.clip(out["probabilities"][:, cls], 1e-15, 1 - 1e-15)
        return np.log(p) - np.log1p(-p)

    def explain(self, feed: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, Any]:
        """Explanation of one row given its feed and its prediction."""
        meta = self.p.meta
        cls = None
        if "value" not in out:
            label = out["label"][0]
            cls = self.p.pos_index if (self.p.pos_index is not None and len(meta.classes) == 2) \
                else meta.classes.index(label)
        score = float(self._score(out, cls)[0])
        batch = {name: np.repeat(v, self.rows, axis=0) for name, v in feed.items()}
        at = 0
        for r in self.refs:
            batch[r.step.name][at:at + len(r.weights)] = r.values
            at += len(r.weights)
        scores = self._score(self.p.run_feed(batch), cls)
        contribs = []
        at = 0
        for r in self.refs:
            k = len(r.weights)
            c = score - float(np.dot(r.weights, scores[at:at + k]))
            at += k
            s = r.step
            contribs.append({"feature": s.name, "sources": [x for x in (s.source, s.other) if x],
                             "transform": s.transform, "contribution": _round(c),
                             "global_importance": self.importance.get(s.name)})
        contribs.sort(key=lambda d: (-abs(d["contribution"]), d["feature"]))
        scale = "value" if cls is None else f"log-odds of '{meta.classes[cls]}'"
        total = sum(d["contribution"] for d in contribs)
        return {
            "method": "occlusion against the reference profile (evidence/profile.json)",
            "scale": scale, "score": _round(score), "exact": self.exact,
            "baseline": _round(score - total) if self.exact else None,
            "contributions": contribs,
            "not_explained": list(self.unexplained),
        }


def _round(x: float) -> float | None:
    return float(f"{x:.6g}") if math.isfinite(x) else None
