"""`aiops retrain` and `aiops rollback`: champion and challenger on the same recent holdout.

retrain: verify the champion (ARTEFACT_DIR) -> recompose its spec (same hash) -> split the
new file as the spec says; keep the holdout rows the champion was not trained on (its
evidence/rows.json), refuse below monitoring.min_labelled_rows -> train a challenger on
the rest with the same spec -> score both with their ONNX models on those rows -> promote
the challenger only if it passes every gate and beats the champion on the primary metric
by monitoring.retrain_margin.

Stores, next to the artefact folder D (so `aiops verify D` never sees them):
  D/../.history/<D name>/NNNN/        champions replaced by a promotion (rollback pops the last)
  D/../.history/<D name>/challenger/  the last challenger that was not promoted, for inspection
  D/../.history/<D name>/rolled_back/<model sha256[:12]>/  models replaced by a rollback
Events go to evidence/history.json of the promoted artefacts and to the registry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from aiops.compiler.outdir import archive as _archive, history_dir

LOWER_IS_BETTER = frozenset({"brier", "log_loss", "mae", "rmse", "mape"})
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class RetrainFailed(Exception):
    """A user error (bad input, tampered artefacts, changed spec): printed as is, no traceback."""

    def __init__(self, text: str, code: int = 2):
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True)
class Outcome:
    promoted: bool
    event: dict[str, Any]
    where: Path  # the artefact folder (promoted) or the kept challenger folder (not promoted)
    archived: Path | None  # where the replaced champion went
    registry: str = ""  # what the registry now says about the challenger


def _rel(p: Path) -> str:
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.resolve().as_posix()


def _file_sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _error(summary: str, where: str, *notes: str, help: str | None = None, code: int = 2) -> RetrainFailed:
    lines = [f"error: {summary}", f"  --> {where}", *[f"   = {n}" for n in notes]]
    if help:
        lines.append(f"   = help: {help}")
    return RetrainFailed("\n".join(lines), code)


def _verify(d: Path, action: str = "retrain from"):
    from aiops.runtime.artefacts import ArtefactError, verify

    try:
        return verify(d, require_blessed=False, action=action)
    except ArtefactError as exc:
        raise RetrainFailed(f"error: {exc}", 2) from None


def _recompose(manifest: dict[str, Any], d: Path):
    """The champion's spec, composed again from manifest.json; it must hash the same."""
    from aiops.compiler.check import check
    from aiops.compiler.diagnostics import render_all

    spec_dir, overrides = manifest["spec"]["dir"], list(manifest["spec"]["overrides"])
    if not Path(spec_dir).is_dir():
        raise _error(f"the spec folder of {d} is not here: '{spec_dir}'", f"{d / 'manifest.json'} (spec.dir)",
                     f"the current folder is {Path.cwd()}",
                     help="run aiops from the folder the champion was compiled in (the repository root)")
    loaded, spec, diags = check(spec_dir, overrides)
    if spec is None or loaded is None or any(d_.is_error for d_ in diags):
        raise RetrainFailed(render_all(diags), 2)
    if loaded.spec_hash != manifest["spec"]["hash"]:
        raise _error(f"the spec in {spec_dir} changed since {d} was compiled",
                     f"{d / 'manifest.json'} (spec.hash)",
                     f"spec hash now {loaded.spec_hash[:16]}, in the manifest {manifest['spec']['hash'][:16]}",
                     help="retrain compares models of one spec; compile the changed spec with 'aiops compile'")
    return loaded, spec


