"""MLflow interoperability against a real local `mlflow server` (SQLite backend).

MLflow is not an aiops dependency and its pins clash with ours, so it lives in its own
virtual environment: point $AIOPS_TEST_MLFLOW at its `mlflow` executable, e.g.
    python3.11 -m venv /tmp/mlvenv && /tmp/mlvenv/bin/pip install mlflow
    AIOPS_TEST_MLFLOW=/tmp/mlvenv/bin/mlflow python -m pytest tests/test_governance_mlflow.py
Without it the test is skipped (it says so)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests._build import build

MLFLOW = os.environ.get("AIOPS_TEST_MLFLOW") or shutil.which("mlflow")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not MLFLOW, reason="no mlflow executable: set AIOPS_TEST_MLFLOW (see docstring)")]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode())


@pytest.fixture
def server(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                             "--artifacts-destination", str(tmp_path / "mlartifacts")],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                _get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start in 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_compile_and_promote_are_mirrored_to_mlflow(server: str, tmp_path: Path, monkeypatch) -> None:
    from aiops.compiler.registry import register_build
    from aiops.runtime.governance.store import Store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("AIOPS_REGISTRY", str(tmp_path / "registry.db"))
    for k in ("AIOPS_KEY", "AIOPS_KEY_FILE", "AIOPS_TRUSTED_KEYS"):
        monkeypatch.delenv(k, raising=False)
    art = tmp_path / "generated" / "credit_risk"
    shutil.copytree(build("credit_risk"), art)
    rec = register_build("unused", art)
    logged = [e.body for e in Store(tmp_path / "registry.db").events(kinds=("mlflow.logged",))]
    assert len(logged) == 1 and logged[0]["version"] == "1"
    run = _get(f"{server}/api/2.0/mlflow/runs/get?run_id={logged[0]['mlflow_run_id']}")["run"]
    assert run["data"]["params"] and {p["key"]: p["value"] for p in run["data"]["params"]}["spec_hash"] == \
        rec["spec_hash"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["roc_auc"] == pytest.approx(rec["metrics"]["roc_auc"])
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["aiops.run_id"] == rec["run_id"] and tags["gate.roc_auc"] == "pass"
    assert tags["gate.roc_auc where age_in_years in _18_ 25_"] == "pass"
    arts = _get(f"{server}/api/2.0/mlflow/artifacts/list?run_id={logged[0]['mlflow_run_id']}&path=aiops")
    assert "aiops/model.onnx" in {f["path"] for f in arts["files"]}
    alias = _get(f"{server}/api/2.0/mlflow/registered-models/alias?name=credit_risk&alias=candidate")
    assert alias["model_version"]["version"] == "1"

    # a stage move moves the alias named after the stage
    from aiops.compiler.governance.workflow import promote

    assert promote(rec["run_id"], "staging")["to"] == "staging"
    alias = _get(f"{server}/api/2.0/mlflow/registered-models/alias?name=credit_risk&alias=staging")
    assert alias["model_version"]["version"] == "1"
