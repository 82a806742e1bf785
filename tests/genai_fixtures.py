"""Fixtures of the GenAI tests: ONE local LLM server (llama.cpp + Gemma 3 270M, tools/local_llm.py)
for the whole test session, and fake OpenAI-compatible servers on loopback (stdlib http.server
in a thread) that answer with crafted completions, slowly, or with errors, for deterministic
attacks. tests/conftest.py imports the fixtures so that every test module sees them."""
from __future__ import annotations

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parent.parent


def _local_llm():
    spec = importlib.util.spec_from_file_location("aiops_tools_local_llm", REPO / "tools" / "local_llm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


local_llm = _local_llm()


@pytest.fixture(scope="session")
def llm_base_url():
    """The base URL (http://127.0.0.1:PORT/v1) of the session's local LLM server, started once.
    Skipped only when the llm extra is not installed (CI installs it through the test extra)."""
    why = local_llm.available()
    if why:
        pytest.skip(why)
    with local_llm.server() as url:
        yield url


class FakeLLM:
    """An OpenAI-compatible server on loopback whose answers a test decides: `reply(body)`
    returns (status, JSON object) for each POST; `delay_s` sleeps before answering.
    `requests` records every request body received."""

    def __init__(self, reply: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]], delay_s: float = 0.0):
        self.reply, self.delay_s = reply, delay_s
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                fake.requests.append(body)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                self._send(*fake.reply(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> dict[str, Any]:
    """A /v1/completions answer holding `text`."""
    return {"id": "cmpl-1", "object": "text_completion", "model": "fake-model",
            "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
