"""Sections on what the model is for and what it is built from: problem and KPIs, use, data
contract and provenance, features, model and assumptions."""
from __future__ import annotations

import json

from aiops.compiler.plan import Plan
from aiops.compiler.rowkeys import identity
from aiops.compiler.compliance.model import Block, Cell, Evidence, bullets, days, facts, file, key, num, table, text, yes


def problem(plan: Plan, ev: Evidence) -> list[Block]:
    p = plan.problem
    kpis = [(k.name, k.definition, f"{num(k.baseline)} {k.unit}".strip(),
             f"{num(k.target)} {k.unit}".strip(), k.direction, k.owner, key(f"kpis[{i}]"))
            for i, k in enumerate(plan.kpis)]
    return [
        facts([
            ("Problem", p.statement, key("problem.statement")),
            ("Task", p.task, key("problem.task")),
            ("Target", plan.target, key("problem.target")),
            ("Positive class", num(plan.positive_class), key("problem.positive_class")),
            ("Decision", p.decision, key("problem.decision")),
            ("Business outcome", p.business_outcome, key("problem.business_outcome")),
        ]),
        table(("KPI", "Definition", "Baseline", "Target", "Direction", "Owner", "Source"), kpis, key("kpis"),
              title="KPIs"),
        text("The holdout metrics that stand in for these KPIs before deployment are the bounds of "
             f"{', '.join(sorted(plan.thresholds.evaluation))} in the evaluation section."
             if plan.thresholds.evaluation else
             "thresholds.evaluation is empty: no holdout metric stands in for these KPIs before deployment.",
             key("thresholds.evaluation")),
    ]


def use(plan: Plan) -> list[Block]:
    g = plan.governance
    return [bullets(g.intended_use, key("governance.intended_use"), title="Intended use"),
            bullets(g.out_of_scope_use, key("governance.out_of_scope_use"), title="Out-of-scope use")]


