"""validate: structure, then every semantic rule; returns all diagnostics, never raises."""
from __future__ import annotations

from aiops.compiler import (rules_contract, rules_data, rules_groups, rules_inputs, rules_model, rules_policy,
                            rules_prompt, rules_sample)
from aiops.compiler import rules_prompt_monitoring
from aiops.compiler import schema as S
from aiops.compiler.context import Ctx
from aiops.compiler.diagnostics import Diagnostic
from aiops.compiler.load import Loaded
from aiops.compiler.structure import structure


def validate(loaded: Loaded, data: bool = True) -> tuple[S.Spec | None, list[Diagnostic]]:
    """`data`: also read the data file (its header and a sample); off for the options that
    are not selected (compiler/alternatives.py), whose data is the same."""
    spec, diags = structure(loaded.config, loaded.sources)
    if spec is None:
        return None, diags
    ctx = Ctx(spec, loaded.sources, loaded.spec_dir)
    if isinstance(spec, S.PromptSpec):
        return _validate_prompt(spec, ctx, diags)
    rules = [
        rules_data.check_columns, rules_data.check_problem, rules_data.check_split,
        rules_model.check_features, rules_model.check_model, rules_model.check_thresholds, rules_groups.check_groups,
        rules_policy.check_monitoring, rules_policy.check_serving, rules_policy.check_security,
        rules_policy.check_governance, rules_inputs.check_env_outputs,
        rules_contract.check_source_names, rules_contract.check_row_checks, rules_contract.check_leakage,
    ]
    if data and spec.data is not None and spec.data.source and rules_inputs.source_inside(ctx):
        rules.insert(0, rules_data.check_source)
        rules.append(rules_sample.check_sample)  # last: only when everything else holds
    for rule in rules:
        rule(ctx)
    ok = not any(d.is_error for d in diags + ctx.diags)
    return (spec if ok else None), diags + ctx.diags


def _validate_prompt(spec: S.PromptSpec, ctx: Ctx, diags: list[Diagnostic]) -> tuple[S.PromptSpec | None,
                                                                                      list[Diagnostic]]:
    """A prompt spec (kind: prompt): its own rules, then the governance and env rules it shares."""
    rules_prompt.check_prompt_spec(ctx)
    rules_prompt.check_prompt_governance(ctx)
    rules_prompt_monitoring.check_prompt_monitoring(ctx)
    rules_inputs.check_env_outputs(ctx)
    ok = not any(d.is_error for d in diags + ctx.diags)
    return (spec if ok else None), diags + ctx.diags
