"""`aiops diff A B`: what changed between two builds (artefact folders or registry runs).

diff(a, b) reads only the artefact files (manifest, evidence, contract, features, serving and
governance policy), so its result depends on nothing else: retrain writes it into the new
artefacts as evidence/diff.json and the compliance document's change history prints it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE = "evidence/diff.json"
TOP = 5


class DiffFailed(Exception):
    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def _load(d: Path, rel: str) -> Any:
    p = d / rel
    return json.loads(p.read_text()) if p.is_file() else None


def folder_of(ref: str, registry: str | None) -> Path:
    if (Path(ref) / "manifest.json").is_file():
        return Path(ref)
    from aiops.runtime.governance.store import RegistryError, Store
    from aiops.runtime.governance.subject import registry_location

    try:
        store = Store(registry_location(registry))
        if not store.path.is_file():  # a lookup creates no registry
            raise RegistryError(f"there is no registry at '{store.path}'")
        run = store.run(ref)
    except RegistryError as exc:
        raise DiffFailed(f"error: '{ref}' is neither an artefact folder (no manifest.json) nor a run: {exc}") from None
    d = Path(run["artefact_dir"] or "")
    if not (d / "manifest.json").is_file():
        raise DiffFailed(f"error: the artefacts of run {run['run_id']} are not at '{d}' any more\n"
                         "   = help: give the artefact folder itself (e.g. an archive in generated/.history/)")
    return d


def _ci(ev: dict, m: str) -> list[float] | None:
    """A metric's confidence interval when the evidence has one ([low, high])."""
    for k in ("confidence_intervals", "intervals", "metrics_ci"):
        c = (ev.get(k) or {}).get(m)
        if isinstance(c, dict) and "low" in c and "high" in c:
            return [c["low"], c["high"]]
        if isinstance(c, (list, tuple)) and len(c) == 2:
            return list(c)
    return None


def _changed(a: dict, b: dict) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _flat(x: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        out: dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: x}


def diff(a: Path, b: Path) -> dict[str, Any]:
    from aiops.runtime.governance.subject import subject

    sa, sb = subject(a), subject(b)
    ma, mb = _load(a, "manifest.json"), _load(b, "manifest.json")
    ea, eb = _load(a, "evidence/evaluation.json") or {}, _load(b, "evidence/evaluation.json") or {}
    da, db = _load(a, "evidence/data.json") or {}, _load(b, "evidence/data.json") or {}
    metrics = [{"metric": m, "a": ea.get("metrics", {}).get(m), "b": eb.get("metrics", {}).get(m),
                "a_ci": _ci(ea, m), "b_ci": _ci(eb, m)}
               for m in sorted(set(ea.get("metrics", {})) | set(eb.get("metrics", {})))]
    ga = {t["name"]: t for t in ea.get("thresholds", [])}
    gb = {t["name"]: t for t in eb.get("thresholds", [])}
    gates = [{"gate": n, "a": _verdict(ga.get(n)), "b": _verdict(gb.get(n)),
              "bound_a": (ga.get(n) or {}).get("bound_text"), "bound_b": (gb.get(n) or {}).get("bound_text")}
             for n in sorted(set(ga) | set(gb), key=lambda n: (n not in ga, list(ga).index(n) if n in ga else 0, n))]
    fa, fb = _load(a, "features.json") or {}, _load(b, "features.json") or {}
    steps_a = {s.get("name"): s for s in fa.get("steps", [])}
    steps_b = {s.get("name"): s for s in fb.get("steps", [])}
    ca = {c["name"]: c for c in (_load(a, "contract.json") or {}).get("columns", [])}
    cb = {c["name"]: c for c in (_load(b, "contract.json") or {}).get("columns", [])}
    ia = {f["name"]: (i, f["mean"]) for i, f in enumerate((_load(a, "evidence/importance.json") or {}).get("features", []))}
    ib = {f["name"]: (i, f["mean"]) for i, f in enumerate((_load(b, "evidence/importance.json") or {}).get("features", []))}
    shifts = sorted(({"feature": n, "rank_a": ia[n][0] + 1 if n in ia else None,
                      "rank_b": ib[n][0] + 1 if n in ib else None,
                      "a": ia.get(n, (0, None))[1], "b": ib.get(n, (0, None))[1]} for n in set(ia) | set(ib)),
                    key=lambda s: (-abs((s["b"] or 0) - (s["a"] or 0)), s["feature"]))[:TOP]
    pol_a = {**_flat({"serving": _load(a, "serving.json") or {}}), **_flat({"governance": _load(a, "governance.json") or {}})}
    pol_b = {**_flat({"serving": _load(b, "serving.json") or {}}), **_flat({"governance": _load(b, "governance.json") or {}})}
    return {
        "a": {**sa, "dir": str(a)}, "b": {**sb, "dir": str(b)},
        "build": _changed({"spec hash": ma["spec"]["hash"], "overrides": ma["spec"]["overrides"],
                           "tool": ma.get("tool"), "python": ma.get("python"), **{f"library {k}": v for k, v in
                                                                                (ma.get("libraries") or {}).items()}},
                          {"spec hash": mb["spec"]["hash"], "overrides": mb["spec"]["overrides"],
                           "tool": mb.get("tool"), "python": mb.get("python"), **{f"library {k}": v for k, v in
                                                                                (mb.get("libraries") or {}).items()}}),
        "data": _changed({k: da.get(k) for k in ("source", "sha256", "rows_in", "accepted", "quarantined")}
                         | {"train rows": (da.get("split") or {}).get("train"), "holdout rows": ea.get("rows")},
                         {k: db.get(k) for k in ("source", "sha256", "rows_in", "accepted", "quarantined")}
                         | {"train rows": (db.get("split") or {}).get("train"), "holdout rows": eb.get("rows")}),
        "metrics": metrics,
        "gates": gates,
        "features": {"added": sorted(set(steps_b) - set(steps_a)), "removed": sorted(set(steps_a) - set(steps_b)),
                     "changed": sorted(n for n in set(steps_a) & set(steps_b) if steps_a[n] != steps_b[n])},
        "contract": {"added": sorted(set(cb) - set(ca)), "removed": sorted(set(ca) - set(cb)),
                     "changed": [{"column": n, "changes": _changed(ca[n], cb[n])} for n in sorted(set(ca) & set(cb))
                                 if ca[n] != cb[n]]},
        "policy": _changed(pol_a, pol_b),
        "importance": shifts,
    }


