"""Training: reading the data file, contract validation with quarantine, features, split, fit.

Imported by the generated pipeline and by `aiops compile`; never by the serving path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiops.runtime.contract import Contract
from aiops.runtime.datafile import RECORD, CsvRecords, DataFileError, Malformed, arrow_values, counts_line, parquet_file, \
    parquet_tables, quarantine_texts, renamed
from aiops.runtime.dates import parse_many
from aiops.runtime.features import FeatureStep, derive


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


@dataclass
class RawData:
    """A data file as every command reads it (`runtime.datafile`): the records that have the
    header's number of fields (a pyarrow table, RECORD holds their numbers), the malformed
    ones, and the count of blank lines skipped."""
    table: Any
    malformed: list[Malformed]
    blank: int
    header: list[str]


def read_table(path: Path, fmt: str, mask=None, renames: dict[str, str] | None = None) -> RawData:
    """The file's records under the contract's names (`renames`: header name -> contract name)."""
    import pyarrow as pa

    try:
        if fmt == "csv":
            rec = CsvRecords(path, None, block_bytes=1 << 22, mask=mask, renames=renames)
            parts = list(rec.tables())
            header, malformed, blank = rec.header, rec.malformed, rec.blank
        else:
            pf = parquet_file(path)
            header, malformed, blank = renamed(path, list(pf.schema_arrow.names), renames), [], 0
            parts = list(parquet_tables(pf, header, 1 << 16, renames))
    except DataFileError as exc:
        raise DataError(str(exc), help="fix the data file (docs/contract.md says how every command reads it)") \
            from None
    if parts:
        table = pa.concat_tables(parts)
    else:
        table = pa.table({**{c: pa.array([], pa.string()) for c in header}, RECORD: pa.array([], pa.int64())})
    return RawData(table, malformed, blank, header)


@dataclass
class Validated:
    frame: Any  # accepted rows as typed contract columns (pandas DataFrame)
    columns: dict[str, np.ndarray]  # accepted rows as clean contract columns
    rows_in: int
    accepted: int
    quarantined: int
    quarantine: Any  # DataFrame of rejected rows: row, reasons, the columns (PII masked), raw
    reasons: dict[str, int]  # "column: code" -> count of failing rows
    blank: int = 0  # blank lines skipped (not records)

    def counts(self) -> str:
        return counts_line(self.rows_in, self.accepted, self.quarantined, self.blank)


def quarantine_masker(contract: Contract, security: dict[str, Any] | None = None):
    """The masker of compile's quarantine file: the one keyed masker
    (`runtime.masking.masker_for`), as the score quarantine and the prediction log use it, so
    a value masks alike on every path."""
    from aiops.runtime.masking import masker_for
    from aiops.runtime.policy import PolicyError

    try:
        return masker_for(security, contract)
    except PolicyError as exc:
        raise DataError("the data holds PII that cannot be masked", str(exc),
                        help="set AIOPS_MASK_SALT; nothing is written in clear") from None


def validate(raw: RawData, schema, contract: Contract, masker=None) -> Validated:
    """The contract core (`runtime.contract`) decides which records are accepted, with every
    reason of each rejected one; the generated pandera schema then re-checks the accepted
    rows (a cross-check: it must agree, see docs/contract.md)."""
    import pandas as pd
    import pyarrow as pa

    masker = masker or quarantine_masker(contract)
    table = raw.table
    missing_cols = [c.name for c in contract.columns if c.name not in raw.header]
    if missing_cols:
        raise DataError("the data source lacks columns of the contract",
                        f"missing: {', '.join(missing_cols)}", help="fix the data file or the contract")
    n = table.num_rows
    data = {c.name: arrow_values(table.column(c.name).combine_chunks(), c) for c in contract.columns}
    clean, errs = contract.validate_columns(data, n, columns=contract.columns)
    by_row = errs.by_row()
    bad = np.zeros(n, dtype=bool)
    bad[list(by_row)] = True
    reasons: dict[str, int] = {}
    for found in by_row.values():
        for k in dict.fromkeys(f"{col}: {code}" for col, code, _ in found):
            reasons[k] = reasons.get(k, 0) + 1
    if raw.malformed:
        reasons["malformed"] = len(raw.malformed)
    record = table.column(RECORD).to_numpy(zero_copy_only=False)
    # the quarantine: row, reasons, the file's columns as text (PII masked), raw (malformed lines)
    idx = np.flatnonzero(bad)
    # columns outside the contract are never copied (they may hold anything, PII included)
    columns = [c for c in raw.header if c in contract.by_name and c not in ("row", "reasons", "raw")]
    sub = table.take(pa.array(idx, pa.int64()))
    texts = {c: quarantine_texts(sub.column(c)) for c in columns}
    for c in columns:
        if c in masker.methods:
            texts[c] = [masker.mask(c, v) for v in texts[c]]
    rows = [(int(record[i]), "; ".join(dict.fromkeys(f"{col}: {code} ({msg})" for col, code, msg in by_row[int(i)])),
             {c: texts[c][j] for c in columns}, None) for j, i in enumerate(idx)]
    rows += [(m.record, m.reason, {}, m.raw) for m in raw.malformed]
    rows.sort(key=lambda r: r[0])
    quarantine = pd.DataFrame({"row": [r[0] for r in rows], "reasons": [r[1] for r in rows],
                               **{c: [r[2].get(c) for r in rows] for c in columns},
                               "raw": [r[3] for r in rows]})
    keep = ~bad
    cols = {k: v[keep] for k, v in clean.items()}
    frame = _frame(contract, cols)
    _cross_check(schema, contract, cols, table.filter(pa.array(keep)) if n else table)
    rows_in = n + len(raw.malformed)
    return Validated(frame, {c.name: cols[c.name] for c in contract.request_columns}, rows_in, int(keep.sum()), int(bad.sum()) + len(raw.malformed), quarantine,
                     dict(sorted(reasons.items())), raw.blank)


def _frame(contract: Contract, cols: dict[str, np.ndarray]):
    """The accepted rows as a typed DataFrame: int as Int64, bool as boolean, dates as days."""
    import pandas as pd

    out = {}
    for c in contract.columns:
        v = cols[c.name]
        if c.dtype == "int":
            out[c.name] = pd.array([None if x != x else int(x) for x in v.tolist()], dtype="Int64")
        elif c.dtype == "bool":
            out[c.name] = pd.array([None if x != x else bool(x) for x in v.tolist()], dtype="boolean")
        else:
            out[c.name] = v
    return pd.DataFrame(out)


def _cross_check(schema, contract: Contract, cols: dict[str, np.ndarray], accepted) -> None:
    """The pandera schema on the accepted rows (dates as written): it must accept them all."""
    import pandera.errors as pe

    frame = _frame(contract, cols)
    for c in contract.columns:
        if c.dtype in ("date", "datetime"):  # the schema checks the text against the formats
            frame[c.name] = accepted.column(c.name).to_pandas().astype(object).where(lambda s: s.notna(), None) \
                if accepted.num_rows else frame[c.name].astype(object)
    try:
        schema.validate(frame, lazy=True)
    except pe.SchemaErrors as exc:
        fc = exc.failure_cases
        notes = [f"{r.get('column')}: {r.get('check')}" for _, r in fc.head(5).iterrows()]
        raise DataError("the generated pandera schema (pipeline/schema.py) rejects rows that the contract core "
                        "accepted", *notes, help="this is a bug in aiops: please report it with the spec") from None


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
        from aiops.runtime.features import reference_days

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
