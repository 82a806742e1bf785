"""The provider client: any OpenAI-compatible endpoint (llama.cpp, vLLM, Ollama, a hosted API),
whose base URL is read from the environment variable the spec names (never from the spec).

`Provider.complete` sends one prompt to `/completions` (api: completions) or
`/chat/completions` (api: chat) with the spec's parameters, and returns a `Generation`.
Per attempt a timeout (`timeout_s`); timeouts, 5xx answers and connection errors are retried
`retries` times with exponential backoff. The budget is applied before sending: a prompt whose
estimated input tokens exceed `max_input_tokens` is refused, `max_tokens` is capped at
`max_output_tokens`, and a per-minute token bucket (`max_tokens_per_minute`) refuses a call
that would overdraw it; after the call the bucket is charged the provider's reported usage.

The input estimate is deliberately high (ESTIMATE_CHARS_PER_TOKEN characters per token, where
English with BPE tokenizers averages about 4): the refusal happens before any byte is sent.

Stdlib http.client only (blocking): the server calls it from a thread pool.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

ESTIMATE_CHARS_PER_TOKEN = 3
BACKOFF_S = 0.25  # the first retry waits this long, then twice as long each time
MAX_RESPONSE_BYTES = 8 << 20
ERROR_CODES = ("provider_unset", "provider_timeout", "provider_error", "budget_exceeded")


class ProviderError(Exception):
    """A provider call that did not give a generation. code: one of ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    finish_reason: str | None
    model_id: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # from a chat API's native tool calls
    attempts: int = 1


def estimate_tokens(text: str) -> int:
    """A high estimate of the tokens of `text` (used before sending, to apply the budget)."""
    return math.ceil(len(text) / ESTIMATE_CHARS_PER_TOKEN)


class TokenBucket:
    """`per_minute` tokens, refilled continuously; thread-safe."""

    def __init__(self, per_minute: int | None, clock=time.monotonic):
        self.capacity = float(per_minute) if per_minute else None
        self.level = self.capacity or 0.0
        self.clock = clock
        self._t = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self._t) * self.capacity / 60.0)
        self._t = now

    def take(self, n: int) -> bool:
        if self.capacity is None:
            return True
        with self._lock:
            self._refill()
            if n > self.level:
                return False
            self.level -= n
            return True

    def settle(self, reserved: int, used: int) -> None:
        """Give back what was reserved but not used (or charge the excess)."""
        if self.capacity is None:
            return
        with self._lock:
            self._refill()
            self.level = min(self.capacity, self.level + reserved - used)


