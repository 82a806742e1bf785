"""Compile a bundled example once per test session and share the artefacts.

Tests must not write into generated/: they build here, under a temporary folder.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_CACHE: dict[tuple, Path] = {}
_TMP = Path(tempfile.mkdtemp(prefix="aiops-test-build-"))


def build(spec: str, *overrides: str) -> Path:
    """Artefacts of specs/<spec> (with overrides), compiled once per session. Read-only: copy
    them (copy_artefacts) before changing anything."""
    key = (spec, overrides)
    if key not in _CACHE:
        from compiler.build import compile_spec

        out = _TMP / f"{spec}-{len(_CACHE)}"
        rc = compile_spec(str(ROOT / "specs" / spec), list(overrides), out=str(out), quiet=True)
        assert rc == 0, f"compile of {spec} failed with {rc}"
        _CACHE[key] = out
    return _CACHE[key]


def copy_artefacts(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
