"""Stable serialisation shared by the compiler and the runtime: the same input always gives
the same bytes (sorted keys, floats to 10 significant digits, NaN and infinities as null)."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def dumps(obj: Any) -> str:
    return json.dumps(clean(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def clean(obj: Any) -> Any:
    """JSON-safe and stable: numpy values to Python, floats rounded to 10 significant digits."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [clean(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if f != f or f in (math.inf, -math.inf):
            return None
        return float(f"{f:.10g}")
    return obj


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
