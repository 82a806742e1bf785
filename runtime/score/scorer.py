"""Batch scoring (`aiops score`): stream a CSV or Parquet file in chunks through the data
contract and the model; write the predictions, and the rejected rows with their reasons.

Memory is bounded by the chunk size, not by the input: CSV is read by pyarrow's streaming
reader with every column as text (so dirty values reach the contract validator as they
are written), Parquet one batch at a time. At most two chunks are in memory: one being
read and validated (a background thread) while the other is predicted and written.

Every row goes through `Contract.validate_columns`, `features.derive_one` and
`Predictor.run_feed`; an HTTP request's rows get the same feed (`http_rows.FeatureRows`,
held to `features.derive` bit for bit by tests) and the same model call, so a row gets the
same bits in both paths.
Every check of the run-time contract but `unique` and every string feature reads one value
only, so a text column with few distinct values in a
chunk is validated and featurized once per distinct value and the results broadcast.

Records are read as every command reads them (`runtime.datafile`): a blank line is not a
record (it is counted and reported as skipped), a line with the wrong number of fields is a
record quarantined as `malformed` with its line number and raw text (PII masked). Row
numbers are 1-based positions among the records. `rows in = scored + quarantined` always
holds; the values are judged by the contract core (`runtime.contract`), `unique` across the
whole file.
"""
from __future__ import annotations

import difflib
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from aiops.runtime.datafile import RECORD, CsvRecords, DataFileError, Malformed, arrow_values, counts_line, csv_header, \
    field_mask, parquet_file, parquet_tables, quarantine_texts, renamed

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_MAX_EXACT_INT = 2 ** 53


class ScoreError(Exception):
    """A user error: printed without a traceback; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@dataclass
class ScoreResult:
    rows_in: int
    scored: int
    quarantined: int
    seconds: float
    output: Path
    quarantine: Path
    chunks: int
    reasons: dict[str, int] = field(default_factory=dict)  # "column: code" -> rows
    encrypted: bool = False
    blank: int = 0  # blank lines skipped (not records)

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("inf")

    @property
    def rejected_share(self) -> float:
        return self.quarantined / self.rows_in if self.rows_in else 0.0

    def summary(self) -> str:
        return (counts_line(self.rows_in, self.scored, self.quarantined, self.blank, "scored")
                + f" ({self.rows_per_s:,.0f} rows/s, {self.seconds:.2f} s, {self.chunks} chunks)")


def print_result(r: Any, output: str, quarantine: str) -> None:
    """What `aiops score` prints after a run, single-process or on Dask (`r` has summary(),
    encrypted, quarantined and reasons)."""
    enc = " (encrypted at rest)" if r.encrypted else ""
    print(r.summary())
    print(f"predictions: {output}{enc}")
    print(f"quarantine: {quarantine}{enc}" + ("" if r.quarantined else " (no rows)"))
    for reason, count in sorted(r.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:10]:
        print(f"  {count:>8} rows  {reason}")


def file_format(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ScoreError(f"{what} '{path}' has the extension '{suffix or '(none)'}'; "
                         f"expected one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


# ---------------------------------------------------------------------------- reading
def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _columns_to_read(path: Path, present: list[str], contract, key: str | None) -> list[str]:
    """The input's columns that scoring reads; ScoreError if a required one is missing."""
    missing = [c.name for c in contract.request_columns if c.required and c.name not in present]
    if missing:
        extra = [c for c in present if c not in contract.by_name]
        lines = [f"  - {m}{_did_you_mean(m, extra)}" for m in missing]
        raise ScoreError(f"'{path}' lacks {len(missing)} column(s) that the model needs:\n" + "\n".join(lines)
                         + f"\n  the input has: {', '.join(present) or '(no columns)'}")
    wanted = {c.name for c in contract.request_columns} | ({key} if key else set())
    return [c for c in present if c in wanted]


