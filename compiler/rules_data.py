"""Semantic rules for the data contract, the split and the source file."""
from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from pathlib import Path

from aiops.compiler.context import CATEGORICAL, NUMERIC, Ctx
from aiops.compiler.diagnostics import did_you_mean
from aiops.runtime.regex_safety import regex_hazard

ONNX_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DIRECTIVES = set("aAwdbBmyYHIpMSfzZjUWcxX%")


def source_path(ctx: Ctx) -> Path:
    return (ctx.spec_dir / ctx.spec.data.source).resolve()


def data_format(source: str, declared: str | None) -> str | None:
    if declared:
        return declared
    suffix = Path(source).suffix.lower()
    return {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)


def read_header(path: Path, fmt: str) -> list[str]:
    """The column names of a CSV or Parquet file, without reading its rows (a BOM is
    ignored, as every command ignores it)."""
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def check_source(ctx: Ctx) -> None:
    d = ctx.spec.data
    if not d.source:
        return
    path = source_path(ctx)
    fmt = data_format(d.source, d.format)
    if fmt is None:
        ctx.err("E202", "cannot tell the data format from the file name", ("data", "source"),
                f"'{d.source}' ends in neither .csv nor .parquet", help="set data.format: csv or parquet")
        return
    if not path.is_file():
        near = [str(p.relative_to(ctx.spec_dir)) for p in ctx.spec_dir.rglob("*") if p.is_file()
                and p.suffix in (".csv", ".parquet")]
        ctx.err("E201", "the data source does not exist", ("data", "source"),
                f"no file at '{path}' (paths are relative to the spec folder)",
                help=did_you_mean(d.source, near) or "fix data.source, or derive the file first")
        return
    try:
        ctx.header = read_header(path, fmt)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        ctx.err("E205", f"cannot read the header of the data source as {fmt}", ("data", "source"),
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                help="check data.format and that the file is not damaged")
        return
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own error types
        ctx.err("E205", f"cannot read the header of the data source as {fmt}", ("data", "source"),
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                help="check data.format and that the file is not damaged")
        return
    header = ctx.header
    from aiops.runtime.datafile import repeated_name

    dup = repeated_name(header)
    if dup:
        ctx.err("E220", "the data source repeats a column name", ("data", "source"),
                f"'{dup[0]}' is the name of columns {dup[1]} and {dup[2]} of the header of {d.source}",
                help="give each column its own name in the file (every command refuses the file as it is)")
        ctx.header = None  # nothing more can be read from this file
        return
    for name, col in ctx.columns.items():
        src = col.source_name if col is not None and isinstance(col.source_name, str) else None
        if (src or name) not in header:
            ctx.err("E203", "a column of the data contract is not in the data source", ("data", "columns", name),
                    f"'{src or name}' is not in the header of {d.source} ({len(header)} columns)",
                    help=did_you_mean(src or name, header) or "remove the column from the contract, or fix the data",
                    key=True)
        elif src and src != name and name in header:
            ctx.err("E227", "the data source has both the column and its source_name", ("data", "columns", name),
                    f"'{src}' is read as '{name}', but {d.source} also has a column '{name}'",
                    help="remove source_name, or one of the two columns from the file", key=True)


def _valid_format(fmt: str) -> bool:
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _DIRECTIVES:
                return False
            i += 2
        else:
            i += 1
    try:  # an aware time: %z and %Z print something that parses back
        datetime.strptime(datetime(2013, 1, 31, tzinfo=timezone.utc).strftime(fmt), fmt)
    except ValueError:
        return False
    return "%" in fmt


