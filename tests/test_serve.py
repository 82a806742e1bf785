"""`aiops serve` end to end: a real server process on 127.0.0.1 and a free port.

Predictions equal the compiled model's (Predictor, and the holdout metric in the evidence);
hostile input never gets a 5xx; 422 bodies never hold a PII value; RBAC; jobs, also across a
restart; tampered or unblessed artefacts are refused at startup; the audit chain verifies.
"""
from __future__ import annotations

import csv
import functools
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aiops.runtime.serve.metrics import PUBLISH_EVERY
from tests._build import ROOT, build

DATA_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
# API keys have at least 32 characters (runtime/policy.py MIN_KEY_CHARS)
SCORER, AUDITOR, BATCH, ADMIN_KEY, BATCH2, JOBS_ADMIN = (f"k-{r}-" + "0123456789abcdef" * 2
                                                         for r in ("scorer", "auditor", "batch", "admin", "batch2",
                                                                   "jobsadmin"))
KEYS = {SCORER: "scorer", AUDITOR: "auditor", BATCH: "batch", ADMIN_KEY: "admin"}
ADMIN = {"X-API-Key": ADMIN_KEY}
PII = "personal_status_and_sex"
PII_VALUE = "Zyx-PII-Sentinel-4711"


# ---------------------------------------------------------------------- a server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m compiler.cli serve ARTEFACTS` in a subprocess, talking HTTP/1.1 to it."""

    def __init__(self, artefacts: Path, workdir: Path, env: dict[str, str] | None = None, workers: int = 1,
                 log_dir: Path | None = None, args: tuple[str, ...] = ()):
        self.artefacts = artefacts
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir or workdir / "log"
        self.workers = workers
        self.args = args
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("AIOPS_API_KEYS", "AIOPS_DATA_KEY", "PROMETHEUS_MULTIPROC_DIR", "AIOPS_JOB_THREADS")}
        self.env.update(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.stderr_path = workdir / f"stderr-{self.port}.txt"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "aiops.compiler.cli", "serve", str(self.artefacts), "--port", str(self.port),
                "--log-dir", str(self.log_dir), "--workers", str(self.workers), *self.args]

    def start(self, timeout: float = 40.0) -> "Server":
        self.port = free_port()
        self.stderr_path = self.workdir / f"stderr-{self.port}.txt"
        err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=self.env, stdout=err, stderr=err)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.stderr}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server not ready in {timeout}s:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def request(self, method: str, path: str, body: bytes | str | dict | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        h = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)


# ---------------------------------------------------------------------- data
@functools.lru_cache(maxsize=2)
def _rows(as_text: bool) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    with (ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = [r.pop("creditability") for r in rows]
    if not as_text:
        rows = [{k: int(v) if v.lstrip("-").isdigit() else v for k, v in r.items()} for r in rows]
    return tuple(rows), tuple(labels)


def records(n: int | None = None, as_text: bool = False) -> tuple[list[dict], list[str]]:
    """Rows of the credit_risk data as JSON records (numbers as numbers) and their labels."""
    rows, labels = _rows(as_text)
    rows = [dict(r) for r in (rows[:n] if n else rows)]
    return rows, list(labels[:n] if n else labels)


@pytest.fixture(scope="module")
def art() -> Path:
    return build("credit_risk")


@pytest.fixture(scope="module")
def server(art: Path, tmp_path_factory):
    env = {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_API_KEYS": ",".join(f"{k}:{r}" for k, r in KEYS.items())}
    s = Server(art, tmp_path_factory.mktemp("serve"), env).start()
    yield s
    s.stop()


def predict(server: Server, recs: list[dict], headers=ADMIN) -> tuple[int, dict]:
    return server.json("POST", "/v1/predict", {"records": recs}, headers)


# ---------------------------------------------------------------------- predictions
def test_predictions_equal_the_compiled_model_and_the_holdout_evidence(server: Server, art: Path):
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from aiops.runtime.predictor import Predictor

    recs, labels = records()
    y = np.array(labels, dtype=object)
    _, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
    hold = [recs[i] for i in sorted(test)]
    status, body = predict(server, hold)
    assert status == 200, body
    preds = body["predictions"]
    assert len(preds) == len(hold) == 300
    expected, errors = Predictor(art).predict_records(hold)
    assert not errors.items
    assert [p["label"] for p in preds] == expected["label"].tolist()
    got = np.array([[p["probabilities"]["bad"], p["probabilities"]["good"]] for p in preds])
    assert np.array_equal(got, expected["probabilities"])  # the same bits, through JSON
    evaluation = json.loads((art / "evidence" / "evaluation.json").read_text())
    auc = roc_auc_score([labels[i] == "bad" for i in sorted(test)], got[:, 0])
    assert abs(auc - evaluation["metrics"]["roc_auc"]) < 1e-9
    # one record at a time (the small path) and records written as text (the contract path) agree
    for i in (0, 7, 123):
        status, one = predict(server, [hold[i]])
        assert status == 200 and one["predictions"][0]["probabilities"] == preds[i]["probabilities"]
    text_recs, _ = records(20, as_text=True)
    status, as_text = predict(server, text_recs)
    status2, as_nums = predict(server, records(20)[0])
    assert status == status2 == 200
    assert [p["probabilities"] for p in as_text["predictions"]] == [p["probabilities"] for p in as_nums["predictions"]]


def test_concurrent_requests_scored_together_get_their_own_bits(server: Server, art: Path):
    """Requests arriving together are scored in one onnxruntime call (runtime/serve/batching.py);
    each still gets exactly what the model gives that record alone."""
    from concurrent.futures import ThreadPoolExecutor

    from aiops.runtime.predictor import Predictor

    recs = records(64)[0]
    p = Predictor(art)

    def one(i: int):
        return i, predict(server, recs[i % 64: i % 64 + 1 + i % 3])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(160)))
    for i, (status, body) in results:
        assert status == 200
        want, _ = p.predict_records(recs[i % 64: i % 64 + 1 + i % 3])
        got = [[q["probabilities"]["bad"], q["probabilities"]["good"]] for q in body["predictions"]]
        assert np.array_equal(np.array(got), want["probabilities"]), i


