"""`aiops check` looks at the data: the first records of data.source, judged by the contract
core (`runtime.contract`) exactly as compile will judge them, reported at the contract line
of the offending column.

How much is read (also in `aiops check --help`, SAMPLE_HELP): at most SAMPLE_ROWS records and
SAMPLE_BYTES of the file, spread through a large file so that a problem that starts late in
it is seen (deterministic: no random draw); a small file is read whole. For a Parquet file,
the target and the time column are read whole to count the classes. The class counts of a
CSV file larger than SAMPLE_BYTES are not checked (compile checks them).
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from aiops.compiler.context import Ctx

SAMPLE_ROWS = 10_000
SAMPLE_BYTES = 8 << 20
STRETCHES = 8  # places through a large file the sample is read from, besides its start
MIN_CLASS_ROWS = 5  # fewest rows of a class that the holdout (and the training rows) must keep
SAMPLE_HELP = (f"reads the header, then a sample of at most {SAMPLE_ROWS:,} records and {SAMPLE_BYTES >> 20} MiB of "
               "data.source: a file that small is read whole; of a larger CSV file, the first "
               f"{SAMPLE_ROWS // 2:,} records and runs of records from {STRETCHES} even byte offsets through the rest "
               "(a run where a quoted field may span lines, or with a ragged line, is left out); of a larger Parquet file, evenly "
               f"spaced records (a row group of up to {SAMPLE_BYTES >> 20} MiB) or the first records of "
               f"{STRETCHES + 1} row groups spread through it, and its target and time column whole. The same file "
               "always gives the same sample")
_GUESS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y",
          "%d-%m-%Y", "%Y%m%d", "%d%m%Y", "%d %b %Y", "%b %d %Y", "%Y-%m-%d %H:%M")
_CODE_AT = {"wrong_type": ("E222", "dtype"), "not_in_set": ("E223", "isin")}


def shape(value: object) -> str:
    """A masked example: digits as 9, letters as x or X, the rest as written (at most 40)."""
    text = str(value)[:40]
    return re.sub(r"[A-Z]", "X", re.sub(r"[a-z]", "x", re.sub(r"[0-9]", "9", text)))


def _sample(path: Path, fmt: str, contract, target: str | None, time_col: str | None):
    """(table of the sampled records, malformed count, whole file read?, full label columns or
    None, "spread" when the records are spread through the file, "" when they are the first ones)."""
    import pyarrow as pa

    from aiops.runtime.datafile import CsvRecords, parquet_file, parquet_tables, renamed

    if fmt == "csv":
        rec = CsvRecords(path, None, block_bytes=1 << 20, renames=contract.renames)
        parts, have, taken, whole = [], 0, 0, True
        gen = rec.tables()
        for t in gen:
            parts.append(t.select(rec.header))
            have += t.num_rows
            taken += t.nbytes  # the text of the records (the reader's own position runs ahead of it)
            if have >= SAMPLE_ROWS or taken >= SAMPLE_BYTES:
                whole = next(gen, None) is None
                gen.close()
                break
        table = pa.concat_tables(parts) if parts else None
        how = ""
        if not whole and table is not None:
            table, how = _spread_csv(path, rec.header, table)
        if table is not None and table.num_rows > SAMPLE_ROWS:
            table = table.slice(0, SAMPLE_ROWS)
            whole = False
        labels = table if whole else None
        return table, len(rec.malformed), whole, labels, how
    pf = parquet_file(path)
    names = renamed(path, list(pf.schema_arrow.names), contract.renames)
    whole = pf.metadata.num_rows <= SAMPLE_ROWS
    if whole:
        table, how = next(parquet_tables(pf, names, SAMPLE_ROWS, contract.renames), None), ""
    else:  # read under the file's names, then named as the contract names them (same order)
        table, how = _spread_parquet(pf, list(pf.schema_arrow.names))
        table = table.rename_columns(names) if table is not None else None
    keep = [c for c in (target, time_col) if c and c in names]
    labels = table if whole else \
        pa.concat_tables(list(parquet_tables(pf, keep, 1 << 16, contract.renames))) if keep else None
    return table, 0, whole, labels, how


def _spread_csv(path: Path, header: list[str], head):
    """The first half of the records, then STRETCHES runs of records read at even byte offsets
    through the rest of the file (from the end of the first half). A run starts after a line end. It is used only when each of
    its lines holds an even number of quote characters: a run that starts inside a quoted
    field has a line with an odd number (the closing quote), and so has a quoted field that
    spans lines; a run with a line of the wrong width is not used either."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    first_records = head
    head_rows, head_bytes = SAMPLE_ROWS // 2, SAMPLE_BYTES // 2
    head = head.slice(0, head_rows)
    size = path.stat().st_size
    start = _after_records(path, head.num_rows)
    if start >= size:
        return first_records, ""
    per_rows, per_bytes = (SAMPLE_ROWS - head_rows) // STRETCHES, (SAMPLE_BYTES - head_bytes) // STRETCHES
    parts, used = [head], 0
    with path.open("rb") as fh:
        for i in range(STRETCHES):
            fh.seek(start + (size - start) * i // STRETCHES)
            block = fh.read(per_bytes)
            first, last = block.find(b"\n"), block.rfind(b"\n")
            if first < 0 or last <= first:
                continue
            body = block[first + 1:last + 1]
            if b'"' in body and any(line.count(b'"') % 2 for line in body.split(b"\n")):
                continue  # it may start inside a quoted field, or a quoted field spans lines
            bad: list[int] = []
            try:
                t = pcsv.read_csv(pa.py_buffer(body),
                                  read_options=pcsv.ReadOptions(column_names=header, use_threads=False),
                                  parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: bad.append(1) or "skip",
                                                                  ignore_empty_lines=True),
                                  convert_options=pcsv.ConvertOptions(
                                      column_types={c: pa.string() for c in header}, strings_can_be_null=True,
                                      null_values=[""], quoted_strings_can_be_null=True))
            except (pa.ArrowException, UnicodeDecodeError):
                continue
            if bad or t.num_rows == 0:
                continue
            parts.append(t.slice(0, per_rows))
            used += 1
    if not used:
        return first_records, ""
    table = pa.concat_tables(parts)
    return table, "spread"


