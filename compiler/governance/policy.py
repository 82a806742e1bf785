"""governance.json, written into the artefacts at compile (so covered by the manifest and its
signature): the approval policy that `aiops promote` and production mode apply, and where
the registry is. Production mode reads the policy from here, never from the registry."""
from __future__ import annotations

from typing import Any

from aiops.compiler.plan import Plan, jsonable


def policy_doc(plan: Plan) -> dict[str, Any]:
    g = plan.governance
    return {"name": plan.name, "owner": g.owner, "approvers": list(g.approvers),
            "approvals_required": int(g.approvals_required), "risk_tier": g.risk_tier,
            "explainability": jsonable(g.explainability), "registry": plan.env.registry,
            "approvals": "approvals/*.json, signed by keys in $AIOPS_TRUSTED_KEYS; not listed in manifest.json",
            "kpis": [{k: jsonable(getattr(kpi, k)) for k in ("name", "baseline", "target", "direction", "unit", "measure")}
                     for kpi in plan.kpis]}
