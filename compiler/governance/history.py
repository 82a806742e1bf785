"""`aiops runs`: the experiment history from the registry (every build and retrain, failed ones
too), a side-by-side comparison, and a small HTML page with the metric history."""
from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiops.runtime.governance.store import RegistryError, Store
from aiops.runtime.governance.subject import registry_location


class RunsFailed(Exception):
    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(head: list[str], rows: list[list[str]]) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(x).ljust(n) for x, n in zip(r, w)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * n for n in w]), *[line(r) for r in rows]])


def load(name: str | None, registry: str | None) -> tuple[Store, list[dict[str, Any]]]:
    try:
        store = Store(registry_location(registry))
        runs = store.runs(name)
    except RegistryError as exc:
        raise RunsFailed(f"error: {exc}") from None
    if not runs:
        raise RunsFailed(f"error: no run{' of ' + name if name else ''} in the registry {store.path}\n"
                         "   = help: 'aiops compile SPEC_DIR' registers every build (give --registry or set "
                         "$AIOPS_REGISTRY for another registry)")
    return store, runs


def show(name: str | None, registry: str | None = None, compare: bool = False, html_out: str | None = None) -> str:
    store, runs = load(name, registry)
    metrics = sorted({m for r in runs for m in r["record"].get("metrics", {})})
    head = ["run", "name", "kind", "stage", "gate", "built by", "parent", "when", *metrics]
    rows = [[r["run_id"], r["name"], r["kind"], r["stage"],
             "passed" if r["blessed"] else ("FAILED" if r["model_sha256"] else r["status"][:40]),
             r["built_by"], r["parent"] or "-", _when(r["created_at"]),
             *[_fmt(r["record"].get("metrics", {}).get(m)) for m in metrics]] for r in runs]
    out = [f"{len(runs)} runs in {store.path}", _table(head, rows)]
    if compare:
        out += ["", compare_table(runs)]
    if html_out:
        Path(html_out).parent.mkdir(parents=True, exist_ok=True)
        Path(html_out).write_text(page(runs, str(store.path)), encoding="utf-8")
        out.append(f"\nwrote {html_out}")
    return "\n".join(out)


def compare_table(runs: list[dict[str, Any]]) -> str:
    """Runs side by side: one column per run, one row per metric, gate and fact."""
    gates = sorted({g["name"] for r in runs for g in r["record"].get("gates", [])})
    metrics = sorted({m for r in runs for m in r["record"].get("metrics", {})})
    facts = [("stage", lambda r: r["stage"]), ("kind", lambda r: r["kind"]), ("parent", lambda r: r["parent"] or "-"),
             ("built by", lambda r: r["built_by"]), ("spec hash", lambda r: str(r["spec_hash"])[:12]),
             ("data sha256", lambda r: str(r["data_sha256"])[:12]),
             ("data rows", lambda r: _fmt((r["record"].get("data") or {}).get("rows_in"))),
             ("model sha256", lambda r: str(r["model_sha256"] or "-")[:12])]
    rows = [[k, *[f(r) for r in runs]] for k, f in facts]
    rows += [[m, *[_fmt(r["record"].get("metrics", {}).get(m)) for r in runs]] for m in metrics]
    for g in gates:
        cells = []
        for r in runs:
            hit = next((x for x in r["record"].get("gates", []) if x["name"] == g), None)
            cells.append("-" if hit is None else ("pass" if hit["passed"] else "FAIL") + f" ({hit['bound']})")
        rows.append([f"gate: {g}", *cells])
    return _table(["", *[r["run_id"] for r in runs]], rows)


def _chart(metric: str, runs: list[dict[str, Any]]) -> str:
    pts = [(i, r["record"]["metrics"][metric]) for i, r in enumerate(runs)
           if isinstance(r["record"].get("metrics", {}).get(metric), (int, float))]
    if not pts:
        return ""
    w, h, pad = 520, 160, 30
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span = (hi - lo) or 1.0
    n = max(len(runs) - 1, 1)
    xy = [(pad + (w - 2 * pad) * i / n, h - pad - (h - 2 * pad) * (v - lo) / span) for i, v in pts]
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{html.escape(runs[i]["run_id"])}: {v:.4f}'
                   f'</title></circle>' for (x, y), (i, v) in zip(xy, pts))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    return (f'<h3>{html.escape(metric)}</h3><svg width="{w}" height="{h}" role="img">'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{line}"/>{dots}'
            f'<text x="2" y="{pad - 8}" font-size="11">{hi:.4f}</text>'
            f'<text x="2" y="{h - 8}" font-size="11">{lo:.4f}</text></svg>')


def page(runs: list[dict[str, Any]], where: str) -> str:
    metrics = sorted({m for r in runs for m in r["record"].get("metrics", {})})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["run", "name", "kind", "stage", "gate", "built by",
                                                            "parent", "when", *metrics])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in [
            r["run_id"], r["name"], r["kind"], r["stage"], "passed" if r["blessed"] else r["status"], r["built_by"],
            r["parent"] or "-", _when(r["created_at"]), *[_fmt(r["record"].get("metrics", {}).get(m))
                                                          for m in metrics]]) + "</tr>" for r in runs)
    charts = "".join(_chart(m, runs) for m in metrics)
    return ("<!doctype html><meta charset=utf-8><title>aiops runs</title>"
            "<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}</style>"
            f"<h1>Runs</h1><p>{len(runs)} runs from the registry {html.escape(where)}, oldest first.</p>"
            f"<table><tr>{head}</tr>{body}</table><h2>Metric history</h2>{charts}")
