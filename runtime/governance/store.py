"""The model registry: an append-only, hash-chained event log and the run table rebuilt from it.

Every change (a build registered, an approval, a stage move, a retrain decision, a rollback)
is one event. `record_event()` is the only writer; the `runs` projection is updated from
each event by `_apply`, the same function `rebuild()` replays over the whole log, so the
registry can always be rebuilt from its events. The log is append-only in the database
(triggers refuse UPDATE and DELETE) and each event carries sha256(previous hash + event),
which `verify_chain()` checks.

Location: a file path or a `sqlite:///PATH` URL (SQLite is the embedded default; a team shares
it by pointing every member at the same file on shared storage). A server database would
implement the same small interface: append, events, runs, rebuild, verify_chain.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGES = ("candidate", "staging", "production", "archived")

SCHEMA = """
CREATE TABLE IF NOT EXISTS governance_events (
  seq INTEGER PRIMARY KEY,
  at REAL NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  run_id TEXT,
  actor TEXT NOT NULL,
  body TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS governance_events_no_update BEFORE UPDATE ON governance_events
  BEGIN SELECT RAISE(ABORT, 'the registry event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS governance_events_no_delete BEFORE DELETE ON governance_events
  BEGIN SELECT RAISE(ABORT, 'the registry event log is append-only'); END;
CREATE TABLE IF NOT EXISTS governance_runs (
  run_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT,
  kind TEXT NOT NULL,
  stage TEXT NOT NULL,
  blessed INTEGER NOT NULL,
  status TEXT NOT NULL,
  parent TEXT,
  built_by TEXT NOT NULL,
  spec_hash TEXT,
  data_sha256 TEXT,
  model_sha256 TEXT,
  manifest_sha256 TEXT,
  artefact_dir TEXT,
  record TEXT NOT NULL,
  metrics TEXT NOT NULL,
  created_at REAL NOT NULL,
  seq INTEGER NOT NULL
);
"""
GENESIS = "0" * 64


class RegistryError(Exception):
    """A registry request that cannot be met; the message says why and what to do."""


@dataclass(frozen=True)
class Event:
    seq: int
    at: float
    kind: str
    name: str
    run_id: str | None
    actor: str
    body: dict[str, Any]
    prev_hash: str
    hash: str


def location(text: str | Path) -> Path:
    """A registry location: a path, or a sqlite:/// URL (sqlite:///rel/path, sqlite:////abs/path)."""
    s = str(text)
    if s.startswith("sqlite:///"):
        return Path(s[len("sqlite:///"):])
    if "://" in s:
        raise RegistryError(f"the registry location must be a file path or a sqlite:/// URL. Got '{s}' instead.")
    return Path(s)


def _hash(prev: str, at: float, kind: str, name: str, run_id: str | None, actor: str, body: str) -> str:
    line = json.dumps([prev, repr(at), kind, name, run_id, actor, body], separators=(",", ":"))
    return hashlib.sha256(line.encode()).hexdigest()


class Store:
    """The registry at one location (see the module docstring)."""

    def __init__(self, where: str | Path):
        self.path = location(where)

    def _con(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30)
            con.row_factory = sqlite3.Row
            con.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open the registry '{self.path}': {exc}; give a writable file path or "
                                "sqlite:/// URL (env.registry, $AIOPS_REGISTRY or --registry)") from None
        return con

    # ------------------------------------------------------------ the event log
    def append(self, kind: str, name: str, run_id: str | None, actor: str, body: dict[str, Any]) -> Event:
        text = json.dumps(body, sort_keys=True, default=str)
        con = self._con()
        try:
            con.execute("BEGIN IMMEDIATE")  # one writer at a time: the chain has no forks
            last = con.execute("SELECT seq, hash FROM governance_events ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, GENESIS)
            at = time.time()
            h = _hash(prev, at, kind, name, run_id, actor, text)
            con.execute("INSERT INTO governance_events VALUES (?,?,?,?,?,?,?,?,?)",
                        (seq, at, kind, name, run_id, actor, text, prev, h))
            ev = Event(seq, at, kind, name, run_id, actor, json.loads(text), prev, h)
            _apply(con, ev)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return ev

    def events(self, name: str | None = None, run_id: str | None = None, kinds: tuple[str, ...] = ()) -> list[Event]:
        q, args = "SELECT * FROM governance_events WHERE 1=1", []
        if name:
            q, args = q + " AND name = ?", [*args, name]
        if run_id:
            q, args = q + " AND run_id = ?", [*args, run_id]
        if kinds:
            q += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        con = self._con()
        try:
            return [_event(r) for r in con.execute(q + " ORDER BY seq", args)]
        finally:
            con.close()

    def verify_chain(self) -> list[str]:
        """Problems of the hash chain (empty when whole), naming the first broken event."""
        prev, n = GENESIS, 0
        for ev in self.events():
            n += 1
            if ev.seq != n:
                return [f"event {n} is missing (the next one is {ev.seq}): events were deleted"]
            text = json.dumps(ev.body, sort_keys=True, default=str)
            if ev.prev_hash != prev or _hash(prev, ev.at, ev.kind, ev.name, ev.run_id, ev.actor, text) != ev.hash:
                return [f"event {ev.seq} ({ev.kind}) does not match its hash: the log was changed at or before it"]
            prev = ev.hash
        return []

    # ------------------------------------------------------------ the projection
    def runs(self, name: str | None = None) -> list[dict[str, Any]]:
        con = self._con()
        try:
            q = "SELECT * FROM governance_runs" + (" WHERE name = ?" if name else "") + " ORDER BY seq"
            return [_run(r) for r in con.execute(q, (name,) if name else ())]
        finally:
            con.close()

    def run(self, ref: str) -> dict[str, Any]:
        """A run by id or unique id prefix."""
        hits = [r for r in self.runs() if r["run_id"].startswith(ref)] if ref else []
        exact = [r for r in hits if r["run_id"] == ref]
        if exact:
            return exact[0]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise RegistryError(f"no run '{ref}' in the registry {self.path}; 'aiops runs' lists them")
        raise RegistryError(f"'{ref}' names {len(hits)} runs ({', '.join(r['run_id'] for r in hits)}); give more "
                            "characters of the run id")

    def production(self, name: str) -> dict[str, Any] | None:
        prod = [r for r in self.runs(name) if r["stage"] == "production"]
        return prod[0] if prod else None

    def rebuild(self) -> int:
        """Drop the run table and replay every event into it; returns the number of events."""
        evs = self.events()
        con = self._con()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM governance_runs")
            for ev in evs:
                _apply(con, ev)
            con.execute("COMMIT")
        finally:
            con.close()
        return len(evs)


def _event(r: sqlite3.Row) -> Event:
    return Event(r["seq"], r["at"], r["kind"], r["name"], r["run_id"], r["actor"], json.loads(r["body"]),
                 r["prev_hash"], r["hash"])


def _run(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["record"] = json.loads(d["record"])
    return d


def _apply(con: sqlite3.Connection, ev: Event) -> None:
    """The effect of one event on the run table (the one implementation, live and on rebuild)."""
    b = ev.body
    if ev.kind == "run.registered":
        exists = con.execute("SELECT 1 FROM governance_runs WHERE run_id = ?", (ev.run_id,)).fetchone()
        if exists:  # the same build again (deterministic): it keeps its row and stage
            return
        con.execute("INSERT INTO governance_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (
            ev.run_id, ev.name, b.get("version"), b.get("kind", "compile"), "candidate", int(bool(b.get("blessed"))),
            b.get("status", "built"), b.get("parent"), b.get("built_by", ev.actor), b.get("spec_hash"),
            b.get("data_sha256"), b.get("model_sha256"), b.get("manifest_sha256"), b.get("artefact_dir"),
            json.dumps(b, sort_keys=True, default=str), json.dumps(b.get("metrics") or {}, sort_keys=True),
            ev.at, ev.seq))
    elif ev.kind == "stage.changed":
        con.execute("UPDATE governance_runs SET stage = ? WHERE run_id = ?", (b["to"], ev.run_id))
    elif ev.kind == "run.moved":
        con.execute("UPDATE governance_runs SET artefact_dir = ?, manifest_sha256 = COALESCE(?, manifest_sha256) "
                    "WHERE run_id = ?", (b["artefact_dir"], b.get("manifest_sha256"), ev.run_id))
    # approval.recorded, retrain.decided, rollback: history only, read from the log


def record_event(where: str | Path, kind: str, name: str, run_id: str | None, actor: str,
                 body: dict[str, Any]) -> Event:
    """Append one registry event (the single entry point; point it at the audit log to unify)."""
    return Store(where).append(kind, name, run_id, actor, body)
