"""`aiops retrain` and `aiops rollback`: champion and challenger on the same recent holdout.

retrain: verify the champion (ARTEFACT_DIR) -> recompose its spec (same hash) -> train a
challenger on the new file with the same spec -> score both with their ONNX models on the
same labelled holdout of the new file -> promote the challenger only if it passes every
gate and beats the champion on the primary metric by monitoring.retrain_margin.

Stores, next to the artefact folder D (so `aiops verify D` never sees them):
  D/../.history/<D name>/NNNN/        champions replaced by a promotion (rollback pops the last)
  D/../.history/<D name>/challenger/  the last challenger that was not promoted, for inspection
  D/../.history/<D name>/rolled_back/<model sha256[:12]>/  models replaced by a rollback
Events go to evidence/history.json of the promoted artefacts and to the registry.
"""
from __future__ import annotations

import copy
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


def history_dir(artefact_dir: Path) -> Path:
    return artefact_dir.parent / ".history" / artefact_dir.name


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


def _verify(d: Path):
    from runtime.artefacts import ArtefactError, verify

    try:
        return verify(d, require_blessed=False)
    except ArtefactError as exc:
        raise RetrainFailed(f"error: {exc}", 2) from None


def _recompose(manifest: dict[str, Any], d: Path):
    """The champion's spec, composed again from manifest.json; it must hash the same."""
    from .check import check
    from .diagnostics import render_all

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
    from .plan import build_plan

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
    spec_doc = copy.deepcopy(plan.spec)
    spec_doc["data"].update(source=data_rel, format=FORMATS[data.suffix.lower()], split=sp)
    again = f"aiops retrain {_rel(d)} --data {data_rel}" + (f" --holdout-from {holdout_from}" if holdout_from else "")
    typed = dataclasses.replace(plan.data, source=data_rel, format=FORMATS[data.suffix.lower()],
                                split=dataclasses.replace(plan.data.split, test_start=sp["test_start"], end=sp["end"]))
    return dataclasses.replace(plan, data_format=FORMATS[data.suffix.lower()], regenerate=again,
                               train_config={**plan.train_config, "split": sp}, data=typed, spec=spec_doc)


def _readable(src: Path) -> None:
    """Fail early, with the reader's reason, on a file that is not the format its name says."""
    fmt = FORMATS[src.suffix.lower()]
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.read_schema(src)
        else:
            import pandas as pd

            pd.read_csv(src, nrows=0)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid and pandas' ParserError are ValueErrors
        raise _error(f"cannot read '{src}' as {fmt}", "--data", str(exc).strip().splitlines()[0],
                     help=f"give a {fmt} file with the contract's columns and labels") from None


def _holdout(stage: Path, plan) -> tuple[dict[str, Any], Any]:
    """The challenger's holdout rows (validated contract columns) and labels, exactly as training split them."""
    from runtime.contract import Contract
    from runtime.training import labels, read_table, split, validate

    from .generated import import_pipeline

    gen = import_pipeline(stage / "pipeline", plan.name)
    v = validate(read_table(Path(plan.data_source), plan.data_format), gen["schema"].SCHEMA,
                 Contract.load(stage / "contract.json"))
    y = labels(v.frame, plan.train_config)
    te = split(None, v.columns, y, plan.train_config)["test"]
    return {k: a[te] for k, a in v.columns.items()}, y[te]


def _score(folder: Path, cols: dict[str, Any], y, names: list[str]) -> dict[str, float | None]:
    from runtime import evaluation as EV
    from runtime.predictor import Predictor

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


def _archive(d: Path) -> Path:
    h = history_dir(d)
    h.mkdir(parents=True, exist_ok=True)
    n = max([int(p.name) for p in h.iterdir() if p.is_dir() and p.name.isdigit()] or [0]) + 1
    tmp = h / f".{n:04d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(d, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp.rename(h / f"{n:04d}")


