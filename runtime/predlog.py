"""The prediction log: one JSON object per line, PII masked, optionally encrypted, and
chained by hashes so that any edit, insertion or deletion is detected (`verify_chain`).

Format (docs/serving.md describes it for readers such as `aiops monitor`):

    {"endpoint": ..., "inputs": {...}, "manifest_sha256": ..., "model": {"name", "version"},
     "output": {"label", "probabilities"} | {"value"}, "prediction_id": ..., "prev_hash": ...,
     "ts": "2026-01-31T12:00:00.123456Z"[, "job_id": ...],"hash":"<64 hex>"}

The body is the line without its `,"hash":"..."` suffix, written as canonical JSON (sorted
keys, no spaces, ASCII); `hash` = sha256 of those body bytes, and `prev_hash` is the hash of
the line before (64 zeros for the first). With encryption at rest the body holds
`prediction_id`, `ts`, `kid` (key id), `enc` (base64 of AES-GCM nonce + ciphertext of the
plain body's other fields, the prediction id as associated data) and `prev_hash`.

Who does the work: the response path hands the request and response bytes it already has
to a list (`PredictionLog.submit_http`); a forwarding thread writes them to a pipe; a
writer process (`python -m runtime.predlog`, one per server worker) parses, masks,
encrypts, chains and appends. So the server's GIL is not spent on the log. Writers append
under an exclusive file lock, so the workers of one server share one chain.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .masking import Masker
from .policy import Cipher

GENESIS = "0" * 64
LOG_NAME = "predictions.jsonl"
HEAD_NAME = "predictions.head.json"
_SUFFIX_LEN = len(',"hash":""}') + 64
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode
_LEN = struct.Struct(">I")
_loads = json.JSONDecoder().decode


class ChainError(Exception):
    pass


def iso_ts(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    """iso_ts for a stream of nearby times: the date and time of day are formatted once per
    second, the microseconds each time (the same text as iso_ts)."""

    def __init__(self):
        self._base: datetime | None = None
        self._text = ""

    def text(self, t: float) -> str:
        d = datetime.fromtimestamp(t, timezone.utc)
        us = d.microsecond
        base = d.replace(microsecond=0) if us else d
        if base != self._base:
            self._base, self._text = base, base.strftime("%Y-%m-%dT%H:%M:%S")
        return "%s.%06dZ" % (self._text, us)


def _finite(x: Any) -> Any:
    return x if not isinstance(x, float) or math.isfinite(x) else None


def _last_hash(fh) -> str:
    """The hash of the last complete line of an open binary file (GENESIS if empty)."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return GENESIS
    pos = end
    buf = b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        stripped = buf.rstrip(b"\n")
        nl = stripped.rfind(b"\n")
        if nl >= 0 or pos == 0:
            last = stripped[nl + 1:]
            try:
                return json.loads(last)["hash"]
            except (ValueError, KeyError, TypeError):
                raise ChainError(f"the last line of {fh.name} is not a prediction log entry; "
                                 "run 'aiops audit verify' on the folder") from None
    return GENESIS


# ---------------------------------------------------------------- building and appending entries
class EntryBuilder:
    """Entries as (text before prev_hash's value, text after it): canonical JSON built from
    canonical pieces in sorted key order (tests hold it to json.dumps of the parsed line)."""

    def __init__(self, masker: Masker, columns: tuple[str, ...], model: dict[str, str], manifest_sha256: str,
                 cipher: Cipher | None):
        self.masker = masker
        self.columns = tuple(columns)
        self._model = _dumps(dict(model))
        self._msha = _dumps(manifest_sha256)
        self.cipher = cipher
        self._kid = _dumps(cipher.key_id) if cipher is not None else ""
        self._clock = Clock()

    def parts(self, ts: float, endpoint: str, job_id: str | None,
              rows: list[tuple[str, Any, dict[str, Any]]]) -> list[tuple[str, str]]:
        """rows: (prediction id, the record as received, output object)."""
        tail = ',"ts":"' + self._clock.text(ts) + '"}'
        head = '{"endpoint":' + _dumps(endpoint) + ',"inputs":'
        mid = (',"job_id":' + _dumps(job_id) if job_id is not None else "") + \
            ',"manifest_sha256":' + self._msha + ',"model":' + self._model + ',"output":'
        cols, mask, cipher = self.columns, self.masker, self.cipher
        out = []
        for pid, rec, output in rows:
            inputs = mask.mask_record(rec, cols) if isinstance(rec, dict) else {}
            plain = head + _dumps(inputs) + mid + _dumps(output) + ',"prediction_id":' + _dumps(pid)
            if cipher is None:
                out.append((plain + ',"prev_hash":"', '"' + tail))
            else:
                blob = cipher.seal((plain + tail).encode(), pid.encode())
                out.append(('{"enc":"' + base64.b64encode(blob).decode() + '","kid":' + self._kid +
                            ',"prediction_id":' + _dumps(pid) + ',"prev_hash":"', '"' + tail))
        return out


