"""The PII canary: a unique value in every PII column goes through compile (a quarantined
row), predict, explain, jobs, score, retrain and monitor; then every file those commands
wrote (SQLite files and the prediction log included), every answer, stdout and stderr are
searched for it in clear text, and none holds it. The same value masks to the same text in
the compile quarantine, the score quarantine and the prediction log, so they can be joined.

One compile of credit_risk (strict security, hash masking, encryption at rest off so that
the files are readable), one server.
"""
from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from tests._build import ROOT
from tests.test_serve import Server

PII = "personal_status_and_sex"
CANARY = "zqCanary"  # every canary starts so; one search finds them all
JOIN = CANARY + "-join-7f3a"  # the value whose masks must agree across paths
ADMIN_KEY = "canary-admin-key-0123456789abcdef0123456789"
MASK_SALT = "canary-test-masking-key-0123456789"
CREDIT = ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv"


def _rows() -> tuple[list[str], list[list[str]]]:
    with CREDIT.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def _quarantined_pii(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        return {r.get("__row__") or r.get("row"): r[PII] for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_no_clear_text_pii_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from aiops.compiler.cli import main

    work, inputs = tmp_path / "work", tmp_path / "inputs"  # inputs hold the canaries on purpose: not searched
    shutil.copytree(ROOT / "specs" / "credit_risk", work / "specs" / "credit_risk")
    monkeypatch.chdir(work)
    monkeypatch.setenv("AIOPS_MASK_SALT", MASK_SALT)
    monkeypatch.setenv("AIOPS_STATE_DIR", str(work / "state"))
    monkeypatch.setenv("AIOPS_CRASH_LOG", str(work / "crash.log"))
    monkeypatch.delenv("AIOPS_DATA_KEY", raising=False)
    header, rows = _rows()
    col = header.index
    outputs: list[str] = []  # stdout, stderr and answers

    def run(*argv: str) -> int:
        rc = main(list(argv))
        out = capsys.readouterr()
        outputs.extend([out.out, out.err])
        assert "Traceback" not in out.err and "internal error" not in out.err, out.err
        return rc

    # compile: two rows added to the data break the contract and carry canaries; they are
    # quarantined, and the model is trained on the same 1000 rows as ever
    data = work / "specs" / "credit_risk" / "data" / "german_credit.csv"
    extra = [list(rows[3]), list(rows[4])]
    extra[0][col(PII)], extra[0][col("housing")] = JOIN, "castle"
    extra[1][col(PII)], extra[1][col("age_in_years")] = CANARY + "-compile", "abc"
    _write(data, header, rows + extra)
    assert run("compile", "specs/credit_risk", "security.encryption_at_rest.enabled=false",
               "--out", "generated/credit_risk") == 0, outputs[-1]
    art = work / "generated" / "credit_risk"
    compile_q = _quarantined_pii(work / ".aiops" / "quarantine" / "credit_risk.csv")
    assert set(compile_q) == {"1001", "1002"}

    # serve: predict, a rejected record, explain, a JSON job and a CSV job
    server = Server(art, work / "serve", {"AIOPS_API_KEYS": f"{ADMIN_KEY}:admin"})
    server.env.pop("AIOPS_DATA_KEY", None)
    h = {"X-API-Key": ADMIN_KEY}
    rec = {k: v for k, v in zip(header, rows[0]) if k != "creditability"}
    server.start()
    try:
        answers = [server.request("POST", "/v1/predict", {"records": [{**rec, PII: JOIN}]}, h),
                   server.request("POST", "/v1/predict", {"records": [{**rec, PII: CANARY + "-bad",
                                                                       "housing": "castle"}]}, h),
                   server.request("POST", "/v1/explain", {"record": {**rec, PII: CANARY + "-explain"}}, h)]
        assert [a[0] for a in answers] == [200, 422, 200], answers
        jobs = []
        for body, ctype, fmt in (
                (json.dumps({"records": [{**rec, PII: CANARY + "-job"},
                                         {**rec, PII: CANARY + "-job-bad", "duration_in_month": 0}]}),
                 "application/json", "csv"),
                ("\n".join([",".join(f'"{k}"' for k in rec),
                            ",".join(f'"{v}"' for v in {**rec, PII: CANARY + "-csvjob"}.values())]),
                 "text/csv", "csv")):
            status, _, data_ = server.request("POST", f"/v1/jobs?format={fmt}", body, {**h, "Content-Type": ctype})
            assert status == 202, data_
            jobs.append(json.loads(data_)["job_id"])
        for jid in jobs:
            deadline = time.time() + 20
            while (job := server.json("GET", f"/v1/jobs/{jid}", headers=h)[1])["status"] in ("queued", "running"):
                assert time.time() < deadline, job
                time.sleep(0.1)
            assert job["status"] == "succeeded", job
            answers.append(server.request("GET", f"/v1/jobs/{jid}/result", headers=h))
            assert not list((work / "serve" / "log" / "jobs" / jid).glob("input*"))  # deleted once done
        answers.append(server.request("GET", "/v1/metadata", headers=h))
        deadline = time.time() + 10
        log = server.log_dir / "predictions.jsonl"
        while (not log.exists() or log.read_bytes().count(b"\n") < 4) and time.time() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    outputs += [a[2].decode("utf-8", "replace") for a in answers] + [server.stderr]
    assert f"  masking: {PII}=hash (key: environment variable AIOPS_MASK_SALT, id " in server.stderr
    entries = [e for e in map(json.loads, log.read_text().splitlines()) if "event" not in e]  # predictions only
    assert len(entries) == 4  # predict, explain, and the scored record of each job
    predicted = json.loads(answers[0][2])["predictions"][0]["prediction_id"]
    # job inputs are stored without their PII columns (encryption at rest is off), so the job's
    # entries carry none; the predict and explain entries carry it masked
    logged = {e["prediction_id"]: e["inputs"].get(PII) for e in entries}
    assert sum(PII in e["inputs"] for e in entries) == 2

    # score: a valid row, a rejected row, and a column outside the contract, all with canaries
    score_in = [r + [CANARY + "-notes"] for r in rows[:20]]
    score_in[1][col(PII)] = JOIN
    score_in[2][col(PII)], score_in[2][col("housing")] = JOIN, "castle"
    score_in[3][col(PII)] = CANARY + "-score"
    _write(inputs / "score.csv", header + ["notes"], score_in)
    assert run("score", "generated/credit_risk", str(inputs / "score.csv"), "--output", "scored/out.csv",
               "--quiet") == 0
    score_q = _quarantined_pii(work / "scored" / "out.csv.quarantine.csv")
    assert set(score_q) == {"3"}

    # one value, one mask: compile quarantine, score quarantine and prediction log join on it
    assert compile_q["1001"] == score_q["3"] == logged[predicted]
    assert compile_q["1001"].startswith("sha256:") and compile_q["1001"] != compile_q["1002"]

    # retrain on a window with a quarantined canary row
    window = [list(r) for r in rows]
    window[10][col(PII)], window[10][col("housing")] = CANARY + "-retrain", "castle"
    window[11][col(PII)] = CANARY + "-retrain-ok"
    _write(inputs / "window.csv", header, window)
    assert run("retrain", "generated/credit_risk", "--data", str(inputs / "window.csv"), "--quiet") in (0, 1)
    assert list((work / ".aiops" / "quarantine" / "retrain").glob("*.csv"))

    # monitor: the canary is a whole fairness group; then the server's log; then a malformed line
    current = [list(r) for r in rows]
    for r in current:
        if r[col(PII)] == "male : single":
            r[col(PII)] = CANARY + "-monitor"
    _write(inputs / "current.csv", header, current)
    assert run("monitor", "generated/credit_risk", "--current", str(inputs / "current.csv"),
               "--report", "reports/current") in (0, 1)
    report = json.loads((work / "reports" / "current" / "report.json").read_text())
    groups = {g for w in report["windows"] for f in w["fairness"] if f["attribute"] == PII for g in f["groups"]}
    assert len(groups) >= 4 and all(g.startswith("sha256:") for g in groups), groups
    assert run("monitor", "generated/credit_risk", "--from-log", str(server.log_dir),
               "--report", "reports/log") in (0, 1)
    bad_line = ",".join(rows[5]) + "," + CANARY + "-malformed"
    (inputs / "malformed.csv").write_text(",".join(header) + "\n" + ",".join(rows[0]) + "\n" + bad_line + "\n")
    # a ragged line is a quarantined record (docs/contract.md): counted, its text masked or left out
    assert run("monitor", "generated/credit_risk", "--current", str(inputs / "malformed.csv"),
               "--report", "reports/malformed") in (0, 1)
    assert run("audit", "verify", str(server.log_dir)) == 0

    # the search: every file under the working folder, every answer and every output
    found = [str(p.relative_to(work)) for p in sorted(work.rglob("*"))
             if p.is_file() and CANARY.encode() in p.read_bytes() and not p.is_relative_to(work / "specs")]
    found += [f"output #{i}" for i, text in enumerate(outputs) if CANARY in text]
    assert found == []
    # the spec copy's data file is the only file that holds a canary (it is the compile's input)
    assert [p.name for p in (work / "specs").rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()] == \
        ["german_credit.csv"]
