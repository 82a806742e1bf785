"""The training run that a generated pipeline's `fit()` calls: contract validation, features,
split and fit, driven by the pipeline's own SCHEMA, STEPS, model() and CONFIG.

It writes nothing: the caller (`aiops compile`, `aiops retrain`, `aiops run-pipeline`) is told
of each stage through `observe` and decides what to keep (quarantine file, evidence).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aiops.runtime.contract import Contract
from aiops.runtime.features import FeatureStep
from aiops.runtime.datafile import field_mask
from aiops.compiler.training import DataError, Validated, labels, model_frame, quarantine_masker, read_table, split, validate


class RejectedRows(DataError):
    """More rows break the data contract than CONFIG's max_rejected_share tolerates."""


@dataclass
class Fitted:
    validated: Validated  # the accepted rows, the quarantine and the counts
    y: np.ndarray  # labels of the accepted rows
    frame: Any  # the model frame of the accepted rows (pandas DataFrame)
    feed: dict[str, np.ndarray]  # the same, as the ONNX feed
    parts: dict[str, np.ndarray]  # row indices: train, test, held_back
    pipe: Any  # the fitted scikit-learn pipeline


def fit_pipeline(data: str | Path, data_format: str, contract: Contract, schema, steps: list[FeatureStep],
                 model: Callable[[], Any], config: dict[str, Any], security: dict[str, Any] | None = None,
                 observe: Callable[..., None] | None = None) -> Fitted:
    """Read the file `data`, validate its rows against `schema` and `contract`, derive `steps`,
    split as `config` says and fit `model()` on the training rows. `security` is the masking policy of the quarantined
    rows (serving.json's `security`). `observe(stage, **info)` hears "validated" (v) and
    "split" (y, parts) before the next stage runs."""
    def tell(stage: str, **info: Any) -> None:
        if observe is not None:
            observe(stage, **info)

    masker = quarantine_masker(contract, security)  # the one keyed masker, as score and the log use it
    v = validate(read_table(Path(data), data_format, field_mask(masker, contract.by_name), contract.renames), schema, contract, masker)
    tell("validated", v=v)
    share = v.quarantined / v.rows_in if v.rows_in else 0.0
    if share > config["max_rejected_share"]:
        top = sorted(v.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        raise RejectedRows(
            f"{v.quarantined} of {v.rows_in} rows ({share:.1%}) break the data contract; "
            f"the spec tolerates {config['max_rejected_share']:.1%}",
            *[f"{n} rows: {r}" for r, n in top],
            help="fix the data, or the contract if it is wrong; data.max_rejected_share sets the tolerance")
    y = labels(v.frame, config)
    mframe, feed = model_frame(steps, v.columns)
    parts = split(mframe, v.columns, y, config)
    tell("split", y=y, parts=parts)
    pipe = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(mframe.iloc[parts["train"]], y[parts["train"]])
    return Fitted(v, y, mframe, feed, parts, pipe)
