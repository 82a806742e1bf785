"""The audit entry of a prompt call, written to the same hash-chained log as predictions
(runtime/audit/chain.py: HMAC chain, segments, signed checkpoints, sealed entries when
encryption at rest is on), and the reader of those entries.

Entry (docs/genai.md#audit-entries):

    {"error", "guardrails": {"input", "output"}, "input_chars", "input_tokens", "json_valid",
     "kind": "prompt", "latency_ms", "model", "output", "output_chars", "output_tokens",
     "prediction_id", "prompt", "prompt_version", "refused", "variables", "prev_mac", "seq", "ts", "mac"}

What is masked before the entry exists (`build_entry`): PII variables by the one masker's
column method; PII spans (emails, cards, IBANs, phones) in every other text variable and in
the output; and any PII variable's value, or any of its words of MIN_ECHO_WORD characters or
more, that the output or another variable repeats.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from aiops.runtime.audit.chain import ChainError, ChainWriter, iso_ts, read_entries
from aiops.runtime.audit.keys import AuditSettings
from aiops.runtime.genai.guardrails import SpanMasker
from aiops.runtime.masking import REDACTED, Masker
from aiops.runtime.policy import Cipher

KIND = "prompt"
MIN_ECHO_CHARS = 4  # a PII value this long or longer is masked where the output repeats it,
MIN_ECHO_WORD = 8  # and so is each of its words this long or longer (a name, an id, an address)
_WORD = re.compile(r"[^\s,;:()\[\]{}\"']+")
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


def _mask_text(text: str, spans: SpanMasker, echoes: Sequence[tuple[str, str]]) -> str:
    for value, masked in echoes:
        if value in text:
            text = text.replace(value, str(masked))
    return spans.mask(text)[0]


def _mask_value(value: Any, spans: SpanMasker, echoes: Sequence[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        return _mask_text(value, spans, echoes)
    if isinstance(value, list):
        return [_mask_value(v, spans, echoes) for v in value]
    if isinstance(value, dict):
        return {k: _mask_value(v, spans, echoes) for k, v in value.items()}
    return value


def pii_method(masker: Masker, name: str) -> str:
    """The method the log applies to a pii variable: the policy's (masker_for gives every pii
    variable of the contract one), redact for any other name listed as pii."""
    return masker.methods.get(name, "redact")


def _mask_pii(masker: Masker, name: str, value: Any) -> Any:
    return masker.mask(name, value) if name in masker.methods else REDACTED


def build_entry(*, masker: Masker, pii: Sequence[str], prediction_id: str, prompt: str, prompt_version: str,
                model: str, variables: Mapping[str, Any], output: Any, input_chars: int, output_chars: int,
                input_tokens: int | None, output_tokens: int | None, latency_ms: float | None,
                guardrails: Mapping[str, Any], refused: bool, json_valid: bool | None,
                error: str | None) -> dict[str, Any]:
    """The entry, every text already masked (see the module docstring)."""
    spans = SpanMasker(masker)
    raw = {k: v for k, v in variables.items() if isinstance(k, str)}
    echoes = []
    for k in pii:
        if raw.get(k) is None or len(str(raw[k])) < MIN_ECHO_CHARS:
            continue
        value = str(raw[k])
        masked = str(_mask_pii(masker, k, raw[k]))
        echoes.append((value, masked))
        echoes += [(w, REDACTED) for w in set(_WORD.findall(value)) if len(w) >= MIN_ECHO_WORD]
    echoes.sort(key=lambda e: -len(e[0]))  # the whole value first, then its long words
    masked_vars: dict[str, Any] = {}
    for k, v in raw.items():
        if k in pii:
            masked_vars[k] = _mask_pii(masker, k, v)
        else:
            masked_vars[k] = _mask_value(v, spans, echoes)
    return {"kind": KIND, "prediction_id": prediction_id, "prompt": prompt, "prompt_version": prompt_version,
            "model": model, "variables": masked_vars, "input_chars": input_chars,
            "output": _mask_value(output, spans, echoes), "output_chars": output_chars,
            "input_tokens": input_tokens, "output_tokens": output_tokens,
            "latency_ms": None if latency_ms is None else round(float(latency_ms), 3),
            "guardrails": {"input": list(guardrails.get("input", [])), "output": list(guardrails.get("output", []))},
            "refused": bool(refused), "json_valid": json_valid, "error": error}


def entry_parts(entry: Mapping[str, Any], ts: float, encrypt: bool) -> tuple[str, str, tuple[str, bytes, str] | None]:
    """The (head, tail, sealed) triple ChainWriter.append takes (it adds prev_mac and seq). A sealed
    entry keeps `"kind": "prompt"` in clear, so `aiops audit verify` counts prompt calls without the data key."""
    tail = ',"ts":"' + iso_ts(ts) + '"}'
    plain = _dumps(dict(entry))[:-1]
    if encrypt:
        return "", tail, (str(entry["prediction_id"]), (plain + tail).encode(), KIND)
    return plain + ',"prev_mac":"', tail, None


class PromptLog:
    """Appends prompt entries to the log folder, one at a time under the chain's file lock
    (the workers of one server share the chain). `append` returns once the entry is written;
    an OSError or ChainError propagates, and the server refuses the call when the audit log
    is required (fail closed)."""

    def __init__(self, log_dir: str | Path, cipher: Cipher | None, audit: AuditSettings, clock=time.time):
        self.dir = Path(log_dir)
        self.cipher, self.audit, self.clock = cipher, audit, clock
        self._lock = threading.Lock()
        self._chain: ChainWriter | None = None
        self.error: str | None = None
        self._tried = 0.0

    def start(self) -> None:
        self._chain = ChainWriter(self.dir, self.audit.log_key, self.cipher.key if self.cipher else None,
                                  self.audit.signing_seed, self.audit.retention_days, clock=self.clock)
        self.append_parts([])  # repair a torn line, or fail now if the log cannot be written

    @property
    def path(self) -> Path:
        return self.dir / "predictions.jsonl"

    def append(self, entry: Mapping[str, Any]) -> None:
        self.append_parts([entry_parts(entry, self.clock(), self.cipher is not None)])

    def append_parts(self, parts: list) -> None:
        with self._lock:
            if self._chain is None:
                raise OSError("the prompt log is not started")
            try:
                self._chain.append(parts)
            except (OSError, ChainError, ValueError) as exc:  # recorded for /readyz, then re-raised
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            self.error = None

    RETRY_S = 0.5

    def writable(self) -> bool:
        """True when the last append succeeded; after a failure, tries an empty append (a repair,
        a new segment after the damaged log was moved aside) at most every RETRY_S seconds."""
        if self.error is None:
            return True
        now = time.monotonic()
        if now - self._tried >= self.RETRY_S:
            self._tried = now
            try:
                self.append_parts([])
            except (OSError, ChainError, ValueError):
                return False
        return self.error is None

    def close(self) -> None:
        with self._lock:
            if self._chain is not None:
                try:
                    self._chain.close()
                finally:
                    self._chain = None


def iter_prompt_entries(log_dir: str | Path, key: Any = None, log_key: bytes | None = None,
                        verify: bool = True, trusted: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The prompt entries of a log folder, oldest first, decrypted with `key` (the data key or
    a Cipher) when sealed. With `verify` (the default) the chain is verified first
    (runtime/audit/verify.py) and a broken log raises ValueError naming where it breaks."""
    if verify:
        from aiops.runtime.audit.verify import verify_log

        rep = verify_log(log_dir, log_key, trusted)
        if not rep.ok:
            raise ValueError(f"the log in {log_dir} does not verify: {rep.where}: {rep.reason}")
    for e in read_entries(log_dir, key):
        if e.get("kind") == KIND:
            yield e