def _verdict(t: dict | None) -> str | None:
    return None if t is None else f"{'pass' if t['passed'] else 'FAIL'} {t.get('value_text')}"


def _v(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() and abs(x) >= 2 else f"{x:.4f}"
    return str(x)


def _ci_text(ci: list[float] | None) -> str:
    return "" if not ci else f" [{ci[0]:.4f}, {ci[1]:.4f}]"


def lines(d: dict[str, Any]) -> list[str]:
    """The change report as text lines (also what the compliance document prints)."""
    a, b = d["a"], d["b"]
    out = [f"A: run {a['run_id']} ({a['name']} {a['version']}, model {str(a['model_sha256'])[:12]}) {a['dir']}",
           f"B: run {b['run_id']} ({b['name']} {b['version']}, model {str(b['model_sha256'])[:12]}) {b['dir']}",
           "", "metrics (A -> B, change):"]
    for m in d["metrics"]:
        delta = (m["b"] - m["a"]) if isinstance(m["a"], (int, float)) and isinstance(m["b"], (int, float)) else None
        out.append(f"  {m['metric']}: {_v(m['a'])}{_ci_text(m['a_ci'])} -> {_v(m['b'])}{_ci_text(m['b_ci'])}"
                   + (f" ({delta:+.4f})" if delta is not None else ""))
    if not any(m["a_ci"] or m["b_ci"] for m in d["metrics"]):
        out.append("  (the evidence has no confidence intervals)")
    if any(c["key"] in ("holdout rows", "sha256") for c in d["data"]):
        out.append("  (each on its own holdout: for both models on the same rows, see the retrain event in "
                   "evidence/history.json)")
    out.append("gates (A -> B):")
    for g in d["gates"]:
        flag = "  changed" if (g["a"] or "").split(" ")[0] != (g["b"] or "").split(" ")[0] else ""
        bound = g["bound_b"] if g["bound_a"] == g["bound_b"] else f"{g['bound_a'] or '-'} -> {g['bound_b'] or '-'}"
        out.append(f"  {g['gate']} ({bound}): {g['a'] or 'absent'} -> {g['b'] or 'absent'}{flag}")
    for title, key in (("data", "data"), ("build (spec, tool and library versions)", "build"),
                       ("policy (serving.json, governance.json)", "policy")):
        out.append(f"{title}:" + ("" if d[key] else " unchanged"))
        out += [f"  {c['key']}: {_v(c['a'])} -> {_v(c['b'])}" for c in d[key]]
    f = d["features"]
    out.append("features:" + ("" if any(f.values()) else " unchanged"))
    out += [f"  {k}: {', '.join(f[k])}" for k in ("added", "removed", "changed") if f[k]]
    c = d["contract"]
    out.append("contract:" + ("" if any(c.values()) else " unchanged"))
    out += [f"  {k} columns: {', '.join(c[k])}" for k in ("added", "removed") if c[k]]
    for ch in c["changed"]:
        out.append(f"  {ch['column']}: " + "; ".join(f"{x['key']} {_v(x['a'])} -> {_v(x['b'])}" for x in ch["changes"]))
    out.append("top importance shifts (permutation importance, rank and mean drop of score):")
    for s in d["importance"]:
        out.append(f"  {s['feature']}: rank {_v(s['rank_a'])} -> {_v(s['rank_b'])}, {_v(s['a'])} -> {_v(s['b'])}")
    return out


def diff_text(a: str, b: str, registry: str | None = None) -> str:
    return "\n".join(lines(diff(folder_of(a, registry), folder_of(b, registry))))