class Provider:
    """One configured provider (prompt.json's `provider` block) in one environment."""

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.config = dict(config)
        self.base_url_env = str(config.get("base_url_env") or "")
        self.base_url = (env.get(self.base_url_env) or "").strip() if self.base_url_env else ""
        key_env = config.get("api_key_env")
        self.api_key_env = key_env
        self.api_key = (env.get(key_env) or "").strip() if key_env else ""
        self.model = str(config.get("model") or "")
        self.api = config.get("api", "completions")
        if self.api not in ("completions", "chat"):
            raise ValueError(f"provider.api must be 'completions' or 'chat'. Got {self.api!r} instead.")
        self.parameters = dict(config.get("parameters") or {})
        self.timeout_s = float(config.get("timeout_s") or 30)
        self.retries = int(config.get("retries") or 0)
        budget = config.get("budget") or {}
        self.max_input_tokens = budget.get("max_input_tokens")
        self.max_output_tokens = budget.get("max_output_tokens")
        self.bucket = TokenBucket(budget.get("max_tokens_per_minute"))
        self.system = "openai_compatible"  # gen_ai.system: the wire protocol; the model is in gen_ai.request.model

    # ---------------------------------------------------------------- configuration
    def problem(self) -> str | None:
        """Why no call can be made (the base URL variable is unset or not a URL), or None."""
        if not self.base_url_env:
            return "the provider names no base URL variable (provider.base_url_env)"
        if not self.base_url:
            return (f"the environment variable {self.base_url_env} (provider.base_url_env) is not set: set it to an "
                    "OpenAI-compatible base URL such as http://127.0.0.1:8080/v1 (tools/local_llm.py starts a "
                    "local one)")
        u = urlsplit(self.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            return (f"the environment variable {self.base_url_env} must hold an http(s) URL such as "
                    f"http://127.0.0.1:8080/v1. Got a value that is not one instead.")
        if self.api_key_env and not self.api_key:
            return f"the environment variable {self.api_key_env} (provider.api_key_env) is not set"
        return None

    def check(self) -> None:
        why = self.problem()
        if why:
            raise ProviderError("provider_unset", why)

    def max_tokens(self) -> int | None:
        """max_tokens as sent: the parameter, capped by the budget's max_output_tokens."""
        mt = self.parameters.get("max_tokens")
        cap = self.max_output_tokens
        if mt is None:
            return cap
        return min(int(mt), int(cap)) if cap is not None else int(mt)

    # ---------------------------------------------------------------- calls
    def complete(self, prompt_text: str, deadline: float | None = None) -> Generation:
        """One generation for `prompt_text`, within timeout, retries and budget. `deadline`
        (time.monotonic()): the request's own (serving.timeout_s); no attempt waits past it and
        none starts after it, so a call the server has abandoned frees its thread then."""
        self.check()
        est = estimate_tokens(prompt_text)
        if self.max_input_tokens is not None and est > int(self.max_input_tokens):
            raise ProviderError("budget_exceeded", f"the prompt is about {est} tokens ({len(prompt_text)} characters), "
                                f"over the budget's max_input_tokens of {self.max_input_tokens}; it was not sent")
        max_tokens = self.max_tokens()
        reserve = est + (max_tokens or 0)
        if not self.bucket.take(reserve):
            raise ProviderError("budget_exceeded", f"the budget of {int(self.bucket.capacity)} tokens per minute "
                                "(budget.max_tokens_per_minute) is spent; retry later")
        params = {**self.parameters, "max_tokens": max_tokens} if max_tokens is not None else dict(self.parameters)
        if self.api == "chat":
            path, body = "/chat/completions", {"model": self.model, "messages": [{"role": "user", "content": prompt_text}],
                                               **params}
        else:
            path, body = "/completions", {"model": self.model, "prompt": prompt_text, **params}
        payload = json.dumps(body).encode()
        used = reserve
        try:
            t0 = time.perf_counter()
            data, attempts = self._with_retries("POST", path, payload, deadline)
            latency_ms = (time.perf_counter() - t0) * 1000.0
            gen = self._generation(data, latency_ms, attempts, est)
            used = gen.input_tokens + gen.output_tokens
            return gen
        finally:
            self.bucket.settle(reserve, used)

    def model_id(self) -> str | None:
        """The model id the endpoint reports on GET /models (the one named `model` if listed)."""
        self.check()
        data, _ = self._with_retries("GET", "/models", None)
        ids = [m.get("id") for m in (data.get("data") or []) if isinstance(m, dict)]
        if self.model in ids:
            return self.model
        return ids[0] if ids else None

    def _with_retries(self, method: str, path: str, payload: bytes | None,
                      deadline: float | None = None) -> tuple[dict[str, Any], int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._request(method, path, payload, deadline), attempt
            except ProviderError as exc:
                retryable = getattr(exc, "retryable", False)
                pause = BACKOFF_S * (2 ** (attempt - 1))
                late = deadline is not None and time.monotonic() + pause >= deadline
                if not retryable or attempt > self.retries or late:
                    if late and retryable and attempt <= self.retries:
                        exc.message = f"{exc.message}; not retried: the request's deadline (serving.timeout_s) is near"
                    if attempt > 1:
                        exc.message = f"{exc.message} (after {attempt} attempts)"
                    exc.args = (exc.message,)
                    raise
                time.sleep(pause)

    def _request(self, method: str, path: str, payload: bytes | None, until: float | None = None) -> dict[str, Any]:
        u = urlsplit(self.base_url)
        full = u.path.rstrip("/") + path
        now = time.monotonic()
        timeout = self.timeout_s if until is None else max(0.001, min(self.timeout_s, until - now))
        deadline = now + timeout
        if u.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                u.hostname, u.port, timeout=timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        where = f"{self.base_url_env} {method} {path}"
        try:
            conn.request(method, full, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(MAX_RESPONSE_BYTES + 1)
            if time.monotonic() > deadline:
                raise socket.timeout()
        except (socket.timeout, TimeoutError):
            if timeout < self.timeout_s:  # cut short by the request's deadline
                raise _retryable("provider_timeout", f"the provider did not answer before the request's deadline "
                                 f"(serving.timeout_s; {timeout:.3g} s were left for this attempt) at {where}") from None
            raise _retryable("provider_timeout", f"the provider did not answer within {self.timeout_s:g} s "
                             f"(provider.timeout_s) at {where}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            raise _retryable("provider_error", f"cannot reach the provider at {where}: "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ProviderError("provider_error", f"the provider's answer at {where} is larger than "
                                f"{MAX_RESPONSE_BYTES} bytes")
        if resp.status >= 500:
            raise _retryable("provider_error", f"the provider answered HTTP {resp.status} at {where}")
        if resp.status != 200:
            raise ProviderError("provider_error", f"the provider answered HTTP {resp.status} at {where}: "
                                f"{_snippet(raw)}")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ProviderError("provider_error", f"the provider's answer at {where} is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderError("provider_error", f"the provider's answer at {where} is not a JSON object")
        return data

    def _generation(self, data: dict[str, Any], latency_ms: float, attempts: int, est: int) -> Generation:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError("provider_error", "the provider's answer has no choices")
        c = choices[0]
        tool_calls: list[dict[str, Any]] = []
        if self.api == "chat":
            msg = c.get("message") or {}
            text = msg.get("content") or ""
            for tc in msg.get("tool_calls") or []:
                fn = (tc or {}).get("function") or {}
                args: Any = fn.get("arguments")
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except ValueError:
                        pass  # the output guard refuses arguments that are not an object
                tool_calls.append({"name": fn.get("name"), "arguments": args})
        else:
            text = c.get("text")
        if not isinstance(text, str):
            raise ProviderError("provider_error", "the provider's answer has no text")
        usage = data.get("usage") or {}
        tin = usage.get("prompt_tokens")
        tout = usage.get("completion_tokens")
        return Generation(text=text, input_tokens=int(tin) if isinstance(tin, int) else est,
                          output_tokens=int(tout) if isinstance(tout, int) else estimate_tokens(text),
                          latency_ms=round(latency_ms, 3), finish_reason=c.get("finish_reason"),
                          model_id=data.get("model") if isinstance(data.get("model"), str) else None,
                          tool_calls=tool_calls, attempts=attempts)


def _retryable(code: str, message: str) -> ProviderError:
    e = ProviderError(code, message)
    e.retryable = True  # type: ignore[attr-defined]
    return e


def _snippet(raw: bytes) -> str:
    """The start of an error answer (a provider's error text, never the prompt)."""
    try:
        d = json.loads(raw)
        msg = (d.get("error") or {}).get("message") if isinstance(d, dict) and isinstance(d.get("error"), dict) else None
        if isinstance(msg, str):
            return msg[:200]
    except ValueError:
        pass
    return raw[:200].decode("utf-8", "replace")
