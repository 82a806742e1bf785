"""Signed checkpoints of the prediction log (Certificate Transparency style).

A checkpoint says "the log held `count` entries, the last one's MAC was `head`, and it
starts at entry `start` (whose prev_mac is `start_prev`)", at time `ts`, signed with the
deployment's Ed25519 key. The writer appends one to `<log-dir>/checkpoints.jsonl` at a fixed
interval while entries are written, at clean shutdown, after a repair and after an expiry.
A verifier that holds a checkpoint (from that file, or a copy it kept: `--checkpoint`)
checks that the log extends it: entry `count` still exists and still has MAC `head`. So
cutting entries off the end, rewriting the log, or deleting it is detected up to the last
checkpoint, and the signature (checked against keys the verifier supplies) makes a
checkpoint impossible to forge without the signing key.

One line per checkpoint, canonical JSON:
    {"count", "head", "public_key", "reason", "start", "start_prev", "ts", "sig"}
`sig` is the hex Ed25519 signature of the line without `sig` (canonical JSON), or null
when the deployment gave no signing key (then `public_key` is null too).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

CHECKPOINTS_NAME = "checkpoints.jsonl"
FIELDS = ("count", "head", "public_key", "reason", "sig", "start", "start_prev", "ts")
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode


def body_bytes(cp: dict[str, Any]) -> bytes:
    return _dumps({k: v for k, v in cp.items() if k != "sig"}).encode()


def make(count: int, head: str, start: int, start_prev: str, ts: str, reason: str, seed: bytes | None) -> dict[str, Any]:
    from aiops.runtime.audit.keys import public_key_hex

    cp: dict[str, Any] = {"count": count, "head": head, "public_key": public_key_hex(seed) if seed else None,
                          "reason": reason, "start": start, "start_prev": start_prev, "ts": ts}
    cp["sig"] = _sign(seed, body_bytes(cp)) if seed else None
    return cp


def _sign(seed: bytes, data: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed).sign(data).hex()


def line(cp: dict[str, Any]) -> bytes:
    return _dumps(cp).encode() + b"\n"


def problem(cp: Any, trusted: list[str] | None) -> str | None:
    """Why a checkpoint cannot be used, or None. With trusted keys, it must be signed by one
    of them; without, only its shape is checked (the caller says so in its report)."""
    if not isinstance(cp, dict) or sorted(cp) != sorted(FIELDS) or not isinstance(cp["count"], int) \
            or not isinstance(cp["start"], int) or not isinstance(cp["head"], str) or cp["count"] < 0:
        return "is not a checkpoint (expected the fields " + ", ".join(FIELDS) + ")"
    if trusted is None:
        return None
    if not cp["sig"] or not cp["public_key"]:
        return "is unsigned, but trusted keys were given"
    if cp["public_key"] not in trusted:
        return f"is signed by {str(cp['public_key'])[:16]}..., which is not a trusted key"
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp["public_key"])).verify(bytes.fromhex(cp["sig"]),
                                                                                  body_bytes(cp))
    except (InvalidSignature, ValueError, TypeError):
        return "has a signature that does not verify (it was altered or forged)"
    return None


def read(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or None when not JSON) of each line of a checkpoint file;
    a file holding one JSON object (a saved checkpoint, pretty-printed or not) is one item."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        yield 1, whole
        return
    for n, ln in enumerate(text.splitlines(), 1):
        if not ln.strip():
            continue
        try:
            yield n, json.loads(ln)
        except ValueError:
            yield n, None


def last(path: Path) -> dict[str, Any] | None:
    """The last well-formed checkpoint of a file (no signature check), or None."""
    if not path.is_file():
        return None
    found = None
    for _, cp in read(path):
        if problem(cp, None) is None:
            found = cp
    return found
