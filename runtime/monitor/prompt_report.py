"""report.html of a prompt monitoring run: the page layout, style and alert table of the tabular
report (runtime/monitor/report.py), with the prompt figures: text drift AUC over windows,
guardrail / refusal / error rates and JSON validity / feedback pass rates over windows, and
reference vs current length distributions. Built only from report.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aiops.runtime.monitor.report import BAD, CSS, CUR, OK, REF, _alerts_table, _bin_labels, _e, _plt, _pct, _svg, \
    charted


def _ticks(ax, ids: list[str]) -> None:
    ax.set_xticks(range(len(ids)), ids, rotation=45 if len(ids) > 6 else 0, ha="right" if len(ids) > 6 else "center",
                  fontsize=7)


def fig_text_drift(report: dict[str, Any], prompt: str):
    wins = [w for w in charted(report) if prompt in w["prompts"]]
    series = {}
    for side in report["job"]["thresholds"]["text_drift_on"]:
        series[side] = [w["prompts"][prompt]["text_drift"].get(side, {}).get("auc") for w in wins]
    if not any(v is not None for s in series.values() for v in s):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.5, 0.45 * len(wins) + 2.5), 2.8))
    x = list(range(len(wins)))
    for (side, vals), colour in zip(series.items(), (OK, CUR)):
        ax.plot(x, [v if v is not None else float("nan") for v in vals], "o-", color=colour, label=f"{side} texts")
    thr = report["job"]["thresholds"]["text_drift_auc"]
    ax.axhline(thr, color=BAD, ls="--", lw=1, label=f"alert above {thr}")
    ax.axhline(0.5, color=REF, ls=":", lw=1, label="0.5: indistinguishable")
    ax.set_ylim(0.3, 1.02)
    _ticks(ax, [w["id"] for w in wins])
    ax.set_title(f"{prompt}: text drift, domain classifier AUC (reference vs window)")
    ax.legend(fontsize=7, frameon=False)
    return fig


def fig_rates(report: dict[str, Any], prompt: str):
    wins = [w for w in charted(report) if prompt in w["prompts"]]
    if not wins:
        return None
    plt = _plt()
    xs = [w["prompts"][prompt] for w in wins]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.0), squeeze=False)
    x = list(range(len(wins)))
    ax = axes[0][0]
    low = {f"guard {g}": [p["guardrails"].get(g, {}).get("value") for p in xs]
           for g in sorted({g for p in xs for g in p["guardrails"]})}
    low["refusals"] = [p["refusal"]["value"] for p in xs]
    low["errors"] = [p["errors"]["value"] for p in xs]
    for name, vals in low.items():
        ax.plot(x, [v if v is not None else float("nan") for v in vals], "o-", ms=3, label=name)
    fails = [(i, c["value"]) for i, p in enumerate(xs) for c in list(p["guardrails"].values())
             + [p["refusal"], p["errors"]] if c["passed"] is False]
    for i, v in fails:
        ax.plot(i, v, "o", color=BAD, ms=7, fillstyle="none")
    _ticks(ax, [w["id"] for w in wins])
    ax.set_title(f"{prompt}: guardrail hit, refusal and error rates (red ring: over its maximum)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax = axes[0][1]
    high = {"JSON valid": [p["json_validity"]["value"] if p["json_validity"] else None for p in xs],
            "feedback pass": [p["feedback"]["value"] for p in xs]}
    for (name, vals), colour in zip(high.items(), (OK, CUR)):
        ax.plot(x, [v if v is not None else float("nan") for v in vals], "o-", color=colour, label=name)
    t = report["job"]["thresholds"]
    ax.axhline(t["min_json_valid_rate"], color=OK, ls="--", lw=1, label=f"JSON min {t['min_json_valid_rate']}")
    if t["min_feedback_pass_rate"] is not None:
        ax.axhline(t["min_feedback_pass_rate"], color=CUR, ls="--", lw=1,
                   label=f"feedback min {t['min_feedback_pass_rate']}")
    ax.set_ylim(-0.02, 1.02)
    _ticks(ax, [w["id"] for w in wins])
    ax.set_title(f"{prompt}: JSON validity and feedback pass rate")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def fig_lengths(report: dict[str, Any], prompt: str):
    """Reference vs current shares of each length, in the window where it drifted most (or the last tested)."""
    import numpy as np

    best: dict[str, tuple[float, str, dict]] = {}
    for w in charted(report):
        x = w["prompts"].get(prompt)
        for m, d in (x or {}).get("lengths", {}).items():
            if "histogram" in d and (d["value"] or 0.0) >= best.get(m, (-1.0,))[0]:
                best[m] = (d["value"] or 0.0, w["id"], d)
    if not best:
        return None
    plt = _plt()
    names = sorted(best)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 2.7), squeeze=False)
    for ax, m in zip(axes[0], names):
        _, wid, d = best[m]
        h = d["histogram"]
        labels = _bin_labels(h["edges"])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, h["reference"], 0.4, color=REF, label="reference")
        ax.bar(x + 0.2, h["current"], 0.4, color=BAD if d["drifted"] else CUR, label=wid)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=6)
        ax.set_title(f"{m} ({d['test']} {d['value']:.2f})", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def render_html(report: dict[str, Any]) -> str:
    m, s, src, job = report["model"], report["summary"], report["source"], report["job"]
    w = job["window"]
    refs = "; ".join(f"{_e(p)}: {_e(r['source'])} ({r['rows']} calls)" for p, r in sorted(job["reference"].items()))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Monitoring report: {_e(m['name'])} {_e(m['version'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Monitoring report: {_e(m['name'])} {_e(m['version'])} (prompts) "
        f"<span class='status {'alert' if s['alerts'] else 'ok'}'>{'ALERT' if s['alerts'] else 'OK'}</span></h1>",
        f"<p class='meta'>{src['rows']:,} prompt calls from <code>{_e(src['path'])}</code>; {s['windows']} windows by "
        f"{_e(w['by'])} ({_e(w['size'])}); reference: {refs}; feedback: "
        f"{src['labels']['rows_with_label']} labelled calls. Manifest <code>{_e(m['manifest_sha256'][:16])}</code>.</p>",
        "<h2>Alerts</h2>", _alerts_table(report),
    ]
    left_out = [x for x in report["windows"] if x.get("status") == "insufficient data"]
    if left_out:
        parts.append(f"<p class='note'>{len(left_out)} window(s) with insufficient data are left out of the charts: "
                     + "; ".join(f"{_e(x['id'])} ({_e(x.get('reason', ''))})" for x in left_out[:12]) + ".</p>")
    for p in m["prompts"]:
        figs = [(t, f) for t, f in (("Text drift", fig_text_drift(report, p)), ("Rates", fig_rates(report, p)),
                                    ("Lengths: reference vs current", fig_lengths(report, p))) if f is not None]
        parts.append(f"<h2>Prompt {_e(p)}</h2>")
        parts += [f"<h3>{_e(t)}</h3>" + _svg(f) for t, f in figs]
        parts.append(_table(report, p))
    parts.append(f"<p class='note'>report.json holds every number shown here (report_schema "
                 f"{report['report_schema']}). Exit code {report['exit_code']}.</p></body></html>")
    return "\n".join(parts) + "\n"


def _table(report: dict[str, Any], prompt: str) -> str:
    head = ("<tr><th>window</th><th class='num'>calls</th><th>status</th><th>input AUC</th><th>output AUC</th>"
            "<th>refusals</th><th>errors</th><th>JSON valid</th><th>worst guard</th><th>feedback pass</th></tr>")
    body = []
    for w in report["windows"]:
        x = w["prompts"].get(prompt)
        if x is None:
            continue

        def auc(side: str) -> str:
            d = x["text_drift"].get(side) or {}
            return f"<td class='{'bad' if d.get('drifted') else ''}'>" + (
                f"{d['auc']:.3f}" if d.get("auc") is not None else _e(d.get("note", ""))) + "</td>"

        def rate(c: dict | None) -> str:
            return "<td></td>" if c is None else \
                f"<td class='num {'bad' if c['passed'] is False else ''}'>{_pct(c['value'])}</td>"

        g = max(x["guardrails"].items(), key=lambda kv: (kv[1]["value"], kv[0]), default=None)
        guard = "<td></td>" if g is None else \
            f"<td class='{'bad' if g[1]['passed'] is False else ''}'>{_e(g[0])} {_pct(g[1]['value'])}</td>"
        fb = x["feedback"]
        fbt = f"{_pct(fb['value'])} of {fb['labelled']}" if fb["value"] is not None else _e(fb.get("note", ""))
        body.append(f"<tr><td>{_e(w['id'])}</td><td class='num'>{x['rows']:,}</td>"
                    f"<td>{'reference' if x.get('reference') else _e(x.get('status', 'tested'))}</td>"
                    + auc("input") + auc("output") + rate(x["refusal"]) + rate(x["errors"]) + rate(x["json_validity"])
                    + guard + f"<td class='{'bad' if fb['passed'] is False else ''}'>{fbt}</td></tr>")
    return "<table>" + head + "".join(body) + "</table>"


def write_html(report: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(report), encoding="utf-8")
    return path
