"""Access that fails closed, and jobs that belong to their key (issue 11).

Each reproduction of the issue is attacked here: a high-risk server with AIOPS_API_KEYS
unset or empty, a two-character key, another key reading a job, a job status that names a
server path, a job input holding a PII value in clear text; and a job that kills its worker
(issue 14) is failed after serving.job_max_attempts tries.
"""
from __future__ import annotations

import csv
import hmac
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiops.runtime.serve.jobs import JobStore
from aiops.runtime.policy import MIN_KEY_CHARS, PolicyError, keys_required, load_access
from tests._build import ROOT, build
from tests.test_serve import ADMIN_KEY, BATCH, BATCH2, DATA_KEY, JOBS_ADMIN, PII, Server, records

# credit_risk (high risk, roles) without encryption at rest, a role with jobs_admin and short
# read deadlines (tests/test_serve_limits.py uses the same build)
OVERRIDES = ("security.encryption_at_rest.enabled=false", "+security.roles.ops=[jobs,jobs_admin,metadata]",
             "+serving.header_timeout_s=1", "+serving.body_timeout_s=1", "+serving.keepalive_timeout_s=1")
KEYS = {BATCH: "batch", BATCH2: "batch", JOBS_ADMIN: "ops", ADMIN_KEY: "admin"}
CANARY = "Canary-PII-Zq81-Xv"
REFUSED_WITHOUT_KEYS = (
    "error: refusing to serve without API keys: serving.json defines roles (admin, auditor, batch, scorer) and the "
    "model's risk tier is high, and no key is configured (environment variable AIOPS_API_KEYS); set "
    "AIOPS_API_KEYS='KEY:ROLE,...' with keys of at least 32 characters (generate one with: python -c \"import "
    "secrets; print(secrets.token_urlsafe(32))\"), or pass --insecure-dev to run open on a development machine\n")


def clear_build() -> Path:
    return build("credit_risk", *OVERRIDES)


