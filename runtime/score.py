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
Every check of the run-time contract and every string feature reads one value only
(`unique` is not checked at run time), so a text column with few distinct values in a
chunk is validated and featurized once per distinct value and the results broadcast.

Row numbers are 1-based positions among the input's records (the CSV header is not one).
`rows in = scored + quarantined` always holds; a CSV line with the wrong number of fields
is quarantined as `malformed` (its number counts physical lines: exact unless a quoted
value before it spans lines).
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

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ENC_MAGIC = b"AIOPS-ENC1\n"
ENC_SEGMENT = 1 << 20
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

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("inf")

    @property
    def rejected_share(self) -> float:
        return self.quarantined / self.rows_in if self.rows_in else 0.0

    def summary(self) -> str:
        return (f"rows in {self.rows_in} = scored {self.scored} + quarantined {self.quarantined} "
                f"({self.rows_per_s:,.0f} rows/s, {self.seconds:.2f} s, {self.chunks} chunks)")


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
    dup = sorted({c for c in present if present.count(c) > 1})
    if dup:
        raise ScoreError(f"'{path}' has duplicate columns: {', '.join(dup)}")
    missing = [c.name for c in contract.request_columns if c.required and c.name not in present]
    if missing:
        extra = [c for c in present if c not in contract.by_name]
        lines = [f"  - {m}{_did_you_mean(m, extra)}" for m in missing]
        raise ScoreError(f"'{path}' lacks {len(missing)} column(s) that the model needs:\n" + "\n".join(lines)
                         + f"\n  the input has: {', '.join(present) or '(no columns)'}")
    wanted = {c.name for c in contract.request_columns} | ({key} if key else set())
    return [c for c in present if c in wanted]


def _malformed_handler(out: list[tuple[int, str]]):
    # a closure over the list, not a bound method: the reader keeps the handler alive, and a
    # cycle through pyarrow's C++ reader is never collected
    def handle(row) -> str:
        line = int(row.number) if row.number is not None else 0
        out.append((line - 1, f"malformed (expected {row.expected_columns} fields, got {row.actual_columns})"))
        return "skip"

    return handle


class _CsvSource:
    """RecordBatches of text columns; malformed lines are collected as (row, reason)."""

    def __init__(self, path: Path, contract, key: str | None, block_bytes: int = 1 << 18):
        import csv

        self.path = path
        self.size = max(path.stat().st_size, 1)
        self.malformed: list[tuple[int, str]] = []
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ScoreError(f"cannot read '{path}' as CSV: {exc}") from None
        if not header:
            raise ScoreError(f"cannot read '{path}' as CSV: the file is empty (no header line)")
        self.columns = _columns_to_read(path, header, contract, key)
        self._stream = pa.OSFile(str(path), "rb")
        try:  # use_threads=False: the parser then reports the line of a malformed row
            self._reader = pcsv.open_csv(
                self._stream,
                read_options=pcsv.ReadOptions(block_size=block_bytes, use_threads=False),
                parse_options=pcsv.ParseOptions(invalid_row_handler=_malformed_handler(self.malformed),
                                                 ignore_empty_lines=False),
                convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.string() for c in header}, include_columns=self.columns,
                    strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True))
        except (pa.ArrowInvalid, OSError) as exc:
            self._stream.close()
            raise ScoreError(f"cannot read '{path}' as CSV: {exc}") from None

    def batches(self) -> Iterator[Any]:
        try:
            yield from self._reader
        except pa.ArrowInvalid as exc:
            raise ScoreError(f"cannot read '{self.path}' as CSV: {exc}") from None
        finally:
            self._reader = None
            self._stream.close()

    def progress(self) -> float:
        try:
            return min(self._stream.tell() / self.size, 1.0)
        except (OSError, ValueError):  # closed at the end
            return 1.0


