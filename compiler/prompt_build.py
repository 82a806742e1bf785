"""`aiops compile` for a prompt spec (kind: prompt): plan -> evaluate (or reuse the evidence) ->
bless -> compliance -> manifest and signature -> replace generated/<name>/ -> register.

The provider is called only when an evaluation's cache key changed or with --reevaluate; otherwise
the committed evidence is reused as is, so a machine without the model recompiles byte-identically
and `--check` tells stale from fresh without a network.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aiops.runtime.blessing import RULE, derive_prompts
from aiops.runtime.stable import dumps

from aiops.compiler import estimators as E
from aiops.compiler.build_output import (APPROVALS, MANIFEST_SCHEMA, BuildFailed, compare, sha256_bytes,
                                         keep_approvals as _keep_approvals)
from aiops.compiler.load import Loaded
from aiops.compiler.outdir import OutputError, clean_interrupted, inside, output_dir, replace, staging
from aiops.compiler.prompt_plan import SpecPlan, artefact_files, build_spec_plan


def evidence_path(prompt: str) -> str:
    return f"evidence/prompts/{prompt}/evaluation.json"


def _recorded(out_dir: Path, prompt: str) -> tuple[str | None, dict[str, Any] | None]:
    p = out_dir / evidence_path(prompt)
    try:
        text = p.read_text(encoding="utf-8")
        return text, json.loads(text)
    except (OSError, ValueError):
        return None, None


def evaluations(plan: SpecPlan, out_dir: Path, reevaluate: bool, check_only: bool, quiet: bool
                ) -> tuple[dict[str, str], list[str]]:
    """evidence path -> text, for every prompt; and the prompts whose recorded evidence is stale."""
    from aiops.compiler.prompt_eval import EvaluationUnavailable, cache_key, evaluate

    files, stale = {}, []
    for p in plan.prompts:
        text, body = _recorded(out_dir, p.name)
        key = cache_key(p)
        if text is not None and isinstance(body, dict) and body.get("cache_key") == key and not reevaluate:
            files[evidence_path(p.name)] = text
            continue
        if check_only:
            stale.append(p.name)
            continue
        say = (lambda m: None) if quiet else (lambda m: print(f"      {m}", file=sys.stderr, flush=True))
        from aiops.runtime.genai.provider import Provider

        state = "absent" if text is None else \
            ("current, but --reevaluate asks for a new run" if isinstance(body, dict) and body.get("cache_key") == key
             else "for another prompt, golden set, gates or provider")
        why = Provider(p.prompt_json["provider"]).problem()
        if why:
            raise _unavailable(plan, p.name, out_dir, state, why)
        if not quiet:
            why = "--reevaluate" if text is not None and body and body.get("cache_key") == key else \
                ("no recorded evidence" if text is None else "the prompt, golden set, gates or provider changed")
            print(f"evaluating prompt '{p.name}' on {len(p.golden)} golden cases ({why})", file=sys.stderr)
        try:
            ev = evaluate(p, progress=say)
        except EvaluationUnavailable as exc:
            raise _unavailable(plan, p.name, out_dir, state, str(exc)) from None
        files[evidence_path(p.name)] = dumps(ev)
    return files, stale


def _unavailable(plan: SpecPlan, prompt: str, out_dir: Path, state: str, why: str) -> BuildFailed:
    """E950: an evaluation is needed and the provider cannot be called; nothing is written."""
    return BuildFailed("\n".join([
        f"error[E950]: prompt '{prompt}' must be evaluated, but its provider cannot be called",
        f"  --> {plan.spec_dir}/spec.yaml (provider.base_url_env)",
        f"   = {why}",
        f"   = the recorded evidence ({out_dir / evidence_path(prompt)}) is {state}",
        "   = help: start an OpenAI-compatible server and set the variable, e.g. "
        f"python tools/local_llm.py run -- {plan.regenerate}"]), 2)


def blessing_doc(plan: SpecPlan, evs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    v = derive_prompts({p.name: p.gates for p in plan.prompts}, evs)
    return {"blessed": v.blessed, "rule": RULE, "failed": v.failed,
            "metrics": {f"{p.name}.{k}": evs[p.name].get(k) for p in plan.prompts
                        for k in ("pass_rate", "json_valid_rate")},
            "thresholds": [{"kind": c.kind, "name": c.name, "value": c.value, "bound": c.bound,
                            "bound_text": c.bound, "passed": c.passed} for c in v.checks],
            "prompt_versions": {p.name: p.version for p in plan.prompts}}


def compile_prompt_spec(loaded: Loaded, spec, out: str | None, check_only: bool, quiet: bool,
                        reevaluate: bool = False) -> int:
    from aiops.compiler.errors import UserError
    from aiops.compiler.sign import signing_key

    plan = build_spec_plan(loaded, spec)
    try:
        out_dir = output_dir(plan.name, out)
        clean_interrupted(out_dir, plan.name)
    except OutputError as exc:
        raise BuildFailed(str(exc), 2) from None
    try:
        signing_key(plan.security, plan.risk_tier)  # refused before any provider call when the policy wants a signature and has no key
    except UserError as exc:
        raise BuildFailed(f"error[E911]: {exc}", 2) from None
    files = artefact_files(plan)
    ev_files, stale = evaluations(plan, out_dir, reevaluate, check_only, quiet)
    if stale:
        print(f"error[E903]: {out_dir} is stale: the evaluation evidence of prompt "
              f"{', '.join(repr(s) for s in stale)} is not for the spec as it is now", file=sys.stderr)
        for s in stale:
            print(f"   = changed: {out_dir / evidence_path(s)} (cache key)", file=sys.stderr)
        print(f"   = help: run 'python tools/local_llm.py run -- {plan.regenerate}' and commit {out_dir}",
              file=sys.stderr)
        return 1
    files.update(ev_files)
    evs = {p.name: json.loads(ev_files[evidence_path(p.name)]) for p in plan.prompts}
    blessing = blessing_doc(plan, evs)
    files["evidence/blessing.json"] = dumps(blessing)
    from aiops.compiler.prompt_monitoring import monitoring_files

    files.update(monitoring_files(plan, evs))  # monitoring/: the job, the masked reference (genai_monitor)
    from aiops.compiler.governance.policy import policy_doc

    files["governance.json"] = dumps(policy_doc(plan))
    from aiops.compiler.compliance.genai import document
    from aiops.compiler.compliance.render import render

    files.update(render(document(plan, evs, blessing), {}))
    with staging() as tmp:
        stage = inside(tmp / plan.name, tmp)
        for rel, text in sorted(files.items()):
            p = inside(stage / rel, stage)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        write_manifest(stage, plan, blessing["blessed"])
        if check_only:
            return compare(stage, out_dir, plan)
        _keep_approvals(out_dir, stage)
        try:
            replace(stage, out_dir)
        except OutputError as exc:
            raise BuildFailed(str(exc), 2) from None
    from aiops.runtime.governance.store import RegistryError

    from aiops.compiler.registry import register_build

    try:
        run = register_build(spec.env.registry, out_dir, "compile")
    except RegistryError as exc:
        raise BuildFailed(f"error: {out_dir} was written, but the build could not be registered: {exc}", 2) from None
    if not quiet:
        for p in plan.prompts:  # the evaluation's figures, as a tabular compile prints its thresholds
            cases = evs[p.name]["cases"]
            print(f"      {p.name}: {sum(bool(c['passed']) for c in cases)} of {len(cases)} golden cases passed; gates: "
                  + ", ".join(f"{t['name'].split(': ', 1)[1]} {'n/a' if t['value'] is None else format(t['value'], '.3f')} "
                              f"({t['bound']}) {'pass' if t['passed'] else 'FAIL'}"
                              for t in blessing["thresholds"] if t["name"].startswith(p.name + ": ")),
                  file=sys.stderr)
        print(f"wrote {out_dir} ({sum(p.is_file() for p in out_dir.rglob('*'))} files); prompts "
              f"{'BLESSED' if blessing['blessed'] else 'NOT BLESSED'}; registry run {run['run_id']} "
              f"('aiops runs {plan.name}')", file=sys.stderr)
    if not blessing["blessed"]:
        lines = ["error[E902]: the prompts did not pass their gate; they are marked not blessed and will not be served"]
        for t in blessing["thresholds"]:
            if not t["passed"]:
                v = "n/a" if t["value"] is None else f"{t['value']:.4f}"
                lines.append(f"   = {t['name']}: {v} (needs {t['bound']})")
        for p in plan.prompts:
            failed = [c["id"] for c in evs[p.name]["cases"] if not c["passed"]]
            if failed:
                lines.append(f"   = {p.name}: failed cases {', '.join(failed)} "
                             f"(see {out_dir / evidence_path(p.name)} and compliance.md#known-failure-cases)")
        if not any(p.gates for p in plan.prompts):
            lines.append("   = the spec sets no gate: with no gates, nothing is blessed")
        lines.append("   = help: the evidence is kept for inspection; improve the prompt or revisit the gates")
        raise BuildFailed("\n".join(lines), 1)
    return 0


def write_manifest(stage: Path, plan: SpecPlan, blessed: bool) -> None:
    """manifest.json over every file of `stage` (kind: prompt), then manifest.sig when a signing key is set:
    the same signing code and policy as a tabular build (compiler/sign.py)."""
    from aiops.compiler.sign import sign_folder, signature_policy, signing_key

    key = signing_key(plan.security, plan.risk_tier)
    files = {}
    for p in sorted(stage.rglob("*")):
        rel = p.relative_to(stage)
        if p.is_file() and rel.as_posix() not in ("manifest.json", "manifest.sig") and rel.parts[0] != APPROVALS:
            b = p.read_bytes()
            files[rel.as_posix()] = {"sha256": sha256_bytes(b), "size": len(b)}
    golden = sha256_bytes(b"".join(p.golden_bytes for p in plan.prompts))
    body = {
        "manifest_schema": MANIFEST_SCHEMA,
        "kind": "prompt",
        "name": plan.name,
        "version": plan.version,
        "tool": {"name": "aiops", "version": plan.tool_version},
        "libraries": E.versions(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "spec": {"dir": plan.spec_dir, "hash": plan.spec_hash, "overrides": list(plan.overrides),
                 "choices": dict(plan.choices)},
        "data": {"source": ", ".join(f"{plan.spec_dir}/{p.prompt_json['name']} golden set" for p in plan.prompts),
                 "sha256": golden},
        "blessed": blessed,
        "gate": {"prompts": {p.name: p.gates for p in plan.prompts}},
        "policy": signature_policy(plan.security, plan.risk_tier),
        "files": files,
    }
    (stage / "manifest.json").write_text(dumps(body))
    if key is not None:
        sign_folder(stage, plan.name, key)
