"""The conformance table: hostile values and rows, each with its expected verdict and reason
codes, run through every path that judges data, which must all agree:

- the contract core on records (`Contract.validate_records`: HTTP requests, jobs, Predictor)
  and on columns (`Contract.validate_columns`);
- the serving fast path (`http_rows.RowAcceptor`): it may defer, but what it accepts is what
  the core accepts, with the same clean values;
- batch scoring (`score._Validator` over the file as `runtime.datafile` reads it), once with
  few rows and once with enough repeats for the once-per-distinct-value path;
- compile and retrain (`training.read_table` + `training.validate`, with the pandera schema
  compile generates for the column re-checking the accepted rows);
- `aiops monitor`'s data-quality counts (`monitor_columns.ColumnChecker`).

A guard fails when a dtype, a check or a reason code of the core has no row here.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from aiops.compiler import plan as P
from aiops.compiler import schema as S
from aiops.runtime import contract as C
from aiops.runtime.contract import ColumnRule, Contract
from aiops.runtime.datafile import CsvRecords
from aiops.runtime.serve.rows import RowAcceptor
from aiops.runtime.monitor.columns import ColumnChecker
from aiops.runtime.score.scorer import _Validator
from aiops.compiler.training import read_table, validate

OK = frozenset()


def codes(*c: str) -> frozenset:
    return frozenset(c)


# ---------------------------------------------------------------------------- the columns
# name -> the spec's column (the compiler turns it into contract.json and the pandera schema)
COLUMNS: dict[str, S.Column] = {
    "i_range": S.Column("int", checks=S.Checks(ge=0, le=100)),
    "i_gt": S.Column("int", nullable=True, checks=S.Checks(gt=0, lt=10)),
    "i_isin": S.Column("int", checks=S.Checks(isin=[0, 1])),
    "f_range": S.Column("float", nullable=True, checks=S.Checks(ge=-10, le=10)),
    "f_plain": S.Column("float"),
    "b": S.Column("bool"),
    "b_null": S.Column("bool", nullable=True),
    "d": S.Column("date", formats=["%Y-%m-%d", "%d/%m/%Y"]),
    "s_rx": S.Column("str", checks=S.Checks(regex="^[A-Z]{2}$", str_length=S.StrLength(2, 2))),
    "s_len": S.Column("str", nullable=True, checks=S.Checks(str_length=S.StrLength(min=2, max=4))),
    "c_isin": S.Column("category", checks=S.Checks(isin=["a", "b", "c d"])),
    "c_num": S.Column("category", checks=S.Checks(isin=[1, 2])),
    "u": S.Column("str", checks=S.Checks(unique=True)),
    "u_int": S.Column("int", nullable=True, checks=S.Checks(unique=True)),
    "dt": S.Column("datetime", formats=["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f",
                                        "%Y-%m-%dT%H:%M:%S"]),
    "dt_day": S.Column("datetime", nullable=True, formats=["%Y-%m-%d"]),
}


def _at(days: int, seconds: float) -> float:
    """A date-time's clean value: days since 1970-01-01, the time of day a fraction."""
    return days + seconds / 86400

