"""The build's training half: run the generated pipeline on the spec's data, export the
model to ONNX, verify it, evaluate it against the gate and write the evidence."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runtime.training import DataError

from . import schema as S
from .plan import Plan


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
            f"metrics of such a class on the holdout (recall, one-vs-rest roc_auc, fairness) would be noise",
            help="use data.split.method: stratified, a larger test_size, or move test_start/end so the holdout "
                 "holds every class")


class ParityError(DataError):
    """The ONNX export disagrees with scikit-learn beyond thresholds.parity (E906, at that key)."""
    code = "E906"
    key = "thresholds.parity"


def _write(stage: Path, rel: str, obj: Any) -> None:
    from .build import dumps

    p = stage / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(obj))


def _value_text(v: float | None, reason: str | None = None) -> str:
    from runtime.evaluation import INSUFFICIENT

    return f"{INSUFFICIENT}: {reason or 'no value'}" if v is None else f"{v:.4f}"


def train_and_verify(plan: Plan, spec: S.Spec, stage: Path, progress) -> dict[str, Any]:
    from runtime import evaluation as EV
    from runtime.contract import Contract
    from runtime.features import FeatureStep
    from runtime.predictor import Predictor
    from runtime.stable import file_sha256
    from runtime.datafile import field_mask
    from runtime.training import labels, model_frame, quarantine_masker, read_table, split, validate

    from .build import _import_pipeline
    from .export import edge_records, parity, to_onnx_bytes

    cfg = plan.train_config
    gen = _import_pipeline(stage / "pipeline", plan)
    contract = Contract.from_dict({"columns": [c.contract for c in plan.columns], "target": plan.target,
                                   "key": plan.key})
    steps = [FeatureStep.from_dict(f.step) for f in plan.features]

    # 1. data: read, validate lazily, quarantine
    src = Path(plan.data_source)
    progress(f"validating {plan.data_source} against the data contract")
    masker = quarantine_masker(contract, plan.spec["security"])
    v = validate(read_table(src, plan.data_format, field_mask(masker, contract.by_name)), gen["schema"].SCHEMA, contract, masker)
    share = v.quarantined / v.rows_in if v.rows_in else 0.0
    qdir = Path(spec.env.quarantine_dir)
    qfile = qdir / f"{plan.name}.csv"
    if v.quarantined:
        qdir.mkdir(parents=True, exist_ok=True)
        v.quarantine.to_csv(qfile, index=False, lineterminator="\n")
    elif qfile.exists():
        qfile.unlink()
    progress.done(v.counts() + (f" (reasons in {qfile})" if v.quarantined else ""))
    from runtime.training import DataError

    if share > cfg["max_rejected_share"]:
        top = sorted(v.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        raise DataError(
            f"{v.quarantined} of {v.rows_in} rows ({share:.1%}) break the data contract; "
            f"the spec tolerates {cfg['max_rejected_share']:.1%}",
            *[f"{n} rows: {r}" for r, n in top], f"rejected rows and their reasons: {qfile}",
            help="fix the data, or the contract if it is wrong; data.max_rejected_share sets the tolerance")

    # 2. features, split, fit
    y = labels(v.frame, cfg)
    frame, feed = model_frame(steps, v.columns)
    parts = split(frame, v.columns, y, cfg)
    tr, te = parts["train"], parts["test"]
    if plan.task != "regression":
        _check_holdout_classes(y, tr, te)
    progress(f"fitting {plan.estimator} on {len(tr)} rows ({len(te)} held out"
             + (f", {len(parts['held_back'])} held back for monitoring" if len(parts["held_back"]) else "") + ")")
    pipe = gen["train"].model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(frame.iloc[tr], y[tr])
    progress.done("fitted")

    classes = tuple(str(c) for c in pipe.classes_) if plan.task != "regression" else ()
    features_json = {
        "name": plan.name, "version": plan.version, "task": plan.task, "target": plan.target,
        "positive_class": plan.positive_class, "classes": list(classes), "threshold": 0.5,
        "steps": [f.step for f in plan.features],
        "inputs": [{"name": f.name, "type": "string" if f.kind == "categorical" else "float"} for f in plan.features],
        "dropped": {d.source: d.reason for d in plan.dropped},
    }
    _write(stage, "features.json", features_json)
    _write(stage, "contract.json", contract.to_dict())

    # 3. ONNX export and parity
    progress("exporting to ONNX and checking parity with scikit-learn")
    onnx_bytes = to_onnx_bytes(pipe, plan.features, plan.has_proba, plan.name)
    (stage / "model.onnx").write_bytes(onnx_bytes)
    pred = Predictor(stage)
    tol = cfg["parity"]
    te_cols = {k: a[te] for k, a in v.columns.items()}
    te_frame, te_feed = model_frame(steps, te_cols)
    par_hold = parity(pipe, pred, te_frame, te_feed, tol, plan.task != "regression")
    edges = edge_records(contract, v.columns, int(tol.get("edge_rows") or 200), cfg["seed"])
    e_frame, e_feed = model_frame(steps, edges)  # edge values are valid by construction
    par_edge = parity(pipe, pred, e_frame, e_feed, tol, plan.task != "regression")
    parity_ev = {"holdout": par_hold, "edge_rows": par_edge, "tolerances": tol,
                 "passed": par_hold["passed"] and par_edge["passed"]}
    _write(stage, "evidence/parity.json", parity_ev)
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

    # 4. evaluation on the holdout, with the model that will be served (ONNX)
    progress("evaluating on the holdout: metrics, slices, fairness")
    out = pred.run_feed(te_feed)
    yt = y[te]
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
    from runtime.masking import small_groups_hidden

    pii = {c.name for c in contract.columns if c.pii}
    slices = []
    for s in cfg["slices"]:
        g = EV.groups_of(v.columns[s["column"]][te], s.get("bins"))
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
        g = EV.groups_of(v.columns[fb["attribute"]][te], fb.get("bins"))
        if fb["attribute"] in pii and not fb.get("bins"):
            g = small_groups_hidden(g, EV.FAIRNESS_MIN_ROWS)
        cls = str(fb["positive_class"]) if fb.get("positive_class") is not None else plan.positive_class
        res = EV.fairness(fb["metric"], yt, out.get("label"), g, cls, value=out.get("value"))
        name = f"{fb['metric']} across {fb['attribute']}" + (f" for class '{cls}'" if fb.get("positive_class")
                                                             is not None else "")
        fairness.append({"attribute": fb["attribute"], "metric": fb["metric"], "min": fb.get("min"),
                         "max": fb.get("max"), "status": EV.status(res["value"], fb), **res})
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
    from runtime.blessing import RULE, rule

    blessed = rule(bool(cfg["evaluation"] or cfg["slices"] or cfg["fairness"]), (t["passed"] for t in thresholds))
    evaluation = {"rows": int(len(te)), "metrics": metrics, "thresholds": thresholds, "slices": slices,
                  "fairness": fairness, "curves": EV.curves(yt, out, classes, plan.positive_class),
                  "passed": blessed}
    _write(stage, "evidence/evaluation.json", evaluation)
    failed = [t for t in thresholds if not t["passed"]]
    progress.done(f"{len(thresholds) - len(failed)} of {len(thresholds)} thresholds passed")

    # 5. explanations
    progress("explaining: permutation importance on the holdout")
    importance = _importance(pred, te_feed, yt, plan, cfg, classes, max_rows=5000)
    _write(stage, "evidence/importance.json", importance)
    progress.done(f"top features: {', '.join(f['name'] for f in importance['features'][:3])}")

    # 6. reference profile for monitoring (no raw rows)
    progress("profiling the training data for monitoring")
    from runtime.profile import build_profile

    tr_cols = {k: a[tr] for k, a in v.columns.items()}
    tr_out = pred.run_feed({k: a[tr] for k, a in feed.items()})
    profile = build_profile(contract, tr_cols, tr_out, classes, plan.positive_class, y[tr])
    _write(stage, "evidence/profile.json", profile)
    progress.done(f"{len(profile['columns'])} columns profiled")

    data_ev = {
        "source": plan.data_source, "format": plan.data_format, "sha256": file_sha256(src),
        "rows_in": v.rows_in, "accepted": v.accepted, "quarantined": v.quarantined, "blank_lines_skipped": v.blank,
        "rejected_share": share, "max_rejected_share": cfg["max_rejected_share"],
        "reasons": v.reasons, "quarantine_file": str(qfile) if v.quarantined else None,
        "split": {"method": cfg["split"]["method"], "train": int(len(tr)), "test": int(len(te)),
                  "held_back": int(len(parts["held_back"]))},
        "label_balance": _balance(y, tr, te, plan.task),
    }
    _write(stage, "evidence/data.json", data_ev)
    from .rowkeys import evidence as rows_evidence, row_hashes

    hashes = row_hashes(v.frame, plan.key, [c.name for c in plan.columns], plan.name)
    _write(stage, "evidence/rows.json", rows_evidence(hashes, tr, te, plan.key))
    blessing = {"blessed": blessed, "spec_hash": plan.spec_hash, "model_sha256": _sha(onnx_bytes),
                "failed": [t["name"] for t in failed],
                "rule": RULE}
    _write(stage, "evidence/blessing.json", blessing)
    _write(stage, "serving.json", _serving(plan))
    from .governance.policy import policy_doc

    _write(stage, "governance.json", policy_doc(plan))

    # 7. the compliance document, written from the evidence
    progress("writing the compliance document")
    from .compliance import write_compliance

    write_compliance(plan, stage)
    progress.done("compliance.md and compliance.html")
    return {"data": data_ev, "evaluation": evaluation, "parity": parity_ev, "blessed": blessed,
            "metrics": metrics, "model_sha256": blessing["model_sha256"]}


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
    from runtime import evaluation as EV

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
    from .estimators import METRICS

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
    from runtime import evaluation as EV

    order = ("r2", "mae") if task == "regression" else ("roc_auc", "log_loss", "accuracy")
    for name in order:
        if EV.measure(name, y, out, classes, positive)[0] is not None:
            return name
    return order[-1]


def _serving(plan: Plan) -> dict[str, Any]:
    sp = plan.spec
    return {"name": plan.name, "version": plan.version, "task": plan.task, "serving": sp["serving"],
            "security": {"masking": sp["security"]["masking"], "roles": sp["security"]["roles"],
                         "audit_log": sp["security"]["audit_log"],
                         "encryption_at_rest": sp["security"]["encryption_at_rest"],
                         "key_source": sp["security"]["key_source"]},
            "risk_tier": sp["governance"]["risk_tier"],  # a high-risk model is never served without API keys
            "key": plan.key}
