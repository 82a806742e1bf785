"""Required sections: the regulations need each of them, and an empty one is a user error
(one DataError naming every empty section and the spec key that fills it)."""
from __future__ import annotations

import json
from typing import Any

from aiops.compiler.plan import Plan
from aiops.compiler.compliance.model import TITLES, Missing


def missing_sections(plan: Plan) -> list[Missing]:
    """Required sections that would be empty: the regulations need each of them."""
    g = plan.governance
    out = []

    def need(section: str, k: str, value: Any, expected: str, example: str) -> None:
        if not (value.strip() if isinstance(value, str) else value):
            out.append(Missing(TITLES[section], k, value, expected, example))

    need("problem", "problem.statement", plan.problem.statement, "a sentence stating the problem",
         "statement: Estimate the probability that ...")
    need("problem", "kpis", list(plan.kpis), "at least one KPI",
         "kpis: [{name, definition, baseline, target, direction, owner}]")
    need("use", "governance.intended_use", g.intended_use, "at least one intended use",
         "intended_use: [Rank applications by risk, for a human reviewer.]")
    need("use", "governance.out_of_scope_use", g.out_of_scope_use, "at least one out-of-scope use",
         "out_of_scope_use: [Automatic decisions without human review.]")
    need("data", "data.provenance.origin", plan.data.provenance.origin, "where the data comes from",
         "origin: <source, author, year>")
    need("data", "data.provenance.license", plan.data.provenance.license, "the data licence",
         "license: CC BY 4.0")
    th = plan.thresholds
    if th.slices or th.fairness:  # with no threshold at all the gate refuses the model (E902) anyway
        example = {"regression": "rmse: {max: 10.0}", "multiclass_classification": "accuracy: {min: 0.8}"}
        need("evaluation", "thresholds.evaluation", th.evaluation,
             "at least one holdout metric with a bound, since thresholds.slices or thresholds.fairness is set",
             example.get(plan.task, "roc_auc: {min: 0.7}"))
    sensitive = [c.name for c in plan.columns if c.sensitive]
    if sensitive:
        need("fairness", "thresholds.fairness", th.fairness,
             f"a bound per sensitive column ({', '.join(sensitive)})",
             _fairness_example(plan, sensitive[0]))
    need("limitations", "governance.limitations", g.limitations, "at least one known limitation",
         "limitations: [Trained on data from ...; not representative of ...]")
    need("limitations", "governance.ethical_considerations", g.ethical_considerations,
         "at least one ethical consideration", "ethical_considerations: [No personal data is used.]")
    need("governance", "governance.owner", g.owner, "the accountable owner", "owner: head-of-credit-risk")
    return out


def _fairness_example(plan: Plan, column: str) -> str:
    """A fairness bound that fits the task (rules_model._check_fairness_task)."""
    if plan.task == "regression":
        return f"fairness: [{{attribute: {column}, metric: mean_absolute_error_difference, max: <target units>}}]"
    if plan.task == "multiclass_classification":
        return (f"fairness: [{{attribute: {column}, metric: demographic_parity_difference, "
                "positive_class: <a class>, max: 0.1}]")
    return f"fairness: [{{attribute: {column}, metric: demographic_parity_difference, max: 0.1}}]"


def _where(plan: Plan, k: str) -> str:
    """Where a key is set: a command-line override, its config group's file, or spec.yaml."""
    for o in plan.overrides:
        if o.split("=", 1)[0].lstrip("+~") == k:
            return f"the command-line override '{o}'"
    top = k.split(".", 1)[0]
    choices = dict(plan.choices)
    if top in choices:
        return f"{plan.spec_dir}/{top}/{choices[top]}.yaml"
    return f"{plan.spec_dir}/spec.yaml"


def missing_error(plan: Plan, missing: list[Missing]):
    from aiops.compiler.training import DataError

    n = len(missing)
    notes = [f"'{m.key}' fills the section '{m.section}' and must give {m.expected}. "
             f"Got {json.dumps(m.value)} instead (set in {_where(plan, m.key)})." for m in missing]
    helps = "; ".join(f"set {m.key.rsplit('.', 1)[0] + '.' if '.' in m.key else ''}{m.example}" for m in missing)
    return DataError(
        f"the compliance document would have {n} empty required section{'s' if n != 1 else ''}: "
        + ", ".join(dict.fromkeys(f"'{m.section}'" for m in missing)),
        *notes, help=helps + " (EU AI Act Annex IV, NIST AI RMF and SR 11-7 need these sections)")