def _retrain_plan(loaded, spec, d: Path, data: Path, holdout_from: str | None):
    """The challenger's plan: the champion's spec on the new file, split at --holdout-from."""
    from aiops.compiler.plan import build_plan

    data_rel = _rel(data)
    plan = build_plan(loaded, spec, data_rel)
    sp = dict(plan.train_config["split"])
    if sp["method"] == "time":
        if holdout_from is None:
            raise _error("--holdout-from is required: the spec splits by time", f"{loaded.spec_dir} (data.split)",
                         f"data.split.time_column is '{sp['time_column']}'",
                         help="give the first day of the recent labelled holdout, e.g. --holdout-from 2013-07-01")
        try:
            date.fromisoformat(holdout_from)
        except ValueError:
            raise _error(f"--holdout-from must be a date written YYYY-MM-DD. Got {holdout_from!r} instead.",
                         "command line") from None
        sp.update(test_start=holdout_from, end=None)
    elif holdout_from is not None:
        raise _error("--holdout-from needs a time split", f"{loaded.spec_dir} (data.split.method)",
                     f"the spec splits {sp['method']} (test_size {sp['test_size']}, seed {sp['seed']})",
                     help="leave out --holdout-from: the spec's own split is applied to the new file")
    again = f"aiops retrain {_rel(d)} --data {data_rel}" + (f" --holdout-from {holdout_from}" if holdout_from else "")
    typed = dataclasses.replace(plan.data, source=data_rel, format=FORMATS[data.suffix.lower()],
                                split=dataclasses.replace(plan.data.split, test_start=sp["test_start"], end=sp["end"]))
    return dataclasses.replace(plan, data_format=FORMATS[data.suffix.lower()], regenerate=again,
                               train_config={**plan.train_config, "split": sp}, data=typed)


def _readable(src: Path) -> None:
    """Fail early, with the reader's reason, on a file that is not the format its name says
    or whose header repeats a name (read as every command reads it: runtime.datafile)."""
    from aiops.runtime.datafile import DataFileError, header_of

    fmt = FORMATS[src.suffix.lower()]
    try:
        header_of(src, fmt)
    except DataFileError as exc:
        raise _error(str(exc), "--data", help=f"give a {fmt} file with the contract's columns and labels") from None


def _holdout(stage: Path, plan) -> tuple[dict[str, Any], Any, Any]:
    """The challenger's holdout rows (validated contract columns), labels and hashed row keys,
    exactly as training will split them."""
    from aiops.runtime.contract import Contract
    from aiops.compiler.training import labels, read_table, split, validate

    from aiops.compiler.generated import import_pipeline
    from aiops.compiler.plan import contract_dict
    from aiops.compiler.rowkeys import row_hashes

    gen = import_pipeline(stage / "pipeline", plan.name)
    contract = Contract.from_dict(contract_dict(plan))
    v = validate(read_table(Path(plan.data_source), plan.data_format, renames=contract.renames),
                 gen["schema"].SCHEMA, contract)
    y = labels(v.frame, plan.train_config)
    te = split(None, v.columns, y, plan.train_config)["test"]
    hashes = row_hashes(v.frame, plan.key, [c.name for c in plan.columns], plan.name)
    return {k: a[te] for k, a in v.columns.items()}, y[te], hashes[te]


def _unseen(d: Path, hashes, minimum: int, src: Path, holdout_from: str | None):
    """Which holdout rows the champion was not trained on (its evidence/rows.json); refuses
    when fewer than `minimum` are left, since a comparison on fewer means nothing."""
    import numpy as np

    from aiops.compiler.rowkeys import ROWS_SCHEMA

    p = d / "evidence" / "rows.json"
    rows = json.loads(p.read_text()) if p.is_file() else {}
    if rows.get("rows_schema") != ROWS_SCHEMA:
        raise _error(f"{d} does not say which rows trained it (no evidence/rows.json)", str(p),
                     "retrain scores champion and challenger only on rows neither was trained on",
                     help="recompile the champion with this aiops ('aiops compile SPEC_DIR'), then retrain")
    seen = np.isin(hashes.astype(str), np.asarray(rows["train"], dtype=str))
    n, k = len(hashes), int(seen.sum())
    if n - k < minimum:
        raise _error(f"too few rows to compare champion and challenger fairly: {n - k} of the {n} holdout rows "
                     f"of '{src}' were not used to train the champion; retrain needs at least {minimum}",
                     str(src), f"{k} holdout row(s) trained the champion (by {rows['identity']}; "
                               f"{p} lists their hashed keys under 'train')",
                     f"the minimum is monitoring.min_labelled_rows ({minimum})",
                     help="add rows the champion never saw (new rows, or its holdout: 'holdout' in "
                          f"{p.name})" + (", or move --holdout-from after the champion's training rows"
                                          if holdout_from else ""))
    return ~seen, k, rows["identity"]


