"""Asynchronous scoring jobs: a durable queue in SQLite and background worker threads.

A job is a row in `<log-dir>/jobs/jobs.sqlite` plus its input file in `<log-dir>/jobs/<id>/`;
both are written before the job is acknowledged, so a job survives a restart. A worker
claims a job in a write transaction; a job left `running` by a process that died (its pid
is gone, or it stopped renewing its lease) is claimed again and scored from the start, at
most `serving.job_max_attempts` times in all: then it is `failed`, with the reason.
Results go to `result.csv` or `result.parquet` next to the input (`.enc` when encryption at
rest is on: runtime/sealed.py), one row per input record: records = scored + rejected, always.
Each chunk's predictions are on disk in the prediction log before the next chunk is scored,
and a job is marked succeeded only then: a killed server loses no logged job prediction
(a job it was running is scored again from the start, with new prediction ids).


A job belongs to the API key that created it (`owner`, a digest of the key; the server
decides who may read it). Its input never holds PII in clear: sealed when encryption at
rest is on; otherwise the PII columns are checked against the contract at submission, their
verdicts kept, and the columns removed (a PII key column is kept masked, for the result).
The input is deleted when the job completes, unless `serving.keep_job_inputs`.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import socket
import sqlite3
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from aiops.runtime.contract import Contract
from aiops.runtime.serve.rows import RowAcceptor
from aiops.runtime.masking import Masker
from aiops.runtime.policy import Cipher
from aiops.runtime.predictor import Predictor
from aiops.runtime.sealed import Opener, seal

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
LEASE_S = 60.0
POLL_S = 0.5
FORMATS = ("csv", "parquet")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,            -- queued | running | succeeded | failed
  format TEXT NOT NULL,
  input_path TEXT NOT NULL,
  result_path TEXT,
  encrypted INTEGER NOT NULL,
  records INTEGER,
  scored INTEGER,
  rejected INTEGER,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  owner_host TEXT,
  owner_pid INTEGER,
  heartbeat REAL,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  owner TEXT NOT NULL DEFAULT ''  -- digest of the API key that created the job ('' when open)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
"""


class JobInputError(Exception):
    """The submitted body cannot become a job; the message is safe to return to the client."""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(t: float | None) -> str | None:
    from aiops.runtime.audit.predlog import iso_ts

    return iso_ts(t) if t else None


class JobStore:
    def __init__(self, root: str | Path, max_attempts: int = 3, keep_inputs: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "jobs.sqlite"
        self.host = socket.gethostname()
        self.max_attempts = max(1, int(max_attempts))
        self.keep_inputs = keep_inputs
        with self._db() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(_SCHEMA)
            if "owner" not in {r["name"] for r in c.execute("PRAGMA table_info(jobs)")}:  # a queue of before owners
                c.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")

    def _conn(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        c.row_factory = sqlite3.Row
        return c

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        c = self._conn()
        try:
            yield c
        finally:
            c.close()

    def create(self, job_id: str, input_path: Path, fmt: str, records: int, encrypted: bool, owner: str = "") -> None:
        with self._db() as c:
            c.execute("INSERT INTO jobs (id, status, format, input_path, encrypted, records, created, owner) "
                      "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)", (job_id, fmt, str(input_path), int(encrypted), records,
                                                                  time.time(), owner))

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._db() as c:
            row = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row) if row else None

    def counts(self) -> dict[str, int]:
        with self._db() as c:
            return {r[0]: r[1] for r in c.execute("SELECT status, count(*) FROM jobs GROUP BY status")}

    def claim(self) -> dict[str, Any] | None:
        """Take the oldest queued job, or one whose worker died or let its lease lapse; a job
        whose worker died job_max_attempts times is marked failed instead."""
        now = time.time()
        c = self._conn()
        given_up: list[str] = []
        try:
            c.execute("BEGIN IMMEDIATE")
            for row in c.execute("SELECT id, owner_host, owner_pid, heartbeat, attempts, input_path FROM jobs "
                                 "WHERE status = 'running'").fetchall():
                dead = (row["owner_host"] == self.host and not _alive(row["owner_pid"])) or \
                    (row["heartbeat"] or 0) < now - LEASE_S
                if dead and row["attempts"] >= self.max_attempts:
                    c.execute("UPDATE jobs SET status = 'failed', owner_pid = NULL, finished = ?, error = ? WHERE id = ?",
                              (now, f"the job was tried {row['attempts']} times and its worker stopped (died or lost "
                                    f"its lease) each time; serving.job_max_attempts is {self.max_attempts}, so it "
                                    "is not retried", row["id"]))
                    given_up.append(row["input_path"])
                elif dead:
                    c.execute("UPDATE jobs SET status = 'queued', owner_pid = NULL WHERE id = ?", (row["id"],))
            row = c.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created LIMIT 1").fetchone()
            if row is None:
                c.execute("COMMIT")
                return None
            c.execute("UPDATE jobs SET status = 'running', owner_host = ?, owner_pid = ?, heartbeat = ?, "
                      "started = ?, attempts = attempts + 1 WHERE id = ?",
                      (self.host, os.getpid(), now, now, row["id"]))
            c.execute("COMMIT")
            return dict(row)
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            given_up.clear()
            raise
        finally:
            c.close()
            for path in given_up:
                self._drop_input(path)

    def release(self, job_id: str) -> None:
        """Give a job back to the queue (this server is stopping): the attempt does not count."""
        with self._db() as c:
            c.execute("UPDATE jobs SET status = 'queued', owner_pid = NULL, attempts = max(attempts - 1, 0) "
                      "WHERE id = ? AND owner_pid = ? AND status = 'running'", (job_id, os.getpid()))

    def _drop_input(self, path: str | None) -> None:
        if path and not self.keep_inputs:
            Path(path).unlink(missing_ok=True)

    def heartbeat(self, job_id: str) -> None:
        with self._db() as c:
            c.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND owner_pid = ?", (time.time(), job_id, os.getpid()))

    def finish(self, job: dict[str, Any], records: int, scored: int, rejected: int, result: Path) -> None:
        with self._db() as c:
            c.execute("UPDATE jobs SET status = 'succeeded', records = ?, scored = ?, rejected = ?, result_path = ?, "
                      "finished = ?, error = NULL WHERE id = ? AND owner_pid = ?",
                      (records, scored, rejected, str(result), time.time(), job["id"], os.getpid()))
        self._drop_input(job["input_path"])

    def fail(self, job: dict[str, Any], message: str) -> None:
        with self._db() as c:
            c.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ? AND owner_pid = ?",
                      (message, time.time(), job["id"], os.getpid()))
        self._drop_input(job["input_path"])


