"""Reading a data file into records, the same way in every command (compile, retrain,
`aiops score`, `aiops monitor`, `aiops check`).

- The header: UTF-8 (a BOM is ignored); a name used twice is a user error naming both
  positions (`DataFileError`, exit 2).
- A blank line (nothing but whitespace, or only separators: no value in any field) is not a
  record: it is skipped and counted (`blank`), reported as "N blank lines skipped".
- A line with too many or too few fields is a record that is quarantined as `malformed`,
  with its line number and its raw text, PII fields masked (`Malformed`).
- Records are numbered from 1 in file order, blank lines not counted, malformed ones counted.
  A line number counts the header as line 1 (exact unless a quoted value spans lines).
- A column read under another name (the contract's `source_name`): `renames` maps the
  file's header name to the contract's name, and every reader gives the contract's name
  (a file holding both names is a user error).
- Every value is read as text (CSV) or as stored (Parquet) and judged by the contract core
  (`runtime.contract`); nothing is converted here.

`CsvRecords.tables()` and `parquet_tables()` yield pyarrow tables holding the wanted columns
and RECORD, the record number of each row.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

RECORD = "__record__"
_MAX_RAW = 2000  # characters of a malformed line's raw text kept in the quarantine


class DataFileError(Exception):
    """A data file that no command can read as asked: a user error (exit 2)."""


@dataclass(frozen=True)
class Malformed:
    record: int  # 1-based record number
    line: int  # the line in the file, the header being line 1
    expected: int
    actual: int
    raw: str  # the line as written, PII fields masked

    @property
    def reason(self) -> str:
        return f"malformed (line {self.line}: expected {self.expected} fields, got {self.actual})"


def counts_line(rows_in: int, accepted: int, quarantined: int, blank: int, accepted_word: str = "accepted") -> str:
    """The one way every command states its row counts."""
    text = f"rows in {rows_in} = {accepted_word} {accepted} + quarantined {quarantined}"
    return text + (f" ({blank} blank line{'s' if blank != 1 else ''} skipped)" if blank else "")


def repeated_name(names: list[str]) -> tuple[str, int, int] | None:
    """(name, first position, second position), 1-based, of the first name used twice."""
    first: dict[str, int] = {}
    for j, n in enumerate(names, 1):
        if n in first:
            return n, first[n], j
        first[n] = j
    return None


def check_names(path: Path, names: list[str]) -> None:
    dup = repeated_name(names)
    if dup:
        raise DataFileError(f"'{path}' repeats the column name '{dup[0]}' (columns {dup[1]} and {dup[2]} of the "
                            "header); give each column its own name")


def renamed(path: Path, names: list[str], renames: dict[str, str] | None) -> list[str]:
    """The header under the contract's names (`renames`: file name -> contract name)."""
    if not renames:
        return names
    have = set(names)
    for src, dst in sorted(renames.items()):
        if src in have and dst in have and src != dst:
            raise DataFileError(f"'{path}' has both the column '{src}' (read as '{dst}': its source_name) and a "
                                f"column named '{dst}'; remove one of them, or the source_name")
    return [renames.get(n, n) for n in names]


