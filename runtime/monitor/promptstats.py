"""The figures of one prompt in one monitoring window: lengths against the reference (with a
drift test, runtime/monitor/drift.py), text drift (runtime/monitor/textdrift.py), guardrail
hit rates per guard, refusal, JSON validity and error rates, and the feedback pass rate.

`Calls` accumulates the logged calls; `Calls.result()` turns them into the prompt's section
of a window in report.json, each check as {"value", "max" | "min", "passed"}.
"""
from __future__ import annotations

import random
from array import array
from typing import Any

import numpy as np

from aiops.runtime.evaluation import INSUFFICIENT
from aiops.runtime.monitor import drift as D
from aiops.runtime.monitor.textdrift import MAX_ROWS, SEED, domain_auc, output_text, variables_text

LENGTHS = ("input_chars", "output_chars", "input_tokens", "output_tokens")
TIMEOUT, BUDGET = "provider_timeout", "budget_exceeded"
HIST_BINS = 10
# quantile bins of the reference: one per ROWS_PER_BIN values of the smaller sample (2 to 10), since
# the PSI of two samples of one distribution grows as (bins - 1) * (1/n_ref + 1/n_cur)
ROWS_PER_BIN = 10
ALPHA = 0.01  # length drift also needs the two samples to differ: two-sample KS p-value below this


