"""What real files needed that the contract could not say (issue 9, part 8, first half):
date-times (with their parts), a column read under another name, columns known only after
the outcome. Row checks and date-times also have rows in tests/test_contract_conformance.py;
the spec rules have cases in tests/test_check_catalog.py.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiops.runtime.contract import ColumnRule, Contract
from aiops.runtime.datafile import DataFileError, header_of
from aiops.runtime.features import FeatureStep, derive
from aiops.runtime.serve.rows import FeatureRows, RowAcceptor

from tests._build import ROOT


# ---------------------------------------------------------------------------- datetime parts
DT = ColumnRule("at", "datetime", nullable=True, formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f"))
DAY = ColumnRule("day", "date", nullable=True, formats=("%Y-%m-%d",))
VALUES = ["2013-08-13 06:03:42", "2013-08-13 00:00:00", "2013-08-13 23:59:59", "1969-12-31 23:59:59",
          "1900-03-01 12:30:00", "2024-02-29 18:45:10", "2013-08-13T06:59:59.999600", "2013-08-13T06:59:59.999400",
          "9999-12-31 23:59:59", "0001-01-01 00:00:01", ""]
PARTS = ("hour", "minute", "day_of_week", "day", "month", "year", "quarter", "day_of_year")


def test_datetime_parts_and_days_between_are_the_same_bits_in_batch_and_serving():
    contract = Contract([DT, DAY])
    steps = [FeatureStep(f"p_{p}", "date_part", "at", part=p) for p in PARTS]
    steps += [FeatureStep("since_day", "days_between", "at", other="day"),
              FeatureStep("since_ref", "days_between", "at", reference_days=15000)]
    records = [{"at": v, "day": "2013-08-12"} for v in VALUES]
    cols, errors = contract.validate_records(records)
    assert errors.items == []
    batch = derive(steps, cols)
    rows = FeatureRows(RowAcceptor(contract), steps, [s.name for s in steps])
    fast = rows.rows(records)
    assert fast is not None
    for k, s in enumerate(steps):
        one = np.array([f[k] for f, _ in fast], dtype=np.float32)
        assert one.tobytes() == batch[s.name][:, 0].tobytes(), s.name
    got = {s.name: batch[s.name][:, 0].tolist() for s in steps}
    # what each value means, derived with Python's datetime
    from datetime import datetime

    for i, v in enumerate(VALUES[:-1]):
        t = datetime.fromisoformat(v)
        if t.microsecond >= 999_500:  # read to the millisecond: 06:59:59.9996 is 07:00:00.000
            t = t.replace(microsecond=0) + (datetime(2000, 1, 1, 0, 0, 1) - datetime(2000, 1, 1))
        assert (got["p_hour"][i], got["p_minute"][i]) == (t.hour, t.minute), v
        assert (got["p_day"][i], got["p_month"][i], got["p_year"][i]) == (t.day, t.month, t.year), v
        assert got["p_day_of_week"][i] == t.weekday() and got["p_day_of_year"][i] == t.timetuple().tm_yday, v
    assert got["since_day"][0] == np.float32(1 + (6 * 3600 + 3 * 60 + 42) / 86400)  # 1 day 06:03:42
    assert math.isnan(got["p_hour"][-1]) and math.isnan(got["since_day"][-1])


def test_a_datetime_from_parquet_is_read_as_the_same_text_would_be(tmp_path: Path):
    from datetime import datetime

    from aiops.compiler.training import read_table, validate
    from aiops.runtime.score.scorer import _Validator
    from tests.test_contract_conformance import _schema

    when = [datetime(2013, 8, 13, 6, 3, 42), None, datetime(1969, 12, 31, 23, 0)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"dt": pa.array(when, pa.timestamp("us")),
                             "dt_utc": pa.array(when, pa.timestamp("s", tz="UTC"))}), path)
    rules = [ColumnRule("dt", "datetime", nullable=True, formats=("%Y-%m-%d %H:%M:%S",)),
             ColumnRule("dt_utc", "datetime", nullable=True, formats=("%Y-%m-%d %H:%M:%S",))]
    contract = Contract(rules)
    text, _ = contract.validate_records([{"dt": "2013-08-13 06:03:42"}, {"dt": None}, {"dt": "1969-12-31 23:00:00"}])
    raw = read_table(path, "parquet")
    clean, errs, _ = _Validator(contract, ["dt", "dt_utc"]).validate(raw.table)
    assert errs.items == []
    for c in ("dt", "dt_utc"):
        assert clean[c].tobytes() == text["dt"].tobytes()
    from aiops.compiler import schema as S

    schema = _schema("dt", columns={"dt": S.Column("datetime", nullable=True, formats=["%Y-%m-%d %H:%M:%S"])})
    assert validate(raw, schema, Contract(rules[:1])).accepted == 3


# ---------------------------------------------------------------------------- source_name
def _loan_contract() -> Contract:
    return Contract([ColumnRule("loan_status", "category", isin=("paid", "late"), source_name="loan-status"),
                     ColumnRule("amount", "int", ge=0)])


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


ROWS = [["paid", "100"], ["late", "-5"], ["unknown", "7"], ["paid", "40"]]


def test_every_reader_gives_a_renamed_column_the_contract_name(tmp_path: Path):
    from aiops.compiler.training import read_table, validate
    from aiops.runtime.monitor.columns import ColumnChecker
    from aiops.runtime.monitor.reader import read_chunks
    from aiops.runtime.score.scorer import _CsvSource, _ParquetSource, _Validator
    import pandera.pandas as pa_

    contract = _loan_contract()
    csv_path = _write(tmp_path / "loans.csv", ["loan-status", "amount"], ROWS)
    pq_path = tmp_path / "loans.parquet"
    pq.write_table(pa.table({"loan-status": [r[0] for r in ROWS], "amount": [int(r[1]) for r in ROWS]}), pq_path)
    expected = [[], ["amount: out_of_range"], ["loan_status: not_in_set"], []]
    for path, fmt in ((csv_path, "csv"), (pq_path, "parquet")):
        assert header_of(path, fmt, contract.renames) == ["loan_status", "amount"]
        # compile and retrain
        schema = pa_.DataFrameSchema({"loan_status": pa_.Column("str"), "amount": pa_.Column("Int64")}, coerce=True)
        v = validate(read_table(path, fmt, renames=contract.renames), schema, contract)
        assert (v.rows_in, v.accepted, v.quarantined) == (4, 2, 2)
        assert v.reasons == {"amount: out_of_range": 1, "loan_status: not_in_set": 1}
        assert list(v.quarantine.columns) == ["row", "reasons", "loan_status", "amount", "raw"]
        # score
        src = _CsvSource(path, contract, None) if fmt == "csv" else _ParquetSource(path, contract, None, 100)
        assert src.columns == ["loan_status", "amount"]
        table = next(src.batches())
        _, errs, _ = _Validator(contract, src.columns).validate(table)
        got = [[] for _ in ROWS]
        for i, col, code, _m in errs.items:
            got[i].append(f"{col}: {code}")
        assert got == expected
        # monitor
        chunk = next(read_chunks(path, ["loan_status", "amount"], renames=contract.renames))
        checker = ColumnChecker(contract)
        assert checker.check("loan_status", chunk.columns["loan_status"], 4).bad.tolist() == [False, False, True, False]
    # HTTP records use the contract's name: the header's name is not a column of the contract
    _, errs = contract.validate_records([{"loan_status": "paid", "amount": 1}, {"loan-status": "paid", "amount": 1}])
    assert [(i, c, code) for i, c, code, _ in errs.items] == [(1, "loan-status", "unknown_field"),
                                                             (1, "loan_status", "missing_field")]


def test_a_file_with_both_the_header_name_and_the_contract_name_is_refused(tmp_path: Path):
    from aiops.compiler.training import DataError, read_table

    path = _write(tmp_path / "both.csv", ["loan-status", "loan_status", "amount"], [["paid", "paid", "1"]])
    msg = (f"'{path}' has both the column 'loan-status' (read as 'loan_status': its source_name) and a column "
           "named 'loan_status'; remove one of them, or the source_name")
    with pytest.raises(DataFileError) as exc:
        header_of(path, "csv", _loan_contract().renames)
    assert str(exc.value) == msg
    with pytest.raises(DataError) as exc2:
        read_table(path, "csv", renames=_loan_contract().renames)
    assert exc2.value.summary == msg


def test_check_reads_a_header_that_is_no_identifier_through_source_name(spec_copy):
    """The header 'credit-history' is refused by E204 as a column name; with source_name the
    contract names it credit_history, and check reads the file's values under that name."""
    from aiops.compiler.check import run_check

    spec = spec_copy("credit_risk")
    data = spec.dir / "data" / "german_credit.csv"
    lines = data.read_text(encoding="utf-8").split("\n", 1)
    data.write_text(lines[0].replace("credit_history", "credit-history") + "\n" + lines[1], encoding="utf-8")
    text, ok = run_check(spec.rel, [])
    assert not ok and "'credit_history' is not in the header of data/german_credit.csv" in text
    spec.replace("spec.yaml", "credit_history: {dtype: category}",
                 'credit_history: {dtype: category, source_name: "credit-history", checks: {isin: [x]}}')
    text, ok = run_check(spec.rel, [])
    assert not ok and "error[E223]" in text and "have a value of 'credit_history' that is not in isin" in text
    spec.replace("spec.yaml", ", checks: {isin: [x]}}", "}")
    text, ok = run_check(spec.rel, [])
    assert ok, text


