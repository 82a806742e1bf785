"""PII masking (runtime/masking.py), in-process and fast: the key and where it comes from,
hash and generalize by dtype, one output on every path (the compile quarantine, the score
quarantine, the prediction log), columns outside the contract, job inputs, error text.
The end-to-end search for a clear-text value is tests/test_canary.py."""
from __future__ import annotations

import csv
import hashlib
import importlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from aiops.runtime.contract import ColumnRule, Contract
from aiops.runtime.masking import (REDACTED, Masker, canonical, generalize, load_key, masker_for, scrub,
                             small_groups_hidden, state_dir)
from aiops.runtime.policy import PolicyError
from tests._build import ROOT

PII = "personal_status_and_sex"
FOUR = ["male : single", "female : divorced/separated/married", "male : married/widowed", "male : divorced/separated"]
KEY = {"AIOPS_MASK_SALT": "a-test-masking-key-of-some-length"}
CREDIT = Contract.load(ROOT / "generated" / "credit_risk" / "contract.json")
STRICT = {"masking": {PII: {"method": "hash", "allow_as_feature": False}}}


def _contract(*rules: ColumnRule) -> Contract:
    return Contract(list(rules))


# ---------------------------------------------------------------- the key
def test_the_key_comes_from_the_environment_a_file_or_the_installation(tmp_path: Path):
    assert load_key(KEY).secret == KEY["AIOPS_MASK_SALT"].encode()
    assert load_key(KEY).source == "environment variable AIOPS_MASK_SALT"
    f = tmp_path / "salt"
    f.write_text("k" * 40 + "\n")
    k = load_key({"AIOPS_MASK_SALT_FILE": str(f)})
    assert k.secret == b"k" * 40 and k.source == f"file {f} (AIOPS_MASK_SALT_FILE)"
    # nothing set: a per-installation key, created once (0600) in the state folder and reused
    env = {"AIOPS_STATE_DIR": str(tmp_path / "state")}
    first = load_key(env)
    path = tmp_path / "state" / "mask_salt"
    assert first.source == f"per-installation file {path}" and len(first.secret) == 64
    assert path.stat().st_mode & 0o777 == 0o600 and load_key(env) == first
    # the file's text exported on another host gives the same key, hence the same hashes
    assert load_key({"AIOPS_MASK_SALT": path.read_text()}).secret == first.secret
    m = masker_for(STRICT, CREDIT, env)  # the server's startup banner says which key masks
    assert m.describe() == f"{PII}=hash (key: per-installation file {path}, id {first.key_id})"
    assert masker_for({}, _contract(ColumnRule("a", "int")), env).describe() == "no PII column"
    assert state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/aiops")
    assert state_dir({"HOME": "/h"}) == Path("/h/.local/state/aiops")


def test_workers_starting_together_create_one_installation_key(tmp_path: Path):
    import subprocess
    import sys

    code = f"from aiops.runtime.masking import load_key; print(load_key({{'AIOPS_STATE_DIR': {str(tmp_path)!r}}}).key_id)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
             for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [e for _, e in outs] == [b""] * 4 and len({o for o, _ in outs}) == 1
    assert os.listdir(tmp_path) == ["mask_salt"]  # no temporary file left behind


def test_no_usable_key_refuses_with_a_message_that_says_what_to_set(tmp_path: Path):
    with pytest.raises(PolicyError) as exc:
        load_key({"AIOPS_MASK_SALT": "short"})
    assert str(exc.value) == (
        "the environment variable AIOPS_MASK_SALT holds a masking key of 5 characters; at least 16 are needed (a "
        "short key lets anyone rebuild the hashes of a column with few values); generate one with: python -c "
        "\"import secrets; print(secrets.token_hex(32))\"")
    with pytest.raises(PolicyError, match=re.escape(
            f"cannot read the masking key file {tmp_path / 'nope'} named by AIOPS_MASK_SALT_FILE: No such file or "
            "directory; fix the path, or unset AIOPS_MASK_SALT_FILE")):
        load_key({"AIOPS_MASK_SALT_FILE": str(tmp_path / "nope")})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PolicyError) as exc:
        load_key({"AIOPS_STATE_DIR": str(blocker / "state")})
    assert str(exc.value).startswith("PII masking needs a key and none is set: cannot create the per-installation "
                                     f"key file {blocker / 'state' / 'mask_salt'} (")
    assert str(exc.value).endswith("); set AIOPS_MASK_SALT (at least 16 characters), AIOPS_MASK_SALT_FILE, or "
                                   "AIOPS_STATE_DIR to a writable folder")
    with pytest.raises(PolicyError, match="hash masking needs a key; none was given"):
        Masker({"x": "hash"})
    with pytest.raises(PolicyError, match="security.masking.x.method is 'blur'"):
        Masker({"x": "blur"})
    # no PII, no key needed: a model without PII runs anywhere
    assert masker_for({}, _contract(ColumnRule("a", "int")), {"AIOPS_MASK_SALT": "short"}).methods == {}


