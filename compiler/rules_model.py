"""Semantic rules for features, the model and the evaluation thresholds."""
from __future__ import annotations

from datetime import datetime

from aiops.compiler import estimators as E
from aiops.compiler.context import Ctx
from aiops.compiler.diagnostics import did_you_mean, fmt_choices
from aiops.compiler.rules_data import ONNX_SAFE

# transform -> (dtypes of the source it accepts, params it requires, params it may take)
TRANSFORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "passthrough": (("int", "float", "bool"), (), ("impute", "fill_value", "scale")),
    "impute": (("int", "float", "bool"), ("impute",), ("fill_value", "scale")),
    "scale": (("int", "float"), ("scale",), ("impute", "fill_value")),
    "onehot": (("str", "category", "bool", "int"), (), ("min_frequency", "max_categories")),
    "ordinal": (("str", "category", "int"), ("categories",), ()),
    "log": (("int", "float"), (), ("impute", "fill_value", "scale")),
    "clip": (("int", "float"), (), ("min", "max", "impute", "fill_value", "scale")),
    "bucketize": (("int", "float"), ("bins",), ("impute", "fill_value")),
    "days_between": (("date", "datetime"), (), ("other", "reference", "impute", "fill_value", "scale")),
    "date_part": (("date", "datetime"), ("part",), ("impute", "fill_value", "scale")),
    "ratio": (("int", "float"), ("other",), ("impute", "fill_value", "scale")),
    "difference": (("int", "float"), ("other",), ("impute", "fill_value", "scale")),
    "drop": (("int", "float", "bool", "str", "category", "date", "datetime"), (), ("reason",)),
}
_OPTIONAL_PARAMS = ("other", "reference", "part", "impute", "fill_value", "scale", "categories", "min", "max",
                    "bins", "reason", "min_frequency", "max_categories")