class ChainWriter:
    """Appends entries to <dir>/predictions.jsonl under an exclusive flock, continuing the
    chain from the file's last line, and rewrites the head file in place."""

    def __init__(self, log_dir: str | Path):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / LOG_NAME
        self._fh = open(self.path, "ab+")
        self._head_fd = os.open(self.dir / HEAD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        self._known_size = -1
        self._known_hash = GENESIS
        self.written = 0

    def append(self, parts: list[tuple[str, str]]) -> None:
        if not parts:
            return
        fh = self._fh
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            size = os.fstat(fh.fileno()).st_size
            prev = self._known_hash if size == self._known_size else _last_hash(fh)
            lines = []
            sha = hashlib.sha256
            for pre, post in parts:
                body = (pre + prev + post).encode()
                prev = sha(body).hexdigest()
                lines.append(body[:-1] + b',"hash":"' + prev.encode() + b'"}\n')
            fh.seek(0, os.SEEK_END)
            fh.write(b"".join(lines))
            fh.flush()
            self._known_size = fh.tell()
            self._known_hash = prev
            # one fixed-size record rewritten in place: one syscall, no rename
            os.pwrite(self._head_fd, f'{{"hash":"{prev}","bytes":{self._known_size}}}'.ljust(127).encode() + b"\n", 0)
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        self.written += len(parts)

    def close(self) -> None:
        self._fh.close()
        os.close(self._head_fd)


def rows_of_frame(hdr: dict[str, Any], body: bytes) -> list[tuple[str, Any, dict[str, Any]]]:
    """(prediction id, record, output) of one frame from the server."""
    if hdr["t"] == "http":
        n = hdr["req"]
        req, resp = _loads(body[:n].decode()), _loads(body[n:].decode())  # UTF-8: the server decoded both
        if hdr["endpoint"] == "explain":
            recs = [req["record"] if "record" in req else req["records"][0]]
            preds = [resp["prediction"]]
        else:
            recs, preds = req["records"], resp["predictions"]
        rows = []
        for rec, p in zip(recs, preds):
            out = {"value": _finite(p["value"])} if "value" in p else \
                {"label": p["label"], "probabilities": p["probabilities"]}
            rows.append((p["prediction_id"], rec, out))
        return rows
    d = json.loads(body)  # "rows": {"ids", "records", "label" + "probabilities" | "value", "classes"}
    if "value" in d:
        outs = [{"value": _finite(v)} for v in d["value"]]
    else:
        classes = d["classes"]
        outs = [{"label": lab, "probabilities": dict(zip(classes, p))} for lab, p in zip(d["label"], d["probabilities"])]
    return list(zip(d["ids"], d["records"], outs))


# ---------------------------------------------------------------- the server side
def _frame(header: dict[str, Any], *bodies: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode() + b"\n"
    return _LEN.pack(len(h) + sum(len(b) for b in bodies)) + h + b"".join(bodies)


class PredictionLog:
    """The server's handle on its writer process. `submit_http` and `submit` never wait for
    the disk; they wait for room only when more than `max_bytes` are queued (the writer
    cannot keep up), so entries are never dropped.

    Hand-off: a submit appends its frame to a list under a lock (well under a microsecond)
    and wakes the forwarding thread only if it is not already due to run; the thread lets
    frames gather for GATHER seconds, takes the whole list and writes it to the pipe in one
    call. Under load that is one wake-up and one write per GATHER, not per request, so the
    thread seldom competes with the event loop for the GIL."""

    GATHER = 0.002

    def __init__(self, log_dir: str | Path, masker: Masker, columns: tuple[str, ...], model: dict[str, str],
                 manifest_sha256: str, classes: tuple[str, ...], cipher: Cipher | None = None,
                 max_bytes: int = 64 << 20):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / LOG_NAME
        self.classes = list(classes)
        self._config = {"t": "config", "dir": str(self.dir.resolve()), "columns": list(columns),
                        "model": dict(model), "manifest_sha256": manifest_sha256,
                        "masker": masker.config(),
                        "key": cipher.key.hex() if cipher is not None else None}
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._items: list[Any] = []  # frames (bytes), flush markers (Event), the stop marker (None)
        self._queued = 0  # bytes of frames not yet handed to the writer process
        self._armed = False  # the forwarding thread has been woken for what is in _items
        self._wake = threading.Event()
        self._dead = False
        self.failed = 0
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    @property
    def has_room(self) -> bool:
        """False while more than max_bytes wait for the writer: the event loop then answers 503
        with Retry-After (runtime/server.py) instead of waiting here, which would stall every
        connection. A request let in is always logged: the queue may pass max_bytes by the
        requests already in flight, never more."""
        return self._queued <= self.max_bytes

    def submit_http(self, endpoint: str, ts: float, request: bytes, response: bytes) -> None:
        """Log the predictions of one answered request from its JSON bytes. Never waits (it
        runs on the event loop): the server checks `has_room` before it does the work."""
        h = b'{"t":"http","endpoint":"%s","ts":%r,"req":%d}\n' % (endpoint.encode(), ts, len(request))
        self._put(_LEN.pack(len(h) + len(request) + len(response)) + h + request + response, wait=False)

    def submit(self, endpoint: str, ids: list[str], records: list[Any], outputs: dict[str, Any],
               job_id: str | None = None, ts: float | None = None) -> None:
        """Log predictions given as records and predictor outputs (numpy arrays)."""
        import time

        d: dict[str, Any] = {"ids": ids, "records": records}
        if "value" in outputs:
            d["value"] = outputs["value"].tolist()
        else:
            d.update(classes=self.classes, label=outputs["label"].tolist(),
                     probabilities=outputs["probabilities"].tolist())
        self._put(_frame({"t": "rows", "endpoint": endpoint, "ts": ts or time.time(), "job_id": job_id},
                         json.dumps(d).encode()))

    def _put(self, item: Any, wait: bool = True) -> None:
        if self._dead:  # said loudly when it happened; /readyz reports it
            if type(item) is bytes:
                self.failed += 1
            elif item is not None:
                item.set()
            return
        with self._room:
            if type(item) is bytes:
                while wait and self._queued > self.max_bytes and self.alive:  # back-pressure, never loss
                    self._room.wait(1.0)
                self._queued += len(item)
            self._items.append(item)
            if self._armed:
                return
            self._armed = True
        self._wake.set()

    @property
    def alive(self) -> bool:
        return (self._thread is not None and self._thread.is_alive() and self._proc is not None
                and self._proc.poll() is None)

    def start(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "runtime.predlog"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, close_fds=True)
        self._write(_frame(self._config))
        self._thread = threading.Thread(target=self._forward, name="aiops-predlog", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is on disk (tests, shutdown)."""
        done = threading.Event()
        self._put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            self._put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc.stdout.close()
            self._proc = None

    def _write(self, data: bytes) -> None:
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def _send(self, frames: list[bytes]) -> None:
        data = b"".join(frames)
        self._write(data)
        with self._room:
            self._queued -= len(data)
            self._room.notify_all()

    def _forward(self) -> None:
        import time

        sync = 0
        while True:
            self._wake.wait()
            time.sleep(self.GATHER)  # let frames gather: one wake-up and one write for many requests
            with self._lock:
                self._wake.clear()
                self._armed = False
                items, self._items = self._items, []
            frames: list[bytes] = []
            try:
                for it in items:
                    if type(it) is bytes:
                        frames.append(it)
                        continue
                    if frames:
                        self._send(frames)
                        frames = []
                    if it is None:
                        return
                    sync += 1  # a flush marker: wait for the writer to confirm
                    self._write(_frame({"t": "sync", "n": sync}))
                    self._proc.stdout.readline()
                    it.set()
                if frames:
                    self._send(frames)
            except OSError as exc:  # the writer process died: keep the server up, say so
                self._dead = True
                self.failed += len(frames)
                print(f"aiops serve: the prediction log writer is gone ({exc}); predictions are not being "
                      f"logged to {self.path}", file=sys.stderr, flush=True)
                for it in items:
                    if isinstance(it, threading.Event):
                        it.set()
                return


# ---------------------------------------------------------------- the writer process
def _frames(fd: int) -> Iterator[tuple[dict[str, Any], bytes] | None]:
    """Frames read from fd; None whenever no complete frame is buffered (time to write)."""
    buf = b""
    at = 0
    unpack = _LEN.unpack_from
    while True:
        size = len(buf)
        while size - at >= 4:
            end = at + 4 + unpack(buf, at)[0]
            if end > size:
                break
            nl = buf.index(b"\n", at + 4, end)
            yield _loads(buf[at + 4:nl].decode()), buf[nl + 1:end]
            at = end
        yield None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        buf = buf[at:] + chunk
        at = 0


def writer_main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: drain, exit on EOF
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = _frames(sys.stdin.fileno())
    first = next(f for f in frames if f is not None)
    cfg = first[0]
    cipher = Cipher(bytes.fromhex(cfg["key"])) if cfg.get("key") else None
    builder = EntryBuilder(Masker.from_config(cfg["masker"]), tuple(cfg["columns"]),
                           cfg["model"], cfg["manifest_sha256"], cipher)
    writer = ChainWriter(cfg["dir"])
    pending: list[tuple[str, str]] = []
    out = sys.stdout.buffer
    for f in frames:
        if f is None or len(pending) >= 4096:
            try:
                writer.append(pending)
            except (OSError, ChainError) as exc:
                print(f"aiops serve: could not append {len(pending)} prediction log entries to {writer.path}: "
                      f"{exc}", file=sys.stderr, flush=True)
            pending = []
            if f is None:
                continue
        hdr, body = f
        if hdr["t"] == "sync":
            writer.append(pending)
            pending = []
            out.write(b"%d\n" % hdr["n"])
            out.flush()
            continue
        try:
            pending += builder.parts(hdr["ts"], hdr["endpoint"], hdr.get("job_id"), rows_of_frame(hdr, body))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            print(f"aiops serve: a prediction log frame could not be read ({type(exc).__name__}: {exc})",
                  file=sys.stderr, flush=True)
    writer.append(pending)
    writer.close()
    return 0


# ---------------------------------------------------------------- reading and verifying
@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int  # complete lines read
    broken_line: int | None  # 1-based line number of the first entry that does not verify
    reason: str
    last_hash: str

    def text(self, path: Path) -> str:
        if self.ok:
            return f"ok: {path}: {self.entries} entries, the hash chain is intact (last hash {self.last_hash[:16]}...)"
        return f"broken: {path}: line {self.broken_line}: {self.reason}"


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p / LOG_NAME if p.is_dir() else p


def verify_chain(path: str | Path) -> ChainReport:
    """Check every line of a prediction log (a file or the folder holding predictions.jsonl):
    each line's hash matches its body and names the previous line's hash. Reports the first
    line that does not; also checks the head file so that cutting lines off the end shows."""
    p = _resolve(path)
    hp = p.with_name(HEAD_NAME)
    if not p.is_file():
        if hp.is_file() and hp.stat().st_size:
            return ChainReport(False, 0, 1, f"the log is missing but {hp.name} records entries", GENESIS)
        return ChainReport(True, 0, None, "no entries yet", GENESIS)
    with p.open("rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # writers hold LOCK_EX while appending
        try:
            return _verify_open(fh, hp)
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _verify_open(fh, hp: Path) -> ChainReport:
    prev = GENESIS
    n = 0
    seen_head = False
    head = None
    if hp.is_file():
        try:
            text = hp.read_text()
            head = json.loads(text)["hash"] if text.strip() else None  # empty: nothing written yet
        except (ValueError, KeyError, TypeError, OSError):
            return ChainReport(False, 0, 0, f"the head file {hp.name} is unreadable", prev)
    for n, line in enumerate(fh, 1):
        if not line.endswith(b"\n"):
            return ChainReport(False, n - 1, n, "the line is incomplete (no newline at the end of the file)", prev)
        line = line[:-1]
        suffix = line[-_SUFFIX_LEN:]
        if len(line) <= _SUFFIX_LEN or not (suffix.startswith(b',"hash":"') and suffix.endswith(b'"}')):
            return ChainReport(False, n - 1, n, "the line does not end with its hash", prev)
        body = line[:-_SUFFIX_LEN] + b"}"
        claimed = suffix[9:-2].decode("ascii", "replace")
        if hashlib.sha256(body).hexdigest() != claimed:
            return ChainReport(False, n - 1, n, "the content does not match its hash (the line was edited)", prev)
        try:
            back = json.loads(body)["prev_hash"]
        except (ValueError, KeyError, TypeError):
            return ChainReport(False, n - 1, n, "the line is not a JSON object with prev_hash", prev)
        if back != prev:
            return ChainReport(False, n - 1, n, "prev_hash does not match the hash of the line before "
                               "(a line was removed, inserted or reordered before this one)", prev)
        prev = claimed
        if claimed == head:
            seen_head = True
    if head is not None and head != GENESIS and not seen_head:
        return ChainReport(False, n, n + 1, f"the log ends before the last entry recorded in {hp.name} "
                           "(lines were removed from the end)", prev)
    return ChainReport(True, n, None, "intact", prev)


def read_entries(path: str | Path, cipher: Cipher | None = None) -> Iterator[dict[str, Any]]:
    """Every entry as a dict (decrypted when a cipher is given); does not verify the chain."""
    p = _resolve(path)
    with p.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            e = json.loads(line)
            if "enc" in e:
                if cipher is None:
                    raise ChainError(f"{p} is encrypted: pass the key (the env var named by "
                                     "serving.json security.encryption_at_rest.key_env)")
                plain = json.loads(cipher.open(base64.b64decode(e["enc"]), e["prediction_id"].encode()))
                plain["prev_hash"], plain["hash"] = e["prev_hash"], e["hash"]
                e = plain
            yield e


if __name__ == "__main__":
    sys.exit(writer_main())
