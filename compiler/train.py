"""The build's training half: run the generated pipeline on the spec's data, export the
model to ONNX, verify it, evaluate it against the gate and write the evidence."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import schema as S
from .plan import Plan


def _write(stage: Path, rel: str, obj: Any) -> None:
    from .build import dumps

    p = stage / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(obj))


def _value_text(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def train_and_verify(plan: Plan, spec: S.Spec, stage: Path, progress) -> dict[str, Any]:
    from runtime import evaluation as EV
    from runtime.contract import Contract
    from runtime.features import FeatureStep
    from runtime.predictor import Predictor
    from runtime.stable import file_sha256
    from runtime.training import labels, model_frame, read_table, split, validate

    from .build import _import_pipeline
    from .export import edge_records, parity, to_onnx_bytes

    cfg = plan.train_config
    gen = _import_pipeline(stage / "pipeline", plan)
    contract = Contract.from_dict({"columns": [c.contract for c in plan.columns], "target": plan.target,
                                   "key": plan.key})
    steps = [FeatureStep.from_dict(f.step) for f in plan.features]

    # 1. data: read, validate lazily, quarantine
    src = Path(plan.data_source)
    progress(f"validating {plan.data_source} against the data contract (pandera, lazy)")
    df = read_table(src, plan.data_format)
    v = validate(df, gen["schema"].SCHEMA, contract)
    share = v.quarantined / v.rows_in if v.rows_in else 0.0
    qdir = Path(spec.env.quarantine_dir)
    qfile = qdir / f"{plan.name}.csv"
    if v.quarantined:
        qdir.mkdir(parents=True, exist_ok=True)
        v.quarantine.to_csv(qfile, index=False, lineterminator="\n")
    elif qfile.exists():
        qfile.unlink()
    progress.done(f"rows in {v.rows_in} = accepted {v.accepted} + quarantined {v.quarantined}"
                  + (f" (reasons in {qfile})" if v.quarantined else ""))
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
        from runtime.training import DataError

        worst = {k: v2 for k, v2 in par_hold.items() if isinstance(v2, dict) and not v2["passed"]} or \
            {k: v2 for k, v2 in par_edge.items() if isinstance(v2, dict) and not v2["passed"]}
        raise DataError("the ONNX model does not match scikit-learn within the spec's tolerances",
                        *[f"{k}: {json.dumps(v2, sort_keys=True)}" for k, v2 in worst.items()],
                        help="loosen thresholds.parity for tree models in float32, or choose another estimator")

    # 4. evaluation on the holdout, with the model that will be served (ONNX)
    progress("evaluating on the holdout: metrics, slices, fairness")
    out = pred.run_feed(te_feed)
    yt = y[te]
    thresholds: list[dict[str, Any]] = []
    metrics = {}
    for name, b in cfg["evaluation"].items():
        val = EV.metric(name, yt, out, classes, plan.positive_class)
        metrics[name] = val
        thresholds.append({"kind": "metric", "name": name, "value": val, **b, "passed": EV.check_bound(val, b)})
    slices = []
    for s in cfg["slices"]:
        g = EV.groups_of(v.columns[s["column"]][te], s.get("bins"))
        for grp in sorted(set(g.tolist())):
            m = g == grp
            rows = int(m.sum())
            sub = {k: a[m] for k, a in out.items()}
            val = EV.metric(s["metric"], yt[m], sub, classes, plan.positive_class) if rows >= s["min_rows"] else None
            entry = {"column": s["column"], "group": grp, "metric": s["metric"], "rows": rows, "value": val,
                     "min": s.get("min"), "max": s.get("max"), "evaluated": rows >= s["min_rows"]}
            slices.append(entry)
            if entry["evaluated"]:
                thresholds.append({"kind": "slice", "name": f"{s['metric']} where {s['column']} in {grp}",
                                   "value": val, "min": s.get("min"), "max": s.get("max"),
                                   "passed": EV.check_bound(val, s)})
    fairness = []
    for fb in cfg["fairness"]:
        g = EV.groups_of(v.columns[fb["attribute"]][te], fb.get("bins"))
        res = EV.fairness(fb["metric"], yt, out["label"], g, plan.positive_class)
        fairness.append({"attribute": fb["attribute"], "metric": fb["metric"], "min": fb.get("min"),
                         "max": fb.get("max"), **res})
        thresholds.append({"kind": "fairness", "name": f"{fb['metric']} across {fb['attribute']}",
                           "value": res["value"], "min": fb.get("min"), "max": fb.get("max"),
                           "passed": EV.check_bound(res["value"], fb)})
    for t in thresholds:
        t["value_text"] = _value_text(t["value"])
        t["bound_text"] = EV.bound_text(t)
    thresholds.append({"kind": "parity", "name": "ONNX parity with scikit-learn", "value": None,
                       "value_text": "passed" if parity_ev["passed"] else "failed",
                       "bound_text": "within thresholds.parity", "passed": parity_ev["passed"]})
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
        "rows_in": v.rows_in, "accepted": v.accepted, "quarantined": v.quarantined,
        "rejected_share": share, "max_rejected_share": cfg["max_rejected_share"],
        "reasons": v.reasons, "quarantine_file": str(qfile) if v.quarantined else None,
        "split": {"method": cfg["split"]["method"], "train": int(len(tr)), "test": int(len(te)),
                  "held_back": int(len(parts["held_back"]))},
        "label_balance": _balance(y, tr, te, plan.task),
    }
    _write(stage, "evidence/data.json", data_ev)
    blessing = {"blessed": blessed, "spec_hash": plan.spec_hash, "model_sha256": _sha(onnx_bytes),
                "failed": [t["name"] for t in failed],
                "rule": RULE}
    _write(stage, "evidence/blessing.json", blessing)
    _write(stage, "serving.json", _serving(plan))

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
    scoring = "r2" if plan.task == "regression" else "roc_auc"

    def score(f: dict[str, np.ndarray]) -> float:
        v = EV.metric(scoring, y, pred.run_feed(f), classes, plan.positive_class)
        return float("nan") if v is None else v

    base = score(feed)
    feats = []
    for name in feed:  # in the order of the model inputs
        drops = []
        for _ in range(n_repeats):
            shuffled = dict(feed)
            shuffled[name] = feed[name][rng.permutation(n)]
            drops.append(base - score(shuffled))
        feats.append({"name": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    feats.sort(key=lambda f: (-round(f["mean"], 10), f["name"]))
    return {"method": "permutation_importance", "scoring": scoring, "baseline_score": base,
            "n_repeats": n_repeats, "rows": int(n), "model": "model.onnx", "features": feats}


def _serving(plan: Plan) -> dict[str, Any]:
    sp = plan.spec
    return {"name": plan.name, "version": plan.version, "task": plan.task, "serving": sp["serving"],
            "security": {"masking": sp["security"]["masking"], "roles": sp["security"]["roles"],
                         "audit_log": sp["security"]["audit_log"],
                         "encryption_at_rest": sp["security"]["encryption_at_rest"],
                         "key_source": sp["security"]["key_source"]},
            "key": plan.key}