def check_features(ctx: Ctx) -> None:
    feats = ctx.spec.features or []
    target = ctx.spec.problem.target if ctx.spec.problem else None
    seen: dict[str, int] = {}
    used_sources: set[str] = set()
    for i, f in enumerate(feats):
        if f is None:
            continue
        base = ("features", i)
        if f.name in seen:
            ctx.err("E312", "duplicate feature name", base + ("name",),
                    f"'{f.name}' is also the name of features[{seen[f.name]}]", help="give each feature its own name")
        elif f.name:
            seen[f.name] = i
        if f.name and not ONNX_SAFE.match(f.name):
            ctx.err("E316", "feature name is not a safe identifier", base + ("name",),
                    f"'{f.name}' must match [A-Za-z_][A-Za-z0-9_]* (it becomes an ONNX input name)")
        if f.transform is None:
            continue
        accepts, required, optional = TRANSFORMS[f.transform]
        col = ctx.column_ref(f.source, base + ("source",), "feature")
        if f.source:
            used_sources.add(f.source)
        if f.source is not None and f.source == target and f.transform != "drop":
            ctx.err("E303", "the target is used as a feature", base + ("source",),
                    f"'{f.source}' is problem.target", help="remove this feature: the model would see the answer")
        if col is not None and col.dtype not in accepts:
            ctx.err("E313", f"transform '{f.transform}' does not fit the column's dtype", base + ("transform",),
                    f"'{f.transform}' takes a column of dtype {fmt_choices(accepts)}; '{f.source}' has dtype {col.dtype}",
                    help=_suggest(col.dtype))
        for p in required:
            if getattr(f, p) is None:
                ctx.err("E314", f"transform '{f.transform}' needs '{p}'", base, f"features[{i}] ('{f.name}') has no '{p}'",
                        help=f"add '{p}: ...' to this feature", key=True)
        for p in _OPTIONAL_PARAMS:
            if getattr(f, p) not in (None, "") and p not in required and p not in optional:
                ctx.err("E315", f"'{p}' does not apply to transform '{f.transform}'", base + (p,),
                        f"'{f.transform}' takes: {', '.join(required + optional) or 'no parameters'}",
                        help=f"remove '{p}'", key=True)
        if f.transform in ("ratio", "difference", "days_between") and f.other is not None:
            other = ctx.column_ref(f.other, base + ("other",), "feature", code="E311")
            if f.other:
                used_sources.add(f.other)
            if other is not None and col is not None and \
                    (other.dtype in ("date", "datetime")) != (col.dtype in ("date", "datetime")):
                ctx.err("E313", f"'other' of '{f.transform}' does not fit", base + ("other",),
                        f"'{f.other}' has dtype {other.dtype}, '{f.source}' has dtype {col.dtype}")
        if f.transform == "days_between":
            if (f.other is None) == (f.reference is None):
                ctx.err("E314", "days_between needs exactly one of 'other' or 'reference'", base,
                        "set other: <date column> or reference: 'YYYY-MM-DD'", key=True)
            if f.reference is not None:
                try:
                    datetime.strptime(f.reference, "%Y-%m-%d")
                except ValueError:
                    ctx.err("E314", "reference is not a date", base + ("reference",),
                            f"'reference' must be a date written YYYY-MM-DD. Got '{f.reference}' instead.")
        if f.transform == "date_part" and f.part in ("hour", "minute") and col is not None and col.dtype == "date":
            ctx.err("E313", f"a date has no {f.part}", base + ("part",),
                    f"'{f.source}' has dtype date (a day, without a time of day)",
                    help="use a datetime column, or a part of a date: year, quarter, month, day, day_of_week, "
                         "day_of_year")
        if f.transform == "clip" and f.min is None and f.max is None:
            ctx.err("E314", "clip needs 'min' or 'max'", base, key=True, help="add min: and/or max:")
        if f.transform == "clip" and f.min is not None and f.max is not None and f.min > f.max:
            ctx.err("E314", "clip bounds are reversed", base + ("min",), f"min {f.min} is above max {f.max}")
        if f.transform == "bucketize" and f.bins is not None:
            if isinstance(f.bins, int) and not 2 <= f.bins <= 255:
                ctx.err("E314", "bucketize bins out of range", base + ("bins",),
                        f"'bins' must be an int in the range [2, 255] or a list of edges. Got {f.bins} instead.")
            if isinstance(f.bins, list) and (len(f.bins) < 2 or any(a >= b for a, b in zip(f.bins, f.bins[1:]))):
                ctx.err("E314", "bucketize edges must be strictly increasing", base + ("bins",),
                        f"got {f.bins}")
        if f.transform == "onehot":
            _check_rare(ctx, f, base)
        if f.transform == "impute" and f.impute == "constant" and f.fill_value is None:
            ctx.err("E314", "impute: constant needs fill_value", base, key=True, help="add fill_value: 0")
    live = [f for f in feats if f is not None and f.transform not in (None, "drop")]
    if feats and not live:
        ctx.err("E317", "the spec has no model feature", ("features",), "every feature is 'drop'",
                help="keep at least one feature")
    # a contract column that no feature uses nor drops is most likely forgotten
    data = ctx.spec.data
    skip = {target, data.key if data else None, data.split.time_column if data and data.split else None}
    for name in ctx.columns:
        if name not in used_sources and name not in skip:
            ctx.warn("W318", "a column of the contract is neither used nor dropped", ("data", "columns", name),
                     f"no feature takes '{name}'", help=f"add {{name: {name}, transform: drop, source: {name}, "
                                                        "reason: ...} to say it is left out on purpose", key=True)


def _check_rare(ctx: Ctx, f, base) -> None:
    """onehot's rare-category grouping: min_frequency is a count (>= 1) or a share in (0, 1);
    max_categories counts the "other" column too, so it is at least 2."""
    mf = f.min_frequency
    if mf is not None and not ((isinstance(mf, int) and mf >= 1) or (isinstance(mf, float) and 0.0 < mf < 1.0)):
        ctx.err("E314", "onehot min_frequency out of range", base + ("min_frequency",),
                f"'min_frequency' must be a count (an int >= 1) or a share of the training rows (a number "
                f"in (0, 1)). Got {mf} instead.", help="e.g. min_frequency: 50, or min_frequency: 0.01")
    if f.max_categories is not None and f.max_categories < 2:
        ctx.err("E314", "onehot max_categories out of range", base + ("max_categories",),
                f"'max_categories' counts the \"other\" column too, so it must be at least 2. "
                f"Got {f.max_categories} instead.")


