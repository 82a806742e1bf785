"""Prometheus metrics of the prompt server, named after the OpenTelemetry GenAI semantic
conventions (docs/genai.md#metrics): the OTel instrument `gen_ai.client.operation.duration`
(seconds) becomes `gen_ai_client_operation_duration_seconds`, `gen_ai.client.token.usage`
becomes `gen_ai_client_token_usage` with `gen_ai_token_type` = input | output, and the
attributes `gen_ai.request.model`, `gen_ai.operation.name`, `gen_ai.system`, `error.type`
become the labels `gen_ai_request_model`, `gen_ai_operation_name`, `gen_ai_system`,
`error_type`. The buckets are the ones the conventions advise.

aiops's own counters sit next to them: requests by route and status, guardrail hits, refusals.
Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `aiops serve --workers N`) as for tabular.
"""
from __future__ import annotations

import os
from typing import Any

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GEN_AI = ("gen_ai_operation_name", "gen_ai_system", "gen_ai_request_model")


class GenAIMetrics:
    def __init__(self, name: str, version: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess else self.registry
        self.duration = Histogram("gen_ai_client_operation_duration_seconds",
                                  "GenAI operation duration (OTel gen_ai.client.operation.duration)",
                                  [*GEN_AI, "error_type"], buckets=DURATION_BUCKETS, registry=reg)
        self.tokens = Histogram("gen_ai_client_token_usage",
                                "Tokens used per operation (OTel gen_ai.client.token.usage)",
                                [*GEN_AI, "gen_ai_token_type"], buckets=TOKEN_BUCKETS, registry=reg)
        self.requests = Counter("aiops_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=reg)
        self.calls = Counter("aiops_prompt_calls", "Prompt calls by prompt and outcome (ok or the error code)",
                             ["prompt", "outcome"], registry=reg)
        self.hits = Counter("aiops_guardrail_hits", "Guardrail hits by prompt, stage, guard and action",
                            ["prompt", "stage", "guard", "action"], registry=reg)
        kw: dict[str, Any] = {"multiprocess_mode": "max"} if self.multiprocess else {}
        info = Gauge("aiops_model_info", "The artefact being served", ["model", "version"], registry=reg, **kw)
        info.labels(name, version).set(1)

    def request(self, route: str, method: str, status: int) -> None:
        self.requests.labels(route, method, str(status)).inc()

    def call(self, prompt: str, operation: str, system: str, model: str, call: Any) -> None:
        """One prompt call: its outcome, guardrail hits, and (when the provider was called) the
        GenAI duration and token usage."""
        self.calls.labels(prompt, call.error or "ok").inc()
        for stage, hits in (("input", call.input_hits), ("output", call.output_hits)):
            for h in hits:
                self.hits.labels(prompt, stage, h["guard"], h["action"]).inc()
        gen = call.generation
        provider_error = call.error if call.error in ("provider_timeout", "provider_error") else None
        if gen is not None or provider_error:
            labels = (operation, system, model)
            seconds = gen.latency_ms / 1000.0 if gen is not None else call.provider_seconds
            self.duration.labels(*labels, provider_error or "").observe(seconds)
            if gen is not None:
                self.tokens.labels(*labels, "input").observe(gen.input_tokens)
                self.tokens.labels(*labels, "output").observe(gen.output_tokens)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            reg = CollectorRegistry()
            MultiProcessCollector(reg)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
