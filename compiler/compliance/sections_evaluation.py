"""Sections on how the model performs: the gate status, evaluation against thresholds,
fairness, explanations and ONNX parity."""
from __future__ import annotations

from aiops.compiler.plan import Plan
from aiops.compiler.compliance.model import (Bar, Bars, Block, Cell, Chart, Curve, Evidence, Histogram, Matrix, Panel, bound_text, chart,
                    f4, facts, file, key, num, result, table, text, yes)

TOP_FEATURES = 10  # rows of the importance table; the chart shows up to 15
INSUFFICIENT = "insufficient data"


def _result(t: dict) -> Cell:
    """pass, FAIL, or 'insufficient data' (a figure the data cannot give: never a pass)."""
    if t.get("status") == INSUFFICIENT:
        return Cell(INSUFFICIENT, tone="fail" if t.get("kind") in ("metric", "fairness") else "muted")
    return result(bool(t["passed"]))


def _value(t: dict) -> str:
    if t.get("value") is None and t.get("reason"):
        return f"{INSUFFICIENT}: {t['reason']}"
    v = t.get("value_text") or f4(t.get("value"))
    ci = t.get("interval_95")
    return f"{v} (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else v


def _thresholds(ev: Evidence) -> tuple[int, int]:
    ts = ev.evaluation["thresholds"]
    return sum(bool(t["passed"]) for t in ts), len(ts)


def _status(ev: Evidence) -> tuple[str, str]:
    passed, total = _thresholds(ev)
    from aiops.compiler.governance.overrides import status_note

    if ev.blessing["blessed"]:
        note = status_note(ev.overrides)
        return (f"BLESSED: all {total} thresholds passed{' as overridden' if note else ''}; serve and score accept "
                f"this model.{note}", "pass")
    failed = ev.blessing["failed"]
    why = (f"{len(failed)} of {total} thresholds failed: {'; '.join(failed)}" if failed
           else "the spec sets no threshold, and with no thresholds nothing is blessed")
    return f"NOT BLESSED: {why}. serve and score refuse this model.{status_note(ev.overrides)}", "fail"


def _spec_key_of(t: dict, plan: Plan) -> Cell:
    th = plan.thresholds
    if t["kind"] == "metric":
        return key(f"thresholds.evaluation.{t['name']}")
    if t["kind"] == "slice":
        for i, s in enumerate(th.slices):
            if t["name"].startswith(f"{s.metric} where {s.column} in "):
                return key(f"thresholds.slices[{i}]")
    if t["kind"] == "fairness":
        for i, fb in enumerate(th.fairness):
            if t["name"].startswith(f"{fb.metric} across {fb.attribute}"):
                return key(f"thresholds.fairness[{i}]")
    return key("thresholds.parity")


def evaluation(plan: Plan, ev: Evidence) -> list[Block]:
    e = ev.evaluation
    gate = [(t["kind"], t["name"], _value(t), t["bound_text"], _result(t), _spec_key_of(t, plan))
            for t in e["thresholds"]]
    from aiops.compiler.governance.overrides import gate_columns

    head, gate = gate_columns(ev.overrides, gate)
    passed, total = _thresholds(ev)
    blocks = [
        text(f"Evaluated on {e['rows']} holdout rows with the ONNX model that is served. {passed} of {total} "
             f"thresholds passed; {ev.blessing['rule']}.", file("evidence/evaluation.json"),
             file("evidence/blessing.json"), tone="pass" if e["passed"] else "fail"),
        table(head, gate, file("evidence/evaluation.json"), title="Gate"),
    ]
    if not plan.thresholds.evaluation:
        blocks.append(text("thresholds.evaluation is empty: no overall holdout metric is bounded.",
                           key("thresholds.evaluation")))
    charts = []
    curves = e["curves"]
    auc = e["metrics"].get("roc_auc")
    if "roc" in curves:
        charts.append(Chart("roc", "roc", "ROC curve", f"Holdout ROC curve of the positive class "
                            f"'{plan.positive_class}'" + (f", AUC {f4(auc)}" if auc is not None else "") + ".",
                            Curve(tuple(curves["roc"]["fpr"]), tuple(curves["roc"]["tpr"]),
                                  label="model" + (f", AUC {f4(auc)}" if auc is not None else ""))))
    if "calibration" in curves:
        cal = curves["calibration"]
        charts.append(Chart("calibration", "calibration", "Calibration",
                            "Observed rate of the positive class against the mean predicted probability, per "
                            "tenth of the probability range; the numbers are rows per bin.",
                            Curve(tuple(c["mean_predicted"] for c in cal), tuple(c["observed_rate"] for c in cal),
                                  tuple(c["rows"] for c in cal))))
    if "confusion_matrix" in curves:
        cm = curves["confusion_matrix"]
        charts.append(Chart("confusion_matrix", "confusion", "Confusion matrix",
                            "Holdout rows by true class (rows) and predicted class (columns).",
                            Matrix(tuple(cm["labels"]), tuple(tuple(r) for r in cm["matrix"]))))
    if "residuals" in curves:
        h = curves["residuals"]["histogram"]
        charts.append(Chart("residuals", "histogram", "Residuals", "Holdout residuals (true - predicted).",
                            Histogram(tuple(h["edges"]), tuple(h["counts"]))))
    blocks += [chart(c, file("evidence/evaluation.json")) for c in charts]
    slices = e["slices"]
    if slices:
        rows = [(s["column"], s["group"], s["metric"], s["rows"], _value(s) if s["evaluated"] else
                 f"{INSUFFICIENT}: {s.get('reason') or 'too few rows'}", bound_text(s["min"], s["max"]),
                 result(_within(s["value"], s["min"], s["max"])) if s["evaluated"] else
                 Cell(INSUFFICIENT, tone="muted"))
                for s in slices]
        blocks.append(table(("Column", "Group", "Metric", "Rows", "Value", "Bound", "Result"), rows,
                            file("evidence/evaluation.json"), key("thresholds.slices"), title="Metrics by group"))
        panels = []
        for col in dict.fromkeys(s["column"] for s in slices):
            bars = tuple(Bar(str(s["group"]), s["value"], lo=s["min"], hi=s["max"],
                             tone="pass" if _within(s["value"], s["min"], s["max"]) else "fail")
                         for s in slices if s["column"] == col and s["evaluated"] and s["value"] is not None)
            if bars:
                metric = next(s["metric"] for s in slices if s["column"] == col)
                panels.append(Panel(f"{metric} by {col}", bars))
        if panels:
            c = Chart("slices", "bars", "Metrics by group",
                      "Holdout metric per group; black ticks mark the bounds, red bars fail them.",
                      Bars(tuple(panels), "metric value"))
            blocks.append(chart(c, file("evidence/evaluation.json"), title=""))
    else:
        blocks.append(text("thresholds.slices is empty: no metric by group is part of the gate.",
                           key("thresholds.slices"), title="Metrics by group"))
    return blocks


