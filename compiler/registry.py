"""The local run registry (SQLite): one row per compile, keyed by spec and data hash.

Timestamps live here, never in generated/."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .plan import Plan

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  spec_hash TEXT NOT NULL,
  data_sha256 TEXT NOT NULL,
  model_sha256 TEXT NOT NULL,
  estimator TEXT NOT NULL,
  params TEXT NOT NULL,
  metrics TEXT NOT NULL,
  blessed INTEGER NOT NULL,
  artefact_dir TEXT NOT NULL,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  event_id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  artefact_dir TEXT NOT NULL,
  event TEXT NOT NULL,
  from_model_sha256 TEXT,
  to_model_sha256 TEXT,
  champion_run TEXT,
  challenger_run TEXT,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  created_at REAL NOT NULL
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(p)
    con.executescript(SCHEMA)
    return con


def record_run(path: str | Path, plan: Plan, out_dir: Path, result: dict[str, Any]) -> str:
    run_id = f"{plan.spec_hash[:12]}-{result['data']['sha256'][:12]}"
    with connect(path) as con:
        con.execute(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, plan.name, plan.version, plan.spec_hash, result["data"]["sha256"], result["model_sha256"],
             plan.estimator, json.dumps(dict(plan.params), sort_keys=True, default=str),
             json.dumps(result["metrics"], sort_keys=True), int(result["blessed"]), str(out_dir), time.time()),
        )
    return run_id


def runs(path: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    with connect(path) as con:
        con.row_factory = sqlite3.Row
        q = "SELECT * FROM runs" + (" WHERE name = ?" if name else "") + " ORDER BY created_at"
        return [dict(r) for r in con.execute(q, (name,) if name else ())]


def record_event(path: str | Path, name: str, artefact_dir: str, event: dict[str, Any],
                 champion_run: str | None = None, challenger_run: str | None = None) -> int:
    """A lifecycle change (promoted, not_promoted, rolled_back); `detail` is the whole event as JSON."""
    with connect(path) as con:
        cur = con.execute(
            "INSERT INTO events (name, artefact_dir, event, from_model_sha256, to_model_sha256, champion_run,"
            " challenger_run, reason, detail, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (name, artefact_dir, event["event"], event.get("from_model_sha256"), event.get("to_model_sha256"),
             champion_run, challenger_run, event["reason"], json.dumps(event, sort_keys=True, default=str),
             time.time()),
        )
        return int(cur.lastrowid)


def events(path: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    with connect(path) as con:
        con.row_factory = sqlite3.Row
        q = "SELECT * FROM events" + (" WHERE name = ?" if name else "") + " ORDER BY event_id"
        return [dict(r) for r in con.execute(q, (name,) if name else ())]