class Calls:
    """The calls of one prompt in one window (or the reference)."""

    def __init__(self) -> None:
        self.rows = 0
        self.lengths: dict[str, array] = {k: array("d") for k in LENGTHS}
        # the texts the classifier reads: a uniform sample of at most MAX_ROWS a side (reservoir
        # sampling with a fixed seed, so a run over the same log gives the same sample)
        self.texts: dict[str, list[str]] = {"input": [], "output": []}
        self._seen = {"input": 0, "output": 0}
        self._rng = random.Random(SEED)
        self.hits: dict[str, int] = {}
        self.refused = 0
        self.json_checked = 0
        self.json_valid = 0
        self.errors: dict[str, int] = {}
        self.feedback = [0, 0]  # labelled, passed

    def add(self, e: dict[str, Any], verdict: bool | None) -> None:
        self.rows += 1
        answered = e.get("error") is None and not e.get("refused")
        for k in LENGTHS if answered else ():  # a refused or failed call has no prompt sent, no answer
            v = e.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                self.lengths[k].append(float(v))
        self._keep("input", variables_text(e.get("variables")))
        if answered:
            self._keep("output", output_text(e.get("output")))
        guards = e.get("guardrails") if isinstance(e.get("guardrails"), dict) else {}
        for side in ("input", "output"):
            seen = {h.get("guard") for h in guards.get(side) or [] if isinstance(h, dict)}
            for g in seen:
                name = f"{side}.{g}"
                self.hits[name] = self.hits.get(name, 0) + 1
        if e.get("refused") is True:
            self.refused += 1
        if e.get("json_valid") is not None:
            self.json_checked += 1
            self.json_valid += int(e.get("json_valid") is True)
        if e.get("error") is not None:
            code = str(e["error"])
            self.errors[code] = self.errors.get(code, 0) + 1
        if verdict is not None:
            self.feedback[0] += 1
            self.feedback[1] += int(verdict)

    def _keep(self, side: str, text: str) -> None:
        self._seen[side] += 1
        kept = self.texts[side]
        if len(kept) < MAX_ROWS:
            kept.append(text)
        else:
            j = self._rng.randrange(self._seen[side])
            if j < MAX_ROWS:
                kept[j] = text

    @classmethod
    def of_reference(cls, cases: list[dict[str, Any]]) -> "Calls":
        ref = cls()
        for c in cases:
            ref.add(c, None)
        return ref

    # -------------------------------------------------------------- verdicts
    def result(self, t: dict[str, Any], guards: list[str], ref: "Calls | None", tested: bool, why_untested: str,
               has_feedback: bool) -> dict[str, Any]:
        """t: monitoring.json's thresholds; ref: None when this window is the reference itself."""
        n = self.rows
        out: dict[str, Any] = {"rows": n, "tested": tested}
        if not tested:
            out["status"] = INSUFFICIENT
        err = sum(self.errors.values())
        out["errors"] = _ceiling(err / n if n else 0.0, t["max_error_rate"], tested)
        out["errors"].update(by_code=dict(sorted(self.errors.items())), timeouts=self.errors.get(TIMEOUT, 0),
                             budget=self.errors.get(BUDGET, 0))
        out["refusal"] = _ceiling(self.refused / n if n else 0.0, t["max_refusal_rate"], tested)
        if self.json_checked:
            rate = self.json_valid / self.json_checked
            out["json_validity"] = {"value": rate, "rows": self.json_checked, "min": t["min_json_valid_rate"],
                                    "passed": rate >= t["min_json_valid_rate"] if tested else None}
        else:
            out["json_validity"] = None
        limits = t["guardrail_hit_rates"]
        out["guardrails"] = {}
        for g in sorted(set(guards) | set(self.hits)):
            r = _ceiling(self.hits.get(g, 0) / n if n else 0.0, limits.get(g, t["max_guardrail_hit_rate"]), tested)
            r["hits"] = self.hits.get(g, 0)
            out["guardrails"][g] = r
        out["lengths"] = {k: self._length(k, ref, t["length_drift"], tested) for k in LENGTHS}
        out["text_drift"] = {side: self._text(side, ref, t, tested, why_untested) for side in t["text_drift_on"]}
        out["feedback"] = self._feedback(t, has_feedback)
        return out

    def _length(self, key: str, ref: "Calls | None", rule: dict[str, Any], tested: bool) -> dict[str, Any]:
        cur = np.asarray(self.lengths[key], dtype=np.float64)
        entry: dict[str, Any] = {"rows": len(cur), "summary": _summary(cur), "test": rule["test"],
                                 "threshold": rule["threshold"], "value": None, "drifted": False}
        if ref is None:
            entry["note"] = "the reference"
            return entry
        base = np.asarray(ref.lengths[key], dtype=np.float64)
        if not tested or len(cur) == 0 or len(base) < 2:
            entry["note"] = "not tested: too few values" if tested else "not tested: insufficient data"
            return entry
        bins = int(np.clip(min(len(base), len(cur)) // ROWS_PER_BIN, 2, HIST_BINS))
        edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)[1:-1]))
        rc = np.bincount(np.searchsorted(edges, base, side="left"), minlength=len(edges) + 1)
        cc = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1)
        if rule["test"] == "psi":
            value = D.psi(rc, cc)
        else:
            from scipy.stats import wasserstein_distance

            scale = float(base.std()) or max(abs(float(base.mean())), 1.0)
            value = float(wasserstein_distance(base, cur)) / scale
        from scipy.stats import ks_2samp

        p = float(ks_2samp(base, cur).pvalue)
        entry["value"], entry["p_value"], entry["alpha"] = value, p, ALPHA
        # a large statistic on a few dozen calls can be chance: the samples must also differ (KS)
        entry["drifted"] = D.drifted(rule["test"], value, None, rule["threshold"]) and p < ALPHA
        entry["histogram"] = {"edges": edges.tolist(), "reference": (rc / rc.sum()).tolist(),
                              "current": (cc / cc.sum()).tolist(), "reference_summary": _summary(base)}
        return entry

    def _text(self, side: str, ref: "Calls | None", t: dict[str, Any], tested: bool, why: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"auc": None, "threshold": t["text_drift_auc"], "drifted": False}
        if ref is None:
            entry["note"] = "the reference"
            return entry
        if not tested:
            entry["note"] = why
            return entry
        entry.update(domain_auc(ref.texts[side], self.texts[side]))
        entry["drifted"] = entry["auc"] is not None and entry["auc"] > t["text_drift_auc"]
        return entry

    def _feedback(self, t: dict[str, Any], has_feedback: bool) -> dict[str, Any]:
        labelled, passed = self.feedback
        out: dict[str, Any] = {"labelled": labelled, "passed_rows": passed,
                               "value": passed / labelled if labelled else None,
                               "min": t["min_feedback_pass_rate"], "min_rows": t["min_feedback_rows"], "passed": None}
        if not has_feedback:
            out["note"] = "no feedback: pass --labels FILE (prediction_id, passed)"
        elif labelled < t["min_feedback_rows"]:
            out["note"] = f"{INSUFFICIENT}: {labelled} labelled calls, fewer than monitoring.min_feedback_rows " \
                          f"({t['min_feedback_rows']})"
        elif t["min_feedback_pass_rate"] is not None:
            out["passed"] = out["value"] >= t["min_feedback_pass_rate"]
        return out


def _ceiling(value: float, limit: float, tested: bool) -> dict[str, Any]:
    return {"value": value, "max": limit, "passed": (value <= limit) if tested else None}


def _summary(x: np.ndarray) -> dict[str, Any]:
    if len(x) == 0:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {"n": int(len(x)), "mean": float(x.mean()), "p50": float(np.quantile(x, 0.5)),
            "p95": float(np.quantile(x, 0.95)), "max": float(x.max())}
