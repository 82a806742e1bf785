"""Signing a build: the policy that asks for it, the key that makes it, and `manifest.sig`.

The key comes from the environment variable the spec names (security.signing_key_env, default
AIOPS_SIGNING_KEY): a path to an Ed25519 key file ('aiops keys generate') or a hex seed. It is
never written into the artefact folder. The signature (runtime/trust/attest.py) covers every file of
the folder, manifest.json included, and is deterministic: a signed build is byte-identical.

When the policy asks for a signature (security.require_signature, and always for
governance.risk_tier: high) and no key is set, the build is refused before training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aiops.compiler import schema as S
from aiops.runtime.trust import attest
from aiops.runtime.trust.keys import KeyFileError, SigningKey, load_private_key


def signature_policy(security: S.Security, risk_tier: str) -> dict[str, Any]:
    """What the manifest records as `policy`: whether a signature is required, and why."""
    why = []
    if risk_tier == "high":
        why.append("governance.risk_tier is high")
    if security.require_signature:
        why.append("security.require_signature is true")
    return {"signature_required": bool(why), "why": "; ".join(why), "risk_tier": risk_tier}


def signing_key(security: S.Security, risk_tier: str) -> SigningKey | None:
    """The build's signing key, or None when unset and not required. UserError when required and
    unset, or unreadable."""
    from aiops.compiler.errors import UserError

    env_name = security.signing_key_env
    try:
        key = load_private_key(env=None, env_name=env_name)
    except KeyFileError as exc:
        raise UserError(str(exc)) from None
    policy = signature_policy(security, risk_tier)
    if key is None and policy["signature_required"]:
        raise UserError(
            f"this build must be signed ({policy['why']}), but ${env_name} is not set\n"
            f"   = the runtime refuses an unsigned artefact of this spec (serve, score, monitor, retrain, verify)\n"
            f"   = help: 'aiops keys generate --out ~/.config/aiops/signing.key --trusted-keys "
            f"~/.config/aiops/trusted.keys', then export {env_name}=~/.config/aiops/signing.key "
            f"(for the bundled example only: {env_name}=tests/keys/TEST_ONLY_signing.key)")
    return key


def sign_folder(stage: Path, name: str, key: SigningKey) -> str:
    """Write `manifest.sig` over every file of `stage`; return the key's fingerprint."""
    stmt = attest.statement(name, attest.folder_digests(stage))
    pub = key.public
    (stage / attest.SIG_NAME).write_bytes(attest.bundle(stmt, pub.id, key.sign))
    return pub.fingerprint
