"""Back-pressure from the prediction log never blocks the event loop: with the log's writer
process stopped (SIGSTOP, the slowest writer there is) and its queue past max_bytes,
/v1/predict answers 503 with Retry-After at once and other requests keep being answered;
once the writer runs again, predictions are answered and every answered one is logged."""
from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from aiops.runtime.audit.predlog import read_entries
from aiops.runtime.serve.server import App, Service
from tests._build import build
from tests.test_serve import ADMIN_KEY, DATA_KEY, KEYS, records

pytestmark = pytest.mark.usefixtures("hang_guard")  # a hang fails the test (tests/conftest.py)


async def _call(app: App, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    sent: list[dict] = []
    given = False

    async def receive():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(msg):
        sent.append(msg)

    headers = [(b"x-api-key", ADMIN_KEY.encode()), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    await app({"type": "http", "method": method, "path": path, "headers": headers, "query_string": b"",
               "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)},
              receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start.get("headers") or []), b"".join(m.get("body", b"") for m in sent
                                                                        if m["type"] == "http.response.body")


def test_a_stalled_log_writer_gets_503_retry_after_not_a_blocked_event_loop(tmp_path):
    env = {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_API_KEYS": ",".join(f"{k}:{r}" for k, r in KEYS.items()),
           **{k: os.environ[k] for k in ("AIOPS_LOG_KEY", "AIOPS_LOG_SIGNING_KEY", "AIOPS_MASK_SALT") if k in os.environ}}
    service = Service(build("credit_risk"), log_dir=tmp_path / "log", env=env, job_threads=0)
    app = App(service)
    app.startup()
    service.log.max_bytes = 200_000  # a small queue: a few requests fill it
    body = json.dumps({"records": records(100)[0]}).encode()
    writer = service.log._proc.pid
    try:
        async def scenario() -> tuple[int, int]:
            os.kill(writer, signal.SIGSTOP)  # the writer stops reading: the pipe fills, then the queue
            answered = refused = 0
            headers = {}
            for _ in range(400):
                status, headers, _ = await asyncio.wait_for(_call(app, "POST", "/v1/predict", body), 5)
                if status == 503:
                    refused += 1
                    break
                assert status == 200
                answered += 1
            assert refused == 1, "the queue never filled"
            assert headers[b"retry-after"] == b"1"
            # the loop is free: other requests are answered while the log is full
            assert (await asyncio.wait_for(_call(app, "GET", "/healthz"), 2))[0] == 200
            status, headers, raw = await asyncio.wait_for(_call(app, "POST", "/v1/predict", body), 2)
            assert status == 503 and headers[b"retry-after"] == b"1"
            assert json.loads(raw)["error"] == {"code": "log_backlog", "message": "the prediction log is behind; "
                                                "retry after the time in Retry-After"}
            os.kill(writer, signal.SIGCONT)
            for _ in range(200):  # the writer catches up: requests are answered again
                await asyncio.sleep(0.05)
                if service.log.has_room:
                    break
            status, _, _ = await asyncio.wait_for(_call(app, "POST", "/v1/predict", body), 5)
            assert status == 200
            return answered + 1, refused

        answered, _ = asyncio.run(scenario())
        assert service.log.flush(30)
        logged = list(read_entries(service.log.path, service.cipher))
        assert len(logged) == 100 * answered  # nothing answered is missing from the log, nothing refused is in it
    finally:
        os.kill(writer, signal.SIGCONT)
        app.shutdown()