def _suggest(dtype: str) -> str:
    if dtype in ("str", "category"):
        return "use onehot or ordinal for a categorical column"
    if dtype in ("date", "datetime"):
        return f"use days_between or date_part for a {dtype} column"
    return "use passthrough, impute, scale, log, clip or bucketize for a numeric column"


def check_model(ctx: Ctx) -> None:
    m = ctx.spec.model
    task = ctx.spec.problem.task if ctx.spec.problem else None
    if m is None or m.estimator is None:
        return
    info = E.ALLOWED.get(m.estimator)
    if info is None:
        ctx.err("E501", "estimator is not in the allow-list", ("model", "estimator"),
                f"'{m.estimator}' is not one of the estimators aiops can export to ONNX and verify",
                f"allowed: {', '.join(E.ALLOWED)}", help=did_you_mean(m.estimator, E.ALLOWED))
        return
    if task is not None and task not in info.tasks:
        fits = [n for n, e in E.ALLOWED.items() if task in e.tasks]
        ctx.err("E502", "the estimator does not fit the task", ("model", "estimator"),
                f"{m.estimator} is for {' / '.join(info.tasks)}; problem.task is {task}",
                help=f"choose one of: {', '.join(fits)}")
        return
    for param, message, valid in E.param_problems(m.estimator, m.params or {}):
        if "is not a parameter" in message:
            ctx.err("E504", "unknown estimator parameter", ("model", "params", param), message,
                    help=did_you_mean(param, valid) or f"valid parameters: {', '.join(valid)}", key=True)
        else:
            ctx.err("E505", "invalid estimator parameter value", ("model", "params", param), message)
    ok, why = E.probe_export(m.estimator)
    if not ok:
        v = E.versions()
        ctx.err("E503", "the estimator cannot be exported to ONNX with the installed libraries", ("model", "estimator"),
                f"{m.estimator} with scikit-learn {v['scikit-learn']}, skl2onnx {v['skl2onnx']}, onnx {v['onnx']}, "
                f"protobuf {v['protobuf']}: {why}",
                help="install the pinned versions (pip install -e .), or choose another estimator")