# ---------------------------------------------------------------- hash
def test_a_four_value_column_is_not_reversed_by_an_unsalted_table():
    """The old compile quarantine wrote sha256(value)[:16]: four lookups reversed the column."""
    m = masker_for(STRICT, CREDIT, KEY)
    masked = [m.mask(PII, v) for v in FOUR]
    assert all(re.fullmatch(r"sha256:[0-9a-f]{32}", h) for h in masked) and len(set(masked)) == 4
    table = set()
    for v in FOUR:
        for d in (hashlib.sha256(v.encode()).hexdigest(), hashlib.md5(v.encode()).hexdigest()):
            table |= {d, d[:16], d[:32], "sha256:" + d[:16], "sha256:" + d[:32]}
    assert not table & set(masked) and not any(h[7:23] in table for h in masked)
    # a different key gives other hashes; the same key, the same ones
    other = masker_for(STRICT, CREDIT, {"AIOPS_MASK_SALT": "another-key-of-enough-length"})
    assert [other.mask(PII, v) for v in FOUR] != masked
    assert [masker_for(STRICT, CREDIT, KEY).mask(PII, v) for v in FOUR] == masked
    assert m.mask("purpose", "car (new)") == "car (new)" and m.mask(PII, None) is None


def test_hash_follows_the_dtype_so_every_path_hashes_one_value_alike():
    m = Masker({"n": "hash", "d": "hash", "b": "hash", "s": "hash"}, b"k" * 32,
               {"n": ("int", ()), "d": ("date", ("%d/%m/%Y", "%Y-%m-%d")), "b": ("bool", ()), "s": ("str", ())})
    assert m.mask("n", 35) == m.mask("n", "35") == m.mask("n", 35.0) == m.mask("n", " 35 ") == m.mask("n", np.int64(35))
    assert m.mask("d", "31/01/2020") == m.mask("d", "2020-01-31")
    assert m.mask("b", True) == m.mask("b", "true")
    assert m.mask("s", "35") != m.mask("n", "36") and m.mask("n", float("nan")) is None
    assert canonical("abc", "int") == "abc" and canonical(1e20, "float") == "1e+20" and canonical(2.5, "float") == "2.5"


# ---------------------------------------------------------------- generalize and redact
def test_generalize_goes_by_the_dtype_not_by_how_the_value_was_written():
    assert [generalize(v, "int") for v in (37, "37", 37.0, 1234, -37, 0, "abc")] == \
        ["30-40", "30-40", "30-40", "1000-2000", "-40--30", "0", REDACTED]
    assert generalize(0.37, "float") == "0.3-0.4"
    assert [generalize(v, "date", ("%d/%m/%Y",)) for v in ("17/05/2024", "2024-05-17", "May 17")] == \
        ["2024", "2024", REDACTED]
    assert [generalize(v, "category") for v in ("Alice", "", 3)] == ["A*", "", "3*"]
    assert generalize(True, "bool") == REDACTED and generalize(None, "int") is None
    # without a contract: by the value
    assert [generalize(v) for v in (37, "2024-05-17", "Alice", True)] == ["30-40", "2024", "A*", REDACTED]
    m = Masker({"r": "redact", "n": "none"})
    assert m.mask("r", "secret") == REDACTED and m.mask("n", "kept") == "kept" and m.methods == {"r": "redact"}


def _schema():
    return importlib.import_module("generated.credit_risk.pipeline.schema").SCHEMA


def _credit_frame(n: int = 30):
    import pandas as pd

    return pd.read_csv(ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv", dtype=str,
                       keep_default_na=False, na_values=[""]).head(n)


