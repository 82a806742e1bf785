"""Export the fitted scikit-learn pipeline to ONNX and verify it (parity).

Numeric inputs are float32 [n, 1] and categorical inputs string [n, 1], one per model
feature, in the order of the features; classifiers are exported with zipmap=False.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def round_tree_thresholds(pipe) -> int:
    """Make every split threshold of a tree ensemble a float32 number, without changing one
    decision of scikit-learn.

    scikit-learn's trees compare float32 inputs with float64 thresholds; onnxruntime's
    TreeEnsemble compares them with the thresholds rounded to float32 (to nearest), so an
    input between a threshold and its rounding falls on the other side. For a float32 x,
    `x <= t` holds exactly when `x <= floor32(t)` (the largest float32 not above t): with
    that threshold both sides decide every split alike. Returns the number of thresholds
    changed."""
    import itertools

    model = pipe.steps[-1][1] if hasattr(pipe, "steps") else pipe
    arrays = []
    if hasattr(model, "_predictors"):  # HistGradientBoosting*
        for node in itertools.chain.from_iterable(model._predictors):
            nodes = node.nodes
            split = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
            arrays.append((nodes["num_threshold"], split))
    else:
        ests = getattr(model, "estimators_", None)
        trees = [model] if hasattr(model, "tree_") else (
            list(np.ravel(np.asarray(ests, dtype=object))) if ests is not None else [])
        for t in trees:
            if hasattr(t, "tree_"):
                arrays.append((t.tree_.threshold, t.tree_.children_left >= 0))
    changed = 0
    for thr, split in arrays:
        t = thr[split]
        f = t.astype(np.float32)
        f = np.where(f.astype(np.float64) > t, np.nextafter(f, np.float32(-np.inf)), f).astype(np.float64)
        changed += int((f != t).sum())
        thr[split] = f
    return changed


def _exact_scaler(scope, operator, container) -> None:
    """skl2onnx converter for StandardScaler, RobustScaler and MinMaxScaler that computes
    as scikit-learn does on float32 data: `(x - mean) / scale` (or `x * scale + min`) in
    float32 with float32 constants, a true division. skl2onnx's Scaler operator multiplies
    by 1/scale instead, one ulp off now and then, which is enough to move a value across a
    tree's split."""
    from onnx import TensorProto
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    op = operator.raw_operator
    if isinstance(op, StandardScaler):
        steps = [("Sub", op.mean_ if op.with_mean else None), ("Div", op.scale_ if op.with_std else None)]
    elif isinstance(op, RobustScaler):
        steps = [("Sub", op.center_ if op.with_centering else None),
                 ("Div", op.scale_ if op.with_scaling else None)]
    elif isinstance(op, MinMaxScaler):
        if op.clip:  # the plan builds MinMaxScaler() only; clipping would need a Clip node
            raise TypeError("MinMaxScaler(clip=True) is not exported: compiler/plan.py never builds it")
        steps = [("Mul", op.scale_), ("Add", op.min_)]
    else:  # pragma: no cover - registered for the three classes above only
        raise TypeError(type(op).__name__)
    name = operator.inputs[0].full_name
    for kind, const in steps:
        if const is None:
            continue
        c = scope.get_unique_variable_name(f"{kind.lower()}_const")
        values = np.asarray(const, dtype=np.float32).reshape(1, -1)
        container.add_initializer(c, TensorProto.FLOAT, list(values.shape), values.ravel().tolist())
        result = scope.get_unique_variable_name(kind.lower())
        container.add_node(kind, [name, c], result, name=scope.get_unique_operator_name(kind))
        name = result
    container.add_node("Identity", name, operator.outputs[0].full_name,
                       name=scope.get_unique_operator_name("Identity"))


def _register_exact_scalers() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.scaler import calculate_sklearn_scaler_output_shapes
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    for cls, alias in ((StandardScaler, "SklearnScaler"), (RobustScaler, "SklearnRobustScaler"),
                       (MinMaxScaler, "SklearnMinMaxScaler")):
        update_registered_converter(cls, alias, calculate_sklearn_scaler_output_shapes, _exact_scaler)


