"""Compile a bundled example once per test session and share the artefacts.

Tests must not write into generated/ or the repository's .aiops/: each build runs in a
temporary copy of the repository's layout (BUILD_ROOT, with specs/<name> copied into it), so
the registry and the quarantine go to BUILD_ROOT/.aiops and the generated files name
`specs/<name>` as they do in generated/.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_CACHE: dict[tuple, Path] = {}
_TMP = Path(tempfile.mkdtemp(prefix="aiops-test-build-"))
BUILD_ROOT = _TMP / "repo"


def build(spec: str, *overrides: str) -> Path:
    """Artefacts of specs/<spec> (with overrides), compiled once per session. Read-only: copy
    them (copy_artefacts) before changing anything."""
    key = (spec, overrides)
    if key not in _CACHE:
        from aiops.compiler.build import compile_spec

        if not (BUILD_ROOT / "specs" / spec).is_dir():
            shutil.copytree(ROOT / "specs" / spec, BUILD_ROOT / "specs" / spec)
        out = _TMP / f"{spec}-{len(_CACHE)}"
        cwd = Path.cwd()
        os.chdir(BUILD_ROOT)
        try:
            rc = compile_spec(f"specs/{spec}", list(overrides), out=str(out), quiet=True)
        finally:
            os.chdir(cwd)
        assert rc == 0, f"compile of {spec} failed with {rc}"
        _CACHE[key] = out
    return _CACHE[key]


def copy_artefacts(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def reseal(root: Path, key_file: Path | None = ROOT / "tests" / "keys" / "TEST_ONLY_signing.key") -> None:
    """Record every file of `root` in manifest.json again and sign the folder with `key_file`
    (None: leave it unsigned), as a recompile with that key would."""
    import hashlib
    import json

    from aiops.compiler.sign import sign_folder
    from aiops.runtime.trust.attest import SIG_NAME
    from aiops.runtime.trust.keys import load_private_key

    (root / SIG_NAME).unlink(missing_ok=True)
    m = json.loads((root / "manifest.json").read_text())
    m["files"] = {p.relative_to(root).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                                   "size": p.stat().st_size}
                  for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).as_posix() != "manifest.json"
                  and p.relative_to(root).parts[0] != "approvals"}
    (root / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    if key_file is not None:
        sign_folder(root, m["name"], load_private_key(key_file))