def _within(v: float | None, lo: float | None, hi: float | None) -> bool:
    return v is not None and (lo is None or v >= lo) and (hi is None or v <= hi)


FAIRNESS_DEFINITIONS = {
    "demographic_parity_difference": "largest minus smallest selection rate (share predicted the class) "
                                     "among the groups with enough rows",
    "disparate_impact_ratio": "smallest divided by largest selection rate among the groups with enough rows",
    "equal_opportunity_difference": "largest minus smallest true positive rate among the groups with enough "
                                    "rows and at least 5 positives",
    "mean_prediction_difference": "largest minus smallest mean prediction among the groups with enough rows "
                                  "(in the target's unit)",
    "mean_absolute_error_difference": "largest minus smallest mean absolute error among the groups with enough "
                                      "labelled rows (in the target's unit)",
    "bounded_group_loss": "largest mean absolute error of a group with enough labelled rows (in the target's "
                          "unit)",
}


def _group_naming(f: dict) -> Block | None:
    """How the groups of a coded or indicator attribute got their names (runtime/evaluation.attribute_groups)."""
    if f.get("indicators"):
        cols = ", ".join(f"{name} ({col} = 1)" for col, name in f["indicators"].items())
        return text(f"{f['attribute']} is given by indicator columns; a row's group is the column set to 1: {cols}. "
                    "A row with none set is in '(none)', with several in '(multiple)', and with none set and one "
                    "missing in '(missing)'.", key(f"data.indicators.{f['attribute']}"))
    if f.get("labels"):
        named = ", ".join(f"{name} ({f['attribute']} = {code})" for code, name in f["labels"].items())
        return text(f"Groups of {f['attribute']}, by the names the spec gives its codes: {named}.",
                    key(f"data.columns.{f['attribute']}.labels"))
    return None