def test_response_carries_unique_ids_and_the_model_identity(server: Server, art: Path):
    import hashlib

    status, body = predict(server, records(50)[0])
    assert status == 200
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert len(set(ids)) == 50
    status, again = predict(server, records(1)[0])
    assert again["predictions"][0]["prediction_id"] not in ids
    manifest = json.loads((art / "manifest.json").read_text())
    assert body["model"] == {"name": "credit_risk", "version": manifest["version"],
                             "manifest_sha256": hashlib.sha256((art / "manifest.json").read_bytes()).hexdigest()}
    p = body["predictions"][0]
    assert sorted(p) == ["label", "prediction_id", "probabilities"]
    assert sorted(p["probabilities"]) == ["bad", "good"] and abs(sum(p["probabilities"].values()) - 1) < 1e-6


def test_explain_gives_exact_contributions_for_the_linear_model(server: Server):
    rec = records(1)[0][0]
    status, body = server.json("POST", "/v1/explain", {"record": rec}, ADMIN)
    assert status == 200, body
    e = body["explanation"]
    assert e["exact"] is True and e["scale"] == "log-odds of 'bad'"
    feats = [c["feature"] for c in e["contributions"]]
    assert len(feats) == 19 and "checking_account" in feats
    mags = [abs(c["contribution"]) for c in e["contributions"]]
    assert mags == sorted(mags, reverse=True)
    assert abs(sum(c["contribution"] for c in e["contributions"]) + e["baseline"] - e["score"]) < 1e-4
    p = body["prediction"]["probabilities"]["bad"]
    assert abs(np.log(p / (1 - p)) - e["score"]) < 1e-4
    status, _ = server.json("POST", "/v1/explain", {"record": {**rec, "age_in_years": "old"}}, ADMIN)
    assert status == 422


def test_linear_occlusion_is_additive(art: Path):
    """The premise of exact=True: for the logistic model, occluding features one at a time
    adds up to occluding them all at once (on the log-odds scale)."""
    from aiops.runtime.features import derive
    from aiops.runtime.serve.explain import is_linear
    from aiops.runtime.predictor import Predictor

    assert is_linear(art / "model.onnx")
    p = Predictor(art)
    recs = records(2)[0]
    cols, _ = p.contract.validate_records(recs)
    feed = derive(p.steps, cols)
    x = {k: v[:1] for k, v in feed.items()}
    z = {k: v[1:] for k, v in feed.items()}

    def logit(f):
        q = p.run_feed(f)["probabilities"][:, p.pos_index]
        return np.log(q) - np.log1p(-q)
    parts = sum(float(logit(x)[0] - logit({**x, k: z[k]})[0]) for k in x)
    assert abs(parts - float(logit(x)[0] - logit(z)[0])) < 1e-4


