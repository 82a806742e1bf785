"""No data file crashes a command: a property-based fuzzer over CSV and Parquet inputs
(ragged rows, bad encodings, BOMs, quotes, embedded newlines, huge fields, an empty file, a
header only, blank lines, values of the wrong type in Parquet) for `aiops score`,
`aiops monitor`, `aiops compile` and `aiops retrain`.

Every run must end with exit 0, 1 or 2, never 3 (an internal error), and its counts must
reconcile: rows in = accepted + quarantined, and, when the file's structure is intact, rows in
and blank lines are the numbers of records and blank lines the generator wrote.
The examples are few and derandomized (compile and retrain fit a model: fewest of all).
"""
from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._build import ROOT, build

CREDIT = ROOT / "specs/credit_risk/data/german_credit.csv"
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
with CREDIT.open(newline="", encoding="utf-8") as _fh:
    _ALL = list(csv.reader(_fh))
HEADER, ROWS = _ALL[0], _ALL[1:]
HOSTILE = ["", " ", "NaN", "nan", "35.0", "1e999", "-0", "\x00", "日本語", '"', "'", ",", "\n", "\r\n", "true",
           "1_000", "²", "\ufeff", "a" * 300, "0x10", "None", "NULL", "-", "\t"]

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


def _line(fields: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


@st.composite
def csv_files(draw, max_rows: int = 40):
    """(bytes, records written, blank lines written, structure intact?)."""
    shape = draw(st.sampled_from(["rows"] * 8 + ["empty", "header only", "bad header", "unbalanced quote"]))
    if shape == "empty":
        return b"", 0, 0, False
    bom = draw(st.booleans())
    head = list(HEADER)
    if shape == "bad header":
        head[draw(st.integers(0, len(head) - 1))] = draw(st.sampled_from(["", "x y", HEADER[0], "é"]))
    text = _line(head)
    records = blank = 0
    if shape != "header only":
        for _ in range(draw(st.integers(0, max_rows))):
            row = list(ROWS[draw(st.integers(0, len(ROWS) - 1))])
            kind = draw(st.sampled_from(["plain", "plain", "hostile", "hostile", "more", "fewer", "blank",
                                         "newline", "huge"]))
            if kind == "blank":
                text += draw(st.sampled_from(["\n", "  \n", "," * (len(HEADER) - 1) + "\n", "\r\n"]))
                blank += 1
                continue
            j = draw(st.integers(0, len(row) - 1))
            if kind == "hostile":
                row[j] = draw(st.sampled_from(HOSTILE) | st.text(max_size=12))
            elif kind == "more":
                row += draw(st.lists(st.sampled_from(HOSTILE[:8]), min_size=1, max_size=3))
            elif kind == "fewer":
                row = row[:max(j, 1)]
            elif kind == "newline":
                row[j] = row[j] + "\nsecond line"
            elif kind == "huge":
                row[j] = "x" * draw(st.sampled_from([10_000, 300_000]))
            if all(v.strip() == "" for v in row):  # the row would read as a blank line
                blank += 1
            else:
                records += 1
            text += _line(row)
    if shape == "unbalanced quote":
        text += '"an unbalanced quote,' + ",".join(ROWS[0][1:]) + "\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    intact = shape in ("rows", "header only")
    if draw(st.integers(0, 9)) == 0:  # bytes that are not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe\x80" + data[at:]
        intact = False
    return data, records, blank, intact


@st.composite
def parquet_files(draw, max_rows: int = 30):
    """(bytes of a Parquet file whose columns have drawn types, number of rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = draw(st.integers(0, max_rows))
    rows = [ROWS[draw(st.integers(0, len(ROWS) - 1))] for _ in range(n)]
    arrays, names = [], list(HEADER)
    for j, name in enumerate(names):
        kind = draw(st.sampled_from(["text"] * 6 + ["int", "float", "bool", "null", "binary", "date", "list"]))
        vals = [r[j] for r in rows]
        if kind == "text":
            arrays.append(pa.array(vals, pa.string()))
        elif kind == "int":
            arrays.append(pa.array([draw(st.integers(-2 ** 63, 2 ** 63 - 1)) for _ in vals], pa.int64()))
        elif kind == "float":
            arrays.append(pa.array([draw(st.floats(allow_nan=True, allow_infinity=True)) for _ in vals], pa.float64()))
        elif kind == "bool":
            arrays.append(pa.array([draw(st.booleans()) for _ in vals], pa.bool_()))
        elif kind == "null":
            arrays.append(pa.nulls(n, pa.string()))
        elif kind == "binary":
            arrays.append(pa.array([v.encode() + b"\xff" for v in vals], pa.binary()))
        elif kind == "date":
            arrays.append(pa.array([draw(st.dates()) for _ in vals], pa.date32()))
        else:
            arrays.append(pa.array([[v] for v in vals], pa.list_(pa.string())))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buf)
    return buf.getvalue(), n


def _main(*argv) -> tuple[int, str, str]:
    import contextlib

    from aiops.compiler.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    assert rc in (0, 1, 2), f"exit {rc}: {err.getvalue()}"
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue(), err.getvalue()
    return rc, out.getvalue(), err.getvalue()


def _counts(text: str, word: str) -> tuple[int, int, int, int]:
    m = re.search(rf"rows in (\d+) = {word} (\d+) \+ quarantined (\d+)(?: \((\d+) blank lines? skipped\))?", text)
    assert m, text
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIOPS_DATA_KEY", KEY)
    monkeypatch.setenv("AIOPS_CRASH_LOG", str(tmp_path / "crash.log"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_score_and_monitor_never_crash_on_a_csv_file_and_their_counts_agree(env: Path):
    art = build("credit_risk")

    @settings(FUZZ, max_examples=25)
    @given(csv_files())
    def run(example):
        data, records, blank, intact = example
        path = env / "in.csv"
        path.write_bytes(data)
        rc, out, err = _main("score", art, path, "--output", env / "o.csv", "--quiet")
        score = _counts(out, "scored") if rc == 0 else None
        if score is not None:
            assert score[0] == score[1] + score[2]
            if intact:
                assert (score[0], score[3]) == (records, blank)
        rc, out, err = _main("monitor", art, "--current", path, "--report", env / "m", "--no-html", "--chunk-rows", "7")
        if rc in (0, 1) and "rows in" in out:
            mon = _counts(out, "accepted")
            assert mon[0] == mon[1] + mon[2]
            if score is not None:
                assert mon == score  # the same file, counted the same way
        elif score is not None and score[0]:
            raise AssertionError(f"monitor refused a file that score read: {err}")

    run()


def test_score_and_monitor_never_crash_on_a_parquet_file_with_wrong_types(env: Path):
    art = build("credit_risk")

    @settings(FUZZ, max_examples=15)
    @given(parquet_files())
    def run(example):
        data, n = example
        path = env / "in.parquet"
        path.write_bytes(data)
        rc, out, err = _main("score", art, path, "--output", env / "o.csv", "--quiet")
        if rc == 0:
            assert _counts(out, "scored")[0] == n
        rc, out, err = _main("monitor", art, "--current", path, "--report", env / "m", "--no-html")
        if rc in (0, 1) and "rows in" in out:
            assert _counts(out, "accepted")[0] == n

    run()


def test_compile_and_retrain_never_crash_on_a_data_file(env: Path):
    spec = env / "credit_risk"
    shutil.copytree(ROOT / "specs/credit_risk", spec)
    champion = env / "champion"
    shutil.copytree(build("credit_risk"), champion)

    @settings(FUZZ, max_examples=3)
    @given(csv_files(max_rows=60))
    def run(example):
        data, records, blank, intact = example
        (spec / "data/german_credit.csv").write_bytes(data)
        rc, out, err = _main("compile", spec, f"env.quarantine_dir={env / 'q'}", "--out", env / "out", "--quiet")
        evidence = env / "out/evidence/data.json"
        if rc in (0, 1) and evidence.is_file():
            import json

            ev = json.loads(evidence.read_text())
            assert ev["rows_in"] == ev["accepted"] + ev["quarantined"]
            if intact:
                assert (ev["rows_in"], ev["blank_lines_skipped"]) == (records, blank)
        shutil.rmtree(env / "out", ignore_errors=True)
        path = env / "window.csv"
        path.write_bytes(data)
        rc, out, err = _main("retrain", champion, "--data", path, "--quiet")
        assert rc in (0, 1, 2)

    run()