# (column, the value as written in a CSV file, expected codes, the clean value when accepted)
TEXT: list[tuple[str, str, frozenset, object]] = [
    # int: whole numbers however written; nothing else
    ("i_range", "35", OK, 35.0), ("i_range", "35.0", OK, 35.0), ("i_range", "3.5e1", OK, 35.0),
    ("i_range", " 35 ", OK, 35.0), ("i_range", "+35", OK, 35.0), ("i_range", "-0", OK, -0.0),
    ("i_range", "0.0", OK, 0.0), ("i_range", "1e2", OK, 100.0), ("i_range", "100.000", OK, 100.0),
    ("i_range", "35.5", codes("wrong_type"), None), ("i_range", "abc", codes("wrong_type"), None),
    ("i_range", "NaN", codes("wrong_type"), None), ("i_range", "nan", codes("wrong_type"), None),
    ("i_range", "-nan", codes("wrong_type"), None), ("i_range", "NA", codes("wrong_type"), None),
    ("i_range", "null", codes("wrong_type"), None), ("i_range", "None", codes("wrong_type"), None),
    ("i_range", "inf", codes("not_finite"), None), ("i_range", "-inf", codes("not_finite"), None),
    ("i_range", "Infinity", codes("not_finite"), None), ("i_range", "1e400", codes("not_finite"), None),
    ("i_range", "", codes("null"), None), ("i_range", "   ", codes("null"), None),
    ("i_range", "\t", codes("null"), None), ("i_range", "101", codes("out_of_range"), None),
    ("i_range", "-1", codes("out_of_range"), None), ("i_range", "1_000", codes("wrong_type"), None),
    ("i_range", "0x10", codes("wrong_type"), None), ("i_range", "1,5", codes("wrong_type"), None),
    ("i_range", "١٢", codes("wrong_type"), None), ("i_range", "12abc", codes("wrong_type"), None),
    ("i_range", "true", codes("wrong_type"), None), ("i_range", "1e", codes("wrong_type"), None),
    ("i_range", ".", codes("wrong_type"), None), ("i_range", "--1", codes("wrong_type"), None),
    ("i_range", "99.99999", codes("wrong_type"), None), ("i_range", "1e-5", codes("wrong_type"), None),
    ("i_gt", "5", OK, 5.0), ("i_gt", "", OK, None), ("i_gt", "0", codes("out_of_range"), None),
    ("i_gt", "10", codes("out_of_range"), None), ("i_gt", "9.0", OK, 9.0), ("i_gt", "x", codes("wrong_type"), None),
    ("i_isin", "0", OK, 0.0), ("i_isin", "1.0", OK, 1.0), ("i_isin", "2", codes("not_in_set"), None),
    ("i_isin", "-0", OK, -0.0), ("i_isin", "", codes("null"), None), ("i_isin", "yes", codes("wrong_type"), None),
    # float
    ("f_range", "1.5", OK, 1.5), ("f_range", "-0.0", OK, -0.0), ("f_range", ".5", OK, 0.5), ("f_range", "5.", OK, 5.0),
    ("f_range", "1e1", OK, 10.0), ("f_range", "1e-320", OK, 1e-320), ("f_range", "", OK, None),
    ("f_range", "  ", OK, None), ("f_range", "NaN", codes("wrong_type"), None),
    ("f_range", "inf", codes("not_finite"), None), ("f_range", "10.0001", codes("out_of_range"), None),
    ("f_range", "-11", codes("out_of_range"), None), ("f_range", "abc", codes("wrong_type"), None),
    ("f_range", "1.5.2", codes("wrong_type"), None), ("f_range", " -2.5 ", OK, -2.5),
    ("f_plain", "", codes("null"), None), ("f_plain", "1e300", OK, 1e300), ("f_plain", "-1e308", OK, -1e308),
    ("f_plain", "1e309", codes("not_finite"), None), ("f_plain", "nan", codes("wrong_type"), None),
    ("f_plain", "3", OK, 3.0),
    # bool
    ("b", "true", OK, 1.0), ("b", "false", OK, 0.0), ("b", "True", OK, 1.0), ("b", "FALSE", OK, 0.0),
    ("b", " true ", OK, 1.0), ("b", "1", codes("wrong_type"), None), ("b", "0", codes("wrong_type"), None),
    ("b", "yes", codes("wrong_type"), None), ("b", "t", codes("wrong_type"), None), ("b", "", codes("null"), None),
    ("b", "truee", codes("wrong_type"), None), ("b_null", "", OK, None), ("b_null", "false", OK, 0.0),
    ("b_null", "no", codes("wrong_type"), None),
    # date, in each declared format
    ("d", "2013-08-13", OK, 15930.0), ("d", "13/08/2013", OK, 15930.0), ("d", " 2013-08-13 ", OK, 15930.0),
    ("d", "2013-8-13", OK, 15930.0), ("d", "2013-02-30", codes("bad_date"), None),
    ("d", "2013-08-13 06:03:42", codes("bad_date"), None), ("d", "20130813", codes("bad_date"), None),
    ("d", "08/13/2013", codes("bad_date"), None), ("d", "", codes("null"), None), ("d", "NaT", codes("bad_date"), None),
    ("d", "yesterday", codes("bad_date"), None), ("d", "1900-01-01", OK, -25567.0), ("d", "2013-13-01", codes("bad_date"), None),
    # str: regex (search) and length, text as written
    ("s_rx", "AB", OK, "AB"), ("s_rx", "ab", codes("regex"), None), ("s_rx", "ABC", codes("regex", "str_length"), None),
    ("s_rx", "A", codes("regex", "str_length"), None), ("s_rx", "", codes("null"), None), ("s_rx", " ", codes("null"), None),
    ("s_rx", " AB", codes("regex", "str_length"), None), ("s_rx", "ÄB", codes("regex"), None),
    ("s_rx", "A\nB", codes("regex", "str_length"), None), ("s_rx", '"AB"', codes("regex", "str_length"), None),
    ("s_len", "abcd", OK, "abcd"), ("s_len", "ab", OK, "ab"), ("s_len", "a", codes("str_length"), None),
    ("s_len", "abcde", codes("str_length"), None), ("s_len", "", OK, None), ("s_len", "日本語", OK, "日本語"),
    ("s_len", "  x ", OK, "  x "), ("s_len", "x" * 5000, codes("str_length"), None), ("s_len", "NaN", OK, "NaN"),
    ("s_len", "null", OK, "null"),
    # category: isin on the text
    ("c_isin", "a", OK, "a"), ("c_isin", "c d", OK, "c d"), ("c_isin", "A", codes("not_in_set"), None),
    ("c_isin", " a", codes("not_in_set"), None), ("c_isin", "", codes("null"), None),
    ("c_isin", "a,b", codes("not_in_set"), None), ("c_isin", "'a'", codes("not_in_set"), None),
    ("c_num", "1", OK, "1"), ("c_num", "2", OK, "2"), ("c_num", "1.0", codes("not_in_set"), None),
    ("c_num", "3", codes("not_in_set"), None),
    # unique, per column: a later repeat is a duplicate (the rows are in this order in one input)
    ("u", "k1", OK, "k1"), ("u", "k2", OK, "k2"), ("u", "k1", codes("duplicate"), None),
    ("u", "", codes("null"), None), ("u", "k1 ", OK, "k1 "), ("u", "k2", codes("duplicate"), None),
    ("u_int", "7", OK, 7.0), ("u_int", "7.0", codes("duplicate"), None), ("u_int", "", OK, None),
    ("u_int", "", OK, None), ("u_int", "x", codes("wrong_type"), None), ("u_int", "8", OK, 8.0),
]

