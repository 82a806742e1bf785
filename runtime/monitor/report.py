"""report.html: one self-contained page, plots as inline SVG (matplotlib, Agg).

What a person looks at first: the alerts; drift severity per feature and window (a
heatmap, 1 = at the threshold); reference vs current distribution of each drifted
feature where it drifted most; metrics and label rates over windows; fairness by group;
data quality per window. Built only from report.json (and the profile for bin labels).
Windows with insufficient data (fewer rows than monitoring.min_rows) are left out of every
chart and listed, with their reason, in the page and the windows table.
"""
from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

MAX_DIST_PLOTS = 8
REF, CUR, BAD, OK = "#7f8c9a", "#d9822b", "#c0392b", "#2e86ab"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "aiops-monitor", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 10,
                         "axes.titleweight": "bold", "figure.dpi": 100})
    return plt


def _svg(fig) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


# ------------------------------------------------------------------ figures
INSUFFICIENT = "insufficient data"


def charted(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The windows the charts show: every window except those with insufficient data."""
    return [w for w in report["windows"] if w.get("status") != INSUFFICIENT]


def fig_drift_heatmap(report: dict[str, Any]):
    import numpy as np

    plt = _plt()
    wins = [w for w in charted(report) if w["tested"]]
    cols = sorted({c for w in wins for c, d in w["drift"]["columns"].items() if d.get("tests")})
    rows = cols + ["prediction score", "predicted labels", "actual labels"]
    keys = {"prediction score": "score", "predicted labels": "label", "actual labels": "target"}
    if not wins or not cols:
        return None
    sev = np.full((len(rows), len(wins)), np.nan)
    val = [[""] * len(wins) for _ in rows]
    for j, w in enumerate(wins):
        for i, name in enumerate(rows):
            d = w["prediction"].get(keys[name]) if name in keys else w["drift"]["columns"].get(name)
            if not d or not d.get("tests"):
                continue
            t = max(d["tests"], key=lambda t: t["severity"])
            sev[i, j] = t["severity"]
            val[i][j] = f"{t['value']:.2f}" if t["fires"] == "above" else _p(t["p_adjusted"])
    keep = [i for i in range(len(rows)) if not np.isnan(sev[i]).all()]
    sev, rows, val = sev[keep], [rows[i] for i in keep], [val[i] for i in keep]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.62 * len(wins) + 2.5), 0.36 * len(rows) + 1.4))
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    cmap = LinearSegmentedColormap.from_list("sev", [(0, "#f4f6f8"), (0.499, "#f7d9a8"), (0.5, "#e8a87c"),
                                                     (1.0, "#a51d1d")]).with_extremes(bad="#ffffff")
    im = ax.imshow(np.minimum(sev, 2.0), cmap=cmap, norm=Normalize(0, 2.0), aspect="auto")
    ax.set_xticks(range(len(wins)), [w["id"] for w in wins], rotation=45 if len(wins) > 6 else 0, ha="right"
                  if len(wins) > 6 else "center")
    ax.set_yticks(range(len(rows)), rows)
    if len(wins) <= 24:
        for i in range(len(rows)):
            for j in range(len(wins)):
                if val[i][j]:
                    ax.text(j, i, val[i][j], ha="center", va="center", fontsize=7,
                            color="white" if sev[i, j] >= 1.3 else "#333333")
    for i in range(len(rows)):
        for j in range(len(wins)):
            if sev[i, j] >= 1:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#5a0f0f", lw=1.2))
    cb = fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, ticks=[0, 0.5, 1, 1.5, 2])
    cb.set_label("severity (1 = threshold)")
    cb.ax.set_yticklabels(["0", "0.5", "1", "1.5", "≥2"])
    ax.set_title("Drift per feature and window: the test's value in each cell; boxed = drifted")
    ax.spines[:].set_visible(False)
    return fig


def _p(p: float) -> str:
    return f"p={p:.2f}" if p >= 0.01 else f"p={p:.0e}"


def _bin_labels(edges: list[float]) -> list[str]:
    def f(v: float) -> str:
        return f"{v:.3g}"

    if not edges:
        return ["all"]
    out = [f"≤ {f(edges[0])}"]
    out += [f"({f(a)}, {f(b)}]" for a, b in zip(edges[:-1], edges[1:])]
    out.append(f"> {f(edges[-1])}")
    return out


def fig_distributions(report: dict[str, Any]):
    """Reference vs current shares of each drifted feature, in the window where it drifted most."""
    import numpy as np

    plt = _plt()
    worst: dict[str, tuple[float, str, dict]] = {}
    for w in charted(report):
        for name, d in w["drift"]["columns"].items():
            if d.get("drifted") and "histogram" in d and d["severity"] > worst.get(name, (-1,))[0]:
                worst[name] = (d["severity"], w["id"], d)
        for key, label in (("score", "prediction score"), ("target", "actual labels")):
            d = w["prediction"].get(key)
            if d and d.get("drifted") and "histogram" in d and d["tests"] and \
                    max(t["severity"] for t in d["tests"]) > worst.get(label, (-1,))[0]:
                worst[label] = (max(t["severity"] for t in d["tests"]), w["id"], d)
    if not worst:
        return None
    names = sorted(worst, key=lambda n: (-worst[n][0], n))[:MAX_DIST_PLOTS]
    ncol = min(2, len(names))
    nrow = (len(names) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.6 * ncol, 2.7 * nrow), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        sev, wid, d = worst[name]
        h = d["histogram"]
        labels = _bin_labels(h["edges"]) if "edges" in h else h["categories"]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, h["reference"], 0.4, color=REF, label="reference (training)")
        ax.bar(x + 0.2, h["current"], 0.4, color=CUR, label=f"current ({wid})")
        ax.set_xticks(x, labels, rotation=35 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center",
                      fontsize=7)
        t = max(d["tests"], key=lambda t: t["severity"])
        stat = f"{t['test']} {t['value']:.3f}" if t["fires"] == "above" else f"{t['test']} {_p(t['p_adjusted'])}"
        ax.set_title(f"{name} — {wid} ({stat})")
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def fig_performance(report: dict[str, Any]):
    plt = _plt()
    wins = charted(report)
    metrics = sorted({k for w in wins for k in w["performance"]["metrics"]})
    ids = [w["id"] for w in wins]
    rate_pred = [_pos_share(w["prediction"].get("label"), report) for w in wins]
    rate_true = [_pos_share(w["prediction"].get("target"), report) for w in wins]
    has_rates = any(v is not None for v in rate_pred + rate_true)
    n = len(metrics) + (1 if has_rates else 0)
    if n == 0:
        return None
    fig, axes = plt.subplots(1, n, figsize=(max(5.5, 0.45 * len(ids) + 2.5) * min(n, 2) / (1 if n == 1 else 1.3),
                                            3.0), squeeze=False)
    x = list(range(len(ids)))
    for ax, name in zip(axes[0], metrics):
        vals = [w["performance"]["metrics"].get(name, {}).get("value") for w in wins]
        m0 = next((w["performance"]["metrics"][name] for w in wins if name in w["performance"]["metrics"]), {})
        pts = [(i, v) for i, v in zip(x, vals) if v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=OK, label=name)
            for i, v in pts:
                ok = m0.get("min") is None or v >= m0["min"]
                ax.plot(i, v, "o", color=OK if ok else BAD, ms=6)
        if m0.get("min") is not None:
            ax.axhline(m0["min"], color=BAD, ls="--", lw=1, label=f"floor {m0['min']}")
        if m0.get("max") is not None:
            ax.axhline(m0["max"], color=BAD, ls="--", lw=1, label=f"ceiling {m0['max']}")
        if m0.get("reference") is not None:
            ax.axhline(m0["reference"], color=REF, ls=":", lw=1.2, label=f"at evaluation {m0['reference']:.3f}")
        pending = [i for i, w in zip(x, wins) if not w["labels"]["mature"] and w["labels"]["available"]]
        for i in pending:
            ax.axvspan(i - 0.4, i + 0.4, color="#eeeeee")
        _shade_training(ax, wins)
        ax.set_xticks(x, ids, rotation=45 if len(ids) > 6 else 0, ha="right" if len(ids) > 6 else "center")
        ax.set_title(f"{name} per window" + (" (grey: labels pending)" if pending else ""))
        ax.legend(fontsize=7, frameon=False, loc="best")
    if has_rates:
        ax = axes[0][-1]
        ref = _ref_pos_share(report)
        ax.plot(x, [v if v is not None else float("nan") for v in rate_true], "o-", color=CUR,
                label="actual positive share")
        ax.plot(x, [v if v is not None else float("nan") for v in rate_pred], "s--", color=OK,
                label="predicted positive share")
        if ref is not None:
            ax.axhline(ref, color=REF, ls=":", lw=1.2, label=f"training {ref:.3f}")
        _shade_training(ax, wins)
        ax.set_xticks(x, ids, rotation=45 if len(ids) > 6 else 0, ha="right" if len(ids) > 6 else "center")
        ax.set_title(f"share of {report['model']['target']} = {report['model']['positive_class']} per window")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _shade_training(ax, wins: list[dict]) -> None:
    idx = [i for i, w in enumerate(wins) if w.get("period") == "training"]
    if idx:
        ax.axvspan(min(idx) - 0.5, max(idx) + 0.5, color="#e3eef7", zorder=0, label="training period (in-sample)")


def _pos_share(d: dict | None, report: dict) -> float | None:
    pos = report["model"]["positive_class"]
    if not d or pos is None or not d.get("current_shares"):
        return None
    return d["current_shares"].get(str(pos), 0.0)


def _ref_pos_share(report: dict) -> float | None:
    pos = report["model"]["positive_class"]
    for w in report["windows"]:
        d = w["prediction"].get("target")
        if d and d.get("reference_shares"):
            return d["reference_shares"].get(str(pos))
    return None


GROUP_FIGURE = {  # metric -> (the per-group figure it compares, its name in the chart)
    "demographic_parity_difference": ("selection_rate", "share predicted positive"),
    "disparate_impact_ratio": ("selection_rate", "share predicted positive"),
    "equal_opportunity_difference": ("tpr", "true positive rate"),
    "mean_prediction_difference": ("mean_prediction", "mean prediction"),
    "mean_absolute_error_difference": ("mean_absolute_error", "mean absolute error"),
    "bounded_group_loss": ("mean_absolute_error", "mean absolute error"),
}


def fig_fairness(report: dict[str, Any]):
    plt = _plt()
    wins = charted(report)
    rules = wins[0]["fairness"] if wins else []
    if not rules:
        return None
    ids = [w["id"] for w in wins]
    x = list(range(len(ids)))
    fig, axes = plt.subplots(len(rules), 2, figsize=(11, 2.8 * len(rules)), squeeze=False)
    for r, rule in enumerate(rules):
        ax = axes[r][0]
        field, what = GROUP_FIGURE[rule["metric"]]
        if rule.get("positive_class") is not None:
            what += f" (class '{rule['positive_class']}' against the rest)"
        groups = sorted({g for w in wins for g in w["fairness"][r]["groups"]})
        for g in groups:  # a group below the minimum rows of its window is not plotted there
            ys = [(w["fairness"][r]["groups"].get(g) or {}) for w in wins]
            ys = [d.get(field) if d.get("included", True) else None for d in ys]
            ax.plot(x, [v if v is not None else float("nan") for v in ys], "o-", ms=3, label=str(g)[:24])
        ax.set_title(f"{rule['attribute']}: {what}, by group (groups with enough rows)")
        ax.set_xticks(x, ids, rotation=45 if len(ids) > 6 else 0, ha="right" if len(ids) > 6 else "center", fontsize=7)
        ax.legend(fontsize=7, frameon=False, ncol=2)
        ax = axes[r][1]
        vals = [w["fairness"][r]["value"] for w in wins]
        ax.plot(x, [v if v is not None else float("nan") for v in vals], "o-", color=OK)
        for i, w in zip(x, wins):
            f = w["fairness"][r]
            if f["passed"] is False:
                ax.plot(i, f["value"], "o", color=BAD, ms=7)
        if rule.get("min") is not None:
            ax.axhline(rule["min"], color=BAD, ls="--", lw=1, label=f"min {rule['min']}")
        if rule.get("max") is not None:
            ax.axhline(rule["max"], color=BAD, ls="--", lw=1, label=f"max {rule['max']}")
        ax.set_title(f"{rule['metric']} across {rule['attribute']}")
        ax.set_xticks(x, ids, rotation=45 if len(ids) > 6 else 0, ha="right" if len(ids) > 6 else "center", fontsize=7)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """name -> matplotlib figure (None when there is nothing to plot)."""
    return {"drift": fig_drift_heatmap(report), "distributions": fig_distributions(report),
            "performance": fig_performance(report), "fairness": fig_fairness(report)}


# ------------------------------------------------------------------ page
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;
 padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:13px} table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
td,th{border-bottom:1px solid #e5e5e5;padding:4px 10px;text-align:left;vertical-align:top} th{background:#f6f7f9}
.num{text-align:right;font-variant-numeric:tabular-nums} .bad{color:#b02a2a;font-weight:600} .ok{color:#2f7d32}
.status{display:inline-block;padding:3px 10px;border-radius:4px;color:#fff;font-weight:600}
.status.alert{background:#c0392b} .status.ok{background:#2f7d32} svg{max-width:100%;height:auto}
.note{color:#666;font-size:12px}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.2%}"


def render_html(report: dict[str, Any]) -> str:
    m, s, src, job = report["model"], report["summary"], report["source"], report["job"]
    figs = {k: (_svg(f) if f is not None else None) for k, f in figures(report).items()}
    w = job["window"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Monitoring report: {_e(m['name'])} {_e(m['version'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Monitoring report: {_e(m['name'])} {_e(m['version'])} "
        f"<span class='status {'alert' if s['alerts'] else 'ok'}'>{'ALERT' if s['alerts'] else 'OK'}</span></h1>",
        f"<p class='meta'>{src['rows']:,} rows from <code>{_e(src['path'])}</code> ({_e(src['kind'])}); "
        f"{s['windows']} windows by {_e(w['by'])} ({_e(w['size'])}{' of ' + _e(w['column']) if w['column'] else ''}); "
        f"labels: {_e(src['labels']['source'] or 'none')}"
        + (f", counted for windows ending {job['label_delay_days']} day(s) before {_e(job['as_of'])}"
           if job["as_of"] else "")
        + f"; drift p-values corrected by {_e(job['drift_correction'])}. Model manifest "
          f"<code>{_e(m['manifest_sha256'][:16])}</code>.</p>",
        "<h2>Alerts</h2>", _alerts_table(report),
    ]
    left_out = [w for w in report["windows"] if w.get("status") == INSUFFICIENT]
    if left_out:
        parts.append(f"<p class='note'>{len(left_out)} window(s) with insufficient data are left out of the charts "
                     f"(no drift test, no fairness figure, no alert): "
                     + "; ".join(f"{_e(w['id'])} ({_e(w.get('reason', ''))})" for w in left_out[:12])
                     + (f"; … and {len(left_out) - 12} more" if len(left_out) > 12 else "") + ".</p>")
    if figs["drift"]:
        parts += ["<h2>Drift per feature</h2>",
                  "<p class='note'>Each cell: the test's value for that feature and window (p-values for ks and "
                  "chi_square, after correction). Colour: severity, 1 at the spec's threshold; boxed cells fired.</p>",
                  figs["drift"]]
    if figs["distributions"]:
        parts += ["<h2>Reference vs current, where each drifted feature drifted most</h2>", figs["distributions"]]
    if figs["performance"]:
        parts += ["<h2>Performance and label rates over windows</h2>", figs["performance"]]
    if figs["fairness"]:
        parts += ["<h2>Fairness by group over windows</h2>", figs["fairness"]]
    from aiops.runtime.monitor.kpi import html_table

    parts.append(html_table(report.get("kpis") or []))
    parts += ["<h2>Data quality per window</h2>", _quality_table(report), "<h2>Windows</h2>", _windows_table(report),
              f"<p class='note'>report.json holds every number shown here (report_schema {report['report_schema']}). "
              f"Exit code {report['exit_code']}.</p></body></html>"]
    return "\n".join(parts) + "\n"


def _alerts_table(report: dict[str, Any]) -> str:
    alerts = report["alerts"]
    if not alerts:
        return "<p class='ok'>No alert: every check is within the spec's bounds.</p>"
    rows = "".join(f"<tr><td>{_e(a['window'])}</td><td>{_e(a['kind'])}</td><td>{_e(a['subject'])}</td>"
                   f"<td>{_e(a['message'])}</td><td>{_e(a['action'])}</td></tr>" for a in alerts[:200])
    more = f"<p class='note'>… and {len(alerts) - 200} more in alerts.json</p>" if len(alerts) > 200 else ""
    return ("<table><tr><th>window</th><th>kind</th><th>subject</th><th>what</th><th>action</th></tr>"
            + rows + "</table>" + more)


def _quality_table(report: dict[str, Any]) -> str:
    head = ("<tr><th>window</th><th class='num'>rows</th><th class='num'>breaking the contract</th>"
            "<th>worst null rate</th><th>worst out of range</th><th>worst unseen categories</th></tr>")
    body = []
    for w in report["windows"]:
        c = w["data_quality"]["checks"]

        def cell(key: str) -> str:
            v = c[key]
            txt = _pct(v["value"]) + (f" ({_e(v['column'])})" if v.get("column") and v["value"] else "")
            return f"<td class='{'' if v['passed'] else 'bad'}'>{txt}</td>"

        sv = c["schema_violation_rate"]
        body.append(f"<tr><td>{_e(w['id'])}</td><td class='num'>{w['rows']:,}</td>"
                    f"<td class='num {'' if sv['passed'] else 'bad'}'>{_pct(sv['value'])}</td>"
                    + cell("null_rate") + cell("out_of_range_rate") + cell("unseen_category_rate") + "</tr>")
    return "<table>" + head + "".join(body) + "</table>"


def _windows_table(report: dict[str, Any]) -> str:
    head = ("<tr><th>window</th><th>from</th><th>to</th><th>period</th><th class='num'>rows</th><th>status</th>"
            "<th>drifted features</th><th>performance</th><th>labels</th></tr>")
    body = []
    for w in report["windows"]:
        perf = ", ".join(f"{k} {v['value']:.3f}" for k, v in w["performance"]["metrics"].items()
                         if v["value"] is not None) or _e(w["performance"].get("note", ""))
        lab = ("mature" if w["labels"]["mature"] else "pending") if w["labels"]["available"] else "none"
        body.append(f"<tr><td>{_e(w['id'])}</td><td>{_e(w['start'])}</td><td>{_e(w['end'])}</td>"
                    f"<td>{_e(w.get('period') or '')}</td>"
                    f"<td class='num'>{w['rows']:,}</td><td>{_e(w.get('status', 'tested'))}</td>"
                    f"<td>{_e(', '.join(w['drift']['drifted']) or '-')}</td>"
                    f"<td>{perf}</td><td>{lab}</td></tr>")
    return "<table>" + head + "".join(body) + "</table>"


def write_html(report: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(report), encoding="utf-8")
    return path
