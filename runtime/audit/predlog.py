"""The prediction log's writing side: the server hands answered requests to a writer
process, which masks, encrypts, chains and appends them (runtime/audit/chain.py holds the
on-disk format, runtime/audit/verify.py checks it).

Who does the work: the response path hands the request and response bytes it already has
to a list (`PredictionLog.submit_http`); a forwarding thread writes them to a pipe; a
writer process (`python -m runtime.predlog`, one per server worker) parses, masks,
encrypts (runtime/sealed.py, one subkey per segment), MAC-chains and appends under an
exclusive file lock, so the workers of one server share one chain. The writer tells the
server on its stdout when the log cannot be written (`e ...`), when it can again (`o`), and
when a flush is on disk (`s N`): `/readyz` is false while it cannot, and with the audit log
enabled predictions are refused meanwhile (PredictionLog.refusing).

Entry format (docs/serving.md#prediction-log):

    {"endpoint": ..., "inputs": {...}, "manifest_sha256": ..., "model": {"name", "version"},
     "output": {"label", "probabilities"} | {"value"}, "prediction_id": ..., "prev_mac": ...,
     "seq": N, "ts": "2026-01-31T12:00:00.123456Z"[, "job_id": ...],"mac":"<64 hex>"}

With encryption at rest: {"enc", "prediction_id", "prev_mac", "seq", "ts", "mac"}, `enc`
being the base64 of the sealed plain body (the fields above but prev_mac, seq and mac).
"""
from __future__ import annotations

import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from aiops.runtime.audit.chain import GENESIS, LOG_NAME, ChainError, ChainWriter, iso_ts, read_entries  # noqa: F401
from aiops.runtime.audit.keys import AuditSettings
from aiops.runtime.masking import Masker
from aiops.runtime.policy import Cipher

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode
_LEN = struct.Struct(">I")
_loads = json.JSONDecoder().decode


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


