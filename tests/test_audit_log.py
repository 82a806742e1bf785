"""The prediction log as an audit log, in-process and fast: its format, and attacks by
someone who can write to the log folder but holds neither the log key nor the checkpoint
signing key. Every attack runs on the plain and on the encrypted log, and must be detected
by `verify_log` (and `aiops audit verify`) against the checkpoints."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aiops.runtime.audit import checkpoints as cps
from aiops.runtime.audit.chain import GENESIS, LOG_NAME, ChainWriter, read_entries, segment_paths, split_line
from aiops.runtime.audit.keys import AuditSettings, public_key_hex
from aiops.runtime.audit.verify import NeedKey, verify_log
from aiops.runtime.masking import Masker
from aiops.runtime.policy import Cipher
from aiops.runtime.audit.predlog import EntryBuilder, PredictionLog
from aiops.runtime.sealed import SealedError

LOG_KEY = bytes(range(32))
SEED = bytes([7]) * 32
PUB = public_key_hex(SEED)
DATA_KEY = bytes([9]) * 32
T0 = 1764547200.0  # 2025-12-01T00:00:00Z
ROOT = Path(__file__).resolve().parent.parent


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _rows(start: int, n: int) -> list:
    return [(f"id-{i}", {"a": i, "pii": f"secret-{i}"}, {"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}})
            for i in range(start, start + n)]


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def write(d: Path, n: int = 12, encrypted: bool = False, clock: Clock | None = None, **kw) -> ChainWriter:
    """n predictions, one append each, then a clean shutdown (a checkpoint)."""
    clock = clock or Clock()
    w = ChainWriter(d, LOG_KEY, DATA_KEY if encrypted else None, SEED, clock=clock, **kw)
    b = EntryBuilder(Masker({"pii": "hash"}, b"s"), ("a", "pii"), {"name": "m", "version": "1"}, "f" * 64, encrypted)
    for i in range(n):
        clock.t += 1
        w.append(b.parts(clock.t, "predict", None, _rows(i, 1)))
    w.close()
    return w


def verify(d: Path, saved=()) -> object:
    return verify_log(d, LOG_KEY, [PUB], list(saved))


def lines_of(d: Path) -> list[bytes]:
    return (d / LOG_NAME).read_bytes().splitlines(keepends=True)


def forge(body: dict, key: bytes = b"") -> bytes:
    """A line as an attacker without the log key would write it (any key but the real one)."""
    raw = _canonical(body).encode()
    return raw[:-1] + b',"mac":"' + hmac.new(key, raw, hashlib.sha256).hexdigest().encode() + b'"}\n'


def body_of(line: bytes) -> dict:
    return json.loads(split_line(line.rstrip(b"\n"))[0])


MODES = pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])


# ------------------------------------------------------------------ the format
def test_entries_follow_the_documented_format(tmp_path: Path):
    write(tmp_path, 2)
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    head, e = json.loads(lines[0]), json.loads(lines[1])
    assert sorted(head) == ["detail", "event", "mac", "prev_mac", "seq", "ts"] and head["event"] == "segment"
    assert head["prev_mac"] == GENESIS and head["seq"] == 1 and len(head["detail"]["salt"]) == 32
    assert sorted(e) == ["endpoint", "inputs", "mac", "manifest_sha256", "model", "output", "prediction_id",
                         "prev_mac", "seq", "ts"]
    assert e["prev_mac"] == head["mac"] and e["seq"] == 2 and json.loads(lines[2])["prev_mac"] == e["mac"]
    assert e["inputs"]["a"] == 0 and e["inputs"]["pii"].startswith("sha256:") and "secret" not in "".join(lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["ts"])
    body = lines[1][:lines[1].index(',"mac":')] + "}"  # mac = HMAC-SHA256(log key, the line without it)
    assert body == _canonical(json.loads(body))
    assert hmac.new(LOG_KEY, body.encode(), hashlib.sha256).hexdigest() == e["mac"]
    cp = json.loads((tmp_path / cps.CHECKPOINTS_NAME).read_text().splitlines()[-1])
    assert (cp["count"], cp["head"], cp["reason"], cp["start"], cp["public_key"]) == (
        3, json.loads(lines[2])["mac"], "shutdown", 1, PUB)
    rep = verify(tmp_path)
    assert rep.ok and (rep.entries, rep.predictions) == (3, 2) and rep.checkpoint == cp


def test_encrypted_entries_are_sealed_per_segment_and_read_back_with_the_data_key(tmp_path: Path):
    write(tmp_path, 3, encrypted=True)
    text = (tmp_path / LOG_NAME).read_text()
    assert "secret" not in text and '"inputs"' not in text
    e = json.loads(text.splitlines()[1])
    assert sorted(e) == ["enc", "mac", "prediction_id", "prev_mac", "seq", "ts"]
    assert base64.b64decode(e["enc"]).startswith(b"AIOPS-SEALED1\n\x05")  # kind 5: a log entry
    entries = list(read_entries(tmp_path, Cipher(DATA_KEY)))
    assert [x["prediction_id"] for x in entries] == ["id-0", "id-1", "id-2"]
    assert entries[0]["inputs"]["pii"].startswith("sha256:") and entries[0]["output"]["label"] == "yes"
    assert entries[0]["mac"] == e["mac"]
    with pytest.raises(SealedError, match="not under the given key"):
        list(read_entries(tmp_path, bytes(32)))
    assert verify(tmp_path).ok  # the chain covers the stored lines: it verifies without the data key


def test_without_the_log_key_a_keyed_log_is_not_verified_and_an_unkeyed_one_says_so(tmp_path: Path):
    write(tmp_path / "keyed", 2)
    with pytest.raises(NeedKey, match="is MAC-chained under a log key: give it"):
        verify_log(tmp_path / "keyed", None)
    w = ChainWriter(tmp_path / "dev")
    w.append(EntryBuilder(Masker({}, b""), ("a",), {"name": "m", "version": "1"}, "f" * 64, False)
             .parts(T0, "predict", None, _rows(0, 1)))
    w.close()
    rep = verify_log(tmp_path / "dev", None)
    assert rep.ok and any("UNKEYED" in n for n in rep.notes)
    assert any("signatures were not checked" in n for n in rep.notes)


def test_writers_in_two_processes_share_one_chain(tmp_path: Path):
    audit = AuditSettings(LOG_KEY, SEED, None, True)

    def log() -> PredictionLog:
        p = PredictionLog(tmp_path, Masker({"pii": "hash"}, b"s"), ("a", "pii"), {"name": "m", "version": "1"},
                          "f" * 64, ("no", "yes"), audit=audit)
        p.start()
        return p

    def fill(p: PredictionLog) -> None:
        for b in range(20):
            out = {"label": np.array(["yes"] * 2, dtype=object), "probabilities": np.tile([0.25, 0.75], (2, 1))}
            p.submit("predict", [f"{id(p)}-{b}-{i}" for i in range(2)], [{"a": i, "pii": "x"} for i in range(2)], out)
        assert p.flush()

    a, b = log(), log()
    assert a.writable and b.writable and not a.refusing
    ts = [threading.Thread(target=fill, args=(w,)) for w in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    a.close()
    b.close()
    rep = verify(tmp_path)
    assert rep.ok and rep.predictions == 80 and rep.entries == 81  # one segment event
    assert rep.checkpoint["reason"] == "shutdown" and rep.checkpoint["count"] == 81


def test_unusual_values_are_written_canonically(tmp_path: Path):
    w = ChainWriter(tmp_path, LOG_KEY)
    b = EntryBuilder(Masker({}, b""), ("a", "b"), {"name": "m\u00e9", "version": "1"}, "f" * 64, False)
    w.append(b.parts(T0, "predict", "j", [("x\"y", {"a": "\u5bb6\u5177 \ud800", "b": 1e300}, {"value": None})]))
    w.append(b.parts(T0, "predict", None, [("z", {"a": None}, {"value": -0.0})]))
    w.close()
    for line in (tmp_path / LOG_NAME).read_text().splitlines():
        body = line[:line.index(',"mac":')] + "}"
        assert body == _canonical(json.loads(body))
    assert verify_log(tmp_path, LOG_KEY).ok
    e = list(read_entries(tmp_path))
    assert e[0]["output"] == {"value": None} and e[0]["job_id"] == "j" and e[1]["output"] == {"value": -0.0}


# ------------------------------------------------------------------ attacks (none holds a key)
@MODES
def test_cutting_the_last_line_is_detected_against_the_checkpoint(tmp_path: Path, encrypted: bool):
    write(tmp_path, 12, encrypted)
    saved = [("kept", json.loads((tmp_path / cps.CHECKPOINTS_NAME).read_text().splitlines()[-1]))]
    lines = lines_of(tmp_path)
    (tmp_path / LOG_NAME).write_bytes(b"".join(lines[:-1]))
    rep = verify(tmp_path)
    assert not rep.ok and rep.reason.startswith("the log ends at entry 12, but the checkpoint of ")
    assert rep.reason.endswith("records 13 entries: entries were removed from the end, or the log was replaced")
    # ... and rewriting the "head" too: drop the checkpoints that name the cut entry
    cp_lines = (tmp_path / cps.CHECKPOINTS_NAME).read_text().splitlines(keepends=True)
    (tmp_path / cps.CHECKPOINTS_NAME).write_text("".join(c for c in cp_lines if json.loads(c)["count"] < 13))
    assert verify(tmp_path).ok  # the folder's own checkpoints rewritten: nothing in the folder tells ...
    rep = verify(tmp_path, saved)  # ... but the verifier kept the last checkpoint
    assert not rep.ok and "(kept) records 13 entries: entries were removed from the end" in rep.reason
    # ... or write a checkpoint of its own for the shorter log: not signed by a trusted key
    fake = cps.make(12, split_line(lines[-2].rstrip(b"\n"))[1], 1, GENESIS, "2026-01-01T00:00:00.000000Z",
                    "shutdown", bytes([1]) * 32)
    (tmp_path / cps.CHECKPOINTS_NAME).write_bytes(cps.line(fake))
    rep = verify(tmp_path)
    assert not rep.ok and rep.reason.startswith("the checkpoint is signed by ") and "not a trusted key" in rep.reason
    fake.update(public_key=PUB)
    (tmp_path / cps.CHECKPOINTS_NAME).write_bytes(cps.line(fake))
    rep = verify(tmp_path)
    assert not rep.ok and rep.reason == "the checkpoint has a signature that does not verify (it was altered or forged)"


@MODES
def test_a_forged_line_appended_with_a_recomputed_mac_is_detected(tmp_path: Path, encrypted: bool):
    write(tmp_path, 4, encrypted)
    last = body_of(lines_of(tmp_path)[-1])
    forged = {**last, "prediction_id": "forged", "seq": last["seq"] + 1,
              "prev_mac": split_line(lines_of(tmp_path)[-1].rstrip(b"\n"))[1]}
    with (tmp_path / LOG_NAME).open("ab") as fh:
        fh.write(forge(forged, b"guessed key"))
    rep = verify(tmp_path)
    assert not rep.ok and rep.where == f"{tmp_path / LOG_NAME}: line 6"
    assert rep.reason == "the content does not match its MAC (the line was edited, or written without the log key)"


@MODES
@pytest.mark.parametrize("attack", ["edit", "delete", "reorder"])
def test_editing_deleting_or_reordering_then_recomputing_the_chain_is_detected(tmp_path: Path, encrypted: bool,
                                                                              attack: str):
    write(tmp_path, 8, encrypted)
    lines = lines_of(tmp_path)
    # first without recomputing anything: the chain breaks at that line
    bad = list(lines)
    if attack == "edit":
        bad[4] = bad[4].replace(b'"id-3"', b'"id-X"')
    elif attack == "delete":
        del bad[4]
    else:
        bad[4], bad[5] = bad[5], bad[4]
    (tmp_path / LOG_NAME).write_bytes(b"".join(bad))
    rep = verify(tmp_path)
    assert not rep.ok and rep.where == f"{tmp_path / LOG_NAME}: line 5"
    assert (rep.reason.startswith("the content does not match its MAC") if attack == "edit"
            else rep.reason.startswith("entry ") and "an entry was removed, inserted or reordered" in rep.reason)
    # then recomputing seq, prev_mac and mac from that line on, as sha256 or HMAC under a guessed key
    for key in (b"", b"aiops"):
        bodies = [body_of(x) for x in bad]
        prev = split_line(bad[3].rstrip(b"\n"))[1]
        out = bad[:4]
        for i, b in enumerate(bodies[4:], 5):
            b.update(seq=i, prev_mac=prev)
            line = forge(b, key)
            prev = split_line(line.rstrip(b"\n"))[1]
            out.append(line)
        (tmp_path / LOG_NAME).write_bytes(b"".join(out))
        rep = verify(tmp_path)
        assert not rep.ok and rep.where == f"{tmp_path / LOG_NAME}: line 5"
        assert rep.reason.startswith("the content does not match its MAC")


@MODES
def test_emptying_both_files_or_deleting_the_log_is_broken_not_no_log(tmp_path: Path, encrypted: bool):
    write(tmp_path, 5, encrypted)
    kept = tmp_path / "kept-checkpoint.json"  # what a verifier keeps between runs (--save-checkpoint)
    cli = [sys.executable, "-m", "aiops.compiler.cli", "audit", "verify", str(tmp_path), "--trusted-keys", PUB]
    env = {"AIOPS_LOG_KEY": LOG_KEY.hex(), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(cli + ["--save-checkpoint", str(kept)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: {tmp_path / LOG_NAME}: 6 entries (5 predictions), the MAC chain is intact")
    assert json.loads(kept.read_text())["count"] == 6
    # delete the log: the checkpoint file in the folder still says there were entries
    (tmp_path / LOG_NAME).rename(tmp_path / "moved.jsonl")
    out = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 1 and out.stderr.startswith(f"broken: {tmp_path / LOG_NAME}: the log is missing or "
                                                         "empty, but the checkpoint of ")
    assert out.stderr.rstrip().endswith("records 6 entries")
    # empty both files: only the verifier's own copy can tell
    (tmp_path / LOG_NAME).write_bytes(b"")
    (tmp_path / cps.CHECKPOINTS_NAME).write_bytes(b"")
    out = subprocess.run(cli + ["--checkpoint", str(kept)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 1 and f"({kept}: line 1) records 6 entries" in out.stderr
    # delete everything: still broken against the kept checkpoint, not "no prediction log"
    (tmp_path / LOG_NAME).unlink()
    (tmp_path / cps.CHECKPOINTS_NAME).unlink()
    out = subprocess.run(cli + ["--checkpoint", str(kept)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 1 and out.stderr.startswith("broken: ")
    out = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=ROOT)  # nothing says it existed
    assert out.returncode == 2 and out.stderr.startswith("error: no prediction log at ")


# ------------------------------------------------------------------ a torn line, repaired and logged
@MODES
def test_a_torn_last_line_is_repaired_and_the_repair_logged(tmp_path: Path, encrypted: bool):
    write(tmp_path, 3, encrypted)
    torn = b'{"endpoint":"predict","inputs":{"a":99,"pii":"sha256:f'  # no newline: a write cut short
    with (tmp_path / LOG_NAME).open("ab") as fh:
        fh.write(torn)
    rep = verify(tmp_path)
    assert not rep.ok and rep.reason.startswith("the line is incomplete")
    write(tmp_path, 2, encrypted)  # the next writer repairs it before appending
    events = [e for e in read_entries(tmp_path, DATA_KEY, events=True) if "event" in e]
    repair = next(e for e in events if e["event"] == "repair")
    assert repair["detail"] == {"removed_bytes": len(torn), "removed_sha256": hashlib.sha256(torn).hexdigest(),
                                "segment": LOG_NAME}
    assert torn not in (tmp_path / LOG_NAME).read_bytes()
    reasons = [json.loads(c)["reason"] for c in (tmp_path / cps.CHECKPOINTS_NAME).read_text().splitlines()]
    assert reasons == ["shutdown", "repair", "shutdown"]
    rep = verify(tmp_path)
    assert rep.ok and rep.predictions == 5


def test_the_writer_process_repairs_a_torn_line_at_start_and_keeps_logging(tmp_path: Path):
    write(tmp_path, 2, clock=Clock(time.time()))  # now: the writer process must not rotate a day-old segment
    with (tmp_path / LOG_NAME).open("ab") as fh:
        fh.write(b'{"endpoint":"predict","inp')
    log = PredictionLog(tmp_path, Masker({}, b""), ("a",), {"name": "m", "version": "1"}, "f" * 64, ("no", "yes"),
                        audit=AuditSettings(LOG_KEY, SEED, None, True))
    log.start()
    try:
        assert log.writable and log.error is None
        log.submit("predict", ["after"], [{"a": 1}], {"label": np.array(["yes"], dtype=object),
                                                    "probabilities": np.array([[0.5, 0.5]])})
        assert log.flush()
    finally:
        log.close()
    rep = verify(tmp_path)
    assert rep.ok and rep.predictions == 3
    assert [e.get("event") for e in read_entries(tmp_path, events=True)] == [
        "segment", None, None, "repair", None]


def test_an_unwritable_log_is_reported_and_refused_until_it_can_be_written(tmp_path: Path):
    """A whole last line that does not verify cannot be repaired: the writer refuses to
    continue that chain, says so, and tries again; the server reads `writable`/`refusing`
    (/readyz and 503). Moving the log aside lets it start a new one."""
    write(tmp_path, 2)
    with (tmp_path / LOG_NAME).open("ab") as fh:
        fh.write(b'{"not":"an entry"}\n')
    log = PredictionLog(tmp_path, Masker({}, b""), ("a",), {"name": "m", "version": "1"}, "f" * 64, ("no", "yes"),
                        audit=AuditSettings(LOG_KEY, SEED, None, True))
    log.start()
    try:
        assert not log.writable and log.refusing
        assert log.error.startswith(f"cannot append 0 entries to {tmp_path / LOG_NAME}: the last entry of ")
        log.submit("predict", ["held"], [{"a": 1}], {"label": np.array(["yes"], dtype=object),
                                                   "probabilities": np.array([[0.5, 0.5]])})
        assert log.flush(1.0) is False  # not on disk, and not confirmed
        (tmp_path / LOG_NAME).rename(tmp_path / "damaged.jsonl")
        assert log.flush(10.0) is True and log.writable and not log.refusing
    finally:
        log.close()
    entries = list(read_entries(tmp_path))
    assert [e["prediction_id"] for e in entries] == ["held"]  # held, then written: not lost


# ------------------------------------------------------------------ segments, keys per segment, retention
def test_segments_rotate_so_no_subkey_seals_more_than_the_cap(tmp_path: Path):
    write(tmp_path, 12, encrypted=True, max_entries=5)
    segs = segment_paths(tmp_path)
    assert [p.name for p in segs] == ["predictions.000000000001.jsonl", "predictions.000000000006.jsonl",
                                      "predictions.000000000011.jsonl", LOG_NAME]
    salts = []
    for p in segs:
        lines = p.read_bytes().splitlines()
        assert len(lines) <= 5 and body_of(lines[0])["event"] == "segment"
        salt = body_of(lines[0])["detail"]["salt"]
        salts.append(salt)
        for ln in lines[1:]:  # every entry of the segment is sealed under the segment's salt
            assert base64.b64decode(json.loads(ln)["enc"])[15:31].hex() == salt
    assert len(set(salts)) == 4
    rep = verify(tmp_path)
    assert rep.ok and rep.predictions == 12 and rep.entries == 16


def test_retention_expires_old_segments_as_an_audited_checkpointed_event(tmp_path: Path):
    clock = Clock()
    day = 86400.0
    w = ChainWriter(tmp_path, LOG_KEY, None, SEED, retention_days=2, rotate_s=day, checkpoint_s=60, clock=clock)
    b = EntryBuilder(Masker({}, b""), ("a",), {"name": "m", "version": "1"}, "f" * 64, False)
    for i in range(5):  # one entry a day: a new segment each day
        clock.t = T0 + i * day + 1
        w.append(b.parts(clock.t, "predict", None, _rows(i, 1)))
    w.close()
    names = [p.name for p in segment_paths(tmp_path)]
    assert names[0] != "predictions.000000000001.jsonl"  # the oldest days are gone
    expiries = [e for e in read_entries(tmp_path, events=True) if e.get("event") == "expiry"]
    assert expiries and expiries[0]["detail"]["retention_days"] == 2
    assert expiries[0]["detail"]["segments"][0] == "predictions.000000000001.jsonl"
    cpl = [json.loads(c) for c in (tmp_path / cps.CHECKPOINTS_NAME).read_text().splitlines()]
    exp_cp = [c for c in cpl if c["reason"] == "expiry"]
    assert exp_cp and exp_cp[-1]["start"] == expiries[-1]["detail"]["through_seq"] + 1
    rep = verify(tmp_path)
    assert rep.ok, rep.reason
    assert any(n.startswith("entries 1 to ") and "expired by retention" in n for n in rep.notes)
    # deleting the oldest retained segment is not retention: detected
    segment_paths(tmp_path)[0].unlink()
    rep = verify(tmp_path)
    assert not rep.ok and "entries were removed from the start" in rep.reason
