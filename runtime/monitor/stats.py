"""Streaming accumulators for one monitoring window: filled chunk by chunk, memory
independent of the number of rows, then read once by `runtime.monitor`.

- `NumericSketch`: current values of a numeric column binned on the reference's decile
  edges (PSI, Jensen-Shannon, chi-square) and on its quantile grid (KS, Wasserstein).
- `CategorySketch`: category counts (nulls apart).
- `Performance`: the metrics of `monitoring.performance` from counts and sums: a
  1,000-bin score histogram per class (ROC AUC, average precision), the confusion
  matrix, Brier and log-loss sums, regression sums.
- `Fairness`: per group rows, predicted positives, labelled positives, true positives.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from aiops.runtime.monitor import drift as D
from aiops.runtime import evaluation as EV

OTHER = "__other__"
MISSING = "__missing__"
UNSEEN = "__unseen__"
SCORE_BINS = 1000


class NumericSketch:
    def __init__(self, ref: dict[str, Any]):
        self.edges = np.asarray(ref.get("edges") or [], dtype=np.float64)
        q = np.asarray(ref.get("quantiles") or [], dtype=np.float64)
        self.grid = np.unique(q)
        if "cdf" in ref and len(q):
            last = np.searchsorted(q, self.grid, side="right") - 1
            self.ref_cdf = np.asarray(ref["cdf"], dtype=np.float64)[last]
        else:  # profiles written before `cdf` existed: the sketch's own probabilities
            self.ref_cdf = (np.searchsorted(q, self.grid, side="right") - 1) / max(len(q) - 1, 1)
        self.ref_int = None
        if ref.get("interval_means") and len(self.grid) > 1:
            first = np.searchsorted(q, self.grid, side="left")  # interval (grid[j-1], grid[j]] is q's interval first[j]
            means = [ref["interval_means"][k] for k in first[1:].tolist()]
            share = np.diff(self.ref_cdf)
            mid = (self.grid[1:] + self.grid[:-1]) / 2.0
            mu = np.array([m if m is not None else c for m, c in zip(means, mid.tolist())], dtype=np.float64)
            self.ref_int = np.diff(self.grid) * self.ref_cdf[:-1] + share * (self.grid[1:] - mu)
        self.ref_counts = np.asarray(ref.get("counts") or [0], dtype=np.float64)
        self.ref_n = int(ref.get("rows", 0)) - int(ref.get("nulls", 0))
        self.ref_std = float(ref.get("std") or 0.0)
        # decile edges are points of the quantile grid (both from the same np.quantile): each grid
        # interval then falls in one decile bin, and the bins follow from the grid counts
        self.grid_to_bin = None
        if len(self.grid) and np.isin(self.edges, self.grid).all():
            self.grid_to_bin = np.r_[0, np.searchsorted(self.edges, self.grid, side="right")]
        self.n = 0
        self.nulls = 0
        self.bins = np.zeros(len(self.edges) + 1, dtype=np.int64)
        self.grid_counts = np.zeros(len(self.grid) + 1, dtype=np.int64)
        self.grid_sums = np.zeros(len(self.grid) + 1, dtype=np.float64)
        self.total = 0.0
        self.total_sq = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        null = np.isnan(x)
        self.nulls += int(null.sum())
        if null.any():
            x = x[~null]
        if not len(x):
            return
        self.n += len(x)
        if len(self.grid):
            k = np.searchsorted(self.grid, x, side="left")
            counts = np.bincount(k, minlength=len(self.grid_counts))
            self.grid_counts += counts
            self.grid_sums += np.bincount(k, weights=x, minlength=len(self.grid_counts))
        if self.grid_to_bin is not None:
            self.bins += np.bincount(self.grid_to_bin, weights=counts, minlength=len(self.bins)).astype(np.int64)
        else:
            self.bins += np.bincount(np.searchsorted(self.edges, x, side="left"), minlength=len(self.bins))
        self.total += float(x.sum())
        self.total_sq += float(np.einsum("i,i->", x, x))  # not np.dot: BLAS threads cost more than they save here
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    @property
    def cur_cdf(self) -> np.ndarray:
        return np.cumsum(self.grid_counts)[: len(self.grid)] / max(self.n, 1)

    def test(self, name: str) -> D.TestResult:
        if name == "psi":
            return D.TestResult(name, D.psi(self.ref_counts, self.bins), None)
        if name == "jensen_shannon":
            return D.TestResult(name, D.jensen_shannon(self.ref_counts, self.bins), None)
        if name == "chi_square":
            stat, p = D.chi_square(self.ref_counts, self.bins)
            return D.TestResult(name, stat, p)
        if name == "ks":
            d, p = D.ks(self.ref_cdf, self.cur_cdf, self.ref_n, self.n)
            return D.TestResult(name, d, p)
        if name == "wasserstein":
            n = max(self.n, 1)
            cur_int = None
            g, c, s = self.grid, self.grid_counts, self.grid_sums
            if self.ref_int is not None:
                cur_int = np.diff(g) * self.cur_cdf[:-1] + (c[1:len(g)] * g[1:] - s[1:len(g)]) / n
            below = (g[0] * c[0] - s[0]) / n if len(g) else 0.0  # mean of (grid[0] - x)+, exact
            above = (s[-1] - g[-1] * c[-1]) / n if len(g) else 0.0
            w = D.wasserstein(g, self.ref_cdf, self.cur_cdf, below, above, self.ref_int, cur_int)
            return D.TestResult(name, w / self.ref_std if self.ref_std > 0 else w, None)
        raise ValueError(f"unknown drift test {name!r}")

    def summary(self) -> dict[str, Any]:
        mean = self.total / self.n if self.n else None
        var = max(self.total_sq / self.n - mean * mean, 0.0) if self.n else None
        return {"rows": self.n, "nulls": self.nulls, "mean": mean, "std": math.sqrt(var) if var is not None else None,
                "min": self.min if self.n else None, "max": self.max if self.n else None}

    def histogram(self) -> dict[str, Any]:
        """Reference and current shares on the reference's decile bins (for plots)."""
        return {"edges": self.edges.tolist(), "reference": _shares(self.ref_counts), "current": _shares(self.bins)}