# more of the same kinds, written in bulk
TEXT += [("f_plain", t, OK, float(t.strip())) for t in
         ["0", "-0.5", "1e-7", "123456789.125", "2.5E3", "+.5", "  7  ", "\t8\t", "1E+2", "-1e-2", "0000.1",
          "9007199254740993", "4.9e-324", "1.7976931348623157e308"]]
TEXT += [("f_plain", t, codes("wrong_type"), None) for t in
         ["1 2", "e5", "1e+", "++1", "1..2", "½", "٣", "1e5x", "0b1", "nanx", "- 1", "1-", "$1", "1%", "(1)", "1/2",
          "NULL", "n/a", "#N/A", "none", "?", "-", "1.0.0", "0x1p3", "١.٥"]]
TEXT += [("f_plain", t, codes("not_finite"), None) for t in ["INF", "infinity", "-Infinity", "+inf", "1e999"]]
TEXT += [("d", t, OK, float(days)) for t, days in
         [("2020-02-29", 18321), ("29/02/2020", 18321), ("0001-01-01", -719162), ("9999-12-31", 2932896)]]
TEXT += [("d", t, codes("bad_date"), None) for t in
         ["2019-02-29", "31/04/2020", "2013-08-13T00:00", "13.08.2013", "2013/08/13", "Aug 13 2013", "-2013-08-13",
          "2013-08-13x", "2013-08", "15930", "0000-01-01"]]
