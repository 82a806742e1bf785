"""The audit log's keys, loaded from where the deployment names them (an environment
variable, or a file named by one), never from the log folder:

- the log key (AIOPS_LOG_KEY, or a file named by AIOPS_LOG_KEY_FILE): 32 bytes, as 64 hex
  digits or base64, the HMAC-SHA256 key of the entries' chain. Separate from the data key.
- the checkpoint signing key (AIOPS_LOG_SIGNING_KEY, or AIOPS_LOG_SIGNING_KEY_FILE): an
  Ed25519 seed as 64 hex digits (the format compiler/sign.py reads).
- the trusted keys of a verifier (--trusted-keys, or AIOPS_LOG_TRUSTED_KEYS): Ed25519 public
  keys as 64 hex digits, separated by commas, spaces or new lines, given directly or in a
  file (one per line; '#' starts a comment).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from aiops.runtime.policy import PolicyError, parse_key

LOG_KEY_ENV = "AIOPS_LOG_KEY"
SIGNING_KEY_ENV = "AIOPS_LOG_SIGNING_KEY"
TRUSTED_KEYS_ENV = "AIOPS_LOG_TRUSTED_KEYS"
KEYGEN_HELP = "generate them with 'aiops audit keygen'"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _secret(env: Mapping[str, str], var: str) -> tuple[str, str] | None:
    """(text, where) of a secret given in `var` or in the file named by `var`_FILE."""
    if env.get(var):
        return env[var], f"the environment variable {var}"
    path = env.get(var + "_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8"), f"the file {path} (named by {var}_FILE)"
    except OSError as exc:
        raise PolicyError(f"cannot read {path} (named by {var}_FILE): {exc.strerror}") from None


def load_log_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The 32-byte HMAC key of the audit chain, or None when the deployment gives none."""
    got = _secret(os.environ if env is None else env, LOG_KEY_ENV)
    if got is None:
        return None
    key = parse_key(got[0])
    if key is None:
        raise PolicyError(f"{got[1]} must hold a 32-byte key as 64 hex digits or base64; {KEYGEN_HELP}")
    return key


def load_signing_seed(env: Mapping[str, str] | None = None) -> bytes | None:
    """The 32-byte Ed25519 seed that signs checkpoints, or None."""
    got = _secret(os.environ if env is None else env, SIGNING_KEY_ENV)
    if got is None:
        return None
    text = got[0].strip()
    if not _HEX64.match(text):
        raise PolicyError(f"{got[1]} must hold an Ed25519 seed as 64 hex digits; {KEYGEN_HELP}")
    return bytes.fromhex(text)


def public_key_hex(seed: bytes) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def load_trusted_keys(given: str | None = None, env: Mapping[str, str] | None = None) -> tuple[list[str], str] | None:
    """(hex public keys, where) from `given` (a file or the keys themselves), else from
    AIOPS_LOG_TRUSTED_KEYS; None when neither is set."""
    env = os.environ if env is None else env
    text, where = (given, "--trusted-keys") if given else (env.get(TRUSTED_KEYS_ENV), TRUSTED_KEYS_ENV)
    if not text:
        return None
    if not _HEX64.match(text.split(",")[0].strip()) and Path(text).is_file():
        where = f"the trusted keys file {text}"
        text = Path(text).read_text(encoding="utf-8")
    words = [w for line in text.splitlines() for w in re.split(r"[,\s]+", line.split("#", 1)[0]) if w]
    bad = [w for w in words if not _HEX64.match(w)]
    if bad or not words:
        shown = repr(bad[0][:20]) if bad else "nothing"
        raise PolicyError(f"{where} must list Ed25519 public keys as 64 hex digits (or name a file that does). "
                        f"Got {shown} instead.")
    return [w.lower() for w in words], where


def generate() -> dict[str, str]:
    """A fresh log key, signing seed and the seed's public key (`aiops audit keygen`)."""
    seed = os.urandom(32)
    return {LOG_KEY_ENV: os.urandom(32).hex(), SIGNING_KEY_ENV: seed.hex(), "public_key": public_key_hex(seed)}


@dataclass(frozen=True)
class AuditSettings:
    """What the prediction log's writer needs from the deployment and serving.json."""

    log_key: bytes | None  # None: the chain is unkeyed (detects accidents, not tampering)
    signing_seed: bytes | None  # None: checkpoints are written unsigned
    retention_days: int | None  # None: segments are kept for ever
    fail_closed: bool  # refuse predictions while the log cannot be written

    @property
    def public_key(self) -> str | None:
        return public_key_hex(self.signing_seed) if self.signing_seed else None

    def describe(self) -> str:
        chain = "HMAC-SHA256 chain" if self.log_key else "UNKEYED chain (no AIOPS_LOG_KEY: detects accidents only)"
        cps = (f"checkpoints signed by {self.public_key[:16]}..." if self.signing_seed
               else "checkpoints UNSIGNED (no AIOPS_LOG_SIGNING_KEY)")
        kept = f"kept {self.retention_days} days" if self.retention_days else "kept until removed"
        return f"{chain}, {cps}, {kept}"


def load_audit(security: Mapping[str, Any], env: Mapping[str, str] | None = None,
               insecure_dev: bool = False) -> AuditSettings:
    """The audit settings of a server. When serving.json enables the audit log
    (security.audit_log.enabled) both keys are required: the server refuses to start without
    them, and predictions are refused while the log cannot be written. `insecure_dev`
    (`aiops serve --insecure-dev`, printed and recorded in /v1/metadata) runs it with an
    unkeyed chain instead."""
    env = os.environ if env is None else env
    audit = security.get("audit_log") or {}
    enabled = bool(audit.get("enabled"))
    log_key, seed = load_log_key(env), load_signing_seed(env)
    if enabled:
        missing = [v for v, k in ((LOG_KEY_ENV, log_key), (SIGNING_KEY_ENV, seed)) if k is None]
        if missing and insecure_dev:
            print(f"!! INSECURE DEV MODE (--insecure-dev): {' and '.join(missing)} not set: the audit log is chained "
                  "without a key and has no signed checkpoints; /v1/metadata records this", file=sys.stderr)
        elif missing:
            raise PolicyError(f"the audit log is enabled (serving.json security.audit_log) but {' and '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not set (nor {missing[0]}_FILE); "
                              f"{KEYGEN_HELP}, and keep them outside the log folder")
    days = audit.get("retention_days") if enabled else None
    return AuditSettings(log_key, seed, int(days) if days else None, enabled)
