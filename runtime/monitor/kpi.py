"""KPI tracking for `aiops monitor`: each KPI of the spec that says how to measure it from
predictions and labels (kpis[i].measure, copied into governance.json at compile) is measured per
window and compared with its baseline and target; a KPI that cannot be measured says why.

Statistics (binary classification; `threshold` defaults to the decision threshold of features.json):
  share_flagged                 share of scored rows whose positive-class score >= threshold
  share_approved                1 - share_flagged
  positive_rate_among_approved  share of positives among labelled rows scored below the threshold
  positive_rate_among_flagged   share of positives among labelled rows scored at or above it
  positive_rate                 share of positives among labelled rows
  mean_score                    mean positive-class score
Labels count only for windows whose labels are mature (monitoring.label_delay_days).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

NEEDS_LABELS = frozenset({"positive_rate_among_approved", "positive_rate_among_flagged", "positive_rate"})
STATISTICS = ("share_flagged", "share_approved", "positive_rate_among_approved", "positive_rate_among_flagged",
              "positive_rate", "mean_score")


class KPITracker:
    def __init__(self, kpis: list[dict[str, Any]], task: str, positive: str | None, threshold: float):
        self.kpis, self.task, self.positive, self.threshold = kpis, task, positive, threshold
        self.acc: dict[int, dict[str, float]] = {}

    @classmethod
    def from_artefacts(cls, root: Path, features: dict[str, Any]) -> KPITracker:
        p = root / "governance.json"
        kpis = json.loads(p.read_text()).get("kpis", []) if p.is_file() else []
        pos = features.get("positive_class")
        return cls(kpis, features.get("task", ""), None if pos is None else str(pos),
                   float(features.get("threshold", 0.5)))

    def _thr(self, k: dict[str, Any]) -> float:
        m = k.get("measure") or {}
        return self.threshold if m.get("threshold") is None else float(m["threshold"])

    def add(self, window: int, score: np.ndarray, scored: np.ndarray, y: np.ndarray | None) -> None:
        """Count one window segment: scores of the rows (NaN when not scored) and labels (None: unknown)."""
        if self.task != "binary_classification" or not self.kpis:
            return
        a = self.acc.setdefault(window, {})
        s = np.where(scored, score, np.nan).astype(np.float64)
        ok = ~np.isnan(s)
        known = np.zeros(len(s), dtype=bool) if y is None else np.array([v is not None for v in y], dtype=bool)
        pos = np.zeros(len(s), dtype=bool) if y is None else np.array([v == self.positive for v in y], dtype=bool)
        for thr in sorted({self._thr(k) for k in self.kpis}):
            flag = ok & (s >= thr)
            appr = ok & (s < thr)
            for key, v in ((f"flagged@{thr}", flag.sum()), (f"approved@{thr}", appr.sum()),
                           (f"pos_approved@{thr}", (appr & known & pos).sum()),
                           (f"lab_approved@{thr}", (appr & known).sum()),
                           (f"pos_flagged@{thr}", (flag & known & pos).sum()),
                           (f"lab_flagged@{thr}", (flag & known).sum())):
                a[key] = a.get(key, 0) + float(v)
        for key, v in (("scored", ok.sum()), ("score_sum", np.nansum(s)), ("labelled", (ok & known).sum()),
                       ("positives", (ok & known & pos).sum())):
            a[key] = a.get(key, 0) + float(v)

    def _value(self, stat: str, a: dict[str, float], thr: float, mature: bool) -> tuple[float | None, str]:
        def share(num: float, den: float, what: str) -> tuple[float | None, str]:
            return (num / den, "") if den else (None, f"no {what} in this window")

        if stat in NEEDS_LABELS and not mature:
            return None, "labels not mature yet (monitoring.label_delay_days)"
        if stat == "share_flagged":
            return share(a.get(f"flagged@{thr}", 0), a.get("scored", 0), "scored rows")
        if stat == "share_approved":
            return share(a.get(f"approved@{thr}", 0), a.get("scored", 0), "scored rows")
        if stat == "mean_score":
            return share(a.get("score_sum", 0), a.get("scored", 0), "scored rows")
        if stat == "positive_rate":
            return share(a.get("positives", 0), a.get("labelled", 0), "labelled rows")
        if stat == "positive_rate_among_approved":
            return share(a.get(f"pos_approved@{thr}", 0), a.get(f"lab_approved@{thr}", 0), "labelled approved rows")
        return share(a.get(f"pos_flagged@{thr}", 0), a.get(f"lab_flagged@{thr}", 0), "labelled flagged rows")

    def result(self, windows: list[tuple[int, dict[str, Any], bool]]) -> list[dict[str, Any]]:
        """Per KPI: measurable or why not, and per window (key, window dict, labels mature) its value and status."""
        out = []
        for k in self.kpis:
            m = k.get("measure")
            base = {"name": k["name"], "baseline": k["baseline"], "target": k["target"], "direction": k["direction"],
                    "unit": k.get("unit", ""), "statistic": (m or {}).get("statistic")}
            if not m:
                out.append({**base, "measurable": False,
                            "why": "the spec does not say how to measure it from predictions and labels "
                                   "(kpis[].measure)", "windows": []})
                continue
            if self.task != "binary_classification":
                out.append({**base, "measurable": False,
                            "why": f"{m['statistic']} needs a binary classifier's scores; the task is {self.task}",
                            "windows": []})
                continue
            thr = self._thr(k)
            rows = []
            for key, w, mature in windows:
                v, why = self._value(m["statistic"], self.acc.get(key, {}), thr, mature)
                rows.append({"window": str(w.get("id", key)), "value": v, "status": status(k, v), "why": why})
            out.append({**base, "measurable": True, "threshold": thr, "needs_labels": m["statistic"] in NEEDS_LABELS,
                        "windows": rows})
        return out


def status(k: dict[str, Any], v: float | None) -> str:
    """on target | better than baseline | at baseline | worse than baseline | not measured"""
    if v is None:
        return "not measured"
    sign = -1.0 if k["direction"] == "decrease" else 1.0
    if sign * (v - k["target"]) >= 0:
        return "on target"
    d = sign * (v - k["baseline"])
    return "better than baseline" if d > 0 else "at baseline" if d == 0 else "worse than baseline"


def _label(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prometheus(model: str, kpis: list[dict[str, Any]]) -> str:
    """The KPIs as Prometheus text exposition (for a textfile collector or a push gateway)."""
    lines = ["# HELP aiops_kpi_measurable 1 when the KPI can be measured from predictions and labels",
             "# TYPE aiops_kpi_measurable gauge"]
    lines += [f'aiops_kpi_measurable{{model="{_label(model)}",kpi="{_label(k["name"])}"}} {int(k["measurable"])}'
              for k in kpis]
    for name, field, help_ in (("aiops_kpi_baseline", "baseline", "the KPI's baseline (spec)"),
                               ("aiops_kpi_target", "target", "the KPI's target (spec)")):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{model="{_label(model)}",kpi="{_label(k["name"])}"}} {float(k[field])!r}' for k in kpis]
    lines += ["# HELP aiops_kpi_value the KPI measured in a monitoring window", "# TYPE aiops_kpi_value gauge"]
    for k in kpis:
        for w in k["windows"]:
            if w["value"] is not None:
                lines.append(f'aiops_kpi_value{{model="{_label(model)}",kpi="{_label(k["name"])}",'
                             f'window="{_label(w["window"])}"}} {float(w["value"])!r}')
    return "\n".join(lines) + "\n"


def summary_lines(kpis: list[dict[str, Any]]) -> list[str]:
    """Console lines, one per KPI (the Prometheus figures are in kpis.prom next to report.json)."""
    out = ["KPIs (also as Prometheus figures in kpis.prom next to report.json):"] if kpis else []
    for k in kpis:
        if not k["measurable"]:
            out.append(f"  kpi {k['name']}: not measurable: {k['why']}")
            continue
        vals = [w for w in k["windows"] if w["value"] is not None]
        last = vals[-1] if vals else None
        out.append(f"  kpi {k['name']} ({k['statistic']}; baseline {k['baseline']:g}, target {k['target']:g}, "
                   f"{k['direction']}): " + (f"{last['value']:.4f} in window {last['window']}, {last['status']}; "
                                             f"{len(vals)} of {len(k['windows'])} windows measured" if last else
                                             f"no window measured ({k['windows'][0]['why'] if k['windows'] else '-'})"))
    return out


def html_table(kpis: list[dict[str, Any]]) -> str:
    import html as H

    if not kpis:
        return ""
    rows = []
    for k in kpis:
        if not k["measurable"]:
            rows.append(f"<tr><td>{H.escape(k['name'])}</td><td colspan=5>not measurable: {H.escape(k['why'])}</td></tr>")
            continue
        for w in k["windows"]:
            v = "n/a" if w["value"] is None else f"{w['value']:.4f}"
            rows.append(f"<tr><td>{H.escape(k['name'])}</td><td>{H.escape(w['window'])}</td><td>{v}</td>"
                        f"<td>{k['baseline']:g}</td><td>{k['target']:g}</td>"
                        f"<td>{H.escape(w['status'] + (': ' + w['why'] if w['why'] else ''))}</td></tr>")
    return ("<h2>KPIs</h2><table><tr><th>KPI</th><th>Window</th><th>Value</th><th>Baseline</th><th>Target</th>"
            "<th>Status</th></tr>" + "".join(rows) + "</table>")
