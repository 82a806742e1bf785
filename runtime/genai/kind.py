"""Which server an artefact folder needs, read without importing any server (stdlib only, so
that `aiops serve` of a tabular model never needs the genai extra)."""
from __future__ import annotations

import json
from pathlib import Path


def serving_kind(artefact_dir: str | Path) -> str:
    """serving.json's kind ("tabular" when absent or unreadable). Only a dispatch hint: the
    chosen server verifies the whole folder before using anything."""
    try:
        kind = json.loads((Path(artefact_dir) / "serving.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return "tabular"
    return kind if isinstance(kind, str) else "tabular"
