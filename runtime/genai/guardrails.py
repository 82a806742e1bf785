"""Guardrails: the input plan (pii, deny, allow, length) checked on a call's text variables,
all guards at once in a thread pool, and the output plan (json_schema, deny, pii, and tool
calls against the allow-list with argument schemas and a step limit).

A hit is `{"guard", "action", "detail"}`; `detail` names what matched and where, never the
matched text. PII in free text (emails, card numbers that pass Luhn, IBANs that pass mod-97,
phone numbers) is masked through the one masker (runtime/masking.py, with the deployment's
key): a span becomes `[email sha256:...]` when the masker hashes, `[email]` otherwise.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from aiops.runtime.masking import Masker
from aiops.runtime.regex_safety import compile_safe, schema_patterns

INPUT_GUARDS = ("pii", "deny", "allow", "length")
OUTPUT_GUARDS = ("json_schema", "deny", "pii")
PII_ACTIONS = ("mask", "block")
PII_KINDS = ("email", "iban", "card", "phone")
_PATTERNS = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
    "card": re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])"),
    "phone": re.compile(r"(?<![\w+])(?<!\d[ ().-])(?<!\d[ ().-]{2})\+?\d(?:[ ().-]{0,2}\d){7,14}(?!\w|[ ().-]{1,2}\d)"),
}
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aiops-guard")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    n = "".join(str(int(ch, 36)) for ch in s[4:] + s[:4])
    return int(n) % 97 == 1


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the PII spans of `text`, without overlaps, in order."""
    spans: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    for kind in PII_KINDS:
        for m in _PATTERNS[kind].finditer(text):
            s, e = m.span()
            if any(s < b and a < e for a, b in taken):
                continue
            val = m.group()
            if kind == "card" and not _luhn("".join(ch for ch in val if ch.isdigit())):
                continue
            if kind == "iban" and not _iban_ok(val):
                continue
            if kind == "phone" and not 8 <= sum(ch.isdigit() for ch in val) <= 15:
                continue
            spans.append((s, e, kind))
            taken.append((s, e))
    return sorted(spans)


class SpanMasker:
    """Masks PII spans in free text with the one masker's key and method (hash when the
    deployment's masker has a key, else redact)."""

    def __init__(self, masker: Masker):
        hashed = bool(masker.secret)
        self._m = Masker({k: "hash" if hashed else "redact" for k in PII_KINDS}, masker.secret or None,
                         {k: ("str", ()) for k in PII_KINDS}, masker.key_id)
        self.hashed = hashed

    def span(self, kind: str, value: str) -> str:
        return f"[{kind} {self._m.mask(kind, value)}]" if self.hashed else f"[{kind}]"

    def mask(self, text: str) -> tuple[str, dict[str, int]]:
        """(text with every PII span masked, count per kind)."""
        spans = find_pii(text)
        if not spans:
            return text, {}
        out, at, counts = [], 0, {}
        for s, e, kind in spans:
            out += [text[at:s], self.span(kind, text[s:e])]
            at = e
            counts[kind] = counts.get(kind, 0) + 1
        out.append(text[at:])
        return "".join(out), counts


@dataclass
class GuardResult:
    ok: bool
    hits: list[dict[str, Any]] = field(default_factory=list)
    text: Any = None  # input: the variables (PII masked when a pii guard masks); output: the text
    value: Any = None  # output: the parsed JSON (format json) or the text
    json_valid: bool | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def blocked(self) -> list[dict[str, Any]]:
        return [h for h in self.hits if h["action"] == "block"]


def _compile(patterns: Sequence[str], where: str) -> list[re.Pattern]:
    """The guard's patterns; UnsafeRegex (a ValueError) when one does not compile or can backtrack
    catastrophically (runtime/regex_safety.py: the artefact is refused, as `aiops check` would)."""
    return [compile_safe(p, f"{where}.patterns[{i}]") for i, p in enumerate(patterns)]


def _only(texts: dict[str, str], only: Sequence[str] | None) -> dict[str, str]:
    """The texts a guard applies to: its `variables` when it names some, else every text variable."""
    return texts if not only else {k: v for k, v in texts.items() if k in only}


def _counts(c: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(c.items()))


