"""What a tabular and a prompt build share about their output folder: the manifest schema, the
build failure, the approvals kept across an identical recompile, and `--check`'s comparison.
(Its own module so that compiler/build.py and compiler/prompt_build.py import it, not each other.)"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

from aiops.compiler.diagnostics import Diagnostic

MANIFEST_SCHEMA = 2  # 2: signature in manifest.sig, policy and gate recorded


class BuildFailed(Exception):
    def __init__(self, text: str, code: int, diags: list[Diagnostic] | None = None):
        super().__init__(text)
        self.text = text
        self.code = code
        self.diags = diags or []


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


APPROVALS = "approvals"  # signed approval records, added after compile: not in the manifest


def keep_approvals(out_dir: Path, stage: Path) -> None:
    """A recompile that gives the same artefacts (the same manifest) keeps their approvals; approvals of
    other artefacts are not carried over (the registry keeps every approval as an event, and an archive
    of a replaced production model keeps its own)."""
    import json

    want = sha256_bytes((stage / "manifest.json").read_bytes())
    for p in sorted((out_dir / APPROVALS).glob("*.json")) if (out_dir / APPROVALS).is_dir() else []:
        try:
            same = json.loads(p.read_text()).get("manifest_sha256") == want
        except (OSError, ValueError, AttributeError):
            same = False
        if same:
            (stage / APPROVALS).mkdir(exist_ok=True)
            shutil.copyfile(p, stage / APPROVALS / p.name)


def compare(stage: Path, out_dir: Path, plan: Any) -> int:
    """`--check`: 0 when the staged build equals the committed folder, else 1 with what differs
    (`plan`: a tabular or prompt plan; its spec_dir and regenerate are read)."""
    want = {str(p.relative_to(stage)): p.read_bytes() for p in stage.rglob("*") if p.is_file()}
    have = {str(p.relative_to(out_dir)): p.read_bytes() for p in out_dir.rglob("*")
            if p.is_file() and p.relative_to(out_dir).parts[0] != APPROVALS} \
        if out_dir.is_dir() else {}
    stale = sorted(k for k in want if have.get(k) != want[k])
    extra = sorted(k for k in have if k not in want)
    if not stale and not extra:
        print(f"ok: {out_dir} is up to date with {plan.spec_dir}", file=sys.stderr)
        return 0
    print(f"error[E903]: {out_dir} is stale: it is not what {plan.spec_dir} and its data produce now",
          file=sys.stderr)
    for k in stale:
        print(f"   = {'changed' if k in have else 'missing'}: {out_dir / k}", file=sys.stderr)
    for k in extra:
        print(f"   = not generated any more: {out_dir / k}", file=sys.stderr)
    print(f"   = help: run '{plan.regenerate}' and commit {out_dir}", file=sys.stderr)
    return 1
