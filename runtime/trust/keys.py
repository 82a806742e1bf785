"""Signing keys and trusted keys: where they come from, how they are read, written and rotated.

A private key is an Ed25519 key in a PEM (PKCS#8) file, mode 0600, kept outside every artefact
folder. Compile and retrain find it through the environment variable the spec names
(`security.signing_key_env`, default AIOPS_SIGNING_KEY): a path to that file, or the key's
32-byte seed in hex.

Trust is the deployment's choice, never the artefact's: AIOPS_TRUSTED_KEYS (or `--trusted-keys
FILE` on every runtime command) names a file of public keys, one a line:

    ed25519 <64 hex digits of the public key> [comment]

A key is named everywhere by its fingerprint, "ed25519:" and the first 16 hex digits of the
SHA-256 of its public key. `load_private_key` and `load_trusted_keys` are the two entry points
the rest of aiops (signing, approvals) uses.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_TRUSTED = "AIOPS_TRUSTED_KEYS"
ENV_SIGNING = "AIOPS_SIGNING_KEY"
ENV_OLD_TRUSTED = "AIOPS_TRUSTED_KEY"  # before trusted-key files: refused, so nobody loses a check silently


class KeyFileError(ValueError):
    """A key or key file cannot be used; the message names the file or variable and the fix."""


def key_id(public_raw: bytes) -> str:
    """The full identifier of a public key: SHA-256 of its 32 raw bytes, in hex."""
    return hashlib.sha256(public_raw).hexdigest()


def fingerprint(public_raw: bytes) -> str:
    return f"ed25519:{key_id(public_raw)[:16]}"


@dataclass(frozen=True)
class PublicKey:
    raw: bytes
    comment: str = ""

    @property
    def id(self) -> str:
        return key_id(self.raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def line(self) -> str:
        return f"ed25519 {self.raw.hex()}" + (f" {self.comment}" if self.comment else "")

    def verify(self, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private key and where it came from (a file or an environment variable)."""
    private: object  # cryptography's Ed25519PrivateKey
    source: str

    @property
    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(raw)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)  # Ed25519 is deterministic: the same data, the same signature


@dataclass(frozen=True)
class TrustedKeys:
    keys: tuple[PublicKey, ...]
    source: str  # the file they were read from

    def find(self, kid: str) -> PublicKey | None:
        return next((k for k in self.keys if k.id == kid), None)

    def names(self) -> str:
        return ", ".join(k.fingerprint for k in self.keys)


def _private_from_bytes(data: bytes, where: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{where} is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{where} holds a {type(key).__name__.lstrip('_')}, not an Ed25519 key: "
                               "make one with 'aiops keys generate'")
        return key
    try:
        seed = bytes.fromhex(text.decode("ascii"))
        if len(seed) != 32:
            raise ValueError(f"{len(seed)} bytes")
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{where} must be an Ed25519 private key file (PEM) or a 32-byte seed in hex "
                           f"(64 characters): {exc}") from None


def load_private_key(path_or_env: str | Path | None = None, env: Mapping[str, str] | None = None,
                     env_name: str = ENV_SIGNING) -> SigningKey | None:
    """The signing key: from the file `path_or_env` when given, else from the environment variable
    `env_name` (a path to a key file, or a hex seed). None when neither is set."""
    env = os.environ if env is None else env
    if path_or_env:
        p = Path(path_or_env)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read the private key file {p}: {exc.strerror}") from None
        return SigningKey(_private_from_bytes(data, str(p)), str(p))
    value = (env.get(env_name) or "").strip()
    if not value:
        return None
    p = Path(value)
    if value.startswith("-----BEGIN"):
        return SigningKey(_private_from_bytes(value.encode(), f"${env_name}"), f"${env_name}")
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value) and not p.is_file():
        return SigningKey(_private_from_bytes(value.encode(), f"${env_name}"), f"${env_name}")
    if not p.is_file():
        raise KeyFileError(f"${env_name} is {value!r}, which is neither a key file nor a 32-byte hex seed: "
                           "make a key with 'aiops keys generate --out FILE' and set it to FILE")
    return SigningKey(_private_from_bytes(p.read_bytes(), f"{p} (from ${env_name})"), str(p))


