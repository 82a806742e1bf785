"""The blessing as a verdict: re-derived from the evidence, never read from a flag.

`rule` is the one definition of "blessed" (compiler/train.py applies it at compile time).
`derive` recomputes every threshold of the gate recorded in the (signed) manifest from the values in
evidence/evaluation.json and evidence/parity.json; `disagreements` lists every evidence file or
field that says otherwise (manifest.json `blessed`, evidence/blessing.json, each threshold's
`passed` in evidence/evaluation.json). The runtime refuses artefacts whose evidence disagrees.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiops.runtime.evaluation import bound_text, check_bound

RULE = "blessed only when every threshold passes and at least one is set"


def rule(gate_set: bool, passed: Iterable[bool]) -> bool:
    """Blessed: at least one threshold is set in the gate, and every threshold passed."""
    return bool(gate_set) and all(passed)


@dataclass(frozen=True)
class Check:
    kind: str
    name: str
    value: float | None
    bound: str
    passed: bool


@dataclass(frozen=True)
class Verdict:
    blessed: bool
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def derive(gate: dict[str, Any], evaluation: dict[str, Any], parity: dict[str, Any]) -> Verdict:
    checks = []
    metrics = evaluation.get("metrics") or {}
    for name, b in sorted((gate.get("evaluation") or {}).items()):
        v = _num(metrics.get(name))
        checks.append(Check("metric", name, v, bound_text(b), check_bound(v, b)))
    rules = gate.get("slices") or []
    for e in evaluation.get("slices") or []:
        same = [r for r in rules if r["column"] == e.get("column") and r["metric"] == e.get("metric")]
        if len(same) > 1:
            same = [r for r in same if (r.get("min"), r.get("max")) == (e.get("min"), e.get("max"))]
        if not same:
            continue
        r = same[0]
        if int(e.get("rows") or 0) < int(r.get("min_rows") or 0):
            continue
        v = _num(e.get("value"))
        checks.append(Check("slice", f"{r['metric']} where {r['column']} in {e.get('group')}", v, bound_text(r),
                            check_bound(v, r)))
    fairness = evaluation.get("fairness") or []
    for r in gate.get("fairness") or []:
        cls = r.get("positive_class")  # multiclass: one-vs-rest for the class the bound names
        hit = next((f for f in fairness if (f.get("attribute"), f.get("metric")) == (r["attribute"], r["metric"])
                    and (cls is None or str(f.get("positive_class")) == str(cls))), {})
        v = _num(hit.get("value"))
        name = f"{r['metric']} across {r['attribute']}" + (f" for class '{cls}'" if cls is not None else "")
        checks.append(Check("fairness", name, v, bound_text(r), check_bound(v, r)))
    checks.append(Check("parity", "ONNX parity with scikit-learn", None, "within thresholds.parity",
                        parity.get("passed") is True))
    gate_set = bool(gate.get("evaluation") or gate.get("slices") or gate.get("fairness"))
    return Verdict(rule(gate_set, (c.passed for c in checks)), tuple(checks))


def disagreements(v: Verdict, manifest: dict[str, Any], blessing: dict[str, Any],
                  evaluation: dict[str, Any], model_sha256: str | None) -> list[str]:
    """Every place in the evidence that contradicts the re-derived verdict `v`."""
    out = []
    if manifest.get("blessed") is not v.blessed:
        out.append(f"manifest.json says \"blessed\": {_js(manifest.get('blessed'))}")
    if blessing.get("blessed") is not v.blessed:
        out.append(f"evidence/blessing.json says \"blessed\": {_js(blessing.get('blessed'))}")
    if sorted(blessing.get("failed") or []) != sorted(v.failed):
        out.append(f"evidence/blessing.json lists failed: {blessing.get('failed')}, the evidence gives {v.failed}")
    if model_sha256 is not None and blessing.get("model_sha256") != model_sha256:
        out.append("evidence/blessing.json blesses another model (its model_sha256 is not model.onnx's)")
    if evaluation.get("passed") is not v.blessed:
        out.append(f"evidence/evaluation.json says \"passed\": {_js(evaluation.get('passed'))}")
    recorded = {(t.get("kind"), t.get("name")): t.get("passed") for t in evaluation.get("thresholds") or []}
    for c in v.checks:
        got = recorded.pop((c.kind, c.name), "absent")
        if got is not c.passed:
            what = "has no entry" if got == "absent" else f"says \"passed\": {_js(got)}"
            out.append(f"evidence/evaluation.json {what} for {c.name}, but its value "
                       f"{'n/a' if c.value is None else f'{c.value:.4f}'} "
                       f"{'meets' if c.passed else 'does not meet'} {c.bound}")
    for kind, name in recorded:
        out.append(f"evidence/evaluation.json lists a threshold that is not in the manifest's gate: {name}")
    return out


def _js(v: Any) -> str:
    return json.dumps(v)


PROMPT_GATES = ("pass_rate", "json_valid_rate")


def derive_prompts(gates: dict[str, dict[str, Any]], evaluations: dict[str, dict[str, Any]]) -> Verdict:
    """The verdict of a prompt artefact (kind: prompt) by the same `rule`: for each prompt, each of its
    gates (pass_rate, json_valid_rate in [0, 1]) checked against the rate its evaluation evidence
    records. `gates`: prompt -> gate name -> bound; `evaluations`: prompt -> evaluation.json."""
    checks = []
    for prompt, bounds in sorted(gates.items()):
        ev = evaluations.get(prompt) or {}
        for name, b in sorted((bounds or {}).items()):
            v = _num(ev.get(name))
            checks.append(Check("prompt", f"{prompt}: {name}", v, bound_text(b), check_bound(v, b)))
    gate_set = any(bool(b) for b in gates.values()) and bool(gates)
    return Verdict(rule(gate_set and all(bool(b) for b in gates.values()), (c.passed for c in checks)),
                   tuple(checks))