TEXT += [("c_isin", t, codes("not_in_set"), None) for t in ["c  d", "C D", "c\td", "ａ", "b ", "a\n", "ab"]]
TEXT += [("b", t, codes("wrong_type"), None) for t in ["on", "off", "y", "n", "1.0", "T", "F", "tru", "vrai"]]
# datetime: the time of day kept (a fraction of the day); an offset is taken to UTC
TEXT += [
    ("dt", "2013-08-13 06:03:42", OK, _at(15930, 21822)), ("dt", "2013-08-13T06:03:42", OK, _at(15930, 21822)),
    ("dt", " 2013-08-13 06:03:42 ", OK, _at(15930, 21822)), ("dt", "2013-08-13 00:00:00", OK, 15930.0),
    ("dt", "2013-08-13T06:03:42+02:00", OK, _at(15930, 14622)), ("dt", "2013-08-13T06:03:42Z", OK, _at(15930, 21822)),
    ("dt", "2013-08-13T23:30:00-01:00", OK, _at(15931, 1800)), ("dt", "2013-08-13T00:30:00+01:00", OK, _at(15929, 84600)),
    ("dt", "2013-08-13T06:03:42.5", OK, _at(15930, 21822.5)), ("dt", "1969-12-31 23:00:00", OK, _at(-1, 82800)),
    ("dt", "2013-08-13 23:59:59", OK, _at(15930, 86399)), ("dt", "2020-02-29 12:00:00", OK, 18321.5),
    ("dt", "2013-08-13", codes("bad_date"), None), ("dt", "2013-08-13 24:00:00", codes("bad_date"), None),
    ("dt", "2013-08-13 06:03", codes("bad_date"), None), ("dt", "13/08/2013 06:03:42", codes("bad_date"), None),
    ("dt", "2013-02-30 00:00:00", codes("bad_date"), None), ("dt", "2013-08-13T06:03:42+25:00", codes("bad_date"), None),
    ("dt", "", codes("null"), None), ("dt", "NaT", codes("bad_date"), None), ("dt", "1376373822", codes("bad_date"), None),
    ("dt", "2013-08-13 06:03:42 PM", codes("bad_date"), None),
    ("dt_day", "2013-08-13", OK, 15930.0), ("dt_day", "", OK, None), ("dt_day", "2013-08-13 06:00:00", codes("bad_date"), None),
]

# (column, a JSON value (HTTP request, job, Predictor), expected codes, the clean value)
JSON: list[tuple[str, object, frozenset, object]] = [
    ("i_range", 35, OK, 35.0), ("i_range", 35.0, OK, 35.0), ("i_range", -0.0, OK, -0.0),
    ("i_range", 35.5, codes("wrong_type"), None), ("i_range", True, codes("wrong_type"), None),
    ("i_range", None, codes("null"), None), ("i_range", float("nan"), codes("null"), None),
    ("i_range", float("inf"), codes("not_finite"), None), ("i_range", [], codes("wrong_type"), None),
    ("i_range", {}, codes("wrong_type"), None), ("i_range", 2 ** 60, codes("wrong_type"), None),
    ("i_range", 101, codes("out_of_range"), None), ("i_range", "35", OK, 35.0), ("i_range", "", codes("null"), None),
    ("i_isin", 1, OK, 1.0), ("i_isin", 2, codes("not_in_set"), None), ("i_isin", False, codes("wrong_type"), None),
    ("f_range", 1.5, OK, 1.5), ("f_range", None, OK, None), ("f_range", 11, codes("out_of_range"), None),
    ("f_range", "1.5", OK, 1.5), ("f_range", "NaN", codes("wrong_type"), None), ("f_plain", 1e308, OK, 1e308),
    ("f_plain", -float("inf"), codes("not_finite"), None), ("f_plain", None, codes("null"), None),
    ("b", True, OK, 1.0), ("b", False, OK, 0.0), ("b", 1, codes("wrong_type"), None), ("b", 0.0, codes("wrong_type"), None),
    ("b", "true", OK, 1.0), ("b", None, codes("null"), None), ("b", "", codes("null"), None),
    ("b", [True], codes("wrong_type"), None), ("b_null", None, OK, None),
    ("d", "2013-08-13", OK, 15930.0), ("d", 20130813, codes("bad_date"), None), ("d", None, codes("null"), None),
    ("d", "", codes("null"), None), ("d", True, codes("bad_date"), None), ("d", ["2013-08-13"], codes("bad_date"), None),
    ("s_rx", "AB", OK, "AB"), ("s_rx", 12, codes("regex"), None), ("s_rx", 1.5, codes("wrong_type"), None),
    ("s_rx", True, codes("wrong_type"), None), ("s_rx", "", codes("null"), None), ("s_rx", "  ", codes("null"), None),
    ("s_rx", "\ud800A", codes("invalid_text"), None), ("s_rx", {"a": 1}, codes("wrong_type"), None),
    ("s_len", "\ud800", codes("invalid_text"), None), ("s_len", 12345, codes("str_length"), None),
    ("s_len", 123, OK, "123"), ("c_isin", "a", OK, "a"), ("c_isin", 1, codes("not_in_set"), None),
    ("c_num", 1, OK, "1"), ("c_num", 1.0, codes("wrong_type"), None), ("c_num", "2", OK, "2"),
    ("dt", "2013-08-13T06:03:42", OK, _at(15930, 21822)), ("dt", 1376373822, codes("bad_date"), None),
    ("dt", None, codes("null"), None), ("dt", "2013-08-13T06:03:42+02:00", OK, _at(15930, 14622)),
    ("dt", True, codes("bad_date"), None), ("dt_day", None, OK, None), ("dt_day", "2013-08-13", OK, 15930.0),
]


