"""The serving policy (keys, roles, encryption) and the prediction log's hash chain,
in-process and fast (masking: tests/test_masking.py)."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.masking import Masker
from runtime.policy import KEY_HELP, Access, Cipher, PolicyError, load_access, load_cipher, parse_key
from runtime.predlog import GENESIS, HEAD_NAME, LOG_NAME, PredictionLog, read_entries, verify_chain

ROLES = {"scorer": ["predict", "explain", "metadata"], "auditor": ["audit", "metadata", "metrics"],
         "admin": ["admin"]}
SEC = {"roles": ROLES, "key_source": "env"}
KEY = "k" * 64


# ---------------------------------------------------------------- keys and roles
K1, K2, K3 = ("key-one-" + "a" * 32, "key-two-" + "b" * 32, "key-3-" + "c" * 32)


def test_keys_from_env_map_to_roles_and_permissions():
    acc = load_access(SEC, {"AIOPS_API_KEYS": f"{K1}:scorer, {K2}:auditor,{K3}:admin"})
    assert not acc.open
    assert acc.source == "3 API keys from environment variable AIOPS_API_KEYS"
    assert acc.check(K1, "predict") == 0
    assert acc.check(K1, "metrics") == 403
    assert acc.check(K2, "metrics") == 0
    assert acc.check(K2, "predict") == 403
    assert acc.check(K3, "jobs") == 0  # admin grants everything
    assert acc.check(None, "predict") == 401
    assert acc.check("", "predict") == 401
    assert acc.check("nope", "predict") == 401
    assert acc.check(K1[:-1], "predict") == 401
    assert acc.role_of(K2) == "auditor"


def test_a_key_may_contain_colons():
    key = "a:b:c:" + "d" * 32
    acc = load_access(SEC, {"AIOPS_API_KEYS": f"{key}:scorer"})
    assert acc.check(key, "predict") == 0


def test_no_keys_means_open_access_said_loudly_when_no_role_is_defined():
    acc = load_access({"key_source": "env"}, {})
    assert acc.open and acc.required is None and not acc.insecure_dev
    assert acc.check(None, "admin") == 0
    assert acc.source == ("no API keys configured (environment variable AIOPS_API_KEYS): OPEN ACCESS, "
                          "every route is allowed without a key")


def test_unknown_role_is_refused_with_did_you_mean():
    with pytest.raises(PolicyError, match=re.escape(
            "environment variable AIOPS_API_KEYS: key 1 has role 'scorr', which serving.json does not define; "
            "did you mean 'scorer'? (roles: admin, auditor, scorer)")):
        load_access(SEC, {"AIOPS_API_KEYS": f"{K1}:scorr"})


def test_malformed_key_entry_names_its_position_not_the_key():
    with pytest.raises(PolicyError) as exc:
        load_access(SEC, {"AIOPS_API_KEYS": f"{K1}:scorer,secretwithoutrole"})
    assert str(exc.value) == ("AIOPS_API_KEYS: entry 2 is not written as KEY:ROLE "
                              "(expected e.g. AIOPS_API_KEYS='key1:scorer,key2:auditor')")
    assert "secretwithoutrole" not in str(exc.value)


def test_keys_from_a_json_file(tmp_path: Path):
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({K2: "auditor"}))
    acc = load_access({**SEC, "key_source": "file"}, {"AIOPS_API_KEYS_FILE": str(f)})
    assert acc.check(K2, "audit") == 0 and acc.source == f"1 API key from file {f}"
    f.write_text(json.dumps([{"key": K1, "role": "scorer"}]))
    assert load_access({**SEC, "key_source": "file"}, {"AIOPS_API_KEYS_FILE": str(f)}).check(K1, "explain") == 0
    f.write_text("[1, 2]")
    with pytest.raises(PolicyError, match=re.escape(f"the API key file {f} must hold")):
        load_access({**SEC, "key_source": "file"}, {"AIOPS_API_KEYS_FILE": str(f)})


def test_unknown_permission_in_roles_is_refused():
    with pytest.raises(PolicyError, match=re.escape("serving.json security.roles.x grants unknown permissions "
                                                    "['fly']; valid: predict, explain")):
        load_access({"roles": {"x": ["fly"]}}, {})


# ---------------------------------------------------------------- encryption at rest
ENC = {"encryption_at_rest": {"enabled": True, "key_env": "AIOPS_DATA_KEY"}}


def test_missing_key_refuses_with_a_clear_message():
    with pytest.raises(PolicyError) as exc:
        load_cipher(ENC, {})
    assert str(exc.value) == ("encryption at rest is enabled (serving.json security.encryption_at_rest) but the "
                              "environment variable AIOPS_DATA_KEY is not set; set it to a 32-byte key; " + KEY_HELP)
    with pytest.raises(PolicyError, match=re.escape("AIOPS_DATA_KEY must hold a 32-byte key as 64 hex digits or base64")):
        load_cipher(ENC, {"AIOPS_DATA_KEY": "short"})
    assert load_cipher({"encryption_at_rest": {"enabled": False}}, {}) is None


def test_keys_parse_from_hex_and_base64_and_seal_round_trips():
    raw = bytes(range(32))
    import base64

    assert parse_key(raw.hex()) == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode()) == raw
    assert parse_key(base64.b64encode(raw).decode().rstrip("=")) == raw
    c = load_cipher(ENC, {"AIOPS_DATA_KEY": raw.hex()})
    blob = c.seal(b"hello", b"id-1")
    assert b"hello" not in blob and c.open(blob, b"id-1") == b"hello"
    with pytest.raises(PolicyError, match="decryption failed"):
        c.open(blob, b"id-2")


def test_nonces_are_never_reused_across_threads_and_draws():
    """Nonces come from OS randomness drawn 4096 at a time; eight threads sealing at once
    across several draws never get the same one (a repeated AES-GCM nonce leaks the key stream)."""
    c = Cipher(bytes(range(32)))
    blobs: list[list[bytes]] = [[] for _ in range(8)]

    def seal(k: int) -> None:
        for i in range(1500):
            blobs[k].append(c.seal(b"%d-%d" % (k, i), b"aad"))

    threads = [threading.Thread(target=seal, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nonces = [b[:12] for per in blobs for b in per]
    assert len(nonces) == 12000 > 2 * Cipher.NONCES_PER_DRAW and len(set(nonces)) == len(nonces)
    assert all(c.open(b, b"aad") == b"%d-%d" % (k, i) for k, per in enumerate(blobs) for i, b in enumerate(per))


def test_log_timestamps_are_iso_ts_to_the_microsecond():
    from runtime.predlog import Clock, iso_ts

    clock = Clock()
    t = 1764088888.0
    for step in [0.0, 1e-7, 3e-7, 4.999995e-7, 0.4999995, 0.9999996, 1.0, 86399.5, 1e-6] * 300:
        t += step
        assert clock.text(t) == iso_ts(t), t


# ---------------------------------------------------------------- prediction log
def _log(tmp_path: Path, cipher: Cipher | None = None) -> PredictionLog:
    log = PredictionLog(tmp_path, Masker({"pii": "hash"}, b"s"), ("a", "pii"), {"name": "m", "version": "1"},
                        "f" * 64, ("no", "yes"), cipher)
    log.start()
    return log


def _fill(log: PredictionLog, batches: int = 4, per: int = 3) -> None:
    for b in range(batches):
        ids = [f"id-{b}-{i}" for i in range(per)]
        recs = [{"a": i, "pii": f"secret-{b}-{i}"} for i in range(per)]
        out = {"label": np.array(["yes"] * per, dtype=object), "probabilities": np.tile([0.25, 0.75], (per, 1))}
        log.submit("predict", ids, recs, out)
    log.flush()


def test_log_lines_follow_the_documented_format(tmp_path: Path):
    log = _log(tmp_path)
    _fill(log, 1, 2)
    log.close()
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    e = json.loads(lines[0])
    assert sorted(e) == ["endpoint", "hash", "inputs", "manifest_sha256", "model", "output", "prediction_id",
                         "prev_hash", "ts"]
    assert e["prev_hash"] == GENESIS and json.loads(lines[1])["prev_hash"] == e["hash"]
    assert e["model"] == {"name": "m", "version": "1"} and e["output"] == {"label": "yes",
                                                                          "probabilities": {"no": 0.25, "yes": 0.75}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["ts"])
    assert e["inputs"]["a"] == 0 and e["inputs"]["pii"].startswith("sha256:")
    assert "secret" not in (tmp_path / LOG_NAME).read_text()
    # hash = sha256 of the line without its hash member
    import hashlib

    body = lines[0][:lines[0].index(',"hash":')] + "}"
    assert hashlib.sha256(body.encode()).hexdigest() == e["hash"]
    assert body == _canonical(json.loads(body))  # sorted keys, no spaces, ASCII
    assert verify_chain(tmp_path).ok


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def test_editing_one_line_breaks_the_chain_at_that_line(tmp_path: Path):
    log = _log(tmp_path)
    _fill(log)
    log.close()
    rep = verify_chain(tmp_path)
    assert rep.ok and rep.entries == 12
    path = tmp_path / LOG_NAME
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace('"yes":0.75', '"yes":0.76')
    path.write_text("".join(lines))
    rep = verify_chain(tmp_path)
    assert not rep.ok and rep.broken_line == 7
    assert rep.reason == "the content does not match its hash (the line was edited)"


def test_removing_lines_is_detected(tmp_path: Path):
    log = _log(tmp_path)
    _fill(log)
    log.close()
    path = tmp_path / LOG_NAME
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4] + lines[5:]))
    rep = verify_chain(path)
    assert (rep.ok, rep.broken_line) == (False, 5) and rep.reason.startswith("prev_hash does not match")
    path.write_text("".join(lines[:-2]))  # cut off the end: the head file still names the last entry
    rep = verify_chain(path)
    assert (rep.ok, rep.broken_line) == (False, 11) and "lines were removed from the end" in rep.reason


def test_writers_in_two_processes_share_one_chain(tmp_path: Path):
    a, b = _log(tmp_path), _log(tmp_path)  # two writers with their own file handles, as two workers
    ts = [threading.Thread(target=_fill, args=(w, 20, 2)) for w in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    a.close()
    b.close()
    rep = verify_chain(tmp_path)
    assert rep.ok and rep.entries == 80
    assert json.loads((tmp_path / HEAD_NAME).read_text())["hash"] == rep.last_hash


def test_encrypted_log_verifies_without_the_key_and_reads_with_it(tmp_path: Path):
    c = Cipher(bytes(32))
    log = _log(tmp_path, c)
    _fill(log, 2, 2)
    log.close()
    text = (tmp_path / LOG_NAME).read_text()
    assert "secret" not in text and '"inputs"' not in text
    assert sorted(json.loads(text.splitlines()[0])) == ["enc", "hash", "kid", "prediction_id", "prev_hash", "ts"]
    assert verify_chain(tmp_path).ok
    first = text.splitlines()[0]
    body = first[:first.index(',"hash":')] + "}"
    assert body == _canonical(json.loads(body))
    plain = c.open(__import__("base64").b64decode(json.loads(first)["enc"]), b"id-0-0").decode()
    assert plain == _canonical(json.loads(plain)) and '"prev_hash"' not in plain
    entries = list(read_entries(tmp_path, c))
    assert [e["prediction_id"] for e in entries] == ["id-0-0", "id-0-1", "id-1-0", "id-1-1"]
    assert entries[0]["inputs"]["pii"].startswith("sha256:") and entries[0]["output"]["label"] == "yes"
    with pytest.raises(PolicyError):
        list(read_entries(tmp_path, Cipher(bytes([1] * 32))))


def test_access_dataclass_is_frozen():
    acc = Access({}, {}, "")
    with pytest.raises(AttributeError):
        acc.source = "x"  # type: ignore[misc]


def test_unusual_values_are_written_canonically(tmp_path: Path):
    log = PredictionLog(tmp_path, Masker({}, b""), ("a", "b"), {"name": "m\u00e9", "version": "1"}, "f" * 64, ())
    log.start()
    log.submit("predict", ["x\"y"], [{"a": "\u5bb6\u5177 \ud800", "b": 1e300}], {"value": np.array([float("nan")])},
               job_id="j")
    log.submit("predict", ["z"], [{"a": None}], {"value": np.array([-0.0])})
    log.close()
    for line in (tmp_path / LOG_NAME).read_text().splitlines():
        body = line[:line.index(',"hash":')] + "}"
        assert body == _canonical(json.loads(body))
    assert verify_chain(tmp_path).ok
    e = [json.loads(x) for x in (tmp_path / LOG_NAME).read_text().splitlines()]
    assert e[0]["output"] == {"value": None} and e[0]["job_id"] == "j" and e[1]["output"] == {"value": -0.0}


def test_a_dead_writer_process_is_reported_not_fatal(tmp_path: Path):
    log = _log(tmp_path)
    _fill(log, 1, 1)
    log._proc.kill()
    log._proc.wait()
    for _ in range(50):  # the forwarder notices on its next write
        log.submit("predict", ["late"], [{"a": 1}], {"label": np.array(["yes"], dtype=object),
                                                   "probabilities": np.array([[0.5, 0.5]])})
        if not log.alive and log.failed:
            break
        threading.Event().wait(0.01)
    assert not log.alive and log.failed
    log.close()
    assert verify_chain(tmp_path).ok
