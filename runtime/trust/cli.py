"""`aiops verify ARTEFACT_DIR`, `aiops keys generate|rotate|list`, and the trust options every
runtime command takes (`--trusted-keys FILE`, `--insecure-dev`). Imports nothing heavy."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

RUNTIME_COMMANDS = ("serve", "score", "monitor", "retrain", "rollback", "verify")
DEFAULT_KEY = "~/.config/aiops/signing.key"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--trusted-keys and --insecure-dev on a runtime command (skipped when already there)."""
    have = set(p._option_string_actions)
    if "--trusted-keys" not in have:
        p.add_argument("--trusted-keys", metavar="FILE",
                       help="the public keys this deployment trusts, one 'ed25519 HEX' a line "
                            "(default: $AIOPS_TRUSTED_KEYS); every artefact must then be signed by one of them")
    if "--insecure-dev" not in have:
        p.add_argument("--insecure-dev", action="store_true",
                       help="DEVELOPMENT ONLY: run an unsigned artefact, or one whose signer is not trusted, "
                            "with a loud warning (recorded in the output and /v1/metadata)")


def apply_arguments(args: argparse.Namespace) -> None:
    """Make the trust options of this command line effective for the process and its workers."""
    from aiops.runtime.trust.keys import ENV_TRUSTED
    from aiops.runtime.trust.signatures import ENV_WORKER_INSECURE, set_insecure_dev

    if getattr(args, "command", None) not in RUNTIME_COMMANDS:
        return
    if getattr(args, "trusted_keys", None):
        os.environ[ENV_TRUSTED] = str(Path(args.trusted_keys).expanduser().resolve())
    insecure = bool(getattr(args, "insecure_dev", False))
    set_insecure_dev(insecure)
    if insecure and args.command == "serve":
        os.environ[ENV_WORKER_INSECURE] = "1"  # for the worker processes of --workers N
    else:
        os.environ.pop(ENV_WORKER_INSECURE, None)


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ verify
def _verify(args: argparse.Namespace) -> int:
    from aiops.runtime.artefacts import ArtefactError, verify

    d = Path(args.artefact_dir)
    if not (d / "manifest.json").is_file():
        what = "no artefact folder" if not d.is_dir() else "no manifest.json"
        return _fail(f"{what} at '{d}': run 'aiops compile SPEC_DIR' first")
    try:
        art = verify(d, require_blessed=not args.allow_unblessed, action="trust")
    except ArtefactError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    v = art.verdict
    if v.blessed:
        bless_text = f"blessed: re-derived from evidence/evaluation.json, {len(v.checks)} of {len(v.checks)} " \
                     "thresholds of the manifest's gate pass; every evidence file agrees"
    else:
        bless_text = f"NOT blessed (failed: {', '.join(v.failed) or 'no thresholds set'})"
    print(f"ok: {d} is {art.name} {art.version}, as compiled")
    files = sum(1 for p in d.rglob("*") if p.is_file())
    signed = " and the signed statement" if art.trust.signed else ""
    print(f"  files checked: {files} (every file in the folder; sha256 and size match manifest.json{signed}; "
          "no extra files)")
    print(f"  signature: {art.trust.text()}")
    if art.trust.required_by:
        print(f"  signature required by: {'; '.join(art.trust.required_by)}")
    print(f"  blessing: {bless_text}")
    print(f"  manifest sha256: {art.manifest_sha256}")
    if art.trust.insecure_dev:
        print("  INSECURE DEV MODE: --insecure-dev was given; this result is not a trust decision")
    return 0


