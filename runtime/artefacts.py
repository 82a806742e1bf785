"""Loading generated artefacts: every file of the folder checked against manifest.json, the
signature checked against the keys the deployment trusts (runtime/trust/signatures.py), and the blessing
re-derived from the evidence (runtime/blessing.py). `verify` is the one gate every command
(serve, score, monitor, retrain, rollback, verify) goes through."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiops.runtime.trust import attest
from aiops.runtime.blessing import Verdict, derive, disagreements
from aiops.runtime.trust.keys import KeyFileError
from aiops.runtime.trust.signatures import Trust, TrustRefused, check

MANIFEST_SCHEMA = 2


class ArtefactError(Exception):
    """The artefacts cannot be trusted or used; the message says why and what to do."""


@dataclass(frozen=True)
class Artefacts:
    root: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    trust: Trust
    verdict: Verdict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def blessed(self) -> bool:
        """The re-derived verdict (never the manifest's flag alone: they agree, or verify refused)."""
        return self.verdict.blessed

    def json(self, rel: str) -> Any:
        return json.loads((self.root / rel).read_text())


def _load_json(d: Path, rel: str) -> dict[str, Any]:
    try:
        v = json.loads((d / rel).read_text())
    except (OSError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def _prompt_verdict(d: Path, gate: dict[str, Any], manifest: dict[str, Any],
                    blessing: dict[str, Any]) -> tuple[Verdict, list[str]]:
    """The verdict of a prompt artefact, re-derived by the one rule from each prompt's evaluation
    evidence (evidence/prompts/<p>/evaluation.json) against the manifest's gate; and every place
    in the evidence that says otherwise."""
    from aiops.runtime.blessing import derive_prompts

    gates = gate.get("prompts") if isinstance(gate.get("prompts"), dict) else {}
    evs = {p: _load_json(d, f"evidence/prompts/{p}/evaluation.json") for p in gates}
    verdict = derive_prompts(gates, evs)
    recorded = {"passed": bool(evs) and all(ev.get("passed") is True for ev in evs.values()),
                "thresholds": blessing.get("thresholds") or []}
    return verdict, disagreements(verdict, manifest, blessing, recorded, None)


def verify(root: str | Path, require_blessed: bool = True, trusted_keys: str | None = None,
           action: str = "load", insecure_dev: bool | None = None) -> Artefacts:
    """Check the artefacts at `root` before `action` ("serve", "score", ...); raise ArtefactError
    naming every problem. `trusted_keys`: a file of public keys (default $AIOPS_TRUSTED_KEYS);
    `insecure_dev` (default: the --insecure-dev flag of this process) waives trust refusals only."""
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
        gate = manifest.get("gate")
        if not isinstance(files, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ArtefactError(f"{mpath} is not a valid manifest") from None
    if manifest.get("manifest_schema") != MANIFEST_SCHEMA:
        raise ArtefactError(f"{mpath} has manifest schema {manifest.get('manifest_schema')!r}; this runtime reads "
                            f"{MANIFEST_SCHEMA}: recompile with 'aiops compile SPEC_DIR'")
    recompile = f"recompile with 'aiops compile {manifest.get('spec', {}).get('dir', 'SPEC_DIR')}'"
    problems = [f"a symbolic link, not a file: {p.relative_to(d).as_posix()}" for p in sorted(d.rglob("*"))
                if p.is_symlink()]
    digests = attest.folder_digests(d)  # every file, __pycache__ and hidden ones too
    for rel, meta in sorted(files.items()):
        if rel not in digests:
            problems.append(f"missing: {rel}")
        elif not isinstance(meta, dict) or (d / rel).stat().st_size != meta.get("size") \
                or digests[rel] != meta.get("sha256"):
            problems.append(f"modified: {rel} (sha256 differs from manifest.json)")
    problems += [f"not in the manifest: {rel}" for rel in sorted(set(digests) - set(files) - {"manifest.json"})
                 if not rel.startswith(attest.APPROVALS + "/")]
    if problems:
        raise ArtefactError(f"refusing the artefacts in '{d}': they do not match manifest.json\n  - "
                            + "\n  - ".join(problems) + f"\n  refusing to {action} them: {recompile}")
    try:
        trust = check(d, manifest, digests, trusted_keys, insecure_dev)
    except KeyFileError as exc:
        raise ArtefactError(f"refusing to {action} '{d}': {exc}") from None
    except TrustRefused as exc:
        if exc.tampering:
            raise ArtefactError(f"refusing the artefacts in '{d}': they do not match their signature\n  - "
                                + "\n  - ".join(exc.tampering + exc.refusals)
                                + f"\n  refusing to {action} them: {recompile} (with the signing key set)") from None
        raise ArtefactError(f"refusing to {action} '{d}': it is not signed by a key this deployment trusts\n  - "
                            + "\n  - ".join(exc.refusals)
                            + "\n  = help: sign it ('aiops compile' with the signing key set; 'aiops keys generate') "
                            "and list its public key in the trusted keys file; '--insecure-dev' runs it anyway, "
                            "for development only") from None
    if not isinstance(gate, dict):
        raise ArtefactError(f"refusing to {action} '{d}': {mpath} records no gate (thresholds) to re-derive the "
                            f"blessing from; {recompile}")
    blessing = _load_json(d, "evidence/blessing.json")
    if manifest.get("kind") == "prompt":  # prompt artefacts: the gates of each prompt (docs/genai.md)
        verdict, disagree = _prompt_verdict(d, gate, manifest, blessing)
    else:
        evaluation = _load_json(d, "evidence/evaluation.json")
        verdict = derive(gate, evaluation, _load_json(d, "evidence/parity.json"))
        model = (files.get("model.onnx") or {}).get("sha256")
        disagree = disagreements(verdict, manifest, blessing, evaluation, model)
    if disagree:
        raise ArtefactError(f"refusing to {action} '{d}': the evidence disagrees with itself (re-derived from "
                            "evidence/evaluation.json against the gate in manifest.json, the model is "
                            f"{'blessed' if verdict.blessed else 'NOT blessed'})\n  - " + "\n  - ".join(disagree)
                            + f"\n  the artefacts were edited after compiling: {recompile}")
    if require_blessed and not verdict.blessed:
        what, see = (("the prompts are", "evidence/prompts/<prompt>/evaluation.json") if manifest.get("kind") == "prompt"
                     else ("the model is", "evidence/evaluation.json"))
        raise ArtefactError(f"refusing to {action} '{d}': {what} not blessed (failed gates: "
                            f"{', '.join(verdict.failed) or 'no thresholds set'}); see {see}")
    return Artefacts(d, manifest, hashlib.sha256(raw).hexdigest(), trust, verdict)
