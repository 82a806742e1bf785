"""Alerts from the windows' verdicts, the run's summary, and the webhook payload.

One alert per failed check: {kind, window, subject, test, value, bound, action, message},
`kind` being data_quality, drift, prediction_drift, performance or fairness and `action`
what `monitoring.actions` asks for that kind (alert, retrain, block).
"""
from __future__ import annotations

from typing import Any

from aiops.runtime.evaluation import bound_text

ACTION_OF = {"data_quality": "data_quality", "drift": "drift", "prediction_drift": "drift",
             "performance": "performance", "fairness": "fairness"}
PREDICTION = {"score": "prediction score", "label": "predicted labels", "target": "actual labels"}


def collect_alerts(job: dict[str, Any], results: list[dict], totals: dict) -> list[dict[str, Any]]:
    act = job["actions"]
    dq = job["data_quality"]
    alerts: list[dict[str, Any]] = []

    def add(kind: str, window: str, subject: str, value: Any, bound: str, message: str, test: str | None = None):
        alerts.append({"kind": kind, "window": window, "subject": subject, "test": test, "value": value,
                       "bound": bound, "action": act[ACTION_OF[kind]], "message": message})

    if totals["rows"] and totals["unassigned"] / totals["rows"] > dq["max_schema_violation_rate"]:
        share = totals["unassigned"] / totals["rows"]
        add("data_quality", "(all)", job["window_column"] or "", share, f"<= {dq['max_schema_violation_rate']}",
            f"{totals['unassigned']} rows ({share:.1%}) have no usable '{job['window_column']}' and fit no window")
    for r in results:
        wid = r["id"]
        for key, c in r["data_quality"]["checks"].items():
            if c["passed"]:
                continue
            for col in c.get("columns") or [None]:
                v = r["data_quality"]["columns"][col][key] if col else c["value"]
                add("data_quality", wid, col or "rows", v, f"<= {c['max']}",
                    f"{key.replace('_', ' ')} {v:.2%}" + (f" in '{col}'" if col else "") + f" (max {c['max']:.2%})")
        for col, d in r["drift"]["columns"].items():
            for t in d["tests"]:
                if t["drifted"]:
                    add("drift", wid, col, t["value"], bound(t), drift_message(col, t), t["test"])
        for key, p in r["prediction"].items():
            for t in p["tests"]:
                if t["drifted"]:
                    add("prediction_drift", wid, key, t["value"], bound(t), drift_message(PREDICTION[key], t),
                        t["test"])
        labelled = r["performance"]["labelled_rows"]
        for name, m in r["performance"]["metrics"].items():
            if m["passed"] is False:
                ref = f"; {m['reference']:.4f} at evaluation" if m.get("reference") is not None else ""
                add("performance", wid, name, m["value"], bound_text(m),
                    f"{name} {m['value']:.4f} on {labelled} labelled rows (needs {bound_text(m)}{ref})")
        for f in r["fairness"]:
            if f["passed"] is False:
                add("fairness", wid, f["attribute"], f["value"], bound_text(f),
                    f"{f['metric']} across {f['attribute']} {f['value']:.4f} (needs {bound_text(f)})", f["metric"])
    return alerts


def bound(t: dict) -> str:
    return f"p >= {t['threshold']}" if t["fires"] == "below" else f"<= {t['threshold']}"




def drift_message(what: str, t: dict) -> str:
    if t["fires"] == "below":
        return f"{what}: {t['test']} p = {t['p_adjusted']:.2e} after correction (alerts below {t['threshold']})"
    return f"{what}: {t['test']} {t['value']:.3f} (alerts above {t['threshold']})"


def summary(results: list[dict], alerts: list[dict]) -> dict[str, Any]:
    by_kind: dict[str, int] = {}
    for a in alerts:
        by_kind[a["kind"]] = by_kind.get(a["kind"], 0) + 1
    drifted: dict[str, list[str]] = {}
    for r in results:
        for col in r["drift"]["drifted"]:
            drifted.setdefault(col, []).append(r["id"])
    actions = sorted({a["action"] for a in alerts})
    alerted = {a["window"] for a in alerts}
    return {"windows": len(results), "alerts": len(alerts), "alerts_by_kind": dict(sorted(by_kind.items())),
            "drifted_columns": dict(sorted(drifted.items())),
            "windows_with_alerts": [w for w in ["(all)"] + [r["id"] for r in results] if w in alerted],
            "actions": actions, "status": "alert" if alerts else "ok",
            "insufficient_windows": [r["id"] for r in results if r.get("status") == "insufficient data"],
            "retrain": "retrain" in actions, "block": "block" in actions}


def payload(report: dict[str, Any]) -> dict[str, Any]:
    """What the webhook receives."""
    return {"model": report["model"], "status": report["summary"]["status"], "summary": report["summary"],
            "alerts": report["alerts"]}
