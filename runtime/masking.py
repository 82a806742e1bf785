"""PII masking: one keyed masker for every path where data leaves a request or a row.

The compile, retrain and score quarantines, job inputs and results, the prediction log,
the monitoring report and error messages all mask through `Masker`, built by
`masker_for` from serving.json's `security.masking` and the data contract, so one value
masks to one text everywhere (and the quarantines and the log can be joined on it).

Methods (per column):
    hash        "sha256:" + the first 32 hex digits of HMAC-SHA256(mask key, canonical value);
                the canonical value follows the column's dtype, so 35, 35.0 and "35" of an int
                column, or "2020-01-31" and "31/01/2020" of a date column, hash alike.
    generalize  by dtype: numbers to their power-of-ten interval ("30-40"), dates to the year,
                text to its first character and "*"; a value that does not parse is redacted.
    redact      "[redacted]".

The key comes from the deployment, never from the artefact folder (`load_key`):
AIOPS_MASK_SALT (the key itself, at least 16 characters), else the file AIOPS_MASK_SALT_FILE
names, else a per-installation key file `<state dir>/mask_salt` that is created (0600, 32
random bytes as hex) on first use; the state dir is AIOPS_STATE_DIR, else
$XDG_STATE_HOME/aiops, else ~/.local/state/aiops. All three read the key as the text of
the value, so exporting the file's content as AIOPS_MASK_SALT on another host keeps the
same hashes. When a key is needed and none can be had, `load_key` raises PolicyError.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from aiops.runtime.policy import PolicyError

MASK_METHODS = ("hash", "redact", "generalize", "none")
REDACTED = "[redacted]"
SALT_ENV = "AIOPS_MASK_SALT"
SALT_FILE_ENV = "AIOPS_MASK_SALT_FILE"
STATE_ENV = "AIOPS_STATE_DIR"
SALT_FILE_NAME = "mask_salt"
MIN_KEY_CHARS = 16
_ISO = ("%Y-%m-%d",)
_MAX_EXACT = 2 ** 53


# ---------------------------------------------------------------- the key
@dataclass(frozen=True)
class MaskKey:
    """The deployment's masking key and where it came from (for banners and docs)."""

    secret: bytes
    source: str

    @property
    def key_id(self) -> str:
        """A fingerprint that says whether two hosts mask alike, without revealing the key."""
        return hmac.new(self.secret, b"aiops mask key id", hashlib.sha256).hexdigest()[:12]

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (HKDF-SHA256 expand, one block): masking and the
        sealing of job inputs never share a key."""
        prk = hmac.new(b"aiops mask key", self.secret, hashlib.sha256).digest()
        return hmac.new(prk, purpose.encode() + b"\x01", hashlib.sha256).digest()


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-installation state folder (never inside a project or an artefact folder)."""
    env = os.environ if env is None else env
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "aiops"
    return Path(env.get("HOME") or Path.home()) / ".local" / "state" / "aiops"


def _key_text(text: str, where: str) -> bytes:
    t = text.strip()
    if len(t) < MIN_KEY_CHARS:
        raise PolicyError(f"{where} holds a masking key of {len(t)} characters; at least {MIN_KEY_CHARS} are needed "
                          "(a short key lets anyone rebuild the hashes of a column with few values); generate one "
                          "with: python -c \"import secrets; print(secrets.token_hex(32))\"")
    return t.encode("utf-8", "surrogatepass")


def load_key(env: Mapping[str, str] | None = None) -> MaskKey:
    """The masking key: AIOPS_MASK_SALT, else the file AIOPS_MASK_SALT_FILE names, else the
    per-installation file (created on first use). PolicyError when none can be had."""
    env = os.environ if env is None else env
    if env.get(SALT_ENV):
        return MaskKey(_key_text(env[SALT_ENV], f"the environment variable {SALT_ENV}"), f"environment variable {SALT_ENV}")
    if env.get(SALT_FILE_ENV):
        path = Path(env[SALT_FILE_ENV])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise PolicyError(f"cannot read the masking key file {path} named by {SALT_FILE_ENV}: {why}; "
                              f"fix the path, or unset {SALT_FILE_ENV}") from None
        return MaskKey(_key_text(text, f"the masking key file {path} ({SALT_FILE_ENV})"), f"file {path} ({SALT_FILE_ENV})")
    path = state_dir(env) / SALT_FILE_NAME
    return MaskKey(_installation_key(path), f"per-installation file {path}")


def _installation_key(path: Path) -> bytes:
    """The key in `path`, created first if absent: written whole to a private temporary file,
    then hard-linked into place, so a concurrent reader (another worker) never sees it half
    written and two creators agree on the first one linked."""
    try:
        return _key_text(path.read_text(encoding="utf-8"), f"the masking key file {path}")
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read the masking key file {path}: {getattr(exc, 'strerror', None) or exc}; "
                          f"fix its permissions, or set {SALT_ENV}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process created it first: its key is the key
            pass
    except OSError as exc:
        raise PolicyError(f"PII masking needs a key and none is set: cannot create the per-installation key file "
                          f"{path} ({exc.strerror}); set {SALT_ENV} (at least {MIN_KEY_CHARS} characters), "
                          f"{SALT_FILE_ENV}, or {STATE_ENV} to a writable folder") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return _key_text(path.read_text(encoding="utf-8"), f"the masking key file {path}")


