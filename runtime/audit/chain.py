"""The prediction log on disk: segments of MAC-chained JSON lines, appended under a lock,
with a torn last line repaired, segments rotated and expired, and checkpoints signed.

Layout of a log folder (docs/serving.md#prediction-log):

    predictions.jsonl                 the active segment
    predictions.<first seq>.jsonl     rotated segments (12 digits, oldest first)
    predictions.lock                  the lock every writer takes to append
    checkpoints.jsonl                 signed checkpoints (runtime/audit/checkpoints.py)

Every line is canonical JSON whose last member is `mac`: HMAC-SHA256 under the log key of
the line without it (the *body*). Every body holds `seq` (1, 2, ... over the whole log) and
`prev_mac` (the MAC of entry seq-1; 64 zeros for the first). Each segment starts with a
`segment` event carrying the salt of its encryption subkey (runtime/sealed.py); repairs
and expiries are `repair` and `expiry` events in the same chain.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from aiops.runtime.audit import checkpoints as cps
from aiops.runtime.sealed import Opener, Sealer

GENESIS = "0" * 64
LOG_NAME = "predictions.jsonl"
LOCK_NAME = "predictions.lock"
SEGMENT_MAX_ENTRIES = 1 << 30  # entries per segment, so per encryption subkey (< 2^32)
ROTATE_S = 86400.0  # a segment is rotated after a day
CHECKPOINT_S = 10.0  # a checkpoint at most this often while entries are written
_SUFFIX = b',"mac":"'
_SUFFIX_LEN = len(',"mac":""}') + 64
_ROTATED = re.compile(r"^predictions\.(\d{12})\.jsonl$")
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class ChainError(Exception):
    """The log cannot be continued as it is; the message says what to do."""


def iso_ts(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ts_seconds(ts: Any) -> float | None:
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def split_line(line: bytes) -> tuple[bytes, str] | None:
    """(body, mac) of a line without its newline, or None if it does not end with a MAC."""
    suffix = line[-_SUFFIX_LEN:]
    if len(line) <= _SUFFIX_LEN or not (suffix.startswith(_SUFFIX) and suffix.endswith(b'"}')):
        return None
    return line[:-_SUFFIX_LEN] + b"}", suffix[8:-2].decode("ascii", "replace")


def mac_of(key: bytes | None, body: bytes) -> str:
    return hmac.new(key or b"", body, hashlib.sha256).hexdigest()


def segment_paths(log_dir: str | Path) -> list[Path]:
    """The log's segment files, oldest first (the active one last)."""
    d = Path(log_dir)
    rotated = sorted(p for p in d.glob("predictions.*.jsonl") if _ROTATED.match(p.name))
    active = d / LOG_NAME
    return rotated + ([active] if active.is_file() else [])


def _first_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.readline()


def _last_line(fh) -> tuple[bytes, int]:
    """(the last complete line without its newline, the offset just after it) of an open
    binary file; (b"", 0) if it has none. Bytes after the last newline are ignored."""
    end = fh.seek(0, os.SEEK_END)
    pos, buf = end, b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        nl = buf.rfind(b"\n")
        if nl < 0:
            continue
        prev = buf.rfind(b"\n", 0, nl)
        if prev >= 0 or pos == 0:
            return buf[prev + 1:nl], pos + nl + 1
    return b"", 0


def _body(line: bytes, key: bytes | None, where: str) -> dict[str, Any]:
    parts = split_line(line)
    if parts is None or not hmac.compare_digest(mac_of(key, parts[0]), parts[1]):
        raise ChainError(f"the last entry of {where} does not verify under the log key (a log of another key or "
                         "format, or altered); run 'aiops audit verify' on the folder, and move the log aside to "
                         "start a new one")
    return json.loads(parts[0])


