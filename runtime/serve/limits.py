"""Connection limits for `aiops serve`, enforced before the application sees a request.

uvicorn's httptools protocol has no header size limit and no read deadlines: a connection
that sends half a header, or a body one byte at a time, is held forever, and a 64 MB header
is buffered whole. `LimitedHttpTools` is that protocol with, per worker process:

- `max_header_bytes`: the request line and headers; beyond, 431 and the connection closes;
- `header_timeout_s`: from a request's first byte to the end of its headers (else 408);
- `body_timeout_s`: from the end of the headers to the end of the body (else 408);
- `keepalive_timeout_s`: a connection idle before or between requests is closed;
- `max_connections`: open connections; one more closes the oldest connection that is idle
  or still sending its request (503 to it), or is refused with 503 if every one is busy.

Deadlines are not timers per request: each connection records its phase and since when,
and one sweep per process checks them every SWEEP_S seconds (so a deadline holds to
within SWEEP_S). The cost per request is a few attribute writes. `serving.timeout_s`, the
time the application takes to answer, is enforced by the application (runtime/serve/server.py).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, Mapping

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SWEEP_S = 0.25
LINGER_S = 1.0  # after a refusal, what the client still sends is read and dropped this long, then closed
FD_MARGIN = 256  # open files kept for everything but connections (log, jobs, model, sockets of uvicorn)

IDLE, HEAD, BODY, BUSY, CLOSING = range(5)


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 32_768
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 5.0
    max_connections: int = 1000
    timeout_s: float = 10.0

    @classmethod
    def from_serving(cls, serving: Mapping[str, Any]) -> "Limits":
        """The limits of serving.json's `serving` section (defaults for keys it lacks)."""
        kw = {}
        for f in fields(cls):
            v = serving.get(f.name)
            if v is not None:
                kw[f.name] = int(v) if f.type == "int" else float(v)
        return cls(**kw)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def fit_open_files(limits: Limits) -> tuple[Limits, str | None]:
    """Raise this process's open-file limit so that max_connections fit (workers inherit it);
    if the hard limit is lower, lower max_connections and say so."""
    import resource

    need = limits.max_connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fit = max(1, soft - FD_MARGIN)
        return (Limits(**{**limits.as_dict(), "max_connections": fit}),
                f"serving.max_connections lowered from {limits.max_connections} to {fit}: the open-file limit "
                f"(ulimit -n) is {soft}")
    return limits, None


def protocol(limits: Limits) -> partial:
    """What to give uvicorn as `http=`: the limited protocol bound to these limits (picklable,
    so that worker processes get it too)."""
    return partial(LimitedHttpTools, limits=limits)


def _answer(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}[status]
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body)) + body)


class _Stop(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


class _Sweep:
    """Checks every connection of one server against its phase's deadline."""

    def __init__(self, connections: set, loop: asyncio.AbstractEventLoop, limits: Limits):
        self.connections, self.loop, self.limits = connections, loop, limits
        self.handle = loop.call_later(SWEEP_S, self.run)

    def run(self) -> None:
        self.handle = self.loop.call_later(SWEEP_S, self.run)  # first: nothing below can stop the sweeps
        lim = self.limits
        now = self.loop.time()
        for p in list(self.connections):
            phase = getattr(p, "phase", BUSY)
            if phase == IDLE and now - p.since > lim.keepalive_timeout_s:
                p.transport.close()
            elif phase == HEAD and now - p.since > lim.header_timeout_s:
                p.refuse(408, "header_timeout", f"the request headers did not arrive within "
                         f"{lim.header_timeout_s:g} s (serving.header_timeout_s)")
            elif phase == BODY and now - p.since > lim.body_timeout_s:
                p.refuse(408, "body_timeout", f"the request body did not arrive within "
                         f"{lim.body_timeout_s:g} s (serving.body_timeout_s)")


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above."""

    def __init__(self, config, server_state, app_state, _loop=None, limits: Limits = Limits()):
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.phase = IDLE
        self.since = 0.0
        self._head = 0  # bytes of the current request's head received in earlier chunks
        self._chunk = 0
        self._message_done = True
        if getattr(server_state, "aiops_sweep", None) is None:
            server_state.aiops_sweep = _Sweep(server_state.connections, self.loop, limits)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.since = self.loop.time()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        victim, oldest = None, None
        for p in self.connections:
            if p is not self and getattr(p, "phase", BUSY) in (IDLE, HEAD, BODY) and (oldest is None or p.since < oldest):
                victim, oldest = p, p.since
        msg = f"the server is at its connection limit ({self.limits.max_connections}, serving.max_connections)"
        if victim is None:
            self.refuse(503, "too_many_connections", msg)
        elif victim.phase == IDLE:
            victim.transport.close()
        else:
            victim.refuse(503, "too_many_connections", msg)

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer with this error, close, and make the application (if it waits for the body)
        see a disconnect. What the client still sends is read and dropped for LINGER_S, so that
        it can read the answer rather than a reset."""
        if self.phase == CLOSING:
            return
        self.phase = CLOSING
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.is_closing():
            return
        self.transport.write(_answer(status, code, message))
        self.flow.resume_reading()
        try:
            self.transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            pass
        self.loop.call_later(LINGER_S, self.transport.close)

    # ------------------------------------------------------------ parser events
    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSING:
            return
        self._unset_keepalive_if_required()
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.phase == CLOSING:
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.phase == HEAD:
            self._head += len(data)
            if self._head > self.limits.max_header_bytes:
                self._too_large()

    def _too_large(self) -> None:
        self.refuse(431, "headers_too_large", f"the request line and headers are larger than "
                    f"{self.limits.max_header_bytes} bytes (serving.max_header_bytes)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = HEAD
        self.since = self.loop.time()
        self._head = 0

    def on_headers_complete(self) -> None:
        lim = self.limits.max_header_bytes
        if self._head + self._chunk > lim:  # maybe too large: count exactly
            size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
            if size > lim:
                self._too_large()
                raise _Stop()
        self.phase = BODY
        self.since = self.loop.time()
        self._message_done = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._message_done = True
        if self.phase != CLOSING:
            self.phase = BUSY

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if self._message_done and self.phase != CLOSING:
            self.phase = BUSY if pipelined else IDLE
            self.since = self.loop.time()


def run_server(app, **options) -> int:
    """uvicorn.run, with its exit 3 ("Application startup failed", e.g. a prediction log that does
    not verify under the deployment's key) turned into aiops's exit 2: the reason is the error
    uvicorn printed just above, and it is about the deployment, not a bug in aiops."""
    import sys

    import uvicorn

    try:
        uvicorn.run(app, **options)
    except SystemExit as exc:
        if exc.code == 3:
            print("error: the server did not start: the reason is the ERROR line above; nothing was served",
                  file=sys.stderr)
            return 2
        raise
    return 0


def uvicorn_options(args, limits) -> dict:
    """uvicorn's settings for `aiops serve` (tabular and prompts alike): the limited protocol, no
    access log or server header, no proxy headers, the keep-alive timeout of the limits."""
    return dict(host=args.host, port=args.port, http=protocol(limits), loop="uvloop", access_log=False,
                log_level="info", lifespan="on", server_header=False, proxy_headers=False,
                timeout_keep_alive=limits.keepalive_timeout_s)

