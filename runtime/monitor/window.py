"""One monitoring window: its accumulators (filled chunk by chunk) and its verdicts.

A window is a calendar day, ISO week or month of the window column (time windows), or
`size` consecutive rows (row windows). `Window.result()` turns the counts into the
window's section of report.json; `runtime.monitor` turns failed checks into alerts.
"""
from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np

from aiops.runtime.monitor import drift as D
from aiops.runtime.evaluation import INSUFFICIENT
from aiops.runtime.monitor.stats import CategorySketch, Fairness, NumericSketch, Performance

EPOCH = date(1970, 1, 1)


# ------------------------------------------------------------------ window keys
def window_keys(days: np.ndarray, size: str) -> np.ndarray:
    """Integer key of each row's window (-1 without a time): the day, the Monday of the
    ISO week, or months since 1970-01."""
    keys = np.full(len(days), -1, dtype=np.int64)
    ok = ~np.isnan(days)
    d = days[ok].astype(np.int64)
    if size == "day":
        keys[ok] = d
    elif size == "week":
        keys[ok] = d - (d + 3) % 7  # 1970-01-01 was a Thursday; Monday starts the week
    elif size == "month":
        keys[ok] = d.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    else:
        raise ValueError(f"window size must be day, week or month. Got {size!r} instead.")
    return keys


def window_span(key: int, by: str, size: Any) -> tuple[str, str, str, int | None]:
    """(id, start, end, end as days since epoch or None); time windows end exclusive."""
    if by == "rows":
        return f"rows {key * size + 1}-{(key + 1) * size}", str(key * size + 1), str((key + 1) * size), None
    if size == "month":
        start = np.datetime64(key, "M").astype("datetime64[D]")
        end = np.datetime64(key + 1, "M").astype("datetime64[D]")
        return str(np.datetime64(key, "M")), str(start), str(end), int(end.astype(np.int64))
    first = EPOCH + timedelta(days=int(key))
    if size == "week":
        y, w, _ = first.isocalendar()
        return f"{y}-W{w:02d}", first.isoformat(), (first + timedelta(days=7)).isoformat(), int(key) + 7
    return first.isoformat(), first.isoformat(), (first + timedelta(days=1)).isoformat(), int(key) + 1


