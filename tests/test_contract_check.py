"""`aiops check` looks at the data: a wrong date format fails the check fast, at the column's
formats line, with a masked example (issue 9: the check used to pass it, and compile then
rejected 95.7% of the rows)."""
from __future__ import annotations

import time

from aiops.compiler.check import run_check


def test_a_wrong_date_format_fails_check_in_under_2_seconds_with_a_masked_example(spec_copy):
    spec = spec_copy("flight_delays")
    run_check(spec.rel, [])  # warm: imports and the cached ONNX probe are not what is measured
    spec.replace("spec.yaml", 'formats: ["%Y-%m-%d", "%m/%d/%Y", "%d%m%Y"]', 'formats: ["%d.%m.%Y"]')
    cpu, wall = time.process_time(), time.perf_counter()
    text, ok = run_check(spec.rel, [])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert not ok
    assert (f"error[E221]: no value of the date column is written in its formats\n"
            f"  --> {spec.where('spec.yaml', 'formats: [', '[')} (data.columns.flight_date.formats)\n") in text
    assert "e.g. '9999-99-99' (masked: 9 is a digit, x a letter)" in text
    assert "2013-" not in text  # no value is quoted
    assert cpu < 2.0, f"check took {cpu:.2f} s of CPU ({wall:.2f} s on the clock)"


def test_check_help_says_how_much_it_reads(capsys):
    import pytest

    from aiops.compiler.cli import main

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("reads the header, then a sample of at most 10,000 records and 8 MiB of data.source: a file that small "
            "is read whole; of a larger CSV file, the first 5,000 records and runs of records from 8 even byte offsets "
            "through the rest (a run where a quoted field may span lines, or with a ragged line, is left out); of a "
            "larger Parquet file, evenly spaced records (a row group of up to 8 MiB) or the first records of 9 row "
            "groups spread through it, and its target and time column whole. The same file always gives the same "
            "sample") in out


def test_the_sample_of_a_large_csv_reaches_its_end_the_same_way_every_time(spec_copy):
    """A problem that starts late in a file larger than the sample's 8 MiB is seen: the sample is
    the first 5,000 records and runs read at even byte offsets through the rest (a quoted field
    such as "yes, registered under the customers name" does not stop it)."""
    import re

    import pandas as pd

    spec = spec_copy("credit_risk")
    path = spec.dir / "data" / "german_credit.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    big = pd.concat([df] * 36, ignore_index=True)  # 36,000 records, about 9.6 MB
    big.loc[27_000:, "housing"] = "castle"  # only the last quarter breaks the contract
    big.to_csv(path, index=False, lineterminator="\n")
    assert path.stat().st_size > 8 << 20
    first, ok = run_check(spec.rel, [])
    assert not ok
    m = re.search(r"= ([\d,]+) of ([\d,]+) records sampled through data/german_credit.csv \(([\d.]+)%\) have a "
                  r"value of 'housing' that is not in isin; e.g. 'castle'", first)
    assert m, first
    bad, total = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
    assert 5_000 < total <= 10_000 and 0 < bad < total - 5_000  # none of them in the first 5,000
    assert run_check(spec.rel, [])[0] == first  # deterministic
