"""The security policy of serving.json, enforced at run time: API keys and roles, and the
key for encryption at rest (PII masking is runtime/masking.py).

Nothing here reads a request body or writes a file; the server, the job runner and the
prediction log call these functions.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PERMISSIONS = ("predict", "explain", "score", "jobs", "jobs_admin", "metadata", "metrics", "audit", "admin",
               "generate")  # generate: POST /v1/prompts/<name> (runtime/genai/server.py)
ADMIN_EXCLUDES = frozenset(("jobs_admin",))  # never implied by 'admin': a role must list it
KEYS_ENV = "AIOPS_API_KEYS"  # key_source: env  -> "key1:role1,key2:role2"
KEYS_FILE_ENV = "AIOPS_API_KEYS_FILE"  # key_source: file -> path of a JSON file {"key": "role"}
MIN_KEY_CHARS = 32
KEY_GEN_HELP = "generate one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""


class PolicyError(Exception):
    """The policy cannot be enforced as configured; the message says what to set."""


# ---------------------------------------------------------------- API keys and roles
def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Access:
    """API keys (kept as sha256 digests) and the roles they map to.

    A presented key is hashed and compared with every known digest by hmac.compare_digest,
    without stopping at a match, so the time taken does not depend on which key (or how
    much of a digest) matched."""

    roles: dict[str, frozenset[str]]
    keys: dict[bytes, str]  # sha256(key) -> role
    source: str  # where the keys came from, for the startup banner and /v1/metadata
    required: str | None = None  # why keys are required (roles defined, high risk), None when optional
    insecure_dev: bool = False  # --insecure-dev: keys were required and none were given

    @property
    def open(self) -> bool:
        return not self.keys

    def role_of(self, key: str | None) -> str | None:
        if not key or not self.keys:
            return None
        d = _digest(key)
        role = None
        for known, r in self.keys.items():  # every digest, no early exit
            if hmac.compare_digest(known, d):
                role = r
        return role

    def allows(self, role: str, permission: str) -> bool:
        perms = self.roles.get(role, frozenset())
        return permission in perms or ("admin" in perms and permission not in ADMIN_EXCLUDES)

    def check(self, key: str | None, permission: str) -> int:
        """0 when allowed, else the HTTP status: 401 (no or unknown key), 403 (role lacks it)."""
        if not self.keys:
            return 0
        role = self.role_of(key)
        if role is None:
            return 401
        return 0 if self.allows(role, permission) else 403


def owner_id(key: str | None) -> str:
    """Who owns a job: a digest of the key that created it ('' when the server runs open)."""
    if not key:
        return ""
    return hashlib.sha256(b"aiops-job-owner\0" + key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _did_you_mean(name: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _pairs_from_env(text: str) -> list[tuple[str, str]]:
    pairs = []
    for i, item in enumerate(text.split(","), 1):
        item = item.strip()
        if not item:
            continue
        key, sep, role = item.rpartition(":")
        if not sep or not key.strip() or not role.strip():
            raise PolicyError(f"{KEYS_ENV}: entry {i} is not written as KEY:ROLE "
                              f"(expected e.g. {KEYS_ENV}='key1:scorer,key2:auditor')")
        pairs.append((key.strip(), role.strip()))
    return pairs


def _pairs_from_file(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except ValueError:
        raise PolicyError(f"the API key file {path} is not valid JSON; expected {{\"KEY\": \"ROLE\", ...}}") from None
    if isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return list(data.items())
    if isinstance(data, list) and all(isinstance(e, dict) and isinstance(e.get("key"), str)
                                      and isinstance(e.get("role"), str) for e in data):
        return [(e["key"], e["role"]) for e in data]
    raise PolicyError(f"the API key file {path} must hold {{\"KEY\": \"ROLE\", ...}} "
                      "or [{\"key\": KEY, \"role\": ROLE}, ...]")


def keys_required(roles: Mapping[str, Any], risk_tier: str | None) -> str | None:
    """Why this model may not be served without API keys, or None when it may."""
    why = []
    if roles:
        why.append(f"serving.json defines roles ({', '.join(sorted(roles))})")
    if risk_tier == "high":
        why.append("the model's risk tier is high")
    return " and ".join(why) or None


def load_access(security: Mapping[str, Any], env: Mapping[str, str] | None = None, *,
                risk_tier: str | None = None, insecure_dev: bool = False) -> Access:
    """Roles from serving.json and API keys from the source it names (security.key_source).

    Fails closed: when the spec defines roles, or the model is high risk, and no key is
    configured, this refuses (PolicyError) unless insecure_dev (`aiops serve --insecure-dev`)."""
    env = os.environ if env is None else env
    roles = {r: frozenset(p) for r, p in (security.get("roles") or {}).items()}
    for r, perms in roles.items():
        unknown = sorted(perms - set(PERMISSIONS))
        if unknown:
            raise PolicyError(f"serving.json security.roles.{r} grants unknown permissions {unknown}; "
                              f"valid: {', '.join(PERMISSIONS)}")
    source = security.get("key_source", "env")
    if source == "env":
        text = env.get(KEYS_ENV, "")
        pairs = _pairs_from_env(text)
        where = f"environment variable {KEYS_ENV}"
    elif source == "file":
        path = env.get(KEYS_FILE_ENV)
        if not path:
            pairs, where = [], f"file named by {KEYS_FILE_ENV} (not set)"
        else:
            pairs, where = _pairs_from_file(Path(path)), f"file {path}"
    else:
        raise PolicyError(f"serving.json security.key_source is {source!r}; valid: env, file")
    keys: dict[bytes, str] = {}
    for i, (key, role) in enumerate(pairs, 1):
        if len(key) < MIN_KEY_CHARS:
            raise PolicyError(f"{where}: key {i} is {len(key)} characters long; an API key needs at least "
                              f"{MIN_KEY_CHARS} characters; {KEY_GEN_HELP}")
        if role not in roles:
            raise PolicyError(f"{where}: key {i} has role '{role}', which serving.json does not define"
                              f"{_did_you_mean(role, sorted(roles))} (roles: {', '.join(sorted(roles)) or 'none'})")
        keys[_digest(key)] = role
    required = keys_required(roles, risk_tier)
    if not keys and required and not insecure_dev:
        setting = (f"{KEYS_ENV}='KEY:ROLE,...'" if source == "env" else f"{KEYS_FILE_ENV} to a key file")
        raise PolicyError(f"refusing to serve without API keys: {required}, and no key is configured ({where}); "
                          f"set {setting} with keys of at least {MIN_KEY_CHARS} characters ({KEY_GEN_HELP}), "
                          "or pass --insecure-dev to run open on a development machine")
    if keys:
        desc = f"{len(keys)} API key{'s' if len(keys) != 1 else ''} from {where}"
    elif required:
        desc = (f"INSECURE DEV MODE (--insecure-dev): no API keys ({where}) although {required}; "
                "OPEN ACCESS, every route is allowed without a key")
    else:
        desc = f"no API keys configured ({where}): OPEN ACCESS, every route is allowed without a key"
    return Access(roles, keys, desc, required, insecure_dev=bool(insecure_dev and required and not keys))


# ---------------------------------------------------------------- encryption at rest
KEY_HELP = ("generate one with: python -c \"import os, base64; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"")


class Cipher:
    """The data key for encryption at rest. It never encrypts anything itself: every file and
    log entry is sealed under its own HKDF subkey of it (runtime/sealed.py)."""

    def __init__(self, key: bytes):
        from aiops.runtime.sealed import key_id

        self.key = key  # handed to the prediction log's writer process over a pipe
        self.key_id = key_id(key)


def parse_key(text: str) -> bytes | None:
    """A 32-byte key written as 64 hex digits or base64 (standard or URL-safe); None if not."""
    t = text.strip()
    if len(t) == 64:
        try:
            return bytes.fromhex(t)
        except ValueError:
            pass
    for dec in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = dec(t + "=" * (-len(t) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return None


def load_cipher(security: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Cipher | None:
    """The cipher for encryption at rest, or None when serving.json does not enable it."""
    env = os.environ if env is None else env
    enc = security.get("encryption_at_rest") or {}
    if not enc.get("enabled"):
        return None
    var = enc.get("key_env") or "AIOPS_DATA_KEY"
    text = env.get(var)
    if not text:
        raise PolicyError(f"encryption at rest is enabled (serving.json security.encryption_at_rest) but the "
                          f"environment variable {var} is not set; set it to a 32-byte key; {KEY_HELP}")
    key = parse_key(text)
    if key is None:
        raise PolicyError(f"{var} must hold a 32-byte key as 64 hex digits or base64; {KEY_HELP}")
    return Cipher(key)
