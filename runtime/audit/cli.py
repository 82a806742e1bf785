"""`aiops audit verify LOG_DIR`, `aiops audit keygen` and `aiops decrypt FILE`. Imports
nothing heavy at module level."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    a = sub.add_parser("audit", help="check the prediction audit log, or make its keys")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION")
    asub.required = True
    v = asub.add_parser("verify", help="verify the MAC chain and checkpoints of a prediction log; exit 1 when broken")
    v.add_argument("log_dir", help="the serving log folder (holding predictions.jsonl) or that file")
    v.add_argument("--trusted-keys", metavar="KEYS_OR_FILE",
                   help="Ed25519 public keys (hex) allowed to sign checkpoints, or a file listing them "
                        "(default: AIOPS_LOG_TRUSTED_KEYS)")
    v.add_argument("--checkpoint", metavar="FILE", action="append", default=[],
                   help="a checkpoint you kept (a line of checkpoints.jsonl, or a whole copy of it); repeatable "
                        "(default: AIOPS_LOG_CHECKPOINT)")
    v.add_argument("--save-checkpoint", metavar="FILE",
                   help="after an ok verification, write the newest verified checkpoint to FILE for next time")
    v.set_defaults(func=_verify)
    k = asub.add_parser("keygen", help="print a new log key and checkpoint signing key (and its public key)")
    k.set_defaults(func=_keygen)

    d = sub.add_parser("decrypt", help="decrypt a file the runtime encrypted at rest (job input or result, score "
                                       "output or quarantine, prediction log)")
    d.add_argument("file")
    d.add_argument("--output", "-o", help="where to write the plain bytes (default: stdout)")
    d.add_argument("--key-env", default="AIOPS_DATA_KEY",
                   help="the environment variable holding the data key (default AIOPS_DATA_KEY; serving.json "
                        "security.encryption_at_rest.key_env names it)")
    d.set_defaults(func=_decrypt)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _verify(args: argparse.Namespace) -> int:
    import os

    from aiops.runtime.audit import checkpoints as cps
    from aiops.runtime.audit.chain import LOG_NAME, segment_paths
    from aiops.runtime.audit.keys import load_log_key, load_trusted_keys
    from aiops.runtime.audit.verify import NeedKey, verify_log
    from aiops.runtime.policy import PolicyError

    p = Path(args.log_dir)
    folder = p if p.is_dir() or p.suffix != ".jsonl" else p.parent
    files = args.checkpoint or ([os.environ["AIOPS_LOG_CHECKPOINT"]] if os.environ.get("AIOPS_LOG_CHECKPOINT") else [])
    saved = []
    for f in files:
        fp = Path(f)
        if not fp.is_file():
            if args.save_checkpoint and fp == Path(args.save_checkpoint):
                continue  # the first run: nothing kept yet
            return _fail(f"no checkpoint file at {fp} (--checkpoint)")
        saved += [(f"{fp}: line {n}", cp) for n, cp in cps.read(fp)]
    if not segment_paths(folder) and not (folder / cps.CHECKPOINTS_NAME).is_file() and not saved:
        return _fail(f"no prediction log at {folder / LOG_NAME} (and no checkpoint says there should be one)")
    try:
        trusted = load_trusted_keys(args.trusted_keys)
        rep = verify_log(folder, load_log_key(), trusted[0] if trusted else None, saved)
    except (PolicyError, NeedKey) as exc:
        return _fail(str(exc))
    target = folder / LOG_NAME
    print(rep.text(target), file=sys.stdout if rep.ok else sys.stderr)
    if rep.ok and args.save_checkpoint and rep.checkpoint:
        out = Path(args.save_checkpoint)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(cps.line(rep.checkpoint).decode())
        except OSError as exc:
            return _fail(f"cannot save the checkpoint to '{out}': {exc.strerror}; give a writable file outside the "
                         "log folder")
        print(f"checkpoint saved to {out}: keep it outside the log folder and pass it as --checkpoint next time")
    return 0 if rep.ok else 1


def _keygen(args: argparse.Namespace) -> int:
    from aiops.runtime.audit.keys import generate

    k = generate()
    print(f"# keep these two outside the log folder (a secret store); the server reads them\n"
          f"AIOPS_LOG_KEY={k['AIOPS_LOG_KEY']}\nAIOPS_LOG_SIGNING_KEY={k['AIOPS_LOG_SIGNING_KEY']}\n"
          f"# give this one to the verifier (aiops audit verify --trusted-keys, or AIOPS_LOG_TRUSTED_KEYS)\n"
          f"AIOPS_LOG_TRUSTED_KEYS={k['public_key']}")
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    import os

    from aiops.runtime.policy import KEY_HELP, parse_key
    from aiops.runtime.sealed import SealedError

    text = os.environ.get(args.key_env)
    if not text:
        return _fail(f"the environment variable {args.key_env} is not set: set it to the data key "
                     f"(serving.json security.encryption_at_rest.key_env names the variable)")
    key = parse_key(text)
    if key is None:
        return _fail(f"{args.key_env} must hold a 32-byte key as 64 hex digits or base64; {KEY_HELP}")
    src = Path(args.file)
    if not src.is_file():
        return _fail(f"no file at {src}")
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    try:
        kind = decrypt_to(src, key, out)
    except SealedError as exc:
        if args.output:
            out.close()
            Path(args.output).unlink()
        return _fail(str(exc))
    if args.output:
        out.close()
    print(f"decrypted {src} ({kind})" + (f" to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def decrypt_to(src: Path, key: bytes, out) -> str:
    """Write the plain form of `src` to `out`; returns what it was. A sealed file gives its
    plain bytes; a prediction log (a segment, or a folder) gives its entries as JSON lines,
    the encrypted ones opened (prev_mac, seq and mac kept, so it can be checked against the
    chain). Raises SealedError (wrong key, altered, not an aiops file)."""
    import json

    from aiops.runtime.audit.chain import lines, open_entry
    from aiops.runtime.sealed import Opener, SealedError, is_sealed, open_file

    if src.is_file() and is_sealed(src):
        with open(src, "rb") as fh:
            from aiops.runtime.sealed import parse_header

            kind = parse_header(fh.read(4096), f"'{src}'")[0].kind
        for chunk in open_file(src, key):
            out.write(chunk)
        return f"sealed {kind}"
    opener = Opener(key)
    n = 0
    for ln, raw in enumerate(lines(src), 1):
        try:
            e = json.loads(raw)
            if not isinstance(e, dict) or "mac" not in e:
                raise ValueError
        except ValueError:
            raise SealedError(f"'{src}' is neither a file encrypted by aiops nor a prediction log "
                              f"(line {ln} is not a log entry)") from None
        plain = open_entry(e, opener)
        out.write(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        n += 1
    return f"prediction log, {n} entries"
