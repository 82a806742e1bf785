"""Evaluation: metrics, slices, fairness, curves, and the gate ("blessing").

One definition of every metric, used by `aiops compile` (holdout, slices, importance),
`aiops retrain` and `aiops monitor` (windows): the metrics are computed from counts and
sums (a confusion matrix, per-group counts, regression sums) by the functions below, so
the three cannot disagree. Only ROC AUC and average precision need the scores
themselves; compile computes them exactly, monitor on a 1/1000 score histogram, and both
average the classes with the same rule (`macro_over_classes`).

Definitions by task (docs/metrics.md has the table):
- binary: precision, recall, f1, roc_auc, average_precision and brier are about
  `problem.positive_class`; the predicted label is positive when its probability is at
  least the threshold (0.5).
- multiclass: the label is the most probable class. f1 is the macro average of the
  per-class F1 over the classes present in the labels; roc_auc is one-vs-rest, the macro
  average over the classes present in the labels (at least two); balanced_accuracy is the
  mean recall over the classes present; log_loss is the mean of -log p(true class),
  p clipped to [1e-15, 1]. A class absent from the labels of a holdout or window is left
  out of the averages (and named in the result's reason), never counted as 0.
- regression: r2, mae, rmse, mape (over the rows whose label is not 0).

A metric that cannot be computed (no row, one class only, no positive...) is None with
a reason, "insufficient data: ...": it is never 0, 1 or a pass. The gate passes only if
every threshold passes and at least one exists: with no thresholds, nothing is blessed;
an evaluation or fairness bound with insufficient data fails the gate (it is not a pass).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

INSUFFICIENT = "insufficient data"
FAIRNESS_MIN_POSITIVES = 5  # equal opportunity: a group's true positive rate needs this many positives
REGRESSION_FAIRNESS = ("mean_prediction_difference", "mean_absolute_error_difference", "bounded_group_loss")
CLASSIFICATION_FAIRNESS = ("demographic_parity_difference", "equal_opportunity_difference", "disparate_impact_ratio")

Measured = tuple[float | None, str | None]  # (value, why there is none)


def metric(name: str, y: np.ndarray, out: dict[str, np.ndarray], classes: tuple[str, ...],
           positive: str | None) -> float | None:
    """The metric's value, or None when it cannot be computed (see `measure` for why)."""
    return measure(name, y, out, classes, positive)[0]


def measure(name: str, y: np.ndarray, out: dict[str, np.ndarray], classes: tuple[str, ...],
            positive: str | None) -> Measured:
    """(value, None), or (None, reason) when the data cannot give the metric."""
    if len(y) == 0:
        return None, "no rows"
    if "value" in out:
        return from_sums(name, regression_sums(np.asarray(y, dtype=np.float64), out["value"]))
    yi = class_index(y, classes)
    pi = class_index(out["label"], classes)
    known = yi >= 0
    yi, pi, proba = yi[known], pi[known], out["probabilities"][known]
    if not len(yi):
        return None, "no row has a label among the model's classes"
    cm = confusion(yi, pi, len(classes))
    if name in SCORE_METRICS:
        return score_metric(name, yi, proba, classes, positive)
    if name == "log_loss":
        return float(log_loss_sum(yi, proba) / len(yi)), None
    if name == "brier":
        pos = classes.index(positive)
        return float(brier_sum(yi, proba, pos) / len(yi)), None
    return from_confusion(name, cm, classes, positive)


