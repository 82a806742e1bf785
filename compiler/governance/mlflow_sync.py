"""Optional MLflow mirror: with $MLFLOW_TRACKING_URI set, compile and retrain also log the run
(params, metrics, gate verdicts, artefacts) to that MLflow server and register a model
version whose alias is the run's stage; `aiops promote` and `aiops rollback` move the alias.

The aiops registry stays the source of truth (approvals are enforced there, not in MLflow);
MLflow is a mirror, reached through its REST API with the standard library (no mlflow client
in aiops). A server that cannot be reached is a warning, never a failed build.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ENV = "MLFLOW_TRACKING_URI"


class MlflowError(Exception):
    pass


def enabled() -> bool:
    return os.environ.get(ENV, "").startswith(("http://", "https://"))


def _call(method: str, path: str, body: dict | None = None, data: bytes | None = None) -> dict[str, Any]:
    url = os.environ[ENV].rstrip("/") + path
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=payload, method=method,
                                 headers={"Content-Type": "application/json" if data is None else
                                          "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode() or "{}"
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise MlflowError(f"{method} {path}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise MlflowError(f"{method} {path}: {exc}") from None
    return json.loads(text)


def _experiment(name: str) -> str:
    try:
        q = urllib.parse.urlencode({"experiment_name": f"aiops/{name}"})
        return _call("GET", f"/api/2.0/mlflow/experiments/get-by-name?{q}")["experiment"]["experiment_id"]
    except MlflowError as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc):
            raise
    return _call("POST", "/api/2.0/mlflow/experiments/create", {"name": f"aiops/{name}"})["experiment_id"]


def log_run(rec: dict[str, Any], folder: Path | None, stage: str = "candidate") -> dict[str, str]:
    """Log one registry run; returns {"mlflow_run_id", "version"}."""
    name = rec["name"]
    exp = _experiment(name)
    now = int(time.time() * 1000)
    tags = {"aiops.run_id": rec["run_id"], "aiops.kind": rec.get("kind", ""), "aiops.built_by": rec.get("built_by", ""),
            "aiops.parent": rec.get("parent") or "", "aiops.status": rec.get("status", ""),
            "aiops.blessed": str(bool(rec.get("blessed"))).lower()}
    run = _call("POST", "/api/2.0/mlflow/runs/create",
                {"experiment_id": exp, "start_time": now, "run_name": f"{name}-{rec['run_id']}",
                 "tags": [{"key": k, "value": v} for k, v in tags.items()]})["run"]["info"]
    rid = run["run_id"]
    params = {"spec_hash": rec.get("spec_hash"), "data_sha256": rec.get("data_sha256"),
              "model_sha256": rec.get("model_sha256"), "tool": json.dumps(rec.get("tool"))}
    params.update({f"lib.{k}": v for k, v in (rec.get("libraries") or {}).items()})
    metrics = [{"key": k, "value": float(v), "timestamp": now, "step": 0}
               for k, v in (rec.get("metrics") or {}).items() if isinstance(v, (int, float))]
    gates = [{"key": _key(f"gate.{g['name']}"), "value": "pass" if g["passed"] else "FAIL"} for g in rec.get("gates", [])]
    _call("POST", "/api/2.0/mlflow/runs/log-batch",
          {"run_id": rid, "metrics": metrics, "tags": gates,
           "params": [{"key": k, "value": str(v)[:500]} for k, v in params.items() if v is not None]})
    if folder is not None:
        base = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{rid}/artifacts"
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                rel = urllib.parse.quote(p.relative_to(folder).as_posix())
                _call("PUT", f"{base}/aiops/{rel}", data=p.read_bytes())
    _call("POST", "/api/2.0/mlflow/runs/update", {"run_id": rid, "status": "FINISHED", "end_time": now})
    out = {"mlflow_run_id": rid, "version": ""}
    if folder is not None and rec.get("model_sha256"):
        try:
            _call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
        except MlflowError as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        v = _call("POST", "/api/2.0/mlflow/model-versions/create",
                  {"name": name, "source": f"{run['artifact_uri']}/aiops", "run_id": rid,
                   "tags": [{"key": "aiops.run_id", "value": rec["run_id"]}]})["model_version"]["version"]
        out["version"] = str(v)
        set_alias(name, str(v), stage)
    return out


def _key(name: str) -> str:
    """MLflow names allow alphanumerics, _ - . space : / only: 'gate.roc_auc where age in [18, 25)'
    becomes 'gate.roc_auc where age in _18_ 25_'."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)[:250]


def set_alias(name: str, version: str, stage: str) -> None:
    _call("POST", "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": stage, "version": version})


def mirror_build(store_path: str, rec: dict[str, Any], folder: Path | None) -> None:
    """After a run is registered: log it, and note the MLflow ids in the registry's event log."""
    if not enabled():
        return
    from aiops.runtime.governance.store import record_event

    try:
        ids = log_run(rec, folder)
    except MlflowError as exc:
        print(f"warning: MLflow ({os.environ[ENV]}) did not take run {rec['run_id']}: {exc}", file=sys.stderr)
        return
    record_event(store_path, "mlflow.logged", rec["name"], rec["run_id"], rec.get("built_by", ""),
                 {**ids, "tracking_uri": os.environ[ENV]})


def mirror_stage(store, name: str, run_id: str, stage: str) -> None:
    """After a stage move: point the MLflow alias named after the stage at the run's model version."""
    if not enabled():
        return
    logged = [e.body for e in store.events(run_id=run_id, kinds=("mlflow.logged",)) if e.body.get("version")]
    if not logged:
        return
    try:
        set_alias(name, logged[-1]["version"], stage)
    except MlflowError as exc:
        print(f"warning: MLflow alias {stage} of {name} not moved: {exc}", file=sys.stderr)