# ------------------------------------------------------------------------- input
class InputGuards:
    """The input plan of one prompt. `check(variables)` runs every guard concurrently on the
    text variables and combines the verdicts (any block refuses)."""

    def __init__(self, plan: Sequence[Mapping[str, Any]], masker: Masker, text_vars: Sequence[str] | None = None):
        self.plan = [dict(g) for g in plan]
        self.spans = SpanMasker(masker)
        self.text_vars = None if text_vars is None else tuple(text_vars)
        self._checks: list[Callable[[dict[str, str]], tuple[list[dict[str, Any]], dict[str, str] | None]]] = []
        for i, g in enumerate(self.plan):
            kind, where = g.get("type"), f"guardrails.input[{i}]"
            if kind == "pii":
                action = g.get("action", "mask")
                if action not in PII_ACTIONS:
                    raise ValueError(f"{where}.action must be one of {', '.join(PII_ACTIONS)}. Got {action!r} instead.")
                self._checks.append(self._pii(action))
            elif kind == "deny":
                self._checks.append(self._deny(_compile(g.get("patterns") or [], where), g.get("variables")))
            elif kind == "allow":
                self._checks.append(self._allow(_compile(g.get("patterns") or [], where), g.get("variables")))
            elif kind == "length":
                self._checks.append(self._length(int(g["max_chars"]), g.get("variables")))
            else:
                raise ValueError(f"{where}.type must be one of {', '.join(INPUT_GUARDS)}. Got {kind!r} instead.")

    def _texts(self, variables: Mapping[str, Any]) -> dict[str, str]:
        names = self.text_vars if self.text_vars is not None else list(variables)
        return {k: variables[k] for k in names if isinstance(variables.get(k), str)}

    def _pii(self, action: str):
        def run(texts: dict[str, str]):
            hits, masked = [], {}
            for k, v in texts.items():
                new, counts = self.spans.mask(v)
                if counts:
                    hits.append({"guard": "pii", "action": action, "detail": f"{_counts(counts)} in '{k}'"})
                    masked[k] = new
            return hits, (masked if action == "mask" else None)
        return run

    @staticmethod
    def _deny(patterns: list[re.Pattern], only):
        def run(texts: dict[str, str]):
            texts = _only(texts, only)
            return [{"guard": "deny", "action": "block", "detail": f"pattern {i} matched '{k}'"}
                    for k, v in texts.items() for i, p in enumerate(patterns) if p.search(v)][:10], None
        return run

    @staticmethod
    def _allow(patterns: list[re.Pattern], only):
        def run(texts: dict[str, str]):
            texts = _only(texts, only)
            return [{"guard": "allow", "action": "block", "detail": f"'{k}' matches none of the allowed patterns"}
                    for k, v in texts.items() if not any(p.search(v) for p in patterns)], None
        return run

    @staticmethod
    def _length(max_chars: int, only):
        def run(texts: dict[str, str]):
            texts = _only(texts, only)
            return [{"guard": "length", "action": "block", "detail": f"'{k}' has {len(v)} characters, over {max_chars}"}
                    for k, v in texts.items() if len(v) > max_chars], None
        return run

    def check(self, variables: Mapping[str, Any]) -> GuardResult:
        """Every guard at once (a thread each); the variables come back with PII masked when
        a pii guard masks. Guards never see each other's changes: deny and allow read the
        text as sent."""
        out = dict(variables)
        if not self._checks:
            return GuardResult(True, [], out)
        texts = self._texts(variables)
        futures = [_POOL.submit(c, texts) for c in self._checks]
        hits: list[dict[str, Any]] = []
        for f in futures:
            h, masked = f.result()
            hits += h
            if masked:
                out.update(masked)
        ok = not any(h["action"] == "block" for h in hits)
        return GuardResult(ok, hits, out)