# ---------------------------------------------------------------------------- row checks in aiops check
def test_check_counts_the_rows_a_row_check_would_quarantine(spec_copy):
    from aiops.compiler.check import run_check

    spec = spec_copy("credit_risk")
    with (spec.dir / "data" / "german_credit.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    long = sum(int(r["duration_in_month"]) > 36 for r in rows)
    spec.replace("spec.yaml", "  max_rejected_share: 0.02", "  max_rejected_share: 0.02\n  row_checks:\n"
                 "    - {name: short_loan, check: \"duration_in_month <= 36\"}")
    text, ok = run_check(spec.rel, [])
    assert not ok and "error[E224]" in text
    assert f"= {long} of the 1,000 records of data/german_credit.csv ({long / 1000:.1%}) would be quarantined" in text
    assert f"= {long} rows: duration_in_month: row_check:short_loan" in text


# ---------------------------------------------------------------------------- known after the outcome
def test_a_column_known_after_the_outcome_is_no_model_input_for_monitoring():
    from aiops.compiler.build import build_plan
    from aiops.compiler.check import check
    from aiops.compiler.monitoring_plan import build_monitoring_plan

    loaded, spec, diags = check(ROOT / "specs" / "flight_delays", ["monitoring.drift_columns=[]", "~monitoring.drift_features"])
    assert spec is not None, diags
    assert spec.data.columns["arr_delay"].known_after_outcome
    plan = build_plan(loaded, spec, "specs/flight_delays/data/flights_2013.parquet")
    col = next(c for c in build_monitoring_plan(plan).columns if c.name == "arr_delay")
    assert (col.model_input, col.tests) == (False, ())
    assert col.not_tested == "known only after the outcome: never a model input (monitoring.drift_columns can list it)"
    assert "arr_delay" not in {f.source for f in plan.features}


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_a_spec_using_all_four_compiles_scores_and_serves_the_same_verdicts(spec_copy, capsys):
    """flight_delays with a date-time column read from the header 'sched-dep' (not an
    identifier), its hour and minute as model inputs (exported to ONNX: compile checks the
    parity of scikit-learn and onnxruntime), a row check against the flight's date, and
    arr_delay known only after the outcome. Three planted rows break the row check: compile's
    quarantine, `aiops score` and the HTTP predictor give them the same reason."""
    from aiops.compiler.cli import main
    from aiops.runtime.predictor import Predictor

    spec = spec_copy("flight_delays")
    rows = pq.read_table(ROOT / "specs/flight_delays/data/flights_2013.parquet").to_pylist()[::25]
    bad = {3, 400, 1200}  # departing the day before the flight's date: the row check is false
    out_rows = []
    for i, r in enumerate(rows):
        hh, mm = divmod(r["sched_dep_time"], 100)
        day = r["flight_date"] if i not in bad else "2012-12-31"
        out_rows.append({**r, "sched-dep": f"{day} {hh:02d}:{mm:02d}:00"})
    names = list(out_rows[0])
    with (spec.dir / "data" / "flights.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, names, lineterminator="\n")
        w.writeheader()
        w.writerows(out_rows)
    spec.replace("spec.yaml", "source: data/flights_2013.parquet\n  format: parquet",
                 "source: data/flights.csv\n  format: csv\n  row_checks:\n"
                 "    - {name: departs_on_its_day, check: \"sched_dep >= flight_date\"}")
    spec.replace("spec.yaml", "    sched_dep_time: {dtype: int",
                 "    sched_dep: {dtype: datetime, source_name: sched-dep, formats: [\"%Y-%m-%d %H:%M:%S\"]}\n"
                 "    sched_dep_time: {dtype: int")
    spec.replace("spec.yaml", "  - {name: dep_slot, transform: bucketize, source: sched_dep_time, "
                              "bins: [0, 600, 900, 1200, 1500, 1800, 2100, 2400]}",
                 "  - {name: dep_hour, transform: date_part, source: sched_dep, part: hour}\n"
                 "  - {name: dep_minute, transform: date_part, source: sched_dep, part: minute}\n"
                 "  - {name: dep_time, transform: drop, source: sched_dep_time, reason: read as sched_dep}")
    assert main(["compile", spec.rel, "model=logistic", "--out", "out"]) == 0, capsys.readouterr()
    capsys.readouterr()
    art = Path("out")
    import json

    evidence = json.loads((art / "evidence" / "data.json").read_text())
    n = len(rows)
    assert (evidence["rows_in"], evidence["quarantined"]) == (n, 3)
    assert evidence["reasons"] == {"sched_dep: row_check:departs_on_its_day": 3}
    contract = json.loads((art / "contract.json").read_text())
    assert contract["row_checks"] == [{"name": "departs_on_its_day", "check": "sched_dep >= flight_date",
                                       "left": "sched_dep", "op": ">=", "right": "flight_date", "value": None}]
    inputs = [i["name"] for i in json.loads((art / "features.json").read_text())["inputs"]]
    assert {"dep_hour", "dep_minute"} <= set(inputs) and "arr_delay" not in inputs
    # aiops score on the same file: the same rows, the same reason
    assert main(["score", str(art), str(spec.dir / "data" / "flights.csv"), "--output", "pred.csv",
                 "--quarantine", "q.csv"]) in (0, 1)
    with open("q.csv", newline="") as fh:
        q = list(csv.DictReader(fh))
    assert [(int(r["row"]), r["reasons"]) for r in q] == [
        (i + 1, "sched_dep: row_check:departs_on_its_day (must be >= flight_date)") for i in sorted(bad)]
    # HTTP records use the contract's names
    pred = Predictor(art)
    ok = {k: v for k, v in rows[0].items() if k not in ("arr_delayed", "arr_delay")}
    ok["sched_dep"] = out_rows[0]["sched-dep"]
    out, errors = pred.predict_records([ok])
    assert errors.items == [] and out["probabilities"].shape == (1, 2)
    _, errors = pred.predict_records([{**ok, "sched_dep": "2012-12-31 05:29:00"}])
    assert [(c, code, m) for _, c, code, m in errors.items] == [
        ("sched_dep", "row_check:departs_on_its_day", "must be >= flight_date")]
