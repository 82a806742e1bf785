"""Monitoring tests what the model uses (issue 9, part 6): by default drift is tested on the
model's inputs and its prediction; another contract column is tested only when the spec lists
it in monitoring.drift_columns (flight_delays lists arr_delay, which is no input)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from tests._build import ROOT, build

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _job(name: str) -> tuple[dict, dict]:
    art = ROOT / "generated" / name  # committed and held up to date by test_compile
    job = json.loads((art / "monitoring" / "monitoring.json").read_text())
    contract = {c["name"]: c for c in json.loads((art / "contract.json").read_text())["columns"]}
    return job, contract


def test_only_model_inputs_and_listed_columns_are_drift_tested():
    for name, listed in (("credit_risk", set()), ("flight_delays", {"arr_delay"})):
        job, contract = _job(name)
        tested = {c["name"] for c in job["columns"] if c["tests"]}
        assert tested, name
        assert all(contract[c]["required"] or c in listed for c in tested), name
        assert listed <= tested
    job, _ = _job("credit_risk")
    why = {c["name"]: c["not_tested"] for c in job["columns"]}
    assert why["foreign_worker"] == "not a model input (monitoring.drift_columns lists the other columns to test)"


def test_a_drifting_column_that_is_no_input_raises_no_alert(tmp_path: Path, monkeypatch, capsys):
    from aiops.compiler.cli import main

    monkeypatch.setenv("AIOPS_DATA_KEY", KEY)
    with (ROOT / "specs/credit_risk/data/german_credit.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    at = rows[0].index("foreign_worker")
    for r in rows[1:]:
        r[at] = "no"  # 96% "yes" in training: a shift no statistic could miss
    data = tmp_path / "current.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    main(["monitor", str(build("credit_risk")), "--current", str(data), "--report", str(tmp_path / "r"), "--no-html"])
    capsys.readouterr()
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert not [a for a in report["alerts"] if a.get("subject") == "foreign_worker"]
    for w in report["windows"]:
        assert "foreign_worker" not in (w.get("drift") or {}).get("drifted", [])