def _record(registry: str, plan, champ_manifest: dict[str, Any], champ_dir: Path, d: Path,
            result: dict[str, Any], where: Path, event: dict[str, Any]) -> None:
    """Both runs and the event. A run already in the registry with the same model (the champion
    compiled here, or the same challenger trained again) keeps its row."""
    from . import registry as R

    def ensure(run_plan, folder: Path, res: dict[str, Any]) -> str:
        run_id = f"{run_plan.spec_hash[:12]}-{res['data']['sha256'][:12]}"
        if not any(r["run_id"] == run_id and r["model_sha256"] == res["model_sha256"]
                   for r in R.runs(registry, run_plan.name)):
            R.record_run(registry, run_plan, folder, res)
        return run_id

    champ_eval = json.loads((champ_dir / "evidence" / "evaluation.json").read_text())
    champ_run = ensure(dataclasses.replace(plan, data_source=champ_manifest["data"]["source"]), champ_dir,
                       {"data": champ_manifest["data"], "metrics": champ_eval["metrics"],
                        "blessed": champ_manifest["blessed"], "model_sha256": event["from_model_sha256"]})
    chal_run = ensure(plan, where, result)
    R.record_event(registry, plan.name, str(d), event, champion_run=champ_run, challenger_run=chal_run)


def retrain(artefact_dir: str | Path, data: str | Path, holdout_from: str | None = None,
            quiet: bool = False) -> Outcome:
    from runtime.training import DataError

    from runtime.stable import dumps

    from .build import Progress, _replace, write_manifest
    from .compliance import write_compliance
    from .monitoring_plan import render_monitoring
    from .render import render_code
    from .train import train_and_verify

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
        files = {**render_code(plan), **render_monitoring(plan)}  # the file set compile_spec renders
        for rel, text in files.items():
            p = stage / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        try:
            result = train_and_verify(plan, spec_run, stage, progress)
            progress("scoring champion and challenger on the same holdout")
            cols, y = _holdout(stage, plan)
        except DataError as exc:
            raise _error(exc.summary, str(src), *exc.notes, help=exc.help) from None
        names = list(spec.thresholds.evaluation) or ["r2" if plan.task == "regression" else "roc_auc"]
        primary = names[0]
        champ_m = _score(d, cols, y, names)
        chal_m = _score(stage, cols, y, names)
        margin = float(spec.monitoring.retrain_margin)
        promote, gain, reason = _decide(result, primary, champ_m[primary], chal_m[primary], margin)
        progress.done(f"{primary}: champion {_fmt(champ_m[primary])}, challenger {_fmt(chal_m[primary])} "
                      f"on {len(y)} holdout rows")
        event = {
            "event": "promoted" if promote else "not_promoted",
            "from_model_sha256": _file_sha(d / "model.onnx"),
            "to_model_sha256": result["model_sha256"],
            "reason": reason,
            "metrics": {"primary": primary, "higher_is_better": primary not in LOWER_IS_BETTER, "margin": margin,
                        "improvement": gain, "champion": champ_m, "challenger": chal_m,
                        "challenger_gate_passed": result["blessed"]},
            "holdout": {"split": plan.train_config["split"]["method"], "from": holdout_from, "rows": int(len(y))},
            "data": {"source": plan.data_source, "sha256": result["data"]["sha256"]},
        }
        before = d / "evidence" / "history.json"
        history = json.loads(before.read_text()) if before.is_file() else []
        (stage / "evidence" / "history.json").write_text(dumps([*history, event]))
        write_compliance(plan, stage)  # again, now that the change history is there
        write_manifest(stage, plan, result)
        if promote:
            archived = _archive(d)
            _replace(stage, d)
            where = d
        else:
            archived, where = None, history_dir(d) / "challenger"
            _replace(stage, where)
    _record(spec.env.registry, plan, champion.manifest, archived or d, d, result, where, event)
    return Outcome(promote, event, where, archived)


def rollback(artefact_dir: str | Path) -> dict[str, Any]:
    """Restore the last archived champion of `artefact_dir`, byte for byte."""
    from . import registry as R
    from .build import _replace

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
    restored = _verify(last)
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
    R.record_event(_registry_path(manifest), manifest["name"], str(d), event)
    return event


def _registry_path(manifest: dict[str, Any]) -> str:
    """The spec's registry, or the default one when the spec cannot be composed any more."""
    from . import schema as S
    from .check import check

    loaded, spec, diags = check(manifest["spec"]["dir"], list(manifest["spec"]["overrides"])) \
        if Path(manifest["spec"]["dir"]).is_dir() else (None, None, [])
    if spec is None or any(x.is_error for x in diags):
        print(f"warning: cannot compose {manifest['spec']['dir']}; recording in {S.Env().registry}", file=sys.stderr)
        return S.Env().registry
    return spec.env.registry


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
