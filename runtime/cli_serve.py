"""`aiops serve ARTEFACT_DIR` and `aiops audit verify LOG_DIR`. Imports nothing heavy at
module level: the server modules load when the command runs."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve compiled artefacts over HTTP (uvicorn)")
    s.add_argument("artefact_dir", help="the output of 'aiops compile', e.g. generated/credit_risk")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--log-dir", help="prediction log, jobs and results (default .aiops/serving/<name>)")
    s.set_defaults(func=_serve)

    a = sub.add_parser("audit", help="check the prediction audit log")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION")
    asub.required = True
    v = asub.add_parser("verify", help="verify the hash chain of a prediction log; exit 1 at the first broken entry")
    v.add_argument("log_dir", help="the serving log folder (holding predictions.jsonl) or the file itself")
    v.set_defaults(func=_audit_verify)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        return _fail(f"--workers must be at least 1. Got {args.workers} instead.")
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be in [0, 65535]. Got {args.port} instead.")
    multiproc_dir = None
    if args.workers > 1:
        # prometheus_client reads this when it is first imported: set it before any worker starts
        multiproc_dir = tempfile.mkdtemp(prefix="aiops-prom-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    try:
        return _run(args)
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .artefacts import ArtefactError
    from .policy import PolicyError
    from .server import ENV_ARTEFACTS, ENV_LOG_DIR, App, Service

    art_dir = Path(args.artefact_dir).resolve()
    try:
        service = Service(art_dir, args.log_dir)
    except (ArtefactError, PolicyError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot prepare the log folder: {exc}")
    log_dir = service.log_dir.resolve()
    _banner(service, args, log_dir)

    import uvicorn

    common = dict(host=args.host, port=args.port, http="httptools", loop="uvloop", access_log=False,
                  log_level="info", lifespan="on", server_header=False, proxy_headers=False)
    if args.workers == 1:
        uvicorn.run(App(service), **common)
    else:
        del service  # each worker loads its own (one onnxruntime session per worker)
        os.environ[ENV_ARTEFACTS] = str(art_dir)
        os.environ[ENV_LOG_DIR] = str(log_dir)
        uvicorn.run("runtime.server:create_app", factory=True, workers=args.workers, **common)
    return 0


def _banner(service, args: argparse.Namespace, log_dir) -> None:
    m = service.model
    lines = [f"aiops serve: {m['name']} {m['version']} (manifest sha256 {m['manifest_sha256'][:16]}...) "
             f"verified and blessed",
             f"  prediction log: {log_dir / 'predictions.jsonl'}"
             f"{' (encrypted at rest)' if service.cipher else ''}; hash-chained",
             f"  access: {service.access.source}",
             f"  artefact trust: {service.art.trust.text()}",
             f"  listening on http://{args.host}:{args.port} with {args.workers} worker(s)"]
    if service.access.open:
        bar = "!" * 78
        lines += [bar, "!! WARNING: NO API KEYS CONFIGURED. The server runs OPEN: anyone who can reach it",
                  "!! may predict, explain, submit jobs and read metadata and metrics.",
                  "!! Set AIOPS_API_KEYS='key:role,...' (or a key file, per serving.json security.key_source).",
                  bar]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _audit_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .predlog import LOG_NAME, verify_chain

    p = Path(args.log_dir)
    target = p / LOG_NAME if p.is_dir() else p
    if not target.exists():
        return _fail(f"no prediction log at {target}")
    rep = verify_chain(target)
    print(rep.text(target), file=sys.stdout if rep.ok else sys.stderr)
    return 0 if rep.ok else 1