# ---------------------------------------------------------------------- hostile input
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = [
    # (description, body, content-type, expected status)
    ("empty body", b"", "application/json", 400),
    ("not JSON", b"records please", "application/json", 400),
    ("truncated JSON", b'{"records": [{"a": 1}', "application/json", 400),
    ("NaN literal", b'{"records": [{"duration_in_month": NaN}]}', "application/json", 400),
    ("Infinity literal", b'{"records": [{"duration_in_month": -Infinity}]}', "application/json", 400),
    ("deep nesting", ('{"records": ' + _nested(100000) + "}").encode(), "application/json", 400),
    ("invalid UTF-8", b'{"records": ["\xff\xfe"]}', "application/json", 400),
    ("huge integer literal", ('{"records": [{"credit_amount": ' + "9" * 5000 + "}]}").encode(), "application/json", 400),
    ("wrong content type", b'{"records": []}', "text/plain", 415),
    ("no content type", b'{"records": []}', None, 415),
    ("a list, not an object", b"[1, 2]", "application/json", 422),
    ("a string", b'"hello"', "application/json", 422),
    ("null", b"null", "application/json", 422),
    ("records not a list", b'{"records": {"a": 1}}', "application/json", 422),
    ("no records", b'{"records": []}', "application/json", 422),
    ("extra top-level field", b'{"records": [{}], "debug": true}', "application/json", 422),
    ("records of scalars", b'{"records": [1, "x", null, true]}', "application/json", 422),
    ("empty record", b'{"records": [{}]}', "application/json", 422),
    ("deeply nested value", ('{"records": [{"duration_in_month": ' + _nested(500) + "}]}").encode(),
     "application/json", 422),
]


def _good() -> dict:
    return dict(records(1)[0][0])


def _variants() -> list[tuple[str, dict, int]]:
    g = _good()
    return [
        ("valid", g, 200),
        ("wrong type: string for int", {**g, "duration_in_month": "twelve"}, 422),
        ("wrong type: bool for int", {**g, "duration_in_month": True}, 422),
        ("wrong type: object for category", {**g, "purpose": {"a": 1}}, 422),
        ("fraction for int", {**g, "duration_in_month": 12.5}, 422),
        ("huge number", {**g, "credit_amount": 1e308}, 422),
        ("overflowing float", {**g, "credit_amount": float("inf")}, 400),  # serialised as Infinity
        ("integer beyond 2**53", {**g, "credit_amount": 2**60}, 422),
        ("out of range", {**g, "age_in_years": 7}, 422),
        ("not in set", {**g, "housing": "castle"}, 422),
        ("missing field", {k: v for k, v in g.items() if k != "purpose"}, 422),
        ("extra field", {**g, "favourite_colour": "blue"}, 422),
        ("null for non-nullable", {**g, "job": None}, 422),
        ("unicode category", {**g, "purpose": "家具 🛋️ \u202e"}, 200),  # unseen categories are fine
        ("lone surrogate", {**g, "purpose": "\ud800"}, 422),  # cannot reach the model
        ("very long string", {**g, "purpose": "x" * 100000}, 200),
        ("unprintable field name", {**g, "\x00\x01" * 40: 1}, 422),
        ("target included", {**g, "creditability": "good"}, 200),
    ]