def check_columns(ctx: Ctx) -> None:
    for name, col in ctx.columns.items():
        if col is None:
            continue
        base = ("data", "columns", name)
        if not ONNX_SAFE.match(name):
            safe = re.sub(r"\W+", "_", name).strip("_")
            ctx.err("E204", "column name is not a safe identifier", base,
                    f"'{name}' must match [A-Za-z_][A-Za-z0-9_]* (it becomes an ONNX input name)",
                    help=f"name the column '{safe}' and read it from the file's header with source_name: '{name}'",
                    key=True)
        if col.dtype in ("date", "datetime"):
            if not col.formats:
                ctx.err("E206", f"a {col.dtype} column needs its accepted input formats", base + ("formats",),
                        f"'{name}' has dtype {col.dtype} but no formats",
                        help="add e.g. formats: ['%Y-%m-%d']" if col.dtype == "date" else
                        "add e.g. formats: ['%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S']", key=True)
            for i, f in enumerate(col.formats or []):
                if not _valid_format(f):
                    ctx.err("E206", "invalid date format", base + ("formats", i),
                            f"'{f}' is not a strftime format that can be parsed back",
                            help="use directives such as %Y, %m, %d, e.g. '%Y-%m-%d' or '%d/%m/%Y'")
        elif col.formats:
            ctx.err("E206", "formats are only for date and datetime columns", base + ("formats",),
                    f"'{name}' has dtype {col.dtype}", help="remove formats, or set dtype: date or datetime", key=True)
        ch = col.checks
        if ch is None:
            continue
        numeric_checks = [k for k in ("ge", "le", "gt", "lt") if getattr(ch, k) is not None]
        if numeric_checks and col.dtype is not None and col.dtype not in ("int", "float", "date", "datetime"):
            ctx.err("E207", "a range check does not fit the column's dtype", base + ("checks", numeric_checks[0]),
                    f"'{numeric_checks[0]}' compares numbers, but '{name}' has dtype {col.dtype}",
                    help="use isin for categories, or change the dtype")
        for k in ("regex", "str_length"):
            if getattr(ch, k) is not None and col.dtype is not None and col.dtype not in ("str", "category"):
                ctx.err("E207", "a string check does not fit the column's dtype", base + ("checks", k),
                        f"'{k}' applies to str or category columns, but '{name}' has dtype {col.dtype}",
                        help="remove the check, or change the dtype")
        if ch.regex is not None and check_regex_safety(ctx, ch.regex, base + ("checks", "regex")):
            try:
                re.compile(ch.regex)
            except re.error as exc:
                ctx.err("E207", "invalid regular expression", base + ("checks", "regex"), f"{exc}")
        lo = ch.ge if ch.ge is not None else ch.gt
        hi = ch.le if ch.le is not None else ch.lt
        if lo is not None and hi is not None and lo > hi:
            ctx.err("E208", "the range check is empty", base + ("checks",),
                    f"lower bound {lo} is above upper bound {hi}", help="swap or fix the bounds")
        if ch.str_length is not None and ch.str_length.min is not None and ch.str_length.max is not None \
                and ch.str_length.min > ch.str_length.max:
            ctx.err("E208", "the string length check is empty", base + ("checks", "str_length"),
                    f"min {ch.str_length.min} is above max {ch.str_length.max}")
        if ch.isin is not None and len(ch.isin) == 0:
            ctx.err("E208", "isin lists no value", base + ("checks", "isin"), "an empty isin rejects every row")


def check_regex_safety(ctx: Ctx, pattern: str, path: tuple, where: str = "") -> bool:
    """E017 a regular expression that can backtrack catastrophically (ReDoS): a spec is untrusted, and
    its patterns run on request data with no time limit. True when it is safe (or does not parse: ask
    before re.compile, which overflows its stack on hundreds of nested groups). The one rule is
    runtime/regex_safety.py, which the runtime applies again when it loads the pattern."""
    hazard = regex_hazard(pattern)
    if hazard is None:
        return True
    shown = pattern if len(pattern) <= 80 else pattern[:60] + "..."
    ctx.err("E017", "a regular expression can take exponential time (ReDoS)", path,
            f"{where}{shown!r}: {hazard.reason}", help=hazard.fix)
    return False


