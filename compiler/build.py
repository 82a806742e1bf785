"""`aiops compile`: check -> plan -> render -> train -> verify -> evidence -> write.

Output depends only on the spec, the data and the tool's (and its libraries') versions:
no clocks, sorted keys, byte-identical on a second run.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiops.runtime.stable import dumps

from aiops.compiler import estimators as E
from aiops.compiler.check import check
from aiops.compiler.diagnostics import Diagnostic, render_all
from aiops.compiler.escape import EscapeError
from aiops.compiler.load import parse_path
from aiops.compiler.monitoring_plan import render_monitoring
from aiops.compiler.outdir import OutputError, clean_interrupted, inside, output_dir, replace, staging
from aiops.compiler.plan import Plan, build_plan
from aiops.compiler.render import UnsafeOutput, render_code
from aiops.compiler.review_workflow import render_review
from aiops.compiler.build_output import (APPROVALS, MANIFEST_SCHEMA, BuildFailed, compare,  # noqa: F401  (re-exported)
                                         keep_approvals as _keep_approvals, sha256_bytes)


@dataclass
class Progress:
    total: int
    quiet: bool = False
    step: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def __call__(self, msg: str) -> None:
        self.step += 1
        if not self.quiet:
            print(f"[{self.step}/{self.total}] {msg}", file=sys.stderr, flush=True)

    def done(self, msg: str) -> None:
        if not self.quiet:
            print(f"      {msg} ({time.perf_counter() - self.t0:.1f}s)", file=sys.stderr, flush=True)


def render_all_files(plan: Plan) -> dict[str, str]:
    """Every generated text file (pipeline code, monitoring job), escaped and checked."""
    try:
        files = render_code(plan)
        files.update(render_monitoring(plan))
        files.update(render_review(plan))
    except (UnsafeOutput, EscapeError) as exc:
        raise BuildFailed(f"error[E909]: a spec value would not stay text in the generated code\n"
                          f"   = {exc}\n"
                          f"   = help: this is refused rather than written; report it, with the spec, as an aiops bug",
                          2) from None
    return files


def compile_spec(spec_dir: str, overrides: list[str], out: str | None = None, check_only: bool = False,
                 quiet: bool = False, override_reason: str | None = None, reevaluate: bool = False) -> int:
    loaded, spec, diags = check(spec_dir, overrides)
    if spec is None or loaded is None or any(d.is_error for d in diags):
        raise BuildFailed(render_all(diags), 2, diags)
    from aiops.compiler import schema as S

    if isinstance(spec, S.PromptSpec):  # kind: prompt (docs/genai.md)
        from aiops.compiler.prompt_build import compile_prompt_spec

        return compile_prompt_spec(loaded, spec, out, check_only, quiet, reevaluate)
    src = (loaded.spec_dir / spec.data.source).resolve()
    try:
        data_rel = str(src.relative_to(Path.cwd().resolve()))
    except ValueError:
        data_rel = str(src)
    plan = build_plan(loaded, spec, data_rel)
    from aiops.compiler.compliance import missing_error, missing_sections

    missing = missing_sections(plan)  # fail before training, not after it
    if missing:
        exc = missing_error(plan, missing)
        path = parse_path(missing[0].key)
        loc = loaded.sources.locate(path)
        raise BuildFailed(render_all([Diagnostic("E905", exc.summary, missing[0].key, loc,
                                                 loaded.sources.line_of(loc), tuple(exc.notes), exc.help)]), 2)
    from aiops.compiler.governance import overrides as OV

    loose = OV.find(loaded)
    for line in OV.warning_lines(loose):
        print(line, file=sys.stderr)
    if loose and spec.governance.risk_tier == "high" and not (override_reason or "").strip():
        f = loose[0]
        raise BuildFailed("\n".join([
            "error[E908]: a command-line override loosens a threshold of a high risk model without a reason",
            f"  --> command-line override '{f['overrides'][0]}' ({f['key']})",
            *[f"   = {x['key']}: the spec says {OV.show(x['spec'])}, the effective bound is {OV.show(x['effective'])}"
              for x in loose],
            "   = governance.risk_tier is high: loosening a gate is recorded with who asked and why",
            "   = help: add --override-reason TEXT (it goes into the compliance document), or drop the override"]), 2)
    if loose and override_reason:
        import dataclasses
        import shlex

        plan = dataclasses.replace(plan, regenerate=f"{plan.regenerate} --override-reason {shlex.quote(override_reason)}")
    try:
        out_dir = output_dir(plan.name, out)
        clean_interrupted(out_dir, plan.name)
    except OutputError as exc:
        raise BuildFailed(str(exc), 2) from None
    if check_only:
        from aiops.compiler.staleness import installed, version_drift

        drift = version_drift(out_dir, installed(E.versions()))
        if drift is not None:
            raise BuildFailed(render_all([drift], wrote_nothing=False), 1, [drift])
    from aiops.compiler.errors import UserError
    from aiops.compiler.sign import signing_key

    try:
        signing_key(plan.security, plan.risk_tier)  # a build the policy wants signed fails here, before training, without a key
    except UserError as exc:
        raise BuildFailed(f"error[E911]: {exc}", 2) from None
    files = render_all_files(plan)
    if loose:
        files[OV.FILE] = dumps(OV.evidence(loose, override_reason))
    with staging() as tmp:
        stage = inside(tmp / plan.name, tmp)
        for rel, text in files.items():
            p = inside(stage / rel, stage)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        from aiops.compiler.train import train_and_verify

        try:
            result = train_and_verify(plan, spec, stage, Progress(7, quiet=quiet), keep_quarantine=not check_only)
        except Exception as exc:
            from aiops.compiler.training import DataError

            if isinstance(exc, DataError):
                from aiops.runtime.governance.store import RegistryError

                from aiops.compiler.registry import register_failed

                try:
                    register_failed(spec.env.registry, plan, exc.summary, tuple(exc.notes))
                except RegistryError as reg:
                    print(f"warning: the failed build could not be registered: {reg}", file=sys.stderr)
                raise BuildFailed(render_all([_data_diag(exc, loaded)]), 2) from None
            raise
        write_manifest(stage, plan, result)
        if check_only:
            return compare(stage, out_dir, plan)
        _keep_approvals(out_dir, stage)
        from aiops.compiler.governance.workflow import keep_production

        keep_production(spec.env.registry, out_dir, stage)
        try:
            _replace(stage, out_dir)
        except OutputError as exc:
            raise BuildFailed(str(exc), 2) from None
    from aiops.runtime.governance.store import RegistryError

    from aiops.compiler.registry import register_build

    try:
        run = register_build(spec.env.registry, out_dir, "compile")
    except RegistryError as exc:
        raise BuildFailed(f"error: {out_dir} was written, but the build could not be registered: {exc}", 2) from None
    blessed = result["blessed"]
    if not quiet:
        print(f"wrote {out_dir} ({sum(p.is_file() for p in out_dir.rglob('*'))} files); "
              f"model {'BLESSED' if blessed else 'NOT BLESSED'}; registry run {run['run_id']} "
              f"('aiops runs {plan.name}')", file=sys.stderr)
    if not blessed:
        failed = [t for t in result["evaluation"]["thresholds"] if not t["passed"]]
        lines = ["error[E902]: the model did not pass its gate; it is marked not blessed and will not be served",
                 f"  --> {out_dir / 'evidence' / 'evaluation.json'}"]
        for t in failed:
            lines.append(f"   = {t['kind']} {t['name']}: {t['value_text']} (needs {t['bound_text']})")
        if not failed:
            lines.append("   = the spec sets no threshold: with no thresholds, nothing is blessed")
        lines.append("   = help: the evidence is kept for inspection; improve the model or revisit the thresholds")
        raise BuildFailed("\n".join(lines), 1)
    return 0


def _data_diag(exc, loaded) -> Diagnostic:
    """A build-time error (data, training, document) as a diagnostic located at the data source."""
    code, key = getattr(exc, "code", "E901"), getattr(exc, "key", "data.source")
    return Diagnostic(code, exc.summary, key, loaded.sources.locate(parse_path(key)),
                      None, tuple(exc.notes), exc.help)


def write_manifest(stage: Path, plan: Plan, result: dict[str, Any]) -> None:
    """manifest.json over every file of `stage`, then manifest.sig over all of them when a signing
    key is set (required by the policy: compiler/sign.py)."""
    from aiops.compiler.sign import sign_folder, signature_policy, signing_key

    key = signing_key(plan.security, plan.risk_tier)

    files = {}
    for p in sorted(stage.rglob("*")):
        if p.is_file() and p.relative_to(stage).as_posix() not in ("manifest.json", "manifest.sig") \
                and p.relative_to(stage).parts[0] != APPROVALS:
            b = p.read_bytes()
            files[str(p.relative_to(stage))] = {"sha256": sha256_bytes(b), "size": len(b)}
    body = {
        "manifest_schema": MANIFEST_SCHEMA,
        "name": plan.name,
        "version": plan.version,
        "tool": {"name": "aiops", "version": plan.tool_version},
        "libraries": E.versions(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "spec": {"dir": plan.spec_dir, "hash": plan.spec_hash, "overrides": list(plan.overrides),
                 "choices": dict(plan.choices)},
        "data": {"source": plan.data_source, "sha256": result["data"]["sha256"]},
        "blessed": result["blessed"],
        "gate": {k: plan.verify_config[k] for k in ("evaluation", "slices", "fairness")},
        "policy": signature_policy(plan.security, plan.risk_tier),
        "files": files,
    }
    (stage / "manifest.json").write_text(dumps(body))
    if key is not None:
        sign_folder(stage, plan.name, key)


_replace = replace  # retrain and rollback replace artefact folders the same way
