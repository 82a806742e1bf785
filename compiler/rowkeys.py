"""Which rows trained a model and which judged it: hashed row keys in evidence/rows.json.

Compile writes the keys of the training rows and of the holdout rows; `aiops retrain`
reads the champion's to score champion and challenger only on rows that neither was
trained on (compiler/retrain.py), and a user can read the holdout's to build a fair
retrain file. A row's key is its `data.key` value; a spec without `data.key` identifies a
row by its content (every contract column, the target included), so a repeated row counts
as seen.

Each key is hashed with HMAC-SHA256 under a fixed label and the model name, cut to 16 hex
digits (64 bits). The file does not show the keys, but anyone can hash a key they can guess
(a running number) and find it: this is not anonymisation, and a key column that is
personal data stays personal data here.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

import numpy as np

ROWS_SCHEMA = 1
HASH = "hmac-sha256 of the key text under 'aiops row key:<model name>', first 16 hex digits"


def _text(v: Any) -> str:
    """One value as text, the same for a CSV and a Parquet copy of the row."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f != f:
            return ""
        return str(int(f)) if f.is_integer() else repr(f)
    try:
        if v != v:  # pandas NA / NaT
            return ""
    except (TypeError, ValueError):
        pass
    return str(v)


def identity(key: str | None) -> str:
    return f"data.key '{key}'" if key else "the row's content (the spec sets no data.key)"


def row_hashes(frame, key: str | None, columns: list[str], name: str) -> np.ndarray:
    """The hashed key of every row of `frame` (accepted, coerced rows): its `key` column, or
    without a key the values of `columns` joined."""
    label = f"aiops row key:{name}".encode()
    if key:
        texts = [_text(v) for v in frame[key].tolist()]
    else:
        parts = [[_text(v) for v in frame[c].tolist()] for c in columns]
        texts = ["\x1f".join(row) for row in zip(*parts)] if parts else [""] * len(frame)
    out = np.empty(len(texts), dtype=object)
    out[:] = [hmac.new(label, t.encode("utf-8"), hashlib.sha256).hexdigest()[:16] for t in texts]
    return out


def evidence(hashes: np.ndarray, train: np.ndarray, test: np.ndarray, key: str | None) -> dict[str, Any]:
    """evidence/rows.json: the sorted, distinct hashed keys of the training and holdout rows."""
    return {"rows_schema": ROWS_SCHEMA, "identity": identity(key), "key": key, "hash": HASH,
            "train": sorted(set(hashes[train].tolist())), "holdout": sorted(set(hashes[test].tolist()))}