def _checks_text(c: dict) -> str:
    out = [f"{op} {num(c[k])}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if c[k] is not None]
    if c["isin"] is not None:
        out.append("in {" + ", ".join(str(v) for v in c["isin"]) + "}")
    if c["regex"] is not None:
        out.append(f"matches {c['regex']}")
    if c["min_length"] is not None or c["max_length"] is not None:
        out.append(f"length in [{num(c['min_length'])}, {num(c['max_length'])}]")
    if c["unique"]:
        out.append("unique")
    if c["formats"]:
        out.append("date as " + " or ".join(c["formats"]))
    return "; ".join(out) or "-"


def data(plan: Plan, ev: Evidence) -> list[Block]:
    d = ev.data
    prov = plan.data.provenance
    recon = d["rows_in"] == d["accepted"] + d["quarantined"]
    split = plan.data.split
    split_desc = {
        "stratified": f"stratified by the target, {num(split.test_size)} held out, seed {split.seed}",
        "random": f"random, {num(split.test_size)} held out, seed {split.seed}",
        "time": f"by {split.time_column}: holdout from {split.test_start}"
                + (f", rows from {split.end} held back for monitoring" if split.end else ""),
    }[split.method]
    blocks = [
        facts([
            ("Origin", prov.origin, key("data.provenance.origin")),
            ("Licence", prov.license, key("data.provenance.license")),
            ("Derived by", prov.derived_by or "(not stated)", key("data.provenance.derived_by")),
            ("Description", prov.description or "(none)", key("data.provenance.description")),
            ("File", Cell(d["source"], code=True), key("data.source")),
            ("Format", d["format"], file("evidence/data.json")),
            ("sha256", Cell(d["sha256"], code=True), file("evidence/data.json")),
        ], title="Provenance"),
        facts([
            ("Row reconciliation", f"rows in {d['rows_in']} = accepted {d['accepted']} + quarantined "
             f"{d['quarantined']} ({'holds' if recon else 'DOES NOT HOLD'})", file("evidence/data.json")),
            ("Rejected share", f"{d['rejected_share']:.2%} (tolerated: {d['max_rejected_share']:.2%})",
             (file("evidence/data.json"), key("data.max_rejected_share"))),
            ("Quarantine file", d["quarantine_file"] or "(none: no row was rejected)", file("evidence/data.json")),
            ("Split", split_desc, key("data.split")),
            ("Rows", f"train {d['split']['train']}, test {d['split']['test']}, held back {d['split']['held_back']}",
             file("evidence/data.json")),
            ("Row key", plan.key or "(none)", key("data.key")),
            ("Rows used", f"hashed keys of the training and holdout rows, by {identity(plan.key)}; retrain scores "
             "champion and challenger only on rows neither was trained on", file("evidence/rows.json")),
        ], title="Rows"),
    ]
    if d["reasons"]:
        blocks.append(table(("Reason", "Rows"), sorted(d["reasons"].items(), key=lambda kv: (-kv[1], kv[0])),
                            file("evidence/data.json"), title="Quarantine reasons"))
    bal = d["label_balance"]
    if plan.task == "regression":
        blocks.append(facts([("Target mean", f"train {num(bal['train_mean'])}, test {num(bal['test_mean'])}",
                              file("evidence/data.json"))], title="Label balance"))
    else:
        labels = sorted(set(bal["train"]) | set(bal["test"]))
        blocks.append(table(("Class", "Train rows", "Test rows"),
                            [(c, bal["train"].get(c, 0), bal["test"].get(c, 0)) for c in labels],
                            file("evidence/data.json"), title="Label balance"))
    described = {c.name: c.description for c in plan.columns}
    cols = [(Cell(c["name"], code=True), c["dtype"], yes(c["nullable"]), _checks_text(c), yes(c["pii"]),
             yes(c["sensitive"]), c["masking"] or "-", yes(c["required"]),
             described.get(c["name"]) or ("target" if c["name"] == plan.target else "-"))
            for c in sorted(ev.contract["columns"], key=lambda c: c["name"])]
    blocks.append(table(("Column", "Dtype", "Nullable", "Checks", "PII", "Sensitive", "Masking", "Model input",
                         "Description"), cols, file("contract.json"), key("data.columns"),
                        title="Data contract"))
    return blocks


def features(plan: Plan, ev: Evidence) -> list[Block]:
    inputs = {i["name"]: i["type"] for i in ev.features["inputs"]}
    index = {f.name: i for i, f in enumerate(plan.feature_specs)}
    rows = [(Cell(f.name, code=True), ", ".join(s for s in (f.source, f.other) if s), f.transform,
             inputs[f.name], f.summary, key(f"features[{index[f.name]}]")) for f in plan.features]
    blocks = [table(("Feature", "Columns", "Transform", "ONNX input", "Description", "Source"), rows,
                    file("features.json"), key("features"), title="Model inputs")]
    if ev.features["dropped"]:
        blocks.append(table(("Column", "Reason", "Source"),
                            [(Cell(d.source, code=True), d.reason, key(f"features[{index[d.name]}].reason"))
                             for d in plan.dropped], file("features.json"), title="Columns kept out of the model"))
    return blocks


def model(plan: Plan, ev: Evidence) -> list[Block]:
    params = [(Cell(k, code=True), Cell(json.dumps(v), code=True), key(f"model.params.{k}")) for k, v in plan.params]
    classes = ", ".join(ev.features["classes"]) or "(regression: one value)"
    split = ev.data["split"]
    if plan.task == "regression":
        rule = "the predicted value"
    elif plan.positive_class is not None:
        rule = f"'{plan.positive_class}' when its probability is at least {num(ev.features['threshold'])}"
    else:
        rule = "the class with the highest probability"
    assumptions = [
        ("Decision rule", plan.problem.decision, key("problem.decision")),
        ("Predicted label", rule, file("features.json")),
        ("Holdout represents future data", f"{plan.data.split.method} split, {split['test']} test rows",
         (key("data.split"), file("evidence/data.json"))),
        ("Inputs known at prediction time", f"{len(plan.features)} features; {len(plan.dropped)} columns kept out "
         "(see Features)", (key("features"), file("features.json"))),
        ("Labels arrive after", days(plan.monitoring.label_delay_days), key("monitoring.label_delay_days")),
    ]
    return [
        facts([
            ("Estimator", f"{plan.estimator} ({plan.estimator_module})", key("model.estimator")),
            ("Classes (probability order)", classes, file("features.json")),
            ("Exported as", "ONNX: model.onnx, preprocessing and estimator in one graph", file("model.onnx")),
            ("Model sha256", Cell(ev.blessing["model_sha256"], code=True), file("evidence/blessing.json")),
            ("Training code", "pipeline/train.py (generated; DO NOT EDIT)", file("pipeline/train.py")),
        ]),
        table(("Parameter", "Value", "Source"), params, key("model.params"), title="Parameters")
        if params else text("model.params is empty: the estimator runs with scikit-learn's defaults.",
                            key("model.params"), title="Parameters"),
        facts(assumptions, title="Assumptions"),
    ]