def _rule(name: str) -> ColumnRule:
    entry = P._contract_entry(name, COLUMNS[name], True, None)
    return Contract.from_dict({"columns": [entry]}).columns[0]


def _schema(*names: str, columns: dict[str, S.Column] = COLUMNS):
    """The pandera schema compile generates for these columns (templates/pipeline/schema.py.j2)."""
    import pandera.pandas as pa_

    from aiops.compiler.training import dates_parse

    out = {}
    for name in names:
        col = columns[name]
        # as templates/pipeline/schema.py.j2 prints them: the typed checks, then the two it adds
        checks = [getattr(pa_.Check, method)(*args) for method, args in P._checks(col)]
        if col.checks.unique and col.nullable:
            checks.append(pa_.Check(lambda s: s.isna() | ~s.duplicated(keep=False), error="unique (nulls aside)"))
        if col.dtype in ("date", "datetime"):
            checks.append(pa_.Check(lambda s, f=tuple(col.formats): dates_parse(s, f), element_wise=False))
        out[name] = pa_.Column(P.PANDERA_DTYPE[col.dtype], nullable=col.nullable,
                               unique=col.checks.unique and not col.nullable,
                               checks=checks or None)
    return pa_.DataFrameSchema(out, strict=False, coerce=True)


def _by_column(rows):
    out: dict[str, list] = {}
    for name, value, expected, clean in rows:
        out.setdefault(name, []).append((value, expected, clean))
    return out


def _codes_of(errors, n: int) -> list[frozenset]:
    got = [set() for _ in range(n)]
    for i, _col, code, _msg in errors.items:
        got[i].add(code)
    return [frozenset(g) for g in got]


def _same(a: object, b: object) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def _write_csv(path: Path, name: str, values: list[str], repeat: int = 1) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([name, "row"])
        for k in range(repeat):
            for j, v in enumerate(values):
                w.writerow([v, f"{k}-{j}"])  # a second column, so that no line of the table is blank


TEXT_COLUMNS = sorted(_by_column(TEXT))


@pytest.mark.parametrize("name", TEXT_COLUMNS)
def test_written_values_get_one_verdict_on_every_path(name: str, tmp_path: Path):
    cases = _by_column(TEXT)[name]
    values = [v for v, _, _ in cases]
    expected = [e for _, e, _ in cases]
    rule = _rule(name)
    contract = Contract([rule])
    n = len(values)

    # the core, on records (HTTP, jobs, Predictor) and on columns
    cols, errs = contract.validate_records([{name: v} for v in values])
    assert _codes_of(errs, n) == expected
    for (v, e, clean), got in zip(cases, cols[name].tolist()):
        if not e:
            assert _same(clean, got), (v, clean, got)
    _, errs = contract.validate_columns({name: np.array(values, dtype=object)}, n)
    assert _codes_of(errs, n) == expected

    # the serving fast path: it may defer (None), never accept what the core rejects
    acc = RowAcceptor(contract)
    for (v, e, clean) in cases:
        if "duplicate" in e:  # alone in a request, the value is no repeat
            continue
        vals = acc.values({name: v})
        if vals is not None:
            assert not e and _same(clean, vals[0]), (v, e, vals)
    if rule.unique:  # several records in one request: a repeat is left to the core
        assert acc.accept([{name: v} for v in values]) is None

    # the file, read as every command reads it
    path = tmp_path / "data.csv"
    _write_csv(path, name, values)
    for repeat in (1, 8):  # 8 repeats: score validates a text column once per distinct value
        _write_csv(path, name, values, repeat)
        rec = CsvRecords(path, None)
        table = next(rec.tables())
        assert rec.blank == 0 and rec.malformed == [] and table.num_rows == n * repeat
        want = expected * repeat if not rule.unique else None
        # batch scoring
        validator = _Validator(contract, [name, "row"])
        clean, errs, distinct = validator.validate(table.select([name]))
        got = _codes_of(errs, n * repeat)
        if want is not None:
            assert got == want
        else:
            assert got[:n] == expected and all(c == codes("duplicate") or c == expected[j % n]
                                               for j, c in enumerate(got[n:], n))
        # monitor's data-quality counts (per chunk; unique across chunks)
        checker = ColumnChecker(contract)
        checked = checker.check(name, table.column(name), n * repeat)
        bad = np.flatnonzero(checked.bad).tolist()
        assert bad == [j for j, c in enumerate(got) if c], name
        counts: dict[str, int] = {}
        for c in got:
            for code in c:
                counts[code] = counts.get(code, 0) + 1
        assert checked.codes == counts

    # compile and retrain: training.validate with the generated pandera schema re-checking
    _write_csv(path, name, values)
    contract_t = Contract([rule, ColumnRule("row", "str")])
    v = validate(read_table(path, "csv"), _schema(name), contract_t)
    assert (v.rows_in, v.accepted, v.quarantined) == (n, sum(1 for e in expected if not e),
                                                       sum(1 for e in expected if e))
    reasons = dict(zip(v.quarantine["row"].tolist(), v.quarantine["reasons"].tolist()))
    for j, e in enumerate(expected, 1):
        if e:
            assert {r.split(" (")[0] for r in reasons[j].split("; ")} == {f"{name}: {c}" for c in e}, reasons[j]
        else:
            assert j not in reasons


