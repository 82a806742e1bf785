"""Training: contract validation with quarantine, features, split, fit.

Imported by the generated pipeline and by `aiops compile`; never by the serving path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contract import Contract
from .dates import parse_many
from .features import FeatureStep, derive


class DataError(Exception):
    """A problem with the training data that stops the build (reported like a spec error)."""

    def __init__(self, summary: str, *notes: str, help: str | None = None):
        super().__init__(summary)
        self.summary = summary
        self.notes = notes
        self.help = help


def dates_parse(series, formats: tuple[str, ...]):
    """pandera check: True where the value is missing or parses with one of the formats."""
    import pandas as pd

    _, bad = parse_many(series.to_numpy(dtype=object), tuple(formats))
    return pd.Series(~bad, index=series.index)


def read_table(path: Path, fmt: str):
    import pandas as pd

    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return pd.read_parquet(path)




@dataclass
class Validated:
    frame: Any  # accepted rows, coerced (pandas DataFrame)
    columns: dict[str, np.ndarray]  # accepted rows as clean contract columns
    rows_in: int
    accepted: int
    quarantined: int
    quarantine: Any  # DataFrame of rejected rows with their reasons
    reasons: dict[str, int]  # check -> count of failing rows


def validate(df, schema, contract: Contract, security: dict[str, Any] | None = None) -> Validated:
    """pandera (lazy) and the runtime contract both vet every row; a row either rejects
    is quarantined with all its reasons, so serving accepts every row training used.
    The quarantine keeps the contract's columns only, PII masked as the spec's `security`
    policy says (`runtime.masking.masker_for`, as the score quarantine and the prediction log)."""
    import pandera.errors as pe

    rows_in = len(df)
    df = df.reset_index(drop=True)
    missing_cols = [c for c in schema.columns if c not in df.columns]
    if missing_cols:
        raise DataError("the data source lacks columns of the contract",
                        f"missing: {', '.join(missing_cols)}", help="fix the data file or the contract")
    reasons: dict[int, list[str]] = {}
    try:
        schema.validate(df, lazy=True)
    except pe.SchemaErrors as exc:
        fc = exc.failure_cases
        whole: list[tuple[str, str]] = []
        row_level_cols: set[str] = set()
        for _, r in fc.iterrows():
            idx = r.get("index")
            col = r.get("column")
            check = str(r.get("check"))
            if idx is None or (isinstance(idx, float) and np.isnan(idx)):
                if not check.startswith("column_in_dataframe"):
                    whole.append((str(col), check))
                continue
            row_level_cols.add(str(col))
            reasons.setdefault(int(idx), []).append(f"{col}: {check}")
        # a check pandera could not run on a column whose values failed to coerce is covered by
        # the per-row coercion failures; any other whole-table failure stops the build
        unexplained = [(c, ch) for c, ch in whole if c not in row_level_cols]
        if unexplained:
            raise DataError("the data fails a whole-table check of the contract",
                            *[f"{c}: {ch}" for c, ch in unexplained], help="fix the data file or the contract")
    # the runtime validator, on the raw values of every row
    data = {c.name: df[c.name].to_numpy(dtype=object) if c.name in df.columns else None
            for c in contract.request_columns}
    _, errs = contract.validate_columns({k: v for k, v in data.items() if v is not None}, rows_in)
    for i, col, code, msg in errs.items:
        reasons.setdefault(i, []).append(f"{col}: {code} ({msg})")
    bad = np.zeros(rows_in, dtype=bool)
    if reasons:
        bad[list(reasons)] = True
    rejected = df.loc[bad, [c for c in df.columns if c in contract.by_name]].copy()  # outside the contract: dropped
    by_check: dict[str, int] = {}
    for rs in reasons.values():
        for r in sorted(set(x.split(" (")[0] for x in rs)):
            by_check[r] = by_check.get(r, 0) + 1
    if len(rejected):
        from .masking import masker_for
        from .policy import PolicyError

        try:
            masker = masker_for(security, contract)
        except PolicyError as exc:
            raise DataError("the quarantined rows hold PII that cannot be masked", str(exc),
                            help="set AIOPS_MASK_SALT; nothing is written in clear") from None
        for col in masker.methods:
            if col in rejected.columns:
                rejected[col] = rejected[col].map(lambda v, c=col: masker.mask(c, v))
    rejected.insert(0, "__reasons__", ["; ".join(dict.fromkeys(reasons[i])) for i in np.flatnonzero(bad)])
    rejected.insert(0, "__row__", np.flatnonzero(bad) + 1)
    accepted = df[~bad].reset_index(drop=True)
    accepted = schema.validate(accepted, lazy=True)  # coerces dtypes; cannot fail now
    cols, errs2 = contract.validate_columns(
        {c.name: accepted[c.name].to_numpy(dtype=object) for c in contract.request_columns if c.name in accepted},
        len(accepted))
    if errs2.items:  # pragma: no cover - both validators already passed these rows
        raise DataError("internal: accepted rows fail the runtime contract", str(errs2.items[:3]))
    return Validated(accepted, cols, rows_in, len(accepted), int(bad.sum()), rejected, by_check)


def model_frame(steps: list[FeatureStep], cols: dict[str, np.ndarray]):
    """The DataFrame that the scikit-learn pipeline sees: the ONNX feed, as columns."""
    import pandas as pd

    feed = derive(steps, cols)
    return pd.DataFrame({k: v[:, 0] for k, v in feed.items()}), feed


def split(frame, cols: dict[str, np.ndarray], y: np.ndarray, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Row indices of train, test and (time split only) held-back rows."""
    sp = cfg["split"]
    n = len(y)
    idx = np.arange(n)
    if sp["method"] == "time":
        days = cols[sp["time_column"]].astype(np.float64)
        from .features import reference_days

        start = reference_days(sp["test_start"])
        end = reference_days(sp["end"]) if sp.get("end") else np.inf
        train = idx[days < start]
        test = idx[(days >= start) & (days < end)]
        held = idx[days >= end]
        if len(train) == 0 or len(test) == 0:
            raise DataError("the time split leaves no rows to train or to test on",
                            f"train rows: {len(train)}, test rows: {len(test)} (test_start {sp['test_start']})",
                            help="move data.split.test_start inside the data's date range")
        return {"train": train, "test": test, "held_back": held}
    from sklearn.model_selection import train_test_split

    strat = y if sp["method"] == "stratified" else None
    try:
        train, test = train_test_split(idx, test_size=sp["test_size"], random_state=sp["seed"], stratify=strat)
    except ValueError as exc:
        raise DataError("the data cannot be split as the spec says", str(exc),
                        help="use method: random, or a smaller test_size") from None
    return {"train": np.sort(train), "test": np.sort(test), "held_back": idx[:0]}


def labels(frame, cfg: dict[str, Any]) -> np.ndarray:
    target = frame[cfg["target"]]
    if cfg["task"] == "regression":
        return target.to_numpy(dtype=np.float64)
    vals = target.to_numpy(dtype=object)
    out = np.array([str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)
                    for v in vals], dtype=object)
    return out
