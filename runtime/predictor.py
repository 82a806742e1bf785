"""ONNX inference from contract records: no scikit-learn, no pandas.

One `Predictor` per process (or worker): the onnxruntime session is created once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops.runtime.contract import Contract, RowErrors
from aiops.runtime.features import FeatureStep, derive
from aiops.runtime.row_kernels import lone_row_twice


@dataclass(frozen=True)
class ModelMeta:
    name: str
    version: str
    task: str
    classes: tuple[str, ...]  # classification: the order of the probability columns
    positive_class: str | None
    threshold: float  # binary: probability of the positive class at which the label is positive


class Predictor:
    def __init__(self, artefact_dir: str | Path, threads: int = 1):
        import onnxruntime as ort

        d = Path(artefact_dir)
        feats = json.loads((d / "features.json").read_text())
        self.steps = [FeatureStep.from_dict(s) for s in feats["steps"]]
        self.contract = Contract.load(d / "contract.json")
        self.meta = ModelMeta(feats["name"], feats["version"], feats["task"], tuple(feats.get("classes") or ()),
                              feats.get("positive_class"), float(feats.get("threshold", 0.5)))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(d / "model.onnx"), sess_options=so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # the C++ session's run, as InferenceSession.run calls it after checking the feed's
        # names in Python: our feeds always hold exactly the model's inputs
        sess = getattr(self.session, "_sess", None)
        self.run = (lambda feed: sess.run(self.output_names, feed, None)) if hasattr(sess, "run") \
            else (lambda feed: self.session.run(self.output_names, feed))
        self.is_classifier = self.meta.task != "regression"
        # a lone row is scored as two copies unless the graph gives a row the same bits alone (row_kernels.py)
        self.lone_row_twice = lone_row_twice(str(d / "model.onnx"))
        self.pos_index = self.meta.classes.index(self.meta.positive_class) if (
            self.meta.positive_class is not None and self.meta.positive_class in self.meta.classes) else None

    def lone_feed(self, feed: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """The feed as `run` must get it: a lone row (n == 1) as two copies of itself when
        `lone_row_twice`. onnxruntime takes another kernel for a single row (GEMV instead of
        GEMM), which differs in the last bit for linear models; two copies give the bits the
        row gets inside any larger batch (HTTP and batch paths agree). Tree models do without
        (runtime/row_kernels.py). Take the first n rows of the outputs."""
        if n == 1 and self.lone_row_twice:
            return {k: np.concatenate([feed[k], feed[k]]) for k in self.input_names}
        return {k: feed[k] for k in self.input_names}

    def run_feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(feed[self.input_names[0]]) if self.input_names else 0
        outs = self.run(self.lone_feed(feed, n))
        if n == 1 and self.lone_row_twice:
            outs = [o[:1] for o in outs]
        if not self.is_classifier:
            return {"value": np.asarray(outs[0], dtype=np.float64).reshape(-1)}
        proba = np.asarray(outs[1], dtype=np.float64)
        if self.pos_index is not None and len(self.meta.classes) == 2:
            label_idx = np.where(proba[:, self.pos_index] >= self.meta.threshold, self.pos_index, 1 - self.pos_index)
        else:
            label_idx = proba.argmax(axis=1)
        labels = np.asarray(self.meta.classes, dtype=object)[label_idx]
        return {"label": labels, "probabilities": proba}

    def lists(self, outs: list[np.ndarray], n: int) -> tuple[list[int] | None, list[Any]]:
        """The first n rows of `run`'s outputs as Python lists, with `run_feed`'s values:
        (label indices, probability rows) for a classifier, (None, values) for a regressor."""
        if not self.is_classifier:
            return None, outs[0][:n].reshape(-1).tolist()
        proba = outs[1][:n]
        rows = proba.tolist()  # float32 -> the same doubles as np.asarray(..., np.float64)
        pos = self.pos_index
        if pos is not None and len(self.meta.classes) == 2:
            neg, thr = 1 - pos, self.meta.threshold
            return [pos if r[pos] >= thr else neg for r in rows], rows
        return proba.argmax(axis=1).tolist(), rows

    def predict_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predictions for validated contract columns (all rows valid)."""
        n = len(next(iter(cols.values()))) if cols else 0
        if n == 0:
            return {"value": np.zeros(0)} if not self.is_classifier else {
                "label": np.zeros(0, dtype=object), "probabilities": np.zeros((0, len(self.meta.classes)))}
        return self.run_feed(derive(self.steps, cols))

    def predict_records(self, records: list[Any]) -> tuple[dict[str, np.ndarray] | None, RowErrors]:
        cols, errors = self.contract.validate_records(records)
        if errors.items:
            return None, errors
        return self.predict_columns(cols), errors
