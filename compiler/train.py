"""The build's training half: run the generated pipeline on the spec's data, export the
model to ONNX, verify it, evaluate it against the gate and write the evidence."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops.runtime import evaluation as EV
from aiops.runtime.blessing import RULE, rule
from aiops.runtime.contract import Contract
from aiops.runtime.features import FeatureStep
from aiops.compiler.fitting import Fitted, RejectedRows
from aiops.runtime.masking import small_groups_hidden
from aiops.runtime.predictor import Predictor
from aiops.runtime.profile import build_profile
from aiops.runtime.stable import dumps, file_sha256
from aiops.compiler.training import DataError, model_frame

from aiops.compiler import schema as S
from aiops.compiler.export import edge_records, parity, to_onnx_bytes
from aiops.compiler.generated import import_pipeline
from aiops.compiler.plan import Plan, contract_dict, jsonable


MIN_HOLDOUT_CLASS_ROWS = 5  # below this a class's metrics on the holdout mean nothing


class HoldoutError(DataError):
    """The split leaves a class of the training labels (almost) absent from the holdout (E907)."""
    code = "E907"
    key = "data.split"


def _check_holdout_classes(y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> None:
    """Fail before training when a class has fewer than MIN_HOLDOUT_CLASS_ROWS holdout rows."""
    classes, train_counts = np.unique(y[tr], return_counts=True)
    test = dict(zip(*np.unique(y[te], return_counts=True)))
    few = [(str(c), int(test.get(c, 0)), int(n)) for c, n in zip(classes.tolist(), train_counts.tolist())
           if test.get(c, 0) < MIN_HOLDOUT_CLASS_ROWS]
    if few:
        raise HoldoutError(
            f"the split leaves {len(few)} class{'es' if len(few) > 1 else ''} with fewer than "
            f"{MIN_HOLDOUT_CLASS_ROWS} holdout rows",
            *[f"class '{c}': {n_te} row{'s' if n_te != 1 else ''} in the holdout, {n_tr} in training"
              for c, n_te, n_tr in few],
            "metrics of such a class on the holdout (recall, one-vs-rest roc_auc, fairness) would be noise",
            help="use data.split.method: stratified, a larger test_size, or move test_start/end so the holdout "
                 "holds every class")


class ParityError(DataError):
    """The ONNX export disagrees with scikit-learn beyond thresholds.parity (E906, at that key)."""
    code = "E906"
    key = "thresholds.parity"


def _write(stage: Path, rel: str, obj: Any) -> None:
    p = stage / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(obj))


def _value_text(v: float | None, reason: str | None = None) -> str:
    return f"{EV.INSUFFICIENT}: {reason or 'no value'}" if v is None else f"{v:.4f}"


@dataclass
class Run:
    """What the stages share: the plan, the staging folder and the fitted pipeline's output."""
    plan: Plan
    stage: Path
    contract: Contract
    steps: list[FeatureStep]
    fitted: Fitted
    qfile: Path
    classes: tuple[str, ...] = ()

    @property
    def tr(self) -> np.ndarray:
        return self.fitted.parts["train"]

    @property
    def te(self) -> np.ndarray:
        return self.fitted.parts["test"]


def train_and_verify(plan: Plan, spec: S.Spec, stage: Path, progress, keep_quarantine: bool = True
                     ) -> dict[str, Any]:
    """Train by running the generated pipeline in `stage`, then verify and document the model:
    each stage writes its evidence into `stage`. `keep_quarantine=False` (compile --check)
    writes nothing outside `stage`."""
    run = fit_generated(plan, spec, stage, progress, keep_quarantine)
    write_model_files(run)
    pred, onnx_bytes, parity_ev = export_and_check_parity(run, progress)
    evaluation, metrics, te_feed = evaluate(run, pred, parity_ev, progress)
    explain(run, pred, te_feed, progress)
    profile(run, pred, progress)
    data_ev = data_evidence(run)
    blessing = bless(run, evaluation, onnx_bytes)
    _write(stage, "serving.json", _serving(plan))
    from aiops.compiler.governance.policy import policy_doc

    _write(stage, "governance.json", policy_doc(plan))
    progress("writing the compliance document")
    from aiops.compiler.compliance import write_compliance

    write_compliance(plan, stage)
    progress.done("compliance.md and compliance.html")
    return {"data": data_ev, "evaluation": evaluation, "parity": parity_ev, "blessed": blessing["blessed"],
            "metrics": metrics, "model_sha256": blessing["model_sha256"]}