JSON_COLUMNS = sorted(_by_column(JSON))


@pytest.mark.parametrize("name", JSON_COLUMNS)
def test_json_values_get_one_verdict_in_the_core_and_the_fast_path(name: str):
    cases = _by_column(JSON)[name]
    contract = Contract([_rule(name)])
    cols, errs = contract.validate_records([{name: v} for v, _, _ in cases])
    assert _codes_of(errs, len(cases)) == [e for _, e, _ in cases]
    acc = RowAcceptor(contract)
    for (v, e, clean), got in zip(cases, cols[name].tolist()):
        if not e:
            assert _same(clean, got), (v, clean, got)
        vals = acc.values({name: v})
        if vals is not None:
            assert not e and _same(clean, vals[0]), (v, e, vals)


def test_parquet_values_of_the_wrong_type_get_the_core_verdict(tmp_path: Path):
    """A Parquet file stores types: the values reach the core as stored, on every path."""
    import pyarrow.parquet as pq

    from datetime import datetime

    table = pa.table({"i_range": pa.array([True, False, None], pa.bool_()),
                      "f_plain": pa.array(["1.5", "NaN", "x"]),
                      "s_rx": pa.array([12, 3, None], pa.int64()),
                      "d": pa.array([datetime(2013, 8, 13, 6, 3), None, datetime(1970, 1, 1)], pa.timestamp("s"))})
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    contract = Contract([_rule(c) for c in table.column_names])
    expected = [
        {"i_range": codes("wrong_type"), "f_plain": OK, "s_rx": codes("regex"), "d": OK},
        {"i_range": codes("wrong_type"), "f_plain": codes("wrong_type"), "s_rx": codes("regex", "str_length"),
         "d": codes("null")},
        {"i_range": codes("null"), "f_plain": codes("wrong_type"), "s_rx": codes("null"), "d": OK},
    ]
    raw = read_table(path, "parquet")
    v = validate(raw, _schema(*table.column_names), contract)
    assert (v.rows_in, v.accepted, v.quarantined) == (3, 0, 3)
    for j, e in enumerate(expected):
        found = {r.split(" (")[0] for r in v.quarantine["reasons"][j].split("; ")}
        assert found == {f"{c}: {code}" for c, x in e.items() for code in x}
    validator = _Validator(contract, table.column_names)
    _, errs, _ = validator.validate(raw.table.select(table.column_names))
    got: list[dict[str, set]] = [{c: set() for c in table.column_names} for _ in range(3)]
    for i, col, code, _ in errs.items:
        got[i][col].add(code)
    assert got == [{k: set(x) for k, x in e.items()} for e in expected]
    checker = ColumnChecker(contract)
    for c in table.column_names:
        bad = checker.check(c, raw.table.column(c), 3).bad.tolist()
        assert bad == [bool(e[c]) for e in expected], c


