"""Who is acting, and signatures of governance records (approvals).

One small module so it can be unified with the deployment's key management at merge:
  - the actor's private key: an Ed25519 seed (32 bytes, hex) in $AIOPS_KEY, or in the file
    named by $AIOPS_KEY_FILE;
  - the public keys the deployment trusts, with the name each one stands for: the file named
    by $AIOPS_TRUSTED_KEYS, one `ed25519 HEX_PUBLIC_KEY NAME` per line (runtime/trust/keys.py). Never read from
    an artefact folder: a folder cannot vouch for its own approvals.
The identity of an actor is the name the trusted-keys file gives to the public key of the key
used; a name is never typed by the actor. With no key configured at all, the identity is the
OS user, and records are unsigned (accepted for production only with --insecure-dev).
"""
from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_ENV = "AIOPS_KEY"
KEY_FILE_ENV = "AIOPS_KEY_FILE"
TRUSTED_ENV = "AIOPS_TRUSTED_KEYS"


class IdentityError(Exception):
    """A key or the trusted-keys file cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Identity:
    name: str
    public_key: str | None  # hex; None for the OS user
    source: str  # "key" | "os user"

    @property
    def signed(self) -> bool:
        return self.public_key is not None


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "signature"}, sort_keys=True,
                      separators=(",", ":")).encode()


def _seed() -> tuple[str, str] | None:
    """(hex seed, where it came from), or None when no key is configured."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].strip(), f"${KEY_ENV}"
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        p = Path(path)
        if not p.is_file():
            raise IdentityError(f"${KEY_FILE_ENV} names '{path}', which is not a file; give the file that holds "
                                "your Ed25519 seed in hex")
        return p.read_text().strip(), f"{path} (${KEY_FILE_ENV})"
    return None


def private_key():
    """The actor's Ed25519 private key, or None when no key is configured."""
    got = _seed()
    if got is None:
        return None
    seed, where = got
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
    except ValueError:
        raise IdentityError(f"{where} must hold a 32-byte Ed25519 seed in hex (64 characters). "
                            f"Got {len(seed)} characters instead.") from None


def public_hex(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def new_seed() -> tuple[str, str]:
    """A fresh (seed hex, public key hex) pair."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    seed = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                           serialization.NoEncryption()).hex()
    return seed, public_hex(k)


def trusted_keys() -> dict[str, str] | None:
    """{public key hex: name} from $AIOPS_TRUSTED_KEYS, or None when it is not set: the one
    trusted-keys file of the deployment (runtime/trust/keys.py, 'ed25519 HEX NAME ...' per line), the
    first word of a key's comment being the name its approvals are recorded under."""
    from aiops.runtime.trust.keys import KeyFileError, load_trusted_keys

    path = os.environ.get(TRUSTED_ENV)
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise IdentityError(f"${TRUSTED_ENV} names '{path}', which is not a file; give the deployment's "
                            "trusted-keys file (one 'ed25519 HEX_PUBLIC_KEY NAME' per line)")
    if any((d / "manifest.json").is_file() for d in [p.resolve().parent, *p.resolve().parent.parents]):
        raise IdentityError(f"${TRUSTED_ENV} names '{path}', inside an artefact folder (a manifest.json is above "
                            "it); trusted keys come from the deployment, never from the artefacts they vouch for")
    try:
        keys = load_trusted_keys(path)
    except KeyFileError as exc:
        raise IdentityError(str(exc)) from None
    return {k.raw.hex(): k.comment.split()[0] for k in (keys.keys if keys else ()) if k.comment.strip()}


def keys_configured() -> bool:
    return bool(os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV) or os.environ.get(TRUSTED_ENV))


def current(require_trusted: bool = False) -> Identity:
    """The acting identity: the trusted name of the key used, or the OS user when no key is set.

    require_trusted: a configured key must be listed in $AIOPS_TRUSTED_KEYS (always true for
    approvals). A build's author with an untrusted key is recorded as key:<first 16 hex>."""
    key = private_key()
    trusted = trusted_keys()
    if key is None:
        if require_trusted:
            raise IdentityError(f"${TRUSTED_ENV} is set but no key is: set ${KEY_ENV} (or ${KEY_FILE_ENV}) to "
                                "your Ed25519 seed; with keys configured, a name is never taken from the OS user")
        return Identity(getpass.getuser(), None, "os user")  # a build without a personal key: recorded as such
    pub = public_hex(key)
    if trusted is not None and pub in trusted:
        return Identity(trusted[pub], pub, "key")
    if require_trusted:
        where = f"the trusted-keys file {os.environ[TRUSTED_ENV]}" if trusted is not None else f"${TRUSTED_ENV} (not set)"
        raise IdentityError(f"your key (public key {pub}) is not in {where}; ask the deployment's owner to add "
                            f"'ed25519 {pub} YOUR-NAME' to it")
    return Identity(f"key:{pub[:16]}", pub, "key")


def sign(body: dict[str, Any]) -> dict[str, str]:
    key = private_key()
    if key is None:
        raise IdentityError(f"no key to sign with: set ${KEY_ENV} or ${KEY_FILE_ENV}")
    return {"algorithm": "ed25519", "public_key": public_hex(key), "value": key.sign(canonical(body)).hex()}


def signer(body: dict[str, Any], trusted: dict[str, str]) -> str:
    """The trusted name that signed `body` (its 'signature' field); IdentityError otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig = body.get("signature")
    if not isinstance(sig, dict) or sig.get("algorithm") != "ed25519":
        raise IdentityError("it is not signed")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"])).verify(
            bytes.fromhex(sig["value"]), canonical(body))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        raise IdentityError("its signature does not verify: the record was changed after signing") from None
    name = trusted.get(str(sig["public_key"]).lower())
    if name is None:
        raise IdentityError(f"it is signed by a key the deployment does not trust ({str(sig['public_key'])[:16]}...)")
    return name