class _CsvSource:
    """Tables of text columns with their record numbers (`runtime.datafile`); malformed
    lines are collected in `malformed`, blank lines counted in `blank`."""

    def __init__(self, path: Path, contract, key: str | None, block_bytes: int = 1 << 18, mask=None):
        try:
            header = csv_header(path, contract.renames)
            self.columns = _columns_to_read(path, header, contract, key)
            self.records = CsvRecords(path, self.columns, block_bytes=block_bytes, mask=mask, renames=contract.renames)
        except DataFileError as exc:
            raise ScoreError(str(exc)) from None
        self.malformed = self.records.malformed

    @property
    def blank(self) -> int:
        return self.records.blank

    def batches(self) -> Iterator[Any]:
        try:
            yield from self.records.tables()
        except DataFileError as exc:
            raise ScoreError(str(exc)) from None

    def progress(self) -> float:
        return self.records.progress()


class _ParquetSource:
    blank = 0

    def __init__(self, path: Path, contract, key: str | None, chunk_rows: int):
        self.path = path
        self.malformed: list[Malformed] = []
        try:
            self._file = parquet_file(path)
        except DataFileError as exc:
            raise ScoreError(str(exc)) from None
        self.renames = contract.renames
        try:
            names = renamed(path, list(self._file.schema_arrow.names), self.renames)
        except DataFileError as exc:
            raise ScoreError(str(exc)) from None
        self.columns = _columns_to_read(path, names, contract, key)
        self.total = max(self._file.metadata.num_rows, 1)
        self.chunk_rows = chunk_rows
        self.done = 0

    def batches(self) -> Iterator[Any]:
        try:
            for t in parquet_tables(self._file, self.columns, self.chunk_rows, self.renames):
                self.done += t.num_rows
                yield t
        except DataFileError as exc:
            raise ScoreError(str(exc).replace(str(self._file.metadata), str(self.path))) from None

    def progress(self) -> float:
        return min(self.done / self.total, 1.0)