# ---------------------------------------------------------------- appending
class ChainWriter:
    """Appends entries to the active segment under an exclusive lock on predictions.lock,
    continuing the chain from what is on disk (several processes share one chain)."""

    def __init__(self, log_dir: str | Path, log_key: bytes | None = None, data_key: bytes | None = None,
                 seed: bytes | None = None, retention_days: int | None = None,
                 checkpoint_s: float = CHECKPOINT_S, rotate_s: float = ROTATE_S,
                 max_entries: int = SEGMENT_MAX_ENTRIES, clock=time.time):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / LOG_NAME
        self.cp_path = self.dir / cps.CHECKPOINTS_NAME
        self._lock_fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        self.log_key, self.data_key, self.seed = log_key, data_key, seed
        self.retention_s = retention_days * 86400.0 if retention_days else None
        self.checkpoint_s, self.rotate_s, self.max_entries, self.clock = checkpoint_s, rotate_s, max_entries, clock
        self._mac = hmac.new(log_key or b"", digestmod=hashlib.sha256)
        self._fd: int | None = None
        self._ino = -1
        self._size = -1
        self.seq, self.prev = 0, GENESIS
        self._seg_first, self._seg_ts = 1, 0.0
        self._sealer: Sealer | None = None
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._force_cp: str | None = None
        self._cp_t = clock()
        self._cp_seq = -1
        self._expiry_t = float("-inf")
        self.written = 0

    # ------------------------------------------------------------- the public operations
    def append(self, parts: list[tuple[str, str, tuple[str, bytes] | None]]) -> None:
        """Chain and append entries given as (text before prev_mac's value, text from `,"ts"`
        to the end, (prediction id, plain body[, kind kept in clear]) to seal or None). Also
        repairs, rotates, expires and checkpoints when due."""
        now = self.clock()
        with self._locked():
            self._sync(now)
            self._write(self._events_parts(now) + list(parts))
            self._expire_due(now)
            self._checkpoint_due(now)
        self.written += len(parts)

    def tick(self) -> None:
        """Checkpoint and expire when due, with nothing to append (the writer calls it when idle)."""
        now = self.clock()
        if now - self._cp_t >= self.checkpoint_s or (self.retention_s and now - self._expiry_t >= self.checkpoint_s):
            self.append([])

    def close(self, reason: str = "shutdown") -> None:
        """A last checkpoint (a clean shutdown), then release the files."""
        try:
            with self._locked():
                self._sync(self.clock())
                self._write(self._events_parts(self.clock()))
                if self.seq != self._cp_seq:
                    self._checkpoint(self.clock(), reason)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            os.close(self._lock_fd)

    # ------------------------------------------------------------- locking and reading the tail
    class _Lock:
        def __init__(self, fd: int):
            self.fd = fd

        def __enter__(self):
            fcntl.flock(self.fd, fcntl.LOCK_EX)

        def __exit__(self, *exc):
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _locked(self) -> "_Lock":
        return self._Lock(self._lock_fd)

    def _sync(self, now: float) -> None:
        """Make the in-memory tail (seq, prev, segment) match the disk, repairing a torn last
        line and starting or rotating the active segment as needed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or st.st_size == 0:
            self._start_segment(now)
        elif st.st_ino != self._ino:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            self._ino = os.fstat(self._fd).st_ino
            self._read_tail()
            self._read_head()
        elif st.st_size != self._size:
            self._read_tail()
        self._write(self._events_parts(now))  # a repair is logged in the segment it repaired
        if self.seq - self._seg_first + 1 >= self.max_entries or now - self._seg_ts >= self.rotate_s:
            self._rotate(now)

    def _read_tail(self) -> None:
        with os.fdopen(os.dup(self._fd), "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            last, after = _last_line(fh)
            if after < end:  # a torn last line (a write cut short): keep the whole entries
                fh.seek(after)
                torn = fh.read()
                os.ftruncate(self._fd, after)
                self._events.append(("repair", {"removed_bytes": len(torn),
                                                "removed_sha256": hashlib.sha256(torn).hexdigest(),
                                                "segment": self.path.name}))
                self._force_cp = "repair"
                print(f"aiops serve: repaired {self.path}: removed a torn last line of {len(torn)} bytes "
                      "(logged as a 'repair' event)", file=__import__("sys").stderr, flush=True)
        if not last:
            self._size = 0
            self._start_segment(self.clock())
            return
        e = _body(last, self.log_key, str(self.path))
        self.seq, self.prev = int(e["seq"]), split_line(last)[1]
        self._size = after

    def _read_head(self) -> None:
        e = _body(_first_line(self.path).rstrip(b"\n"), self.log_key, str(self.path) + " (its first line)")
        if e.get("event") != "segment":
            raise ChainError(f"{self.path} does not start with a segment event; move it aside to start a new log")
        self._seg_first, self._seg_ts = int(e["seq"]), ts_seconds(e["ts"]) or 0.0
        salt = bytes.fromhex(e["detail"]["salt"])
        self._sealer = Sealer(self.data_key, "log-entry", salt=salt) if self.data_key else None

    def _start_segment(self, now: float) -> None:
        """A new active segment (the file is missing or empty), continuing the chain from
        the newest rotated segment, or from the start."""
        rotated = [p for p in segment_paths(self.dir) if p != self.path]
        self.seq, self.prev = 0, GENESIS
        if rotated:
            with rotated[-1].open("rb") as fh:
                last, _ = _last_line(fh)
            if last:
                e = _body(last, self.log_key, str(rotated[-1]))
                self.seq, self.prev = int(e["seq"]), split_line(last)[1]
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._ino = os.fstat(self._fd).st_ino
        self._size = os.fstat(self._fd).st_size
        salt = os.urandom(16)
        self._sealer = Sealer(self.data_key, "log-entry", salt=salt) if self.data_key else None
        self._seg_first, self._seg_ts = self.seq + 1, now
        self._write([_event("segment", {"encrypted": self.data_key is not None, "salt": salt.hex()}, now)])

    def _rotate(self, now: float) -> None:
        os.rename(self.path, self.dir / f"predictions.{self._seg_first:012d}.jsonl")
        self._start_segment(now)

    # ------------------------------------------------------------- writing
    def _events_parts(self, now: float) -> list:
        out = [_event(kind, detail, now) for kind, detail in self._events]
        self._events = []
        return out

    def _write(self, parts: list) -> None:
        if not parts:
            return
        prev, seq, mac, sealer = self.prev, self.seq, self._mac, self._sealer
        lines = []
        for pre, tail, seal in parts:
            if seal is not None:
                if sealer is None:
                    raise ChainError("an encrypted entry needs the data key")
                pid, plain, *kind = seal  # a kind (a prompt call's) stays in clear: verify counts by kind
                pre = ('{"enc":"' + base64.b64encode(sealer.one(plain, pid)).decode() + '",' +
                       (f'"kind":{_dumps(kind[0])},' if kind else '') + '"prediction_id":' + _dumps(pid) +
                       ',"prev_mac":"')
            seq += 1
            body = (pre + prev + '","seq":' + str(seq) + tail).encode()
            m = mac.copy()
            m.update(body)
            prev = m.hexdigest()
            lines.append(body[:-1] + b',"mac":"' + prev.encode() + b'"}\n')
        data = memoryview(b"".join(lines))
        while data:
            data = data[os.write(self._fd, data):]
        self.seq, self.prev = seq, prev
        self._size = os.fstat(self._fd).st_size

    # ------------------------------------------------------------- checkpoints and expiry
    def _checkpoint_due(self, now: float) -> None:
        if self._force_cp or (self.seq != self._cp_seq and now - self._cp_t >= self.checkpoint_s):
            self._checkpoint(now, self._force_cp or "interval")

    def _checkpoint(self, now: float, reason: str) -> None:
        first = segment_paths(self.dir)[0]
        e = json.loads(split_line(_first_line(first).rstrip(b"\n"))[0])
        cp = cps.make(self.seq, self.prev, int(e["seq"]), e["prev_mac"], iso_ts(now), reason, self.seed)
        os.fsync(self._fd)  # a checkpoint never names entries a power cut could lose
        fd = os.open(self.cp_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, cps.line(cp))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._cp_t, self._cp_seq, self._force_cp = now, self.seq, None

    def _expire_due(self, now: float) -> None:
        """Delete rotated segments whose every entry is older than the retention period,
        then log an `expiry` event and checkpoint the new start of the log."""
        if not self.retention_s or now - self._expiry_t < self.checkpoint_s:
            return
        self._expiry_t = now
        segs = segment_paths(self.dir)
        gone: list[Path] = []
        for seg, nxt in zip(segs, segs[1:]):  # a segment ends when the next one starts
            e = json.loads(split_line(_first_line(nxt).rstrip(b"\n"))[0])
            ended = ts_seconds(e.get("ts"))
            if ended is None or ended > now - self.retention_s:
                break
            gone.append(seg)
        if not gone:
            return
        with gone[-1].open("rb") as fh:
            last, _ = _last_line(fh)
        through = json.loads(split_line(last)[0])["seq"]
        for p in gone:
            p.unlink()
        self._write([_event("expiry", {"retention_days": round(self.retention_s / 86400, 6),
                                       "segments": [p.name for p in gone], "through_seq": through,
                                       "through_mac": split_line(last)[1]}, now)])
        self._checkpoint(now, "expiry")


def _event(kind: str, detail: dict[str, Any], now: float) -> tuple[str, str, None]:
    return ('{"detail":' + _dumps(detail) + ',"event":' + _dumps(kind) + ',"prev_mac":"',
            ',"ts":"' + iso_ts(now) + '"}', None)


# ---------------------------------------------------------------- reading
def _opener(key: Any) -> Opener | None:
    if key is None:
        return None
    return key if isinstance(key, Opener) else Opener(key if isinstance(key, bytes) else key.key)


def open_entry(e: dict[str, Any], key: Any) -> dict[str, Any]:
    """An entry with its `enc` opened (key: the data key, a Cipher or an Opener): the plain
    fields, plus prev_mac, seq and mac. Raises SealedError when it does not open."""
    from aiops.runtime.sealed import SealedError

    if "enc" not in e:
        return e
    opener = _opener(key)
    if opener is None:
        raise SealedError("the log is encrypted: pass the data key (the variable serving.json "
                          "security.encryption_at_rest.key_env names)")
    pid = e.get("prediction_id")
    plain = json.loads(opener.open(base64.b64decode(e["enc"]), f"entry {pid}", "log-entry", str(pid)))
    plain.update(prev_mac=e.get("prev_mac"), seq=e.get("seq"), mac=e.get("mac"))
    return plain


def lines(path: str | Path) -> Iterator[bytes]:
    """Every line of a log (a folder: all its segments in order; or one file)."""
    p = Path(path)
    for seg in (segment_paths(p) if p.is_dir() else [p]):
        with seg.open("rb") as fh:
            yield from fh


@contextmanager
def open_lines(path: str | Path) -> Iterator[Iterator[bytes]]:
    """`with open_lines(path) as fh: for line in fh:` over every segment (see lines)."""
    it = lines(path)
    try:
        yield it
    finally:
        it.close()


def read_entries(path: str | Path, key: Any = None, events: bool = False) -> Iterator[dict[str, Any]]:
    """Every entry as a dict, decrypted with `key` when encrypted (the data key, a Cipher);
    events only when asked. Does not verify the chain (audit_verify does)."""
    opener = _opener(key)
    for ln in lines(path):
        if not ln.strip():
            continue
        e = json.loads(ln)
        if "event" in e and not events:
            continue
        yield open_entry(e, opener)