def test_compile_quarantine_generalizes_and_hashes_as_score_and_the_log_do(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path):
    """The compile quarantine used to write *** for generalize (score gave the year) and an
    unsalted hash; now one Masker, from the same policy and contract, gives one text."""
    from aiops.runtime.datafile import field_mask
    from aiops.compiler.training import quarantine_masker, read_table, validate

    monkeypatch.setenv("AIOPS_MASK_SALT", KEY["AIOPS_MASK_SALT"])
    policy = {"masking": {**STRICT["masking"], "age_in_years": {"method": "generalize"}}}
    df = _credit_frame()
    df.loc[3, "housing"] = "castle"
    df.loc[3, PII] = FOUR[0]
    df.loc[3, "age_in_years"] = "35"
    df["notes"] = "Jane Roe, born 1970-01-01"  # a column outside the contract
    df.to_csv(tmp_path / "credit.csv", index=False)
    masker = quarantine_masker(CREDIT, policy)
    v = validate(read_table(tmp_path / "credit.csv", "csv", field_mask(masker, CREDIT.by_name)), _schema(), CREDIT, masker)
    q = v.quarantine.to_dict("records")
    assert len(q) == 1 and q[0]["row"] == 4
    served = masker_for(policy, CREDIT)  # as the server and `aiops score` build it from serving.json
    assert q[0]["age_in_years"] == served.mask("age_in_years", 35) == "30-40"  # JSON 35 in a request
    assert q[0][PII] == served.mask(PII, FOUR[0]) and q[0][PII].startswith("sha256:")
    assert "notes" not in q[0]  # outside the contract: never copied
    out = io.StringIO()
    v.quarantine.to_csv(out, index=False)
    assert "Jane Roe" not in out.getvalue() and FOUR[0] not in out.getvalue()


def test_the_prediction_log_writer_masks_as_its_server(tmp_path: Path):
    from aiops.runtime.audit.predlog import EntryBuilder

    m = masker_for(STRICT, CREDIT, KEY)
    again = Masker.from_config(m.config())  # what the writer process rebuilds from the pipe
    assert [again.mask(PII, v) for v in FOUR] == [m.mask(PII, v) for v in FOUR]
    b = EntryBuilder(again, (PII, "purpose"), {"name": "m", "version": "1"}, "0" * 64, False)
    (head, tail, _sealed), = b.parts(0.0, "predict", None, [("id1", {PII: FOUR[1], "purpose": "car", "x": "y"}, {})])
    assert FOUR[1] not in head + tail and m.mask(PII, FOUR[1]) in head and '"x"' not in head


# ---------------------------------------------------------------- raw lines, groups, jobs, error text
def test_a_raw_line_is_masked_field_by_field_and_a_malformed_one_whole():
    m = Masker({"pii": "redact"}, None, {"a": ("int", ()), "pii": ("str", ())})
    assert m.mask_line(["a", "pii", "extra"], '1,"Doe, Jane",secret') == "1,[redacted],[redacted]"
    assert m.mask_line(["a", "pii", "extra"], "1,Jane,x,y") == "[redacted],[redacted],[redacted],[redacted]"
    assert m.mask_fields(["a", "pii", "extra"], ["1", "", ""]) == ["1", REDACTED, None]


def test_small_groups_of_a_pii_column_lose_their_label_in_committed_evidence():
    g = np.array(["a"] * 12 + ["Jane Roe"] + ["b"] * 3 + ["(missing)"], dtype=object)
    out = small_groups_hidden(g, 10)
    assert sorted(set(out.tolist())) == ["(missing)", "(small group 1)", "(small group 2)", "a"]
    assert (out == "(small group 1)").sum() == 1 and (out == "(small group 2)").sum() == 3


def test_library_errors_lose_the_data_they_echo():
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with pytest.raises(pa.ArrowInvalid) as exc:
        pcsv.read_csv(io.BytesIO(b"a,b\n1,2\nJane Roe,1970-01-01,x\n"))
    assert scrub(str(exc.value)) == ("CSV parse error: Expected 2 columns, got 3 (the line is not shown: it may hold "
                                     "personal data)")
    assert scrub("In CSV column #0: CSV conversion error to int64: invalid value 'Jane Roe'") == \
        "In CSV column #0: CSV conversion error to int64: invalid value (not shown)"
    assert scrub("could not convert string to float: 'Jane'") == "could not convert string to float: (not shown)"
    assert scrub("cannot read 'x.csv': no such file") == "cannot read 'x.csv': no such file"


def test_monitor_prints_no_line_of_a_malformed_csv(tmp_path: Path, capsys):
    """A ragged line is a quarantined record (docs/contract.md); its text reaches neither
    stderr nor the report."""
    from aiops.compiler.cli import main
    from tests._build import build

    rows = list(csv.reader((ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv").open(newline="")))
    text = "\n".join(",".join(f'"{v}"' for v in r) for r in rows[:3]) + ',"Jane Roe 1970-01-01"\n'
    (tmp_path / "current.csv").write_text(text)
    rc = main(["monitor", str(build("credit_risk")), "--current", str(tmp_path / "current.csv"),
               "--report", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert rc in (0, 1), captured.err
    assert "Jane Roe" not in captured.err + captured.out
    written = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert written and not [p for p in written if b"Jane Roe" in p.read_bytes()]
    assert "malformed" in (tmp_path / "r" / "report.json").read_text()