def test_every_dtype_check_and_reason_code_has_rows_in_the_table():
    """The guard: a new dtype, check or reason code of the core cannot land without rows here."""
    fields = {f.name for f in dataclasses.fields(ColumnRule)}
    assert fields - {"name", "dtype", "required", "pii", "sensitive", "masking", "source_name"} == set(C.CHECKS)
    assert set(C.DTYPES) == set(P.PANDERA_DTYPE)
    rules = [_rule(n) for n in COLUMNS]
    assert {r.dtype for r in rules} == set(C.DTYPES)
    used = {n for n, *_ in TEXT} | {n for n, *_ in JSON}
    assert used == set(COLUMNS)
    for check in C.CHECKS:
        assert any(getattr(r, check) is not None and getattr(r, check) is not False and getattr(r, check) != ()
                   for r in rules), f"no column of the table uses {check}"
    seen = {c for _, _, e, _ in TEXT + JSON for c in e}
    row_level = {"missing_field", "unknown_field", "not_an_object", "malformed"}  # tests/test_contract_rows.py
    assert set(C.REASON_CODES) - row_level - {"row_check"} == seen
    assert "row_check" in {c.split(":")[0] for _, e in ROW_CHECK_ROWS for c in e}  # the row checks' table
    assert len(TEXT) + len(JSON) >= 200


def test_unique_holds_across_the_parts_of_one_input_on_the_fast_path_and_in_the_core():
    """A job is scored in chunks: the fast path and the core share the values seen so far."""
    contract = Contract([_rule("u")])
    acc = RowAcceptor(contract)
    seen: dict[str, dict] = {}
    assert acc.accept([{"u": "k1"}, {"u": "k2"}], seen) is not None
    assert acc.accept([{"u": "k3"}, {"u": "k1"}], seen) is None  # k1 was in the first chunk: the core decides
    assert set(seen["u"]) == {"k1", "k2"}  # a refused chunk adds nothing
    _, errs = contract.validate_records([{"u": "k3"}, {"u": "k1"}], seen=seen)
    assert [(i, code) for i, _, code, _ in errs.items] == [(1, "duplicate")]
    assert set(seen["u"]) == {"k1", "k2", "k3"}


# ---------------------------------------------------------------------------- row checks
# data.row_checks: one comparison per check, on the clean values; a null operand, or one that
# failed its own column's check, passes (the row is quarantined for that already)
ROW_COLUMNS: dict[str, S.Column] = {
    "booked": S.Column("datetime", formats=["%Y-%m-%d %H:%M:%S"]),
    "released": S.Column("datetime", nullable=True, formats=["%Y-%m-%d %H:%M:%S"]),
    "day": S.Column("date", nullable=True, formats=["%Y-%m-%d"]),
    "a": S.Column("int", checks=S.Checks(ge=0)),
    "b": S.Column("int", nullable=True),
    "s": S.Column("category", nullable=True),
    "t": S.Column("category", nullable=True),
}
ROW_CHECKS = [S.RowCheck("released_after_booked", "released >= booked"), S.RowCheck("a_small", "a < 100"),
              S.RowCheck("b_le_a", "b <= a"), S.RowCheck("not_x", "s != 'x'"), S.RowCheck("same_as_s", "t == s"),
              S.RowCheck("after_2013", "day >= '2013-01-01'"), S.RowCheck("booked_on_or_after_day", "booked >= day")]
GOOD = {"booked": "2013-08-13 06:00:00", "released": "2013-08-13 07:00:00", "day": "2013-08-13", "a": "5", "b": "3",
        "s": "y", "t": "y"}


def rc(*names: str) -> frozenset:
    return frozenset(f"row_check:{n}" for n in names)


# (changes to GOOD, expected codes)
ROW_CHECK_ROWS: list[tuple[dict[str, str], frozenset]] = [
    ({}, OK),
    ({"released": "2013-08-13 05:59:59"}, rc("released_after_booked")),
    ({"released": "2013-08-13 06:00:00"}, OK),
    ({"released": ""}, OK),
    ({"released": "2013-08-13"}, codes("bad_date")),
    ({"a": "150"}, rc("a_small")),
    ({"a": "99.0"}, OK),
    ({"a": "-1"}, codes("out_of_range")),
    ({"a": "abc"}, codes("wrong_type")),
    ({"b": "7"}, rc("b_le_a")),
    ({"b": "5"}, OK),
    ({"b": ""}, OK),
    ({"s": "x", "t": "x"}, rc("not_x")),
    ({"t": "z"}, rc("same_as_s")),
    ({"s": "", "t": "z"}, OK),
    ({"t": ""}, OK),
    ({"day": "2012-12-31"}, rc("after_2013")),
    ({"day": "2013-08-14"}, rc("booked_on_or_after_day")),
    ({"booked": "2013-08-13 00:00:00", "released": "2013-08-13 00:00:01"}, OK),
    ({"day": ""}, OK),
    ({"a": "150", "b": "200", "released": "2013-08-12 23:00:00"}, rc("a_small", "b_le_a", "released_after_booked")),
    ({"a": "150", "s": "x", "t": "x"}, rc("a_small", "not_x")),
]


