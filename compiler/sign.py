"""Manifest signatures: Ed25519 over the canonical manifest body.

The private key is a 32-byte seed, hex-encoded, in the environment variable the spec names
(security.signing_key_env). Ed25519 signatures are deterministic, so a signed build is
still byte-identical. Without a key the manifest is written unsigned and says so.
"""
from __future__ import annotations

import json
import os
from typing import Any

from .errors import UserError


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "signature"}, sort_keys=True,
                      separators=(",", ":")).encode()


def sign_manifest(body: dict[str, Any], key_env: str) -> dict[str, Any] | None:
    seed = os.environ.get(key_env or "")
    if not seed:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed.strip()))
    except ValueError as exc:
        raise UserError(f"${key_env} must hold a 32-byte Ed25519 seed in hex (64 characters): {exc}") from None
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    return {"algorithm": "ed25519", "public_key": pub, "value": key.sign(canonical(body)).hex()}
