"""Export the fitted scikit-learn pipeline to ONNX and verify it (parity).

Numeric inputs are float32 [n, 1] and categorical inputs string [n, 1], one per model
feature, in the order of the features; classifiers are exported with zipmap=False.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def to_onnx_bytes(pipe, features, has_proba: bool, name: str) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    types = [(f.name, StringTensorType([None, 1]) if f.kind == "categorical" else FloatTensorType([None, 1]))
             for f in features]
    opts = {id(pipe): {"zipmap": False}} if has_proba else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = to_onnx(pipe, initial_types=types, options=opts, target_opset={"": 17, "ai.onnx.ml": 3},
                      name=name)
    onx.doc_string = f"aiops model {name}"
    # skl2onnx collects opset imports in a set: sort them, or the bytes depend on PYTHONHASHSEED
    ops = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in ops:
        onx.opset_import.add(domain=domain, version=version)
    return onx.SerializeToString()


def edge_records(contract, base: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray]:
    """Rows drawn from the data contract's edges: each takes a real row and sets one or two
    columns to a bound, a missing value (where nullable), an unseen category (where the
    contract admits one) or another accepted date format."""
    rng = np.random.default_rng(seed)
    size = len(next(iter(base.values())))
    pick = rng.integers(0, size, n)
    rows = {k: v[pick].copy() for k, v in base.items()}  # clean contract columns (dates as days)
    cands = []
    for c in contract.request_columns:
        if c.name not in rows:
            continue
        vals: list[Any] = []
        if c.numeric:
            for b in (c.ge, c.le, c.gt, c.lt):
                if b is not None:
                    vals.append(float(b))
            if c.gt is not None:
                vals.append(float(c.gt) + (1 if c.dtype == "int" else 1e-3))
            if c.lt is not None:
                vals.append(float(c.lt) - (1 if c.dtype == "int" else 1e-3))
            vals = [v for v in vals if (c.gt is None or v > c.gt) and (c.lt is None or v < c.lt)]
            if c.dtype == "int":
                vals = [float(int(v)) for v in vals]
            if c.nullable:
                vals.append(np.nan)
            if c.isin is not None:
                vals = [float(v) for v in c.isin]
        elif c.dtype in ("str", "category"):
            if c.isin is not None:
                vals = [str(v) for v in c.isin]
            elif c.regex is None and c.min_length is None:
                vals = ["__unseen_category__"]
            if c.nullable:
                vals.append(None)
        elif c.dtype == "date":
            vals = [np.nan] if c.nullable else []
        if vals:
            cands.append((c.name, vals))
    for i in range(n):
        for _ in range(int(rng.integers(1, 3))):
            if not cands:
                break
            col, vals = cands[int(rng.integers(0, len(cands)))]
            rows[col][i] = vals[int(rng.integers(0, len(vals)))]
    return rows


def parity(pipe, predictor, frame, feed, tol: dict[str, Any], is_classifier: bool) -> dict[str, Any]:
    """Compare scikit-learn and onnxruntime outputs on the same rows."""
    onnx_out = predictor.run_feed(feed)
    out: dict[str, Any] = {"rows": int(len(frame))}
    if is_classifier:
        sk_proba = pipe.predict_proba(frame)
        sk_label = np.asarray(pipe.classes_, dtype=object)[sk_proba.argmax(axis=1)] if len(pipe.classes_) > 2 else None
        diff = np.abs(sk_proba - onnx_out["probabilities"])
        max_diff = float(diff.max()) if diff.size else 0.0
        if sk_label is None:  # binary: the same decision rule as serving
            pos = predictor.pos_index
            sk_label = np.asarray(pipe.classes_, dtype=object)[
                np.where(sk_proba[:, pos] >= predictor.meta.threshold, pos, 1 - pos)]
        mismatch = float(np.mean(sk_label != onnx_out["label"])) if len(frame) else 0.0
        out["probabilities"] = {"max_abs_diff": max_diff, "atol": tol.get("probabilities_atol"),
                                "passed": tol.get("probabilities_atol") is not None
                                and max_diff <= tol["probabilities_atol"]}
        out["label"] = {"mismatch_rate": mismatch, "max_mismatch_rate": tol.get("label_max_mismatch_rate"),
                        "passed": tol.get("label_max_mismatch_rate") is not None
                        and mismatch <= tol["label_max_mismatch_rate"]}
    else:
        sk = pipe.predict(frame).astype(np.float64)
        max_diff = float(np.abs(sk - onnx_out["value"]).max()) if len(frame) else 0.0
        out["value"] = {"max_abs_diff": max_diff, "atol": tol.get("value_atol"),
                        "passed": tol.get("value_atol") is not None and max_diff <= tol["value_atol"]}
    out["passed"] = all(v["passed"] for k, v in out.items() if isinstance(v, dict))
    return out
