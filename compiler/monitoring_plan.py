"""The monitoring job: plan -> generated/<name>/monitoring/{monitoring.json, crontab, workflow.yml}.

Every choice the job makes is resolved here, from the resolved spec: which columns are
tested for drift and with which tests (fitted to their dtype), which are left out and
why, the prediction and label rules, the metric floors, the fairness bounds, the label
key, the actions and the schedule. `aiops monitor` reads monitoring.json, not the spec;
the two templates only print the plan.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aiops.compiler import estimators as E
from aiops.compiler import schema as S
from aiops.compiler.plan import Plan, jsonable
from aiops.compiler.rules_policy import DRIFT_FITS, kind_of

MONITORING_SCHEMA = 1
MIN_WINDOW_ROWS = 100  # below this a window is reported but not tested (statistics too noisy)
MIN_GROUP_ROWS = 10  # fairness: groups smaller than this are shown but left out of the metric

FILES = {
    "monitoring/crontab": "monitoring/crontab.j2",
    "monitoring/workflow.yml": "monitoring/workflow.yml.j2",
}


@dataclass(frozen=True)
class TestPlan:
    test: str  # psi | ks | chi_square | jensen_shannon | wasserstein
    threshold: float
    fires: str  # "above" (a statistic ceiling) or "below" (a p-value floor)
    source: str  # the spec key the rule comes from


@dataclass(frozen=True)
class ColumnMonitor:
    name: str
    dtype: str
    kind: str  # numeric | categorical
    model_input: bool
    nullable: bool
    tests: tuple[TestPlan, ...]
    not_tested: str | None  # why the column has no drift test
    unseen_categories: bool  # count values the training data never had


@dataclass(frozen=True)
class MetricFloor:
    metric: str
    min: float | None
    max: float | None
    higher_is_better: bool


@dataclass(frozen=True)
class FairnessRule:
    attribute: str
    metric: str
    min: float | None
    max: float | None
    bins: tuple[float, ...] | None
    needs_labels: bool
    positive_class: str | None  # the class the rule is about (the problem's, or the bound's for multiclass)
    labels: dict | None = None  # the attribute's value -> readable group name
    indicators: dict | None = None  # an attribute given as 0/1 columns: column -> group name


@dataclass(frozen=True)
class MonitoringPlan:
    name: str
    version: str
    spec_dir: str
    regenerate: str
    tool_version: str
    artefact_dir: str  # where `aiops compile` writes by default; the scheduled job reads it
    report_dir: str
    prediction_log: str
    current_env: str  # the environment variable naming the data file the scheduled job monitors
    schedule: str
    task: str
    target: str
    positive_class: str | None
    window_by: str  # time | rows
    window_column: str | None
    window_size: int | str
    min_window_rows: int  # monitoring.min_rows
    min_labelled_rows: int  # monitoring.min_labelled_rows
    reference_period: dict | None  # time split: the training rows are before train_until (report marks windows)
    label_delay_days: int
    label_key: str | None  # column joining labels to rows (else prediction_id)
    data_quality: dict
    columns: tuple[ColumnMonitor, ...]
    drift_correction: str
    prediction_score: TestPlan | None
    prediction_label: tuple[TestPlan, ...]
    performance: tuple[MetricFloor, ...]
    fairness: tuple[FairnessRule, ...]
    min_group_rows: int
    actions: dict
    retrain_margin: float
    webhook: str | None


def _rule(r: S.DriftRule, source: str) -> TestPlan:
    return TestPlan(r.test, float(r.threshold), "below" if r.test in ("ks", "chi_square") else "above", source)


def build_monitoring_plan(plan: Plan) -> MonitoringPlan:
    m = plan.monitoring
    key = plan.key
    label_key = m.label_key or key
    window = m.window
    per_column = m.drift_features or {}
    extra = set(m.drift_columns or [])
    columns = []
    for c in plan.columns:
        if c.name == plan.target:
            continue
        kind = kind_of(c.dtype)
        why = None
        if c.name in (key, label_key):
            why = "row identifier"
        elif window.by == "time" and c.name == window.column:
            why = "window column"
        elif c.pii:
            why = "PII: the reference profile keeps counts only"
        elif kind == "date":
            why = "date: its values move with time; no drift test fits it"
        elif c.known_after_outcome and c.name not in extra:
            why = "known only after the outcome: never a model input (monitoring.drift_columns can list it)"
        elif not c.required and c.name not in extra:
            why = "not a model input (monitoring.drift_columns lists the other columns to test)"
        if why:
            tests: tuple[TestPlan, ...] = ()
        elif c.name in per_column:
            tests = tuple(_rule(r, f"monitoring.drift_features.{c.name}[{i}]")
                          for i, r in enumerate(per_column[c.name]))
        else:
            tests = tuple(_rule(r, f"monitoring.drift[{i}]") for i, r in enumerate(m.drift or [])
                          if r.applies_to == kind)
        if not why and not tests:
            why = "no drift rule applies to it"
        columns.append(ColumnMonitor(c.name, c.dtype, "numeric" if kind in ("numeric", "date") else "categorical",
                                     c.required, c.nullable, tests, why,
                                     kind == "categorical" and c.name not in (key, label_key) and not c.pii))
    pd_rule = m.prediction_drift
    score = _rule(pd_rule, "monitoring.prediction_drift") if pd_rule else None
    if plan.task == "regression":
        labels: tuple[TestPlan, ...] = ()
    elif pd_rule and "categorical" in DRIFT_FITS[pd_rule.test]:
        labels = (_rule(pd_rule, "monitoring.prediction_drift"),)
    else:
        labels = tuple(_rule(r, f"monitoring.drift[{i}]") for i, r in enumerate(m.drift or [])
                       if r.applies_to == "categorical")
    perf = tuple(MetricFloor(k, b.min, b.max, E.METRICS[k][3]) for k, b in sorted((m.performance or {}).items()))
    fair = ()
    if m.fairness:
        fair = tuple(FairnessRule(f["attribute"], f["metric"], f.get("min"), f.get("max"),
                                  tuple(f["bins"]) if f.get("bins") else None,
                                  f["metric"] in ("equal_opportunity_difference", "mean_absolute_error_difference",
                                                  "bounded_group_loss"),
                                  str(f["positive_class"]) if f.get("positive_class") is not None
                                  else plan.positive_class, f.get("labels"), f.get("indicators"))
                     for f in plan.verify_config["fairness"])
    sp = plan.train_config["split"]
    period = None
    if sp["method"] == "time":
        period = {"column": sp["time_column"], "train_until": sp["test_start"], "evaluation_until": sp.get("end")}
    return MonitoringPlan(
        name=plan.name, version=plan.version, spec_dir=plan.spec_dir, regenerate=plan.regenerate,
        tool_version=plan.tool_version, artefact_dir=f"generated/{plan.name}",
        report_dir=f".aiops/monitoring/{plan.name}", prediction_log=f".aiops/serving/{plan.name}/predictions.jsonl",
        current_env=f"AIOPS_MONITOR_CURRENT_{plan.name.upper()}",
        schedule=m.schedule, task=plan.task, target=plan.target, positive_class=plan.positive_class,
        window_by=window.by, window_column=window.column, window_size=window.size,
        min_window_rows=int(m.min_rows), min_labelled_rows=int(m.min_labelled_rows), reference_period=period,
        label_delay_days=int(m.label_delay_days or 0), label_key=label_key,
        data_quality=dict(sorted(jsonable(m.data_quality).items())), columns=tuple(columns),
        drift_correction=m.drift_correction or "holm",
        prediction_score=score, prediction_label=labels, performance=perf, fairness=fair,
        min_group_rows=MIN_GROUP_ROWS, actions=dict(sorted(jsonable(m.actions).items())),
        retrain_margin=float(m.retrain_margin or 0.0), webhook=m.webhook,
    )


def job_definition(mp: MonitoringPlan) -> dict[str, Any]:
    """monitoring.json: what `aiops monitor` runs."""
    return {"monitoring_schema": MONITORING_SCHEMA, **dataclasses.asdict(mp)}


def render_monitoring(plan: Plan) -> dict[str, str]:
    """{relative path: content} of the monitoring job, its crontab line and CI workflow."""
    from aiops.runtime.stable import dumps

    from aiops.compiler.render import environment
    from aiops.compiler.review_workflow import trust_of

    mp = build_monitoring_plan(plan)
    env = environment()
    out = {"monitoring/monitoring.json": dumps(job_definition(mp))}
    trust = trust_of(plan)  # the workflow's trusted-keys step
    for rel, tpl in FILES.items():
        out[rel] = env.get_template(tpl).render(m=mp, trust=trust)
    return out
