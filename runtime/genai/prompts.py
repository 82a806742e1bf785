"""A served prompt: prompt.json and its template loaded from verified artefacts, and one call
taken through every control in order (docs/genai.md#serving):

    variables (the one contract core) -> input guardrails (concurrently) -> render (sandbox)
    -> provider (timeout, retries, budget) -> output guardrails (schema, deny, PII, tools)

`Prompt.run` never raises for what a caller or a model can cause: it returns a `Call` that
says what happened (answered, refused and why, or failed with a provider error code), which
the server turns into a status and an audit entry.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aiops.runtime.contract import Contract
from aiops.runtime.genai.guardrails import InputGuards, OutputGuards
from aiops.runtime.genai.logentry import pii_method
from aiops.runtime.genai.provider import Generation, Provider, ProviderError
from aiops.runtime.genai.render import PromptError, compile_template, render
from aiops.runtime.genai.variables import pii_variables, text_variables, validate
from aiops.runtime.masking import Masker, masker_for

# the status of each way a call can end (the body is {"error": {"code", "message", ...}})
STATUS = {"contract_violation": 422, "guardrail_blocked": 422, "template_error": 500, "provider_unset": 503,
          "provider_timeout": 504, "provider_error": 502, "budget_exceeded": 429}


@dataclass
class Call:
    """What one call did. `error` is None when it was answered."""

    variables: dict[str, Any]  # as received (only the prompt's own variables)
    error: str | None = None
    message: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)  # contract errors
    input_hits: list[dict[str, Any]] = field(default_factory=list)
    output_hits: list[dict[str, Any]] = field(default_factory=list)
    prompt_chars: int = 0
    generation: Generation | None = None
    output: Any = None  # the text, or the parsed JSON (format json), after output guardrails
    output_text: str = ""
    json_valid: bool | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    provider_seconds: float = 0.0  # time spent waiting for the provider

    @property
    def refused(self) -> bool:
        return self.error in ("contract_violation", "guardrail_blocked", "budget_exceeded")


class Prompt:
    """One prompt of a verified artefact folder (prompts/<name>/prompt.json)."""

    def __init__(self, root: Path, name: str, security: Mapping[str, Any], env: Mapping[str, str]):
        folder = root / "prompts" / name
        self.spec = json.loads((folder / "prompt.json").read_text(encoding="utf-8"))
        self.name, self.version = name, self.spec["version"]
        self.template_text = (folder / self.spec.get("template", "template.j2")).read_text(encoding="utf-8")
        self.template = compile_template(self.template_text)
        self.contract = Contract.from_dict(self.spec["variables"])
        self.pii = sorted(set(self.spec.get("pii") or []) | set(pii_variables(self.contract)))
        self.masker: Masker = masker_for(security, self.contract, env)
        self.provider = Provider(self.spec["provider"], env)
        self.model = self.provider.model
        self.operation = "chat" if self.provider.api == "chat" else "text_completion"
        guards = self.spec.get("guardrails") or {}
        self.output_spec = self.spec.get("output") or {"format": "text"}
        self.input_guards = InputGuards(guards.get("input") or [], self.masker, text_variables(self.contract))
        self.output_guards = OutputGuards(guards.get("output") or [], self.output_spec, self.masker,
                                          self.spec.get("tools"))

    @property
    def masking(self) -> dict[str, str]:
        """The method the log applies to each pii variable (redact when the policy names none);
        a method set on another variable is not applied (aiops check: W804), so it is not listed."""
        return {k: pii_method(self.masker, k) for k in self.pii}

    def known(self, variables: Any) -> dict[str, Any]:
        """The prompt's own variables of a request body (others are named in the 422, never logged)."""
        if not isinstance(variables, dict):
            return {}
        names = {c.name for c in self.contract.columns}
        return {k: v for k, v in variables.items() if k in names}

    def prepare(self, variables: Any, call: Call) -> str | None:
        """Contract, input guardrails and rendering: the prompt text, or None with `call` refused."""
        clean, errors = validate(self.contract, variables)
        if errors:
            call.error, call.details = "contract_violation", errors
            call.message = f"the variables break the prompt's contract ({len(errors)} error(s))"
            return None
        guarded = self.input_guards.check(clean)
        call.input_hits = guarded.hits
        if not guarded.ok:
            call.error = "guardrail_blocked"
            call.message = "the input was blocked by the guardrails: " + "; ".join(
                f"{h['guard']}: {h['detail']}" for h in guarded.blocked)
            return None
        try:
            text = render(self.template, guarded.text)
        except PromptError as exc:
            call.error, call.message = "template_error", str(exc)
            return None
        call.prompt_chars = len(text)
        return text

    def generate(self, text: str, call: Call, deadline: float | None = None) -> None:
        """Provider and output guardrails (blocking: the server runs it in a thread).
        `deadline` (time.monotonic()): the request's; the provider gives up by then."""
        t0 = time.perf_counter()
        try:
            gen = self.provider.complete(text, deadline)
        except ProviderError as exc:
            call.error, call.message = exc.code, exc.message
            return
        finally:
            call.provider_seconds = time.perf_counter() - t0
        self.finish(gen, call)

    def finish(self, gen: Generation, call: Call) -> None:
        call.generation = gen
        out = self.output_guards.check(gen.text, gen.tool_calls)
        call.output_hits, call.json_valid, call.tool_calls = out.hits, out.json_valid, out.tool_calls
        call.output_text = out.text
        call.output = out.value
        if not out.ok:
            call.error = "guardrail_blocked"
            call.message = "the output was blocked by the guardrails: " + "; ".join(
                f"{h['guard']}: {h['detail']}" for h in out.blocked)

    def run(self, variables: Any) -> Call:
        """The whole call, blocking (evaluation and tests; the server splits it)."""
        t0 = time.perf_counter()
        call = Call(self.known(variables))
        text = self.prepare(variables, call)
        if text is not None:
            self.generate(text, call)
        call.seconds = time.perf_counter() - t0
        return call