def fit_generated(plan: Plan, spec: S.Spec, stage: Path, progress, keep_quarantine: bool = True) -> Run:
    """Stage 1-2, data and fit: the generated pipeline's fit() reads its DATA, validates the rows
    (the quarantine file is kept under env.quarantine_dir), derive the features, split and fit."""
    gen = import_pipeline(stage / "pipeline", plan.name)
    contract = Contract.from_dict(contract_dict(plan))
    qfile = Path(spec.env.quarantine_dir) / f"{plan.name}.csv"
    progress(f"validating {plan.data_source} against the data contract")

    def observe(stage_name: str, **info: Any) -> None:
        if stage_name == "validated":
            v = info["v"]
            if keep_quarantine:
                _keep_quarantine(v, qfile)
            progress.done(v.counts() + (f" (reasons in {qfile})" if v.quarantined else ""))
        elif stage_name == "split":
            y, parts = info["y"], info["parts"]
            tr, te, held = parts["train"], parts["test"], parts["held_back"]
            if plan.task != "regression":
                _check_holdout_classes(y, tr, te)
            progress(f"fitting {plan.estimator} on {len(tr)} rows ({len(te)} held out"
                     + (f", {len(held)} held back for monitoring" if len(held) else "") + ")")

    try:
        fitted = gen["train"].fit(contract, security=jsonable(plan.security), observe=observe)
    except RejectedRows as exc:
        raise DataError(exc.summary, *exc.notes, f"rejected rows and their reasons: {qfile}", help=exc.help) from None
    progress.done("fitted")
    steps = list(gen["features"].STEPS)
    classes = tuple(str(c) for c in fitted.pipe.classes_) if plan.task != "regression" else ()
    return Run(plan, stage, contract, steps, fitted, qfile, classes)


def _keep_quarantine(v, qfile: Path) -> None:
    if v.quarantined:
        qfile.parent.mkdir(parents=True, exist_ok=True)
        v.quarantine.to_csv(qfile, index=False, lineterminator="\n")
    elif qfile.exists():
        qfile.unlink()


def write_model_files(run: Run) -> None:
    """features.json (the steps the pipeline ran, the model inputs) and contract.json."""
    plan = run.plan
    features_json = {
        "name": plan.name, "version": plan.version, "task": plan.task, "target": plan.target,
        "positive_class": plan.positive_class, "classes": list(run.classes), "threshold": 0.5,
        "steps": [{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(s).items()}
                  for s in run.steps],
        "inputs": [{"name": f.name, "type": "string" if f.kind == "categorical" else "float"} for f in plan.features],
        "dropped": {d.source: d.reason for d in plan.dropped},
    }
    _write(run.stage, "features.json", features_json)
    _write(run.stage, "contract.json", run.contract.to_dict())


def export_and_check_parity(run: Run, progress) -> tuple[Predictor, bytes, dict[str, Any]]:
    """Stage 3: model.onnx, and evidence/parity.json (holdout and edge rows against scikit-learn)."""
    plan, fitted, cfg = run.plan, run.fitted, run.plan.verify_config
    progress("exporting to ONNX and checking parity with scikit-learn")
    onnx_bytes = to_onnx_bytes(fitted.pipe, plan.features, plan.has_proba, plan.name)
    (run.stage / "model.onnx").write_bytes(onnx_bytes)
    pred = Predictor(run.stage)
    tol = cfg["parity"]
    cols = fitted.validated.columns
    te_frame, te_feed = model_frame(run.steps, {k: a[run.te] for k, a in cols.items()})
    par_hold = parity(fitted.pipe, pred, te_frame, te_feed, tol, plan.task != "regression")
    edges = edge_records(run.contract, cols, int(tol.get("edge_rows") or 200), cfg["seed"])
    e_frame, e_feed = model_frame(run.steps, edges)  # edge values are valid by construction
    par_edge = parity(fitted.pipe, pred, e_frame, e_feed, tol, plan.task != "regression")
    parity_ev = {"holdout": par_hold, "edge_rows": par_edge, "tolerances": tol,
                 "passed": par_hold["passed"] and par_edge["passed"]}
    _write(run.stage, "evidence/parity.json", parity_ev)
    progress.done(f"parity {'passed' if parity_ev['passed'] else 'FAILED'} on {par_hold['rows']} holdout rows and "
                  f"{par_edge['rows']} edge rows")
    if not parity_ev["passed"]:
        worst = {k: v2 for k, v2 in par_hold.items() if isinstance(v2, dict) and not v2["passed"]} or \
            {k: v2 for k, v2 in par_edge.items() if isinstance(v2, dict) and not v2["passed"]}
        raise ParityError("the ONNX model does not match scikit-learn within the spec's tolerances",
                          *[f"{k}: {json.dumps(v2, sort_keys=True)}" for k, v2 in worst.items()],
                          help="see docs/artefacts.md#parity for what the export guarantees per estimator; "
                               "loosen thresholds.parity only if you accept that difference, or choose another "
                               "estimator")
    return pred, onnx_bytes, parity_ev


