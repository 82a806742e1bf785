"""Delivery of the monitoring alerts to the webhook: POST with retries and exponential
backoff, an idempotency key, and a delivery record for alerts.json.

- Up to ATTEMPTS tries; before try k (k >= 2) a wait of BASE_DELAY_S * 2**(k-2) seconds
  (0.5, 1, 2), or the receiver's Retry-After when it sends one (at most MAX_DELAY_S).
- Retried: no connection, a timeout, HTTP 408, 429 and 5xx. Not retried: other 4xx (the
  receiver refuses the payload; trying again would not help).
- `Idempotency-Key` header: a hash of the payload, the same on every try and on a re-run of
  the same job over the same data, so a receiver that saw a try whose answer was lost can
  drop the duplicate.
- The record: url (host only: webhook paths often hold a token), idempotency_key, delivered,
  status and error of the last try, and every attempt (status, error, seconds waited before
  it). No clock time: alerts.json stays a function of the inputs and of the receiver.
"""
from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

ATTEMPTS = 4
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def idempotency_key(body: bytes) -> str:
    return "aiops-" + hashlib.sha256(body).hexdigest()[:40]


def _post(url: str, body: bytes, key: str, timeout: float) -> tuple[int | None, str | None, float | None]:
    """(status, error or None, Retry-After seconds or None) of one POST."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "aiops-monitor",
                                          "Idempotency-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, None, None
    except urllib.error.HTTPError as exc:
        after = None
        try:
            after = float(exc.headers.get("Retry-After")) if exc.headers.get("Retry-After") else None
        except ValueError:  # an HTTP date: use the backoff
            after = None
        return exc.code, f"HTTP {exc.code} {exc.reason}", after
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc)), None


def deliver(url: str, payload: dict[str, Any], attempts: int = ATTEMPTS, base_delay: float = BASE_DELAY_S,
            timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """POST `payload` as JSON until a 2xx answer or a final failure; never raises."""
    from aiops.runtime.monitor.reader import redact_url

    body = json.dumps(payload, sort_keys=True).encode()
    key = idempotency_key(body)
    tries: list[dict[str, Any]] = []
    status, error, after = None, "not tried", None
    for i in range(max(attempts, 1)):
        wait = 0.0
        if i:
            wait = min(after if after is not None else base_delay * 2 ** (i - 1), MAX_DELAY_S)
            sleep(wait)
        status, error, after = _post(url, body, key, timeout)
        tries.append({"attempt": i + 1, "status": status, "error": error, "waited_s": wait})
        if error is None or (status is not None and status not in RETRY_STATUS):
            break
    return {"url": redact_url(url), "idempotency_key": key, "delivered": error is None, "status": status,
            "error": error, "attempts": tries}