# ------------------------------------------------------------------------- output
class OutputGuards:
    """The output plan of one prompt: parse (format json: prefill + completion, the leading
    JSON value), then the plan's guards, and tool calls against the allow-list."""

    def __init__(self, plan: Sequence[Mapping[str, Any]], output: Mapping[str, Any], masker: Masker,
                 tools: Mapping[str, Any] | None = None):
        self.plan = [dict(g) for g in plan]
        self.format = output.get("format", "text")
        self.prefill = output.get("prefill") or ""
        self.schema = output.get("schema")
        self.spans = SpanMasker(masker)
        self.tools = dict(tools["allow"]) if tools else None
        self.max_steps = int(tools.get("max_steps", 1)) if tools else 0
        self._validator = _validator(self.schema, "output.schema") if self.schema is not None else None
        self._tool_validators = {n: _validator(s, f"tools.allow.{n}.schema") for n, s in (self.tools or {}).items()
                                 if s is not None}
        self._deny: dict[int, list[re.Pattern]] = {}  # plan index -> patterns
        for i, g in enumerate(self.plan):
            kind, where = g.get("type"), f"guardrails.output[{i}]"
            if kind == "deny":
                self._deny[i] = _compile(g.get("patterns") or [], where)
            elif kind == "pii":
                if g.get("action", "block") not in PII_ACTIONS:
                    raise ValueError(f"{where}.action must be one of {', '.join(PII_ACTIONS)}. "
                                     f"Got {g.get('action')!r} instead.")
            elif kind == "json_schema":
                if self._validator is None:
                    raise ValueError(f"{where}: json_schema needs output.schema")
            else:
                raise ValueError(f"{where}.type must be one of {', '.join(OUTPUT_GUARDS)}. Got {kind!r} instead.")

    def check(self, completion: str, native_tool_calls: Sequence[Mapping[str, Any]] = ()) -> GuardResult:
        text = self.prefill + completion
        hits: list[dict[str, Any]] = []
        value: Any = text
        json_valid: bool | None = None
        if self.format == "json":
            try:
                value, end = json.JSONDecoder().raw_decode(text.lstrip())
                json_valid = True
            except ValueError:
                value, json_valid = None, False
        for gi, g in enumerate(self.plan):
            kind = g["type"]
            if kind == "json_schema":
                if not json_valid:
                    hits.append({"guard": "json_schema", "action": "block", "detail": "the output is not valid JSON"})
                else:
                    errs = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
                    if errs:
                        e = errs[0]
                        at = "/".join(str(p) for p in e.absolute_path) or "(the root)"
                        hits.append({"guard": "json_schema", "action": "block",
                                     "detail": f"{len(errs)} schema error(s); first at {at}: the '{e.validator}' "
                                               "rule fails"})
            elif kind == "deny":
                for i, p in enumerate(self._deny[gi]):
                    if p.search(text):
                        hits.append({"guard": "deny", "action": "block", "detail": f"pattern {i} matched the output"})
            elif kind == "pii":
                action = g.get("action", "block")
                masked, counts = self.spans.mask(text)
                if counts:
                    hits.append({"guard": "pii", "action": action, "detail": f"{_counts(counts)} in the output"})
                    if action == "mask":
                        text = masked
                        value = _mask_strings(value, self.spans) if json_valid else text
        calls = list(native_tool_calls)
        if json_valid and isinstance(value, dict) and "tool_calls" in value and self.tools is not None:
            tc = value["tool_calls"]
            calls += tc if isinstance(tc, list) else [tc]
        hits += self._tool_hits(calls)
        ok = not any(h["action"] == "block" for h in hits)
        return GuardResult(ok, hits, text, value, json_valid, [dict(c) for c in calls if isinstance(c, dict)])

    def _tool_hits(self, calls: list[Any]) -> list[dict[str, Any]]:
        if not calls:
            return []
        if self.tools is None:
            return [{"guard": "tools", "action": "block", "detail": f"the model requested {len(calls)} tool call(s); "
                     "this prompt allows no tools"}]
        hits = []
        if len(calls) > self.max_steps:
            hits.append({"guard": "tools", "action": "block", "detail": f"{len(calls)} tool calls, over max_steps "
                         f"{self.max_steps}"})
        allowed = ", ".join(sorted(self.tools)) or "none"
        for i, c in enumerate(calls):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                hits.append({"guard": "tools", "action": "block", "detail": f"tool call {i} has no name"})
                continue
            name = c["name"]
            if name not in self.tools:
                shown = name[:40] if name.isprintable() else "(unprintable)"
                hits.append({"guard": "tools", "action": "block", "detail": f"tool call {i}: '{shown}' is not in the "
                             f"allow-list ({allowed})"})
                continue
            args = c.get("arguments", {})
            if not isinstance(args, dict):
                hits.append({"guard": "tools", "action": "block", "detail": f"tool call {i} ('{name}'): the arguments "
                             "are not a JSON object"})
                continue
            v = self._tool_validators.get(name)
            errs = sorted(v.iter_errors(args), key=lambda e: list(e.absolute_path)) if v is not None else []
            if errs:
                e = errs[0]
                at = "/".join(str(p) for p in e.absolute_path) or "(the root)"
                hits.append({"guard": "tools", "action": "block", "detail": f"tool call {i} ('{name}'): the arguments "
                             f"break its schema at {at} (the '{e.validator}' rule)"})
        return hits


def _mask_strings(value: Any, spans: SpanMasker) -> Any:
    if isinstance(value, str):
        return spans.mask(value)[0]
    if isinstance(value, list):
        return [_mask_strings(v, spans) for v in value]
    if isinstance(value, dict):
        return {k: _mask_strings(v, spans) for k, v in value.items()}
    return value


def _validator(schema: Any, what: str):
    """A JSON Schema validator; UnsafeRegex when one of its `pattern`s can backtrack catastrophically
    (jsonschema runs them with re on the model's output)."""
    from jsonschema.validators import validator_for

    for where, pattern in schema_patterns(schema):  # first: check_schema compiles them
        compile_safe(pattern, f"{what} at {where[1:]}")
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
