"""The one encrypted format (runtime/sealed.py): the HKDF key schedule, tampering, and
`aiops decrypt` round trips for the files `aiops score` writes and for the prediction log.
(Job inputs and results: tests/test_audit_serve.py, through a real server.)"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiops.runtime.audit.chain import ChainWriter, read_entries
from aiops.runtime.masking import Masker
from aiops.runtime.audit.predlog import EntryBuilder
from aiops.runtime.sealed import (MAGIC, SEGMENT, Opener, SealedError, SealedWriter, key_id, open_file, parse_header, seal,
                            subkey)
from tests._build import ROOT, build

KEY = bytes(range(32))
DATA_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def hkdf_rfc5869(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with the standard library: extract, then expand."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def test_rfc5869_test_case_1_holds_for_the_reference_implementation():
    okm = hkdf_rfc5869(bytes([0x0b]) * 22, bytes(range(13)), bytes(range(0xf0, 0xfa)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_each_file_and_segment_gets_its_own_hkdf_subkey():
    salt = bytes(16)
    for kind in ("job-input", "job-result", "score-output", "score-quarantine", "log-entry"):
        assert subkey(KEY, salt, kind) == hkdf_rfc5869(KEY, salt, b"aiops sealed v1 " + kind.encode(), 32)
    assert subkey(KEY, salt, "job-input") != subkey(KEY, salt, "job-result") != KEY
    a, b = seal(KEY, "job-result", "j1", b"x"), seal(KEY, "job-result", "j1", b"x")
    ha, hb = parse_header(a)[0], parse_header(b)[0]
    assert ha.salt != hb.salt and ha.kid == hb.kid == key_id(KEY)  # a fresh salt, so a fresh key, per file
    # the data key itself never encrypts: a record does not open under it with AES-GCM
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    n = parse_header(a)[1]
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt(a[n + 4:n + 16], a[n + 16:], a[:n] + bytes(8) + b"\x01")
    assert AESGCM(subkey(KEY, ha.salt, "job-result")).decrypt(a[n + 4:n + 16], a[n + 16:],
                                                             a[:n] + bytes(8) + b"\x01") == b"x"


def test_a_sealed_blob_opens_only_whole_in_order_and_in_its_place():
    data = os.urandom(2 * SEGMENT + 100)
    blob = seal(KEY, "job-result", "job-1", data)
    o = Opener(KEY)
    assert o.open(blob, "r", "job-result", "job-1") == data
    n = parse_header(blob)[1]
    rec = 4 + 12 + SEGMENT + 16
    r0, r1, r2 = blob[n:n + rec], blob[n + rec:n + 2 * rec], blob[n + 2 * rec:]
    cases = {
        "reordered": (blob[:n] + r1 + r0 + r2, "record 0 does not decrypt"),
        "final record dropped": (blob[:n] + r0 + r1, "is truncated: its final record is missing"),
        "appended": (blob + r2, "has data after its final record"),
        "a byte flipped": (blob[:-1] + bytes([blob[-1] ^ 1]), "record 2 does not decrypt"),
        "another context": (seal(KEY, "job-result", "job-2", data), "belongs to 'job-2', not to 'job-1'"),
        "another kind": (seal(KEY, "job-input", "job-1", data), "holds a sealed job-input, not a job-result"),
        "not sealed": (b"plain text", "is not encrypted by aiops"),
    }
    for name, (bad, msg) in cases.items():
        with pytest.raises(SealedError, match=msg):
            o.open(bad, "r", "job-result", "job-1")
    forged_header = blob[:len(MAGIC)] + bytes([4]) + blob[len(MAGIC) + 1:]  # relabelled as a quarantine
    with pytest.raises(SealedError, match="record 0 does not decrypt"):
        o.open(forged_header)
    with pytest.raises(SealedError, match=f"not under the given key \\(id {key_id(bytes(32))}\\)"):
        Opener(bytes(32)).open(blob)


def test_the_streaming_writer_and_reader_agree(tmp_path: Path):
    for size in (0, 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT):
        data = os.urandom(size)
        w = SealedWriter(tmp_path / "f", KEY, "score-output")
        for i in range(0, size, 70000):
            w.write(data[i:i + 70000])
        w.close()
        assert b"".join(open_file(tmp_path / "f", KEY, "score-output")) == data


def _decrypt(*args: str, env_key: str = DATA_KEY_HEX) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIOPS_DATA_KEY": env_key, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "aiops.compiler.cli", "decrypt", *args], capture_output=True, env=env,
                          cwd=ROOT, timeout=60)


def test_aiops_decrypt_reads_the_score_output_and_quarantine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from aiops.compiler.cli import main

    art = build("credit_risk")  # encrypts at rest
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIOPS_DATA_KEY", DATA_KEY_HEX)
    monkeypatch.setenv("AIOPS_MASK_SALT", "salt-of-at-least-16-characters")
    src = ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv"
    rows = list(csv.DictReader(src.open(newline="")))[:40]
    rows[3]["age_in_years"] = "not a number"
    inp = tmp_path / "in.csv"
    with inp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out, q = tmp_path / "out.csv", tmp_path / "q.csv"
    assert main(["score", str(art), str(inp), "--output", str(out), "--quarantine", str(q), "--quiet"]) == 0
    assert out.read_bytes().startswith(MAGIC + b"\x03") and q.read_bytes().startswith(MAGIC + b"\x04")
    r = _decrypt(str(out))
    assert r.returncode == 0 and r.stderr.decode().strip() == f"decrypted {out} (sealed score-output)"
    table = list(csv.DictReader(io.StringIO(r.stdout.decode())))
    assert len(table) == 39 and table[0]["label"] in ("good", "bad")
    r = _decrypt(str(q), "--output", str(tmp_path / "q.plain.csv"))
    assert r.returncode == 0
    qrows = list(csv.DictReader((tmp_path / "q.plain.csv").open(newline="")))
    assert [x["row"] for x in qrows] == ["4"] and "age_in_years" in qrows[0]["reasons"]
    wrong = _decrypt(str(out), env_key="ff" * 32)
    assert wrong.returncode == 2 and wrong.stderr.decode().startswith(f"error: '{out}' was sealed under key id ")
    assert _decrypt(str(inp)).stderr.decode().startswith(f"error: '{inp}' is neither a file encrypted by aiops "
                                                         "nor a prediction log")


def test_aiops_decrypt_reads_the_prediction_log_for_an_auditor(tmp_path: Path):
    key = bytes.fromhex(DATA_KEY_HEX)
    w = ChainWriter(tmp_path, b"L" * 32, key)
    b = EntryBuilder(Masker({"pii": "hash"}, b"s"), ("a", "pii"), {"name": "m", "version": "1"}, "f" * 64, True)
    w.append(b.parts(1.0, "predict", None, [(f"p{i}", {"a": i, "pii": "Zyx-secret"},
                                              {"value": i / 2}) for i in range(3)]))
    w.close()
    assert b"Zyx" not in (tmp_path / "predictions.jsonl").read_bytes()
    r = _decrypt(str(tmp_path / "predictions.jsonl"))
    assert r.returncode == 0 and r.stderr.decode().strip() == (f"decrypted {tmp_path / 'predictions.jsonl'} "
                                                               "(prediction log, 4 entries)")
    got = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert got[0]["event"] == "segment"
    assert [(e["prediction_id"], e["inputs"]["a"], e["output"]) for e in got[1:]] == [
        ("p0", 0, {"value": 0.0}), ("p1", 1, {"value": 0.5}), ("p2", 2, {"value": 1.0})]
    assert got[1:] == list(read_entries(tmp_path, key))  # the same entries as the library reads
    assert all(e["inputs"]["pii"].startswith("sha256:") for e in got[1:])  # masked before it was sealed


def test_nonces_are_never_reused_across_draws():
    """A Sealer draws OS randomness 4096 nonces at a time; a log segment's entries (many
    per Sealer) never share one (a repeated AES-GCM nonce leaks the key stream)."""
    from aiops.runtime.sealed import Sealer

    s = Sealer(KEY, "log-entry")
    blobs = [s.one(b"%d" % i, f"p{i}") for i in range(10000)]
    nonces = {b[parse_header(b)[1] + 4:parse_header(b)[1] + 16] for b in blobs}
    assert len(nonces) == 10000
    o = Opener(KEY)
    assert all(o.open(b, "e", "log-entry", f"p{i}") == b"%d" % i for i, b in enumerate(blobs))
