"""How `aiops serve` starts uvicorn, for tabular models (runtime/serve/cli.py) and prompts
(runtime/genai/server.py) alike: one worker serves the loaded service in this process; N workers
are processes that uvicorn starts, each loading its own service through a factory that reads the
environment set here (AIOPS_SERVE_ARTEFACTS, AIOPS_SERVE_LOG_DIR and, only with --insecure-dev,
AIOPS_SERVE_INSECURE_DEV), while this process, their supervisor, keeps no service."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from aiops.runtime.serve.limits import Limits, run_server, uvicorn_options
from aiops.runtime.serve.server import ENV_ARTEFACTS, ENV_INSECURE_DEV, ENV_LOG_DIR


def launch(args, limits: Limits, loaded: list, app: Callable[[Any], Any], factory: str, art_dir: Path,
           log_dir: Path, release: Callable[[Any], None] | None = None) -> int:
    """Serve until stopped; the exit code (`run_server`). `loaded` holds the one loaded service and
    this takes it (the caller keeps no other reference, so the supervisor of N workers frees it):
    one worker serves `app(service)`; with N, `release(service)` runs, the service is dropped and
    uvicorn starts N processes that call `factory` ("module:function")."""
    service = loaded.pop()
    common = uvicorn_options(args, limits)
    if args.workers == 1:
        return run_server(app(service), **common)
    if release is not None:
        release(service)
    del service  # each worker loads its own (one onnxruntime session, one provider pool per worker)
    os.environ[ENV_ARTEFACTS] = str(art_dir)
    os.environ[ENV_LOG_DIR] = str(log_dir)
    if args.insecure_dev:
        os.environ[ENV_INSECURE_DEV] = "1"
    return run_server(factory, factory=True, workers=args.workers, **common)