def check_thresholds(ctx: Ctx) -> None:
    th = ctx.spec.thresholds
    task = ctx.spec.problem.task if ctx.spec.problem else None
    if th is None:
        return
    for name, b in (th.evaluation or {}).items():
        check_metric_bound(ctx, name, b, ("thresholds", "evaluation", name), task)
    for i, s in enumerate(th.slices or []):
        if s is None:
            continue
        base = ("thresholds", "slices", i)
        col = ctx.column_ref(s.column, base + ("column",), "slice", code="E605")
        check_metric_bound(ctx, s.metric, s, base, task, metric_path=base + ("metric",))
        if col is not None and col.dtype in ("int", "float") and not s.bins and not _coded(col):
            ctx.err("E607", "a slice on a numeric column needs bins", base + ("column",),
                    f"'{s.column}' has dtype {col.dtype}", help=_groups_hint(s.column, col))
        _check_bins(ctx, s.bins, base + ("bins",))
    sens = [n for n, c in ctx.columns.items() if c is not None and c.sensitive]
    for i, fb in enumerate(th.fairness or []):
        if fb is None:
            continue
        base = ("thresholds", "fairness", i)
        _check_fairness_task(ctx, fb, base, task)
        indicators = ctx.spec.data.indicators if ctx.spec.data is not None else None
        if fb.attribute is not None and fb.attribute in (indicators or {}):  # groups: its 0/1 columns
            if fb.bins:
                ctx.err("E607", "bins do not apply to an indicator attribute", base + ("bins",),
                        f"'{fb.attribute}' is given by indicator columns (data.indicators): "
                        "its groups are the columns", help="remove bins")
            col = None
        else:
            col = ctx.column_ref(fb.attribute, base + ("attribute",), "fairness bound", code="E606")
        if col is not None and not col.sensitive:
            ctx.err("E606", "fairness bound on a column that is not sensitive", base + ("attribute",),
                    f"'{fb.attribute}' is not flagged sensitive in data.columns",
                    f"sensitive columns: {', '.join(sens) or '(none)'}",
                    help=f"set sensitive: true on data.columns.{fb.attribute}")
        if col is not None and col.dtype in ("int", "float") and not fb.bins and not _coded(col):
            ctx.err("E607", "a fairness bound on a numeric attribute needs bins", base + ("attribute",),
                    f"'{fb.attribute}' has dtype {col.dtype}", help=_groups_hint(fb.attribute, col))
        _check_bins(ctx, fb.bins, base + ("bins",))
        if fb.metric is not None:
            unbounded = fb.metric == "disparate_impact_ratio" or fb.metric in REGRESSION_FAIRNESS
            lo, hi = (0.0, float("inf")) if unbounded else (0.0, 1.0)
            _check_bound(ctx, fb, base, fb.metric, lo, hi)
    p = th.parity
    if p is not None and task is not None:
        if task == "regression":
            needed = ("value_atol",)
        else:
            needed = ("probabilities_atol", "label_max_mismatch_rate")
        for k in needed:
            if getattr(p, k) is None:
                ctx.err("E609", f"the parity tolerance '{k}' is not set", ("thresholds", "parity"),
                        f"a {task} model's ONNX export is verified per output; '{k}' has no tolerance",
                        help=f"set thresholds.parity.{k} (e.g. 1e-4; tree models in float32 may need 1e-3)",
                        key=True)
        for k in ("probabilities_atol", "label_max_mismatch_rate", "value_atol"):
            v = getattr(p, k)
            if v is not None and v < 0:
                ctx.err("E609", "a parity tolerance is negative", ("thresholds", "parity", k), f"got {v}")
        if p.label_max_mismatch_rate is not None and p.label_max_mismatch_rate > 1:
            ctx.err("E609", "label_max_mismatch_rate is a share", ("thresholds", "parity", "label_max_mismatch_rate"),
                    f"must be in [0, 1]. Got {p.label_max_mismatch_rate} instead.")


REGRESSION_FAIRNESS = ("mean_prediction_difference", "mean_absolute_error_difference", "bounded_group_loss")
CLASSIFICATION_FAIRNESS = ("demographic_parity_difference", "equal_opportunity_difference", "disparate_impact_ratio")


def _check_fairness_task(ctx: Ctx, fb, base, task) -> None:
    """Fairness by task: classification metrics compare the decisions about one class
    (problem.positive_class, or the bound's own positive_class for a multiclass model, one
    against the rest); regression metrics compare predictions and errors."""
    if task is None or fb.metric is None:
        return
    fits = REGRESSION_FAIRNESS if task == "regression" else CLASSIFICATION_FAIRNESS
    if fb.metric not in fits:
        ctx.err("E610", "the fairness metric does not fit the task", base + ("metric",),
                f"{fb.metric} is for {'regression' if fb.metric in REGRESSION_FAIRNESS else 'classification'}; "
                f"problem.task is {task}", help=f"fairness metrics for {task}: {', '.join(fits)}")
        return
    labels = _target_labels(ctx)
    if task == "multiclass_classification":
        if fb.positive_class is None:
            ctx.err("E611", "a multiclass fairness bound needs the class it is about", base,
                    f"{fb.metric} compares how often groups are predicted one class (one-vs-rest); "
                    "thresholds.fairness[].positive_class is not set",
                    help="add positive_class: <a label of the target>"
                         + (f" (one of {', '.join(labels)})" if labels else "") + "; one bound per class that matters",
                    key=True)
        elif labels is not None and str(fb.positive_class) not in labels:
            ctx.err("E611", "the fairness bound's class is not a label of the target", base + ("positive_class",),
                    f"'{fb.positive_class}' is not in the target's isin {labels}",
                    help=did_you_mean(str(fb.positive_class), labels))
    elif fb.positive_class is not None:
        why = ("a regression bound compares predictions, not a class" if task == "regression" else
               "a binary bound is about problem.positive_class")
        ctx.err("E611", "positive_class does not apply to this fairness bound", base + ("positive_class",),
                f"{why}; problem.task is {task}", help="remove positive_class from this bound")