def _score(folder: Path, cols: dict[str, Any], y, names: list[str]) -> dict[str, float | None]:
    from aiops.runtime import evaluation as EV
    from aiops.runtime.predictor import Predictor

    pred = Predictor(folder)
    out = pred.predict_columns(cols)
    return {n: EV.metric(n, y, out, pred.meta.classes, pred.meta.positive_class) for n in names}


def _decide(result: dict[str, Any], primary: str, champ: float | None, chal: float | None,
            margin: float) -> tuple[bool, float | None, str]:
    sign = -1.0 if primary in LOWER_IS_BETTER else 1.0
    gain = None if champ is None or chal is None else sign * (chal - champ)
    failed = [t for t in result["evaluation"]["thresholds"] if not t["passed"]]
    if not result["blessed"]:
        why = "; ".join(f"{t['name']} {t['value_text']} (needs {t['bound_text']})" for t in failed)
        return False, gain, f"the challenger failed its gate: {why or 'the spec sets no threshold'}"
    if gain is None:
        return False, gain, f"the holdout cannot measure {primary} (one class only?), so nothing can be compared"
    vs = f"its {primary} {chal:.4f} against the champion's {champ:.4f} ({gain:+.4f})"
    if gain > 0 and gain >= margin:
        return True, gain, f"the challenger passed every gate and beats the champion by at least {margin:g}: {vs}"
    return False, gain, (f"the challenger does not beat the champion by monitoring.retrain_margin {margin:g}: {vs}")


def _record(registry: str, plan, champ_dir: Path, d: Path, where: Path, event: dict[str, Any],
            archived: bool) -> str:
    """Both runs and the decision: the champion (registered when it was not, followed to its archive
    when the challenger replaced it) and the challenger, a candidate whose parent is the champion."""
    from aiops.runtime.governance.subject import subject

    from aiops.compiler import registry as R

    champ = subject(champ_dir)
    known = {r["run_id"] for r in R.runs(registry, plan.name)}
    if champ["run_id"] not in known:
        R.register_build(registry, champ_dir, "compile", artefact_dir=str(champ_dir))
    elif archived:
        R.move(registry, plan.name, champ["run_id"], champ_dir)
    chal = R.register_build(registry, where, "retrain", parent=champ["run_id"], artefact_dir=str(where))
    R.record_retrain(registry, plan.name, str(d), event, champion_run=champ["run_id"], challenger_run=chal["run_id"])
    if chal["run_id"] == champ["run_id"]:
        return f"registry: the challenger is the champion's run {champ['run_id']} again (same spec, data and model)"
    from aiops.runtime.governance.store import Store

    store = Store(R.where(registry))
    prod, stage = store.production(plan.name), store.run(chal["run_id"])["stage"]
    return (f"registry: the challenger is run {chal['run_id']}, {stage} (parent {champ['run_id']}); production "
            + (f"stays run {prod['run_id']} until 'aiops promote {chal['run_id']} --to production' (approvals "
               "needed)" if prod else "has no model yet"))


