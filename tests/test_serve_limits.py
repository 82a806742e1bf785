"""Connection limits and request deadlines of `aiops serve` (runtime/serve/limits.py and the
serving.timeout_s sweep of runtime/serve/server.py), attacked on a live server.

The server is credit_risk with 1 s header, body and idle deadlines (spec overrides), so
that every test takes seconds.
"""
from __future__ import annotations

import asyncio
import json
import re
import resource
import socket
import time
from pathlib import Path

import pytest

from aiops.runtime.serve.limits import SWEEP_S, Limits
from tests.test_serve import ADMIN_KEY, Server, records
from tests.test_serve_access import KEYS, clear_build

ADMIN = {"X-API-Key": ADMIN_KEY}

pytestmark = pytest.mark.usefixtures("hang_guard")  # a hang fails the test (tests/conftest.py)
SLOW = 1100  # more than serving.max_connections (1000): the oldest waiting ones make room
DEADLINE = 1.0 + SWEEP_S  # the 1 s deadlines hold to within one sweep
SLACK = 2.0  # what a busy test machine may add to any of the times below


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < SLOW + 200:  # this process holds the slow sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(SLOW + 512, hard), hard))
    s = Server(clear_build(), tmp_path_factory.mktemp("limits"),
               {"AIOPS_API_KEYS": ",".join(f"{k}:{r}" for k, r in KEYS.items())}).start()
    yield s
    s.stop()


def _ok(server: Server) -> None:
    status, body = server.json("POST", "/v1/predict", {"records": records(2)[0]}, ADMIN)
    assert status == 200 and len(body["predictions"]) == 2


def _read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sends until it closes (True) or the timeout passes (False)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True


def _one_response(sock: socket.socket) -> bytes:
    """One whole response on a kept-alive connection (its head may come before its body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return data


def test_a_1mb_header_gets_431(server: Server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = _read_all(s, 5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large") and closed
    assert json.loads(body) == {"error": {"code": "headers_too_large", "message": (
        "the request line and headers are larger than 32768 bytes (serving.max_header_bytes)")}}
    _ok(server)


def test_many_headers_in_one_packet_are_counted_too(server: Server):
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(400))  # ~44 KB, sent at once
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        data, _ = _read_all(s, 5)
    assert data.startswith(b"HTTP/1.1 431 ")
    # just under the limit is a normal request
    fine = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(250))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fine + b"\r\n")
        data, _ = _read_all(s, 5)
    assert data.startswith(b"HTTP/1.1 200 ")


def test_1100_slow_connections_do_not_stop_normal_answers(server: Server):
    """Half headers and slow bodies, more than the connection limit: normal requests still get
    their answer at once, and every slow connection is closed by its deadline."""
    slow = []
    t0 = time.monotonic()
    try:
        for i in range(SLOW):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if i % 2:
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: ")  # half a header
            else:
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\nX-API-Key: " + ADMIN_KEY.encode() + b"\r\n\r\n{\"rec")
            slow.append(s)
        for _ in range(20):
            t = time.monotonic()
            _ok(server)
            assert time.monotonic() - t < SLACK
        # every slow connection ends: 408 at its deadline, or 503 earlier when it made room
        answers = set()
        for s in slow:
            data, closed = _read_all(s, max(0.05, t0 + DEADLINE + 2 * SLACK - time.monotonic()))
            assert closed, "a slow connection is still open"
            answers.add(data.split(b"\r\n", 1)[0])
        assert answers <= {b"HTTP/1.1 408 Request Timeout", b"HTTP/1.1 503 Service Unavailable", b""}, answers
        assert b"HTTP/1.1 408 Request Timeout" in answers and b"HTTP/1.1 503 Service Unavailable" in answers
    finally:
        for s in slow:
            s.close()
    _ok(server)


def test_the_body_read_deadline_closes_a_slow_body(server: Server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n"
                  b"X-API-Key: " + ADMIN_KEY.encode() + b"\r\n\r\n{")
        t = time.monotonic()
        for _ in range(3):  # a byte now and then does not extend the deadline
            time.sleep(0.3)
            s.sendall(b" ")
        data, closed = _read_all(s, 5)
        took = time.monotonic() - t
    assert closed and 0.9 <= took <= DEADLINE + SLACK, took  # t was taken just after the headers went
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout")
    assert json.loads(body)["error"] == {"code": "body_timeout", "message": (
        "the request body did not arrive within 1 s (serving.body_timeout_s)")}


def test_half_headers_and_idle_connections_are_closed(server: Server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as half, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t = time.monotonic()
        data, closed = _read_all(half, 5)
        assert closed and data.startswith(b"HTTP/1.1 408 ") and b'"header_timeout"' in data
        assert _read_all(idle, 5) == (b"", True)  # never sent anything: closed when idle too long
        assert time.monotonic() - t <= DEADLINE + SLACK
    # keep-alive: a connection is reused within the idle deadline, then closed
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _one_response(s).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.2)
        assert _read_all(s, 5) == (b"", True)


def test_the_spec_sets_the_limits(tmp_path: Path):
    from aiops.runtime.serve.server import Service

    svc = Service(clear_build(), tmp_path, env={}, job_threads=0, insecure_dev=True)
    assert svc.limits == Limits(max_header_bytes=32768, header_timeout_s=1.0, body_timeout_s=1.0,
                                keepalive_timeout_s=1.0, max_connections=1000, timeout_s=5.0)
    meta = json.loads(svc.metadata)
    assert meta["limits"]["header_timeout_s"] == 1.0 and meta["limits"]["timeout_s"] == 5.0
    assert meta["security"]["insecure_dev"] is True and meta["security"]["auth"] == "open"


def test_serving_timeout_s_answers_504(tmp_path: Path):
    """A request still unanswered after serving.timeout_s is abandoned with a JSON 504 (here
    its body never comes; the deadline is shortened from the spec's 5 s to keep this quick)."""
    from aiops.runtime.serve.server import App, Service

    app = App(Service(clear_build(), tmp_path, env={}, job_threads=0, insecure_dev=True))
    app.timeout = 0.3
    app.startup()  # the prediction log's writer: without it /v1/predict answers 503 at once
    sent = []

    async def receive():
        await asyncio.sleep(30)
        return {"type": "http.request", "body": b"{}"}

    async def send(msg):
        sent.append(msg)

    async def main():
        app._sweep_deadlines()
        t = time.monotonic()
        await app({"type": "http", "path": "/v1/predict", "method": "POST", "query_string": b"",
                   "headers": [(b"content-type", b"application/json")]}, receive, send)
        app._sweeper.cancel()
        return time.monotonic() - t

    try:
        took = asyncio.run(main())
    finally:
        app.shutdown()
    assert 0.3 <= took < 0.3 + 0.1 + SLACK, (took, sent)
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": {"code": "timeout", "message": (
        "the request was not answered within 0.3 s (serving.timeout_s) and was abandoned")}}
    assert app._deadlines == {} and app._expired == set()
