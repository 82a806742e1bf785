"""The plan of a prompt spec: every artefact of `aiops compile` for `kind: prompt`, resolved from
the checked spec (docs/genai.md#generated-artefacts).

prompt.json carries the template's name, the variables as a contract dict (the one contract core
validates them at serving time), the output (JSON Schema inlined), the tools (schemas inlined), the
guardrail plan and the provider block; its `version` is a content hash of all of them and the
template, so any change that could change an answer changes the version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiops.runtime.stable import dumps

from aiops.compiler import __version__
from aiops.compiler import schema as S
from aiops.compiler.load import Loaded
from aiops.compiler.plan import _contract_entry


@dataclass(frozen=True)
class PromptPlan:
    name: str
    template_text: str
    prompt_json: dict[str, Any]  # the whole of prompts/<name>/prompt.json
    golden_bytes: bytes
    golden: tuple[dict[str, Any], ...]  # the cases, in file order
    gates: dict[str, dict[str, float | None]]  # gate name -> {min, max}

    @property
    def version(self) -> str:
        return self.prompt_json["version"]


@dataclass(frozen=True)
class SpecPlan:
    name: str
    version: str
    spec: dict[str, Any]  # the resolved spec as plain data (sign.py reads security and governance from it)
    spec_dir: str
    spec_hash: str
    overrides: tuple[str, ...]
    choices: dict[str, str]
    tool_version: str
    regenerate: str
    prompts: tuple[PromptPlan, ...]
    serving: dict[str, Any]  # serving.json
    security: Any = None  # the typed security section (compiler/schema.Security): signing reads it
    risk_tier: str = "limited"
    governance: Any = None  # typed governance, env and KPIs: governance.json reads them (compiler/governance/policy.py)
    env: Any = None
    kpis: tuple = ()


def _hash(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                                 ensure_ascii=True).encode()).hexdigest()


def _schema(spec_dir: Path, rel: str | None) -> Any:
    return json.loads((spec_dir / rel).read_text(encoding="utf-8")) if rel else None


def _guards(gs: list[S.Guard]) -> list[dict[str, Any]]:
    out = []
    for g in gs:
        d: dict[str, Any] = {"type": g.type}
        if g.action is not None:
            d["action"] = g.action
        if g.patterns:
            d["patterns"] = list(g.patterns)
        if g.max_chars is not None:
            d["max_chars"] = g.max_chars
        out.append(d)
    return out


def provider_block(pr: S.Provider) -> dict[str, Any]:
    return {"base_url_env": pr.base_url_env, "api_key_env": pr.api_key_env, "model": pr.model, "api": pr.api,
            "parameters": dict(pr.parameters), "timeout_s": pr.timeout_s, "retries": pr.retries,
            "budget": dataclasses.asdict(pr.budget)}


def prompt_plan(spec_dir: Path, spec: S.PromptSpec, name: str, p: S.Prompt) -> PromptPlan:
    masking = spec.security.masking or {}
    template = (spec_dir / p.template).read_text(encoding="utf-8")
    variables = {"columns": [_contract_entry(k, c, not c.nullable,
                                             masking[k].method if k in masking and masking[k] else None)
                             for k, c in p.variables.items()], "target": None, "key": None}
    tools = None
    if p.tools is not None:
        tools = {"allow": {t: _schema(spec_dir, d.schema) for t, d in sorted(p.tools.allow.items())},
                 "max_steps": p.tools.max_steps}
    body = {
        "name": name,
        "template": "template.j2",
        "variables": variables,
        "pii": [k for k, c in p.variables.items() if c.pii],
        "output": {"format": p.output.format, "prefill": p.output.prefill, "schema": _schema(spec_dir, p.output.schema)},
        "tools": tools,
        "guardrails": {"input": _guards(p.guardrails.input), "output": _guards(p.guardrails.output)},
        "provider": provider_block(spec.provider),
    }
    version = _hash({"template": template, **{k: body[k] for k in ("variables", "output", "tools", "guardrails",
                                                                   "provider")}})
    golden_bytes = (spec_dir / p.evaluation.golden).read_bytes()
    golden = tuple(json.loads(line) for line in golden_bytes.decode("utf-8").splitlines() if line.strip())
    gates = {k: {"min": b.min, "max": b.max} for k, b in sorted(p.evaluation.gates.items())}
    return PromptPlan(name, template, {"name": name, "version": version, "description": p.description, **body},
                      golden_bytes, golden, gates)


def build_spec_plan(loaded: Loaded, spec: S.PromptSpec) -> SpecPlan:
    spec_rel = str(loaded.spec_dir)
    prompts = tuple(prompt_plan(loaded.spec_dir, spec, n, p) for n, p in spec.prompts.items())
    plain = dataclasses.asdict(spec)
    sec = plain["security"]
    serving = {
        "kind": "prompt", "name": spec.name, "version": spec.version,
        "security": {"masking": sec["masking"], "roles": sec["roles"], "encryption_at_rest": sec["encryption_at_rest"],
                     "audit_log": sec["audit_log"], "key_source": sec["key_source"],
                     "risk_tier": spec.governance.risk_tier},
        "limits": dataclasses.asdict(spec.serving),
        "prompts": [p.name for p in prompts],
    }
    over = " ".join(shlex.quote(o) for o in loaded.overrides)
    return SpecPlan(spec.name, spec.version, plain, spec_rel, loaded.spec_hash,
                    tuple(loaded.overrides), dict(loaded.choices), __version__,
                    f"aiops compile {shlex.quote(spec_rel)}" + (f" {over}" if over else ""), prompts, serving,
                    spec.security, spec.governance.risk_tier, spec.governance, spec.env, tuple(spec.kpis))


def artefact_files(plan: SpecPlan) -> dict[str, str]:
    """serving.json and, per prompt, template.j2 (a byte copy) and prompt.json."""
    files = {"serving.json": dumps(plan.serving)}
    for p in plan.prompts:
        files[f"prompts/{p.name}/template.j2"] = p.template_text
        files[f"prompts/{p.name}/prompt.json"] = dumps(p.prompt_json)
    return files