def retrain(artefact_dir: str | Path, data: str | Path, holdout_from: str | None = None,
            quiet: bool = False) -> Outcome:
    from aiops.compiler.training import DataError

    from aiops.runtime.stable import dumps

    from aiops.compiler.build import Progress, _replace, write_manifest
    from aiops.compiler.compliance import write_compliance
    from aiops.compiler.monitoring_plan import render_monitoring
    from aiops.compiler.render import render_code
    from aiops.compiler.review_workflow import render_review
    from aiops.compiler.train import train_and_verify

    d, src = Path(artefact_dir), Path(data)
    champion = _verify(d)
    if not src.is_file():
        raise _error(f"no data file at '{src}'", "--data", help="give the CSV or Parquet file of the new window")
    if src.suffix.lower() not in FORMATS:
        raise _error(f"the data file must end in .csv, .parquet or .pq. Got '{src.name}' instead.", "--data")
    _readable(src)
    loaded, spec = _recompose(champion.manifest, d)
    plan = _retrain_plan(loaded, spec, d, src, holdout_from)
    # the champion's quarantine file stays as it was: the challenger's goes to <quarantine_dir>/retrain/
    spec_run = dataclasses.replace(spec, env=dataclasses.replace(
        spec.env, quarantine_dir=str(Path(spec.env.quarantine_dir) / "retrain")))
    progress = Progress(8, quiet=quiet)
    with tempfile.TemporaryDirectory(prefix="aiops-retrain-") as tmp:
        stage = Path(tmp) / plan.name
        files = {**render_code(plan), **render_monitoring(plan), **render_review(plan)}  # as compile_spec renders
        for rel, text in files.items():
            p = stage / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        from aiops.compiler.governance.overrides import FILE as OVERRIDES

        if (d / OVERRIDES).is_file():  # the champion's loosened thresholds and their reason apply to it too
            (stage / OVERRIDES).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(d / OVERRIDES, stage / OVERRIDES)
        try:
            cols, y, hashes = _holdout(stage, plan)
            fair, trained_champion, ident = _unseen(d, hashes, int(spec.monitoring.min_labelled_rows), src,
                                                    holdout_from)
            result = train_and_verify(plan, spec_run, stage, progress)
        except DataError as exc:
            raise _error(exc.summary, str(src), *exc.notes, help=exc.help) from None
        progress("scoring champion and challenger on the holdout rows neither was trained on")
        cols, y = {k: a[fair] for k, a in cols.items()}, y[fair]
        names = list(spec.thresholds.evaluation) or ["r2" if plan.task == "regression" else "roc_auc"]
        primary = names[0]
        champ_m = _score(d, cols, y, names)
        chal_m = _score(stage, cols, y, names)
        margin = float(spec.monitoring.retrain_margin)
        promote, gain, reason = _decide(result, primary, champ_m[primary], chal_m[primary], margin)
        progress.done(f"{primary}: champion {_fmt(champ_m[primary])}, challenger {_fmt(chal_m[primary])} "
                      f"on {len(y)} holdout rows" + (f" ({trained_champion} that trained the champion left out)"
                                                     if trained_champion else ""))
        event = {
            "event": "promoted" if promote else "not_promoted",
            "from_model_sha256": _file_sha(d / "model.onnx"),
            "to_model_sha256": result["model_sha256"],
            "reason": reason,
            "metrics": {"primary": primary, "higher_is_better": primary not in LOWER_IS_BETTER, "margin": margin,
                        "improvement": gain, "champion": champ_m, "challenger": chal_m,
                        "challenger_gate_passed": result["blessed"]},
            "holdout": {"split": plan.train_config["split"]["method"], "from": holdout_from, "rows": int(len(y)),
                        "left_out_trained_champion": trained_champion, "row_identity": ident},
            "data": {"source": plan.data_source, "sha256": result["data"]["sha256"]},
        }
        before = d / "evidence" / "history.json"
        history = json.loads(before.read_text()) if before.is_file() else []
        (stage / "evidence" / "history.json").write_text(dumps([*history, event]))
        write_manifest(stage, plan, result)  # read by the diff (run ids, versions); written again below
        from aiops.compiler.governance.diff import FILE as DIFF
        from aiops.compiler.governance.diff import diff

        change = diff(d, stage)
        change["a"]["dir"], change["b"]["dir"] = f"{_rel(d)} (the champion)", "this folder (the challenger)"
        (stage / DIFF).write_text(dumps(change))
        write_compliance(plan, stage)  # again, now that the change history and the diff are there
        write_manifest(stage, plan, result)
        if promote:
            archived = _archive(d)
            _replace(stage, d)
            where = d
        else:
            archived, where = None, history_dir(d) / "challenger"
            _replace(stage, where)
    from aiops.runtime.governance.store import RegistryError

    try:
        note = _record(spec.env.registry, plan, archived or d, d, where, event, archived is not None)
    except RegistryError as exc:
        note = f"warning: the registry was not updated: {exc}"
    return Outcome(promote, event, where, archived, note)