# ---------------------------------------------------------------- values
def _plain(value: Any) -> Any:
    """numpy scalars as Python values."""
    item = getattr(value, "item", None)
    return item() if item is not None and type(value).__module__ == "numpy" else value


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _num_text(x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    return str(int(x)) if x.is_integer() and abs(x) < _MAX_EXACT else repr(x)


def _date_days(value: Any, formats: Sequence[str]) -> int | None:
    from aiops.runtime.dates import parse_one

    days, ok = parse_one(value, tuple(formats) or _ISO)
    if days is None and ok is False and isinstance(value, str) and tuple(formats) != _ISO:
        days, ok = parse_one(value, _ISO)
    return days if ok else None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def canonical(value: Any, dtype: str | None = None, formats: Sequence[str] = ()) -> str:
    """The text that `hash` hashes: the same for every way a path may carry one value."""
    value = _plain(value)
    if dtype in ("int", "float"):
        x = _number(value)
        if x is not None:
            return _num_text(x)
    elif dtype == "date":
        days = _date_days(value, formats)
        if days is not None:
            from aiops.runtime.dates import iso

            return iso(days)
    elif dtype == "datetime":
        from aiops.runtime.dates import parse_one

        days, _ok = parse_one(value, tuple(formats), time=True)
        if days is not None:
            return repr(float(days))  # days since 1970-01-01, the time of day a fraction
    elif dtype == "bool":
        b = _bool(value)
        if b is not None:
            return "true" if b else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def generalize(value: Any, dtype: str | None = None, formats: Sequence[str] = ()) -> Any:
    """A coarser value: numbers to a power-of-ten interval, dates to the year, text to its
    first character and "*"; by the column's dtype, so a value written as text ("35" in a
    CSV) generalizes as the number (35 in JSON) would. A value that does not parse, a bool
    or anything else is redacted."""
    value = _plain(value)
    if value is None:
        return None
    if dtype is None:  # no contract at hand: go by the value
        if isinstance(value, bool):
            return REDACTED
        if isinstance(value, (int, float)):
            dtype = "float"
        elif isinstance(value, str) and _date_days(value, _ISO) is not None and len(value.strip()) == 10:
            dtype = "date"
        else:
            dtype = "str"
    if dtype in ("int", "float"):
        x = _number(value)
        if x is None:
            return REDACTED
        x = float(x)
        if x == 0:
            return "0"
        step = 10.0 ** math.floor(math.log10(abs(x)))
        lo = math.floor(x / step) * step
        return f"{_g(lo)}-{_g(lo + step)}"
    if dtype in ("date", "datetime"):
        days = _date_days(value, formats)
        if days is None:
            return REDACTED
        from aiops.runtime.dates import iso

        return iso(days)[:4]
    if dtype in ("str", "category") and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = value if isinstance(value, str) else canonical(value)
        return (text[:1] + "*") if text else text
    return REDACTED


def _g(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# ---------------------------------------------------------------- the masker
class Masker:
    """Masks the values of PII columns before they are written anywhere.

    methods: column -> hash | redact | generalize (none is dropped); kinds: column ->
    (dtype, date formats) for every column of the data contract (the target included);
    `secret` is the masking subkey (needed by hash); `seal_key` the subkey that seals a job's
    input when encryption at rest is off (runtime/serve/jobs.py)."""

    def __init__(self, methods: Mapping[str, str], secret: bytes | None = None,
                 kinds: Mapping[str, tuple[str, Sequence[str]]] | None = None, key_id: str = "",
                 seal_key: bytes | None = None, key_source: str = ""):
        for col, m in methods.items():
            if m not in MASK_METHODS:
                raise PolicyError(f"serving.json security.masking.{col}.method is {m!r}; valid: {', '.join(MASK_METHODS)}")
        self.methods = {c: m for c, m in methods.items() if m != "none"}
        if secret is None and "hash" in self.methods.values():
            raise PolicyError("hash masking needs a key; none was given")
        self.secret = secret or b""
        self.key_id = key_id
        self.seal_key = seal_key
        self.key_source = key_source
        self.kinds = {c: (d, tuple(f)) for c, (d, f) in (kinds or {}).items()}
        self._hmac = hmac.new(self.secret, digestmod=hashlib.sha256)

    # -- to and from the prediction log's writer process
    def describe(self) -> str:
        """One line for a startup banner: the methods, and the key's source and fingerprint."""
        if not self.methods:
            return "no PII column"
        cols = ", ".join(f"{c}={m}" for c, m in sorted(self.methods.items()))
        return f"{cols} (key: {self.key_source or 'given'}, id {self.key_id or '-'})"

    def config(self) -> dict[str, Any]:
        return {"methods": dict(self.methods), "secret": self.secret.hex(), "key_id": self.key_id,
                "kinds": {c: [d, list(f)] for c, (d, f) in self.kinds.items()}}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Masker":
        return cls(cfg["methods"], bytes.fromhex(cfg["secret"]) if cfg.get("secret") else None,
                   {c: (d, tuple(f)) for c, (d, f) in (cfg.get("kinds") or {}).items()}, cfg.get("key_id", ""))

    # -- values
    def mask(self, column: str, value: Any) -> Any:
        m = self.methods.get(column)
        if m is None or value is None:
            return value
        if isinstance(value, float) and value != value:  # NaN: a missing value
            return None
        dtype, formats = self.kinds.get(column, (None, ()))
        if m == "hash":
            h = self._hmac.copy()
            h.update(canonical(value, dtype, formats).encode("utf-8", "surrogatepass"))
            return "sha256:" + h.hexdigest()[:32]
        if m == "generalize":
            return generalize(value, dtype, formats)
        return REDACTED

    def mask_record(self, rec: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
        """The contract columns of one record, PII masked (absent columns are left out)."""
        out = {c: rec[c] for c in columns if c in rec}
        for c in self.methods:
            if c in out:
                out[c] = self.mask(c, out[c])
        return out

    def known(self, column: str) -> bool:
        """A column of the data contract (any column when the masker was built without one)."""
        return not self.kinds or column in self.kinds

    def mask_fields(self, header: Sequence[str], fields: Sequence[Any]) -> list[Any]:
        """One row's fields as they may be written out: PII masked, and the fields of columns
        outside the data contract redacted (their content is unknown, so it is never copied)."""
        return [self.mask(c, v) if self.known(c) else (None if v in (None, "") else REDACTED)
                for c, v in zip(header, fields)]

    def mask_line(self, header: Sequence[str], line: str) -> str:
        """A raw CSV line as it may be written out (a quarantine's raw text): the fields of a
        well-formed line through `mask_fields`; a line whose fields do not line up with the
        header cannot tell which field is PII, so every field is redacted (their number kept)."""
        try:
            fields = next(csv.reader([line.rstrip("\r\n")]), [])
        except csv.Error:
            return REDACTED
        if len(fields) == len(header):
            out = self.mask_fields(header, fields)
        else:
            out = [REDACTED if f != "" else "" for f in fields]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(["" if v is None else v for v in out])
        return buf.getvalue()


def masker_for(security: Mapping[str, Any] | None, contract, env: Mapping[str, str] | None = None) -> Masker:
    """The masker of a model: serving.json's security.masking, and every pii column of the
    contract (a pii column that the policy leaves unmasked is redacted). The key is loaded
    (`load_key`) when any column is masked: hash needs it, and job inputs are sealed with it."""
    methods = {c: m.get("method", "redact") if isinstance(m, dict) else str(m)
               for c, m in ((security or {}).get("masking") or {}).items()}
    for c in contract.columns:
        if c.pii and methods.get(c.name, "none") == "none":
            methods[c.name] = c.masking if c.masking not in (None, "none") else "redact"
    methods = {c: m for c, m in methods.items() if m != "none"}
    kinds = {c.name: (c.dtype, tuple(c.formats)) for c in contract.columns}
    if not methods:
        return Masker({}, None, kinds)
    key = load_key(env)
    return Masker(methods, key.subkey("mask"), kinds, key.key_id, key.subkey("job input"), key.source)


# ---------------------------------------------------------------- groups in committed evidence
def small_groups_hidden(groups: Any, min_rows: int) -> Any:
    """Group labels of a PII column for the compile's evidence (evaluation.json, the compliance
    document): a group of at least `min_rows` rows is a category and keeps its label; a smaller
    one may be a single person, so its label becomes "(small group N)" (N by order of label),
    its rows kept apart so the metrics do not change. Evidence is committed and must be
    reproducible, so the keyed hash is not used here."""
    import numpy as np

    labels, counts = np.unique(np.asarray(groups, dtype=object).astype(str), return_counts=True)
    small = [str(g) for g, n in zip(labels.tolist(), counts.tolist()) if n < min_rows and g != "(missing)"]
    if not small:
        return groups
    names = {g: f"(small group {i})" for i, g in enumerate(sorted(small), 1)}
    return np.array([names.get(str(g), g) for g in np.asarray(groups, dtype=object).tolist()], dtype=object)


# ---------------------------------------------------------------- error text
_ECHOED_LINE = re.compile(r"(Expected \d+ columns?, got \d+): .*", re.DOTALL)
_QUOTED_VALUE = re.compile(r"(invalid value|could not convert string to \w+:?) '.*?'(?=$|[\s,;)])", re.DOTALL)


def scrub(text: str) -> str:
    """A library's error message without the data it echoes: pyarrow quotes a malformed CSV
    line whole and the value it could not convert; the message is kept, the data is not."""
    text = _ECHOED_LINE.sub(r"\1 (the line is not shown: it may hold personal data)", text)
    return _QUOTED_VALUE.sub(r"\1 (not shown)", text)