def _after_records(path: Path, records: int) -> int:
    """The byte offset after the header and the first `records` records: a line end inside a
    quoted field ends no record, and a blank line is none."""
    with path.open("rb") as fh:
        quoted, ended = False, -1
        while ended < records:
            line = fh.readline()
            if not line:
                break
            if not quoted and not line.strip():
                continue
            quoted ^= bool(line.count(b'"') % 2)
            ended += not quoted
        return fh.tell()


def _spread_parquet(pf, names: list[str]):
    """At most SAMPLE_ROWS records: a row group no larger than SAMPLE_BYTES is read and every
    k-th row taken; else the first rows of row groups spread through the file."""
    import pyarrow as pa

    from aiops.runtime.datafile import DataFileError

    meta = pf.metadata
    try:
        if meta.num_row_groups == 1:
            if meta.row_group(0).total_byte_size > SAMPLE_BYTES:
                return next(_first(pf, names, [0], SAMPLE_ROWS), None), ""
            t = pf.read_row_group(0, columns=names, use_threads=False)
            idx = np.linspace(0, t.num_rows - 1, SAMPLE_ROWS).astype(np.int64)
            return t.take(pa.array(np.unique(idx))), "spread"
        picks = sorted({int(g) for g in np.linspace(0, meta.num_row_groups - 1, STRETCHES + 1)})
        per = SAMPLE_ROWS // len(picks)
        parts = [t for g in picks for t in _first(pf, names, [g], per)]
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"cannot read the Parquet data source: {str(exc).splitlines()[0]}") from None
    return pa.concat_tables(parts), "spread"


def _first(pf, names: list[str], groups: list[int], rows: int):
    import pyarrow as pa

    for b in pf.iter_batches(batch_size=rows, row_groups=groups, columns=names, use_threads=False):
        yield pa.Table.from_batches([b])
        return


