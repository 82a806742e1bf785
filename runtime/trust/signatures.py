"""Whom an artefact folder is trusted from: its signature (`manifest.sig`) checked against the keys
the deployment trusts (runtime/trust/keys.py), never against a key the artefact carries.

A signature is required when the artefact's policy asks for one (manifest `policy`: always for
governance.risk_tier high, or security.require_signature), and for every artefact once the
deployment names trusted keys (AIOPS_TRUSTED_KEYS or --trusted-keys): an attacker who can rewrite
an unsigned manifest can rewrite its policy too, so only the deployment's own setting holds
against that. An unsigned artefact, or one signed by a key that is not trusted, is refused then;
`--insecure-dev` is the only way round, printed loudly and recorded (`Trust.waived`). A signature
that does not verify, or files that differ from the signed statement, are tampering: refused
always.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiops.runtime.trust import attest
from aiops.runtime.trust.keys import ENV_TRUSTED, TrustedKeys, load_trusted_keys

ENV_WORKER_INSECURE = "AIOPS_SERVE_INSECURE_DEV"  # set by 'aiops serve --insecure-dev' for its workers only
_insecure: list[str] = []  # the command line flag, for this process


def set_insecure_dev(on: bool) -> None:
    """`--insecure-dev` was given: trust refusals become loud warnings in this process."""
    _insecure[:] = ["--insecure-dev"] if on else []


def insecure_dev_requested() -> bool:
    return bool(_insecure) or (os.environ.get(ENV_WORKER_INSECURE) == "1"
                               and bool(os.environ.get("AIOPS_SERVE_ARTEFACTS")))


class TrustRefused(Exception):
    def __init__(self, refusals: list[str], tampering: list[str]):
        super().__init__("; ".join(refusals + tampering))
        self.refusals = refusals
        self.tampering = tampering


@dataclass(frozen=True)
class Trust:
    signed: bool
    signer: str | None  # the fingerprint of the trusted key whose signature verified
    trusted_keys: str | None  # the file of trusted keys, or None when the deployment names none
    required_by: tuple[str, ...]  # why a signature is required; empty when it is not
    insecure_dev: bool = False
    waived: tuple[str, ...] = field(default=())  # refusals --insecure-dev turned into warnings

    def text(self) -> str:
        if self.signer:
            return f"signed by {self.signer}, a trusted key ({self.trusted_keys})"
        if self.waived:
            return "NOT TRUSTED, accepted only because of --insecure-dev: " + "; ".join(self.waived)
        if self.signed:
            return f"{attest.SIG_NAME} present, signer NOT checked: no trusted keys are configured " \
                   f"(set {ENV_TRUSTED} or pass --trusted-keys) and the policy does not require a signature"
        return "unsigned (the policy does not require a signature and no trusted keys are configured)"

    def to_dict(self) -> dict[str, Any]:
        return {"signed": self.signed, "signer": self.signer, "trusted_keys": self.trusted_keys,
                "signature_required_by": list(self.required_by), "insecure_dev": self.insecure_dev,
                "waived": list(self.waived)}


def check(root: Path, manifest: dict[str, Any], digests: dict[str, str], trusted_keys: str | None = None,
          insecure_dev: bool | None = None) -> Trust:
    """The trust verdict for the folder `root` whose files have `digests`. Raises TrustRefused
    (waivable refusals and tampering, separately), or KeyFileError for a bad trusted-keys file."""
    keys: TrustedKeys | None = load_trusted_keys(trusted_keys)
    insecure = insecure_dev_requested() if insecure_dev is None else insecure_dev
    policy = manifest.get("policy") or {}
    why = []
    if policy.get("signature_required"):
        why.append(f"the artefact's policy ({policy.get('why') or 'signature_required'})")
    if keys is not None:
        why.append(f"this deployment (it trusts only the keys in {keys.source})")
    refusals: list[str] = []
    tampering: list[str] = []
    sig_path = root / attest.SIG_NAME
    signer = None
    signed = sig_path.is_file()
    need = " and ".join(why) + (" require" if len(why) > 1 else " requires")
    if not signed:
        if why:
            refusals.append(f"{sig_path} is missing: the artefact is unsigned, and {need} a signature by a "
                            "trusted key")
    else:
        try:
            hint, signed_bytes, sig = attest.open_bundle(sig_path.read_bytes())
            stmt = attest.statement_of(signed_bytes)
        except attest.BundleError as exc:
            raise TrustRefused([], [f"{sig_path} is not a valid signature: {exc}"]) from None
        hinted = f"ed25519:{hint[:16]}"
        if keys is None:
            if why:
                refusals.append(f"{sig_path} is signed by key {hinted} (as it says), but no trusted keys are "
                                f"configured, and {need} a signature by a trusted key: set "
                                f"{ENV_TRUSTED}=FILE or pass --trusted-keys FILE")
        else:
            key = next((k for k in keys.keys if k.verify(sig, signed_bytes)), None)
            if key is not None:
                signer = key.fingerprint
            elif keys.find(hint) is not None:
                tampering.append(f"{sig_path} does not verify against the trusted key {hinted}: "
                                 "the signature or the statement was changed after signing")
            else:
                refusals.append(f"{sig_path} is signed by key {hinted}, which is not among the trusted keys in "
                                f"{keys.source} ({keys.names()})")
        signed_files = attest.resources(stmt)
        for rel in sorted(digests):
            if rel not in signed_files:
                tampering.append(f"not signed: {rel} (absent from {attest.SIG_NAME})")
            elif signed_files[rel] != digests[rel]:
                tampering.append(f"modified after signing: {rel} (sha256 differs from {attest.SIG_NAME})")
        tampering += [f"missing: {rel} (signed in {attest.SIG_NAME})"
                      for rel in sorted(set(signed_files) - set(digests))]
    if tampering or (refusals and not insecure):
        raise TrustRefused(refusals, tampering)
    trust = Trust(signed, signer, keys.source if keys else None, tuple(why), insecure, tuple(refusals))
    if insecure:
        warn(root, trust)
    return trust


def warn(root: Path, trust: Trust) -> None:
    bar = "!" * 78
    lines = [bar, f"!! INSECURE DEV MODE (--insecure-dev) for {root}:"]
    lines += [f"!!   waived: {w}" for w in trust.waived] or ["!!   nothing was waived (the artefact is trusted)"]
    lines += ["!! Development only: never run a production deployment with --insecure-dev.", bar]
    print("\n".join(lines), file=sys.stderr, flush=True)


__all__ = ["Trust", "TrustRefused", "check", "insecure_dev_requested", "set_insecure_dev"]