def _target_labels(ctx: Ctx) -> list[str] | None:
    p = ctx.spec.problem
    col = ctx.columns.get(p.target) if p is not None and p.target else None
    if col is None or col.checks is None or col.checks.isin is None:
        return None
    return [str(v) for v in col.checks.isin]


def _groups_hint(name: str, col) -> str:
    """How to give a numeric attribute groups: a column with a few integer values is a code
    (sex 0/1) that wants isin and labels, a measure (age) wants bins."""
    ch = col.checks
    lo = None if ch is None else (ch.ge if ch.ge is not None else None if ch.gt is None else ch.gt + 1)
    hi = None if ch is None else (ch.le if ch.le is not None else None if ch.lt is None else ch.lt - 1)
    if col.dtype == "int" and lo is not None and hi is not None and 0 <= hi - lo <= 9:
        codes = list(range(int(lo), int(hi) + 1))
        return (f"'{name}' holds codes {codes[0]} to {codes[-1]}: list them, checks: {{isin: {codes}}}, and name "
                f"them with labels: {{{', '.join(f'{c}: ...' for c in codes)}}} on data.columns.{name}")
    example = f"[{lo:g}, ..., {hi + 1:g}]" if col.dtype == "int" and lo is not None and hi is not None \
        else "[18, 25, 101]"
    return f"add bins: {example} to define the groups: increasing edges, each group is [a, b)"


def _coded(col) -> bool:
    """An int column with an isin list is a code (sex 1/2): its values are the groups."""
    return col.dtype == "int" and col.checks is not None and col.checks.isin is not None


def _check_bins(ctx: Ctx, bins, path) -> None:
    if bins and None not in bins and (len(bins) < 2 or any(a >= b for a, b in zip(bins, bins[1:]))):
        ctx.err("E607", "group edges must be strictly increasing", path, f"got {bins}")


def check_metric_bound(ctx: Ctx, name: str | None, bound, path, task, metric_path=None) -> None:
    if name is None or bound is None:
        return
    mpath = metric_path or path
    spec = E.METRICS.get(name)
    if spec is None:
        ctx.err("E601", "unknown metric", mpath, f"'{name}' is not a metric aiops computes",
                f"metrics: {', '.join(E.METRICS)}", help=did_you_mean(name, E.METRICS), key=metric_path is None)
        return
    tasks, lo, hi, _ = spec
    if task is not None and task not in tasks:
        fits = [m for m, s in E.METRICS.items() if task in s[0]]
        ctx.err("E602", "the metric does not fit the task", mpath, f"'{name}' is for {' / '.join(tasks)}; "
                f"problem.task is {task}", help=f"metrics for {task}: {', '.join(fits)}", key=metric_path is None)
        return
    _check_bound(ctx, bound, path, name, lo, hi)


def _check_bound(ctx: Ctx, bound, path, name: str, lo: float, hi: float) -> None:
    if bound.min is None and bound.max is None:
        ctx.err("E604", "a threshold sets neither min nor max", path, f"'{name}' has no bound",
                help="add min: or max:", key=True)
        return
    for k in ("min", "max"):
        v = getattr(bound, k)
        if v is not None and not (lo <= v <= hi):
            rng = f"[{lo}, {hi}]" if hi != float("inf") else f"[{lo}, inf)"
            ctx.err("E603", f"threshold for '{name}' is out of range", path + (k,),
                    f"'{name}' takes values in {rng}. Got {k}: {v} instead.",
                    help="a share is written 0.8, not 80" if v >= 10 and hi == 1.0 else None)
    if bound.min is not None and bound.max is not None and bound.min > bound.max:
        ctx.err("E604", f"threshold for '{name}' is empty", path + ("min",),
                f"min {bound.min} is above max {bound.max}")