# ---------------------------------------------------------------- building entries
class EntryBuilder:
    """Entries as (text before prev_mac's value, text from `,"ts"` on, what to seal or None):
    canonical JSON built from canonical pieces in sorted key order (tests hold it to
    json.dumps of the parsed line). ChainWriter puts prev_mac, seq and mac in."""

    def __init__(self, masker: Masker, columns: tuple[str, ...], model: dict[str, str], manifest_sha256: str,
                 encrypt: bool):
        self.masker = masker
        self.columns = tuple(columns)
        self._model = _dumps(dict(model))
        self._msha = _dumps(manifest_sha256)
        self.encrypt = encrypt
        self._clock = Clock()

    def parts(self, ts: float, endpoint: str, job_id: str | None,
              rows: list[tuple[str, Any, dict[str, Any]]]) -> list[tuple[str, str, tuple[str, bytes] | None]]:
        """rows: (prediction id, the record as received, output object)."""
        tail = ',"ts":"' + self._clock.text(ts) + '"}'
        head = '{"endpoint":' + _dumps(endpoint) + ',"inputs":'
        mid = (',"job_id":' + _dumps(job_id) if job_id is not None else "") + \
            ',"manifest_sha256":' + self._msha + ',"model":' + self._model + ',"output":'
        cols, mask = self.columns, self.masker
        out = []
        for pid, rec, output in rows:
            inputs = mask.mask_record(rec, cols) if isinstance(rec, dict) else {}
            plain = head + _dumps(inputs) + mid + _dumps(output) + ',"prediction_id":' + _dumps(pid)
            if self.encrypt:
                out.append(("", tail, (pid, (plain + tail).encode())))
            else:
                out.append((plain + ',"prev_mac":"', tail, None))
        return out


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
    cannot keep up, or cannot write), so entries are never dropped.

    Hand-off: a submit appends its frame to a list under a lock (well under a microsecond)
    and wakes the forwarding thread only if it is not already due to run; the thread lets
    frames gather for GATHER seconds, takes the whole list and writes it to the pipe in one
    call. Under load that is one wake-up and one write per GATHER, not per request, so the
    thread seldom competes with the event loop for the GIL. A listening thread reads the
    writer's replies: flushes done, and whether the log can be written."""

    # 20 ms (was 2 ms): every wake-up of this thread takes the GIL from the event loop, which on
    # a loaded machine stalls the loop for up to the switch interval, and wakes the writer
    # process; at 2 ms that cost the server 15% of its CPU per request at concurrency 1
    # (bench/README.md, profile). Entries still reach the writer within 20 ms.
    GATHER = 0.02

    def __init__(self, log_dir: str | Path, masker: Masker, columns: tuple[str, ...], model: dict[str, str],
                 manifest_sha256: str, classes: tuple[str, ...], cipher: Cipher | None = None,
                 max_bytes: int = 64 << 20, audit: AuditSettings | None = None, checkpoint_s: float | None = None):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / LOG_NAME
        self.classes = list(classes)
        audit = audit or AuditSettings(None, None, None, False)
        self.audit = audit
        self._config = {"t": "config", "dir": str(self.dir.resolve()), "columns": list(columns),
                        "model": dict(model), "manifest_sha256": manifest_sha256,
                        "masker": masker.config(),
                        "key": cipher.key.hex() if cipher is not None else None,
                        "log_key": audit.log_key.hex() if audit.log_key else None,
                        "seed": audit.signing_seed.hex() if audit.signing_seed else None,
                        "retention_days": audit.retention_days, "checkpoint_s": checkpoint_s}
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._items: list[Any] = []  # frames (bytes), flush markers (Event), the stop marker (None)
        self._queued = 0  # bytes of frames not yet handed to the writer process
        self._armed = False  # the forwarding thread has been woken for what is in _items
        self._wake = threading.Event()
        self._dead = False
        self.error: str | None = "starting"  # why the log cannot be written, None when it can
        self._acks: dict[int, threading.Event] = {}
        self.failed = 0
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None

    @property
    def has_room(self) -> bool:
        """False while more than max_bytes wait for the writer: the event loop then answers 503
        with Retry-After (runtime/serve/server.py) instead of waiting here, which would stall every
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

    @property
    def writable(self) -> bool:
        """The writer runs and its last append (or its start) succeeded."""
        return self.alive and self.error is None

    @property
    def refusing(self) -> bool:
        """Predictions are refused: the audit log is required (serving.json
        security.audit_log.enabled) and cannot be written. Otherwise they are buffered
        (up to max_bytes in the server, then requests wait)."""
        return self.audit.fail_closed and self.error is not None  # two attribute reads: on every request

    def start(self, timeout: float = 10.0) -> None:
        """Start the writer and wait (up to `timeout`) for it to say whether it can write."""
        self._proc = subprocess.Popen([sys.executable, "-m", "aiops.runtime.audit.predlog"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, close_fds=True)
        first = threading.Event()
        self._listener = threading.Thread(target=self._listen, args=(first,), name="aiops-predlog-in", daemon=True)
        self._listener.start()
        self._write(_frame(self._config))
        self._thread = threading.Thread(target=self._forward, name="aiops-predlog", daemon=True)
        self._thread.start()
        first.wait(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is on disk (tests, shutdown, jobs); False
        when that is not confirmed within `timeout` (the log cannot be written)."""
        done = threading.Event()
        self._put(done)
        return done.wait(timeout) and not self._dead

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer (it writes a last checkpoint)."""
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
            if self._listener is not None:
                self._listener.join(timeout)
            self._proc.stdout.close()
            self._proc = None

    def _listen(self, first: threading.Event) -> None:
        """The writer's replies: `s N` (flush N is on disk), `e MESSAGE` (cannot write), `o` (can)."""
        for line in self._proc.stdout:
            kind, _, rest = line.decode(errors="replace").rstrip("\n").partition(" ")
            if kind == "s":
                ev = self._acks.pop(int(rest), None)
                if ev is not None:
                    ev.set()
            elif kind == "e":
                self.error = rest or "the prediction log cannot be written"
                first.set()
            elif kind == "o":
                self.error = None
                first.set()
        self._dead = True
        self.error = "the prediction log writer stopped"
        first.set()
        for ev in list(self._acks.values()):
            ev.set()

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
                    sync += 1  # a flush marker: the listener sets it when the writer confirms
                    self._acks[sync] = it
                    self._write(_frame({"t": "sync", "n": sync}))
                if frames:
                    self._send(frames)
            except OSError as exc:  # the writer process died: keep the server up, say so
                self._dead = True
                self.error = "the prediction log writer stopped"
                self.failed += len(frames)
                print(f"aiops serve: the prediction log writer is gone ({exc}); predictions are not being "
                      f"logged to {self.path}", file=sys.stderr, flush=True)
                for it in items:
                    if isinstance(it, threading.Event):
                        it.set()
                return


# ---------------------------------------------------------------- the writer process
def _frames(fd: int, idle_s: float = 0.5) -> Iterator[tuple[dict[str, Any], bytes] | None]:
    """Frames read from fd; None whenever no complete frame is buffered (time to write) and
    every `idle_s` while nothing arrives (time to checkpoint)."""
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
        while not select.select([fd], [], [], idle_s)[0]:
            yield None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        buf = buf[at:] + chunk
        at = 0