def _serve_cli(art: Path, tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    s = Server(art, tmp_path, env, args=args)
    return subprocess.run(s.command(), cwd=tmp_path, env=s.env, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------- refusing to start
@pytest.mark.parametrize("keys", [None, ""], ids=["unset", "empty"])
def test_a_high_risk_server_without_keys_refuses_to_start(tmp_path: Path, keys):
    env = {"AIOPS_DATA_KEY": DATA_KEY}
    if keys is not None:
        env["AIOPS_API_KEYS"] = keys
    out = _serve_cli(build("credit_risk"), tmp_path, env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == REFUSED_WITHOUT_KEYS


def test_insecure_dev_is_not_taken_from_the_environment(tmp_path: Path):
    """Only the flag opens the server: the variable that carries it to worker processes is
    dropped when 'aiops serve' starts."""
    out = _serve_cli(build("credit_risk"), tmp_path, {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_SERVE_INSECURE_DEV": "1"})
    assert out.returncode == 2 and out.stderr == REFUSED_WITHOUT_KEYS


def test_a_two_character_key_is_refused_without_showing_it(tmp_path: Path):
    out = _serve_cli(build("credit_risk"), tmp_path, {"AIOPS_DATA_KEY": DATA_KEY,
                                                       "AIOPS_API_KEYS": f"{ADMIN_KEY}:admin,zq:scorer"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr == ("error: environment variable AIOPS_API_KEYS: key 2 is 2 characters long; an API key needs "
                          "at least 32 characters; generate one with: python -c \"import secrets; "
                          "print(secrets.token_urlsafe(32))\"\n")
    assert "zq" not in out.stderr.replace("secrets", "")


def test_keys_are_required_by_roles_or_by_a_high_risk_tier():
    roles = {"scorer": ["predict"]}
    assert keys_required(roles, "limited") == "serving.json defines roles (scorer)"
    assert keys_required({}, "high") == "the model's risk tier is high"
    assert keys_required({}, "minimal") is None
    with pytest.raises(PolicyError, match=re.escape("refusing to serve without API keys: serving.json defines roles "
                                                    "(scorer), and no key is configured")):
        load_access({"roles": roles}, {}, risk_tier="limited")
    acc = load_access({"roles": roles}, {}, risk_tier="limited", insecure_dev=True)
    assert acc.open and acc.insecure_dev and acc.check(None, "predict") == 0
    assert acc.source.startswith("INSECURE DEV MODE (--insecure-dev): no API keys")
    # with keys, --insecure-dev changes nothing
    acc = load_access({"roles": roles}, {"AIOPS_API_KEYS": "s" * MIN_KEY_CHARS + ":scorer"}, insecure_dev=True)
    assert not acc.open and not acc.insecure_dev and acc.check(None, "predict") == 401
    # no roles, not high risk: open, as before, said loudly
    assert load_access({}, {}, risk_tier="minimal").open


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch):
    """A presented key is hashed and compared with hmac.compare_digest against every known
    digest, with no early exit: the work is the same for a match, a near miss and a stranger."""
    keys = [f"{i}" * MIN_KEY_CHARS for i in range(5)]
    acc = load_access({"roles": {"r": ["predict"]}}, {"AIOPS_API_KEYS": ",".join(f"{k}:r" for k in keys)})
    assert all(isinstance(d, bytes) and len(d) == 32 for d in acc.keys)  # digests, never the keys
    assert not any(k.encode() in d for k in keys for d in acc.keys)
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented in (keys[0], keys[4], keys[4][:-1] + "x", "stranger"):
        calls.clear()
        acc.role_of(presented)
        assert calls == [(32, 32)] * 5, presented


def test_admin_does_not_imply_jobs_admin():
    acc = load_access({"roles": {"admin": ["admin"], "ops": ["jobs_admin"]}},
                      {"AIOPS_API_KEYS": f"{'a' * 32}:admin,{'o' * 32}:ops"})
    assert acc.allows("admin", "jobs") and acc.allows("admin", "metrics")
    assert not acc.allows("admin", "jobs_admin") and acc.allows("ops", "jobs_admin")


# ---------------------------------------------------------------------- owned jobs, on a live server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"AIOPS_API_KEYS": ",".join(f"{k}:{r}" for k, r in KEYS.items())}
    s = Server(clear_build(), tmp_path_factory.mktemp("access"), env).start()
    yield s
    s.stop()


def _wait(server: Server, job_id: str, key: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, job = server.json("GET", f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
        assert status == 200, job
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']}")


def test_another_key_reading_a_job_gets_404(server: Server):
    status, job = server.json("POST", "/v1/jobs", {"records": records(5)[0]}, {"X-API-Key": BATCH})
    assert status == 202
    jid = job["job_id"]
    done = _wait(server, jid, BATCH)
    assert done["status"] == "succeeded"
    _, nothing = server.json("GET", "/v1/jobs/" + "0" * 32, headers={"X-API-Key": BATCH})
    for key in (BATCH2, ADMIN_KEY):  # another key of the same role; admin without jobs_admin
        for path in (f"/v1/jobs/{jid}", f"/v1/jobs/{jid}/result"):
            status, body = server.json("GET", path, headers={"X-API-Key": key})
            assert (status, body) == (404, nothing), (key, path)  # the same answer as for no job at all
    assert server.request("GET", f"/v1/jobs/{jid}/result", headers={"X-API-Key": BATCH})[0] == 200
    status, seen = server.json("GET", f"/v1/jobs/{jid}", headers={"X-API-Key": JOBS_ADMIN})  # explicit jobs_admin
    assert status == 200 and seen == done
    assert server.request("GET", f"/v1/jobs/{jid}/result", headers={"X-API-Key": JOBS_ADMIN})[0] == 200


def test_a_job_status_shows_no_server_path(server: Server):
    status, job = server.json("POST", "/v1/jobs", {"records": records(3)[0]}, {"X-API-Key": BATCH})
    assert status == 202
    done = _wait(server, job["job_id"], BATCH)
    text = json.dumps(done)
    assert done["result"] == {"format": "csv", "encrypted": False, "url": f"/v1/jobs/{job['job_id']}/result"}
    assert str(server.log_dir) not in text and str(server.workdir) not in text and "location" not in text
    _, meta = server.json("GET", "/v1/metadata", headers={"X-API-Key": ADMIN_KEY})
    assert meta["prediction_log"]["file"] == "predictions.jsonl" and str(server.workdir) not in json.dumps(meta)


def test_job_pii_is_never_stored_in_clear_and_the_input_is_deleted(server: Server):
    """Encryption at rest is off: the canary in the PII column must not reach any file the
    server writes (job input, result, queue, prediction log), and the input goes when the job
    is done. A PII value that breaks the contract still rejects its row, by rule name."""
    recs = [{**r, PII: f"{CANARY}-{i}"} for i, r in enumerate(records(6)[0])]
    recs[2] = {**recs[2], PII: [CANARY]}  # not a category value: rejected, and named only by its column
    status, job = server.json("POST", "/v1/jobs", {"records": recs}, {"X-API-Key": BATCH})
    assert status == 202
    done = _wait(server, job["job_id"], BATCH)
    assert done["counts"] == {"records": 6, "scored": 5, "rejected": 1}
    status, _, data = server.request("GET", done["result"]["url"], headers={"X-API-Key": BATCH})
    assert CANARY not in data.decode()
    rows = list(csv.DictReader(data.decode().splitlines()))
    assert rows[2]["status"] == "rejected" and rows[2]["errors"].startswith(f"{PII}: ")
    # the scores are the model's, as /v1/predict gives them for the same records
    status, direct = server.json("POST", "/v1/predict", {"records": [r for i, r in enumerate(recs) if i != 2]},
                                 {"X-API-Key": BATCH})
    assert [float(r["probability_bad"]) for i, r in enumerate(rows) if i != 2] == \
        [p["probabilities"]["bad"] for p in direct["predictions"]]
    job_dir = server.log_dir / "jobs" / job["job_id"]
    assert not (job_dir / "input.json").exists()  # deleted on completion (serving.keep_job_inputs: false)
    time.sleep(0.3)  # the log writer appends shortly after
    hits = [p for p in server.log_dir.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert hits == []


def test_a_job_input_is_stored_without_pii_before_it_runs(tmp_path: Path):
    """The file written before the 202 (read here before any worker runs the job)."""
    from aiops.runtime.serve.server import Service

    svc = Service(clear_build(), tmp_path / "log", env={}, job_threads=0, insecure_dev=True)
    recs = [{**r, PII: CANARY} for r in records(4)[0]]
    job = svc.jobs.submit(json.dumps({"records": recs}).encode(), 4, "csv", owner="o" * 32)
    path = tmp_path / "log" / "jobs" / job["job_id"] / "input.json"
    raw = path.read_bytes()
    assert CANARY.encode() not in raw and PII.encode() in raw  # only in the list of removed columns
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(raw)
    assert stored["pii_removed"] == [PII] and stored["pii_errors"] == {}
    assert [sorted(r) for r in stored["records"]] == [sorted(k for k in r if k != PII) for r in recs]
    assert svc.jobs.store.get(job["job_id"])["owner"] == "o" * 32


# ---------------------------------------------------------------------- attempts
def _dies_holding_a_job(root: Path) -> None:
    """A real worker process that claims the job and dies while scoring it."""
    code = (f"import os, sys; sys.path.insert(0, {str(ROOT)!r}); from aiops.runtime.serve.jobs import JobStore; "
            f"job = JobStore({str(root)!r}, 2).claim(); assert job is not None; os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9


def test_a_job_that_kills_its_worker_is_failed_after_max_attempts(tmp_path: Path):
    store = JobStore(tmp_path, max_attempts=2)
    jid = "b" * 32
    (tmp_path / jid).mkdir()
    inp = tmp_path / jid / "input.json"
    inp.write_text('{"records": [{}]}')
    store.create(jid, inp, "csv", 1, False, owner="x" * 32)
    _dies_holding_a_job(tmp_path)
    assert store.get(jid)["attempts"] == 1
    again = store.claim()  # its worker died once: tried again
    assert again["id"] == jid and store.get(jid)["attempts"] == 2
    with store._db() as c:  # ... and it kills that worker too
        c.execute("UPDATE jobs SET owner_pid = ? WHERE id = ?", (_dead_pid(), jid))
    assert store.claim() is None
    job = store.get(jid)
    assert job["status"] == "failed" and job["finished"] is not None
    assert job["error"] == ("the job was tried 2 times and its worker stopped (died or lost its lease) each time; "
                            "serving.job_max_attempts is 2, so it is not retried")
    assert not inp.exists()
    assert store.claim() is None  # never again


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_job_given_back_at_shutdown_keeps_its_attempts(tmp_path: Path):
    store = JobStore(tmp_path, max_attempts=1)
    store.create("c" * 32, tmp_path / "in.json", "csv", 1, False)
    assert store.claim()["id"] == "c" * 32
    store.release("c" * 32)
    job = store.get("c" * 32)
    assert job["status"] == "queued" and job["attempts"] == 0
    assert store.claim()["id"] == "c" * 32  # runs again despite max_attempts 1


def test_a_queue_from_before_owners_is_upgraded(tmp_path: Path):
    with sqlite3.connect(tmp_path / "jobs.sqlite") as c:
        c.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, format TEXT NOT NULL, input_path "
                  "TEXT NOT NULL, result_path TEXT, encrypted INTEGER NOT NULL, records INTEGER, scored INTEGER, "
                  "rejected INTEGER, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, owner_host TEXT, owner_pid "
                  "INTEGER, heartbeat REAL, created REAL NOT NULL, started REAL, finished REAL)")
        c.execute("INSERT INTO jobs (id, status, format, input_path, encrypted, created) "
                  "VALUES ('d', 'queued', 'csv', 'x', 0, 1)")
    assert JobStore(tmp_path).get("d")["owner"] == ""  # no key owns it: only jobs_admin sees it
