"""Derive penguins.csv from the copy shipped inside the `palmerpenguins` package.

    pip install palmerpenguins==0.1.4 && python specs/penguins/data/derive.py

No network: palmerpenguins ships the file in its wheel (palmerpenguins/data/penguins.csv).
The output is the same 344 rows, with a row key `penguin_id` (1..344) added in front; the
empty cells ("NA" in the source: 2 rows without measurements, 11 without sex) stay empty.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import palmerpenguins

OUT = Path(__file__).with_name("penguins.csv")


def main() -> None:
    df = palmerpenguins.load_penguins()
    df.insert(0, "penguin_id", range(1, len(df) + 1))
    df.to_csv(OUT, index=False, lineterminator="\n")
    print(f"wrote {OUT} rows={len(df)} sha256={hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
