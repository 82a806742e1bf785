"""The artefact signature, `manifest.sig`: an in-toto statement over the digest of every file of
the artefact folder (manifest.json included), in a DSSE envelope, in a Sigstore bundle (v0.3
JSON). The statement has the layout of the OpenSSF `model-signing` package (predicate type
https://model_signing/signature/v1.0, one resource per file, a root digest as the subject); the
signature is Ed25519, which is deterministic, so a signed build stays byte-identical. See
docs/security.md, "Artefact signing and trust", for why this is not `model-signing` itself.

`statement`, `bundle` and `open_bundle` are pure: signing happens in compiler/sign.py, the
decision whom to trust in runtime/trust/signatures.py.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

SIG_NAME = "manifest.sig"
# signed approval records, added after compile and verified on their own (runtime/governance)
APPROVALS = "approvals"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


class BundleError(ValueError):
    """manifest.sig is not a signature bundle this runtime reads."""


def folder_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (all of them, hidden and __pycache__ too) but manifest.sig
    and the approvals/ records (both listed in the statement's ignore_paths)."""
    from aiops.runtime.stable import file_sha256

    return {p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*")) if (p.is_file() or p.is_symlink()) and p.relative_to(root).as_posix()
            != SIG_NAME and p.relative_to(root).parts[0] != APPROVALS}


def statement(name: str, digests: dict[str, str]) -> dict[str, Any]:
    resources = [{"algorithm": "sha256", "digest": digests[k], "name": k} for k in sorted(digests)]
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    return {"_type": STATEMENT_TYPE, "subject": [{"name": name, "digest": {"sha256": root}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                                            "ignore_paths": [SIG_NAME, APPROVALS + "/"]},
                          "resources": resources}}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what the signature is computed over."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def payload_bytes(stmt: dict[str, Any]) -> bytes:
    return json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()


def bundle(stmt: dict[str, Any], key_id: str, signature_of) -> bytes:
    """The bundle's bytes; `signature_of(data) -> bytes` signs (a SigningKey's sign)."""
    payload = payload_bytes(stmt)
    sig = signature_of(pae(PAYLOAD_TYPE, payload))
    doc = {"mediaType": BUNDLE_TYPE,
           "verificationMaterial": {"publicKey": {"hint": key_id}},
           "dsseEnvelope": {"payload": base64.b64encode(payload).decode(), "payloadType": PAYLOAD_TYPE,
                            "signatures": [{"keyid": key_id, "sig": base64.b64encode(sig).decode()}]}}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def open_bundle(data: bytes) -> tuple[str, bytes, bytes]:
    """(key id the bundle names, signed bytes (PAE), signature). Raises BundleError on any shape error."""
    try:
        doc = json.loads(data)
        if doc.get("mediaType") != BUNDLE_TYPE:
            raise BundleError(f"mediaType is {doc.get('mediaType')!r}, not {BUNDLE_TYPE!r}")
        env = doc["dsseEnvelope"]
        if env["payloadType"] != PAYLOAD_TYPE:
            raise BundleError(f"payloadType is {env['payloadType']!r}, not {PAYLOAD_TYPE!r}")
        if len(env["signatures"]) != 1:
            raise BundleError(f"{len(env['signatures'])} signatures; exactly one is read")
        payload = base64.b64decode(env["payload"], validate=True)
        sig = base64.b64decode(env["signatures"][0]["sig"], validate=True)
        hint = str(doc["verificationMaterial"]["publicKey"]["hint"])
    except BundleError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"not a Sigstore bundle with one DSSE signature ({type(exc).__name__}: {exc})") from None
    return hint, pae(PAYLOAD_TYPE, payload), sig


def statement_of(signed: bytes) -> dict[str, Any]:
    """The statement inside verified PAE bytes; BundleError when it is not ours."""
    payload = signed.split(b" ", 4)[4]
    try:
        stmt = json.loads(payload)
        ok = stmt["_type"] == STATEMENT_TYPE and stmt["predicateType"] == PREDICATE_TYPE
        resources = {r["name"]: r["digest"] for r in stmt["predicate"]["resources"] if r["algorithm"] == "sha256"}
        subject = stmt["subject"][0]
    except (ValueError, KeyError, TypeError, IndexError):
        raise BundleError("the signed payload is not an in-toto statement of file digests") from None
    if not ok:
        raise BundleError(f"the signed statement is of type {stmt.get('predicateType')!r}, not {PREDICATE_TYPE!r}")
    if statement(subject.get("name"), resources) != stmt:
        raise BundleError("the signed statement's root digest does not match its resources")
    return stmt


def resources(stmt: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["digest"] for r in stmt["predicate"]["resources"]}
