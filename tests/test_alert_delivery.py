"""Alert delivery (runtime/monitor/delivery.py) against a real HTTP server on 127.0.0.1 that
fails the first tries: retries with exponential backoff, one idempotency key on every try,
and the delivery recorded in alerts.json."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from aiops.runtime.monitor.delivery import deliver
from tests._build import ROOT, build


class FlakyReceiver:
    """Answers `fail` (status, headers) to the first tries, then 204; records every POST."""

    def __init__(self, fail: list[tuple[int, dict]]):
        self.posts: list[dict] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append({"key": self.headers["Idempotency-Key"], "body": json.loads(body)})
                status, headers = fail[len(outer.posts) - 1] if len(outer.posts) <= len(fail) else (204, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/S3CRET"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request):
    r = FlakyReceiver(request.param)
    yield r
    r.close()


@pytest.mark.parametrize("receiver", [[(503, {}), (500, {}), (429, {"Retry-After": "0"})]], indirect=True)
def test_retries_with_backoff_and_one_idempotency_key(receiver):
    waits: list[float] = []
    rec = deliver(receiver.url, {"alerts": [1, 2]}, sleep=waits.append)
    assert waits == [0.5, 1.0, 0.0]  # exponential backoff; the receiver's Retry-After wins
    assert [p["key"] for p in receiver.posts] == [rec["idempotency_key"]] * 4
    assert rec["idempotency_key"].startswith("aiops-") and len(rec["idempotency_key"]) == 46
    assert all(p["body"] == {"alerts": [1, 2]} for p in receiver.posts)
    assert rec["delivered"] is True and rec["status"] == 204 and rec["error"] is None
    assert rec["url"] == f"http://127.0.0.1:{receiver.server.server_port}/..."  # the token is not kept
    assert rec["attempts"] == [
        {"attempt": 1, "status": 503, "error": "HTTP 503 Service Unavailable", "waited_s": 0.0},
        {"attempt": 2, "status": 500, "error": "HTTP 500 Internal Server Error", "waited_s": 0.5},
        {"attempt": 3, "status": 429, "error": "HTTP 429 Too Many Requests", "waited_s": 1.0},
        {"attempt": 4, "status": 204, "error": None, "waited_s": 0.0}]
    # the same payload again (a re-run over the same data): the same key, so the receiver can drop it
    assert deliver(receiver.url, {"alerts": [1, 2]}, sleep=waits.append)["idempotency_key"] == rec["idempotency_key"]


@pytest.mark.parametrize("receiver", [[(400, {})]], indirect=True)
def test_a_refused_payload_is_not_retried(receiver):
    rec = deliver(receiver.url, {"alerts": []}, sleep=lambda s: None)
    assert len(receiver.posts) == 1
    assert rec["delivered"] is False and rec["status"] == 400 and len(rec["attempts"]) == 1


def test_no_receiver_gives_up_after_every_attempt():
    import socket

    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = deliver(f"http://127.0.0.1:{port}/x", {}, sleep=lambda s: None)
    assert rec["delivered"] is False and rec["status"] is None and len(rec["attempts"]) == 4
    assert "refused" in rec["error"].lower()


@pytest.mark.parametrize("receiver", [[(502, {}), (503, {})]], indirect=True)
def test_monitor_records_the_delivery_in_alerts_json(receiver, tmp_path, capsys):
    from aiops.compiler.cli import main

    art = build("flight_delays")
    rc = main(["monitor", str(art), "--current", str(ROOT / "specs/flight_delays/data/flights_2013.parquet"),
               "--report", str(tmp_path / "r"), "--no-html", "--webhook", receiver.url])
    assert rc == 1  # alerts fired
    capsys.readouterr()
    alerts = json.loads((tmp_path / "r" / "alerts.json").read_text())
    hook = alerts["webhook"]
    assert hook["delivered"] is True and hook["status"] == 204
    assert [(a["attempt"], a["status"], a["waited_s"]) for a in hook["attempts"]] == [(1, 502, 0.0), (2, 503, 0.5),
                                                                                      (3, 204, 1.0)]
    assert [p["key"] for p in receiver.posts] == [hook["idempotency_key"]] * 3
    assert receiver.posts[-1]["body"]["alerts"] == alerts["alerts"]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["webhook"] == {"url": hook["url"], "status": 204, "error": None}
