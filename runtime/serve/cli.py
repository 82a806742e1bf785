"""`aiops serve ARTEFACT_DIR`. Imports nothing heavy at module level: the server modules
load when the command runs. (`aiops audit` is in runtime/audit/cli.py.)"""
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
    s.add_argument("--job-threads", type=int, default=None,
                   help="job worker threads per worker process (default: AIOPS_JOB_THREADS or 1; so --workers N "
                        "runs N job workers; 0 queues jobs without running them)")
    s.add_argument("--insecure-dev", action="store_true",
                   help="development only: serve without API keys although the spec defines roles or is high risk "
                        "(said at startup and recorded in /v1/metadata)")
    from aiops.runtime.governance.production import add_arguments

    add_arguments(s)
    s.set_defaults(func=_serve)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        return _fail(f"--workers must be at least 1. Got {args.workers} instead.")
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be in [0, 65535]. Got {args.port} instead.")
    if args.job_threads is not None and args.job_threads < 0:
        return _fail(f"--job-threads must be at least 0. Got {args.job_threads} instead.")
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

    from aiops.runtime.artefacts import ArtefactError
    from aiops.runtime.serve.launch import launch
    from aiops.runtime.serve.limits import fit_open_files
    from aiops.runtime.policy import PolicyError
    from aiops.runtime.serve.server import ENV_INSECURE_DEV, ENV_JOB_THREADS, App, Service

    # only this flag turns insecure mode on: never a variable inherited from the caller
    os.environ.pop(ENV_INSECURE_DEV, None)
    if args.job_threads is not None:
        os.environ[ENV_JOB_THREADS] = str(args.job_threads)
    art_dir = Path(args.artefact_dir).resolve()
    from aiops.runtime.governance.production import gate

    if (refused := gate(args)) is not None:
        return _fail(refused)
    from aiops.runtime.genai.kind import serving_kind

    if serving_kind(art_dir) == "prompt":  # POST /v1/prompts/<name> (docs/genai.md)
        try:
            from aiops.runtime.genai.server import run as run_prompts
        except ModuleNotFoundError as exc:
            return _fail(f"'aiops serve' of prompts needs the 'genai' extra, which is not installed (no module "
                         f"named {exc.name!r}): pip install 'aiops[genai]'")
        return run_prompts(args, art_dir)
    try:
        service = Service(art_dir, args.log_dir, insecure_dev=args.insecure_dev)
    except (ArtefactError, PolicyError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot prepare the log folder: {exc}")
    log_dir = service.log_dir.resolve()
    limits, note = fit_open_files(service.limits)
    _banner(service, args, log_dir, note)

    loaded = [service]
    del service  # launch takes it: with N workers, each loads its own and this process keeps none
    return launch(args, limits, loaded, App, "aiops.runtime.serve.server:create_app", art_dir, log_dir)


def _banner(service, args: argparse.Namespace, log_dir, note: str | None = None) -> None:
    m = service.model
    lim = service.limits
    lines = [f"aiops serve: {m['name']} {m['version']} (manifest sha256 {m['manifest_sha256'][:16]}...) "
             f"verified and blessed",
             f"  prediction log: {log_dir / 'predictions.jsonl'}"
             f"{' (encrypted at rest)' if service.cipher else ''}: {service.audit.describe()}",
             f"  access: {service.access.source}",
             f"  masking: {service.masker.describe()}",
             f"  limits per worker: {lim.max_connections} connections, headers {lim.max_header_bytes} bytes in "
             f"{lim.header_timeout_s:g} s, body in {lim.body_timeout_s:g} s, idle {lim.keepalive_timeout_s:g} s, "
             f"answer in {lim.timeout_s:g} s",
             f"  artefact trust: {service.art.trust.text()}",
             f"  listening on http://{args.host}:{args.port} with {args.workers} worker(s)"]
    if service.jobs is not None:
        lines.insert(-1, f"  jobs: {args.workers} worker process(es) x {service.job_threads} job thread(s); "
                         f"at most {service.jobs.store.max_attempts} attempts per job")
    if note:
        lines.insert(-1, f"  note: {note}")
    if service.access.insecure_dev:
        bar = "!" * 78
        lines += [bar, "!! INSECURE DEV MODE (--insecure-dev): NO API KEYS, although "
                  f"{service.access.required}.",
                  "!! Anyone who can reach this server may predict, explain, submit jobs and read metadata,",
                  "!! metrics and the audit report. /v1/metadata records this. Never run it like this in production.",
                  bar]
    elif service.access.open:
        bar = "!" * 78
        lines += [bar, "!! WARNING: NO API KEYS CONFIGURED. The server runs OPEN: anyone who can reach it",
                  "!! may predict, explain, submit jobs and read metadata and metrics.",
                  "!! Set AIOPS_API_KEYS='key:role,...' (or a key file, per serving.json security.key_source).",
                  bar]
    print("\n".join(lines), file=sys.stderr, flush=True)