@pytest.mark.parametrize("desc,body,ctype,expected", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_a_clear_4xx(server: Server, desc, body, ctype, expected):
    headers = dict(ADMIN)
    if ctype:
        headers["Content-Type"] = ctype
    status, h, data = server.request("POST", "/v1/predict", body, headers)
    assert status == expected, (desc, data[:500])
    err = json.loads(data)["error"]
    assert err["code"] and err["message"]
    assert "Traceback" not in err["message"] and "runtime/" not in err["message"]


def test_hostile_records_get_a_clear_answer(server: Server):
    for desc, rec, expected in _variants():
        body = json.dumps({"records": [rec]}, allow_nan=True)
        status, _, data = server.request("POST", "/v1/predict", body, {**ADMIN, "Content-Type": "application/json"})
        assert status == expected, (desc, data[:500])
        if status == 422:
            errs = json.loads(data)["error"]["records"][0]["errors"]
            assert errs and all(e["code"] and e["message"] for e in errs), desc


def test_limits_oversized_body_and_too_many_records(server: Server):
    big = b'{"records": [' + b'{"a": "' + b"x" * (2 << 20) + b'"}]}'
    status, _, data = server.request("POST", "/v1/predict", big, {**ADMIN, "Content-Type": "application/json"})
    assert status == 413 and json.loads(data)["error"]["code"] == "body_too_large"
    recs = records(1)[0] * 1001
    status, body = predict(server, recs)
    assert status == 413 and body["error"]["code"] == "too_many_records"
    assert body["error"]["message"] == "at most 1000 records per request; send more through POST /v1/jobs"
    status, body = predict(server, records(1)[0] * 1000)
    assert status == 200 and len(body["predictions"]) == 1000


def test_chunked_oversized_body_is_413(server: Server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: " + ADMIN_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(40):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]


def test_unknown_routes_and_methods(server: Server):
    status, body = server.json("GET", "/nope")
    assert status == 404 and body["error"]["message"] == "no such route; the routes are listed in /openapi.json"
    for job in ("not-an-id", "0" * 32, "0" * 32 + "/result"):  # any id: the job route, no such job
        status, body = server.json("GET", "/v1/jobs/" + job, headers=ADMIN)
        assert status == 404 and body["error"]["message"] == "no such job", job
    status, h, data = server.request("GET", "/v1/predict", headers=ADMIN)
    assert status == 405 and h["allow"] == "POST"
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        assert server.request(method, "/v1/predict", headers=ADMIN)[0] == 405
    assert server.request("POST", "/healthz")[0] == 405


def test_a_wrong_request_shape_says_what_it_got(server: Server):
    rec = records(1)[0][0]
    status, body = server.json("POST", "/v1/predict", {"records": [rec], "extra": 1, "more": 2}, ADMIN)
    assert status == 422 and body["error"]["message"] == (
        'expected a JSON object {"records": [{...}, ...]}; unexpected top-level key(s): "extra", "more"')
    status, body = server.json("POST", "/v1/predict", json.dumps([rec]), {**ADMIN, "Content-Type": "application/json"})
    assert status == 422 and body["error"]["message"].endswith("; got a JSON array")
    status, body = server.json("POST", "/v1/explain", {"record": rec, "why": True}, ADMIN)
    assert status == 422 and body["error"]["message"] == (
        'expected a JSON object {"record": {...}} (one record); unexpected top-level key(s): "why"')


def test_422_never_echoes_a_pii_value(server: Server):
    g = _good()
    bad = [
        {**g, PII: PII_VALUE, "age_in_years": "not a number"},
        {**g, PII: [PII_VALUE]},
        {**g, PII: {"value": PII_VALUE}},
        {**g, PII: PII_VALUE, "housing": PII_VALUE},
    ]
    for rec in bad:
        status, _, data = server.request("POST", "/v1/predict", {"records": [rec]}, ADMIN)
        assert status == 422
        assert PII_VALUE.encode() not in data
    status, _, data = server.request("POST", "/v1/explain", {"record": bad[1]}, ADMIN)
    assert status == 422 and PII_VALUE.encode() not in data


def test_pii_is_masked_in_the_encrypted_prediction_log(server: Server):
    from aiops.runtime.policy import Cipher, parse_key
    from aiops.runtime.audit.predlog import read_entries

    status, body = predict(server, [{**_good(), PII: PII_VALUE}])
    assert status == 200
    pid = body["predictions"][0]["prediction_id"]
    path = server.log_dir / "predictions.jsonl"
    deadline = time.time() + 10
    while pid.encode() not in path.read_bytes() and time.time() < deadline:
        time.sleep(0.05)
    raw = path.read_bytes()
    assert PII_VALUE.encode() not in raw and b'"inputs"' not in raw  # encrypted at rest
    entry = next(e for e in read_entries(path, Cipher(parse_key(DATA_KEY))) if e["prediction_id"] == pid)
    assert entry["inputs"][PII].startswith("sha256:") and PII_VALUE not in json.dumps(entry)
    assert entry["output"] == {"label": body["predictions"][0]["label"],
                               "probabilities": body["predictions"][0]["probabilities"]}
    assert entry["model"] == {"name": "credit_risk", "version": "1.0.0"}
    assert entry["manifest_sha256"] == body["model"]["manifest_sha256"]
    assert entry["inputs"]["purpose"] == _good()["purpose"]


# ---------------------------------------------------------------------- access control
def test_rbac(server: Server):
    rec = {"records": records(1)[0]}
    assert server.request("POST", "/v1/predict", rec)[0] == 401
    status, h, data = server.request("POST", "/v1/predict", rec, {"X-API-Key": "wrong"})
    assert status == 401 and h["www-authenticate"].startswith("Bearer")
    assert server.request("POST", "/v1/predict", rec, {"X-API-Key": AUDITOR})[0] == 403
    assert server.request("POST", "/v1/predict", rec, {"Authorization": f"Bearer {SCORER}"})[0] == 200
    assert server.request("POST", "/v1/explain", {"record": rec["records"][0]}, {"X-API-Key": BATCH})[0] == 403
    assert server.request("GET", "/metrics", headers={"X-API-Key": SCORER})[0] == 403
    assert server.request("GET", "/metrics", headers={"X-API-Key": AUDITOR})[0] == 200
    assert server.request("GET", "/v1/audit/verify", headers={"X-API-Key": SCORER})[0] == 403
    assert server.request("POST", "/v1/jobs", rec, {"X-API-Key": SCORER})[0] == 403
    assert server.request("GET", "/v1/metadata", headers={"X-API-Key": SCORER})[0] == 200
    assert server.request("GET", "/healthz")[0] == 200 and server.request("GET", "/readyz")[0] == 200
    assert server.request("GET", "/openapi.json")[0] == 200


# ---------------------------------------------------------------------- documents
def test_metadata_openapi_and_metrics(server: Server):
    status, meta = server.json("GET", "/v1/metadata", headers=ADMIN)
    assert status == 200
    assert meta["model"]["name"] == "credit_risk" and meta["model"]["classes"] == ["bad", "good"]
    assert meta["security"]["auth"] == "api_key" and meta["security"]["warning"] is None
    assert meta["security"]["encryption_at_rest"] is True
    assert meta["security"]["masking"] == {PII: "hash"}
    status, doc = server.json("GET", "/openapi.json")
    rec = doc["components"]["schemas"]["Record"]
    assert rec["properties"]["duration_in_month"] == {"type": "integer", "minimum": 1, "maximum": 120}
    assert rec["properties"]["housing"]["enum"] == ["rent", "own", "for free"]
    assert rec["properties"][PII]["x-pii"] is True
    assert "duration_in_month" in rec["required"] and PII not in rec["required"]
    assert rec["additionalProperties"] is False
    assert doc["components"]["schemas"]["PredictRequest"]["properties"]["records"]["maxItems"] == 1000
    predict(server, records(5)[0])
    predict(server, [{"nope": 1}])
    status, h, text = server.request("GET", "/metrics", headers=ADMIN)
    assert status == 200 and h["content-type"].startswith("text/plain")
    m = text.decode()
    assert 'aiops_http_requests_total{method="POST",route="/v1/predict",status="200"}' in m
    assert 'aiops_http_requests_total{method="POST",route="/v1/predict",status="422"}' in m
    assert 'aiops_http_request_duration_seconds_bucket{le="0.01",route="/v1/predict"}' in m
    assert 'aiops_records_scored_total{source="http"}' in m and 'aiops_records_rejected_total{source="http"}' in m
    assert 'aiops_predictions_total{label="good"}' in m and 'aiops_prediction_score_bin_total{bin="1"}' in m


def test_metrics_count_every_request_and_prediction(server: Server):
    """The event loop counts in Python and publishes before a scrape: the counts are exact."""
    def scrape() -> dict[str, float]:
        status, _, text = server.request("GET", "/metrics", headers=ADMIN)
        assert status == 200
        return _metric_values(text)

    recs = records(30)[0]
    before = scrape()
    labels: list[str] = []
    for i in range(12):
        status, body = predict(server, recs[i: i + 1 + i % 4])
        assert status == 200
        labels += [p["label"] for p in body["predictions"]]
    assert predict(server, [{"nope": 1}])[0] == 422
    after = scrape()

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    ok = 'aiops_http_requests_total{method="POST",route="/v1/predict",status="200"}'
    assert delta(ok) == 12
    assert delta('aiops_http_requests_total{method="POST",route="/v1/predict",status="422"}') == 1
    assert delta('aiops_http_request_duration_seconds_count{route="/v1/predict"}') == 13
    assert delta('aiops_records_scored_total{source="http"}') == len(labels) == sum(1 + i % 4 for i in range(12))
    assert delta('aiops_records_rejected_total{source="http"}') == 1
    for c in ("bad", "good"):
        assert delta(f'aiops_predictions_total{{label="{c}"}}') == labels.count(c)
    assert sum(delta(f'aiops_prediction_score_bin_total{{bin="{b}"}}') for b in range(1, 11)) == len(labels)
    cumulative = [after[k] for k in after if k.startswith('aiops_http_request_duration_seconds_bucket{') and
                  'route="/v1/predict"' in k]
    assert cumulative == sorted(cumulative)  # buckets are cumulative, +Inf last


def _metric_values(text: bytes) -> dict[str, float]:
    """Prometheus exposition text as {'name{labels}': value}."""
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_serving_path_imports_neither_sklearn_nor_pandas(art: Path, tmp_path: Path):
    code = ("import sys, asyncio\n"
            "from aiops.runtime.serve.server import App, Service\n"
            f"app = App(Service({str(art)!r}, {str(tmp_path)!r}, env={{'AIOPS_DATA_KEY': {DATA_KEY!r}, "
            f"'AIOPS_LOG_KEY': {os.environ['AIOPS_LOG_KEY']!r}, "
            f"'AIOPS_LOG_SIGNING_KEY': {os.environ['AIOPS_LOG_SIGNING_KEY']!r}}}, "
            "insecure_dev=True))\n"
            "app.startup()\n"
            "body = b'{\"records\": [{}]}'\n"
            "async def rcv(): return {'type': 'http.request', 'body': body}\n"
            "async def snd(m): pass\n"
            "asyncio.run(app({'type': 'http', 'path': '/v1/predict', 'method': 'POST', 'query_string': b'',"
            " 'headers': [(b'content-type', b'application/json')]}, rcv, snd))\n"
            "app.shutdown()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------- jobs
def _wait_job(server: Server, job_id: str, timeout: float = 30, headers=ADMIN) -> dict:
    """Poll a job with the key that created it (another key, even admin, gets 404)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, job = server.json("GET", f"/v1/jobs/{job_id}", headers=headers)
        assert status == 200
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['status']}")


def test_jobs_score_json_and_csv_and_counts_reconcile(server: Server):
    recs = records(300)[0]
    recs[5] = {**recs[5], "age_in_years": 5}
    recs[9] = "not a record"
    status, h, data = server.request("POST", "/v1/jobs", {"records": recs}, {"X-API-Key": BATCH})
    assert status == 202, data
    job = json.loads(data)
    assert h["location"] == f"/v1/jobs/{job['job_id']}" and job["status"] == "queued"
    job = _wait_job(server, job["job_id"], headers={"X-API-Key": BATCH})
    assert job["status"] == "succeeded", job
    assert job["counts"] == {"records": 300, "scored": 298, "rejected": 2}
    result_file = server.log_dir / "jobs" / job["job_id"] / "result.csv.enc"
    assert job["result"]["encrypted"] is True and result_file.is_file()
    assert b"good" not in result_file.read_bytes()
    status, h, data = server.request("GET", job["result"]["url"], headers={"X-API-Key": BATCH})
    assert status == 200 and h["content-type"] == "text/csv"
    rows = list(csv.DictReader(data.decode().splitlines()))
    assert len(rows) == 300 and [r["row"] for r in rows[:3]] == ["1", "2", "3"]
    assert rows[5]["status"] == "rejected" and rows[5]["errors"] == "age_in_years: out_of_range (must be >= 18)"
    assert rows[9]["errors"] == "record: not_an_object (a record must be a JSON object)"
    status, direct = predict(server, recs[:5])
    assert [float(r["probability_bad"]) for r in rows[:5]] == [p["probabilities"]["bad"] for p in direct["predictions"]]
    # CSV in, Parquet out
    text = (ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv").read_text().splitlines()[:51]
    status, h, data = server.request("POST", "/v1/jobs?format=parquet", "\n".join(text),
                                     {**ADMIN, "Content-Type": "text/csv"})
    assert status == 202, data
    job = _wait_job(server, json.loads(data)["job_id"])
    assert job["counts"] == {"records": 50, "scored": 50, "rejected": 0}
    status, h, data = server.request("GET", job["result"]["url"], headers=ADMIN)
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 50 and "probability_bad" in table.column_names
    assert server.request("POST", "/v1/jobs", b"{", {**ADMIN, "Content-Type": "application/json"})[0] == 400
    assert server.request("POST", "/v1/jobs", {"records": []}, ADMIN)[0] == 422


@pytest.mark.slow
def test_a_queued_job_survives_a_restart(art: Path, tmp_path: Path):
    env = {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_JOB_THREADS": "0"}  # accept jobs, do not run them
    s = Server(art, tmp_path, env, args=("--insecure-dev",)).start()
    try:
        status, job = s.json("POST", "/v1/jobs", {"records": records(200)[0]})
        assert status == 202
        assert s.json("GET", f"/v1/jobs/{job['job_id']}")[1]["status"] == "queued"
    finally:
        s.kill()  # SIGKILL: no shutdown, nothing flushed
    s.env["AIOPS_JOB_THREADS"] = "1"
    s.start()
    try:
        done = _wait_job(s, job["job_id"])
        assert done["status"] == "succeeded" and done["counts"] == {"records": 200, "scored": 200, "rejected": 0}
    finally:
        s.stop()


def test_a_job_left_running_by_a_dead_process_is_claimed_again(tmp_path: Path):
    from aiops.runtime.serve.jobs import JobStore

    store = JobStore(tmp_path)
    store.create("a" * 32, tmp_path / "in.json", "csv", 1, False)
    job = store.claim()
    assert job["id"] == "a" * 32 and store.get("a" * 32)["status"] == "running"
    assert store.claim() is None  # owned by this live process
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with store._db() as c:
        c.execute("UPDATE jobs SET owner_pid = ? WHERE id = ?", (dead.pid, "a" * 32))
    again = store.claim()
    assert again["id"] == "a" * 32 and store.get("a" * 32)["attempts"] == 2


# ---------------------------------------------------------------------- refusals at startup
def _refused(cmd_art: Path, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    s = Server(cmd_art, tmp_path, {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_API_KEYS": f"{ADMIN_KEY}:admin", **(env or {})})
    out = subprocess.run(s.command(), cwd=tmp_path, env=s.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    return out.stderr


def test_tampered_artefacts_are_refused(art: Path, tmp_path: Path):
    bad = shutil.copytree(art, tmp_path / "art")
    onnx = bytearray((bad / "model.onnx").read_bytes())
    onnx[len(onnx) // 2] ^= 0x01
    (bad / "model.onnx").write_bytes(bytes(onnx))
    err = _refused(bad, tmp_path)
    assert err.startswith(f"error: refusing the artefacts in '{bad}': they do not match manifest.json\n"
                          "  - modified: model.onnx (sha256 differs from manifest.json)")


def test_missing_encryption_key_is_refused(art: Path, tmp_path: Path):
    s = Server(art, tmp_path, {"AIOPS_API_KEYS": f"{ADMIN_KEY}:admin"})  # no AIOPS_DATA_KEY
    out = subprocess.run(s.command(), cwd=tmp_path, env=s.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: encryption at rest is enabled (serving.json security.encryption_at_rest) "
                                 "but the environment variable AIOPS_DATA_KEY is not set")


@pytest.mark.slow
def test_an_unblessed_model_is_refused(tmp_path: Path, monkeypatch):
    from aiops.compiler.build import BuildFailed, compile_spec

    monkeypatch.chdir(tmp_path)  # the registry this compile writes stays out of the repository
    out = tmp_path / "unblessed"
    try:
        rc = compile_spec(str(ROOT / "specs" / "credit_risk"), ["thresholds.evaluation.roc_auc.min=0.99"],
                          out=str(out), quiet=True)
    except BuildFailed as exc:  # the gate failure is reported as a diagnostic with exit code 1
        rc = exc.code
    assert rc == 1 and json.loads((out / "manifest.json").read_text())["blessed"] is False
    err = _refused(out, tmp_path)
    assert err.startswith(f"error: refusing to serve '{out}': the model is not blessed (failed gates: ")
    assert "roc_auc" in err


# ---------------------------------------------------------------------- audit chain
def test_audit_chain_verifies_and_an_edit_breaks_it_at_that_line(art: Path, tmp_path: Path):
    # a server of its own: the shared one may still be logging other tests' jobs while the
    # log is copied, and a copy taken mid-write ends in a half line
    env = {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_API_KEYS": ",".join(f"{k}:{r}" for k, r in KEYS.items())}
    server = Server(art, tmp_path / "serve", env).start()
    try:
        for _ in range(3):
            predict(server, records(4)[0])
        deadline = time.monotonic() + 20  # the log writer appends after the responses
        while True:
            status, rep = server.json("GET", "/v1/audit/verify", headers={"X-API-Key": AUDITOR})
            if rep.get("predictions", 0) >= 12 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200 and rep["ok"] is True and rep["predictions"] == 12
    finally:
        server.stop()  # the writer flushes and exits: the log is complete
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("predictions.jsonl", "checkpoints.jsonl"):
        shutil.copy(server.log_dir / name, copy / name)
    cli = [sys.executable, "-m", "aiops.compiler.cli", "audit", "verify"]
    ok = subprocess.run(cli + [str(copy)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {copy / 'predictions.jsonl'}: ")
    lines = (copy / "predictions.jsonl").read_bytes().splitlines(keepends=True)
    victim = 5
    line = lines[victim - 1]
    at = line.index(b'"enc":"') + 10
    lines[victim - 1] = line[:at] + (b"A" if line[at:at + 1] != b"A" else b"B") + line[at + 1:]
    (copy / "predictions.jsonl").write_bytes(b"".join(lines))
    broken = subprocess.run(cli + [str(copy)], capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert broken.stderr.strip() == (f"broken: {copy / 'predictions.jsonl'}: line {victim}: "
                                     "the content does not match its MAC (the line was edited, or written without "
                                     "the log key)")


# ---------------------------------------------------------------------- open mode, workers
@pytest.mark.slow
def test_open_mode_with_two_workers(art: Path, tmp_path: Path):
    """No keys: loud at startup and in /v1/metadata. Two workers share metrics (multiprocess)
    and one MAC chain."""
    s = Server(art, tmp_path, {"AIOPS_DATA_KEY": DATA_KEY}, workers=2, args=("--insecure-dev",)).start()
    try:
        assert "!! INSECURE DEV MODE (--insecure-dev): NO API KEYS" in s.stderr
        status, meta = s.json("GET", "/v1/metadata")
        assert meta["security"]["auth"] == "open" and "anyone" in meta["security"]["warning"]
        assert meta["security"]["insecure_dev"] is True  # recorded by every worker
        # job workers scale with --workers: each worker process runs its job threads on the one queue
        assert "  jobs: 2 worker process(es) x 1 job thread(s); at most 3 attempts per job" in s.stderr
        assert meta["limits"]["job_threads_per_worker"] == 1
        recs = records(3)[0]
        for i in range(40):
            status, body = s.json("POST", "/v1/predict", {"records": recs[:1 + i % 3]})
            assert status == 200, body
        status, body = s.json("POST", "/v1/explain", {"record": recs[0]})
        assert status == 200
        time.sleep(PUBLISH_EVERY + 0.5)  # each worker publishes its counts every PUBLISH_EVERY seconds
        status, _, text = s.request("GET", "/metrics")
        assert status == 200
        m = _metric_values(text)
        assert m['aiops_http_requests_total{method="POST",route="/v1/predict",status="200"}'] == 40.0  # both workers
        assert m['aiops_records_scored_total{source="http"}'] == sum(1 + i % 3 for i in range(40))
    finally:
        s.stop()
    from aiops.runtime.audit.predlog import verify_chain

    rep = verify_chain(s.log_dir)
    assert rep.ok and rep.predictions == sum(1 + i % 3 for i in range(40)) + 1


def test_a_tree_model_is_not_called_exact():
    from aiops.runtime.serve.explain import is_linear

    assert not is_linear(ROOT / "generated" / "flight_delays" / "model.onnx")  # read only


def test_answers_are_what_json_writes():
    """The response is written with one format string per model (runtime/serve/answers.py):
    the same bytes as json.dumps, and null where JSON has no number."""
    from aiops.runtime.serve.answers import Answers

    model = {"name": "m", "version": "1.0.0", "manifest_sha256": "ab" * 32}
    classes = ('no "quotes" %s', "sí")
    a = Answers(model, classes, True)
    ids = ["a1", "a2", "a3", "a4"]
    labels = [0, 1, 1, 0]
    rows = [[0.1, 0.9], [0.30000000000000004, 0.7], [1e-300, 1.0], [float("nan"), 0.5]]
    enc = json.JSONEncoder(separators=(",", ":")).encode
    want = {"model": model, "predictions": [
        {"prediction_id": i, "label": classes[lab], "probabilities": {c: (p if p == p else None)
                                                                      for c, p in zip(classes, row)}}
        for i, lab, row in zip(ids, labels, rows)]}
    assert a.body(ids, labels, rows) == enc(want).encode()
    assert json.loads(a.body(ids, labels, rows))["predictions"][3]["probabilities"] == {classes[0]: None, "sí": 0.5}
    r = Answers(model, (), False)
    vals = [1.5, -0.0, float("inf"), 2e308 * 0]
    assert r.body(ids, None, vals) == enc({"model": model, "predictions": [
        {"prediction_id": i, "value": v if v - v == 0 else None} for i, v in zip(ids, vals)]}).encode()
    assert r.body(ids[:2], None, vals[:2]) == enc({"model": model, "predictions": [
        {"prediction_id": i, "value": v} for i, v in zip(ids[:2], vals[:2])]}).encode()


def test_the_batcher_scores_alone_at_once_and_together_in_one_call(art: Path):
    """One request at a time: after ALONE_AFTER batches of one, requests are scored at once
    (no future), with a probe every PROBE_EVERY-th; requests arriving together are scored in
    one onnxruntime call. Every mode
    gives each record the bits the model gives it alone."""
    import asyncio

    from aiops.runtime.serve.batching import ALONE_AFTER, PROBE_EVERY, Batcher
    from aiops.runtime.serve.rows import FeatureRows, RowAcceptor
    from aiops.runtime.predictor import Predictor

    p = Predictor(art)
    rows = FeatureRows(RowAcceptor(p.contract), p.steps, p.input_names)
    recs = records(40)[0]
    want, _ = p.predict_records(recs)
    want_rows = want["probabilities"].tolist()

    async def main():
        b = Batcher(p, rows)
        kinds = []
        for i in range(ALONE_AFTER + 2 * PROBE_EVERY):  # one at a time
            res = b.score(rows.rows([recs[i % 40]]), 1)
            kinds.append("future" if isinstance(res, asyncio.Future) else "now")
            labels, vals = await res if isinstance(res, asyncio.Future) else res
            assert vals == [want_rows[i % 40]] and p.meta.classes[labels[0]] == want["label"][i % 40]
        assert kinds[:ALONE_AFTER] == ["future"] * ALONE_AFTER and b.alone
        rest = kinds[ALONE_AFTER:]
        assert rest.count("future") == 2 and rest[PROBE_EVERY - 1] == "future"
        # now many arrive in one turn: until the next probe they go at once, then they wait together
        starts = [i % 38 for i in range(2 * PROBE_EVERY)]
        futs = [b.score(rows.rows(recs[i:i + 1 + i % 3]), 1 + i % 3) for i in starts]
        waiting = [isinstance(f, asyncio.Future) for f in futs]
        first = waiting.index(True)
        assert first < PROBE_EVERY and all(waiting[first:])
        calls = b.batches
        done = [await f if isinstance(f, asyncio.Future) else f for f in futs]
        assert b.batches == calls + 1 and not b.alone  # one onnxruntime call for all that waited
        for i, (labels, vals) in zip(starts, done):
            assert vals == want_rows[i:i + 1 + i % 3]

    asyncio.run(main())
