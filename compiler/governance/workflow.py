"""`aiops approve` and `aiops promote`, and the registry side of `aiops rollback`.

Every refusal is a GovernanceFailed with a message naming what, where and the fix (exit 2).
The production rule itself (distinct listed approvers, not the author, enough of them, high-risk
evidence) is runtime/governance/approvals.py, shared with serve and score in production mode.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiops.runtime.governance import approvals as A
from aiops.runtime.governance import identity as I
from aiops.runtime.governance.store import STAGES, RegistryError, Store, record_event
from aiops.runtime.governance.subject import policy, registry_location, subject

# the stage moves `aiops promote` makes; archived -> production is `aiops rollback`'s
MOVES = {"candidate": ("staging", "production", "archived"), "staging": ("production", "archived", "candidate"),
         "production": ("archived",), "archived": ("candidate",)}


class GovernanceFailed(Exception):
    def __init__(self, text: str, code: int = 2):
        super().__init__(text)
        self.text = text
        self.code = code


def _error(summary: str, where: str, *notes: str, help: str | None = None) -> GovernanceFailed:
    lines = [f"error: {summary}", f"  --> {where}", *[f"   = {n}" for n in notes if n]]
    if help:
        lines.append(f"   = help: {help}")
    return GovernanceFailed("\n".join(lines))


def resolve(ref: str, registry: str | None = None) -> tuple[Store, dict[str, Any]]:
    """A run named by id (or unique prefix) or by an artefact folder that holds it."""
    folder = Path(ref)
    try:
        if (folder / "manifest.json").is_file():
            store = Store(registry_location(registry, folder))
            return store, store.run(subject(folder)["run_id"])
        store = Store(registry_location(registry))
        return store, store.run(ref)
    except RegistryError as exc:
        raise _error(str(exc), ref, help="compile or retrain registers every run; 'aiops runs' lists them") from None


def _folder(run: dict[str, Any]) -> Path:
    """The run's artefact folder, checked against its manifest and against the run's hashes."""
    from aiops.runtime.artefacts import ArtefactError, verify

    d = Path(run["artefact_dir"] or "")
    if not run["artefact_dir"] or not (d / "manifest.json").is_file():
        raise _error(f"the artefacts of run {run['run_id']} are not at '{d}' any more", "registry (artefact_dir)",
                     f"run {run['run_id']} is {run['status']}",
                     help="restore the folder (aiops rollback, or compile the spec again)")
    try:
        verify(d, require_blessed=False)
    except ArtefactError as exc:
        raise _error(f"the artefacts of run {run['run_id']} do not verify", str(d), *str(exc).splitlines()) from None
    now = subject(d)
    if now["run_id"] != run["run_id"] or now["manifest_sha256"] != run["manifest_sha256"]:
        raise _error(f"run {run['run_id']} is stale: '{d}' now holds run {now['run_id']}", str(d / "manifest.json"),
                     f"run {run['run_id']}: model {str(run['model_sha256'])[:12]}, now: model "
                     f"{str(now['model_sha256'])[:12]}", help=f"approve or promote run {now['run_id']} instead")
    return d


def _stale(run: dict[str, Any], d: Path) -> list[str]:
    """How the spec or the data changed since the run was built (empty when neither did)."""
    import hashlib

    from aiops.compiler.check import check

    m = json.loads((d / "manifest.json").read_text())
    out = []
    spec_dir = m["spec"]["dir"]
    if not Path(spec_dir).is_dir():
        return [f"the spec folder '{spec_dir}' is not here any more"]
    loaded, _spec, diags = check(spec_dir, list(m["spec"]["overrides"]))
    if loaded is None or any(x.is_error for x in diags):
        out.append(f"the spec in {spec_dir} does not check any more")
    elif loaded.spec_hash != run["spec_hash"]:
        out.append(f"the spec changed: spec hash now {loaded.spec_hash[:16]}, the run's {run['spec_hash'][:16]}")
    src = Path(m["data"]["source"])
    if not src.is_file():
        out.append(f"the data file '{src}' is not here any more")
    elif hashlib.sha256(src.read_bytes()).hexdigest() != run["data_sha256"]:
        out.append(f"the data changed: {src} has sha256 {hashlib.sha256(src.read_bytes()).hexdigest()[:16]}, the "
                   f"run's {run['data_sha256'][:16]}")
    return out


def _who(insecure_dev: bool) -> I.Identity:
    if not I.keys_configured():
        if not insecure_dev:
            raise _error("no key is configured, so an approval cannot be tied to an identity",
                         f"${I.KEY_ENV} / ${I.KEY_FILE_ENV} and ${I.TRUSTED_ENV}",
                         help=f"set ${I.KEY_ENV} to your Ed25519 seed and ${I.TRUSTED_ENV} to the deployment's "
                              "trusted-keys file; --insecure-dev records an unsigned approval by the OS user, which "
                              "production mode refuses")
        print("warning: --insecure-dev: approving unsigned, as the OS user; production mode will refuse this "
              "approval", file=sys.stderr)
    try:
        return I.current(require_trusted=I.keys_configured())
    except I.IdentityError as exc:
        raise _error(str(exc), f"${I.KEY_ENV} / ${I.TRUSTED_ENV}") from None


def approve(ref: str, reason: str, registry: str | None = None, insecure_dev: bool = False) -> dict[str, Any]:
    store, run = resolve(ref, registry)
    rid = run["run_id"]
    where = f"run {rid} ({run['name']} {run['version']})"
    if not reason.strip():
        raise _error("--reason is empty", "command line", help="say what you reviewed and why you approve")
    if not run["blessed"]:
        failed = [f"{g['name']}: {g['bound']}" for g in run["record"].get("gates", []) if not g["passed"]]
        raise _error(f"refusing the approval: run {rid} failed its gate", where,
                     f"failed: {'; '.join(failed) or run['status']}",
                     help="a model that failed its gate cannot be approved; fix the model or the data and rebuild")
    who = _who(insecure_dev)  # who approves, before anything is read on their behalf
    d = _folder(run)
    stale = _stale(run, d)
    if stale:
        raise _error(f"refusing the approval: run {rid} is stale (the spec or data changed since it was built)",
                     where, *stale, help="compile the spec again and approve the new run")
    pol = policy(d)
    listed = list(pol.get("approvers") or [])
    if who.name == run["built_by"]:
        raise _error(f"refusing the approval: '{who.name}' built run {rid} and cannot approve it", where,
                     "an approval must come from someone other than the run's author",
                     help=f"ask a listed approver ({', '.join(listed)}) to approve")
    if who.name not in listed:
        raise _error(f"refusing the approval: '{who.name}' is not a listed approver", where,
                     f"governance.approvers: {', '.join(listed) or '(none)'}",
                     help="ask a listed approver, or change governance.approvers in the spec (a new run)")
    s = subject(d)
    if A.verify(d, s, pol, run["built_by"], insecure_dev=True).approvers.count(who.name) or any(
            e.body.get("approver") == who.name for e in store.events(run_id=rid, kinds=("approval.recorded",))):
        raise _error(f"refusing the approval: '{who.name}' already approved run {rid}", where,
                     f"approvals must come from {pol.get('approvals_required', 1)} distinct approvers",
                     help=f"ask another listed approver ({', '.join(a for a in listed if a != who.name)})")
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rec = A.body(s, who.name, reason.strip(), at, who.signed)
    if who.signed:
        rec["signature"] = I.sign(rec)
    p = d / A.DIR / A.file_name(rid, who.name)
    p.parent.mkdir(exist_ok=True)
    p.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    record_event(store.path, "approval.recorded", run["name"], rid, who.name, {**rec, "file": str(p)})
    v = A.verify(d, s, pol, run["built_by"], insecure_dev=insecure_dev)
    return {"record": rec, "file": p, "approvers": v.approvers, "required": v.required}


def promote(ref: str, to: str, registry: str | None = None, reason: str = "", insecure_dev: bool = False,
            rollback: bool = False) -> dict[str, Any]:
    store, run = resolve(ref, registry)
    rid, now = run["run_id"], run["stage"]
    where = f"run {rid} ({run['name']} {run['version']}, {now})"
    if to not in STAGES:
        raise _error(f"unknown stage '{to}'", "--to", f"stages: {', '.join(STAGES)}")
    if to == now:
        raise _error(f"run {rid} is already in {to}", where)
    if to not in MOVES[now] and not (rollback and to == "production"):
        raise _error(f"run {rid} cannot move from {now} to {to}", where,
                     f"from {now}: {', '.join(MOVES[now]) or 'no move'}"
                     + ("; an archived model returns to production only by 'aiops rollback'" if now == "archived"
                        else ""))
    approvers: list[str] = []
    if to in ("staging", "production"):
        if not run["blessed"]:
            raise _error(f"refusing to promote run {rid} to {to}: it failed its gate", where,
                         f"status: {run['status']}")
        d = _folder(run)
    if to == "production":
        pol = policy(d)
        try:
            v = A.verify(d, subject(d), pol, run["built_by"], insecure_dev=insecure_dev)
        except I.IdentityError as exc:
            raise _error(f"refusing to promote run {rid} to production: {exc}", f"${I.TRUSTED_ENV}") from None
        extra = A.evidence_problems(d, pol)
        if not v.enough or extra:
            head = (f"refusing to promote run {rid} to production: it has {len(v.approvers)} valid approval(s) of "
                    f"{v.required} required" if not v.enough else
                    f"refusing to promote run {rid} to production: the {pol.get('risk_tier')} risk tier's evidence "
                    "is missing or failing")
            raise _error(head, where,
                         f"counted: {', '.join(v.approvers) or 'none'}; approvers: {', '.join(pol.get('approvers', []))}",
                         *v.problems, *extra,
                         help="each listed approver other than the author runs 'aiops approve RUN --reason TEXT'")
        approvers = v.approvers
        current = store.production(run["name"])
        if current and current["run_id"] != rid:
            record_event(store.path, "stage.changed", run["name"], current["run_id"], _actor(),
                         {"from": "production", "to": "archived", "reason": f"replaced by run {rid}"
                          + (" (rollback)" if rollback else "")})
    ev = record_event(store.path, "stage.changed", run["name"], rid, _actor(),
                      {"from": now, "to": to, "reason": reason or ("aiops rollback" if rollback else "aiops promote"),
                       "approvers": approvers, "rollback": rollback, "insecure_dev": insecure_dev})
    from aiops.compiler.governance.mlflow_sync import mirror_stage

    mirror_stage(store, run["name"], rid, to)
    return {"run": rid, "from": now, "to": to, "approvers": approvers, "seq": ev.seq}


def _actor() -> str:
    from aiops.compiler.registry import author

    return author("the move is recorded as made")


def on_rollback(registry: str, folder: Path, from_model: str | None, aside: Path) -> str:
    """After `aiops rollback` restored `folder`: the rolled-back run moves aside (archived when it was
    in production) and the restored run returns to production when its approvals still verify.
    Returns a line for the user."""
    from aiops.compiler.registry import move, register_build, where

    store = Store(where(registry))
    s = subject(folder)
    name = s["name"]
    runs = {r["run_id"]: r for r in store.runs(name)}
    gone = next((r for r in runs.values() if r["model_sha256"] == from_model and r["run_id"] != s["run_id"]
                 and r["artefact_dir"] == str(folder)), None)
    if gone:
        move(registry, name, gone["run_id"], aside)
    if s["run_id"] not in runs:
        register_build(registry, folder, kind="restored")
    else:
        move(registry, name, s["run_id"], folder)
    prod = store.production(name)
    if prod is None or not gone or prod["run_id"] != gone["run_id"]:
        return f"registry: run {s['run_id']} restored; the production entry is unchanged"
    try:
        promote(s["run_id"], "production", str(store.path), reason=f"rollback from run {gone['run_id']}",
                rollback=True)
    except GovernanceFailed as exc:
        record_event(store.path, "stage.changed", name, gone["run_id"], _actor(),
                     {"from": "production", "to": "archived", "reason": "aiops rollback"})
        return ("warning: the restored run cannot return to production, so there is none now:\n" + exc.text)
    return f"registry: run {s['run_id']} is production again; run {gone['run_id']} is archived"


def keep_production(registry: str, out_dir: Path, stage: Path) -> Path | None:
    """Before a compile replaces `out_dir`: when the folder holds the registry's production model and
    the new build is another run, archive it (as retrain does) so `aiops rollback` can restore it.
    Returns the archive, or None."""
    from aiops.compiler.registry import move, where
    from aiops.compiler.outdir import archive as _archive

    if not (out_dir / "manifest.json").is_file():
        return None
    try:
        old, new = subject(out_dir), subject(stage)
        prod = Store(where(registry)).production(old["name"])
    except (RegistryError, ValueError, KeyError, OSError):
        return None
    if prod is None or prod["run_id"] != old["run_id"] or new["run_id"] == old["run_id"]:
        return None
    archived = _archive(out_dir)
    move(registry, old["name"], old["run_id"], archived)
    print(f"note: {out_dir} held the production model (run {old['run_id']}); it is archived in {archived} "
          f"('aiops rollback {out_dir}' restores it)", file=sys.stderr)
    return archived
