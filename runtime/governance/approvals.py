"""Approval records: signed JSON files in <artefact folder>/approvals/, and their verification.

A record binds one approver (the trusted name of the key that signed it) to one run: its run
id and the sha256 of its manifest.json (so every artefact file, evidence included). The
manifest does not list approvals/ (they are added after compile); they are verified here, on
their own, against the keys the deployment trusts ($AIOPS_TRUSTED_KEYS).

Rules for production (one implementation, used by `aiops promote` and by serve/score in
production mode): approvals_required valid approvals from distinct approvers listed in
governance.approvers, none of them the run's author; a high risk tier also needs the fairness
and explanation evidence present and passing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiops.runtime.governance import identity as I

DIR = "approvals"
SCHEMA = 1


@dataclass
class Verdict:
    approvers: list[str] = field(default_factory=list)  # distinct, valid, counted
    problems: list[str] = field(default_factory=list)  # records not counted, and why
    required: int = 0

    @property
    def enough(self) -> bool:
        return len(self.approvers) >= self.required


def file_name(run_id: str, approver: str) -> str:
    return f"{run_id}-{re.sub(r'[^A-Za-z0-9_.-]', '_', approver)}.json"


def body(subject: dict[str, Any], approver: str, reason: str, at: str, signed: bool) -> dict[str, Any]:
    return {"approval_schema": SCHEMA, "run_id": subject["run_id"], "name": subject["name"],
            "manifest_sha256": subject["manifest_sha256"], "model_sha256": subject["model_sha256"],
            "spec_hash": subject["spec_hash"], "data_sha256": subject["data_sha256"],
            "approver": approver, "reason": reason, "at": at, "signed": signed}


def load(folder: str | Path) -> list[tuple[str, dict[str, Any] | None]]:
    """(file name, record or None when unreadable) for every approvals/*.json."""
    d = Path(folder) / DIR
    out: list[tuple[str, dict[str, Any] | None]] = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
            out.append((p.name, rec if isinstance(rec, dict) else None))
        except (OSError, ValueError):
            out.append((p.name, None))
    return out


def verify(folder: str | Path, subject: dict[str, Any], policy: dict[str, Any], author: str,
           insecure_dev: bool = False) -> Verdict:
    """Which approvals of `folder` count for the run `subject` under `policy`."""
    v = Verdict(required=int(policy.get("approvals_required", 1)))
    listed = list(policy.get("approvers") or [])
    trusted = I.trusted_keys()
    for name, rec in load(folder):
        if rec is None:
            v.problems.append(f"{DIR}/{name}: not a JSON approval record")
            continue
        if rec.get("run_id") != subject["run_id"] or rec.get("manifest_sha256") != subject["manifest_sha256"]:
            v.problems.append(f"{DIR}/{name}: approves run {rec.get('run_id')}, not these artefacts "
                              f"(run {subject['run_id']}, manifest sha256 {subject['manifest_sha256'][:12]})")
            continue
        if rec.get("signature"):
            if trusted is None:
                v.problems.append(f"{DIR}/{name}: signed, but ${I.TRUSTED_ENV} is not set, so no key is trusted")
                continue
            try:
                who = I.signer(rec, trusted)
            except I.IdentityError as exc:
                v.problems.append(f"{DIR}/{name}: {exc}")
                continue
            if who != rec.get("approver"):
                v.problems.append(f"{DIR}/{name}: says approver '{rec.get('approver')}' but is signed by '{who}'")
                continue
        elif insecure_dev:
            who = str(rec.get("approver"))
        else:
            v.problems.append(f"{DIR}/{name}: unsigned (recorded with --insecure-dev); production needs approvals "
                              f"signed by keys in ${I.TRUSTED_ENV}")
            continue
        if who == author:
            v.problems.append(f"{DIR}/{name}: '{who}' built this run and cannot approve it")
        elif who not in listed:
            v.problems.append(f"{DIR}/{name}: '{who}' is not a listed approver ({', '.join(listed) or 'none'})")
        elif who in v.approvers:
            v.problems.append(f"{DIR}/{name}: '{who}' already approved this run; approvers must be distinct")
        else:
            v.approvers.append(who)
    return v


def evidence_problems(folder: str | Path, policy: dict[str, Any]) -> list[str]:
    """A high risk tier's extra evidence, read from the artefact folder (see check_evidence)."""
    if policy.get("risk_tier") != "high":
        return []
    d = Path(folder)
    try:
        ev = json.loads((d / "evidence" / "evaluation.json").read_text())
    except (OSError, ValueError):
        return ["evidence/evaluation.json is missing or unreadable"]
    try:
        imp = json.loads((d / "evidence" / "importance.json").read_text())
    except (OSError, ValueError):
        imp = None
    return check_evidence(ev, imp, policy)


def check_evidence(evaluation: dict[str, Any], importance: dict[str, Any] | None,
                   policy: dict[str, Any]) -> list[str]:
    """The rule: fairness measured and passing; explanations present, by the spec's method, measured."""
    if policy.get("risk_tier") != "high":
        return []
    out = []
    fair = [t for t in evaluation.get("thresholds", []) if t.get("kind") == "fairness"]
    if not fair:
        out.append("no fairness evidence: evidence/evaluation.json has no fairness threshold (thresholds.fairness)")
    out += [f"fairness failed: {t['name']} {t.get('value_text')} (needs {t.get('bound_text')})"
            for t in fair if not t.get("passed")]
    method = (policy.get("explainability") or {}).get("method")
    if importance is None:
        out.append("no explanation evidence: evidence/importance.json is missing or unreadable")
    elif not importance.get("features"):
        out.append("evidence/importance.json explains no feature")
    elif method and importance.get("method") != method:
        out.append(f"evidence/importance.json uses {importance.get('method')}, the spec asks for {method}")
    elif importance.get("baseline_score") is None or importance["baseline_score"] != importance["baseline_score"]:
        out.append("evidence/importance.json has no baseline score: the explanation was not measured")
    return out
