"""Why committed output is stale: library versions first, then files.

`aiops compile --check` compares the committed `manifest.json`'s library versions with the
installed ones before it trains anything: a different scikit-learn, skl2onnx, onnx,
onnxruntime or protobuf changes the bytes of `model.onnx`, so the honest verdict is
"recompile with the locked versions", not a list of changed files.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from aiops.compiler.diagnostics import Diagnostic, Location


def built_with(out_dir: Path) -> dict[str, str] | None:
    """The library and Python versions recorded in out_dir/manifest.json (None if unreadable)."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
        libs = dict(manifest["libraries"])
        libs["python"] = manifest["python"]
        return {str(k): str(v) for k, v in libs.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def installed(libraries: dict[str, str]) -> dict[str, str]:
    out = dict(libraries)
    out["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    return out


def version_drift(out_dir: Path, now: dict[str, str]) -> Diagnostic | None:
    """E910 when the committed output was built with other library versions than `now`."""
    built = built_with(out_dir)
    if built is None:
        return None
    diff = [f"{lib} {built[lib]} vs {now.get(lib, 'missing')}" for lib in sorted(built)
            if built[lib] != now.get(lib, "missing")]
    if not diff:
        return None
    return Diagnostic(
        "E910", "library versions differ from the build; recompile", "libraries",
        Location(file=str(out_dir / "manifest.json")), None,
        (f"built with {', '.join(diff[:1])} (built vs installed)",) + tuple(f"also {d}" for d in diff[1:]),
        "install the locked versions (pip install -c constraints.txt -e '.[test]') and run --check again, "
        "or, to move to these versions, update constraints.txt, recompile and commit generated/")
