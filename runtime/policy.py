"""The security policy of serving.json, enforced at run time: API keys and roles, PII
masking for logs, and the key for encryption at rest.

Nothing here reads a request body or writes a file except the masking salt; the server,
the job runner and the prediction log call these functions.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PERMISSIONS = ("predict", "explain", "score", "jobs", "metadata", "metrics", "audit", "admin")
KEYS_ENV = "AIOPS_API_KEYS"  # key_source: env  -> "key1:role1,key2:role2"
KEYS_FILE_ENV = "AIOPS_API_KEYS_FILE"  # key_source: file -> path of a JSON file {"key": "role"}
SALT_ENV = "AIOPS_MASK_SALT"
MASK_METHODS = ("hash", "redact", "generalize", "none")
REDACTED = "[redacted]"


class PolicyError(Exception):
    """The policy cannot be enforced as configured; the message says what to set."""


# ---------------------------------------------------------------- API keys and roles
@dataclass(frozen=True)
class Access:
    roles: dict[str, frozenset[str]]
    keys: dict[str, str]  # sha256(key) hex -> role
    source: str  # where the keys came from, for the startup banner and /v1/metadata

    @property
    def open(self) -> bool:
        return not self.keys

    def check(self, key: str | None, permission: str) -> int:
        """0 when allowed, else the HTTP status: 401 (no or unknown key), 403 (role lacks it)."""
        if not self.keys:
            return 0
        if not key:
            return 401
        role = self.keys.get(hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())
        if role is None:
            return 401
        perms = self.roles.get(role, frozenset())
        return 0 if (permission in perms or "admin" in perms) else 403

    def role_of(self, key: str | None) -> str | None:
        if not key or not self.keys:
            return None
        return self.keys.get(hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())


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


def load_access(security: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Access:
    """Roles from serving.json and API keys from the source it names (security.key_source)."""
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
    keys: dict[str, str] = {}
    for i, (key, role) in enumerate(pairs, 1):
        if role not in roles:
            raise PolicyError(f"{where}: key {i} has role '{role}', which serving.json does not define"
                              f"{_did_you_mean(role, sorted(roles))} (roles: {', '.join(sorted(roles)) or 'none'})")
        keys[hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()] = role
    desc = f"{len(keys)} API key{'s' if len(keys) != 1 else ''} from {where}" if keys else \
        f"no API keys configured ({where}): OPEN ACCESS, every route is allowed without a key"
    return Access(roles, keys, desc)


# ---------------------------------------------------------------- masking
class Masker:
    """Masks the values of PII columns before they are written anywhere.

    hash: HMAC-SHA256 of the value with a secret salt (a salted sha256), "sha256:" + 32 hex;
          equal values give equal hashes under one salt, so monitoring can still count them.
    redact: "[redacted]".
    generalize: numbers to a power-of-ten interval ("30-40"), dates (YYYY-MM-DD) to the year,
          other text to its first character followed by "*".
    """

    def __init__(self, methods: Mapping[str, str], salt: bytes):
        for col, m in methods.items():
            if m not in MASK_METHODS:
                raise PolicyError(f"serving.json security.masking.{col}.method is {m!r}; valid: {', '.join(MASK_METHODS)}")
        self.methods = {c: m for c, m in methods.items() if m != "none"}
        self.salt = salt
        self._hmac = hmac.new(salt, digestmod=hashlib.sha256)

    def mask(self, column: str, value: Any) -> Any:
        m = self.methods.get(column)
        if m is None or value is None:
            return value
        if m == "hash":
            h = self._hmac.copy()
            h.update(_text(value).encode("utf-8", "surrogatepass"))
            return "sha256:" + h.hexdigest()[:32]
        if m == "generalize":
            return generalize(value)
        return REDACTED

    def mask_record(self, rec: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
        """The contract columns of one record, PII masked (absent columns are left out)."""
        out = {c: rec[c] for c in columns if c in rec}
        for c in self.methods:
            if c in out:
                out[c] = self.mask(c, out[c])
        return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def generalize(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        x = float(value)
        if not math.isfinite(x) or x == 0:
            return "0" if x == 0 else REDACTED
        step = 10.0 ** math.floor(math.log10(abs(x)))
        lo = math.floor(x / step) * step
        return f"{_g(lo)}-{_g(lo + step)}"
    if isinstance(value, str):
        if len(value) == 10 and value[4] == "-" and value[7] == "-" and value[:4].isdigit():
            return value[:4]
        return (value[:1] + "*") if value else value
    return REDACTED


def _g(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def load_salt(log_dir: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The masking salt: AIOPS_MASK_SALT, else a random salt kept in <log_dir>/mask_salt (0600)
    so that hashes stay comparable across restarts."""
    env = os.environ if env is None else env
    if env.get(SALT_ENV):
        return env[SALT_ENV].encode()
    path = log_dir / "mask_salt"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise PolicyError(f"{path} is not a hex salt; delete it or set {SALT_ENV}") from None
    salt = secrets.token_bytes(32)
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(salt.hex() + "\n")
    return salt


# ---------------------------------------------------------------- encryption at rest
KEY_HELP = ("generate one with: python -c \"import os, base64; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"")


class Cipher:
    """The data key for encryption at rest. It never encrypts anything itself: every file and
    log entry is sealed under its own HKDF subkey of it (runtime/sealed.py)."""

    def __init__(self, key: bytes):
        from .sealed import key_id

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
