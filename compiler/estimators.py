"""The estimator allow-list: which scikit-learn estimators fit which task, their
parameters in scikit-learn's own terms, and whether the installed skl2onnx can export
them (probed once per library-version set, and cached).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

CLASSIFICATION = ("binary_classification", "multiclass_classification")
REGRESSION = ("regression",)


@dataclass(frozen=True)
class EstimatorInfo:
    name: str
    module: str
    tasks: tuple[str, ...]
    has_proba: bool


ALLOWED: dict[str, EstimatorInfo] = {
    e.name: e
    for e in [
        EstimatorInfo("LogisticRegression", "sklearn.linear_model", CLASSIFICATION, True),
        EstimatorInfo("RandomForestClassifier", "sklearn.ensemble", CLASSIFICATION, True),
        EstimatorInfo("ExtraTreesClassifier", "sklearn.ensemble", CLASSIFICATION, True),
        EstimatorInfo("GradientBoostingClassifier", "sklearn.ensemble", CLASSIFICATION, True),
        EstimatorInfo("HistGradientBoostingClassifier", "sklearn.ensemble", CLASSIFICATION, True),
        EstimatorInfo("DecisionTreeClassifier", "sklearn.tree", CLASSIFICATION, True),
        EstimatorInfo("LinearRegression", "sklearn.linear_model", REGRESSION, False),
        EstimatorInfo("Ridge", "sklearn.linear_model", REGRESSION, False),
        EstimatorInfo("Lasso", "sklearn.linear_model", REGRESSION, False),
        EstimatorInfo("RandomForestRegressor", "sklearn.ensemble", REGRESSION, False),
        EstimatorInfo("GradientBoostingRegressor", "sklearn.ensemble", REGRESSION, False),
        EstimatorInfo("HistGradientBoostingRegressor", "sklearn.ensemble", REGRESSION, False),
        EstimatorInfo("DecisionTreeRegressor", "sklearn.tree", REGRESSION, False),
    ]
}

# metric -> (tasks it fits, lower bound, upper bound, higher is better)
METRICS: dict[str, tuple[tuple[str, ...], float, float, bool]] = {
    "roc_auc": (CLASSIFICATION, 0.0, 1.0, True),
    "average_precision": (("binary_classification",), 0.0, 1.0, True),
    "accuracy": (CLASSIFICATION, 0.0, 1.0, True),
    "balanced_accuracy": (CLASSIFICATION, 0.0, 1.0, True),
    "precision": (("binary_classification",), 0.0, 1.0, True),
    "recall": (("binary_classification",), 0.0, 1.0, True),
    "f1": (CLASSIFICATION, 0.0, 1.0, True),
    "log_loss": (CLASSIFICATION, 0.0, float("inf"), False),
    "brier": (("binary_classification",), 0.0, 1.0, False),
    "r2": (REGRESSION, float("-inf"), 1.0, True),
    "mae": (REGRESSION, 0.0, float("inf"), False),
    "rmse": (REGRESSION, 0.0, float("inf"), False),
    "mape": (REGRESSION, 0.0, float("inf"), False),
}

LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "protobuf")


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "missing"
    return out


def estimator_class(name: str) -> Any:
    info = ALLOWED[name]
    return getattr(importlib.import_module(info.module), name)


def param_problems(name: str, params: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """Problems with the params, in scikit-learn's own words: (param, message, valid names).

    Cached like the export probe (per estimator, params and library versions), so that a
    repeated `aiops check` does not pay for importing scikit-learn."""
    try:
        blob = json.dumps([name, params], sort_keys=True)
    except TypeError:
        return _param_problems_now(name, params)
    key = "params:" + hashlib.sha256(blob.encode()).hexdigest()[:24] + ":" + _probe_key(name)
    cache = _read_cache()
    if key in cache:
        return [(p, m, list(v)) for p, m, v in cache[key]]
    out = _param_problems_now(name, params)
    cache[key] = [list(x) for x in out]
    _write_cache(cache)
    return out


def _param_problems_now(name: str, params: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    cls = estimator_class(name)
    valid = sorted(cls().get_params(deep=False))
    problems: list[tuple[str, str, list[str]]] = []
    known = {}
    for k, v in params.items():
        if k not in valid:
            problems.append((k, f"'{k}' is not a parameter of {name}", valid))
        else:
            known[k] = v
    from sklearn.utils._param_validation import InvalidParameterError

    # validate one parameter at a time, so that every bad value is reported
    for k, v in known.items():
        try:
            cls(**{k: v})._validate_params()
        except InvalidParameterError as exc:
            problems.append((k, str(exc).strip(), valid))
    return problems


# ------------------------------------------------------------------ ONNX exportability probe
def _cache_path() -> Path:
    base = os.environ.get("AIOPS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "aiops")
    return Path(base) / "onnx_probe.json"


def _probe_key(name: str) -> str:
    v = versions()
    return hashlib.sha256(json.dumps([name, v], sort_keys=True).encode()).hexdigest()[:24]


def probe_export(name: str) -> tuple[bool, str]:
    """Can the installed skl2onnx export a fitted `name` (with a one-hot + scaler front)?

    Cached per (estimator, library versions) in $AIOPS_CACHE_DIR/onnx_probe.json (default ~/.cache/aiops).
    """
    key = _probe_key(name)
    cache = _read_cache()
    if key in cache:
        ok, msg = cache[key]
        return bool(ok), str(msg)
    ok, msg = _probe_now(name)
    cache[key] = [ok, msg]
    _write_cache(cache)
    return ok, msg


def _read_cache() -> dict[str, Any]:
    path = _cache_path()
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def _write_cache(cache: dict[str, Any]) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True, indent=1))
        tmp.replace(path)
    except OSError:
        pass


def _probe_now(name: str) -> tuple[bool, str]:
    import warnings

    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    info = ALLOWED[name]
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=(n, 1)).astype(np.float32)
    c = np.array([["a"], ["b"], ["c"]] * (n // 3), dtype=object)
    y = (x[:, 0] > 0).astype(int) if info.tasks != REGRESSION else x[:, 0] * 2.0
    import pandas as pd

    df = pd.DataFrame({"x": x[:, 0], "c": c[:, 0]})
    pipe = Pipeline([
        ("features", ColumnTransformer([("x", StandardScaler(), ["x"]),
                                        ("c", OneHotEncoder(handle_unknown="ignore"), ["c"])])),
        ("model", estimator_class(name)()),
    ])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.fit(df, y)
            from skl2onnx import to_onnx
            from skl2onnx.common.data_types import FloatTensorType, StringTensorType

            opts = {id(pipe): {"zipmap": False}} if info.has_proba else None
            onx = to_onnx(pipe, initial_types=[("x", FloatTensorType([None, 1])), ("c", StringTensorType([None, 1]))],
                          options=opts, target_opset=None)
            import onnxruntime as ort

            sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
            sess.run(None, {"x": x[:5], "c": c[:5].astype(str)})
    except Exception as exc:  # noqa: BLE001 - any converter failure means "not exportable"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return False, f"{type(exc).__name__}: {first[:300]}"
    return True, "ok"
