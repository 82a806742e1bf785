"""`aiops run-pipeline ARTEFACT_DIR`: run the generated pipeline on its own and export its model.

The pipeline in ARTEFACT_DIR/pipeline/ is imported and its `fit(contract)` called, as
`aiops compile` does; the fitted model is exported with the compiler's export. The command
says whether the bytes equal ARTEFACT_DIR/model.onnx, so a reviewer can see that the code
they read is the code that trained the model. It runs the Python in ARTEFACT_DIR: give it
only folders you trust (verify them first with `aiops verify`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from aiops.compiler.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("run-pipeline", help="run the generated pipeline of an artefact folder and export its model")
    p.add_argument("artefact_dir", help="a folder written by 'aiops compile', e.g. generated/credit_risk")
    p.add_argument("--data", help="the training data (default: the pipeline's DATA, relative to the working folder)")
    p.add_argument("--out", help="write the exported model here (default: only compare it)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    onnx, d = run_pipeline(args.artefact_dir, args.data)
    if args.out:
        Path(args.out).write_bytes(onnx)
    have = (d / "model.onnx").read_bytes() if (d / "model.onnx").is_file() else b""
    sha = hashlib.sha256(onnx).hexdigest()
    print(f"model from {d / 'pipeline'}: sha256 {sha}" + (f", written to {args.out}" if args.out else ""))
    if onnx == have:
        print(f"same bytes as {d / 'model.onnx'}")
        return 0
    print(f"differs from {d / 'model.onnx'} (sha256 {hashlib.sha256(have).hexdigest()})")
    return 1


def run_pipeline(artefact_dir: str | Path, data: str | Path | None = None) -> tuple[bytes, Path]:
    """The ONNX bytes of the model that ARTEFACT_DIR's generated pipeline fits on `data` (default:
    its DATA)."""
    from aiops.runtime.contract import Contract
    from aiops.compiler.training import DataError

    from aiops.compiler import estimators as E
    from aiops.compiler.export import to_onnx_bytes
    from aiops.compiler.generated import PipelineImportError, import_pipeline

    d = Path(artefact_dir)
    try:
        serving = json.loads((d / "serving.json").read_text())
        inputs = json.loads((d / "features.json").read_text())["inputs"]
        contract = Contract.load(d / "contract.json")
        gen = import_pipeline(d / "pipeline", serving["name"])
    except (OSError, ValueError, KeyError, PipelineImportError) as exc:
        raise UserError(f"'{d}' is not an artefact folder with a generated pipeline ({exc}); "
                        "give the folder that 'aiops compile' wrote") from None
    train = gen["train"]
    src = Path(data) if data is not None else Path(train.DATA)
    if not src.is_file():
        raise UserError(f"no data file at '{src}': give --data, or run from the folder the pipeline's DATA "
                        "is relative to (the repository root)")
    try:
        fitted = train.fit(contract, data=str(src), security=serving.get("security"))
    except DataError as exc:
        notes = "".join(f"\n   = {n}" for n in exc.notes)
        raise UserError(f"{exc.summary}{notes}" + (f"\n   = help: {exc.help}" if exc.help else "")) from None
    estimator = type(fitted.pipe.steps[-1][1]).__name__
    feats = [_Input(i["name"], "categorical" if i["type"] == "string" else "numeric") for i in inputs]
    return to_onnx_bytes(fitted.pipe, feats, E.ALLOWED[estimator].has_proba, serving["name"]), d


class _Input:
    """A model input as `to_onnx_bytes` reads it: its name and kind."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