def evaluate(run: Run, pred: Predictor, parity_ev: dict[str, Any], progress
             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Stage 4: evidence/evaluation.json, on the holdout, with the model that will be served (ONNX)."""
    plan, cfg, classes, te = run.plan, run.plan.verify_config, run.classes, run.te
    cols = run.fitted.validated.columns
    progress("evaluating on the holdout: metrics, slices, fairness")
    te_feed = {k: a[te] for k, a in run.fitted.feed.items()}
    out = pred.run_feed(te_feed)
    yt = run.fitted.y[te]
    thresholds: list[dict[str, Any]] = []
    metrics = {}
    for name, b in cfg["evaluation"].items():
        val, why = EV.measure(name, yt, out, classes, plan.positive_class)
        metrics[name] = val
        ci = EV.bootstrap_interval(name, yt, out, classes, plan.positive_class, cfg["seed"]) \
            if val is not None else None
        thresholds.append({"kind": "metric", "name": name, "value": val, **b, "passed": EV.check_bound(val, b),
                           "status": EV.status(val, b), "reason": why, "interval_95": ci})
    # a group of a PII column too small to be measured may be one person: its label is hidden
    # (evidence is committed and reproducible, so a keyed hash cannot be used here)
    pii = {c.name for c in run.contract.columns if c.pii}
    slices = []
    for s in cfg["slices"]:
        g = EV.groups_of(cols[s["column"]][te], s.get("bins"), s.get("labels"))
        if s["column"] in pii and not s.get("bins"):
            g = small_groups_hidden(g, s["min_rows"])
        for grp in sorted(set(g.tolist())):
            m = g == grp
            rows = int(m.sum())
            sub = {k: a[m] for k, a in out.items()}
            if rows >= s["min_rows"]:
                val, why = EV.measure(s["metric"], yt[m], sub, classes, plan.positive_class)
            else:
                val, why = None, f"{rows} rows, fewer than min_rows ({s['min_rows']})"
            ci = EV.bootstrap_interval(s["metric"], yt[m], sub, classes, plan.positive_class, cfg["seed"]) \
                if val is not None else None
            entry = {"column": s["column"], "group": grp, "metric": s["metric"], "rows": rows, "value": val,
                     "min": s.get("min"), "max": s.get("max"), "evaluated": val is not None,
                     "status": EV.status(val, s), "reason": why, "interval_95": ci}
            slices.append(entry)
            if entry["evaluated"]:  # a group with insufficient data is shown, not part of the gate
                thresholds.append({"kind": "slice", "name": f"{s['metric']} where {s['column']} in {grp}",
                                   "value": val, "min": s.get("min"), "max": s.get("max"),
                                   "passed": EV.check_bound(val, s), "status": EV.status(val, s), "reason": None,
                                   "interval_95": ci})
    fairness = []
    for fb in cfg["fairness"]:
        g = EV.attribute_groups(fb, lambda c: cols[c][te])
        if fb["attribute"] in pii and not fb.get("bins"):
            g = small_groups_hidden(g, EV.FAIRNESS_MIN_ROWS)
        cls = str(fb["positive_class"]) if fb.get("positive_class") is not None else plan.positive_class
        res = EV.fairness(fb["metric"], yt, out.get("label"), g, cls, value=out.get("value"))
        name = f"{fb['metric']} across {fb['attribute']}" + (f" for class '{cls}'" if fb.get("positive_class")
                                                             is not None else "")
        fairness.append({"attribute": fb["attribute"], "metric": fb["metric"], "min": fb.get("min"),
                         "max": fb.get("max"), "status": EV.status(res["value"], fb), **res,
                         **{k: fb[k] for k in ("labels", "indicators") if fb.get(k)}})
        thresholds.append({"kind": "fairness", "name": name, "value": res["value"], "min": fb.get("min"),
                           "max": fb.get("max"), "passed": EV.check_bound(res["value"], fb),
                           "status": EV.status(res["value"], fb), "reason": res["reason"]})
    for t in thresholds:
        t["value_text"] = _value_text(t["value"], t.get("reason"))
        t["bound_text"] = EV.bound_text(t)
    thresholds.append({"kind": "parity", "name": "ONNX parity with scikit-learn", "value": None,
                       "value_text": "passed" if parity_ev["passed"] else "failed",
                       "bound_text": "within thresholds.parity", "passed": parity_ev["passed"],
                       "status": "passed" if parity_ev["passed"] else "failed"})
    blessed = rule(bool(cfg["evaluation"] or cfg["slices"] or cfg["fairness"]), (t["passed"] for t in thresholds))
    evaluation = {"rows": int(len(te)), "metrics": metrics, "thresholds": thresholds, "slices": slices,
                  "fairness": fairness, "curves": EV.curves(yt, out, classes, plan.positive_class),
                  "passed": blessed}
    _write(run.stage, "evidence/evaluation.json", evaluation)
    failed = [t for t in thresholds if not t["passed"]]
    progress.done(f"{len(thresholds) - len(failed)} of {len(thresholds)} thresholds passed")
    return evaluation, metrics, te_feed


def explain(run: Run, pred: Predictor, te_feed: dict[str, np.ndarray], progress) -> None:
    """Stage 5: evidence/importance.json, permutation importance on the holdout."""
    progress("explaining: permutation importance on the holdout")
    importance = _importance(pred, te_feed, run.fitted.y[run.te], run.plan, run.plan.verify_config, run.classes,
                             max_rows=5000)
    _write(run.stage, "evidence/importance.json", importance)
    progress.done(f"top features: {', '.join(f['name'] for f in importance['features'][:3])}")


def profile(run: Run, pred: Predictor, progress) -> None:
    """Stage 6: evidence/profile.json, the reference profile for monitoring (no raw rows)."""
    progress("profiling the training data for monitoring")
    tr, fitted = run.tr, run.fitted
    tr_cols = {k: a[tr] for k, a in fitted.validated.columns.items()}
    tr_out = pred.run_feed({k: a[tr] for k, a in fitted.feed.items()})
    prof = build_profile(run.contract, tr_cols, tr_out, run.classes, run.plan.positive_class, fitted.y[tr])
    _write(run.stage, "evidence/profile.json", prof)
    progress.done(f"{len(prof['columns'])} columns profiled")


def data_evidence(run: Run) -> dict[str, Any]:
    """evidence/data.json: the source's hash, the row counts, the quarantine, the split."""
    plan, v, parts, y = run.plan, run.fitted.validated, run.fitted.parts, run.fitted.y
    cfg = plan.train_config
    data_ev = {
        "source": plan.data_source, "format": plan.data_format, "sha256": file_sha256(Path(plan.data_source)),
        "rows_in": v.rows_in, "accepted": v.accepted, "quarantined": v.quarantined, "blank_lines_skipped": v.blank,
        "rejected_share": v.quarantined / v.rows_in if v.rows_in else 0.0,
        "max_rejected_share": cfg["max_rejected_share"],
        "reasons": v.reasons, "quarantine_file": str(run.qfile) if v.quarantined else None,
        "split": {"method": cfg["split"]["method"], "train": int(len(run.tr)), "test": int(len(run.te)),
                  "held_back": int(len(parts["held_back"]))},
        "label_balance": _balance(y, run.tr, run.te, plan.task),
    }
    _write(run.stage, "evidence/data.json", data_ev)
    from aiops.compiler.rowkeys import evidence as rows_evidence, row_hashes

    hashes = row_hashes(v.frame, plan.key, [c.name for c in plan.columns], plan.name)
    _write(run.stage, "evidence/rows.json", rows_evidence(hashes, run.tr, run.te, plan.key))
    return data_ev


def bless(run: Run, evaluation: dict[str, Any], onnx_bytes: bytes) -> dict[str, Any]:
    """evidence/blessing.json: blessed only when every threshold passes and at least one is set."""
    blessing = {"blessed": evaluation["passed"], "spec_hash": run.plan.spec_hash, "model_sha256": _sha(onnx_bytes),
                "failed": [t["name"] for t in evaluation["thresholds"] if not t["passed"]],
                "rule": RULE}
    _write(run.stage, "evidence/blessing.json", blessing)
    return blessing


def _sha(b: bytes) -> str:
    import hashlib

    return hashlib.sha256(b).hexdigest()


def _balance(y, tr, te, task) -> dict[str, Any]:
    if task == "regression":
        return {"train_mean": float(np.mean(y[tr])), "test_mean": float(np.mean(y[te]))}
    out = {}
    for name, idx in (("train", tr), ("test", te)):
        vals, counts = np.unique(y[idx], return_counts=True)
        out[name] = {str(a): int(b) for a, b in zip(vals, counts)}
    return out


def _importance(pred, feed: dict[str, np.ndarray], y: np.ndarray, plan: Plan, cfg, classes,
                max_rows: int, n_repeats: int = 5) -> dict[str, Any]:
    """Permutation importance on the holdout, computed on the model that is served (ONNX):
    the drop of the primary score when one model input is shuffled, n_repeats times."""
    n = len(y)
    rng = np.random.default_rng(cfg["seed"])
    if n > max_rows:  # a fixed, seeded subsample keeps this step fast on large holdouts
        pick = np.sort(rng.choice(n, max_rows, replace=False))
        feed, y, n = {k: v[pick] for k, v in feed.items()}, y[pick], max_rows
    scoring = importance_metric(plan.task, y, pred.run_feed(feed), classes, plan.positive_class)

    def score(f: dict[str, np.ndarray]) -> float:
        v = EV.metric(scoring, y, pred.run_feed(f), classes, plan.positive_class)
        return float("nan") if v is None else v

    base = score(feed)
    from aiops.compiler.estimators import METRICS

    sign = 1.0 if METRICS[scoring][3] else -1.0  # a loss rises when a useful feature is shuffled
    feats = []
    for name in feed:  # in the order of the model inputs
        drops = []
        for _ in range(n_repeats):
            shuffled = dict(feed)
            shuffled[name] = feed[name][rng.permutation(n)]
            drops.append(sign * (base - score(shuffled)))
        feats.append({"name": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    feats.sort(key=lambda f: (-round(f["mean"], 10), f["name"]))
    return {"method": "permutation_importance", "scoring": scoring, "baseline_score": base,
            "n_repeats": n_repeats, "rows": int(n), "model": "model.onnx", "features": feats}


def importance_metric(task: str, y: np.ndarray, out: dict[str, np.ndarray], classes, positive) -> str:
    """The score permutation importance watches: the first of the task's list that the
    holdout can give (roc_auc needs two classes in it; r2 needs labels that vary)."""
    order = ("r2", "mae") if task == "regression" else ("roc_auc", "log_loss", "accuracy")
    for name in order:
        if EV.measure(name, y, out, classes, positive)[0] is not None:
            return name
    return order[-1]


def _serving(plan: Plan) -> dict[str, Any]:
    sec = plan.security
    return {"name": plan.name, "version": plan.version, "task": plan.task, "serving": jsonable(plan.serving),
            "security": {"masking": jsonable(sec.masking), "roles": jsonable(sec.roles),
                         "audit_log": jsonable(sec.audit_log),
                         "encryption_at_rest": jsonable(sec.encryption_at_rest),
                         "key_source": sec.key_source},
            "risk_tier": plan.risk_tier,  # a high-risk model is never served without API keys
            "key": plan.key}