def csv_header(path: Path, renames: dict[str, str] | None = None) -> list[str]:
    """The header of a CSV file, under the contract's names; DataFileError when it cannot be
    read or repeats a name."""
    return renamed(path, _csv_header(path), renames)


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise DataFileError(f"cannot read '{path}' as CSV: the header is not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from None
    except csv.Error as exc:
        raise DataFileError(f"cannot read '{path}' as CSV: {exc}") from None
    except OSError as exc:
        raise DataFileError(f"cannot read '{path}': {exc.strerror}") from None
    if not header:
        raise DataFileError(f"cannot read '{path}' as CSV: the file is empty (no header line)")
    check_names(path, header)
    return header


def parquet_file(path: Path):
    """A pyarrow ParquetFile; DataFileError when it cannot be read or repeats a name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path), buffer_size=1 << 20, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"cannot read '{path}' as Parquet: {_first_line(exc)}") from None
    check_names(path, list(pf.schema_arrow.names))
    return pf


def header_of(path: Path, fmt: str, renames: dict[str, str] | None = None) -> list[str]:
    return csv_header(path, renames) if fmt == "csv" else \
        renamed(path, list(parquet_file(path).schema_arrow.names), renames)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def mask_raw(text: str, header: list[str], mask: Callable[[str, Any], Any] | None) -> str:
    """A malformed line's text with the fields of PII columns masked (fields are matched to
    the header by position; a field beyond the header is masked if any column is PII)."""
    text = text[:_MAX_RAW]
    if mask is None:
        return text
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error:
        fields = text.split(",")
    out = []
    for i, f in enumerate(fields):
        col = header[i] if i < len(header) else None
        out.append(str(mask(col, f)) if col is not None else str(mask(None, f)))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(out)
    return buf.getvalue()


def _invalid_rows(events: list[tuple[int, int, int, str]]):
    # a closure over the list, not a bound method: the reader keeps the handler alive, and a
    # cycle through pyarrow's C++ reader is never collected
    def handle(row) -> str:
        events.append((int(row.number) if row.number is not None else 0, int(row.expected_columns),
                       int(row.actual_columns), row.text or ""))
        return "skip"

    return handle


class CsvRecords:
    """The records of a CSV file, streamed as pyarrow tables of text columns."""

    def __init__(self, path: Path, wanted: list[str] | None = None, *, block_bytes: int = 1 << 18,
                 mask: Callable[[str | None, Any], Any] | None = None, renames: dict[str, str] | None = None):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        self.path = path
        self.size = max(path.stat().st_size, 1)
        raw = _csv_header(path)
        self.header = renamed(path, raw, renames)  # the contract's names
        self._in_file = dict(zip(self.header, raw))
        self.wanted = [c for c in self.header if wanted is None or c in wanted]
        self.mask = mask
        self.blank = 0
        self.records = 0  # records seen so far (malformed ones included)
        self.malformed: list[Malformed] = []  # in file order; consumers may drain it
        self._events: list[tuple[int, int, int, str]] = []
        self._next = 1  # the position (data line, 1-based) after the last row seen
        self._stream = pa.OSFile(str(path), "rb")
        try:  # use_threads=False: the parser then numbers invalid rows
            self._reader = pcsv.open_csv(
                self._stream,
                read_options=pcsv.ReadOptions(block_size=block_bytes, use_threads=False),
                parse_options=pcsv.ParseOptions(invalid_row_handler=_invalid_rows(self._events),
                                                ignore_empty_lines=False),
                convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.string() for c in raw}, strings_can_be_null=True,
                    null_values=[""], quoted_strings_can_be_null=True))
        except (pa.ArrowException, OSError) as exc:
            self._stream.close()
            raise DataFileError(f"cannot read '{path}' as CSV: {_first_line(exc)}") from None

    def tables(self) -> Iterator[Any]:
        import pyarrow as pa

        try:
            for batch in self._reader:
                t = self._number(batch)
                if t is not None:
                    yield t
            self._resolve(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), last=None)
        except pa.ArrowInvalid as exc:
            raise DataFileError(f"cannot read '{self.path}' as CSV: {_first_line(exc)}") from None
        finally:
            self._reader = None
            self._stream.close()

    def progress(self) -> float:
        try:
            return min(self._stream.tell() / self.size, 1.0)
        except (OSError, ValueError):  # closed at the end
            return 1.0

    def _number(self, batch) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        k = batch.num_rows
        if k == 0:
            return None
        # positions of the batch's rows among the data lines, around the invalid rows
        ev = sorted(e[0] - 1 for e in self._events)
        m = np.array([p - self._next + 1 for p in ev if p >= self._next], dtype=np.int64)
        local = np.arange(k, dtype=np.int64) + 1
        if len(m):
            local = local + np.searchsorted(m - np.arange(len(m)), local, side="right")
        pos = self._next - 1 + local
        blank = np.ones(k, dtype=bool)
        for col in batch.columns:
            if col.null_count == 0:
                blank[:] = False
                break
            blank &= col.is_null().to_numpy(zero_copy_only=False)
        rec = self._resolve(pos, blank, last=int(pos[-1]))
        keep = ~blank
        cols = [batch.column(self._in_file[c]) for c in self.wanted]
        t = pa.Table.from_arrays(cols + [pa.array(rec)], names=self.wanted + [RECORD])
        return t if keep.all() else t.filter(pa.array(keep))

    def _resolve(self, pos: np.ndarray, blank: np.ndarray, last: int | None) -> np.ndarray:
        """Record numbers of the rows at `pos` (blank ones get 0); turns the invalid rows up
        to `last` (all of them when None) into blank lines or Malformed records."""
        now = [e for e in self._events if last is None or e[0] - 1 <= last]
        if now:
            self._events[:] = [e for e in self._events if not (last is None or e[0] - 1 <= last)]
        ws = [(e[0] - 1, e) for e in now if not e[3].strip().strip(",").strip()]
        bad = [(e[0] - 1, e) for e in now if e[3].strip().strip(",").strip()]
        blanks = np.sort(np.concatenate([pos[blank], np.array([p for p, _ in ws], dtype=np.int64)]))
        rec = pos - self.blank - np.searchsorted(blanks, pos)
        rec[blank] = 0
        for p, (number, expected, actual, text) in sorted(bad):
            r = p - self.blank - int(np.searchsorted(blanks, p))
            self.malformed.append(Malformed(int(r), number, expected, actual, mask_raw(text, self.header, self.mask)))
        self.blank += len(blanks)
        self.records += int((~blank).sum()) + len(bad)
        if last is not None:
            self._next = last + 1
        return rec


def parquet_tables(pf, wanted: list[str], rows: int, renames: dict[str, str] | None = None) -> Iterator[Any]:
    """The wanted columns of a Parquet file (contract names), `rows` at a time, with RECORD."""
    import pyarrow as pa

    raw = list(pf.schema_arrow.names)  # the callers read the header with `renamed` first
    in_file = {(renames or {}).get(n, n): n for n in raw}
    have = [c for c in in_file if c in wanted]
    done = 0
    try:
        for b in pf.iter_batches(batch_size=rows, columns=[in_file[c] for c in have], use_threads=False):
            n = b.num_rows
            yield pa.Table.from_arrays([b.column(in_file[c]) for c in have] +
                                       [pa.array(np.arange(done + 1, done + n + 1))], names=have + [RECORD])
            done += n
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"cannot read '{pf.metadata}' as Parquet: {_first_line(exc)}") from None


def arrow_values(arr: Any, rule) -> np.ndarray:
    """A pyarrow array as the numpy array the contract core takes: float64 where the values
    are numbers that Python reads the same way, object arrays otherwise (so that dirty text
    such as 'nan' reaches the core as it is written)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if rule.numeric and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        try:
            num = pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            num = None  # a value is not a number: the core says which
        # the text 'nan' would become NaN, a missing value; ' 1' would be refused: let the core see the text
        if num is not None and not pc.any(pc.is_nan(num)).as_py() and num.null_count == arr.null_count:
            return num.to_numpy(zero_copy_only=False)
        return arr.to_numpy(zero_copy_only=False)
    if pa.types.is_decimal(t):
        arr = arr.cast(pa.float64())
    elif pa.types.is_integer(t) and not rule.numeric:  # digits of a category; numpy would make NaN of a null
        out = np.empty(len(arr), dtype=object)
        out[:] = arr.to_pylist()
        return out
    elif pa.types.is_integer(t) and arr.null_count < len(arr):
        mm = pc.min_max(arr).as_py()
        if max(abs(mm["min"]), abs(mm["max"])) > 2 ** 53:  # as a JSON integer would be
            out = np.empty(len(arr), dtype=object)
            out[:] = arr.to_pylist()
            return out
    elif pa.types.is_boolean(t) and rule.numeric:
        out = np.empty(len(arr), dtype=object)  # true/false is not a number: the core says so
        out[:] = arr.to_pylist()
        return out
    return arr.to_numpy(zero_copy_only=False)


def field_mask(masker, columns: Any = None) -> Callable[[str | None, Any], Any]:
    """mask(column, text) for the fields of a malformed line: a PII column's field is
    masked as the column is; a field of a column outside `columns` (the contract), or beyond
    the header, is redacted: it may hold anything."""
    known = None if columns is None else frozenset(columns)

    def mask(column: str | None, value: Any) -> Any:
        if not value:
            return value
        if column is None:  # beyond the header
            return "[redacted]" if masker.methods or known is not None else value
        if known is not None and column not in known:
            return "[redacted]"
        return masker.mask(column, value)

    return mask


def quarantine_texts(col: Any) -> list[str | None]:
    """A column's values as text, as every quarantine file writes them (score, compile, retrain)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_pylist()
    try:
        return pc.cast(col, pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return [None if v is None else str(v) for v in col.to_pylist()]
