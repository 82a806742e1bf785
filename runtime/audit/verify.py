"""Verifying a prediction log (`aiops audit verify`, GET /v1/audit/verify): the tabular server's
predictions and the GenAI server's prompt calls, counted by kind.

What is checked, in one pass over the segments (oldest first):
- every line is whole and ends with its MAC, and the MAC is HMAC-SHA256 of the body under
  the log key (an edited line, or a line forged without the key, fails here);
- `seq` counts up by one and `prev_mac` is the MAC of the entry before (a deleted, inserted
  or reordered entry fails here); every segment starts with its `segment` event;
- the log starts at entry 1, or where its last `expiry` event says retention ended it;
- every checkpoint (checkpoints.jsonl, and those the verifier kept: `saved`) is extended by
  the log: entry `count` exists and has MAC `head` (entries cut off the end, a rewritten or
  a deleted log fail here). With trusted keys, every checkpoint must be signed by one.

Without the log key, only an unkeyed log (written without AIOPS_LOG_KEY) can be checked;
a keyed one raises NeedKey.
"""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiops.runtime.audit import checkpoints as cps
from aiops.runtime.audit.chain import GENESIS, LOG_NAME, mac_of, segment_paths, split_line


PROMPT_KIND = "prompt"  # the `kind` of a prompt call's entry (runtime/genai/logentry.py)


class NeedKey(Exception):
    """The log is keyed and no log key was given."""


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    entries: int  # entries read (all kinds, events included), in the retained segments
    predictions: int  # entries of a model's predictions (the tabular server's)
    reason: str
    last_mac: str
    where: str | None = None  # "file: line N" of the first problem
    checkpoint: dict[str, Any] | None = None  # the newest checkpoint the log extends
    notes: tuple[str, ...] = field(default_factory=tuple)
    prompt_calls: int = 0  # entries of prompt calls (the GenAI server's: "kind": "prompt", in clear when sealed)

    @property
    def records(self) -> str:
        """What the entries record, by kind: '5 predictions', '1 prompt call', '2 predictions, 3 prompt calls'."""
        parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                 ((self.predictions, "prediction"), (self.prompt_calls, "prompt call")) if n]
        return ", ".join(parts) or "0 predictions"

    def text(self, path: Path | str) -> str:
        if not self.ok:
            return f"broken: {self.where or path}: {self.reason}"
        cp = self.checkpoint
        since = (f"checkpoint of {cp['ts']} at entry {cp['count']}" + (f" signed by {cp['public_key'][:16]}..."
                 if cp.get("sig") else " (unsigned)")) if cp else "no checkpoint yet"
        notes = "".join(f"\n  note: {n}" for n in self.notes)
        return (f"ok: {path}: {self.entries} entries ({self.records}), the MAC chain is intact "
                f"and extends the last {since} (last MAC {self.last_mac[:16]}...){notes}")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "predictions": self.predictions,
                "prompt_calls": self.prompt_calls, "reason": self.reason,
                "where": self.where, "last_mac": self.last_mac, "checkpoint": self.checkpoint,
                "notes": list(self.notes)}


def _broken(where: str, reason: str, entries: int = 0, preds: int = 0, calls: int = 0,
            last: str = GENESIS) -> AuditReport:
    return AuditReport(False, entries, preds, reason, last, where, prompt_calls=calls)


