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
    assert ("reads the header, then at most the first 10,000 records and 8 MiB of data.source (a CSV file that "
            "small is read whole; a Parquet file's target and time column are read whole)") in out
