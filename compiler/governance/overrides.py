"""Accountable overrides: a command-line override that loosens a threshold is found here, shown
at compile as a warning with the spec's bound and the effective bound, needs --override-reason
on a high risk tier, and is written to evidence/overrides.json for the compliance document.

Loosening: a lower `min` or a higher `max` (or one removed) of an evaluation metric, a slice
or a fairness bound; a slice or fairness bound removed; a higher slice `min_rows`; a higher
parity tolerance or fewer edge rows; a higher data.max_rejected_share. The spec's bound is the
spec composed with the same config-group choices but without the value overrides.
"""
from __future__ import annotations

from typing import Any

FILE = "evidence/overrides.json"
WATCHED = ("thresholds", "data.max_rejected_share")


def _key(ov: str) -> str:
    return ov.split("=", 1)[0].lstrip("+~")


def _touches(ov: str) -> bool:
    k = _key(ov)
    return any(k == w or k.startswith(w + ".") or k.startswith(w + "[") for w in WATCHED)


def _lo(spec_v, eff_v) -> bool:  # a lower bound (min) loosened
    return spec_v is not None and (eff_v is None or eff_v < spec_v)


def _hi(spec_v, eff_v) -> bool:  # an upper bound (max, tolerance) loosened
    return spec_v is not None and (eff_v is None or eff_v > spec_v)


def _entry(gate: str, key: str, spec_v, eff_v, ovs: list[str], what: str) -> dict[str, Any]:
    mine = [o for o in ovs if _key(o).startswith(gate) or gate.startswith(_key(o))]
    return {"gate": gate, "key": key, "what": what, "spec": spec_v, "effective": eff_v, "overrides": mine or ovs}


def _bounds(gate: str, s: dict, e: dict | None, ovs: list[str], what: str) -> list[dict[str, Any]]:
    out = []
    for b, loose in (("min", _lo), ("max", _hi)):
        ev = None if e is None else e.get(b)
        if loose(s.get(b), ev):
            out.append(_entry(gate, f"{gate}.{b}", s.get(b), ev, ovs, what))
    return out


def loosened(spec_cfg: dict[str, Any], eff_cfg: dict[str, Any], ovs: list[str]) -> list[dict[str, Any]]:
    """Every threshold `eff_cfg` loosens against `spec_cfg` (both composed configs)."""
    st, et = spec_cfg.get("thresholds") or {}, eff_cfg.get("thresholds") or {}
    out: list[dict[str, Any]] = []
    for m, b in sorted((st.get("evaluation") or {}).items()):
        out += _bounds(f"thresholds.evaluation.{m}", b or {}, (et.get("evaluation") or {}).get(m), ovs, m)
    eff_sl = list(et.get("slices") or [])
    for i, s in enumerate(st.get("slices") or []):
        e = next((x for x in eff_sl if x.get("column") == s.get("column") and x.get("metric") == s.get("metric")),
                 None)
        what = f"{s.get('metric')} per {s.get('column')} slice"
        g = f"thresholds.slices[{i}]"
        if e is None:
            out.append(_entry(g, g, "set", None, ovs, what + " (removed)"))
            continue
        out += _bounds(g, s, e, ovs, what)
        if _hi(s.get("min_rows"), e.get("min_rows")):
            out.append(_entry(g, f"{g}.min_rows", s.get("min_rows"), e.get("min_rows"), ovs, what + " min_rows"))
    eff_fa = list(et.get("fairness") or [])
    for i, f in enumerate(st.get("fairness") or []):
        e = next((x for x in eff_fa if x.get("attribute") == f.get("attribute") and x.get("metric") == f.get("metric")),
                 None)
        what = f"{f.get('metric')} across {f.get('attribute')}"
        g = f"thresholds.fairness[{i}]"
        if e is None:
            out.append(_entry(g, g, "set", None, ovs, what + " (removed)"))
            continue
        out += _bounds(g, f, e, ovs, what)
    sp, ep = st.get("parity") or {}, et.get("parity") or {}
    for k in sorted(sp):
        if k == "edge_rows":
            if _lo(sp[k], ep.get(k)):
                out.append(_entry("thresholds.parity", f"thresholds.parity.{k}", sp[k], ep.get(k), ovs, "parity edge rows"))
        elif isinstance(sp[k], (int, float)) and _hi(sp[k], ep.get(k)):
            out.append(_entry("thresholds.parity", f"thresholds.parity.{k}", sp[k], ep.get(k), ovs, f"parity {k}"))
    sd, ed = (spec_cfg.get("data") or {}).get("max_rejected_share"), (eff_cfg.get("data") or {}).get("max_rejected_share")
    if _hi(sd, ed):
        out.append(_entry("data.max_rejected_share", "data.max_rejected_share", sd, ed, ovs, "max rejected share"))
    return out


def find(loaded) -> list[dict[str, Any]]:
    """The loosened thresholds of a composed spec (compiler.load.Loaded)."""
    ovs = [o for o in loaded.overrides if _touches(o)]
    if not ovs:
        return []
    from aiops.compiler.load import load

    base, _ = load(loaded.spec_dir, [o for o in loaded.overrides if o not in ovs])
    if base is None:  # the overrides are what makes it compose: compare with nothing
        return []
    return loosened(base.config, loaded.config, ovs)


def show(v: Any) -> str:
    return "none" if v is None else str(v)


def warning_lines(found: list[dict[str, Any]]) -> list[str]:
    return [f"warning: a command-line override loosens {f['key']} ({f['what']}): the spec says {show(f['spec'])}, "
            f"the effective bound is {show(f['effective'])} ({', '.join(f['overrides'])})" for f in found]


def evidence(found: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
    return {"loosened": found, "reason": reason or None,
            "rule": "a command-line override that loosens a threshold is recorded here; on a high risk tier it "
                    "needs --override-reason"}


def status_note(ov: dict[str, Any] | None) -> str:
    """The sentence the compliance summary adds when thresholds were loosened ('' when none)."""
    if not ov or not ov.get("loosened"):
        return ""
    items = "; ".join(f"{f['key']} {show(f['effective'])} (the spec says {show(f['spec'])})" for f in ov["loosened"])
    n = len(ov["loosened"])
    return (f" {n} bound{'s were' if n > 1 else ' was'} loosened by a command-line override: {items}; reason: "
            f"{ov.get('reason') or '(none given)'}.")


def gate_columns(ov: dict[str, Any] | None, rows: list[tuple]) -> tuple[tuple[str, ...], list[tuple]]:
    """The compliance gate table: with loosened thresholds, the spec's bound and the reason beside
    the effective bound. rows: (kind, name, value, bound, result, source key cell)."""
    head = ("Kind", "Threshold", "Value", "Bound", "Result", "Source")
    if not ov or not ov.get("loosened"):
        return head, rows
    out = []
    for r in rows:
        src = r[5].text
        hit = [f for f in ov["loosened"] if f["gate"] == src]
        spec_b = "; ".join(f"{f['key'].removeprefix(src).lstrip('.') or 'bound'} {show(f['spec'])}" for f in hit)
        why = (ov.get("reason") or "(none given)") if hit else ""
        out.append((*r[:4], spec_b or "same", why or "-", *r[4:]))
    return ("Kind", "Threshold", "Value", "Effective bound", "Spec bound", "Override reason", "Result", "Source"), out
