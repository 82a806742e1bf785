"""What a registry entry and an approval are about: a run id and the artefact hashes it binds.

The run id is derived from the spec hash, the data hash and the model hash, so the same build
compiled again (byte-identical) is the same run, and a run cannot silently change its bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

POLICY_FILE = "governance.json"  # written at compile: owner, approvers, approvals required, risk tier
REGISTRY_ENV = "AIOPS_REGISTRY"
DEFAULT_REGISTRY = ".aiops/registry.db"


def run_id(spec_hash: str, data_sha256: str, model_sha256: str | None) -> str:
    return hashlib.sha256(f"{spec_hash}:{data_sha256}:{model_sha256 or '-'}".encode()).hexdigest()[:12]


def subject(folder: str | Path) -> dict[str, Any]:
    """The hashes of the artefacts in `folder` that a registry entry and an approval bind."""
    d = Path(folder)
    raw = (d / "manifest.json").read_bytes()
    m = json.loads(raw)
    model = m["files"].get("model.onnx", {}).get("sha256")
    if m.get("kind") == "prompt":  # a prompt artefact's "model": its prompts and their evaluation evidence
        model = hashlib.sha256("".join(f"{k}:{v['sha256']}\n" for k, v in sorted(m["files"].items())
                                       if k.startswith(("prompts/", "evidence/prompts/"))).encode()).hexdigest()
    return {"run_id": run_id(m["spec"]["hash"], m["data"]["sha256"], model), "name": m["name"],
            "version": m["version"], "spec_hash": m["spec"]["hash"], "data_sha256": m["data"]["sha256"],
            "model_sha256": model, "manifest_sha256": hashlib.sha256(raw).hexdigest()}


def policy(folder: str | Path) -> dict[str, Any]:
    p = Path(folder) / POLICY_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


def registry_location(explicit: str | None = None, folder: str | Path | None = None) -> str:
    """--registry, else $AIOPS_REGISTRY, else the env group's registry recorded in the artefacts, else
    the default .aiops/registry.db."""
    if explicit:
        return explicit
    if os.environ.get(REGISTRY_ENV):
        return os.environ[REGISTRY_ENV]
    if folder is not None and (Path(folder) / POLICY_FILE).is_file():
        return policy(folder).get("registry") or DEFAULT_REGISTRY
    return DEFAULT_REGISTRY


def run_record(folder: str | Path, kind: str, built_by: str, parent: str | None = None,
               artefact_dir: str | None = None) -> dict[str, Any]:
    """The registry entry of a build, read from its (verified) artefact folder."""
    d = Path(folder)
    s = subject(d)
    m = json.loads((d / "manifest.json").read_text())
    # a prompt artefact (kind: prompt) keeps its gates and rates in evidence/blessing.json, and has no data.json
    ev = json.loads((d / "evidence" / ("blessing.json" if m.get("kind") == "prompt" else "evaluation.json")).read_text())
    data = json.loads((d / "evidence" / "data.json").read_text()) if m.get("kind") != "prompt" else {}
    return {**s, "kind": kind, "built_by": built_by, "parent": parent, "blessed": bool(m.get("blessed")),
            "status": "built" if m.get("blessed") else "gate failed",
            "artefact_dir": artefact_dir or str(d), "tool": m.get("tool"), "libraries": m.get("libraries"),
            "python": m.get("python"), "spec": m.get("spec"), "data": {**m.get("data", {}),
                                                                    "rows_in": data.get("rows_in"),
                                                                    "split": data.get("split")},
            "metrics": ev.get("metrics", {}),
            "gates": [{"kind": t["kind"], "name": t["name"], "value": t.get("value"), "bound": t.get("bound_text"),
                       "passed": t["passed"]} for t in ev.get("thresholds", [])],
            "policy": policy(d)}
