"""Engine-agnostic partition functions: one partition of data in (a pyarrow Table or a pandas
DataFrame), tables or mergeable monitoring state out. No Dask here: runtime/scale/engine.py
is one adapter; a Ray `map_batches` or Spark `mapInPandas` adapter would call the same
objects (docs/scale.md says how).

- `PartitionScorer.score(data, first_row)` runs the single-process scorer's own per-chunk
  code (`runtime.score`: `_Validator`, `_Sink`, `_feed`, the quarantine writer) on the rows
  and returns (predictions, quarantine, counts). `first_row` is the 0-based position of the
  partition's first row in the whole input, so row numbers match the single-process run.
- `unique: true` holds across partitions: `unique_values` per partition, then
  runtime/scale/unique.py on the client says which values an earlier partition holds, and
  `score(..., earlier=)` / `add(..., earlier=)` judge those rows duplicates, as in one process.
- `PartitionMonitor.add(state, data, first_row, ...)` runs `Monitor._process` (the
  single-process monitor's per-chunk step) into a `MonitorState`; states of different
  partitions combine with `runtime.monitor_merge.merge_states`.

Both verify the artefacts once per process and keep one onnxruntime session per process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aiops.runtime.scale.unique import arrow_keys, key_array


def as_table(data: Any) -> pa.Table:
    """A pyarrow Table from a Table, a RecordBatch or a pandas DataFrame."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    return pa.Table.from_pandas(data, preserve_index=False)


class _Collect:
    """A `runtime.score._Writer` stand-in that keeps the tables it is given."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.tables: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.tables.append(table)

    def close(self) -> None:
        pass

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()


@dataclass
class ScoreCounts:
    rows_in: int = 0
    scored: int = 0
    quarantined: int = 0
    chunks: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: "ScoreCounts") -> None:
        self.rows_in += other.rows_in
        self.scored += other.scored
        self.quarantined += other.quarantined
        self.chunks += other.chunks
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v


class PartitionScorer:
    """The scoring of `aiops score` for one partition at a time (see the module docstring).
    `columns`: the input columns that scoring reads (`runtime.score._columns_to_read`);
    `manifest_sha256`: the artefacts the client verified (a worker seeing other artefacts
    at the same path refuses)."""

    def __init__(self, artefact_dir: str | Path, columns: list[str], manifest_sha256: str | None = None,
                 threads: int = 1):
        from aiops.runtime.artefacts import ArtefactError, verify
        from aiops.runtime.masking import masker_for
        from aiops.runtime.policy import PolicyError, load_cipher
        from aiops.runtime.predictor import Predictor
        from aiops.runtime.score.scorer import ScoreError, _output_schema, _quarantine_schema, _Validator

        try:
            art = verify(artefact_dir, action="score")
        except ArtefactError as exc:
            raise ScoreError(str(exc)) from None
        if manifest_sha256 is not None and art.manifest_sha256 != manifest_sha256:
            raise ScoreError(f"the artefacts at '{artefact_dir}' on this worker have manifest sha256 "
                             f"{art.manifest_sha256[:16]}..., not the client's {manifest_sha256[:16]}...: install the "
                             "same artefacts on every worker")
        serving = art.json("serving.json")
        self.manifest_sha256 = art.manifest_sha256
        self.pred = Predictor(art.root, threads=threads)
        try:
            self.cipher = load_cipher(serving.get("security") or {})
            self.masker = masker_for(serving.get("security"), self.pred.contract)
        except PolicyError as exc:
            raise ScoreError(str(exc)) from None
        key = serving.get("key") or self.pred.contract.key
        self.columns = list(columns)
        self.key = key if key in self.columns else None
        self.chunk_rows = int((serving.get("serving") or {}).get("batch_chunk_rows") or 50_000)
        self.validator = _Validator(self.pred.contract, self.columns)
        self.output_schema = _output_schema(self.pred, self.key)
        self.quarantine_schema = _quarantine_schema(self.columns)

    @property
    def unique_columns(self) -> list[str]:
        """The `unique` columns that this input has."""
        return [c.name for c in self.pred.contract.request_columns if c.unique and c.name in self.columns]

    def unique_values(self, data: Any) -> dict[str, pa.Array]:
        """The first pass of `unique` across partitions: per `unique` column, the distinct values
        of the partition that count for the check (valid on that column and not null), as the
        contract core judges them (`Contract._check_unique`: other columns do not matter)."""
        from aiops.runtime.datafile import arrow_values

        table = as_table(data)
        out = {}
        for name in self.unique_columns:
            rule = self.pred.contract.by_name[name]
            col = table.column(name).combine_chunks()
            if pa.types.is_dictionary(col.type):
                col = col.dictionary_decode()
            keys = arrow_keys(col, rule)
            if keys is not None:
                out[name] = keys
                continue
            seen: dict[str, dict] = {}
            self.validator.one[name].validate_columns({name: arrow_values(col, rule)}, table.num_rows, seen=seen)
            out[name] = key_array(list(seen.get(name, ())))
        return out

    def score(self, data: Any, first_row: int, earlier: dict[str, pa.Array] | None = None
              ) -> tuple[pa.Table, pa.Table, ScoreCounts]:
        """(predictions, quarantined rows with their reasons, counts) of the partition's rows,
        in chunks of serving.batch_chunk_rows, exactly as `runtime.score.score_file` does.
        `earlier`: per `unique` column, this partition's values that rows of earlier partitions
        hold (`unique_across`): its rows with them are duplicates, as in one process."""
        from aiops.runtime.score.scorer import _Chunk, _Sink

        table = as_table(data).select(self.columns)
        # `unique` across partitions: the values of earlier partitions come from the first pass,
        # so a retried partition (a worker died) is judged afresh, never against its own
        # earlier attempt, with the same verdicts
        self.validator.seen = {name: dict.fromkeys(vals.to_pylist(), True) for name, vals in (earlier or {}).items()}
        out, q = _Collect(self.output_schema), _Collect(self.quarantine_schema)
        sink = _Sink(self.pred, self.manifest_sha256, self.key, self.columns, self.masker, out, q)
        for start in range(0, table.num_rows, self.chunk_rows):
            t = table.slice(start, self.chunk_rows)
            rownum = np.arange(first_row + start, first_row + start + t.num_rows, dtype=np.int64) + 1
            clean, errors, distinct = self.validator.validate(t)
            sink.take(_Chunk(t, rownum, clean, errors, distinct, [], 1.0))
        counts = ScoreCounts(sink.rows_in, sink.scored, sink.quarantined, sink.chunks, dict(sink.reasons))
        return out.table(), q.table(), counts


@dataclass
class MonitorState:
    """What one or more partitions add to a monitoring run: windows (runtime.monitor_window),
    the run's totals, whether labels were seen, and the last day in the data."""
    windows: dict[int, Any]
    totals: dict[str, Any]
    has_labels: bool = False
    max_day: float = -math.inf


