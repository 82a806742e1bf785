"""The HTTP server of prompt artefacts (serving.json kind: prompt): `POST /v1/prompts/<name>`,
a raw ASGI app like the tabular one (runtime/serve/server.py), whose body reading, JSON parsing,
error answers, API keys and roles, connection limits and read deadlines (uvicorn protocol in
runtime/serve/limits.py) it reuses; `aiops serve` dispatches here on serving.json's kind.

A call: authorize (`generate`) -> refuse while a required audit log cannot be written -> read
the body -> variables, input guardrails, render (a worker thread) -> the provider in a bounded
thread pool (serving.max_concurrency), within serving.timeout_s -> output guardrails -> the
audit entry, written BEFORE the answer (with the audit log enabled an entry that cannot be
written withholds the answer: 503) -> metrics -> the answer. docs/genai.md#serving.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiops.runtime.artefacts import ArtefactError, verify
from aiops.runtime.audit.chain import ChainError
from aiops.runtime.audit.keys import load_audit
from aiops.runtime.genai.logentry import PromptLog, build_entry
from aiops.runtime.genai.metrics import GenAIMetrics
from aiops.runtime.genai.prompts import STATUS, Call, Prompt
from aiops.runtime.policy import PolicyError, load_access, load_cipher
from aiops.runtime.serve.jobs import IdSource
from aiops.runtime.serve.limits import Limits
from aiops.runtime.serve.server import (ENV_ARTEFACTS, ENV_INSECURE_DEV, ENV_LOG_DIR, _content_info,
                                       _Disconnected, _encode, _key, _parse, _read_body, _Reject, _respond,
                                       default_log_dir)

PERMISSION = "generate"
PROMPT_ROUTE = "/v1/prompts/{name}"
ROUTES: dict[str, dict[str, tuple[str | None, str]]] = {
    "/v1/metadata": {"GET": ("metadata", "metadata")},
    "/v1/audit/verify": {"GET": ("audit", "audit")},
    "/healthz": {"GET": (None, "healthz")},
    "/readyz": {"GET": (None, "readyz")},
    "/metrics": {"GET": ("metrics", "metrics")},
    "/openapi.json": {"GET": (None, "openapi")},
}


class PromptService:
    """Everything a worker loads once: the verified artefacts, each prompt (contract, guardrails,
    template, provider), the policy, the audit log, metrics and the documents."""

    def __init__(self, artefact_dir: str | Path, log_dir: str | Path | None = None,
                 env: dict[str, str] | None = None, insecure_dev: bool = False):
        env = dict(os.environ) if env is None else env
        art = verify(artefact_dir, action="serve")  # ArtefactError: tampered, untrusted or not blessed
        if art.manifest.get("kind") != "prompt":
            raise PolicyError(f"'{artefact_dir}' holds a {art.manifest.get('kind', 'tabular')} model, not prompts")
        self.art = art
        serving = art.json("serving.json")
        security = serving.get("security") or {}
        limits = serving.get("limits") or {}
        self.limits = Limits.from_serving(limits)
        self.max_body = int(limits.get("max_body_bytes") or 1 << 20)
        self.max_concurrency = int(limits.get("max_concurrency") or 8)
        self.risk_tier = security.get("risk_tier") or serving.get("risk_tier")
        self.access = load_access(security, env, risk_tier=self.risk_tier, insecure_dev=insecure_dev)
        self.cipher = load_cipher(security, env)
        self.audit = load_audit(security, env, insecure_dev=insecure_dev)
        self.log_dir = Path(log_dir) if log_dir else default_log_dir(art.name)
        try:
            self.prompts = {n: Prompt(art.root, n, security, env) for n in serving.get("prompts") or []}
        except ValueError as exc:  # a guardrail plan this runtime cannot apply: refuse to serve (fail closed)
            raise PolicyError(f"cannot serve '{artefact_dir}': {exc}") from None
        unset = [f"prompt '{n}': {p.provider.problem()}" for n, p in self.prompts.items() if p.provider.problem()]
        if unset:
            raise PolicyError("cannot serve the prompts: their provider cannot be called\n  - " + "\n  - ".join(unset))
        self.log = PromptLog(self.log_dir, self.cipher, self.audit)
        self.metrics = GenAIMetrics(art.name, art.version)
        self.ids = IdSource()
        self.pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="aiops-llm")
        self.model = {"name": art.name, "version": art.version, "manifest_sha256": art.manifest_sha256}
        self.openapi = _encode(openapi(art.name, art.version, self.prompts, self.max_body)).encode()
        self.metadata = _encode(self._metadata(security, limits)).encode()

    def _metadata(self, security: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
        art = self.art
        blessing = art.json("evidence/blessing.json") if (art.root / "evidence/blessing.json").is_file() else {}
        prompts = {}
        for n, p in self.prompts.items():
            pr = p.provider
            prompts[n] = {
                "version": p.version, "route": f"/v1/prompts/{n}",
                "variables": [{"name": c.name, "dtype": c.dtype, "required": c.required, "nullable": c.nullable,
                               "pii": c.name in p.pii} for c in p.contract.columns],
                "output": {"format": p.output_spec.get("format", "text"), "prefill": p.output_spec.get("prefill"),
                           "schema": p.output_spec.get("schema") is not None},
                "tools": ({"allow": sorted((p.spec.get("tools") or {}).get("allow") or {}),
                           "max_steps": (p.spec.get("tools") or {}).get("max_steps")} if p.spec.get("tools") else None),
                "guardrails": p.spec.get("guardrails") or {},
                "provider": {"base_url_env": pr.base_url_env, "api_key_env": pr.api_key_env, "model": pr.model,
                             "api": pr.api, "parameters": pr.parameters, "timeout_s": pr.timeout_s,
                             "retries": pr.retries, "budget": (p.spec["provider"].get("budget") or {}),
                             "gen_ai_system": pr.system},
                "masking": dict(sorted(p.masking.items())),  # what the log applies, not every policy entry
            }
        return {
            "model": {**self.model, "kind": "prompt", "blessed": art.blessed, "signed": art.trust.signed,
                      "trust": art.trust.to_dict(), "spec": art.manifest.get("spec", {}),
                      "failed_gates": blessing.get("failed", []), "metrics": blessing.get("metrics")},
            "prompts": prompts,
            "limits": {"max_body_bytes": self.max_body, "max_concurrency": self.max_concurrency,
                       **self.limits.as_dict()},
            "security": {
                "auth": "open" if self.access.open else "api_key", "keys": self.access.source,
                "permission": PERMISSION, "risk_tier": self.risk_tier, "keys_required": self.access.required,
                "insecure_dev": self.access.insecure_dev,
                "warning": (("INSECURE DEV MODE (--insecure-dev): " if self.access.insecure_dev else "") +
                            "no API keys are configured: anyone who can reach this server may use every route"
                            if self.access.open else None),
                "roles": {r: sorted(v) for r, v in sorted(self.access.roles.items())},
                "encryption_at_rest": self.cipher is not None, "audit_log": security.get("audit_log"),
            },
            "prompt_log": {"file": self.log.path.name, "format": "docs/genai.md#audit-entries",
                           "chain": "hmac-sha256" if self.audit.log_key else "unkeyed",
                           "checkpoint_public_key": self.audit.public_key,
                           "retention_days": self.audit.retention_days,
                           "when_unwritable": "refuse" if self.audit.fail_closed else "answer and warn",
                           "encrypted": self.cipher is not None},
        }

    def start(self) -> None:
        self.log.start()

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.log.close()


def openapi(name: str, version: str, prompts: dict[str, Prompt], max_body: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document: one path per prompt, its variables' schema from the contract."""
    from aiops.runtime.serve.openapi import column_schema

    err = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}}}}}
    paths: dict[str, Any] = {}
    for n, p in prompts.items():
        cols = p.contract.request_columns
        variables = {"type": "object", "additionalProperties": False,
                     "properties": {c.name: column_schema(c) for c in cols},
                     "required": [c.name for c in cols if c.required]}
        out = p.output_spec.get("schema") if p.output_spec.get("format") == "json" else {"type": "string"}
        answer = {"type": "object", "properties": {
            "prediction_id": {"type": "string"}, "prompt": {"type": "string"}, "prompt_version": {"type": "string"},
            "model": {"type": "string"}, "output": out or {}, "tool_calls": {"type": "array"},
            "guardrails": {"type": "object"}, "usage": {"type": "object", "properties": {
                "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}}}}}
        paths[f"/v1/prompts/{n}"] = {"post": {
            "summary": (p.spec.get("description") or f"the prompt {n}"), "operationId": f"prompt_{n}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["variables"], "additionalProperties": False,
                "properties": {"variables": variables}}}}, "description": f"at most {max_body} bytes"},
            "responses": {"200": {"description": "a guarded generation",
                                  "content": {"application/json": {"schema": answer}}},
                          **{str(s): {"description": code, "content": {"application/json": {"schema": err}}}
                             for code, s in sorted(STATUS.items())}}}}
    return {"openapi": "3.1.0", "info": {"title": f"{name} prompts", "version": version}, "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


class PromptApp:
    """The ASGI application of one worker process."""

    def __init__(self, service: PromptService):
        self.s = service
        self.started = False

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    try:
                        self.startup()
                    except (OSError, ChainError, PolicyError) as exc:
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def startup(self) -> None:
        if not self.started:
            self.s.start()
            self.started = True

    def shutdown(self) -> None:
        if self.started:
            self.s.stop()
            self.started = False

    async def _http(self, scope: dict[str, Any], receive, send) -> None:
        path, method = scope["path"], scope["method"]
        label = path if path in ROUTES else "(unknown)"
        status = 500
        try:
            args: tuple = ()
            methods = ROUTES.get(path)
            if methods is None and path.startswith("/v1/prompts/") and path.count("/") == 3:
                methods, args, label = {"POST": (PERMISSION, "prompt")}, (path[len("/v1/prompts/"):],), PROMPT_ROUTE
            if methods is None:
                raise _Reject(404, "not_found", "no such route; the routes are listed in /openapi.json")
            spec = methods.get(method)
            if spec is None:
                allow = ", ".join(sorted(methods)).encode()
                raise _Reject(405, "method_not_allowed", f"this route accepts {allow.decode()}",
                              headers=[(b"allow", allow)])
            permission, handler = spec
            if permission is not None and self.s.access.keys:
                self._authorize(scope["headers"], permission)
            status = await getattr(self, "_" + handler)(scope, receive, send, *args)
        except _Reject as r:
            status = r.status
            err = {"code": r.code, "message": r.message, **(r.extra or {})}
            await _respond(send, r.status, _encode({"error": err}).encode(), r.headers)
        except _Disconnected:
            status = 499
        except Exception:  # a bug: keep the cause in the server log, tell the client nothing internal
            ref = self.s.ids.take(1)[0]
            print(f"aiops serve: internal error (reference {ref}) on {method} {label}:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            status = 500
            try:
                await _respond(send, 500, _encode({"error": {"code": "internal", "message":
                               f"internal error; reference {ref}"}}).encode())
            except (RuntimeError, OSError):
                pass
        self.s.metrics.request(label, method if len(method) <= 8 else "OTHER", status)

    def _authorize(self, headers, permission: str) -> None:
        key = _key(headers)
        verdict = self.s.access.check(key, permission)
        if verdict == 401:
            raise _Reject(401, "unauthorized", "an API key is required: send 'Authorization: Bearer KEY' or "
                          "'X-API-Key: KEY'" if not key else "unknown API key",
                          headers=[(b"www-authenticate", b'Bearer realm="aiops"')])
        if verdict == 403:
            raise _Reject(403, "forbidden", f"the key's role does not grant '{permission}'")

    # ------------------------------------------------------------------ POST /v1/prompts/<name>
    async def _prompt(self, scope, receive, send, name: str) -> int:
        s = self.s
        t0 = time.perf_counter()
        deadline = t0 + s.limits.timeout_s
        p = s.prompts.get(name)
        if p is None:
            raise _Reject(404, "not_found", f"no prompt of that name; the prompts are: {', '.join(sorted(s.prompts))}")
        if s.audit.fail_closed and s.log.error is not None and not await asyncio.to_thread(s.log.writable):
            raise _Reject(503, "audit_log_unavailable", "the audit log cannot be written, so prompt calls are refused "
                          "until it can (security.audit_log is enabled); see /readyz")
        ctype, length = _content_info(scope["headers"])
        if ctype != "application/json":
            raise _Reject(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")
        obj = _parse(await _read_body(receive, s.max_body, length))
        if type(obj) is not dict or list(obj) != ["variables"] or type(obj["variables"]) is not dict:
            raise _Reject(422, "bad_request", 'expected a JSON object {"variables": {...}}')
        variables = obj["variables"]
        pid = s.ids.take(1)[0]
        call = Call(p.known(variables))
        text = await asyncio.to_thread(p.prepare, variables, call)
        if text is not None:
            work = dataclasses.replace(call)  # the thread's own copy: a late answer cannot change what is logged
            # the provider stops at the request's deadline too: an abandoned call frees its thread then
            until = time.monotonic() + max(0.0, deadline - time.perf_counter())
            fut = asyncio.get_running_loop().run_in_executor(s.pool, p.generate, text, work, until)
            try:
                await asyncio.wait_for(fut, max(0.0, deadline - time.perf_counter()))
                call = work
            except asyncio.TimeoutError:
                call.error = "provider_timeout"
                call.message = (f"no answer from the provider within {s.limits.timeout_s:g} s (serving.timeout_s); "
                                "the call was abandoned")
                call.provider_seconds = time.perf_counter() - t0
        call.seconds = time.perf_counter() - t0
        gen = call.generation
        guardrails = {"input": call.input_hits, "output": call.output_hits}
        entry = build_entry(masker=p.masker, pii=p.pii, prediction_id=pid, prompt=name, prompt_version=p.version,
                            model=(gen.model_id if gen and gen.model_id else p.model), variables=call.variables,
                            output=None if call.error else call.output, input_chars=call.prompt_chars,
                            output_chars=len(call.output_text), input_tokens=gen.input_tokens if gen else None,
                            output_tokens=gen.output_tokens if gen else None,
                            latency_ms=call.seconds * 1000.0, guardrails=guardrails, refused=call.refused,
                            json_valid=call.json_valid, error=call.error)
        try:
            await asyncio.to_thread(s.log.append, entry)
        except (OSError, ChainError, ValueError) as exc:
            print(f"aiops serve: the audit log could not be written ({type(exc).__name__}: {exc})", file=sys.stderr,
                  flush=True)
            if s.audit.fail_closed:
                s.metrics.call(name, p.operation, p.provider.system, p.model, dataclasses.replace(
                    call, error="audit_log_unavailable"))
                raise _Reject(503, "audit_log_unavailable", "the call could not be written to the audit log, so its "
                              "answer is withheld (security.audit_log is enabled); see /readyz",
                              {"prediction_id": pid}) from None
        s.metrics.call(name, p.operation, p.provider.system, p.model, call)
        if call.error:
            extra: dict[str, Any] = {"prediction_id": pid, "guardrails": guardrails}
            if call.details:
                extra["errors"] = call.details
            raise _Reject(STATUS[call.error], call.error, call.message, extra)
        body = {"prediction_id": pid, "prompt": name, "prompt_version": p.version,
                "model": gen.model_id or p.model, "output": call.output, "tool_calls": call.tool_calls,
                "guardrails": guardrails, "usage": {"input_tokens": gen.input_tokens,
                                                    "output_tokens": gen.output_tokens}}
        await _respond(send, 200, _encode(body).encode())
        return 200

    # ------------------------------------------------------------------ the other routes
    async def _metadata(self, scope, receive, send) -> int:
        await _respond(send, 200, self.s.metadata)
        return 200

    async def _openapi(self, scope, receive, send) -> int:
        await _respond(send, 200, self.s.openapi)
        return 200

    async def _healthz(self, scope, receive, send) -> int:
        await _respond(send, 200, b'{"status":"ok"}')
        return 200

    async def _readyz(self, scope, receive, send) -> int:
        problems = []
        if not self.started:
            problems.append("not started")
        elif not await asyncio.to_thread(self.s.log.writable):
            problems.append(f"the audit log cannot be written: {self.s.log.error}")
        status = 503 if problems else 200
        await _respond(send, status, _encode({"status": "not ready" if problems else "ready",
                                              "problems": problems}).encode())
        return status

    async def _metrics(self, scope, receive, send) -> int:
        body, ctype = self.s.metrics.render()
        await _respond(send, 200, body, [(b"content-type", ctype.encode())])
        return 200

    async def _audit(self, scope, receive, send) -> int:
        from aiops.runtime.audit.verify import verify_log

        a = self.s.audit
        rep = await asyncio.to_thread(verify_log, self.s.log_dir, a.log_key, [a.public_key] if a.public_key else None)
        await _respond(send, 200, _encode(rep.as_dict()).encode())
        return 200


def create_app() -> PromptApp:
    """uvicorn factory for --workers N (AIOPS_SERVE_ARTEFACTS and AIOPS_SERVE_LOG_DIR, as for tabular)."""
    art = os.environ.get(ENV_ARTEFACTS)
    if not art:
        raise SystemExit(f"{ENV_ARTEFACTS} is not set: start the server with 'aiops serve ARTEFACT_DIR'")
    return PromptApp(PromptService(art, os.environ.get(ENV_LOG_DIR) or None,
                                   insecure_dev=os.environ.get(ENV_INSECURE_DEV) == "1"))


def run(args, art_dir: Path) -> int:
    """`aiops serve` for a prompt artefact (runtime/serve/cli.py dispatches here)."""
    from aiops.runtime.serve.launch import launch
    from aiops.runtime.serve.limits import fit_open_files

    try:
        service = PromptService(art_dir, args.log_dir, insecure_dev=args.insecure_dev)
    except (ArtefactError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot prepare the log folder: {exc}", file=sys.stderr)
        return 2
    limits, note = fit_open_files(service.limits)
    _banner(service, args, note)
    log_dir = service.log_dir.resolve()
    loaded = [service]
    del service  # launch takes it: with N workers, each loads its own and this process keeps none
    return launch(args, limits, loaded, PromptApp, "aiops.runtime.genai.server:create_app", art_dir, log_dir,
                  release=lambda s: s.pool.shutdown(wait=False))


def _banner(service: PromptService, args, note: str | None) -> None:
    m, lim = service.model, service.limits
    lines = [f"aiops serve: prompts {m['name']} {m['version']} (manifest sha256 {m['manifest_sha256'][:16]}...) "
             "verified and blessed"]
    for n, p in service.prompts.items():
        pr = p.provider
        lines.append(f"  POST /v1/prompts/{n}: {pr.model} via {pr.base_url_env} ({pr.api}), version "
                     f"{p.version[:19]}..., masking: "
                     f"{', '.join(f'{k}={m}' for k, m in sorted(p.masking.items())) or 'no pii variable'} "
                     f"(key id {p.masker.key_id or '-'})")
    lines += [f"  prompt log: {service.log.path.resolve()}{' (encrypted at rest)' if service.cipher else ''}: "
              f"{service.audit.describe()}",
              f"  access: {service.access.source}",
              f"  limits per worker: {service.max_concurrency} provider calls at once, answer in {lim.timeout_s:g} s, "
              f"body up to {service.max_body} bytes",
              f"  artefact trust: {service.art.trust.text()}"]
    if note:
        lines.append(f"  note: {note}")
    lines.append(f"  listening on http://{args.host}:{args.port} with {args.workers} worker(s)")
    if service.access.open:
        bar = "!" * 78
        lines += [bar, ("!! INSECURE DEV MODE (--insecure-dev): NO API KEYS." if service.access.insecure_dev else
                        "!! WARNING: NO API KEYS CONFIGURED. The server runs OPEN: anyone who can reach it"),
                  "!! may generate and read metadata and metrics. Set AIOPS_API_KEYS='key:role,...'.", bar]
    print("\n".join(lines), file=sys.stderr, flush=True)