def verify_log(path: str | Path, log_key: bytes | None, trusted: list[str] | None = None,
               saved: list[tuple[str, Any]] = ()) -> AuditReport:
    """Verify the log at `path` (its folder, or the active file in it). `saved`: checkpoints
    the verifier kept, as (where it came from, checkpoint)."""
    p = Path(path)
    d = p if p.is_dir() or not p.name.endswith(".jsonl") else p.parent
    notes: list[str] = []
    # ------------------------------------------------------------- checkpoints
    held: list[tuple[str, dict[str, Any]]] = []
    cp_file = d / cps.CHECKPOINTS_NAME
    found = [(f"{cp_file}: line {n}", cp) for n, cp in cps.read(cp_file)] if cp_file.is_file() else []
    for where, cp in found + list(saved):
        why = cps.problem(cp, trusted)
        if why:
            return _broken(where, f"the checkpoint {why}")
        held.append((where, cp))
    if held and trusted is None:
        notes.append("checkpoint signatures were not checked: give the trusted public keys "
                     "(--trusted-keys or AIOPS_LOG_TRUSTED_KEYS)")
    need = {cp["count"] for _, cp in held}
    # ------------------------------------------------------------- the chain
    segs = [s for s in segment_paths(d) if s.stat().st_size]
    if not segs:
        if any(cp["count"] > 0 for _, cp in held):
            where, cp = max(held, key=lambda h: h[1]["count"])
            return _broken(str(d / LOG_NAME), f"the log is missing or empty, but the checkpoint of {cp['ts']} ({where}) "
                           f"records {cp['count']} entries")
        return AuditReport(True, 0, 0, "no entries yet", GENESIS, None, None, tuple(notes))
    key = log_key
    if key is None:
        first = split_line(segs[0].open("rb").readline().rstrip(b"\n")) or (b"", "")
        if not hmac.compare_digest(mac_of(b"", first[0]), first[1]):
            raise NeedKey(f"{segs[0]} is MAC-chained under a log key: give it (AIOPS_LOG_KEY or AIOPS_LOG_KEY_FILE)")
        notes.append("the log is UNKEYED (written without AIOPS_LOG_KEY): it detects accidents, not tampering")
    macs: dict[int, str] = {}
    prev, seq, n_entries, n_preds, n_calls = None, None, 0, 0, 0
    start: tuple[int, str] | None = None
    expired_to: tuple[int, str] = (0, GENESIS)
    for seg in segs:
        with seg.open("rb") as fh:
            for ln, line in enumerate(fh, 1):
                where = f"{seg}: line {ln}"
                if not line.endswith(b"\n"):
                    return _broken(where, "the line is incomplete (a torn write; the server repairs it when it starts)",
                                   n_entries, n_preds, n_calls, prev or GENESIS)
                parts = split_line(line[:-1])
                if parts is None:
                    return _broken(where, "the line does not end with its MAC", n_entries, n_preds, n_calls,
                                   prev or GENESIS)
                body, mac = parts
                if not hmac.compare_digest(mac_of(key, body), mac):
                    return _broken(where, "the content does not match its MAC (the line was edited, or written "
                                   "without the log key)", n_entries, n_preds, n_calls, prev or GENESIS)
                try:
                    e = json.loads(body)
                    e_seq, e_prev = e["seq"], e["prev_mac"]
                except (ValueError, KeyError, TypeError):
                    return _broken(where, "the line is not a log entry (no seq or prev_mac)", n_entries, n_preds,
                                   n_calls, prev or GENESIS)
                if ln == 1 and e.get("event") != "segment":
                    return _broken(where, "the segment does not start with its 'segment' event", n_entries, n_preds,
                                   n_calls, prev or GENESIS)
                if prev is None:
                    start = (e_seq, e_prev)
                elif e_prev != prev or e_seq != seq + 1:
                    return _broken(where, f"entry {e_seq} does not follow entry {seq} (prev_mac or seq differs): "
                                   "an entry was removed, inserted or reordered before this one",
                                   n_entries, n_preds, n_calls, prev)
                if e.get("event") == "expiry":
                    det = e.get("detail") or {}
                    expired_to = (int(det.get("through_seq", 0)), str(det.get("through_mac", "")))
                prev, seq = mac, e_seq
                n_entries += 1
                if "event" not in e:  # a record: a prompt call says so, in clear even when sealed
                    if e.get("kind") == PROMPT_KIND:
                        n_calls += 1
                    else:
                        n_preds += 1
                if seq in need:
                    macs[seq] = mac
    assert start is not None and prev is not None and seq is not None
    if start != (expired_to[0] + 1, expired_to[1] if expired_to[0] else GENESIS):
        return _broken(f"{segs[0]}: line 1", f"the log starts at entry {start[0]}, but " +
                       (f"its last expiry event ended retention at entry {expired_to[0]}" if expired_to[0]
                        else "no expiry event accounts for the entries before it") +
                       ": entries were removed from the start", n_entries, n_preds, n_calls, prev)
    if expired_to[0]:
        notes.append(f"entries 1 to {expired_to[0]} were expired by retention (an 'expiry' event, checkpointed)")
    # ------------------------------------------------------------- the log extends every checkpoint
    newest = None
    for where, cp in held:
        c = cp["count"]
        if c < start[0]:
            continue  # expired by retention (checked above)
        if c > seq:
            return _broken(str(segs[-1]), f"the log ends at entry {seq}, but the checkpoint of {cp['ts']} ({where}) "
                           f"records {c} entries: entries were removed from the end, or the log was replaced",
                           n_entries, n_preds, n_calls, prev)
        if macs.get(c) != cp["head"]:
            return _broken(where, f"entry {c} does not have the MAC the checkpoint of {cp['ts']} records: "
                           "the log was rewritten", n_entries, n_preds, n_calls, prev)
        if newest is None or c >= newest["count"]:
            newest = cp
    if newest is not None and newest["count"] < seq:
        notes.append(f"{seq - newest['count']} entries after the last checkpoint are not yet covered by one")
    return AuditReport(True, n_entries, n_preds, "intact", prev, None, newest, tuple(notes), n_calls)