def fairness(plan: Plan, ev: Evidence) -> list[Block]:
    fair = ev.evaluation["fairness"]
    sensitive = [c.name for c in plan.columns if c.sensitive]
    if not fair:
        return [text("The spec sets no fairness bound (thresholds.fairness is empty) and marks no column "
                     "sensitive, so there are no groups to compare.", key("thresholds.fairness"),
                     key("data.columns"))]
    regression = plan.task == "regression"
    what = ("the model's predictions and errors" if regression else
            "the model's decisions about one class (one-vs-rest for a multiclass model; the class is named)")
    blocks = [text(f"Sensitive columns: {', '.join(sensitive) or '(none marked)'}. Each bound compares {what} "
                   f"across the groups of one column on the holdout.", key("data.columns"),
                   key("thresholds.fairness"))]
    summary_rows = [(Cell(f["attribute"], code=True), f["metric"] + (f" (class '{f['positive_class']}')"
                                                                     if f.get("positive_class") else ""),
                     _value(f), bound_text(f["min"], f["max"]), _result({**f, "kind": "fairness",
                                                                          "passed": _within(f["value"], f["min"],
                                                                                            f["max"])}),
                     FAIRNESS_DEFINITIONS[f["metric"]], key(f"thresholds.fairness[{i}]")) for i, f in enumerate(fair)]
    panels = []
    blocks.append(table(("Attribute", "Metric", "Value", "Bound", "Result", "Definition", "Source"), summary_rows,
                        file("evidence/evaluation.json"), title="Bounds"))
    for f in fair:
        groups = sorted(f["groups"].items())
        title = f"{f['attribute']}: {f['metric']} {_value(f)}"
        naming = _group_naming(f)
        if naming is not None:
            blocks.append(naming)
        if regression:
            rows = [(g, v["rows"], f4(v["mean_prediction"]), f4(v["mean_absolute_error"]), yes(v["included"]))
                    for g, v in groups]
            blocks.append(table(("Group", "Rows", "Mean prediction", "Mean absolute error",
                                 f"Included (>= {f['min_rows']} rows)"), rows, file("evidence/evaluation.json"),
                                title=title))
            continue
        rows = [(g, v["rows"], v["positives"], f4(v["selection_rate"]), f4(v["tpr"]), yes(v["included"]))
                for g, v in groups]
        blocks.append(table(("Group", "Rows", f"Actual '{f.get('positive_class')}'", "Selection rate",
                             "True positive rate", f"Included (>= {f['min_rows']} rows)"), rows,
                            file("evidence/evaluation.json"), title=title))
        ok = "pass" if _within(f["value"], f["min"], f["max"]) else "fail"
        bars = tuple(Bar(g, v["selection_rate"], tone=ok if v["included"] else "muted")
                     for g, v in groups if v["selection_rate"] is not None and v["included"])
        if bars:
            panels.append(Panel(f"{f['attribute']}\n{f['metric']} {f4(f['value'])}, bound "
                                f"{bound_text(f['min'], f['max'])}", bars))
    if panels:
        c = Chart("fairness", "bars", "Selection rate by group",
                  "Share of holdout rows predicted the class, per group of each sensitive column with enough "
                  "rows (smaller groups are in the tables only); green: the column's bound passes, red: it fails.",
                  Bars(tuple(panels), "selection rate", (0.0, 1.0)))
        blocks.append(chart(c, file("evidence/evaluation.json")))
    return blocks


def explanations(plan: Plan, ev: Evidence) -> list[Block]:
    imp = ev.importance
    ex = plan.governance.explainability
    feats = imp["features"]
    top = [(n + 1, Cell(f["name"], code=True), f4(f["mean"]), f4(f["std"])) for n, f in enumerate(feats[:TOP_FEATURES])]
    idle = [f["name"] for f in feats if f["mean"] is not None and f["mean"] <= 0]
    blocks = [
        facts([
            ("Explanations required", yes(ex.required), key("governance.explainability.required")),
            ("Method asked for", ex.method, key("governance.explainability.method")),
            ("Method computed", f"{imp['method']}: {imp['n_repeats']} repeats on {imp['rows']} holdout rows, "
             f"drop in {imp['scoring']}", file("evidence/importance.json")),
        ]),
        table(("Rank", "Feature", "Mean importance", "Std"), top, file("evidence/importance.json"),
              title=f"Top {min(TOP_FEATURES, len(feats))} of {len(feats)} features"),
        text(("Features whose permutation does not lower the score (importance <= 0): " + ", ".join(idle) + ".")
             if idle else "Every feature lowers the score when permuted.", file("evidence/importance.json")),
    ]
    c = Chart("importance", "bars", "Feature importance",
              f"Mean drop in holdout {imp['scoring']} when a feature is permuted (error bars: one standard "
              "deviation over the repeats); the top 15.",
              Bars((Panel("permutation importance", tuple(Bar(f["name"], f["mean"], error=f["std"])
                                                             for f in feats[:15])),), f"drop in {imp['scoring']}"))
    blocks.append(chart(c, file("evidence/importance.json")))
    return blocks


def parity(plan: Plan, ev: Evidence) -> list[Block]:
    p = ev.parity
    rows = []
    for part in ("holdout", "edge_rows"):
        r = p[part]
        for out in sorted(k for k, v in r.items() if isinstance(v, dict)):
            v = r[out]
            measured = ("max abs diff", v["max_abs_diff"], v["atol"]) if "max_abs_diff" in v else \
                ("mismatch rate", v["mismatch_rate"], v["max_mismatch_rate"])
            rows.append((part, r["rows"], out, f"{measured[0]} {num(measured[1])}", num(measured[2]),
                         result(v["passed"])))
    return [
        text("scikit-learn and onnxruntime score the same rows: the holdout, and edge rows built from the "
             "data contract's bounds and categories. The ONNX model is what serve and score run.",
             file("evidence/parity.json")),
        table(("Rows", "Count", "Output", "Measured", "Tolerance", "Result"), rows, file("evidence/parity.json"),
              key("thresholds.parity")),
    ]