class _Writer:
    """The writer process's state: entries waiting to be appended, flushes waiting for them,
    and whether the last attempt to write succeeded (reported to the server on change)."""

    RETRY_S = 0.5
    MAX_PENDING = 1 << 16  # entries held while the log cannot be written; then stdin is not read

    def __init__(self, chain: ChainWriter, out):
        self.chain, self.out = chain, out
        self.pending: list = []
        self.syncs: list[int] = []
        self.ok: bool | None = None
        self._tried = 0.0

    def say(self, text: str) -> None:
        self.out.write(text.encode() + b"\n")
        self.out.flush()

    def attempt(self) -> None:
        """Append what is pending (and checkpoint or expire when due); report the outcome.
        While the log cannot be written, tries again at most every RETRY_S."""
        import time

        now = time.monotonic()
        if self.ok is False and now - self._tried < self.RETRY_S:
            return
        self._tried = now
        try:
            self.chain.append(self.pending)
            self.chain.tick()
        except (OSError, ChainError, ValueError, KeyError, TypeError) as exc:  # a damaged log: say so, retry
            if self.ok is not False:
                msg = f"cannot append {len(self.pending)} entries to {self.chain.path}: {exc}".replace("\n", " ")
                print(f"aiops serve: the prediction log cannot be written: {msg}; retrying every "
                      f"{self.RETRY_S} s", file=sys.stderr, flush=True)
                self.say("e " + msg)
            self.ok = False
            return
        self.pending = []
        if self.ok is not True:
            if self.ok is False:
                print(f"aiops serve: the prediction log is writable again ({self.chain.path})", file=sys.stderr,
                      flush=True)
            self.say("o")
        self.ok = True
        for n in self.syncs:
            self.say(f"s {n}")
        self.syncs = []

    def until_ok(self) -> None:
        import time

        while not self.ok:
            time.sleep(self.RETRY_S)
            self.attempt()


def writer_main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: drain, exit on EOF
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = _frames(sys.stdin.fileno())
    first = next(f for f in frames if f is not None)
    cfg = first[0]
    hexkey = (lambda k: bytes.fromhex(cfg[k]) if cfg.get(k) else None)
    builder = EntryBuilder(Masker.from_config(cfg["masker"]), tuple(cfg["columns"]),
                           cfg["model"], cfg["manifest_sha256"], bool(cfg.get("key")))
    opts = {"checkpoint_s": cfg["checkpoint_s"]} if cfg.get("checkpoint_s") else {}
    chain = ChainWriter(cfg["dir"], hexkey("log_key"), hexkey("key"), hexkey("seed"), cfg.get("retention_days"), **opts)
    w = _Writer(chain, sys.stdout.buffer)
    w.attempt()  # at start: repair a torn line, or say the log cannot be written
    for f in frames:
        if f is None or len(w.pending) >= 4096:
            w.attempt()
            if not w.ok and len(w.pending) >= w.MAX_PENDING:
                w.until_ok()  # stop reading: the server's queue fills, then its requests wait
            if f is None:
                continue
        hdr, body = f
        if hdr["t"] == "sync":
            w.syncs.append(hdr["n"])
            w.attempt()
            continue
        try:
            w.pending += builder.parts(hdr["ts"], hdr["endpoint"], hdr.get("job_id"), rows_of_frame(hdr, body))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            print(f"aiops serve: a prediction log frame could not be read ({type(exc).__name__}: {exc})",
                  file=sys.stderr, flush=True)
    w.attempt()
    if not w.ok:
        print(f"aiops serve: {len(w.pending)} prediction log entries could not be written at shutdown",
              file=sys.stderr, flush=True)
    try:
        chain.close()
    except (OSError, ChainError, ValueError, KeyError, TypeError) as exc:
        print(f"aiops serve: no shutdown checkpoint was written: {exc}", file=sys.stderr, flush=True)
    return 0


# ---------------------------------------------------------------- verifying (kept for callers of the old API)
def verify_chain(path: str | Path, log_key: bytes | None = None, trusted: list[str] | None = None):
    """audit_verify.verify_log with the log key from the environment (AIOPS_LOG_KEY) when
    none is given."""
    from aiops.runtime.audit.keys import load_log_key
    from aiops.runtime.audit.verify import verify_log

    return verify_log(path, log_key if log_key is not None else load_log_key(), trusted)


if __name__ == "__main__":
    sys.exit(writer_main())