def _rechunk(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Tables of exactly `rows` rows (the last one shorter) from tables of any size."""
    buf: list[Any] = []
    have = 0
    for b in batches:
        if b.num_rows == 0:
            continue
        buf.append(b)
        have += b.num_rows
        while have >= rows:  # slices share the batches' memory: nothing is copied
            t = pa.concat_tables(buf) if len(buf) > 1 else buf[0]
            head, rest = t.slice(0, rows), t.slice(rows)
            buf, have = ([rest] if rest.num_rows else []), rest.num_rows
            del t, rest
            yield head
            del head
    if have:
        yield pa.concat_tables(buf) if len(buf) > 1 else buf[0]


# ---------------------------------------------------------------------------- validation
class _Validator:
    """`Contract.validate_columns` over a chunk, one column at a time. A text column with
    few distinct values is validated once per distinct value and the verdicts broadcast to
    the rows; it is returned in `distinct` as (clean distinct values, row -> value index)
    instead of in `clean`, so that its string features are derived once per value too."""

    def __init__(self, contract, columns: list[str]):
        from aiops.runtime.contract import Contract

        self.contract = contract
        self.present = set(columns)
        self.one = {c.name: Contract([c]) for c in contract.request_columns}
        self.seen: dict[str, dict] = {}  # `unique` columns: values seen in earlier chunks

    def validate(self, table) -> tuple[dict[str, np.ndarray], Any, dict[str, tuple[np.ndarray, np.ndarray]]]:
        from aiops.runtime.contract import RowErrors

        n = table.num_rows
        errors = RowErrors(n)
        clean: dict[str, np.ndarray] = {}
        distinct: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for rule in self.contract.request_columns:
            one = self.one[rule.name]
            if rule.name not in self.present:
                clean[rule.name] = one.validate_columns({}, n)[0][rule.name]  # optional, absent
                continue
            col = table.column(rule.name).combine_chunks()
            if pa.types.is_dictionary(col.type):
                col = col.dictionary_decode()
            d = self._distinct(one, rule, col, n, errors)
            if d is not None:
                distinct[rule.name] = d  # not expanded to the rows unless a feature needs it
            else:
                vals, errs = one.validate_columns({rule.name: arrow_values(col, rule)}, n, seen=self.seen)
                errors.items.extend(errs.items)
                clean[rule.name] = vals[rule.name]
        if self.contract.row_checks:  # on the rows' clean values, as every path (Contract.check_rows)
            rows = {**clean, **{k: v[i] for k, (v, i) in distinct.items()}}
            self.contract.check_rows({k: v for k, v in rows.items() if k in self.present}, errors)
        return clean, errors, distinct

    @staticmethod
    def _distinct(one, rule, col, n: int, errors) -> tuple[np.ndarray, np.ndarray] | None:
        if rule.unique or n < 64 or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return None
        enc = pc.dictionary_encode(col, null_encoding="encode")
        k = len(enc.dictionary)
        if 4 * k > n:
            return None
        vals, errs = one.validate_columns({rule.name: arrow_values(enc.dictionary, rule)}, k)
        idx = enc.indices.to_numpy(zero_copy_only=False)
        if errs.items:
            by_value = errs.by_row()
            bad_value = np.zeros(k, dtype=bool)
            bad_value[list(by_value)] = True
            for i in np.flatnonzero(bad_value[idx]):
                errors.items.extend((int(i), c, code, msg) for c, code, msg in by_value[int(idx[i])])
        return vals[rule.name], idx


class _Kept:
    """The kept rows of the clean columns, selected when a feature step asks for them."""

    def __init__(self, clean: dict[str, np.ndarray], distinct: dict[str, tuple[np.ndarray, np.ndarray]],
                 keep: np.ndarray):
        self.clean, self.distinct, self.keep, self.all = clean, distinct, keep, bool(keep.all())
        self.cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.cache:
            if name in self.distinct:
                values, idx = self.distinct[name]
                self.cache[name] = values[idx if self.all else idx[self.keep]]
            else:
                self.cache[name] = self.clean[name] if self.all else self.clean[name][self.keep]
        return self.cache[name]


def _feed(steps, clean: dict[str, np.ndarray], distinct: dict[str, tuple[np.ndarray, np.ndarray]],
          keep: np.ndarray) -> dict[str, np.ndarray]:
    """`features.derive` of the kept rows: `derive_one` itself for every step; a string
    feature of a column with few distinct values is derived once per value."""
    from aiops.runtime.features import STRING_TRANSFORMS, derive_one

    kept = _Kept(clean, distinct, keep)
    feed = {}
    for s in steps:
        d = distinct.get(s.source)
        if s.transform in STRING_TRANSFORMS and d is not None:
            values, idx = d
            feed[s.name] = derive_one(s, {s.source: values})[idx if kept.all else idx[keep]]
        else:
            feed[s.name] = derive_one(s, kept)
    return feed


# ---------------------------------------------------------------------------- writing
def decrypt_file(path: str | Path, cipher) -> Iterator[bytes]:
    """The plain bytes of an output or quarantine file written encrypted (runtime/sealed.py)."""
    from aiops.runtime.sealed import open_file

    return open_file(path, cipher.key)


class _Writer:
    """Rows streamed to CSV or Parquet, optionally sealed (runtime/sealed.py; kind: score-output
    or score-quarantine)."""

    def __init__(self, path: Path, fmt: str, schema, cipher, kind: str = "score-output"):
        from aiops.runtime.sealed import SealedWriter

        self.sink = SealedWriter(path, cipher.key, kind) if cipher is not None else pa.OSFile(str(path), "wb")
        self.fmt = fmt
        self.schema = schema
        self.w = pcsv.CSVWriter(self.sink, schema) if fmt == "csv" else \
            pq.ParquetWriter(self.sink, schema, compression="zstd")

    def write(self, table) -> None:
        if table.num_rows:
            if self.fmt == "csv":
                self.w.write(table)
            else:
                self.w.write_table(table)

    def close(self) -> None:
        self.w.close()
        self.sink.close()


def _output_schema(pred, key: str | None):
    fields = [pa.field("row", pa.int64())] + ([pa.field(key, pa.string())] if key else [])
    if pred.is_classifier:
        fields.append(pa.field("label", pa.string()))
        fields += [pa.field(f"probability_{c}", pa.float64()) for c in pred.meta.classes]
    else:
        fields.append(pa.field("value", pa.float64()))
    fields += [pa.field(c, pa.string()) for c in ("model_name", "model_version", "manifest_sha256")]
    return pa.schema(fields)


RAW = "raw"  # a malformed line as written (PII fields masked); empty for other rows


def _quarantine_schema(columns: list[str]):
    """row, reasons, the columns read (PII masked), raw: the same file layout as compile's."""
    return pa.schema([pa.field("row", pa.int64()), pa.field("reasons", pa.string())]
                     + [pa.field(c, pa.string()) for c in columns if c not in ("row", "reasons", RAW)]
                     + [pa.field(RAW, pa.string())])


# ---------------------------------------------------------------------------- progress
class Progress:
    """A bar on a terminal, a line per tenth otherwise; nothing when disabled."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.tenth = -1
        self.last = -1  # the row count of the last line printed
        self.t0 = time.perf_counter()

    def update(self, frac: float, rows: int) -> None:
        if not self.enabled:
            return
        rate = rows / max(time.perf_counter() - self.t0, 1e-9)
        if self.tty:
            self.stream.write(f"\rscoring [{'#' * int(frac * 30):<30}] {frac:6.1%}  {rows:,} rows  {rate:,.0f} rows/s")
        elif int(frac * 10) > self.tenth:
            self.tenth = int(frac * 10)
            self.last = rows
            self.stream.write(f"scoring: {frac:.0%} ({rows:,} rows, {rate:,.0f} rows/s)\n")
        self.stream.flush()

    def close(self, rows: int | None = None) -> None:
        """Ends the bar; `rows` (the final count) is printed when the last line said another."""
        if self.tty:
            if rows is not None:
                self.stream.write(f"\rscoring [{'#' * 30}] {1:6.1%}  {rows:,} rows")
            self.stream.write("\n")
            self.stream.flush()
        elif self.enabled and rows is not None and rows != self.last:
            self.stream.write(f"scoring: 100% ({rows:,} rows)\n")
            self.stream.flush()


# ---------------------------------------------------------------------------- the pipeline
@dataclass
class _Chunk:
    table: Any  # pyarrow Table of the columns read
    rownum: np.ndarray  # record number of each row
    clean: dict[str, np.ndarray]
    errors: Any  # RowErrors
    distinct: dict[str, tuple[np.ndarray, np.ndarray]]  # see _Validator
    malformed: list[Malformed]  # malformed lines to report with this chunk
    progress: float


_END = object()


def _produce(src, chunk_rows: int, validator: _Validator, q: queue.Queue, stop: threading.Event) -> None:
    """Background thread: read, number and validate chunks; put them (or the error) on q."""
    def put(item) -> bool:
        # returns once the main thread has taken the item: two chunks in memory at most
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        while not stop.is_set() and q.unfinished_tasks:
            time.sleep(0.001)
        return not stop.is_set()

    try:
        reported = 0
        for table in _rechunk(src.batches(), chunk_rows):
            rownum = table.column(RECORD).to_numpy(zero_copy_only=False).astype(np.int64)
            table = table.drop_columns([RECORD])
            now = [m for m in src.malformed[reported:] if m.record <= rownum[-1]]
            reported += len(now)
            clean, errors, distinct = validator.validate(table)
            if not put(_Chunk(table, rownum, clean, errors, distinct, now, src.progress())):
                return
            del table, clean, errors, distinct
        rest = src.malformed[reported:]
        if rest and not put(_Chunk(None, np.zeros(0, dtype=np.int64), {}, None, {}, rest, 1.0)):
            return
        put(_END)
    except BaseException as exc:  # handed to the main thread, which raises it
        put(exc)


class _Sink:
    """Predicts validated chunks and writes predictions and rejected rows; keeps the counts."""

    def __init__(self, pred, manifest_sha256: str, key: str | None, columns: list[str], masker, w_out, w_q):
        self.pred, self.key, self.columns, self.masker = pred, key, columns, masker
        self.w_out, self.w_q = w_out, w_q
        self.const = {"model_name": pred.meta.name, "model_version": pred.meta.version,
                      "manifest_sha256": manifest_sha256}
        self.rows_in = self.scored = self.quarantined = self.chunks = 0
        self.reasons: dict[str, int] = {}

    def take(self, item: _Chunk) -> None:
        rejected = [(m.record, m.reason, {RAW: m.raw}) for m in item.malformed]
        if item.malformed:
            self.reasons["malformed"] = self.reasons.get("malformed", 0) + len(item.malformed)
        if item.table is not None:
            self.chunks += 1
            bad = item.errors.bad_rows
            self._predict(item, ~bad)
            rejected += _rejected(item, bad, self.columns, self.masker, self.reasons)
            self.rows_in += item.table.num_rows
        self.rows_in += len(item.malformed)
        self.quarantined += len(rejected)
        _write_quarantine(self.w_q, rejected, self.columns)

    def _predict(self, item: _Chunk, keep: np.ndarray) -> None:
        pred, m = self.pred, int(keep.sum())
        res = pred.run_feed(_feed(pred.steps, item.clean, item.distinct, keep)) if m else pred.predict_columns({})
        cols: dict[str, Any] = {"row": pa.array(item.rownum[keep])}
        if self.key:
            keys = quarantine_texts(item.table.column(self.key).filter(pa.array(keep)))
            if self.key in self.masker.methods:
                keys = [self.masker.mask(self.key, v) for v in keys]
            cols[self.key] = pa.array(keys, pa.string())
        if pred.is_classifier:
            cols["label"] = pa.array(res["label"], pa.string())
            for j, c in enumerate(pred.meta.classes):
                cols[f"probability_{c}"] = pa.array(res["probabilities"][:, j])
        else:
            cols["value"] = pa.array(res["value"])
        zeros = pa.array(np.zeros(m, dtype=np.int32))
        for k, v in self.const.items():
            cols[k] = pa.array([v], pa.string()).take(zeros)
        self.w_out.write(pa.table(cols, schema=self.w_out.schema))
        self.scored += m

    def close(self) -> None:
        self.w_out.close()
        self.w_q.close()


def score_file(artefact_dir: str | Path, input_path: str | Path, output_path: str | Path, *,
               chunk_rows: int | None = None, quarantine_path: str | Path | None = None,
               max_rejected_share: float | None = None, threads: int = 1, progress: bool = True) -> ScoreResult:
    """Score `input_path` into `output_path`. Raises ScoreError: code 2 for unusable input or
    artefacts, 1 when more than `max_rejected_share` of the rows were quarantined (the
    quarantine file is then written, the output is not). PII is masked with the deployment's
    masking key (runtime/masking.py), as in the prediction log."""
    from aiops.runtime.artefacts import ArtefactError, verify
    from aiops.runtime.masking import masker_for
    from aiops.runtime.policy import PolicyError, load_cipher
    from aiops.runtime.predictor import Predictor

    try:
        art = verify(artefact_dir, action="score")
    except ArtefactError as exc:
        raise ScoreError(str(exc)) from None
    inp, out = Path(input_path), Path(output_path)
    qpath = Path(quarantine_path) if quarantine_path else out.with_name(out.name + ".quarantine.csv")
    in_fmt = file_format(inp, "the input")
    out_fmt = file_format(out, "the output")
    q_fmt = file_format(qpath, "the quarantine file")
    if not inp.is_file():
        raise ScoreError(f"no input file at '{inp}'")
    for p in (out, qpath):
        if not p.parent.is_dir():
            try:  # like any output option: create the folder it names
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ScoreError(f"cannot write '{p}': the folder '{p.parent}' cannot be created "
                                 f"({exc.strerror})") from None
        if p.resolve() == inp.resolve():
            raise ScoreError(f"'{p}' is the input file; choose another output path")
    if out.resolve() == qpath.resolve():
        raise ScoreError(f"the output and the quarantine file are both '{out}'")
    if max_rejected_share is not None and not 0.0 <= max_rejected_share <= 1.0:
        raise ScoreError(f"max_rejected_share must be a share in [0, 1]. Got {max_rejected_share} instead.")
    serving = art.json("serving.json")
    modes = (serving.get("serving") or {}).get("modes", ["batch"])
    if "batch" not in modes:
        raise ScoreError(f"serving.json serving.modes is {list(modes)}: this model is not meant to be scored in "
                         "batch (add 'batch' to serving.modes in the spec)")
    chunk = int(chunk_rows or (serving.get("serving") or {}).get("batch_chunk_rows") or 50_000)
    if chunk < 1:
        raise ScoreError(f"chunk_rows must be a positive number of rows. Got {chunk} instead.")
    pred = Predictor(art.root, threads=threads)
    contract = pred.contract
    try:
        cipher = load_cipher(serving.get("security") or {})
        masker = masker_for(serving.get("security"), contract)
    except PolicyError as exc:
        raise ScoreError(str(exc)) from None
    key = serving.get("key") or contract.key
    src = _CsvSource(inp, contract, key, mask=field_mask(masker, contract.by_name)) if in_fmt == "csv" else \
        _ParquetSource(inp, contract, key, chunk)
    tmp_out = out.with_name(out.name + ".partial")
    tmp_q = qpath.with_name(qpath.name + ".partial")
    sink = _Sink(pred, art.manifest_sha256, key if key in src.columns else None, src.columns, masker,
                 _Writer(tmp_out, out_fmt, _output_schema(pred, key if key in src.columns else None), cipher),
                 _Writer(tmp_q, q_fmt, _quarantine_schema(src.columns), cipher, "score-quarantine"))
    bar = Progress(progress)
    t0 = time.perf_counter()
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    worker = threading.Thread(target=_produce, args=(src, chunk, _Validator(contract, src.columns), q, stop),
                              name="aiops-score-reader", daemon=True)
    ok = False
    try:
        worker.start()
        while True:
            item = q.get()
            q.task_done()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            sink.take(item)
            bar.update(item.progress, sink.rows_in)
            del item  # before waiting for the next chunk
        ok = True
    finally:
        stop.set()
        worker.join()
        bar.close(sink.rows_in if ok else None)
        sink.close()
        if not ok:
            tmp_out.unlink(missing_ok=True)
            tmp_q.unlink(missing_ok=True)
    rows_in, scored, quarantined = sink.rows_in, sink.scored, sink.quarantined
    result = ScoreResult(rows_in, scored, quarantined, time.perf_counter() - t0, out, qpath, sink.chunks,
                         dict(sorted(sink.reasons.items())), cipher is not None, src.blank)
    os.replace(tmp_q, qpath)
    if max_rejected_share is not None and result.rejected_share > max_rejected_share:
        tmp_out.unlink(missing_ok=True)
        raise ScoreError(f"{quarantined} of {rows_in} rows ({result.rejected_share:.2%}) were quarantined, more "
                         f"than --max-rejected-share {max_rejected_share:.2%}; no predictions were written. "
                         f"The rejected rows and their reasons are in '{qpath}'", code=1)
    os.replace(tmp_out, out)
    return result


def _rejected(item: _Chunk, bad: np.ndarray, columns: list[str], masker, reasons: dict[str, int]) -> list:
    """(row, reasons, {column: masked text}) of the chunk's rejected rows; counts reasons."""
    idx = np.flatnonzero(bad)
    if not len(idx):
        return []
    by_row = item.errors.by_row()
    sub = item.table.take(pa.array(idx))
    texts = {c: quarantine_texts(sub.column(c)) for c in columns}
    for c in columns:
        if c in masker.methods:
            texts[c] = [masker.mask(c, v) for v in texts[c]]
    out = []
    for j, i in enumerate(idx):
        found = by_row[int(i)]
        for k in dict.fromkeys(f"{col}: {code}" for col, code, _ in found):
            reasons[k] = reasons.get(k, 0) + 1
        why = "; ".join(dict.fromkeys(f"{col}: {code} ({msg})" for col, code, msg in found))
        out.append((int(item.rownum[i]), why, {c: texts[c][j] for c in columns}))
    return out


def _write_quarantine(w: _Writer, rows: list, columns: list[str]) -> None:
    if not rows:
        return
    rows.sort(key=lambda r: r[0])
    cols: dict[str, Any] = {"row": pa.array([r[0] if r[0] > 0 else None for r in rows], pa.int64()),
                            "reasons": pa.array([r[1] for r in rows], pa.string())}
    for c in columns + [RAW]:
        if c not in cols:
            cols[c] = pa.array([r[2].get(c) for r in rows], pa.string())
    w.write(pa.table(cols, schema=w.schema))
