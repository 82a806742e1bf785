"""Readable groups of coded sensitive attributes (`labels`) and attributes spread over 0/1
indicator columns (`data.indicators`): the same groups in the compile evidence, the compliance
document and the monitoring report (runtime/evaluation.attribute_groups)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from aiops.runtime.evaluation import attribute_groups, fairness, groups_of, indicator_groups


def test_indicator_groups_name_the_column_that_is_set():
    a = np.array([1, 0, 0, 1, np.nan, 0], dtype=np.float64)
    b = np.array([0, 1, 0, 1, 0, np.nan], dtype=np.float64)
    c = np.array([False, False, False, False, False, True], dtype=object)
    assert indicator_groups([a, b, c], ["white", "black", "asian"]).tolist() == [
        "white", "black", "(none)", "(multiple)", "(missing)", "asian"]


def test_labels_name_codes_and_leave_unnamed_codes_and_missing_values_as_they_are():
    values = np.array([0.0, 1.0, np.nan, 2.0])
    assert groups_of(values, None, {"0": "female", "1": "male"}).tolist() == ["female", "male", "(missing)", "2"]
    rule = {"attribute": "sex", "bins": None, "labels": {"0": "female"}}
    assert attribute_groups(rule, {"sex": values}.get).tolist() == ["female", "1", "(missing)", "2"]
    assert attribute_groups({"attribute": "x", "indicators": {"a": "A", "b": "B"}}, {"a": values}.get) is None


def test_labels_of_a_bool_column_name_its_values_as_the_contract_gives_them():
    from aiops.compiler import schema as S
    from aiops.compiler.plan import _labels
    from aiops.runtime.contract import ColumnRule, Contract

    col = S.Column(dtype="bool", sensitive=True, labels={"True": "smoker", "False": "non-smoker"})
    cols, errors = Contract([ColumnRule(name="smoker", dtype="bool", nullable=True)], None).validate_columns(
        {"smoker": np.array(["true", "false", None], dtype=object)}, 3)
    assert not errors.items
    assert groups_of(cols["smoker"], None, _labels(col)).tolist() == ["smoker", "non-smoker", "(missing)"]


# German credit's personal_status_and_sex, as indicator columns: "female : divorced/separated/married"
# sets both married and divorced, so those rows are in "(multiple)"
STATUS = {"status_single": "single", "status_married": "married", "status_divorced": "divorced"}


def _expected_group(text: str) -> str:
    hits = [name for name in ("single", "married", "divorced") if name in text]
    return hits[0] if len(hits) == 1 else "(multiple)" if hits else "(none)"


@pytest.mark.slow
def test_coded_and_indicator_attributes_on_german_credit(spec_copy, tmp_path):
    import pandas as pd

    from aiops.compiler.build import compile_spec
    from aiops.runtime.monitor.job import Source, run
    from aiops.runtime.predictor import Predictor

    spec = spec_copy("credit_risk")
    csv = spec.dir / "data" / "german_credit.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    status = df["personal_status_and_sex"]
    df.insert(len(df.columns) - 1, "sex", np.where(status.str.startswith("female"), "0", "1"))
    for col, name in STATUS.items():
        df.insert(len(df.columns) - 1, col, np.where(status.str.contains(name), "1", "0"))
    df.to_csv(csv, index=False)
    spec.replace("spec.yaml", "    creditability: {dtype: category",
                 "    sex: {dtype: int, sensitive: true, checks: {isin: [0, 1]}, labels: {0: female, 1: male}}\n"
                 + "".join(f"    {c}: {{dtype: int, sensitive: true, checks: {{isin: [0, 1]}}}}\n" for c in STATUS)
                 + "    creditability: {dtype: category")
    spec.replace("spec.yaml", "  max_rejected_share: 0.02\n",
                 "  max_rejected_share: 0.02\n  indicators:\n    marital_status:\n      columns: "
                 "{status_single: single, status_married: married, status_divorced: divorced}\n")
    spec.replace("spec.yaml", "  - {name: foreign_worker, transform: drop,",
                 "".join(f"  - {{name: {c}, transform: drop, source: {c}, reason: fairness only}}\n"
                         for c in ["sex", *STATUS]) + "  - {name: foreign_worker, transform: drop,")
    spec.replace("spec.yaml", "    - {attribute: foreign_worker, metric: demographic_parity_difference, max: 0.25}",
                 "    - {attribute: foreign_worker, metric: demographic_parity_difference, max: 0.25}\n"
                 "    - {attribute: sex, metric: demographic_parity_difference, max: 0.5}\n"
                 "    - {attribute: marital_status, metric: demographic_parity_difference, max: 0.9}")
    spec.replace("spec.yaml", "    - {column: housing, metric: roc_auc, min: 0.65, min_rows: 30}\n",
                 "    - {column: housing, metric: roc_auc, min: 0.65, min_rows: 30}\n"
                 "    - {column: sex, metric: roc_auc, min: 0.3, min_rows: 30}\n")
    art = tmp_path / "art"
    assert compile_spec(spec.rel, [], out=str(art), quiet=True) == 0

    ev = json.loads((art / "evidence" / "evaluation.json").read_text())
    by_attr = {f["attribute"]: f for f in ev["fairness"]}
    assert set(by_attr["sex"]["groups"]) == {"female", "male"}
    assert {s["group"] for s in ev["slices"] if s["column"] == "sex"} == {"female", "male"}
    assert set(by_attr["marital_status"]["groups"]) == {"single", "married", "divorced", "(multiple)"}
    for attr in ("sex", "marital_status"):
        assert sum(g["rows"] for g in by_attr[attr]["groups"].values()) == ev["rows"]
    doc = (art / "compliance.md").read_text()
    assert "Groups of sex, by the names the spec gives its codes: female (sex = 0), male (sex = 1)." in doc
    assert ("marital_status is given by indicator columns; a row's group is the column set to 1: divorced "
            "(status_divorced = 1), married (status_married = 1), single (status_single = 1). A row with none set "
            "is in '(none)', with several in '(multiple)', and with none set and one missing in '(missing)'.") in doc

    # the monitor: the same groups, per window; the numbers recomputed from the rows in the test
    rep = run(art, Source(current=csv), tmp_path / "mon").report
    w = rep["windows"][1]  # rows 251-500
    rows = df.iloc[250:500]
    p = Predictor(art)
    cols, errors = p.contract.validate_columns({c: rows[c].to_numpy(dtype=object) for c in rows.columns
                                                if c in p.contract.by_name}, len(rows))
    assert not errors.items
    label = p.predict_columns(cols)["label"]
    want = {"sex": np.where(rows["sex"] == "0", "female", "male").astype(object),
            "marital_status": np.array([_expected_group(s) for s in rows["personal_status_and_sex"]], dtype=object)}
    got = {f["attribute"]: f for f in w["fairness"]}
    for attr, groups in want.items():
        expect = fairness("demographic_parity_difference", rows["creditability"].to_numpy(dtype=object), label,
                          groups, "bad")
        assert got[attr]["value"] == pytest.approx(expect["value"], abs=1e-12)
        assert {g: v["rows"] for g, v in got[attr]["groups"].items()} == {
            g: v["rows"] for g, v in expect["groups"].items()}
    seen = {g for win in rep["windows"] for f in win["fairness"] if f["attribute"] == "marital_status"
            for g in f["groups"]}
    assert seen == {"single", "married", "divorced", "(multiple)"}
