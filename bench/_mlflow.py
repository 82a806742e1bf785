"""The MLflow baseline: its own virtual environment (.aiops/bench/mlflow-venv), the same
fitted scikit-learn pipeline saved as an MLflow model, and `mlflow models serve`.

The pipeline is pickled here and loaded there, so the venv pins the scikit-learn, numpy and
scipy versions of this one. The served model answers predict_proba on the featurized rows
(the ONNX feed as a DataFrame): MLflow does no contract validation and no feature
derivation, less work than `aiops serve` does per request.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from _common import WORK

MLFLOW_VERSION = "3.17.2"  # the newest whose mlflow-skinny the index also has
VENV = WORK / "mlflow-venv"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(log=print) -> Path:
    """Create the venv and install MLflow into it (once; several minutes on the first run)."""
    import numpy
    import scipy
    import sklearn

    pins = [f"mlflow=={MLFLOW_VERSION}", f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}",
            f"scipy=={scipy.__version__}"]
    stamp = VENV / ".aiops-bench-pins"
    if stamp.is_file() and stamp.read_text() == " ".join(pins) and python().exists():
        return python()
    log(f"creating {VENV} and installing {', '.join(pins)} from PyPI (first run only)")
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
    stamp.write_text(" ".join(pins))
    return python()


SAVE = r"""
import pickle, sys, warnings
warnings.simplefilter("ignore")
import mlflow.sklearn
from mlflow.models import infer_signature
import skops.io
pipe, example = pickle.load(open(sys.argv[1], "rb"))
# MLflow's default format (skops); the types it does not trust by default are ours to trust
trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipe))
mlflow.sklearn.save_model(pipe, sys.argv[2], pyfunc_predict_fn="predict_proba", skops_trusted_types=trusted,
                          signature=infer_signature(example, pipe.predict_proba(example)))
"""


def save_model(pipe, frame, name: str) -> Path:
    """An MLflow model folder of `pipe` (cached by the pickle's hash)."""
    blob = pickle.dumps((pipe, frame.head(50)))
    digest = hashlib.sha256(blob).hexdigest()[:16]
    out = WORK / f"mlflow-model-{name}-{digest}"
    if (out / "MLmodel").is_file():
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    pkl = WORK / f"pipeline-{name}-{digest}.pkl"
    pkl.write_bytes(blob)
    if out.exists():  # an earlier attempt that did not finish
        shutil.rmtree(out)
    subprocess.run([str(python()), "-c", SAVE, str(pkl), str(out)], check=True)
    return out


def serve_command(model: Path, port: int, workers: int) -> list[str]:
    return [str(VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]


def request_body(frame_rows: list[dict]) -> bytes:
    return json.dumps({"dataframe_records": frame_rows}, allow_nan=False).encode()


if __name__ == "__main__":  # python bench/_mlflow.py: prepare the venv ahead of a run
    sys.exit(0 if ensure_venv() else 1)
