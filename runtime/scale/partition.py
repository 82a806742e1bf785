"""Engine-agnostic partition functions: one partition of data in (a pyarrow Table or a pandas
DataFrame), tables or mergeable monitoring state out. No Dask here: runtime/scale/engine.py
is one adapter; a Ray `map_batches` or Spark `mapInPandas` adapter would call the same
objects (docs/scale.md says how).

- `PartitionScorer.score(data, first_row)` runs the single-process scorer's own per-chunk
  code (`runtime.score`: `_Validator`, `_Sink`, `_feed`, the quarantine writer) on the rows
  and returns (predictions, quarantine, counts). `first_row` is the 0-based position of the
  partition's first row in the whole input, so row numbers match the single-process run.
- `unique: true` holds across partitions in two passes: `PartitionScorer.unique_values` per
  partition, `unique_across` on the client (which values an earlier partition holds), then
  `score(..., earlier=)` judges those rows duplicates with the single-process reason.
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
            out[name] = _key_array(list(seen.get(name, ())))
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


def arrow_keys(col: pa.Array, rule) -> pa.Array | None:
    """The first pass without the contract's row-by-row check, when Arrow's distinct values are
    the clean values themselves: text read as text (the contract keeps a string as it is), and
    numbers read as numbers (the contract keeps float(x): cast to float64, -0.0 as 0.0, NaN
    left out). Values the contract would not count (null-like text, values failing another
    check of the column) may be included: a value is judged alone, so it fails in every
    partition, and a failing or null row is never a duplicate. None: ask the contract."""
    import pyarrow.compute as pc

    t = col.type
    if rule.dtype in ("str", "category") and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return pc.unique(col).drop_null().cast(pa.large_string())
    if rule.dtype in ("int", "float") and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        x = pc.unique(pc.add(col.cast(pa.float64()), 0.0)).drop_null()
        return x.filter(pc.invert(pc.is_nan(x)))
    return None


def _key_array(vals: list) -> pa.Array:
    # one key per value as a dict sees it: -0.0 == 0.0 there, so one of them here
    if vals and type(vals[0]) is float:
        return pa.array([v + 0.0 for v in vals], pa.float64())
    return pa.array(vals, pa.large_string()) if vals and type(vals[0]) is str else pa.array(vals)


def _later(arrays: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (position in the concatenation of `arrays`, partition) whose group id (the
    arrays' values) appears in an earlier partition: the input is in partition order, so a
    group's first row is in its first partition."""
    g = np.concatenate([a for _, a in arrays])
    p = np.concatenate([np.full(len(a), i, dtype=np.int64) for i, a in arrays])
    _, first_row, inverse = np.unique(g, return_index=True, return_inverse=True)
    later = np.flatnonzero(p > p[first_row][inverse])
    return later, p[later]


def unique_across(values: list[dict[str, pa.Array]]) -> list[dict[str, pa.Array]]:
    """Given each partition's `PartitionScorer.unique_values` (in input order), the values of
    each partition that an earlier partition holds too: what `score(..., earlier=)` takes.
    Exact: the values themselves, grouped by Arrow's dictionary encoding (a hash table in
    C++), then numpy on the group ids."""
    out: list[dict[str, pa.Array]] = [{} for _ in values]
    for name in sorted({k for v in values for k in v}):
        arrays = [(i, v[name]) for i, v in enumerate(values) if name in v and len(v[name])]
        if len(arrays) < 2:
            continue
        allv = pa.concat_arrays([a for _, a in arrays])
        ids = allv.dictionary_encode().indices.to_numpy(zero_copy_only=False)
        at = 0
        groups = []
        for i, a in arrays:
            groups.append((i, ids[at:at + len(a)]))
            at += len(a)
        rows, parts = _later(groups)
        for i in np.unique(parts).tolist():
            out[i][name] = allv.take(pa.array(rows[parts == i]))
    return out


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def key_hashes(values: pa.Array) -> np.ndarray:
    """64-bit hashes of distinct keys (`unique_values`), the same in every process (no
    per-process seed), for the pre-pass of `colliding`: numbers by their float64 bits; text
    by a polynomial of its UTF-8 bytes, strings of one length at a time, then mixed
    (splitmix64's finaliser). Equal values give equal hashes; unequal ones rarely do, and
    the exact pass after `colliding` settles those."""
    if pa.types.is_floating(values.type):
        return values.to_numpy(zero_copy_only=False).astype(np.float64).view(np.uint64).copy()
    a = values.cast(pa.large_string())
    if len(a) == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(a.buffers()[1], dtype=np.int64)[a.offset:a.offset + len(a) + 1]
    data = np.frombuffer(a.buffers()[2], dtype=np.uint8) if a.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for n in np.unique(lengths).tolist():
            if n == 0:
                continue
            sel = np.flatnonzero(lengths == n)
            powers = np.cumprod(np.full(n, 1099511628211, dtype=np.uint64))  # FNV prime powers, wrapping
            for lo in range(0, len(sel), 65536):  # bounded memory: 65,536 strings at a time
                part = sel[lo:lo + 65536]
                chars = data[starts[part][:, None] + np.arange(n)].astype(np.uint64)
                h[part] += (chars * powers).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(30)
        h *= _MIX1
        h ^= h >> np.uint64(27)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    return h


def colliding(hashes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per column, the hashes that partitions after the first one holding them hold again: the
    only values that can be duplicates across partitions (sorted; none for unique keys)."""
    out = {}
    for name in sorted({k for h in hashes for k in h}):
        arrays = [h[name] for h in hashes if name in h and len(h[name])]
        if len(arrays) < 2:
            continue
        # a partition's values are distinct: a hash found twice is in two partitions (or two
        # values of one partition share it, which the exact pass then tells apart)
        h = np.concatenate(arrays)
        h.sort()
        twice = h[1:][h[1:] == h[:-1]]
        if len(twice):
            out[name] = np.unique(twice)
    return out


def candidates(values: dict[str, pa.Array], colliding_hashes: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    """The partition's distinct values whose hash collides across partitions (`colliding`)."""
    out = {}
    for name, vals in values.items():
        c = colliding_hashes.get(name)
        if c is not None and len(vals):
            keep = np.isin(key_hashes(vals), c)
            if keep.any():
                out[name] = vals.filter(pa.array(keep))
    return out


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
                    out[name] = _key_array(list(checker.seen.get(name, ())))
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