def check_sample(ctx: Ctx) -> None:
    """Runs after check_source and check_columns, when the contract and the header are usable."""
    from aiops.runtime.contract import ColumnRule, Contract
    from aiops.runtime.datafile import DataFileError, arrow_values

    from aiops.compiler.rules_data import data_format, source_path

    d = ctx.spec.data
    if ctx.header is None or any(x.is_error for x in ctx.diags) or not ctx.columns:
        return
    if any(c.dtype is None for c in ctx.columns.values()):
        return
    target = ctx.spec.problem.target if ctx.spec.problem else None
    time_col = d.split.time_column if d.split is not None and d.split.method == "time" else None
    rules = []
    for name, c in ctx.columns.items():
        ch = c.checks
        rules.append(ColumnRule(
            name=name, dtype=c.dtype, nullable=bool(c.nullable),
            ge=getattr(ch, "ge", None), le=getattr(ch, "le", None), gt=getattr(ch, "gt", None),
            lt=getattr(ch, "lt", None), isin=tuple(ch.isin) if ch is not None and ch.isin is not None else None,
            regex=getattr(ch, "regex", None),
            min_length=ch.str_length.min if ch is not None and ch.str_length else None,
            max_length=ch.str_length.max if ch is not None and ch.str_length else None,
            unique=bool(getattr(ch, "unique", False)), formats=tuple(c.formats or ()),
            source_name=c.source_name))
    from aiops.compiler.plan import row_check_entries

    contract = Contract(rules, target, row_checks=row_check_entries(d))  # check_row_checks found no error
    try:
        table, malformed, whole, label_table, how = _sample(source_path(ctx), data_format(d.source, d.format),
                                                            contract, target, time_col)
    except DataFileError as exc:
        ctx.err("E205", "cannot read the data source", ("data", "source"), str(exc),
                help="check data.format and that the file is not damaged")
        return
    if table is None:
        return
    n = table.num_rows
    where = f"the {'' if whole else 'first '}{n + malformed:,} records of {d.source}" if not how else \
        f"{n + malformed:,} records sampled through {d.source}"
    data = {r.name: arrow_values(table.column(r.name).combine_chunks(), r) for r in rules}
    nulls: dict[str, np.ndarray] = {}
    _, errs = contract.validate_columns(data, n, columns=rules, nulls=nulls)
    by_code: dict[tuple[str, str], list[int]] = {}
    for i, col, code, _msg in errs.items:
        by_code.setdefault((col, code), []).append(i)
    share_max = d.max_rejected_share if d.max_rejected_share is not None else 0.0
    for r in rules:
        base = ("data", "columns", r.name)
        present = int((~nulls[r.name]).sum())
        bad_dates = by_code.get((r.name, "bad_date"), [])
        if r.dtype in ("date", "datetime") and present and len(bad_dates) == present:
            example = table.column(r.name)[bad_dates[0]].as_py()
            looks = [f for f in _GUESS if _parses(example, f)]
            ctx.err("E221", f"no value of the {r.dtype} column is written in its formats", base + ("formats",),
                    f"none of the {present:,} values of '{r.name}' in {where} is written as "
                    f"{' or '.join(r.formats)}; e.g. '{shape(example)}' (masked: 9 is a digit, x a letter)",
                    help=(f"the values look like '{looks[0]}': add it to formats" if looks
                          else "write the format of the values in formats (strftime directives)"))
            continue
        for code, (ecode, what) in _CODE_AT.items():
            rows = by_code.get((r.name, code), [])
            if rows and len(rows) / max(n + malformed, 1) > share_max:
                example = table.column(r.name)[rows[0]].as_py()
                path = base + ("dtype",) if what == "dtype" else base + ("checks", "isin")
                ctx.err(ecode, f"the data does not fit the column's {what}", path,
                        f"{len(rows):,} of {where} ({len(rows) / (n + malformed):.1%}) have a value of '{r.name}' "
                        f"that {'is not ' + _a(r.dtype) if what == 'dtype' else 'is not in isin'}; e.g. "
                        + (f"'{shape(example)}' (masked: the column is pii)" if ctx.columns[r.name].pii
                           else repr(str(example)[:40])),
                        help=f"fix the {what} of '{r.name}', or the data; data.max_rejected_share is "
                             f"{share_max:.1%}")
    rejected = len(errs.by_row()) + malformed
    if (n + malformed) and rejected / (n + malformed) > share_max:
        top: dict[str, int] = {}
        for (col, code), rows in by_code.items():
            top[f"{col}: {code}"] = len(rows)
        if malformed:
            top["malformed"] = malformed
        notes = [f"{k:,} rows: {r}" for r, k in sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
        ctx.err("E224", "the data breaks the contract more than data.max_rejected_share allows",
                ("data", "max_rejected_share") if d.max_rejected_share is not None else ("data",),
                f"{rejected:,} of {where} ({rejected / (n + malformed):.1%}) would be quarantined; the spec "
                f"tolerates {share_max:.1%}", *notes,
                help="fix the data, or the contract where it is wrong (each reason is above or in the notes)")
    _check_labels(ctx, contract, label_table, target, time_col, errs.bad_rows if label_table is table else None,
                  where if label_table is table else f"{d.source}")


def _a(dtype: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "date": "a date",
            "datetime": "a date-time"}.get(dtype, "text")


def _parses(value: object, fmt: str) -> bool:
    try:
        datetime.strptime(str(value).strip(), fmt)
    except ValueError:
        return False
    return True


def _check_labels(ctx: Ctx, contract, table, target: str | None, time_col: str | None, bad, where: str) -> None:
    """A classification target with one class, or a split leaving a class too few rows."""
    from aiops.runtime.datafile import arrow_values

    p = ctx.spec.problem
    d = ctx.spec.data
    if table is None or target is None or p is None or p.task not in ("binary_classification",
                                                                        "multiclass_classification"):
        return
    rules = [contract.by_name[target]] + ([contract.by_name[time_col]] if time_col in contract.by_name else [])
    data = {r.name: arrow_values(table.column(r.name).combine_chunks(), r) for r in rules if r.name in table.column_names}
    if target not in data:
        return
    clean, errs = contract.validate_columns(data, table.num_rows, columns=[r for r in rules if r.name in data])
    ok = ~errs.bad_rows if bad is None else ~(errs.bad_rows | bad)
    y = np.array([_label(v) for v in clean[target][ok].tolist()], dtype=object)
    classes, counts = np.unique(y, return_counts=True) if len(y) else (np.array([]), np.array([]))
    path = ("problem", "target")
    if len(classes) == 1:
        ctx.err("E225", "the target has a single class", path,
                f"every one of the {len(y):,} rows of {where} that the contract accepts has "
                f"{target} = '{classes[0]}'", help="a classifier needs rows of at least two classes: fix the data "
                "or the contract's checks on the target")
        return
    if len(classes) < 2 or d.split is None:
        return
    sp = d.split
    if sp.method == "time" and time_col in clean and sp.test_start:
        days = clean[time_col][ok]
        start = (datetime.strptime(sp.test_start, "%Y-%m-%d") - datetime(1970, 1, 1)).days
        end = (datetime.strptime(sp.end, "%Y-%m-%d") - datetime(1970, 1, 1)).days if sp.end else np.inf
        parts = {"training rows": y[days < start], "holdout": y[(days >= start) & (days < end)]}
        how = f"the time split (test_start {sp.test_start}{', end ' + sp.end if sp.end else ''})"
        short = [(part, c, int((ys == c).sum())) for part, ys in parts.items() for c in classes
                 if (ys == c).sum() < MIN_CLASS_ROWS]
        about = ""
    else:
        size = sp.test_size if sp.test_size is not None else 0.2
        short = [(part, c, int(k * f)) for c, k in zip(classes, counts)
                 for part, f in (("holdout", size), ("training rows", 1 - size)) if k * f < MIN_CLASS_ROWS]
        how = f"the {sp.method} split (test_size {size:g})"
        about = "about "
    if short:
        part, c, k = short[0]
        ctx.err("E226", "the split leaves a class too few rows", ("data", "split"),
                f"{how} would leave {about}{k} row{'s' if k != 1 else ''} of class '{c}' in the {part} of "
                f"{where}; at least {MIN_CLASS_ROWS} are needed to train and to measure",
                help="move test_start/end, change test_size, or add rows of that class", key=True)


def _label(v: object) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else str(v)
    return str(v)