def check_split(ctx: Ctx) -> None:
    d = ctx.spec.data
    sp = d.split if d is not None else None
    if sp is None:
        return
    base = ("data", "split")
    if sp.test_size is not None and not (0.0 < sp.test_size < 1.0):
        ctx.err("E209", "split.test_size is out of range", base + ("test_size",),
                f"'data.split.test_size' must be a float in the range (0.0, 1.0). Got {sp.test_size} instead.")
    task = ctx.spec.problem.task if ctx.spec.problem else None
    if sp.method == "stratified" and task == "regression":
        ctx.err("E209", "a stratified split needs a classification task", base + ("method",),
                "the task is regression", help="use method: random or time")
    if sp.method == "time":
        if not sp.time_column:
            ctx.err("E209", "a time split needs a time column", base, "data.split.time_column is not set",
                    help="set time_column to a date column", key=True)
        else:
            col = ctx.column_ref(sp.time_column, base + ("time_column",), "data.split.time_column")
            if col is not None and col.dtype not in ("date", "datetime"):
                ctx.err("E209", "the time column of a split must be a date", base + ("time_column",),
                        f"'{sp.time_column}' has dtype {col.dtype}")
        for k in ("test_start", "end"):
            v = getattr(sp, k)
            if k == "test_start" and v is None:
                ctx.err("E209", "a time split needs test_start", base, help="set test_start: 'YYYY-MM-DD'", key=True)
            if v is not None:
                try:
                    datetime.strptime(v, "%Y-%m-%d")
                except ValueError:
                    ctx.err("E209", f"split.{k} is not a date", base + (k,),
                            f"'data.split.{k}' must be a date written YYYY-MM-DD. Got '{v}' instead.")
        if sp.test_start and sp.end and sp.test_start >= sp.end:
            ctx.err("E209", "the holdout window is empty", base + ("end",),
                    f"end {sp.end} is not after test_start {sp.test_start}")
    elif sp.time_column or sp.test_start or sp.end:
        which = "time_column" if sp.time_column else ("test_start" if sp.test_start else "end")
        ctx.err("E209", f"split.{which} only applies to a time split", base + (which,),
                f"the split method is {sp.method}", help="set method: time, or remove it")
    if d.max_rejected_share is not None and not (0.0 <= d.max_rejected_share <= 1.0):
        ctx.err("E210", "max_rejected_share is out of range", ("data", "max_rejected_share"),
                f"'data.max_rejected_share' must be a float in the range [0.0, 1.0]. Got {d.max_rejected_share} instead.")
    if d.key is not None:
        ctx.column_ref(d.key, ("data", "key"), "data.key", code="E211")


def check_problem(ctx: Ctx) -> None:
    p = ctx.spec.problem
    if p is None or p.target is None:
        return
    col = ctx.column_ref(p.target, ("problem", "target"), "problem.target", code="E301")
    if col is None:
        return
    if p.task in ("binary_classification", "multiclass_classification") and col.dtype not in CATEGORICAL + ("int",):
        ctx.err("E302", "the target's dtype does not fit the task", ("problem", "target"),
                f"classification needs a category, str, bool or int target; '{p.target}' has dtype {col.dtype}")
    if p.task == "regression" and col.dtype not in ("int", "float"):
        ctx.err("E302", "the target's dtype does not fit the task", ("problem", "target"),
                f"regression needs an int or float target; '{p.target}' has dtype {col.dtype}")
    if p.task == "binary_classification":
        if p.positive_class is None:
            ctx.err("E302", "a binary task needs its positive class", ("problem",),
                    "problem.positive_class is not set", help="set positive_class to the label of the event to predict",
                    key=True)
        elif col.checks is not None and col.checks.isin is not None:
            labels = [str(v) for v in col.checks.isin]
            if str(p.positive_class) not in labels:
                ctx.err("E302", "the positive class is not a label of the target", ("problem", "positive_class"),
                        f"'{p.positive_class}' is not in {p.target}'s isin {labels}",
                        help=did_you_mean(str(p.positive_class), labels))
    if p.task in ("regression", "multiclass_classification") and p.positive_class is not None:
        why = ("a regression model predicts a number; there is no class" if p.task == "regression" else
               "a multiclass model predicts its most probable class; there is no single positive class "
               "(a fairness bound names its own class)")
        ctx.err("E304", "positive_class does not apply to the task", ("problem", "positive_class"),
                f"{why}; problem.task is {p.task}", help="remove problem.positive_class")
    if col.nullable:
        ctx.err("E302", "the target may not be nullable", ("data", "columns", p.target, "nullable"),
                "rows without a label cannot be used for training", help="set nullable: false")


__all__ = ["check_source", "check_columns", "check_split", "check_problem", "NUMERIC", "ONNX_SAFE"]