# ------------------------------------------------------------------ shared building blocks
def class_index(values: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Position of each value in classes (-1 if it is not one)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.fromiter((lookup.get(v if isinstance(v, str) else str(v), -1) if v is not None else -1
                        for v in values), dtype=np.int64, count=len(values))


def confusion(yi: np.ndarray, pi: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    ok = pi >= 0
    np.add.at(cm, (yi[ok], pi[ok]), 1)
    return cm


def log_loss_sum(yi: np.ndarray, proba: np.ndarray) -> float:
    p = proba[np.arange(len(yi)), yi]
    return float(-np.log(np.clip(p, 1e-15, 1.0)).sum())


def brier_sum(yi: np.ndarray, proba: np.ndarray, pos: int) -> float:
    return float(((proba[:, pos] - (yi == pos)) ** 2).sum())


def from_confusion(name: str, cm: np.ndarray, classes: tuple[str, ...], positive: str | None) -> Measured:
    """accuracy, balanced_accuracy, precision, recall and f1 from a [true, predicted] matrix."""
    n = int(cm.sum())
    if n == 0:
        return None, "no labelled rows"
    tp = np.diag(cm).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    present = actual > 0
    if name == "accuracy":
        return float(tp.sum() / n), None
    if name == "balanced_accuracy":
        return float(np.mean(tp[present] / actual[present])), None
    binary = len(classes) == 2 and positive is not None
    if binary:
        pos = classes.index(positive)
        t, p, a = tp[pos], predicted[pos], actual[pos]
        if name == "precision":
            return (float(t / p), None) if p else (None, f"no row is predicted '{positive}'")
        if name == "recall":
            return (float(t / a), None) if a else (None, f"no row of class '{positive}' in the labels")
        if name == "f1":
            return (float(2 * t / (p + a)), None) if p + a else \
                (None, f"no row of class '{positive}' in the labels nor in the predictions")
        raise KeyError(name)
    if name == "f1":  # macro over the classes present in the labels
        f1 = 2 * tp[present] / (actual[present] + predicted[present])
        return float(f1.mean()), None
    raise KeyError(name)


SCORE_METRICS = ("roc_auc", "average_precision")


def score_metric(name: str, yi: np.ndarray, proba: np.ndarray, classes: tuple[str, ...],
                 positive: str | None) -> Measured:
    """roc_auc / average_precision, exactly (scikit-learn), with `macro_over_classes`."""
    from sklearn import metrics as M

    if len(classes) == 2 and positive is not None:
        pos = classes.index(positive)
        yb = (yi == pos).astype(int)
        if name == "average_precision":
            return (float(M.average_precision_score(yb, proba[:, pos])), None) if yb.any() else \
                (None, f"no row of class '{positive}' in the labels")
        if 0 < yb.sum() < len(yb):
            return float(M.roc_auc_score(yb, proba[:, pos])), None
        return None, f"the labels hold only class '{classes[int(yi[0])]}'"
    per = []
    for c in range(len(classes)):
        yb = yi == c
        per.append(float(M.roc_auc_score(yb, proba[:, c])) if 0 < yb.sum() < len(yb) else None)
    return macro_over_classes(per, classes, [bool((yi == c).any()) for c in range(len(classes))])


def macro_over_classes(per_class: list[float | None], classes: tuple[str, ...], present: list[bool]) -> Measured:
    """One-vs-rest macro average over the classes present in the labels; at least two are
    needed (a class present in every row has no negatives)."""
    vals = [v for v in per_class if v is not None]
    if len(vals) < 2:
        have = [c for c, p in zip(classes, present) if p]
        return None, f"one-vs-rest needs at least 2 classes in the labels; present: {', '.join(have) or 'none'}"
    return float(np.mean(vals)), None


def regression_sums(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[rows, sum y, sum y^2, sum |e|, sum e^2, sum |e/y| (y != 0), rows with y != 0]."""
    e = y - v
    nz = y != 0
    return np.array([len(y), y.sum(), (y * y).sum(), np.abs(e).sum(), (e * e).sum(),
                     np.abs(e[nz] / y[nz]).sum(), nz.sum()], dtype=np.float64)


def from_sums(name: str, s: np.ndarray) -> Measured:
    n, sy, syy, sae, sse, sape, nz = s.tolist()
    if n == 0:
        return None, "no labelled rows"
    if name == "mae":
        return sae / n, None
    if name == "rmse":
        return math.sqrt(sse / n), None
    if name == "mape":
        return (sape / nz, None) if nz else (None, "every label is 0")
    if name == "r2":
        ss_tot = syy - sy * sy / n
        if n < 2 or ss_tot <= 1e-12 * max(syy, 1.0):
            return None, "the labels have no variance"
        return 1.0 - sse / ss_tot, None
    raise KeyError(name)


# ------------------------------------------------------------------ bounds
def check_bound(value: float | None, bound: dict[str, Any]) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if bound.get("min") is not None and value < bound["min"]:
        return False
    if bound.get("max") is not None and value > bound["max"]:
        return False
    return True


def status(value: float | None, bound: dict[str, Any]) -> str:
    """'passed', 'failed' or 'insufficient data' (no value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return INSUFFICIENT
    return "passed" if check_bound(value, bound) else "failed"


def bound_text(b: dict[str, Any]) -> str:
    """'>= 0.7', '<= 0.2' or '>= 0.1 and <= 0.3': a bound as people read it."""
    parts = []
    if b.get("min") is not None:
        parts.append(f">= {b['min']}")
    if b.get("max") is not None:
        parts.append(f"<= {b['max']}")
    return " and ".join(parts)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (accuracy, recall, a selection rate)."""
    if n <= 0:
        return None
    p = successes / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(name: str, y: np.ndarray, out: dict[str, np.ndarray], classes: tuple[str, ...],
                       positive: str | None, seed: int, repeats: int = 200) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of a metric over resampled rows (None when fewer
    than half of the resamples give a value)."""
    n = len(y)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(repeats):
        idx = rng.integers(0, n, n)
        v = measure(name, y[idx], {k: a[idx] for k, a in out.items()}, classes, positive)[0]
        if v is not None:
            vals.append(v)
    if len(vals) < repeats / 2:
        return None
    lo, hi = np.quantile(vals, [0.025, 0.975]).tolist()
    return round(lo, 6), round(hi, 6)


# ------------------------------------------------------------------ groups and fairness
def groups_of(values: np.ndarray, bins: list[float] | None, labels: dict[str, str] | None = None) -> np.ndarray:
    """Group labels for a slice or a sensitive attribute: the value (its readable name when
    `labels` names it: {"0": "female"}), or its bin '[a, b)'."""
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
    names = labels or {}
    out = np.array([MISSING_GROUP if _null(v) else
                    (str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v))
                    for v in values], dtype=object)
    return np.array([names.get(g, g) for g in out.tolist()], dtype=object) if names else out


MISSING_GROUP = "(missing)"  # the attribute is null
NO_INDICATOR = "(none)"  # indicator columns: none is 1 (all 0)
SEVERAL_INDICATORS = "(multiple)"  # indicator columns: more than one is 1


def _null(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and np.isnan(v))


def indicator_groups(columns: list[np.ndarray], names: list[str]) -> np.ndarray:
    """The group of each row of an attribute spread over 0/1 columns: the name of the one
    column that is 1; "(multiple)" when several are, "(missing)" when none is and one is null,
    "(none)" when all are 0."""
    n = len(columns[0]) if columns else 0
    hot = np.zeros((n, len(columns)), dtype=bool)
    null = np.zeros((n, len(columns)), dtype=bool)
    for j, col in enumerate(columns):
        for i, v in enumerate(col.tolist()):
            if _null(v):
                null[i, j] = True
            else:
                hot[i, j] = v is True or (not isinstance(v, str) and v == 1)
    count = hot.sum(axis=1)
    first = hot.argmax(axis=1)
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = (names[first[i]] if count[i] == 1 else SEVERAL_INDICATORS if count[i] > 1 else
                  MISSING_GROUP if null[i].any() else NO_INDICATOR)
    return out


def attribute_groups(rule: dict[str, Any], column: Callable[[str], np.ndarray | None]) -> np.ndarray | None:
    """The group of every row for a fairness rule (compile, retrain and monitor alike):
    indicator columns (rule["indicators"]: column -> name), or one column's values, binned
    (rule["bins"]) or named (rule["labels"]). `column(name)` gives a contract column's values,
    None when it is absent; then the groups are None."""
    indicators = rule.get("indicators")
    if indicators:
        cols = [column(c) for c in indicators]
        if any(c is None for c in cols):
            return None
        return indicator_groups(cols, list(indicators.values()))
    values = column(rule["attribute"])
    if values is None:
        return None
    return groups_of(values, list(rule["bins"]) if rule.get("bins") else None, rule.get("labels"))


def _n(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


FAIRNESS_MIN_ROWS = 10  # a group with fewer rows is listed but not compared


# per group: rows, predicted positive, labelled, labelled positive, true positive,
# sum of predictions, sum of |error| (labelled rows)
GROUP_FIELDS = 7


def group_counts(groups: np.ndarray, y: np.ndarray | None, label: np.ndarray | None, positive: str | None,
                 value: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The counts `fairness_from_counts` needs, per group (y None: no labels)."""
    out: dict[str, np.ndarray] = {}
    lab = np.zeros(len(groups), dtype=bool) if y is None else np.array([v is not None for v in y], dtype=bool)
    if value is not None:
        err = np.zeros(len(groups))
        if y is not None:
            yv = np.array([np.nan if v is None else float(v) for v in y], dtype=np.float64)
            err = np.where(lab, np.abs(yv - value), 0.0)
        for g in sorted(set(groups.tolist())):
            m = groups == g
            out[g] = np.array([m.sum(), 0, (m & lab).sum(), 0, 0, value[m].sum(), err[m].sum()], dtype=np.float64)
        return out
    sel = label == positive
    pos = lab & (y == positive) if y is not None else lab
    for g in sorted(set(groups.tolist())):
        m = groups == g
        out[g] = np.array([m.sum(), (m & sel).sum(), (m & lab).sum(), (m & pos).sum(), (m & pos & sel).sum(),
                           0.0, 0.0], dtype=np.float64)
    return out


def fairness_from_counts(metric_name: str, counts: dict[str, np.ndarray], min_rows: int, positive: str | None,
                         use_labels: bool = True) -> dict[str, Any]:
    """Per-group figures and the disparity metric over the groups of at least min_rows rows
    (labelled rows for the metrics that need labels). A figure that cannot be computed is
    None with a reason."""
    regression = metric_name in REGRESSION_FAIRNESS
    per: dict[str, dict[str, Any]] = {}
    for g, c in sorted(counts.items()):
        rows, sel, lab, pos, tp, spred, serr = c.tolist()
        rows, lab = int(rows), int(lab) if use_labels else 0
        if regression:
            needs = lab if metric_name != "mean_prediction_difference" else rows
            per[g] = {"rows": rows, "labelled": lab, "mean_prediction": spred / rows if rows else None,
                      "mean_absolute_error": serr / lab if lab else None, "included": bool(needs >= min_rows)}
        else:
            needs = rows if metric_name != "equal_opportunity_difference" else lab
            per[g] = {"rows": rows, "labelled": lab, "positives": int(pos) if use_labels else 0,
                      "selection_rate": sel / rows if rows else None,
                      "tpr": tp / pos if use_labels and pos else None, "included": bool(needs >= min_rows)}
    inc = {g: v for g, v in per.items() if v["included"]}
    value, reason = None, None
    field = {"demographic_parity_difference": "selection_rate", "disparate_impact_ratio": "selection_rate",
             "equal_opportunity_difference": "tpr", "mean_prediction_difference": "mean_prediction",
             "mean_absolute_error_difference": "mean_absolute_error", "bounded_group_loss": "mean_absolute_error"
             }[metric_name]
    if metric_name == "equal_opportunity_difference":
        inc = {g: v for g, v in inc.items() if v["positives"] >= FAIRNESS_MIN_POSITIVES}
    rates = [v[field] for v in inc.values() if v[field] is not None]
    need = 1 if metric_name == "bounded_group_loss" else 2
    if len(rates) < need:
        what = f"with at least {min_rows} rows" + (f" and {FAIRNESS_MIN_POSITIVES} positives"
                                                   if metric_name == "equal_opportunity_difference" else "")
        reason = f"{len(rates)} group(s) {what}; the metric needs {need}"
    elif metric_name == "disparate_impact_ratio":
        if max(rates) > 0:
            value = min(rates) / max(rates)
        else:
            reason = f"no group has a row predicted '{positive}' (0/0)"
    elif metric_name == "bounded_group_loss":
        value = max(rates)
    else:
        value = max(rates) - min(rates)
    return {"value": value, "reason": reason, "groups": per, "min_rows": min_rows,
            **({"positive_class": positive} if positive is not None and not regression else {})}


def fairness(metric_name: str, y: np.ndarray, label: np.ndarray | None, groups: np.ndarray, positive: str | None,
             min_rows: int = FAIRNESS_MIN_ROWS, value: np.ndarray | None = None) -> dict[str, Any]:
    """Per-group figures and the disparity metric: selection rate and true positive rate
    of `positive` (classification, one-vs-rest for multiclass), or the mean prediction and
    the mean absolute error (regression, pass `value`)."""
    return fairness_from_counts(metric_name, group_counts(groups, y, label, positive, value), min_rows, positive)


# ------------------------------------------------------------------ curves
def curves(y: np.ndarray, out: dict[str, np.ndarray], classes: tuple[str, ...], positive: str | None) -> dict:
    """ROC, calibration and confusion matrix (classification) or residuals (regression)."""
    from sklearn import metrics as M

    if "value" in out:
        res = y - out["value"]
        qs = np.quantile(res, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]).tolist() if len(res) else []
        hist, edges = np.histogram(res, bins=30) if len(res) else (np.zeros(0), np.zeros(0))
        return {"residuals": {"quantiles": dict(zip(["p01", "p05", "p25", "p50", "p75", "p95", "p99"], qs)),
                              "histogram": {"counts": hist.tolist(), "edges": [round(e, 6) for e in edges.tolist()]}}}
    cm = confusion(class_index(y, classes), class_index(out["label"], classes), len(classes))
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