# ------------------------------------------------------------------ accumulators
class Window:
    def __init__(self, key: int, job: dict[str, Any], profile: dict[str, Any], tested: list[str],
                 categorical_known: dict[str, frozenset], classes: tuple[str, ...], positive: str | None):
        self.key = key
        self.job = job
        self.rows = 0
        self.bad_rows = 0
        self.last_day = -math.inf
        self.columns: dict[str, np.ndarray] = {}  # name -> [present rows, nulls, violations, out of range, unseen]
        self.sketches: dict[str, NumericSketch | CategorySketch] = {}
        for name in tested:
            ref = profile["columns"][name]
            self.sketches[name] = NumericSketch(ref) if ref["kind"] == "numeric" else CategorySketch(ref["counts"])
        self.known = categorical_known
        pred = profile["prediction"]
        self.regression = job["task"] == "regression"
        self.score = NumericSketch(pred["value"] if self.regression else pred["score"])
        self.labels = None if self.regression else CategorySketch(pred["labels"])
        tgt = profile["target"]
        self.target = NumericSketch(tgt) if tgt["kind"] == "numeric" else CategorySketch(tgt["counts"])
        self.perf = Performance(job["task"], classes, positive)
        self.fairness = [Fairness(rule.get("positive_class") or positive, self.regression) for rule in job["fairness"]]
        self.scored = 0

    def add_data(self, rows: np.ndarray, checked: dict, bad: np.ndarray, days: np.ndarray | None) -> None:
        """The chunk's rows `rows` (indices) that fall in this window: quality and column sketches."""
        n = len(rows)
        self.rows += n
        self.bad_rows += int(bad[rows].sum())
        if days is not None:
            d = days[rows]
            if (~np.isnan(d)).any():
                self.last_day = max(self.last_day, float(np.nanmax(d)))
        for name, c in checked.items():
            acc = self.columns.setdefault(name, np.zeros(5, dtype=np.int64))
            acc[0] += n
            acc[1] += int(c.null[rows].sum())
            acc[2] += int(c.bad[rows].sum())
            acc[3] += int(c.out_of_range[rows].sum())
            if c.unseen is not None:
                acc[4] += int(c.unseen[c.idx[rows]].sum())
            sk = self.sketches.get(name)
            if sk is None:
                continue
            if isinstance(sk, NumericSketch):
                sk.add(c.values[rows])
            elif c.uniq is not None:
                sk.add_counts(c.uniq, np.bincount(c.idx[rows], minlength=len(c.uniq)))
            else:
                sk.add(np.array([None if v is None else str(v) for v in c.values[rows].tolist()], dtype=object))

    def add_outputs(self, rows: np.ndarray, out: dict[str, np.ndarray], scored: np.ndarray, score: np.ndarray,
                    y: np.ndarray | None, groups: list[np.ndarray | None]) -> None:
        """The same rows' model outputs, labels and fairness groups."""
        s = scored[rows]
        self.scored += int(s.sum())
        self.score.add(score[rows][s])
        if self.labels is not None:
            self.labels.add(out["label"][rows][s])
        sub = {k: v[rows][s] for k, v in out.items()}
        ys = y[rows][s] if y is not None else None
        for f, g in zip(self.fairness, groups):
            if g is not None:
                f.add(g[rows][s], sub, ys)
        if y is None:
            return
        yl = y[rows]  # labels as strings (classes) or floats (regression), None where missing
        has = yl != None  # noqa: E711 (element-wise on an object array)
        if isinstance(self.target, NumericSketch):
            self.target.add(np.where(has, yl, np.nan).astype(np.float64))
        else:
            self.target.add(yl)
        lab = has[s]
        self.perf.add(ys[lab], {k: v[lab] for k, v in sub.items()})

    # -------------------------------------------------------------- verdicts
    def result(self, mature: bool, has_labels: bool, reference_metrics: dict) -> dict:
        job = self.job
        wid, start, end, _ = window_span(self.key, job["window_by"], job["window_size"])
        if job["window_by"] == "rows":  # the last window may be short; rows numbered from 1, end included
            end = str(int(start) + self.rows - 1)
            wid = f"rows {start}-{end}"
        enough = self.rows >= job["min_window_rows"]
        return {
            "id": wid, "start": start, "end": end, "period": self._period(start, end), "rows": self.rows,
            "scored_rows": self.scored,
            **({} if enough else {"status": INSUFFICIENT,
                                  "reason": f"{self.rows} rows, fewer than monitoring.min_rows "
                                            f"({job['min_window_rows']}): reported, not tested"}),
            "tested": enough, "labels": {"available": has_labels, "mature": mature, "labelled_rows": self.perf.n},
            "data_quality": self._quality(),
            "drift": self._drift() if enough else {"columns": {}, "drifted": [], "note": "too few rows to test"},
            "prediction": self._prediction(mature and has_labels, enough),
            "performance": self._performance(mature, has_labels, reference_metrics),
            "fairness": self._fairness(mature and has_labels, enough),
        }

    def _period(self, start: str, end: str) -> str | None:
        """Where a time window sits against the training data: 'training' (the reference
        profile's rows), 'evaluation' (the holdout), 'later', or 'mixed'."""
        ref = self.job.get("reference_period")
        if not ref or self.job["window_by"] != "time" or self.job["window_column"] != ref["column"]:
            return None
        if end <= ref["train_until"]:
            return "training"
        if ref.get("evaluation_until") and start >= ref["train_until"] and end <= ref["evaluation_until"]:
            return "evaluation"
        if start >= (ref.get("evaluation_until") or ref["train_until"]):
            return "later"
        return "mixed"

    def _quality(self) -> dict[str, Any]:
        dq = self.job["data_quality"]
        cols = {}
        for name, (present, nulls, viol, rng, unseen) in sorted(self.columns.items()):
            known = name in self.known
            cols[name] = {"null_rate": nulls / present if present else 0.0,
                          "violation_rate": viol / present if present else 0.0,
                          "out_of_range_rate": rng / present if present else 0.0,
                          "unseen_category_rate": (unseen / (present - nulls)) if known and present > nulls else None}
        rate = self.bad_rows / self.rows if self.rows else 0.0
        checks = {"schema_violation_rate": {"value": rate, "max": dq["max_schema_violation_rate"],
                                            "passed": rate <= dq["max_schema_violation_rate"]}}
        for key, limit in (("null_rate", "max_null_rate"), ("out_of_range_rate", "max_out_of_range_rate"),
                           ("unseen_category_rate", "max_unseen_category_rate")):
            rated = {k: v[key] for k, v in cols.items() if v[key] is not None}
            over = sorted(k for k, v in rated.items() if v > dq[limit])
            worst = max(rated, key=lambda k: (rated[k], k), default=None)
            checks[key] = {"value": rated[worst] if worst else 0.0, "column": worst, "max": dq[limit],
                           "columns": over, "passed": not over}
        return {"checks": checks, "columns": cols, "passed": all(c["passed"] for c in checks.values())}

    def _drift(self) -> dict[str, Any]:
        job = self.job
        by_name = {c["name"]: c for c in job["columns"]}
        results: dict[str, dict[str, Any]] = {}
        p_slots: list[tuple[str, int]] = []
        for name, sk in self.sketches.items():
            if sk.n < job["min_window_rows"]:
                results[name] = {"rows": sk.n, "tests": [], "drifted": False, "severity": 0.0,
                                 "note": "too few values to test"}
                continue
            tests = []
            for t in by_name[name]["tests"]:
                r = sk.test(t["test"])
                tests.append({"test": r.test, "value": r.value, "p_value": r.p_value, "p_adjusted": None,
                              "threshold": t["threshold"], "fires": t["fires"]})
                if r.p_value is not None:
                    p_slots.append((name, len(tests) - 1))
            results[name] = {"rows": sk.n, "tests": tests, "summary": sk.summary()}
        adjusted = D.correct([results[n]["tests"][i]["p_value"] for n, i in p_slots], job["drift_correction"])
        for (n, i), p in zip(p_slots, adjusted):
            results[n]["tests"][i]["p_adjusted"] = p
        for name, r in results.items():
            if "note" in r:
                continue
            for t in r["tests"]:
                t["drifted"] = D.drifted(t["test"], t["value"], t["p_adjusted"], t["threshold"])
                t["severity"] = severity(t)
            r["drifted"] = any(t["drifted"] for t in r["tests"])
            r["severity"] = max((t["severity"] for t in r["tests"]), default=0.0)
            if r["drifted"]:
                r["histogram"] = self.sketches[name].histogram()
        drifted = sorted(n for n, r in results.items() if r["drifted"])
        return {"columns": dict(sorted(results.items())), "drifted": drifted, "correction": job["drift_correction"],
                "p_value_tests": len(p_slots)}

    def _prediction(self, labels_ok: bool, enough: bool) -> dict[str, Any]:
        job = self.job
        out: dict[str, Any] = {}
        rule = job["prediction_score"]
        items = [("score", self.score, [rule] if rule else [])]
        if self.labels is not None:
            items.append(("label", self.labels, job["prediction_label"]))
        target_rules = job["prediction_label"] if not self.regression else ([rule] if rule else [])
        if labels_ok:
            items.append(("target", self.target, target_rules))
        for key, sk, rules in items:
            entry: dict[str, Any] = {"rows": sk.n, "summary": sk.summary(), "tests": []}
            if isinstance(sk, CategorySketch):
                keys, ref, cur = sk.aligned()
                entry["reference_shares"] = dict(zip(keys, (ref / ref.sum()).tolist())) if ref.sum() else {}
                entry["current_shares"] = dict(zip(keys, (cur / cur.sum()).tolist())) if cur.sum() else {}
            if enough and sk.n >= job["min_window_rows"]:
                for t in rules:
                    r = sk.test(t["test"])
                    res = {"test": r.test, "value": r.value, "p_value": r.p_value, "p_adjusted": r.p_value,
                           "threshold": t["threshold"], "fires": t["fires"]}
                    res["drifted"] = D.drifted(r.test, r.value, r.p_value, t["threshold"])
                    res["severity"] = severity(res)
                    entry["tests"].append(res)
            entry["drifted"] = any(t["drifted"] for t in entry["tests"])
            if entry["drifted"]:
                entry["histogram"] = sk.histogram()
            out[key] = entry
        return out

    def _performance(self, mature: bool, has_labels: bool, reference: dict) -> dict[str, Any]:
        job = self.job
        out: dict[str, Any] = {"labelled_rows": self.perf.n, "metrics": {}}
        if not has_labels:
            out["note"] = "no labels: pass --labels, or include the target column"
            return out
        if not mature:
            out["note"] = (f"labels not considered yet: the window ends less than {job['label_delay_days']} "
                           "day(s) before the end of the data (label_delay_days)")
            return out
        need = job.get("min_labelled_rows", job["min_window_rows"])
        evaluated = self.perf.n >= need and self.rows >= job["min_window_rows"]
        if not evaluated:
            out["note"] = (f"{INSUFFICIENT}: {self.perf.n} labelled rows, fewer than monitoring.min_labelled_rows "
                           f"({need})" if self.perf.n < need else f"{INSUFFICIENT}: the window has too few rows")
        for m in job["performance"]:
            v, why = self.perf.measure(m["metric"]) if evaluated else (None, out["note"])
            passed = None if v is None else not ((m["min"] is not None and v < m["min"]) or
                                                 (m["max"] is not None and v > m["max"]))
            out["metrics"][m["metric"]] = {"value": v, "min": m["min"], "max": m["max"], "passed": passed,
                                           "status": "passed" if passed else "failed" if passed is False else
                                           INSUFFICIENT,
                                           **({"reason": why.removeprefix(INSUFFICIENT + ": ")} if v is None else {}),
                                           "reference": reference.get(m["metric"])}
        out["positive_rate"] = self.perf.positive_rate()
        return out

    def _fairness(self, labels_ok: bool, enough: bool) -> list[dict[str, Any]]:
        out = []
        for rule, f in zip(self.job["fairness"], self.fairness):
            use = (labels_ok or not rule["needs_labels"]) and enough
            r = f.evaluate(rule["metric"], self.job["min_group_rows"], labels_ok) if use else \
                {"value": None, "groups": {}, "reason": "needs labels; not available yet" if enough else
                 "the window has fewer rows than monitoring.min_rows"}
            v = r["value"]
            passed = None if v is None else not ((rule["min"] is not None and v < rule["min"]) or
                                                 (rule["max"] is not None and v > rule["max"]))
            out.append({"attribute": rule["attribute"], "metric": rule["metric"], "value": v, "min": rule["min"],
                        "max": rule["max"], "passed": passed, "groups": r["groups"],
                        "status": "passed" if passed else "failed" if passed is False else INSUFFICIENT,
                        **({"positive_class": rule["positive_class"]} if rule.get("positive_class") else {}),
                        **({"reason": r.get("reason")} if v is None else {}),
                        **({} if use else {"note": r["reason"]})})
        return out


MAX_SEVERITY = 1000.0


def severity(t: dict[str, Any]) -> float:
    """How far past its threshold a test is, 1 at the threshold: value / threshold, or for
    p-value tests log(p) / log(threshold) (p = threshold^2 gives 2); at most 1000."""
    if t["fires"] == "below":
        p = t["p_adjusted"] if t["p_adjusted"] is not None else t["p_value"]
        if p is None:
            return 0.0
        if p <= 0:
            return MAX_SEVERITY
        return float(min(MAX_SEVERITY, math.log(p) / math.log(t["threshold"])))
    if t["threshold"] <= 0:
        return MAX_SEVERITY if t["value"] > 0 else 0.0
    return float(min(MAX_SEVERITY, t["value"] / t["threshold"]))