def describe(job: dict[str, Any]) -> dict[str, Any]:
    """The public view of a job (GET /v1/jobs/{id})."""
    done = job["status"] == "succeeded"
    return {
        "job_id": job["id"], "status": job["status"],
        "created_at": _iso(job["created"]), "started_at": _iso(job["started"]), "finished_at": _iso(job["finished"]),
        "attempts": job["attempts"],
        "counts": {"records": job["records"], "scored": job["scored"], "rejected": job["rejected"]},
        "result": {"format": job["format"], "encrypted": bool(job["encrypted"]),
                   "url": f"/v1/jobs/{job['id']}/result"} if done else None,  # never a server path
        "error": job["error"],
    }


def parse_job_body(body: bytes, content_type: str, fmt: str | None) -> tuple[bytes, int, str]:
    """(normalised input as JSON bytes, record count, result format) or JobInputError."""
    if content_type == "text/csv":
        try:
            text = body.decode("utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except (UnicodeDecodeError, csv.Error):
            raise JobInputError("the CSV body is not UTF-8 text with a header row") from None
        records = [{k: (v if v != "" else None) for k, v in r.items() if k is not None} for r in rows]
        data = json.dumps({"records": records}, ensure_ascii=True).encode()
    else:
        try:
            obj = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise JobInputError("the body is not valid JSON") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("records"), list):
            raise JobInputError('expected a JSON object {"records": [{...}, ...]}')
        fmt = fmt or obj.get("format")
        records = obj["records"]
        data = body
    fmt = fmt or "csv"
    if fmt not in FORMATS:
        raise JobInputError(f"format must be one of {', '.join(FORMATS)}")
    if not records:
        raise JobInputError("the job has no records")
    return data, len(records), fmt


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class IdSource:
    """Prediction ids: a random per-process prefix and a counter (unique, cheap)."""

    def __init__(self):
        import itertools

        self.prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def take(self, n: int) -> list[str]:
        p, c = self.prefix, self._count
        return [f"{p}{next(c):010x}" for _ in range(n)]