class PartitionMonitor:
    """The monitoring of `aiops monitor --current` for one partition at a time."""

    def __init__(self, artefact_dir: str | Path, manifest_sha256: str | None = None):
        from aiops.runtime.monitor.job import Monitor, MonitorError

        self.mon = Monitor(artefact_dir)
        if manifest_sha256 is not None and self.mon.art.manifest_sha256 != manifest_sha256:
            raise MonitorError(f"the artefacts at '{artefact_dir}' on this worker have manifest sha256 "
                               f"{self.mon.art.manifest_sha256[:16]}..., not the client's {manifest_sha256[:16]}...: "
                               "install the same artefacts on every worker")
        self.names = [c.name for c in self.mon.contract.request_columns]
        self.wanted = self.names + [self.mon.job["target"]]

    @property
    def unique_columns(self) -> list[str]:
        return [c.name for c in self.mon.contract.request_columns if c.unique]

    def unique_values(self, data: Any) -> dict[str, pa.Array]:
        """`PartitionScorer.unique_values` as the monitor's column checker judges the values."""
        table = as_table(data)
        checker, out = self.mon.checker, {}
        saved = checker.seen
        try:
            for name in self.unique_columns:
                if name in table.column_names:
                    col = table.column(name).combine_chunks()
                    keys = arrow_keys(col.dictionary_decode() if pa.types.is_dictionary(col.type) else col,
                                      checker.rules[name])
                    if keys is not None:
                        out[name] = keys
                        continue
                    checker.seen = {}
                    checker.check(name, table.column(name), table.num_rows)
                    out[name] = key_array(list(checker.seen.get(name, ())))
        finally:
            checker.seen = saved
        return out

    def new_state(self) -> MonitorState:
        from aiops.runtime.monitor.job import new_totals

        return MonitorState({}, new_totals(self.names))

    def add(self, state: MonitorState, data: Any, first_row: int, labels_table: dict | None = None,
            label_key: str | None = None, chunk_rows: int = 100_000,
            earlier: dict[str, pa.Array] | None = None) -> MonitorState:
        """Add the partition's rows (0-based `first_row` in the whole input) to `state`.
        `earlier`: as for `PartitionScorer.score` (`unique` across partitions)."""
        from concurrent.futures import ThreadPoolExecutor

        from aiops.runtime.monitor.reader import Chunk

        # never the values of another partition this worker saw, nor of an earlier attempt
        self.mon.checker.seen = {name: dict.fromkeys(v.to_pylist(), True) for name, v in (earlier or {}).items()}
        table = as_table(data)
        have = [c for c in self.wanted if c in table.column_names]
        state.has_labels |= labels_table is not None
        with ThreadPoolExecutor(1, thread_name_prefix="aiops-monitor-score") as pool:
            for start in range(0, table.num_rows, chunk_rows):
                t = table.slice(start, chunk_rows)
                chunk = Chunk(t.num_rows, {c: t.column(c) for c in have})
                labelled, last_day = self.mon._process(chunk, state.windows, state.totals, first_row + start, False,
                                                       labels_table, label_key, pool)
                state.has_labels |= labelled
                state.max_day = max(state.max_day, last_day)
        return state