class _ParquetSource:
    def __init__(self, path: Path, contract, key: str | None, chunk_rows: int):
        self.path = path
        self.malformed: list[tuple[int, str]] = []
        try:
            self._file = pq.ParquetFile(str(path), buffer_size=1 << 20, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoreError(f"cannot read '{path}' as Parquet: {exc}") from None
        self.columns = _columns_to_read(path, list(self._file.schema_arrow.names), contract, key)
        self.total = max(self._file.metadata.num_rows, 1)
        self.chunk_rows = chunk_rows
        self.done = 0

    def batches(self) -> Iterator[Any]:
        try:
            for b in self._file.iter_batches(batch_size=self.chunk_rows, columns=self.columns, use_threads=False):
                self.done += b.num_rows
                yield b
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoreError(f"cannot read '{self.path}' as Parquet: {exc}") from None

    def progress(self) -> float:
        return min(self.done / self.total, 1.0)


def _rechunk(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Tables of exactly `rows` rows (the last one shorter) from batches of any size."""
    buf: list[Any] = []
    have = 0
    for b in batches:
        if b.num_rows == 0:
            continue
        buf.append(b)
        have += b.num_rows
        while have >= rows:  # slices share the batches' memory: nothing is copied
            t = pa.Table.from_batches(buf)
            head, rest = t.slice(0, rows), t.slice(rows)
            buf, have = (rest.to_batches() if rest.num_rows else []), rest.num_rows
            del t, rest
            yield head
            del head
    if have:
        yield pa.Table.from_batches(buf)


def _ordinals(good: np.ndarray, malformed: list[tuple[int, str]]) -> np.ndarray:
    """Record numbers (1-based) of the well-formed records `good` (0-based, in order among
    the well-formed ones), skipping the numbers of malformed lines."""
    if not malformed:
        return good + 1
    m = np.array(sorted(r for r, _ in malformed if r > 0), dtype=np.int64)  # r <= 0: position unknown
    return good + 1 + np.searchsorted(m - np.arange(len(m)), good + 1, side="right")


# ---------------------------------------------------------------------------- validation
def _column_values(arr: Any, rule) -> np.ndarray:
    """A pyarrow array as the numpy array the validator takes: float64 where the values are
    numbers that Python reads the same way, object arrays otherwise."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if rule.numeric and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        try:
            num = pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            num = None  # a value is not a number: the validator says which
        # the text 'nan' would become NaN, a missing value: let the validator see the text
        if num is not None and not pc.any(pc.is_nan(num)).as_py():
            return num.to_numpy(zero_copy_only=False)
        return arr.to_numpy(zero_copy_only=False)
    if pa.types.is_decimal(t):
        arr = arr.cast(pa.float64())
    elif pa.types.is_integer(t) and arr.null_count < len(arr):
        mm = pc.min_max(arr).as_py()
        if max(abs(mm["min"]), abs(mm["max"])) > _MAX_EXACT_INT:  # as a JSON integer would be
            out = np.empty(len(arr), dtype=object)
            out[:] = arr.to_pylist()
            return out
    return arr.to_numpy(zero_copy_only=False)


class _Validator:
    """`Contract.validate_columns` over a chunk, one column at a time. A text column with
    few distinct values is validated once per distinct value and the verdicts broadcast to
    the rows; it is returned in `distinct` as (clean distinct values, row -> value index)
    instead of in `clean`, so that its string features are derived once per value too."""

    def __init__(self, contract, columns: list[str]):
        from .contract import Contract

        self.contract = contract
        self.present = set(columns)
        self.one = {c.name: Contract([c]) for c in contract.request_columns}

    def validate(self, table) -> tuple[dict[str, np.ndarray], Any, dict[str, tuple[np.ndarray, np.ndarray]]]:
        from .contract import RowErrors

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
                vals, errs = one.validate_columns({rule.name: _column_values(col, rule)}, n)
                errors.items.extend(errs.items)
                clean[rule.name] = vals[rule.name]
        return clean, errors, distinct

    @staticmethod
    def _distinct(one, rule, col, n: int, errors) -> tuple[np.ndarray, np.ndarray] | None:
        if rule.unique or n < 64 or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return None
        enc = pc.dictionary_encode(col, null_encoding="encode")
        k = len(enc.dictionary)
        if 4 * k > n:
            return None
        vals, errs = one.validate_columns({rule.name: _column_values(enc.dictionary, rule)}, k)
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
    from .features import STRING_TRANSFORMS, derive_one

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
class EncryptedSink:
    """A write-only file object that seals what it is given in AES-256-GCM segments:
    ENC_MAGIC, then per segment a 4-byte big-endian length and `Cipher.seal(data, aad)`,
    aad = ENC_MAGIC + segment number (8 bytes) + final flag (1 byte), so a reordered,
    dropped or truncated segment fails to open. Read back with `decrypt_file`."""

    def __init__(self, path: Path, cipher):
        self._fh = open(path, "wb")
        self._cipher = cipher
        self._buf = bytearray()
        self._seq = 0
        self._pos = 0
        self.closed = False
        self._fh.write(ENC_MAGIC)

    def _seal(self, data: bytes, final: bool) -> None:
        aad = ENC_MAGIC + self._seq.to_bytes(8, "big") + (b"\x01" if final else b"\x00")
        blob = self._cipher.seal(bytes(data), aad)
        self._fh.write(len(blob).to_bytes(4, "big") + blob)
        self._seq += 1

    def write(self, data) -> int:
        self._buf += data
        self._pos += len(data)
        while len(self._buf) >= ENC_SEGMENT:
            self._seal(self._buf[:ENC_SEGMENT], False)
            del self._buf[:ENC_SEGMENT]
        return len(data)

    def tell(self) -> int:
        return self._pos

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self._seal(self._buf, True)
            self._fh.close()
            self.closed = True


def decrypt_file(path: str | Path, cipher) -> Iterator[bytes]:
    """The plain bytes of a file written through EncryptedSink, segment by segment."""
    from .policy import PolicyError

    with open(path, "rb") as fh:
        if fh.read(len(ENC_MAGIC)) != ENC_MAGIC:
            raise PolicyError(f"'{path}' is not a file encrypted by aiops")
        seq = 0
        while True:
            head = fh.read(4)
            if len(head) < 4:
                raise PolicyError(f"'{path}' is truncated: its last segment is missing")
            blob = fh.read(int.from_bytes(head, "big"))
            aad = ENC_MAGIC + seq.to_bytes(8, "big")
            try:
                yield cipher.open(blob, aad + b"\x00")
            except PolicyError:
                yield cipher.open(blob, aad + b"\x01")
                if fh.read(1):
                    raise PolicyError(f"'{path}' has data after its final segment") from None
                return
            seq += 1


class _Writer:
    """Rows streamed to CSV or Parquet, optionally through an EncryptedSink."""

    def __init__(self, path: Path, fmt: str, schema, cipher):
        self.sink = EncryptedSink(path, cipher) if cipher is not None else pa.OSFile(str(path), "wb")
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


def _quarantine_schema(columns: list[str]):
    return pa.schema([pa.field("row", pa.int64()), pa.field("reasons", pa.string())]
                     + [pa.field(c, pa.string()) for c in columns if c not in ("row", "reasons")])


def _texts(col: Any) -> list[str | None]:
    """Values as text, as they are written in the quarantine file."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_pylist()
    try:
        return pc.cast(col, pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return [None if v is None else str(v) for v in col.to_pylist()]


def masker_for(serving: dict[str, Any], contract, log_dir: Path):
    """policy.Masker as the server builds it: serving.json security.masking, and a pii column
    it does not name is redacted. Hashes use the salt of the serving log folder `log_dir`,
    so a value hashes the same in the quarantine file and in the prediction log."""
    from .policy import Masker, load_salt

    methods = {c: m.get("method", "redact") if isinstance(m, dict) else str(m)
               for c, m in ((serving.get("security") or {}).get("masking") or {}).items()}
    for c in contract.columns:
        if c.pii and methods.get(c.name, "none") == "none":
            methods[c.name] = c.masking if c.masking not in (None, "none") else "redact"
    salt = load_salt(log_dir) if "hash" in methods.values() else b""
    return Masker(methods, salt)


# ---------------------------------------------------------------------------- progress
class Progress:
    """A bar on a terminal, a line per tenth otherwise; nothing when disabled."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.tenth = -1
        self.t0 = time.perf_counter()

    def update(self, frac: float, rows: int) -> None:
        if not self.enabled:
            return
        rate = rows / max(time.perf_counter() - self.t0, 1e-9)
        if self.tty:
            self.stream.write(f"\rscoring [{'#' * int(frac * 30):<30}] {frac:6.1%}  {rows:,} rows  {rate:,.0f} rows/s")
        elif int(frac * 10) > self.tenth:
            self.tenth = int(frac * 10)
            self.stream.write(f"scoring: {frac:.0%} ({rows:,} rows, {rate:,.0f} rows/s)\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------- the pipeline
@dataclass
class _Chunk:
    table: Any  # pyarrow Table of the columns read
    rownum: np.ndarray  # record number of each row
    clean: dict[str, np.ndarray]
    errors: Any  # RowErrors
    distinct: dict[str, tuple[np.ndarray, np.ndarray]]  # see _Validator
    malformed: list[tuple[int, str]]  # malformed lines to report with this chunk
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
        seen = reported = 0
        for table in _rechunk(src.batches(), chunk_rows):
            n = table.num_rows
            rownum = _ordinals(np.arange(seen, seen + n, dtype=np.int64), src.malformed)
            seen += n
            pending = sorted(src.malformed[reported:])
            now = [m for m in pending if m[0] <= rownum[-1]]
            reported += len(now)
            clean, errors, distinct = validator.validate(table)
            if not put(_Chunk(table, rownum, clean, errors, distinct, now, src.progress())):
                return
            del table, clean, errors, distinct
        rest = sorted(src.malformed[reported:])
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
        rejected = [(r, why, {}) for r, why in item.malformed]
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
            keys = _texts(item.table.column(self.key).filter(pa.array(keep)))
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
               max_rejected_share: float | None = None, threads: int = 1, progress: bool = True,
               log_dir: str | Path | None = None) -> ScoreResult:
    """Score `input_path` into `output_path`. Raises ScoreError: code 2 for unusable input or
    artefacts, 1 when more than `max_rejected_share` of the rows were quarantined (the
    quarantine file is then written, the output is not). `log_dir` is the serving log folder
    whose salt hashes PII (default: the server's, .aiops/serving/<name>)."""
    from .artefacts import ArtefactError, verify
    from .policy import PolicyError, load_cipher
    from .predictor import Predictor

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
        masker = masker_for(serving, contract, Path(log_dir) if log_dir else Path(".aiops") / "serving" / art.name)
    except PolicyError as exc:
        raise ScoreError(str(exc)) from None
    key = serving.get("key") or contract.key
    src = _CsvSource(inp, contract, key) if in_fmt == "csv" else _ParquetSource(inp, contract, key, chunk)
    tmp_out = out.with_name(out.name + ".partial")
    tmp_q = qpath.with_name(qpath.name + ".partial")
    sink = _Sink(pred, art.manifest_sha256, key if key in src.columns else None, src.columns, masker,
                 _Writer(tmp_out, out_fmt, _output_schema(pred, key if key in src.columns else None), cipher),
                 _Writer(tmp_q, q_fmt, _quarantine_schema(src.columns), cipher))
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
        bar.close()
        sink.close()
        if not ok:
            tmp_out.unlink(missing_ok=True)
            tmp_q.unlink(missing_ok=True)
    rows_in, scored, quarantined = sink.rows_in, sink.scored, sink.quarantined
    result = ScoreResult(rows_in, scored, quarantined, time.perf_counter() - t0, out, qpath, sink.chunks,
                         dict(sorted(sink.reasons.items())), cipher is not None)
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
    texts = {c: _texts(sub.column(c)) for c in columns}
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
    for c in columns:
        if c not in cols:
            cols[c] = pa.array([r[2].get(c) for r in rows], pa.string())
    w.write(pa.table(cols, schema=w.schema))