class JobRunner:
    def __init__(self, store: JobStore, predictor: Predictor, acceptor: RowAcceptor, predlog, metrics, ids: IdSource,
                 masker: Masker, cipher: Cipher | None, chunk_rows: int, threads: int = 1):
        self.store = store
        self.p = predictor
        self.acceptor = acceptor
        contract = predictor.contract
        # without encryption, an input is stored without its PII columns: they are checked at
        # submission (pii_contract) and the rest at scoring (clear_contract, clear_acceptor)
        self.pii = tuple(c.name for c in contract.request_columns if c.pii) if cipher is None else ()
        # a row check that reads a PII column is judged at submission too (its columns are there)
        pii_checks = [r for r in contract.row_checks if {r["left"], r["right"]} & set(self.pii)]
        at_submission = set(self.pii) | {c for r in pii_checks for c in (r["left"], r["right"]) if c}
        self.pii_checks = frozenset(f"row_check:{r['name']}" for r in pii_checks)
        self.pii_contract = Contract([c for c in contract.columns if c.name in at_submission], row_checks=pii_checks)
        self.clear_contract = Contract([c for c in contract.columns if c.name not in self.pii], contract.target,
                                       contract.key, [r for r in contract.row_checks if r not in pii_checks])
        self.clear_acceptor = RowAcceptor(self.clear_contract) if self.pii else acceptor
        self.predlog = predlog
        self.metrics = metrics
        self.ids = ids
        self.masker = masker
        self.cipher = cipher
        self.chunk_rows = max(1, int(chunk_rows))
        self.threads = threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    # ------------------------------------------------------------- submission
    def submit(self, data: bytes, records: int, fmt: str, owner: str = "") -> dict[str, Any]:
        job_id = secrets.token_hex(16)
        d = self.store.root / job_id
        d.mkdir(mode=0o700)
        path = d / ("input.json.enc" if self.cipher else "input.json")
        if self.cipher:
            payload = seal(self.cipher.key, "job-input", job_id, data)
        elif self.pii:
            payload = self._without_pii(data)
        else:
            payload = data
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.store.create(job_id, path, fmt, records, self.cipher is not None, owner)
        self._wake.set()
        return describe(self.store.get(job_id))

    def _without_pii(self, data: bytes) -> bytes:
        """The job input to store when it may not be sealed: the PII columns' contract verdicts
        (errors by row, which name the rule, never the value), the records without the PII
        columns, and the key column masked when it is PII (the result shows it)."""
        records = json.loads(data)["records"]
        _, errors = self.pii_contract.validate_records(records, allow_extra=True)
        pii_errors: dict[str, list[list[str]]] = {}
        for i, col, code, msg in errors.items:
            if col in self.pii or code in self.pii_checks:  # a record that is not an object: again at scoring
                pii_errors.setdefault(str(i), []).append([col, code, msg])
        pii = frozenset(self.pii)
        doc: dict[str, Any] = {"records": [{k: v for k, v in r.items() if k not in pii} if isinstance(r, dict) else r
                                           for r in records], "pii_removed": list(self.pii), "pii_errors": pii_errors}
        key = self.p.contract.key
        if key in pii:
            doc["masked_key"] = [self.masker.mask(key, r.get(key)) if isinstance(r, dict) and
                                 isinstance(r.get(key), (str, int, float)) else None for r in records]
        return json.dumps(doc, ensure_ascii=True).encode()

    def read_result(self, job: dict[str, Any]) -> bytes:
        blob = Path(job["result_path"]).read_bytes()
        return Opener(self.cipher.key).open(blob, "the job result", "job-result", job["id"]) if job["encrypted"] else blob

    # ------------------------------------------------------------- workers
    @property
    def alive(self) -> bool:
        return all(t.is_alive() for t in self._workers)

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"aiops-job-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._workers:
            t.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim()
            except sqlite3.Error as exc:
                print(f"aiops serve: job queue unavailable: {exc}", file=sys.stderr, flush=True)
                job = None
            if job is None:
                self._wake.wait(POLL_S)
                self._wake.clear()
                continue
            try:
                self._process(job)
            except Exception as exc:  # a bad job must not stop the worker; the cause is kept
                # where it failed, not the exception's text: that may quote a value of the input
                print(f"aiops serve: job {job['id']} failed: {type(exc).__name__}\n"
                      + "".join(traceback.format_tb(exc.__traceback__)), file=sys.stderr, flush=True)
                self.store.fail(job, f"scoring failed: {type(exc).__name__}")

    def _process(self, job: dict[str, Any]) -> None:
        jid = job["id"]
        blob = Path(job["input_path"]).read_bytes()
        data = Opener(self.cipher.key).open(blob, "the job input", "job-input", jid) if job["encrypted"] else blob
        doc = json.loads(data)
        records = doc["records"]
        n = len(records)
        contract, acceptor = self.p.contract, self.acceptor
        pii_errors: dict[int, list[tuple[str, str, str]]] = {}
        masked_key = doc.get("masked_key")
        if "pii_removed" in doc:  # stored without its PII columns (their verdicts came with it)
            if tuple(doc["pii_removed"]) != self.pii:
                raise ValueError("the job input was stored under another contract")
            contract, acceptor = self.clear_contract, self.clear_acceptor
            pii_errors = {int(i): [tuple(e) for e in errs] for i, errs in doc["pii_errors"].items()}
        key = contract.key
        meta = self.p.meta
        header = ["row"] + ([key] if key else []) + ["status", "prediction_id"]
        header += (["label"] + [f"probability_{c}" for c in meta.classes]) if self.p.is_classifier else ["value"]
        header.append("errors")
        rows: list[list[Any]] = []
        scored = rejected = 0
        seen: dict[str, dict] = {}  # `unique` columns are unique across the whole job
        for start in range(0, n, self.chunk_rows):
            if self._stop.is_set():
                self.store.release(jid)  # back to the queue; this attempt does not count
                return
            chunk = records[start:start + self.chunk_rows]
            cols = acceptor.accept(chunk, seen)
            by_row: dict[int, list[tuple[str, str, str]]] = {}
            if cols is None:
                cols, errs = contract.validate_records(chunk, seen=seen)
                by_row = errs.by_row()
            for i in range(start, min(start + len(chunk), n)):
                if i in pii_errors:
                    by_row.setdefault(i - start, []).extend(pii_errors[i])
            good = np.asarray([i for i in range(len(chunk)) if i not in by_row], dtype=np.int64)
            out: dict[str, np.ndarray] = {}
            ids: list[str] = []
            if len(good):
                out = self.p.predict_columns({k: v[good] for k, v in cols.items()})
                ids = self.ids.take(len(good))
                self.predlog.submit("job", ids, [chunk[i] for i in good.tolist()], out, job_id=jid)
                self.metrics.predictions("job", out)
            self.metrics.rejected_records("job", len(by_row))
            scored += len(good)
            rejected += len(by_row)
            rows.extend(self._rows(start, chunk, good, out, ids, by_row, key, masked_key))
            if len(good) and not self._logged(jid):
                return
            self.store.heartbeat(jid)
        assert scored + rejected == n, (scored, rejected, n)
        path = self._write(jid, job["format"], header, rows, Path(job["input_path"]).parent)
        self.store.finish(job, n, scored, rejected, path)

    def _logged(self, jid: str) -> bool:
        """Wait until the chunk's predictions are in the prediction log (crash-safe units);
        False when the server stops first (the job is then scored again after a restart)."""
        while not self.predlog.flush(5.0):
            if self._stop.is_set():
                return False
            if not self.predlog.alive:
                raise RuntimeError("the prediction log writer stopped")
            self.store.heartbeat(jid)
        return True

    def _rows(self, start: int, chunk: list[Any], good: np.ndarray, out: dict[str, np.ndarray], ids: list[str],
              by_row: dict[int, list[tuple[str, str, str]]], key: str | None,
              masked_key: list[Any] | None = None) -> list[list[Any]]:
        width = (1 + len(self.p.meta.classes)) if self.p.is_classifier else 1
        pred_at = {int(i): j for j, i in enumerate(good.tolist())}
        labels = out["label"].tolist() if "label" in out else None
        probs = out["probabilities"].tolist() if "probabilities" in out else None
        values = out["value"].tolist() if "value" in out else None
        rows = []
        for i, rec in enumerate(chunk):
            row: list[Any] = [start + i + 1]
            if key and masked_key is not None:
                row.append(masked_key[start + i])
            elif key:
                v = rec.get(key) if isinstance(rec, dict) else None
                row.append(self.masker.mask(key, v) if isinstance(v, (str, int, float)) else None)
            j = pred_at.get(i)
            if j is None:
                errs = "; ".join(f"{c or 'record'}: {code} ({msg})" for c, code, msg in by_row.get(i, []))
                row += ["rejected", None] + [None] * width + [errs]
            else:
                row += ["scored", ids[j]]
                row += ([labels[j]] + probs[j]) if labels is not None else [values[j]]
                row.append(None)
            rows.append(row)
        return rows

    def _write(self, jid: str, fmt: str, header: list[str], rows: list[list[Any]], d: Path) -> Path:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({h: [r[i] for r in rows] for i, h in enumerate(header)})
            buf = io.BytesIO()
            pq.write_table(table, buf)
            data = buf.getvalue()
        else:
            sio = io.StringIO(newline="")
            w = csv.writer(sio, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
            data = sio.getvalue().encode()
        path = d / (f"result.{fmt}.enc" if self.cipher else f"result.{fmt}")
        payload = seal(self.cipher.key, "job-result", jid, data) if self.cipher else data
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        return path.resolve()
