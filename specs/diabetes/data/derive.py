"""Derive diabetes.csv from the copy shipped inside scikit-learn (no network).

    python specs/diabetes/data/derive.py

`sklearn.datasets.load_diabetes(scaled=False)` reads sklearn/datasets/data/diabetes_data_raw.csv.gz
and diabetes_target.csv.gz from the installed wheel: 442 patients, ten baseline
measurements in their original units and a measure of disease progression one year later.
Written with a row key `patient_id` (1..442); `sex` is coded 1/2 in the source (kept as is).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from sklearn.datasets import load_diabetes

OUT = Path(__file__).with_name("diabetes.csv")
NAMES = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"}  # the source's meanings


def main() -> None:
    frame = load_diabetes(scaled=False, as_frame=True).frame.rename(columns=NAMES)
    frame = frame.rename(columns={"target": "progression"})
    frame["sex"] = frame["sex"].astype(int)
    frame["age"] = frame["age"].astype(int)
    frame.insert(0, "patient_id", range(1, len(frame) + 1))
    frame.to_csv(OUT, index=False, lineterminator="\n", float_format="%.10g")
    print(f"wrote {OUT} rows={len(frame)} sha256={hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