class CategorySketch:
    def __init__(self, ref_counts: dict[str, int]):
        self.ref = {k: int(v) for k, v in ref_counts.items() if k != MISSING}
        self.counts: dict[str, int] = {}
        self.nulls = 0

    def add_counts(self, values: list[Any], counts: np.ndarray) -> None:
        for v, c in zip(values, counts.tolist()):
            if not c:
                continue
            if v is None:
                self.nulls += c
            else:
                self.counts[v] = self.counts.get(v, 0) + c

    def add(self, values: np.ndarray) -> None:
        """Object array of strings (None for missing)."""
        import pyarrow as pa

        if not len(values):
            return
        vc = pa.array(values, type=pa.string(), from_pandas=True).value_counts()
        self.add_counts(vc.field("values").to_pylist(), vc.field("counts").to_numpy())

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def aligned(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Categories, reference counts, current counts. Current categories outside the
        reference's kept set go to its pooled '__other__' bin, or to '__unseen__'."""
        keys = sorted(self.ref)
        cur = dict.fromkeys(keys, 0)
        for k, c in self.counts.items():
            if k in cur:
                cur[k] += c
            elif OTHER in cur:
                cur[OTHER] += c
            else:
                cur[UNSEEN] = cur.get(UNSEEN, 0) + c
        keys = sorted(cur)
        return keys, np.array([self.ref.get(k, 0) for k in keys], dtype=np.float64), \
            np.array([cur[k] for k in keys], dtype=np.float64)

    def test(self, name: str) -> D.TestResult:
        _, ref, cur = self.aligned()
        if name == "psi":
            return D.TestResult(name, D.psi(ref, cur), None)
        if name == "jensen_shannon":
            return D.TestResult(name, D.jensen_shannon(ref, cur), None)
        if name == "chi_square":
            stat, p = D.chi_square(ref, cur)
            return D.TestResult(name, stat, p)
        raise ValueError(f"drift test {name!r} does not apply to categories")

    def summary(self) -> dict[str, Any]:
        return {"rows": self.n, "nulls": self.nulls, "categories": len(self.counts)}

    def histogram(self, top: int = 12) -> dict[str, Any]:
        keys, ref, cur = self.aligned()
        rs, cs = np.asarray(_shares(ref)), np.asarray(_shares(cur))
        order = sorted(range(len(keys)), key=lambda i: (-max(rs[i], cs[i]), keys[i]))[:top]
        return {"categories": [keys[i] for i in order], "reference": [float(rs[i]) for i in order],
                "current": [float(cs[i]) for i in order]}


def _shares(counts: np.ndarray) -> list[float]:
    c = np.asarray(counts, dtype=np.float64)
    return (c / c.sum()).tolist() if c.sum() > 0 else c.tolist()


class Performance:
    """Metrics of labelled rows from counts and sums (no scikit-learn), with the definitions
    of `runtime.evaluation` (the same functions compute them from the same counts)."""

    def __init__(self, task: str, classes: tuple[str, ...], positive: str | None):
        self.task = task
        self.classes = classes
        self.positive = positive
        self.n = 0
        k = len(classes)
        self.binary = task == "binary_classification" and positive is not None and k == 2
        if task == "regression":
            self.sums = np.zeros(7)  # runtime.evaluation.regression_sums
        else:
            self.confusion = np.zeros((k, k), dtype=np.int64)  # [true, predicted]
            self.hist = np.zeros((k, SCORE_BINS), dtype=np.int64)  # binary: positive-class score by true class
            self.ovr = np.zeros((k, 2, SCORE_BINS), dtype=np.int64)  # multiclass: P(class) by (not class, class)
            self.brier = 0.0
            self.log_loss = 0.0

    def add(self, y: np.ndarray, out: dict[str, np.ndarray]) -> None:
        if not len(y):
            return
        self.n += len(y)
        if self.task == "regression":
            self.sums += EV.regression_sums(np.asarray(y, dtype=np.float64), out["value"])
            return
        yi = _class_index(y, self.classes)
        known = yi >= 0
        self.n -= int((~known).sum())
        yi = yi[known]
        proba = out["probabilities"][known]
        pred = _class_index(out["label"][known], self.classes)
        self.confusion += EV.confusion(yi, pred, len(self.classes))
        self.log_loss += EV.log_loss_sum(yi, proba)
        if self.binary:
            pos = self.classes.index(self.positive)
            s = proba[:, pos]
            b = np.minimum((s * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
            np.add.at(self.hist, (yi, b), 1)
            self.brier += EV.brier_sum(yi, proba, pos)
        else:
            for c in range(len(self.classes)):
                b = np.minimum((proba[:, c] * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
                np.add.at(self.ovr[c], ((yi == c).astype(np.int64), b), 1)

    def metric(self, name: str) -> float | None:
        return self.measure(name)[0]

    def measure(self, name: str) -> EV.Measured:
        """(value, None) or (None, why it cannot be computed), as `runtime.evaluation.measure`."""
        if self.n == 0:
            return None, "no labelled rows"
        if self.task == "regression":
            return EV.from_sums(name, self.sums)
        n = self.confusion.sum()
        if name == "log_loss":
            return self.log_loss / n, None
        if name == "brier":
            return self.brier / n, None
        if name in EV.SCORE_METRICS:
            if self.binary:
                pos = self.classes.index(self.positive)
                neg_h, pos_h = self.hist[1 - pos], self.hist[pos]
                if name == "average_precision":
                    v = ap_from_hist(neg_h, pos_h)
                    return (v, None) if v is not None else (None, f"no row of class '{self.positive}' in the labels")
                v = auc_from_hist(neg_h, pos_h)
                only = self.classes[1 - pos] if pos_h.sum() == 0 else self.positive
                return (v, None) if v is not None else (None, f"the labels hold only class '{only}'")
            if name == "average_precision":
                raise KeyError(name)
            per = [auc_from_hist(self.ovr[c, 0], self.ovr[c, 1]) for c in range(len(self.classes))]
            return EV.macro_over_classes(per, self.classes, [bool(self.ovr[c, 1].sum()) for c in range(len(self.classes))])
        return EV.from_confusion(name, self.confusion, self.classes, self.positive)

    def positive_rate(self) -> float | None:
        if self.task == "regression" or not self.binary or self.n == 0:
            return None
        pos = self.classes.index(self.positive)
        return float(self.confusion[pos].sum() / self.confusion.sum())


def _class_index(values: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Position of each value in classes (-1 if it is not one), without a Python loop."""
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = pc.index_in(pa.array(values, type=pa.string(), from_pandas=True), value_set=pa.array(list(classes)))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def auc_from_hist(neg: np.ndarray, pos: np.ndarray) -> float | None:
    """ROC AUC from score histograms: P(score_pos > score_neg) + P(tie) / 2, ties being
    scores in the same bin (1/1000 wide)."""
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return None
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + neg / 2.0)).sum() / (n_neg * n_pos))


def ap_from_hist(neg: np.ndarray, pos: np.ndarray) -> float | None:
    """Average precision with thresholds at the histogram's bin edges (from the top)."""
    n_pos = pos.sum()
    if n_pos == 0:
        return None
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    keep = pos[::-1] > 0
    precision = tp / np.maximum(tp + fp, 1)
    return float((precision[keep] * pos[::-1][keep]).sum() / n_pos)


class Fairness:
    """Per group the counts of `runtime.evaluation.group_counts` (rows, predicted positives,
    labelled rows, labelled positives, true positives, sum of predictions, sum of absolute
    errors), for the class the rule is about (classification) or for a regressor."""

    def __init__(self, positive: str | None, regression: bool = False):
        self.positive = positive
        self.regression = regression
        self.groups: dict[str, np.ndarray] = {}

    def add(self, groups: np.ndarray, out_or_label: Any, y: np.ndarray | None) -> None:
        if isinstance(out_or_label, dict):
            value = out_or_label.get("value")
            label = out_or_label.get("label")
        else:
            value, label = None, out_or_label
        for g, c in EV.group_counts(groups, y, label, self.positive, value).items():
            self.groups[g] = self.groups.get(g, np.zeros(EV.GROUP_FIELDS)) + c

    def evaluate(self, metric: str, min_rows: int, use_labels: bool) -> dict[str, Any]:
        """The disparity metric over groups of at least min_rows rows (runtime.evaluation)."""
        return EV.fairness_from_counts(metric, self.groups, min_rows, self.positive, use_labels)