def parse_trusted(text: str, where: str) -> tuple[PublicKey, ...]:
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if parts[0] != "ed25519" or len(parts) < 2:
            raise KeyFileError(f"{where}:{n}: expected 'ed25519 <64 hex digits> [comment]'. Got {line[:60]!r} instead.")
        try:
            raw = bytes.fromhex(parts[1])
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise KeyFileError(f"{where}:{n}: the public key must be 32 bytes in hex (64 characters). "
                               f"Got {parts[1][:70]!r} instead.")
        keys.append(PublicKey(raw, parts[2] if len(parts) > 2 else ""))
    return tuple(keys)


def load_trusted_keys(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> TrustedKeys | None:
    """The public keys this deployment trusts: the file `path`, else $AIOPS_TRUSTED_KEYS; None when
    neither names one. Never read from an artefact."""
    env = os.environ if env is None else env
    if env.get(ENV_OLD_TRUSTED) and not (path or env.get(ENV_TRUSTED)):
        raise KeyFileError(f"${ENV_OLD_TRUSTED} is no longer read: put the key in a file as "
                           f"'ed25519 {env[ENV_OLD_TRUSTED].strip()[:64]}' and set ${ENV_TRUSTED} to that file")
    where = str(path or env.get(ENV_TRUSTED) or "")
    if not where:
        return None
    try:
        text = Path(where).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        origin = "--trusted-keys" if path else "$" + ENV_TRUSTED
        raise KeyFileError(f"cannot read the trusted keys file {where} (from {origin}): "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    keys = parse_trusted(text, where)
    if not keys:
        raise KeyFileError(f"the trusted keys file {where} lists no key: add a line 'ed25519 <public key hex>' "
                           "(printed by 'aiops keys generate')")
    return TrustedKeys(keys, where)


# ------------------------------------------------------------------ writing keys
def _inside_artefacts(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        if (parent / "manifest.json").is_file():
            return parent
    return None


def write_new_key(out: Path, comment: str = "") -> PublicKey:
    """Generate an Ed25519 key; write the private key to `out` (0600) and its public line to
    `out`.pub. Refuses an existing file and any place inside an artefact folder."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    art = _inside_artefacts(out)
    if art is not None:
        raise KeyFileError(f"refusing to write a private key into the artefact folder {art}: keys never travel "
                           "with artefacts; choose a path outside it (default ~/.config/aiops/signing.key)")
    if out.exists():
        raise KeyFileError(f"{out} exists: refusing to overwrite a key (use 'aiops keys rotate' to replace it)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(out, 0o600)
    pub = SigningKey(key, str(out)).public
    pub = PublicKey(pub.raw, comment)
    Path(f"{out}.pub").write_text(pub.line() + "\n")
    return pub


def add_trusted(trusted_file: Path, key: PublicKey) -> bool:
    """Append `key` to the trusted keys file (created if absent); False when it is already there."""
    existing = parse_trusted(trusted_file.read_text(), str(trusted_file)) if trusted_file.is_file() else ()
    if any(k.raw == key.raw for k in existing):
        return False
    trusted_file.parent.mkdir(parents=True, exist_ok=True)
    with trusted_file.open("a") as fh:
        fh.write(key.line() + "\n")
    return True


def rotate(key_file: Path, trusted_file: Path, comment: str = "") -> tuple[PublicKey, PublicKey]:
    """Replace the private key in `key_file` by a new one. Both public keys end up in
    `trusted_file`: artefacts signed by the old key still verify until its line is removed.
    Returns (old, new)."""
    old = load_private_key(key_file)
    old_pub = PublicKey(old.public.raw, "retired: verify only; remove once every artefact is re-signed")
    lines = trusted_file.read_text().splitlines(True) if trusted_file.is_file() else []
    parse_trusted("".join(lines), str(trusted_file))  # refuse to edit a malformed file
    kept = [ln for ln in lines if ln.split()[1:2] != [old_pub.raw.hex()]]  # its line, marked retired, goes last
    trusted_file.parent.mkdir(parents=True, exist_ok=True)
    trusted_file.write_text("".join(kept) + old_pub.line() + "\n")
    tmp = key_file.with_name(key_file.name + ".rotating")
    if tmp.exists():
        tmp.unlink()
    Path(f"{tmp}.pub").unlink(missing_ok=True)
    new = write_new_key(tmp, comment)
    os.replace(tmp, key_file)
    os.replace(f"{tmp}.pub", f"{key_file}.pub")
    add_trusted(trusted_file, new)
    return old_pub, new