def _onehot(scope, operator, container) -> None:
    """skl2onnx converter for OneHotEncoder on one string column, with scikit-learn's rare-category
    grouping (min_frequency / max_categories): one column per frequent category, in
    scikit-learn's order, then the "other" column, which is 1 exactly when no frequent column is.
    A rare category and (with handle_unknown="infrequent_if_exist") an unseen one both land
    there, as in scikit-learn; without an "other" column an unseen category is all zeros.
    skl2onnx's own converter refuses infrequent categories on a single input."""
    from onnx import TensorProto
    from skl2onnx.operator_converters.one_hot_encoder import convert_sklearn_one_hot_encoder

    op = operator.raw_operator
    if op.handle_unknown == "ignore" and not getattr(op, "_infrequent_enabled", False):
        convert_sklearn_one_hot_encoder(scope, operator, container)  # without grouping: skl2onnx's own
        return
    if len(op.categories_) != 1 or op.drop_idx_ is not None or \
            op.handle_unknown not in ("ignore", "infrequent_if_exist"):  # pragma: no cover - plan builds one
        raise TypeError("OneHotEncoder is exported for one column, without drop, ignoring unknowns")
    shown = [str(c) for c in op._compute_transformed_categories(0)]
    other = bool(getattr(op, "_infrequent_enabled", False)) and op.infrequent_categories_[0] is not None
    frequent = shown[:-1] if other else shown
    hot = scope.get_unique_variable_name("onehot")
    container.add_node("OneHotEncoder", operator.inputs[0].full_name, hot, op_domain="ai.onnx.ml",
                       cats_strings=[c.encode("utf-8") for c in frequent], zeros=1,
                       name=scope.get_unique_operator_name("OneHotEncoder"))
    shape = scope.get_unique_variable_name("shape")
    container.add_initializer(shape, TensorProto.INT64, [2], [-1, len(frequent)])
    flat = operator.outputs[0].full_name if not other else scope.get_unique_variable_name("frequent")
    container.add_node("Reshape", [hot, shape], flat, name=scope.get_unique_operator_name("Reshape"))
    if not other:
        return
    axis, one = scope.get_unique_variable_name("axis"), scope.get_unique_variable_name("one")
    container.add_initializer(axis, TensorProto.INT64, [1], [-1])
    container.add_initializer(one, TensorProto.FLOAT, [1, 1], [1.0])
    total, rest = scope.get_unique_variable_name("any_frequent"), scope.get_unique_variable_name("other")
    container.add_node("ReduceSum", [flat, axis], total, keepdims=1, name=scope.get_unique_operator_name("ReduceSum"))
    container.add_node("Sub", [one, total], rest, name=scope.get_unique_operator_name("Sub"))
    container.add_node("Concat", [flat, rest], operator.outputs[0].full_name, axis=-1,
                       name=scope.get_unique_operator_name("Concat"))


def _onehot_shape(operator) -> None:
    """[n, the encoder's output columns]: with grouping, the frequent categories and "other"."""
    from skl2onnx.common.data_types import FloatTensorType

    op = operator.raw_operator
    width = sum(len(op._compute_transformed_categories(i)) for i in range(len(op.categories_)))
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), width])


def _register_exact_encoders() -> None:
    from skl2onnx import update_registered_converter
    from sklearn.preprocessing import OneHotEncoder

    update_registered_converter(OneHotEncoder, "SklearnOneHotEncoder", _onehot_shape, _onehot)


def to_onnx_bytes(pipe, features, has_proba: bool, name: str) -> bytes:
    from skl2onnx import to_onnx

    _register_exact_scalers()
    _register_exact_encoders()
    round_tree_thresholds(pipe)
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
    columns to a bound, a missing value (where nullable) or an unseen category (where the
    contract admits one). Dates are drawn as days: the contract's date formats are parsed
    before the features (runtime/dates.py), so the model never sees how a date was written."""
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
        elif c.dtype in ("date", "datetime"):
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
