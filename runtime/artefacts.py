"""Loading generated artefacts: verify every file against manifest.json, its signature
when there is one, and refuse a model that is not blessed."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stable import file_sha256


class ArtefactError(Exception):
    """The artefacts cannot be trusted or used; the message says why and what to do."""


@dataclass(frozen=True)
class Artefacts:
    root: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def json(self, rel: str) -> Any:
        return json.loads((self.root / rel).read_text())




def verify(root: str | Path, require_blessed: bool = True, trusted_key: str | None = None,
           purpose: str = "serve") -> Artefacts:
    """Check the artefacts at `root`; raise ArtefactError with every problem found."""
    d = Path(root)
    mpath = d / "manifest.json"
    if not d.is_dir():
        raise ArtefactError(f"no artefact folder at '{d}': run 'aiops compile SPEC_DIR' first")
    if not mpath.is_file():
        raise ArtefactError(f"'{d}' has no manifest.json: it is not the output of 'aiops compile'")
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise ArtefactError(f"{mpath} is not a valid manifest") from None
    if manifest.get("manifest_schema") != 1:
        raise ArtefactError(f"{mpath} has manifest schema {manifest.get('manifest_schema')!r}; this runtime reads 1")
    problems = []
    for rel, meta in sorted(files.items()):
        p = d / rel
        if not p.is_file():
            problems.append(f"missing: {rel}")
        elif p.stat().st_size != meta["size"] or file_sha256(p) != meta["sha256"]:
            problems.append(f"modified: {rel} (sha256 differs from manifest.json)")
    extra = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != "manifest.json"
                   and str(p.relative_to(d)) not in files and "__pycache__" not in p.parts
                   and p.relative_to(d).parts[0] != "approvals")  # signed on their own: runtime/governance
    problems += [f"not in the manifest: {e}" for e in extra]
    sig = manifest.get("signature")
    trusted_key = trusted_key or os.environ.get("AIOPS_TRUSTED_KEY")
    if sig:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        body = json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True,
                          separators=(",", ":")).encode()
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"])).verify(bytes.fromhex(sig["value"]), body)
        except (InvalidSignature, ValueError, KeyError):
            problems.append("the manifest signature does not verify: manifest.json was changed after signing")
        if trusted_key and sig.get("public_key") != trusted_key:
            problems.append("the manifest is signed by a key other than AIOPS_TRUSTED_KEY")
    elif trusted_key:
        problems.append("the manifest is unsigned, but AIOPS_TRUSTED_KEY requires a signature")
    if problems:
        raise ArtefactError(f"refusing the artefacts in '{d}': they do not match manifest.json\n  - "
                            + "\n  - ".join(problems) + f"\n  recompile with 'aiops compile {manifest.get('spec', {}).get('dir', 'SPEC_DIR')}'")
    if require_blessed and not manifest.get("blessed"):
        failed = []
        try:
            failed = json.loads((d / "evidence" / "blessing.json").read_text()).get("failed", [])
        except (OSError, ValueError):
            pass
        raise ArtefactError(f"refusing to {purpose} '{d}': the model is not blessed (failed gates: "
                            f"{', '.join(failed) or 'no thresholds set'}); see evidence/evaluation.json")
    return Artefacts(d, manifest, hashlib.sha256(raw).hexdigest())
