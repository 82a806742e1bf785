"""`aiops status ARTEFACT_DIR`: the live governance report of the run in a folder (Markdown).

The compliance document holds what is fixed at compile; this holds what changes after it:
the stage, the approvals (verified now), the production model and the diff to it, and the
run's events from the registry."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from aiops.runtime.governance import approvals as A
from aiops.runtime.governance import identity as I
from aiops.runtime.governance.store import RegistryError, Store
from aiops.runtime.governance.subject import policy, registry_location, subject

from aiops.compiler.governance.history import RunsFailed


def report(folder: str, registry: str | None = None) -> str:
    d = Path(folder)
    if not (d / "manifest.json").is_file():
        raise RunsFailed(f"error: '{d}' has no manifest.json: give an artefact folder, e.g. generated/credit_risk")
    s, pol = subject(d), policy(d)
    try:
        store = Store(registry_location(registry, d))
        run = next((r for r in store.runs(s["name"]) if r["run_id"] == s["run_id"]), None)
        prod = store.production(s["name"])
        events = store.events(run_id=s["run_id"])
    except RegistryError as exc:
        raise RunsFailed(f"error: {exc}") from None
    out = [f"# Governance report: {s['name']} {s['version']}, run {s['run_id']}", "",
           f"- folder: `{d}`; manifest sha256 `{s['manifest_sha256'][:16]}`; registry `{store.path}`",
           f"- stage: **{run['stage'] if run else 'not registered'}**"
           + (f"; built by {run['built_by']}; parent {run['parent'] or '-'}; gate "
              f"{'passed' if run['blessed'] else 'FAILED'}" if run else ""),
           f"- production model of {s['name']}: " + (f"run {prod['run_id']} ({prod['artefact_dir']})" if prod
                                                      else "none")]
    try:
        v = A.verify(d, s, pol, run["built_by"] if run else "")
        out += ["", "## Approvals", "",
                f"{len(v.approvers)} valid of {v.required} required ({', '.join(v.approvers) or 'none'}); "
                f"approvers: {', '.join(pol.get('approvers', []))}"]
        out += [f"- not counted: {p}" for p in v.problems]
    except I.IdentityError as exc:
        out += ["", "## Approvals", "", f"cannot be verified: {exc}"]
    extra = A.evidence_problems(d, pol)
    out += ["", f"High risk evidence: {'; '.join(extra) if extra else 'present and passing'}"
            if pol.get("risk_tier") == "high" else ""]
    out += ["", "## Events", ""]
    out += [f"- {datetime.fromtimestamp(e.at, timezone.utc):%Y-%m-%d %H:%M:%S} {e.kind} by {e.actor}"
            + (f": {e.body.get('from')} -> {e.body.get('to')} ({e.body.get('reason')})" if e.kind == "stage.changed"
               else f": {e.body.get('reason')}" if e.body.get("reason") else "") for e in events] or ["- none"]
    if prod and prod["run_id"] != s["run_id"] and (Path(prod["artefact_dir"] or "") / "manifest.json").is_file():
        from aiops.compiler.governance.diff import diff, lines

        out += ["", f"## Diff from the production model (run {prod['run_id']})", "", "```",
                *lines(diff(Path(prod["artefact_dir"]), d)), "```"]
    return "\n".join(out) + "\n"