# ------------------------------------------------------------------ keys
def _generate(args: argparse.Namespace) -> int:
    from aiops.runtime.trust.keys import KeyFileError, add_trusted, write_new_key

    out = Path(args.out).expanduser()
    try:
        pub = write_new_key(out, args.comment or "")
        added = add_trusted(Path(args.trusted_keys).expanduser(), pub) if args.trusted_keys else False
    except (KeyFileError, OSError) as exc:
        return _fail(str(exc))
    print(f"private key: {out} (mode 0600; keep it secret, outside every artefact folder)")
    print(f"public key:  {out}.pub")
    print(f"fingerprint: {pub.fingerprint}")
    print(pub.line())
    if added:
        print(f"trusted: added to {args.trusted_keys}")
    print(f"sign builds with: export AIOPS_SIGNING_KEY={out}")
    print("trust it where artefacts run: add the 'ed25519 ...' line above to the file AIOPS_TRUSTED_KEYS names")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from aiops.runtime.trust.keys import ENV_SIGNING, KeyFileError, rotate

    key = args.key or os.environ.get(ENV_SIGNING)
    if not key or not Path(key).expanduser().is_file():
        return _fail(f"no key file to rotate{f' at {key!r}' if key else ''}: give --key FILE (the private key "
                     "'aiops keys generate' wrote)")
    trusted = args.trusted_keys or os.environ.get("AIOPS_TRUSTED_KEYS")
    if not trusted:
        return _fail("give --trusted-keys FILE (or set AIOPS_TRUSTED_KEYS): the old key stays trusted there, "
                     "for verification, until you remove its line")
    try:
        old, new = rotate(Path(key).expanduser(), Path(trusted).expanduser(), args.comment or "")
    except (KeyFileError, OSError) as exc:
        return _fail(str(exc))
    print(f"rotated {key}: new key {new.fingerprint} signs from now on; {key}.pub holds its public key")
    print(f"trusted keys {trusted}: {new.fingerprint} added; {old.fingerprint} kept, for verification only")
    print(f"next: recompile (re-sign) every artefact, then delete the line of {old.fingerprint} from {trusted}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from aiops.runtime.trust.keys import KeyFileError, load_trusted_keys

    try:
        keys = load_trusted_keys(args.trusted_keys)
    except KeyFileError as exc:
        return _fail(str(exc))
    if keys is None:
        return _fail("no trusted keys: give --trusted-keys FILE or set AIOPS_TRUSTED_KEYS")
    for k in keys.keys:
        print(f"{k.fingerprint}  {k.comment}".rstrip())
    print(f"{len(keys.keys)} trusted key{'s' if len(keys.keys) != 1 else ''} in {keys.source}")
    return 0


def register(sub) -> None:
    v = sub.add_parser("verify", help="check artefacts: every file, their signature against trusted keys, "
                                      "and the blessing re-derived from the evidence",
                       description="Exit 0 when every file of the folder matches manifest.json, the signature "
                       "(required by the policy, or by the trusted keys) verifies against a trusted key and the "
                       "model is blessed by its own evidence; 1 otherwise, saying why.")
    v.add_argument("artefact_dir", help="compiled artefacts, e.g. generated/credit_risk")
    v.add_argument("--allow-unblessed", action="store_true", help="check integrity only; do not require a blessing")
    v.set_defaults(func=_verify)

    k = sub.add_parser("keys", help="signing keys: generate, rotate, list the trusted ones")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION")
    ks.required = True
    g = ks.add_parser("generate", help="a new Ed25519 signing key (private file 0600, and FILE.pub)")
    g.add_argument("--out", default=DEFAULT_KEY, metavar="FILE", help=f"the private key file (default {DEFAULT_KEY})")
    g.add_argument("--trusted-keys", metavar="FILE", help="also add the public key to this trusted keys file")
    g.add_argument("--comment", help="a label stored with the public key, e.g. 'ci 2026'")
    g.set_defaults(func=_generate)
    r = ks.add_parser("rotate", help="replace the signing key; the old one stays trusted for verification")
    r.add_argument("--key", metavar="FILE", help="the private key file to replace (default $AIOPS_SIGNING_KEY)")
    r.add_argument("--trusted-keys", metavar="FILE", help="the trusted keys file (default $AIOPS_TRUSTED_KEYS)")
    r.add_argument("--comment", help="a label stored with the new public key")
    r.set_defaults(func=_rotate)
    ls = ks.add_parser("list", help="the keys a trusted keys file lists, by fingerprint")
    ls.add_argument("--trusted-keys", metavar="FILE", help="default $AIOPS_TRUSTED_KEYS")
    ls.set_defaults(func=_list)


def register_options(sub) -> None:
    """Add the trust options to every runtime command already registered on `sub`."""
    for name in RUNTIME_COMMANDS:
        if name in sub.choices:
            add_arguments(sub.choices[name])