def rollback(artefact_dir: str | Path) -> dict[str, Any]:
    """Restore the last archived champion of `artefact_dir`, byte for byte."""
    from aiops.compiler import registry as R
    from aiops.compiler.build import _replace

    d = Path(artefact_dir)
    if not (d / "manifest.json").is_file():
        raise _error(f"'{d}' is not an artefact folder (no manifest.json)", str(d),
                     help="give the folder that 'aiops compile' or 'aiops retrain' wrote")
    h = history_dir(d)
    kept = sorted(p for p in h.iterdir() if p.is_dir() and p.name.isdigit()) if h.is_dir() else []
    if not kept:
        raise _error(f"there is no previous model of {d} to restore", str(h),
                     "a champion is archived there when 'aiops retrain' promotes a challenger; none is left",
                     help="nothing to roll back; recompile with 'aiops compile' to rebuild from the spec")
    last = kept[-1]
    restored = _verify(last, "roll back to")
    metrics = restored.json("evidence/evaluation.json").get("metrics", {})
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        manifest["spec"]["dir"], manifest["name"]
    except (ValueError, KeyError, TypeError):
        raise _error(f"{d / 'manifest.json'} is not a valid manifest", str(d),
                     help="restore the folder by hand from the archive named below, or recompile") from None
    current_sha = _file_sha(d / "model.onnx") if (d / "model.onnx").is_file() else None
    aside = h / "rolled_back" / (current_sha or "unknown")[:12]
    if aside.exists():
        shutil.rmtree(aside)
    shutil.copytree(d, aside, ignore=shutil.ignore_patterns("__pycache__"))
    _replace(last, d)
    shutil.rmtree(last)
    event = {"event": "rolled_back", "from_model_sha256": current_sha,
             "to_model_sha256": _file_sha(d / "model.onnx"),
             "reason": f"aiops rollback: restored the model archived in {_rel(last)}; "
                       f"the replaced model is kept in {_rel(aside)}",
             "metrics": {"restored": metrics}}
    registry = _registry_path(manifest)
    from aiops.runtime.governance.store import RegistryError

    from aiops.compiler.governance.workflow import on_rollback

    try:
        R.record_retrain(registry, manifest["name"], str(d), event)
        event["registry"] = on_rollback(registry, d, current_sha, aside)
    except RegistryError as exc:
        event["registry"] = f"warning: the registry was not updated: {exc}"
    return event


def _registry_path(manifest: dict[str, Any]) -> str:
    """The spec's registry, or the default one when the spec cannot be composed any more."""
    from aiops.compiler import schema as S
    from aiops.compiler.check import check

    loaded, spec, diags = check(manifest["spec"]["dir"], list(manifest["spec"]["overrides"])) \
        if Path(manifest["spec"]["dir"]).is_dir() else (None, None, [])
    if spec is None or any(x.is_error for x in diags):
        print(f"warning: cannot compose {manifest['spec']['dir']}; recording in {S.Env().registry}", file=sys.stderr)
        return S.Env().registry
    return spec.env.registry


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