def _row_contract() -> Contract:
    data = S.Data(columns=ROW_COLUMNS, row_checks=ROW_CHECKS)
    cols = [P._contract_entry(n, c, True, None) for n, c in ROW_COLUMNS.items()]
    return Contract.from_dict({"columns": cols, "row_checks": P.row_check_entries(data)})


def _typed(rec: dict[str, str]) -> dict[str, object]:
    """A record as a JSON client sends it: numbers as numbers, empty text as null."""
    out: dict[str, object] = {}
    for k, v in rec.items():
        out[k] = None if v == "" else int(v) if k in ("a", "b") and v.lstrip("-").isdigit() else v
    return out


def test_row_checks_get_one_verdict_on_every_path(tmp_path: Path):
    contract = _row_contract()
    rows = [{**GOOD, **change} for change, _ in ROW_CHECK_ROWS]
    expected = [e for _, e in ROW_CHECK_ROWS]
    n = len(rows)
    names = list(ROW_COLUMNS)

    # the core, on records (HTTP, jobs, Predictor), as text and as typed JSON, and on columns
    _, errs = contract.validate_records(rows)
    assert _codes_of(errs, n) == expected
    _, errs = contract.validate_records([_typed(r) for r in rows])
    assert _codes_of(errs, n) == expected
    _, errs = contract.validate_columns({k: np.array([r[k] for r in rows], dtype=object) for k in names}, n)
    assert _codes_of(errs, n) == expected
    assert [m for i, c, code, m in errs.items if code == "row_check:a_small"] == ["must be < 100.0"] * 3

    from aiops.runtime.serve.openapi import record_schema

    assert record_schema(contract)["description"].startswith(
        "Row checks: released_after_booked: released >= booked; a_small: a < 100; ")  # the server's /openapi.json
    # the serving fast path: a record where a check is false is left to the core
    acc = RowAcceptor(contract)
    fast = [acc.values(_typed(r)) for r in rows]
    assert [v is not None for v in fast] == [e == OK and "a" not in c for (c, e) in ROW_CHECK_ROWS]  # "99.0": text
    assert acc.accept([_typed(GOOD)] * 3) is not None and acc.accept([_typed(r) for r in rows]) is None

    # the file, read as every command reads it; 8 repeats take score's once-per-distinct-value path
    path = tmp_path / "rows.csv"
    for repeat in (1, 8):
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, names, lineterminator="\n")
            w.writeheader()
            w.writerows(rows * repeat)
        table = next(CsvRecords(path, None).tables())
        clean, errs, distinct = _Validator(contract, names).validate(table.select(names))
        assert _codes_of(errs, n * repeat) == expected * repeat
        assert (repeat == 1) == (not distinct)
        # monitor: each column checked, then the row checks on the checked values
        checker = ColumnChecker(contract)
        checked = {k: checker.check(k, table.column(k), n * repeat) for k in names}
        by_rows = checker.check_rows(checked, n * repeat)
        bad = np.zeros(n * repeat, dtype=bool)
        for c in [*checked.values(), by_rows]:
            bad |= c.bad
        assert bad.tolist() == [bool(e) for e in expected * repeat]
        assert by_rows.codes == {c: repeat * sum(c in e for e in expected) for c in rc(*(r.name for r in ROW_CHECKS))
                                 if any(c in e for e in expected)}

    # compile and retrain: the reasons in the quarantine, in aiops's words
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, names, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    v = validate(read_table(path, "csv"), _schema(*names, columns=ROW_COLUMNS), contract)
    assert (v.rows_in, v.accepted, v.quarantined) == (n, sum(not e for e in expected), sum(bool(e) for e in expected))
    reasons = dict(zip(v.quarantine["row"].tolist(), v.quarantine["reasons"].tolist()))
    assert reasons[2] == "released: row_check:released_after_booked (must be >= booked)"
    assert reasons[21] == ("released: row_check:released_after_booked (must be >= booked); "  # in the spec's order
                           "a: row_check:a_small (must be < 100.0); b: row_check:b_le_a (must be <= a)")
    for j, e in enumerate(expected, 1):
        got = {r.split(" (")[0].split(": ")[1] for r in reasons[j].split("; ")} if e else set()
        assert got == set(e), (j, reasons.get(j))
