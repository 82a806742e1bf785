"""`aiops check`: load -> validate -> summary. Writes nothing."""
from __future__ import annotations

from pathlib import Path

from aiops.compiler import schema as S
from aiops.compiler.diagnostics import Diagnostic, render_all
from aiops.compiler.load import Loaded, load
from aiops.compiler.validate import validate


def check(spec_dir: str | Path, overrides: list[str] | None = None) -> tuple[Loaded | None, S.Spec | None,
                                                                             list[Diagnostic]]:
    loaded, diags = load(spec_dir, overrides)
    if loaded is None:
        return None, None, diags
    spec, more = validate(loaded)
    from aiops.compiler.alternatives import check_alternatives

    alternatives = check_alternatives(loaded)
    return loaded, (spec if not any(d.is_error for d in alternatives) else None), diags + more + alternatives


def summary(loaded: Loaded, spec: S.Spec) -> str:
    if isinstance(spec, S.PromptSpec):
        return prompt_summary(loaded, spec)
    cols = spec.data.columns
    feats = [f for f in spec.features if f.transform != "drop"]
    dropped = [f for f in spec.features if f.transform == "drop"]
    th = spec.thresholds
    gates = [f"{k} {'>=' if b.min is not None else '<='} {b.min if b.min is not None else b.max}"
             for k, b in th.evaluation.items()]
    sec = spec.security
    g = spec.governance
    pii = [n for n, c in cols.items() if c.pii]
    sens = [n for n, c in cols.items() if c.sensitive]
    choices = ", ".join(f"{k}={v}" for k, v in sorted(loaded.choices.items()))
    lines = [
        f"ok: {spec.name} {spec.version} ({loaded.spec_dir}; {choices})",
        f"  spec hash  {loaded.spec_hash[:16]}",
        f"  task       {spec.problem.task}: predict {spec.problem.target}"
        + (f" = {spec.problem.positive_class!r}" if spec.problem.positive_class is not None else ""),
        f"  data       {spec.data.source}: {len(cols)} columns in the contract "
        f"({len(pii)} pii, {len(sens)} sensitive), split {spec.data.split.method}, "
        f"max rejected {spec.data.max_rejected_share:.1%}",
        f"  features   {len(feats)} model features, {len(dropped)} dropped "
        f"({', '.join(sorted({f.transform for f in feats}))})",
        f"  model      {spec.model.estimator}({', '.join(f'{k}={v}' for k, v in spec.model.params.items())}) "
        "exportable to ONNX",
        f"  gates      {', '.join(gates) or 'none (nothing will be blessed)'}; {len(th.slices)} slice, "
        f"{len(th.fairness)} fairness bounds",
        f"  monitoring {spec.monitoring.schedule!r}, {len(spec.monitoring.drift)} drift rules, "
        f"window {spec.monitoring.window.by}:{spec.monitoring.window.size}",
        f"  serving    {', '.join(spec.serving.modes)}; max {spec.serving.max_records_per_request} records/request",
        f"  policy     risk tier {g.risk_tier}, {g.approvals_required} of {len(g.approvers)} approvals, "
        f"audit log {'on' if sec.audit_log.enabled else 'off'}, encryption at rest "
        f"{'on' if sec.encryption_at_rest.enabled else 'off'}, {len(sec.roles)} role{'s' if len(sec.roles) != 1 else ''}",
    ]
    return "\n".join(lines)


def prompt_summary(loaded: Loaded, spec: S.PromptSpec) -> str:
    pr, g, sec = spec.provider, spec.governance, spec.security
    lines = [f"ok: {spec.name} {spec.version} ({loaded.spec_dir}; kind prompt)",
             f"  spec hash  {loaded.spec_hash[:16]}",
             f"  provider   {pr.model} ({pr.api}) at ${pr.base_url_env}"
             + (f", token ${pr.api_key_env}" if pr.api_key_env else "")
             + f"; timeout {pr.timeout_s:g}s, {pr.retries} retr{'y' if pr.retries == 1 else 'ies'}"]
    for name, p in spec.prompts.items():
        gates = ", ".join(f"{k} {'>=' if b.min is not None else '<='} {b.min if b.min is not None else b.max}"
                          for k, b in p.evaluation.gates.items()) or "none (nothing will be blessed)"
        guards = [f"{side}: " + ", ".join(x.type for x in getattr(p.guardrails, side)) or f"{side}: none"
                  for side in ("input", "output")]
        pii = [k for k, v in p.variables.items() if v.pii]
        lines += [f"  prompt     {name}: {p.template}, {len(p.variables)} variables ({len(pii)} pii), "
                  f"output {p.output.format}",
                  f"             guardrails {'; '.join(guards)}",
                  f"             golden {p.evaluation.golden}; gates {gates}"]
    m = spec.monitoring  # schema.PromptMonitoring (docs/genai.md#monitoring-prompts)
    lines.append(f"  monitoring {m.schedule!r}, window {m.window.by}:{m.window.size}, min {m.min_rows} calls; "
                 f"text drift AUC > {m.text_drift_auc:g}, length {m.length_drift.test} > {m.length_drift.threshold:g}"
                 + (f"; feedback pass rate >= {m.min_feedback_pass_rate:g}" if m.min_feedback_pass_rate is not None
                    else ""))
    lines.append(f"  policy     risk tier {g.risk_tier}, {g.approvals_required} of {len(g.approvers)} approvals, "
                 f"audit log {'on' if sec.audit_log.enabled else 'off'}")
    return "\n".join(lines)


def run_check(spec_dir: str, overrides: list[str], fmt: str = "text") -> tuple[str, bool]:
    loaded, spec, diags = check(spec_dir, overrides)
    errors = [d for d in diags if d.is_error]
    if fmt != "text":
        from aiops.compiler.diag_formats import render

        return render(diags, fmt), not (errors or spec is None or loaded is None)
    if errors or spec is None or loaded is None:
        return render_all(diags), False
    text = summary(loaded, spec)
    warnings = render_all(diags)
    return (warnings + "\n" + text) if warnings else text, True
