"""Inputs and outputs of `aiops monitor`: the current data read in chunks (parquet, CSV,
JSON lines, or the server's prediction log), the labels file, and the webhook POST.

Every reader yields `Chunk`s of at most `rows` rows, so memory stays bounded whatever
the size of the input. CSV and Parquet files are read as every command reads them
(`runtime.datafile`): blank lines skipped and counted, ragged lines counted as malformed
records, a repeated header name refused. Columns are pyarrow arrays (parquet, CSV) or numpy object arrays
(JSON), as they come; `runtime.monitor_columns` validates and converts them.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from aiops.runtime.masking import scrub

CHUNK_ROWS = 100_000
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl"}


class MonitorInputError(Exception):
    """The input cannot be read as asked; the message says what to do (exit code 2)."""


@dataclass
class Chunk:
    n: int
    columns: dict[str, Any]  # name -> pyarrow array or numpy object array
    outputs: dict[str, np.ndarray] | None = None  # prediction log: what the server answered
    ids: np.ndarray | None = None  # prediction log: prediction_id
    ts_days: np.ndarray | None = None  # prediction log: the day of ts, as days since 1970-01-01
    malformed: int = 0  # records of the file with the wrong number of fields, read with this chunk
    blank: int = 0  # blank lines skipped (not records), read with this chunk


@dataclass
class LogStats:
    lines: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MonitorInputError(f"cannot read '{path}': the current data must be parquet (.parquet), CSV (.csv) or "
                                f"JSON lines (.jsonl). Got '{path.suffix or 'no extension'}' instead.")
    return fmt


def read_chunks(path: Path, wanted: list[str], rows: int = CHUNK_ROWS,
                renames: dict[str, str] | None = None) -> Iterator[Chunk]:
    """The columns in `wanted` that the file has (under the contract's names: `renames`),
    `rows` at a time."""
    if not path.is_file():
        raise MonitorInputError(f"no current data at '{path}'")
    fmt = format_of(path)
    if fmt in ("parquet", "csv"):  # read as every command reads a data file (runtime.datafile)
        from aiops.runtime.datafile import RECORD, CsvRecords, DataFileError, parquet_file, parquet_tables, renamed

        try:
            if fmt == "csv":
                src = CsvRecords(path, wanted, block_bytes=1 << 22, renames=renames)
                tables, malformed = src.tables(), src.malformed
            else:
                src, malformed = None, []
                pf = parquet_file(path)
                renamed(path, list(pf.schema_arrow.names), renames)
                tables = parquet_tables(pf, wanted, rows, renames)
            reported = blank = 0
            for t in tables:
                for start in range(0, t.num_rows, rows):
                    b = t.slice(start, rows)
                    have = [c for c in wanted if c in b.column_names and c != RECORD]
                    last = b.column(RECORD)[-1].as_py()
                    now = sum(1 for m in malformed[reported:] if m.record <= last)
                    reported += now
                    yield Chunk(b.num_rows, {c: b.column(c) for c in have}, malformed=now,
                                blank=(src.blank - blank) if src else 0)
                    blank = src.blank if src else 0
            if src is not None and (len(malformed) > reported or src.blank > blank):
                yield Chunk(0, {}, malformed=len(malformed) - reported, blank=src.blank - blank)
        except DataFileError as exc:
            raise MonitorInputError(str(exc)) from None
    else:
        buf: list[dict] = []
        for _, rec in _json_lines(path):
            buf.append(rec if isinstance(rec, dict) else {})
            if len(buf) >= rows:
                yield _records_chunk(buf, wanted)
                buf = []
        if buf:
            yield _records_chunk(buf, wanted)


def _records_chunk(records: list[dict], wanted: list[str]) -> Chunk:
    have = [c for c in wanted if any(c in r for r in records)]
    cols = {}
    for c in have:
        a = np.empty(len(records), dtype=object)
        a[:] = [r.get(c) for r in records]
        cols[c] = a
    return Chunk(len(records), cols)


def read_log(path: Path, model: str, manifest_sha256: str, wanted: list[str], classes: list[str],
             stats: LogStats, cipher_loader, rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The server's prediction log (docs/serving.md), read leniently: lines that are not
    JSON, belong to another model or another build (manifest), or lack an output are
    counted in `stats.skipped` and left out."""
    p = path / "predictions.jsonl" if path.is_dir() else path
    if not p.is_file():
        raise MonitorInputError(f"no prediction log at '{p}': serve the model first ('aiops serve'), or pass "
                                "--from-log PATH")
    from aiops.runtime.audit.chain import open_lines

    cipher = None
    buf: list[dict] = []
    with open_lines(path if path.is_dir() else p) as fh:  # a folder: every segment, oldest first
        for line in fh:
            if not line.strip() or line.startswith(b'{"detail":'):
                continue  # a segment, repair or expiry event (runtime/audit/chain.py): not a prediction
            stats.lines += 1
            try:
                e = json.loads(line)
            except ValueError:
                stats.skip("not JSON")
                continue
            if not isinstance(e, dict):
                stats.skip("not a JSON object")
                continue
            if "enc" in e:
                if cipher is None:
                    cipher = cipher_loader()
                e = _decrypt(e, cipher, stats)
                if e is None:
                    continue
            m = e.get("model")
            name = m.get("name") if isinstance(m, dict) else m
            if name is not None and name != model:
                stats.skip("another model")
                continue
            if e.get("manifest_sha256") not in (None, manifest_sha256):
                stats.skip("another build of the model (manifest_sha256 differs)")
                continue
            out = e.get("output")
            if not isinstance(out, dict) or not isinstance(e.get("inputs"), dict):
                stats.skip("no inputs or output")
                continue
            stats.used += 1
            buf.append(e)
            if len(buf) >= rows:
                yield _log_chunk(buf, wanted, classes)
                buf = []
    if buf:
        yield _log_chunk(buf, wanted, classes)


def _decrypt(e: dict, cipher, stats: LogStats) -> dict | None:
    from aiops.runtime.audit.chain import open_entry
    from aiops.runtime.sealed import SealedError

    try:
        return open_entry(e, cipher)
    except (SealedError, ValueError, KeyError, TypeError):
        stats.skip("cannot be decrypted")
        return None


def _log_chunk(entries: list[dict], wanted: list[str], classes: list[str]) -> Chunk:
    chunk = _records_chunk([e["inputs"] for e in entries], wanted)
    chunk.ids = np.array([str(e.get("prediction_id")) for e in entries], dtype=object)
    chunk.ts_days = np.array([_day(e.get("ts")) for e in entries], dtype=np.float64)
    outs = [e["output"] for e in entries]
    if classes:
        proba = np.full((len(outs), len(classes)), np.nan)
        label = np.empty(len(outs), dtype=object)
        for i, o in enumerate(outs):
            label[i] = None if o.get("label") is None else str(o.get("label"))
            pr = o.get("probabilities") or {}
            if isinstance(pr, dict):
                proba[i] = [pr.get(c, np.nan) for c in classes]
        chunk.outputs = {"label": label, "probabilities": proba}
    else:
        chunk.outputs = {"value": np.array([_num(o.get("value")) for o in outs], dtype=np.float64)}
    return chunk


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan


def _day(ts: Any) -> float:
    if not isinstance(ts, str) or len(ts) < 10:
        return np.nan
    try:
        return float(np.datetime64(ts[:10], "D").astype(np.int64))
    except ValueError:
        return np.nan


def load_labels(path: Path, key_columns: list[str], target: str,
                renames: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(the key column used, {key: label}) from a labels file holding one of
    `key_columns` and the target column (or 'label'), read under the contract's names
    (`renames`: a column's source_name). Held in memory: one entry per label."""
    if not path.is_file():
        raise MonitorInputError(f"no labels file at '{path}'")
    fmt = format_of(path)
    names: list[str] = []
    if fmt in ("parquet", "csv"):
        from aiops.runtime.datafile import DataFileError, header_of

        try:
            names = header_of(path, fmt, renames)
        except DataFileError as exc:
            raise MonitorInputError(str(exc)) from None
    key = next((k for k in key_columns if k in names), None)
    label_col = target if target in names else ("label" if "label" in names else None)
    if fmt == "jsonl":
        key, label_col, table = _labels_jsonl(path, key_columns, target)
    elif key is None or label_col is None:
        raise MonitorInputError(
            f"the labels file '{path}' needs a key column ({' or '.join(key_columns)}) and the label column "
            f"('{target}' or 'label'). Got columns {', '.join(names) or '(none)'} instead.")
    else:
        table = {}
        wanted = [key, label_col]
        for ch in read_chunks(path, wanted, renames=renames):
            keys = _as_list(ch.columns[key])
            labs = _as_list(ch.columns[label_col])
            table.update((str(k), v) for k, v in zip(keys, labs) if k is not None)
    return key, table


def _labels_jsonl(path: Path, key_columns: list[str], target: str):
    table: dict[str, Any] = {}
    key = label_col = None
    for ln, r in _json_lines(path):
        if not isinstance(r, dict):
            r = {}
        if key is None:
            key = next((k for k in key_columns if k in r), None)
            label_col = target if target in r else ("label" if "label" in r else None)
            if key is None or label_col is None:
                raise MonitorInputError(f"{path}:{ln}: a label needs a key ({' or '.join(key_columns)}) and "
                                        f"'{target}' (or 'label'). Got keys {', '.join(sorted(r))} instead.")
        if r.get(key) is not None:
            table[str(r[key])] = r.get(label_col)
    return key, label_col, table


def _json_lines(path: Path):
    """(line number, parsed value) of each non-blank line of a JSON-lines file."""
    with path.open("rb") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield ln, json.loads(line)
            except ValueError:
                raise MonitorInputError(f"{path}:{ln}: not a JSON object per line") from None


def _as_list(a: Any) -> list:
    return a.to_pylist() if hasattr(a, "to_pylist") else list(a)


def redact_url(url: str) -> str:
    """scheme://host[:port]/... : webhook paths often hold a token; reports keep only the host."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}/..."


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """POST the alerts as JSON; never raises: returns {url (redacted), status, error}."""
    body = json.dumps(payload, sort_keys=True).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "aiops-monitor"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return {"url": redact_url(url), "status": resp.status, "error": None}
    except urllib.error.HTTPError as exc:
        return {"url": redact_url(url), "status": exc.code, "error": f"HTTP {exc.code} {exc.reason}"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"url": redact_url(url), "status": None, "error": str(getattr(exc, "reason", exc))}
