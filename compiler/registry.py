"""The run registry, build side: every compile and retrain (failed ones too) becomes a registry
entry, through the event log of runtime/governance/store.py.

Timestamps live in the registry, never in generated/. The location is the env group's
`env.registry` (a path or a sqlite:/// URL), or $AIOPS_REGISTRY when set.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from aiops.runtime.governance.store import Store, record_event
from aiops.runtime.governance.subject import REGISTRY_ENV, run_id, run_record, subject


def where(spec_registry: str) -> str:
    return os.environ.get(REGISTRY_ENV) or spec_registry


def author(what: str = "the build is recorded as built") -> str:
    """Who builds: the trusted name of the key in use, key:<hex> for an untrusted key, else the OS user."""
    from aiops.runtime.governance import identity as I

    try:
        return I.current().name
    except I.IdentityError as exc:
        import getpass

        print(f"warning: {exc}; {what} by the OS user", file=sys.stderr)
        return getpass.getuser()


def register_build(registry: str, folder: str | Path, kind: str = "compile", parent: str | None = None,
                   artefact_dir: str | None = None) -> dict[str, Any]:
    """Record the build in `folder` (blessed or not) as a candidate; returns its record."""
    loc = where(registry)
    rec = run_record(folder, kind, author(), parent=parent, artefact_dir=artefact_dir)
    store = Store(loc)
    old = next((r for r in store.runs(rec["name"]) if r["run_id"] == rec["run_id"]), None)
    if old is not None:  # the same build again: one entry; follow it when its recorded folder lost it
        d = Path(old["artefact_dir"] or "")
        if not (d / "manifest.json").is_file() or subject(d)["run_id"] != rec["run_id"]:
            move(loc, rec["name"], rec["run_id"], Path(rec["artefact_dir"]))
        return old["record"]
    if parent is None:
        prod = Store(loc).production(rec["name"])
        rec["parent"] = prod["run_id"] if prod and prod["run_id"] != rec["run_id"] else None
    record_event(loc, "run.registered", rec["name"], rec["run_id"], rec["built_by"], rec)
    from aiops.compiler.governance.mlflow_sync import mirror_build

    mirror_build(loc, rec, Path(folder))
    return rec


def move(registry: str, name: str, rid: str, folder: Path) -> None:
    """The run's artefacts are now in `folder` (archived by retrain, restored by rollback)."""
    s = subject(folder)
    record_event(where(registry), "run.moved", name, rid, author(),
                 {"artefact_dir": str(folder), "manifest_sha256": s["manifest_sha256"]})


def register_failed(registry: str, plan, summary: str, notes: tuple[str, ...] = (), kind: str = "compile") -> str:
    """A build that stopped before it had a model (data contract, parity, document): kept as a record of
    what was tried."""
    loc = where(registry)
    src = Path(plan.data_source)
    data_sha = hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file() else "-"
    rid = run_id(plan.spec_hash, data_sha, None)
    rec = {"run_id": rid, "name": plan.name, "version": plan.version, "kind": kind, "built_by": author(),
           "parent": None, "blessed": False, "status": f"failed: {summary}", "notes": list(notes),
           "spec_hash": plan.spec_hash, "data_sha256": data_sha, "model_sha256": None, "manifest_sha256": None,
           "artefact_dir": None, "spec": {"dir": plan.spec_dir, "overrides": list(plan.overrides)},
           "data": {"source": plan.data_source, "sha256": data_sha}, "metrics": {}, "gates": []}
    record_event(loc, "run.registered", plan.name, rid, rec["built_by"], rec)
    from aiops.compiler.governance.mlflow_sync import mirror_build

    mirror_build(loc, rec, None)
    return rid


def runs(path: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """Every run (metrics as JSON text, blessed as 0/1, stage, parent, built_by, record)."""
    return Store(where(str(path))).runs(name)


def record_retrain(path: str | Path, name: str, artefact_dir: str, event: dict[str, Any],
                   champion_run: str | None = None, challenger_run: str | None = None) -> None:
    """A retrain decision (promoted / not_promoted) or a rollback, with the runs it concerns."""
    body = {**event, "artefact_dir": artefact_dir, "champion_run": champion_run, "challenger_run": challenger_run}
    kind = "rollback" if event["event"] == "rolled_back" else "retrain.decided"
    record_event(where(str(path)), kind, name, challenger_run or champion_run, author(), body)


def events(path: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """The retrain and rollback events (their bodies), oldest first."""
    return [{**e.body, "seq": e.seq, "at": e.at, "actor": e.actor}
            for e in Store(where(str(path))).events(name, kinds=("retrain.decided", "rollback"))]


