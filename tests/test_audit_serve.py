"""The audit log through a real server (credit_risk: high risk, audit log enabled,
encryption at rest): it refuses to start without the log's keys; /readyz is false and
predictions are refused while the log cannot be written; a job's predictions are in the
log when the job says succeeded, even if the server is then killed; `aiops decrypt` reads
a job's input and result."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiops.runtime.audit.keys import public_key_hex
from aiops.runtime.audit.verify import verify_log
from aiops.runtime.audit.predlog import read_entries
from tests._build import ROOT, build
from tests.test_serve import DATA_KEY, Server, records

KEYS = "k-admin-0123456789abcdef0123456789:admin,k-auditor-0123456789abcdef012345:auditor"
ADMIN = {"X-API-Key": "k-admin-0123456789abcdef0123456789"}
LOG_KEY = bytes.fromhex(os.environ["AIOPS_LOG_KEY"])
PUB = public_key_hex(bytes.fromhex(os.environ["AIOPS_LOG_SIGNING_KEY"]))


@pytest.fixture(scope="module")
def art() -> Path:
    return build("credit_risk")


def _env(**more: str) -> dict[str, str]:
    return {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_API_KEYS": KEYS, **more}


def test_the_server_refuses_to_start_without_the_audit_log_keys(art: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_LOG_")}
    env.update(_env(), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "aiops.compiler.cli", "serve", str(art), "--log-dir", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: the audit log is enabled (serving.json security.audit_log) but "
                                "AIOPS_LOG_KEY and AIOPS_LOG_SIGNING_KEY are not set (nor AIOPS_LOG_KEY_FILE); "
                                "generate them with 'aiops audit keygen', and keep them outside the log folder")


def _wait(cond, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_predictions_are_refused_and_not_ready_while_the_log_cannot_be_written(art: Path, tmp_path: Path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "predictions.jsonl").write_bytes(b'{"a damaged":"last line"}\n')  # cannot be continued
    s = Server(art, tmp_path, _env(), log_dir=log_dir)
    err = (tmp_path / "stderr.txt").open("wb")
    s.proc = subprocess.Popen(s.command(), cwd=tmp_path, env=s.env, stdout=err, stderr=err)
    try:
        def ready():
            try:
                return s.json("GET", "/readyz")
            except OSError:
                return None

        status, body = _wait(ready)
        assert status == 503 and body["status"] == "not ready"
        assert body["problems"][0].startswith("the prediction log cannot be written: cannot append 0 entries to ")
        rec = {"records": records(1)[0]}
        status, body = s.json("POST", "/v1/predict", rec, ADMIN)
        assert status == 503 and body["error"] == {
            "code": "audit_log_unavailable", "message": "the audit log cannot be written, so predictions are refused "
            "until it can (security.audit_log is enabled); see /readyz"}
        assert s.json("POST", "/v1/jobs", rec, ADMIN)[0] == 503
        assert s.json("GET", "/v1/metadata", None, ADMIN)[1]["prediction_log"]["when_unwritable"] == "refuse"
        (log_dir / "predictions.jsonl").rename(tmp_path / "damaged.jsonl")  # the operator moves it aside
        _wait(lambda: s.request("GET", "/readyz")[0] == 200, 10)
        status, body = s.json("POST", "/v1/predict", rec, ADMIN)
        assert status == 200
    finally:
        s.stop()
    pid = body["predictions"][0]["prediction_id"]
    assert [e["prediction_id"] for e in read_entries(log_dir, bytes.fromhex(DATA_KEY))] == [pid]
    rep = verify_log(log_dir, LOG_KEY, [PUB])
    assert rep.ok and rep.checkpoint["reason"] == "shutdown"


def test_job_predictions_are_logged_before_the_job_succeeds_and_its_files_decrypt(art: Path, tmp_path: Path):
    log_dir = tmp_path / "log"
    recs = records()[0] * 10  # 10,000 records: the writer needs most of a second for them
    # no job threads: the job waits, so its sealed input can be read
    s = Server(art, tmp_path / "a", _env(AIOPS_JOB_THREADS="0"), log_dir=log_dir).start()
    try:
        status, job = s.json("POST", "/v1/jobs", {"records": recs}, ADMIN)
        assert status == 202
    finally:
        s.stop()
    jid = job["job_id"]
    jdir = log_dir / "jobs" / jid
    env = {**os.environ, "AIOPS_DATA_KEY": DATA_KEY, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "aiops.compiler.cli", "decrypt"]
    r = subprocess.run(cli + [str(jdir / "input.json.enc")], capture_output=True, env=env, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["records"] == recs
    assert b"job-input" in r.stderr
    # now run it, and kill the server the moment the job says succeeded
    s = Server(art, tmp_path / "b", _env(), log_dir=log_dir).start()
    try:
        _wait(lambda: s.json("GET", f"/v1/jobs/{jid}", None, ADMIN)[1]["status"] == "succeeded", 120)
        status, _, result = s.request("GET", f"/v1/jobs/{jid}/result", headers=ADMIN)
        s.proc.kill()  # SIGKILL: no clean shutdown of the server
        s.proc.wait(10)
    finally:
        s.kill()
    assert status == 200
    logged = [e for e in read_entries(log_dir, bytes.fromhex(DATA_KEY)) if e.get("job_id") == jid]
    assert len(logged) == 10000 and len({e["prediction_id"] for e in logged}) == 10000
    r = subprocess.run(cli + [str(jdir / "result.csv.enc"), "-o", str(tmp_path / "result.csv")], capture_output=True,
                       env=env, timeout=60)
    assert r.returncode == 0 and (tmp_path / "result.csv").read_bytes() == result
    time.sleep(0.5)  # the writer process outlives its server: it drains its pipe and checkpoints
    rep = verify_log(log_dir, LOG_KEY, [PUB])
    assert rep.ok and rep.predictions == 10000, rep.reason
    shutil.rmtree(log_dir / "jobs")



def test_a_start_up_refusal_is_exit_2_not_uvicorns_3(capsys):
    """A deployment error found at start-up (e.g. the prompt server's log written under another key,
    after a new 'aiops audit keygen') is the user's to fix: exit 2 and the reason, not uvicorn's exit 3.
    The app below refuses in its lifespan start-up as the servers do, through real uvicorn."""
    from aiops.runtime.serve.limits import run_server

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the last entry does not verify under the log key"})

    assert run_server(app, host="127.0.0.1", port=0, lifespan="on", log_level="error") == 2
    assert capsys.readouterr().err.endswith(
        "error: the server did not start: the reason is the ERROR line above; nothing was served\n")
