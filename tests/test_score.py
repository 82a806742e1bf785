"""`aiops score` and `aiops verify`.

Batch scoring of the bundled data (Parquet and CSV) gives the HTTP path's predictions bit for
bit; dirty copies of real rows are quarantined with their reasons and the counts reconcile;
any chunk size gives the same bytes; memory does not grow with the input; tampered or
unblessed artefacts and unusable inputs are refused with a message, never a traceback.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from aiops.compiler.cli import main
from aiops.runtime.policy import load_cipher
from aiops.runtime.predictor import Predictor
from aiops.runtime.score.scorer import _Validator, decrypt_file
from tests._build import ROOT, build, copy_artefacts

FLIGHTS = ROOT / "specs" / "flight_delays" / "data" / "flights_2013.parquet"
CREDIT = ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv"
DATA_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
PII = "personal_status_and_sex"
PII_VALUE = "Zyx-PII-Sentinel-4711"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the masking salt and anything else stays in tmp_path
    monkeypatch.setenv("AIOPS_DATA_KEY", DATA_KEY)
    monkeypatch.setenv("AIOPS_MASK_SALT", "test-salt-of-16-chars")
    monkeypatch.delenv("AIOPS_API_KEYS", raising=False)
    monkeypatch.delenv("AIOPS_TRUSTED_KEY", raising=False)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def score(capsys, art: Path, inp: Path, out: Path, *more: str) -> tuple[int, str, str]:
    return cli(capsys, "score", art, inp, "--output", out, "--quiet", *more)


def plain(path: Path, art: Path) -> bytes:
    """The bytes of an output, decrypted when the artefacts ask for encryption at rest."""
    security = json.loads((art / "serving.json").read_text())["security"]
    cipher = load_cipher(security)
    return b"".join(decrypt_file(path, cipher)) if cipher else path.read_bytes()


def read_table(path: Path, art: Path) -> pa.Table:
    data = plain(path, art)
    if path.suffix == ".parquet":
        return pq.read_table(pa.BufferReader(data))
    return pcsv.read_csv(pa.BufferReader(data), convert_options=pcsv.ConvertOptions(
        column_types={"row": pa.int64(), "label": pa.string(), "flight_key": pa.string()}))


def quarantine(path: Path, art: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(plain(path, art).decode())))


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.uint64)


# ---------------------------------------------------------------------- the HTTP path, in process
def http_predict(art: Path, log_dir: Path, records: list[dict], sizes: tuple[int, ...]) -> dict[str, list]:
    """POST /v1/predict through the server's ASGI app, in requests of the given sizes (cycled)."""
    from aiops.runtime.serve.server import App, Service

    app = App(Service(art, log_dir, insecure_dev=True))  # no keys: this compares predictions, not access
    app.startup()
    labels: list[str] = []
    probs: list[list[float]] = []

    async def post(batch: list[dict]) -> dict:
        sent: list[dict] = []
        body = json.dumps({"records": batch}).encode()
        msgs = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return msgs.pop(0) if msgs else {"type": "http.disconnect"}

        async def send(m):
            sent.append(m)

        scope = {"type": "http", "method": "POST", "path": "/v1/predict", "query_string": b"",
                 "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1)}
        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent
        return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))

    try:
        i = k = 0
        while i < len(records):
            n = sizes[k % len(sizes)]
            res = asyncio.run(post(records[i:i + n]))
            for p in res["predictions"]:
                labels.append(p["label"])
                probs.append(list(p["probabilities"].values()))
            i, k = i + n, k + 1
    finally:
        app.shutdown()
    return {"label": labels, "probabilities": probs}


def json_records(table: pa.Table) -> list[dict]:
    """Rows as an HTTP client sends them: JSON objects, numbers as numbers."""
    return json.loads(json.dumps(table.to_pylist()))


def credit_records() -> list[dict]:
    with CREDIT.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: int(v) if v.lstrip("-").isdigit() else v for k, v in r.items() if k != "creditability"}
            for r in rows]


def test_the_in_process_server_leaves_the_interpreter_as_it_found_it(tmp_path: Path):
    """startup() freezes the garbage collector and shortens the switch interval for serving;
    shutdown() gives both back, so a process hosting the app (this test run) keeps its own."""
    import gc

    before, frozen = sys.getswitchinterval(), gc.get_freeze_count()
    res = http_predict(build("credit_risk"), tmp_path / "log", credit_records()[:3], (3,))
    assert len(res["label"]) == 3
    assert sys.getswitchinterval() == before
    assert gc.get_freeze_count() == frozen == 0


# ---------------------------------------------------------------------- real data, both paths
def test_flights_parquet_scores_every_row_as_the_http_path_does(capsys, tmp_path: Path):
    art = build("flight_delays")
    out = tmp_path / "flights.parquet"
    rc, stdout, _ = score(capsys, art, FLIGHTS, out)
    assert rc == 0
    assert "rows in 50000 = scored 50000 + quarantined 0 (" in stdout
    assert "3 chunks" in stdout  # serving.json batch_chunk_rows: 20000
    t = pq.read_table(out)
    manifest_sha = hashlib.sha256((art / "manifest.json").read_bytes()).hexdigest()
    assert t.column_names == ["row", "flight_key", "label", "probability_0", "probability_1", "model_name",
                              "model_version", "manifest_sha256"]
    assert t.column("row").to_pylist() == list(range(1, 50001))
    src = pq.read_table(FLIGHTS)
    assert t.column("flight_key").equals(src.column("flight_key").cast(pa.string()))
    assert set(t.column("manifest_sha256").to_pylist()) == {manifest_sha}
    assert set(t.column("model_name").to_pylist()) == {"flight_delays"}

    pick = np.arange(0, 50000, 50)  # 1000 rows across the year
    recs = json_records(src.take(pa.array(pick)).drop_columns(["arr_delayed"]))
    got_p = np.column_stack([t.column("probability_0").to_numpy(), t.column("probability_1").to_numpy()])[pick]
    got_l = [t.column("label").to_pylist()[i] for i in pick]
    ref, errors = Predictor(art).predict_records(recs)
    assert not errors.items
    assert np.array_equal(bits(got_p), bits(ref["probabilities"]))
    assert got_l == ref["label"].tolist()
    http = http_predict(art, tmp_path / "log", recs, sizes=(1, 16, 17, 1000))
    assert np.array_equal(bits(got_p), bits(http["probabilities"]))
    assert got_l == http["label"]


def test_credit_csv_is_encrypted_at_rest_and_equals_the_http_path(capsys, tmp_path: Path):
    art = build("credit_risk")
    out = tmp_path / "credit.csv"
    rc, stdout, _ = score(capsys, art, CREDIT, out)
    assert rc == 0, stdout
    assert "rows in 1000 = scored 1000 + quarantined 0 (" in stdout
    assert "(encrypted at rest)" in stdout
    raw = out.read_bytes()
    assert raw.startswith(b"AIOPS-SEALED1\n\x03") and b"credit_risk" not in raw and b"probability" not in raw
    t = read_table(out, art)
    assert t.column_names[:4] == ["row", "label", "probability_bad", "probability_good"]
    got = np.column_stack([t.column("probability_bad").to_numpy(), t.column("probability_good").to_numpy()])

    recs = credit_records()
    ref, errors = Predictor(art).predict_records(recs)
    assert not errors.items
    assert np.array_equal(bits(got), bits(ref["probabilities"]))  # the CSV text round-trips every bit
    assert t.column("label").to_pylist() == ref["label"].tolist()
    # single records (onnxruntime's one-row kernel) and odd sizes give the same bits
    http = http_predict(art, tmp_path / "log", recs, sizes=(1,) * 30 + (16, 3, 7, 1000))
    assert np.array_equal(bits(got), bits(http["probabilities"]))
    assert t.column("label").to_pylist() == http["label"]


def test_a_missing_encryption_key_is_refused(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AIOPS_DATA_KEY")
    rc, _, err = score(capsys, build("credit_risk"), CREDIT, tmp_path / "c.csv")
    assert rc == 2
    assert "encryption at rest is enabled" in err and "AIOPS_DATA_KEY is not set" in err
    assert not list(tmp_path.glob("c.csv*"))


# ---------------------------------------------------------------------- dirty real rows
# record number (1-based) -> (column -> new text, or None for a blank), expected reasons
FLIGHT_DIRT: dict[int, tuple[dict[str, str | None], set[str]]] = {
    10: ({"distance": "abc"}, {"distance: wrong_type"}),
    20: ({"sched_dep_time": "2500"}, {"sched_dep_time: out_of_range"}),
    30: ({"humid": "150"}, {"humid: out_of_range"}),
    40: ({"flight_date": "2013-13-45"}, {"flight_date: bad_date"}),
    50: ({"flight_date": "31/01/2013"}, {"flight_date: bad_date"}),
    60: ({"origin": "XXX"}, {"origin: not_in_set"}),
    70: ({"carrier": None}, {"carrier: null"}),
    80: ({"dest": None, "distance": None}, {"dest: null", "distance: null"}),
    90: ({"sched_arr_time": "12.5"}, {"sched_arr_time: wrong_type"}),
    110: ({"carrier": "ua"}, {"carrier: regex"}),
    120: ({"distance": "-5"}, {"distance: out_of_range"}),
    130: ({"temp": "nan"}, {"temp: wrong_type"}),
    140: ({"visib": "inf"}, {"visib: not_finite"}),
    150: ({"distance": "x", "origin": "ABC", "flight_date": "yesterday"},
          {"distance: wrong_type", "origin: not_in_set", "flight_date: bad_date"}),
    170: ({"flight_key": "short"}, {"flight_key: str_length"}),
    2999: ({"flight_date": "2013-02-30"}, {"flight_date: bad_date"}),
}
FLIGHT_FINE = {  # unusual but valid: scored
    100: {"temp": None},  # nullable
    55: {"flight_date": "01/15/2013"},  # another accepted format
    56: {"flight_date": "15012013"},
    57: {"distance": " 1416 "},
}
MALFORMED = 160  # this record gets an extra field


def dirty_flights(path: Path, n: int = 3000) -> list[list[str | None]]:
    """The first n real flights as CSV text, with FLIGHT_DIRT and FLIGHT_FINE applied."""
    t = pq.read_table(FLIGHTS).slice(0, n)
    buf = io.BytesIO()
    pcsv.write_csv(t, buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue().decode())))
    header, body = rows[0], rows[1:]
    for rec, (mods, _) in FLIGHT_DIRT.items():
        for col, v in mods.items():
            body[rec - 1][header.index(col)] = "" if v is None else v
    for rec, mods in FLIGHT_FINE.items():
        for col, v in mods.items():
            body[rec - 1][header.index(col)] = "" if v is None else v
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for i, r in enumerate(body, 1):
            w.writerow(r + ["extra"] if i == MALFORMED else r)
    return [header] + body


def test_dirty_rows_are_quarantined_with_every_reason_and_the_counts_reconcile(capsys, tmp_path: Path):
    art = build("flight_delays")
    inp = tmp_path / "dirty.csv"
    rows = dirty_flights(inp)
    out = tmp_path / "scored.parquet"
    rc, stdout, _ = score(capsys, art, inp, out, "--chunk-rows", "1000")
    assert rc == 0
    bad = set(FLIGHT_DIRT) | {MALFORMED}
    assert f"rows in 3000 = scored {3000 - len(bad)} + quarantined {len(bad)} (" in stdout

    q = quarantine(out.with_name("scored.parquet.quarantine.csv"), art)
    assert [int(r["row"]) for r in q] == sorted(bad)
    by_row = {int(r["row"]): r for r in q}
    for rec, (_, expected) in FLIGHT_DIRT.items():
        found = {m.group(1) for m in re.finditer(r"(\w+: \w+) \(", by_row[rec]["reasons"])}
        assert found == expected, (rec, by_row[rec]["reasons"])
        assert by_row[rec]["flight_key"] == rows[rec][0]  # the raw values are kept
    assert by_row[MALFORMED]["reasons"] == f"malformed (line {MALFORMED + 1}: expected 15 fields, got 16)"  # + header
    assert by_row[MALFORMED]["raw"].count(",") == 15 and by_row[MALFORMED]["flight_key"] == ""
    assert "distance: wrong_type (must be an integer)" in by_row[10]["reasons"]
    assert "origin: not_in_set (must be one of EWR, JFK, LGA)" in by_row[60]["reasons"]
    assert "flight_date: bad_date (must be a date written as %Y-%m-%d or %m/%d/%Y or %d%m%Y)" in by_row[40]["reasons"]

    t = pq.read_table(out)
    assert t.column("row").to_pylist() == [i for i in range(1, 3001) if i not in bad]
    assert t.column("flight_key").to_pylist() == [rows[i][0] for i in range(1, 3001) if i not in bad]

    # the HTTP path gives each row the same verdict (a JSON client sends the same text)
    header = rows[0]
    contract = Predictor(art).contract
    order = sorted(FLIGHT_DIRT) + sorted(FLIGHT_FINE)
    recs = [{k: (v if v != "" else None) for k, v in zip(header, rows[i]) if k != "arr_delayed"} for i in order]
    _, errors = contract.validate_records(recs)
    verdicts = {order[i]: {f"{c}: {code}" for c, code, _ in errs} for i, errs in errors.by_row().items()}
    assert verdicts == {rec: exp for rec, (_, exp) in FLIGHT_DIRT.items()}


def test_pii_is_masked_in_the_quarantine_and_categories_outside_the_contract_are_rejected(capsys, tmp_path: Path):
    art = build("credit_risk")
    with CREDIT.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    col = header.index
    dirt = {
        3: ({"housing": "castle"}, {"housing: not_in_set"}),
        4: ({PII: PII_VALUE, "age_in_years": "abc"}, {"age_in_years: wrong_type"}),
        5: ({"credit_amount": ""}, {"credit_amount: null"}),
        6: ({"duration_in_month": "0"}, {"duration_in_month: out_of_range"}),
        7: ({"status_of_existing_checking_account": "lots"}, {"status_of_existing_checking_account: not_in_set"}),
    }
    for rec, (mods, _) in dirt.items():
        for c, v in mods.items():
            rows[rec][col(c)] = v
    rows[8][col(PII)] = PII_VALUE  # a valid row with the sentinel: scored, never written out
    inp = tmp_path / "dirty_credit.csv"
    with inp.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    out = tmp_path / "credit.parquet"
    rc, stdout, _ = score(capsys, art, inp, out, "--quarantine", tmp_path / "rejected.csv")
    assert rc == 0
    assert "rows in 1000 = scored 995 + quarantined 5 (" in stdout
    q = quarantine(tmp_path / "rejected.csv", art)
    assert [int(r["row"]) for r in q] == sorted(dirt)
    for r in q:
        found = {m.group(1) for m in re.finditer(r"(\w+: \w+) \(", r["reasons"])}
        assert found == dirt[int(r["row"])][1]
        assert r[PII].startswith("sha256:") and len(r[PII]) == 7 + 32
    masked = {r["row"]: r[PII] for r in q}
    assert PII_VALUE.encode() not in plain(tmp_path / "rejected.csv", art)
    assert PII_VALUE.encode() not in plain(out, art)
    # the same value hashes the same way as in the server's log (one key, one Masker)
    from aiops.runtime.contract import Contract
    from aiops.runtime.masking import masker_for

    m = masker_for({"masking": {PII: {"method": "hash"}}}, Contract.load(art / "contract.json"))
    assert masked["4"] == m.mask(PII, PII_VALUE)


# ---------------------------------------------------------------------- chunks and the validator
def test_any_chunk_size_gives_the_same_bytes(capsys, tmp_path: Path):
    art = build("flight_delays")
    inp = tmp_path / "dirty.csv"
    dirty_flights(inp)
    outs = {}
    for chunk in (7, 1000, 1_000_000):
        out = tmp_path / f"c{chunk}.parquet"
        rc, stdout, _ = score(capsys, art, inp, out, "--chunk-rows", str(chunk))
        assert rc == 0
        outs[chunk] = (pq.read_table(out), (tmp_path / f"c{chunk}.parquet.quarantine.csv").read_bytes())
    assert "1 chunks" in stdout
    for chunk in (7, 1000):
        assert outs[chunk][0].equals(outs[1_000_000][0])
        assert outs[chunk][1] == outs[1_000_000][1]
    # a chunk of one row (onnxruntime's one-row kernel) on the linear model, as CSV output
    art = build("credit_risk")
    small = tmp_path / "credit100.csv"
    small.write_text("".join(CREDIT.read_text().splitlines(keepends=True)[:101]))
    texts = []
    for chunk in (1, 100):
        rc, _, _ = score(capsys, art, small, tmp_path / f"k{chunk}.csv", "--chunk-rows", str(chunk))
        assert rc == 0
        texts.append(plain(tmp_path / f"k{chunk}.csv", art))
    assert texts[0] == texts[1]


def test_the_chunk_validator_equals_the_contract_on_whole_columns(tmp_path: Path):
    art = build("flight_delays")
    inp = tmp_path / "dirty.csv"
    rows = dirty_flights(inp)
    header, body = rows[0], [r for i, r in enumerate(rows[1:], 1) if i != MALFORMED]
    contract = Predictor(art).contract
    table = pa.table({c: pa.array([r[j] or None for r in body], pa.string()) for j, c in enumerate(header)})
    v = _Validator(contract, header)
    clean, errors, distinct = v.validate(table)
    assert {"flight_date", "carrier", "origin", "dest"} <= set(distinct)  # validated once per value
    clean.update({c: values[idx] for c, (values, idx) in distinct.items()})
    whole = {c: np.array([r[j] or None for r in body] + [None], dtype=object)[:-1] for j, c in enumerate(header)}
    ref_clean, ref_errors = contract.validate_columns(whole, len(body))
    assert errors.by_row() == ref_errors.by_row()
    for c in ref_clean:
        a, b = clean[c], ref_clean[c]
        if a.dtype == object:
            assert a.tolist() == b.tolist(), c
        else:
            assert np.array_equal(bits(a), bits(b)), c


# ---------------------------------------------------------------------- limits and refusals
def test_max_rejected_share_fails_without_writing_predictions(capsys, tmp_path: Path):
    art = build("flight_delays")
    inp = tmp_path / "dirty.csv"
    dirty_flights(inp)
    out = tmp_path / "o.csv"
    rc, _, err = score(capsys, art, inp, out, "--max-rejected-share", "0.001")
    assert rc == 1
    assert "17 of 3000 rows (0.57%) were quarantined, more than --max-rejected-share 0.10%" in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    assert len(quarantine(tmp_path / "o.csv.quarantine.csv", art)) == 17
    rc, stdout, _ = score(capsys, art, inp, out, "--max-rejected-share", "1%")
    assert rc == 0 and out.exists()


def test_unusable_inputs_get_a_clear_error(capsys, tmp_path: Path):
    art = build("flight_delays")
    out = tmp_path / "o.csv"
    cases = []
    cases.append((tmp_path / "absent.csv", "no input file at"))
    (tmp_path / "data.txt").write_text("a,b\n")
    cases.append((tmp_path / "data.txt", "has the extension '.txt'; expected one of .csv, .parquet, .pq"))
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet at all" * 10)
    cases.append((tmp_path / "garbage.parquet", "cannot read"))
    (tmp_path / "empty.csv").write_text("")
    cases.append((tmp_path / "empty.csv", "the file is empty (no header line)"))
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" * 100)
    cases.append((tmp_path / "binary.csv", "cannot read"))
    t = pq.read_table(FLIGHTS).slice(0, 10).rename_columns(
        ["flight_key", "flight_date", "sched_dep_time", "sched_arr_time", "carier", "origin", "dest", "distance",
         "temp", "humid", "wind_speed", "precip", "visib", "arr_delay", "arr_delayed"]).drop_columns(["dest"])
    pcsv.write_csv(t, tmp_path / "typo.csv")
    cases.append((tmp_path / "typo.csv",
                  "lacks 2 column(s) that the model needs:\n  - carrier (did you mean 'carier'?)\n  - dest\n"))
    for inp, message in cases:
        rc, _, err = score(capsys, art, inp, out)
        assert rc == 2, (inp, err)
        assert message in err, (inp, err)
        assert not out.exists()
    rc, _, err = score(capsys, art, FLIGHTS, tmp_path / "o.json")
    assert rc == 2 and "the output" in err and "'.json'" in err


def test_tampered_or_unblessed_artefacts_are_refused(capsys, tmp_path: Path):
    art = build("flight_delays")
    rc, out, _ = cli(capsys, "verify", art)
    assert rc == 0
    files = len(json.loads((art / "manifest.json").read_text())["files"])
    assert f"files checked: {files + 2} (" in out and "blessing: blessed" in out  # + manifest.json, manifest.sig
    assert "signature: signed by ed25519:0920dd3ed0ec0268, a trusted key" in out

    bad = copy_artefacts(art, tmp_path / "tampered")
    with (bad / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    rc, _, err = score(capsys, bad, FLIGHTS, tmp_path / "o.csv")
    assert rc == 2 and "refusing the artefacts" in err and "modified: model.onnx" in err
    assert not (tmp_path / "o.csv").exists()
    rc, _, err = cli(capsys, "verify", bad)
    assert rc == 1 and "FAILED: refusing the artefacts" in err and "modified: model.onnx" in err

    unblessed = copy_artefacts(art, tmp_path / "unblessed")
    m = json.loads((unblessed / "manifest.json").read_text())
    m["blessed"] = False
    (unblessed / "manifest.json").write_text(json.dumps(m))
    rc, _, err = score(capsys, unblessed, FLIGHTS, tmp_path / "o.csv")  # a flag is no verdict: tests/test_trust.py
    assert rc == 2 and "modified after signing: manifest.json" in err
    rc, _, err = cli(capsys, "verify", unblessed, "--allow-unblessed")
    assert rc == 1 and "modified after signing: manifest.json" in err
    rc, _, err = cli(capsys, "verify", tmp_path / "nowhere")
    assert rc == 2 and "no artefact folder" in err


# ---------------------------------------------------------------------- memory
# VmHWM, not ru_maxrss: a child inherits the ru_maxrss of its parent (pytest, large by now)
PEAK = """
import sys
from aiops.runtime.score.scorer import score_file
r = score_file(sys.argv[1], sys.argv[2], sys.argv[3], chunk_rows=int(sys.argv[4]), progress=False)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(r.rows_in, int(hwm) * 1024)
"""


def test_memory_does_not_grow_with_the_input(tmp_path: Path):
    """Peak RSS of two fresh processes scoring in chunks of 5,000 rows: 50,000 real flights
    (10 chunks) and the same rows thirty times over (300 chunks, 128 MB more CSV). Both pay the
    same fixed costs (interpreter, libraries, the model, onnxruntime's arena, two chunks in
    flight), so the difference is what the extra input costs: far less than its size."""
    art = build("flight_delays")
    text = io.BytesIO()
    pcsv.write_csv(pq.read_table(FLIGHTS), text)
    header, body = text.getvalue().split(b"\n", 1)
    small, big = tmp_path / "x1.csv", tmp_path / "x30.csv"
    small.write_bytes(header + b"\n" + body)
    with big.open("wb") as fh:
        fh.write(header + b"\n")
        for _ in range(30):
            fh.write(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", PEAK, str(art), str(p), str(tmp_path / f"{p.stem}.csv.out.csv"),
                               "5000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
             for p in (small, big)]
    res = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        res.append([int(x) for x in out.split()])
    (rows_small, peak_small), (rows_big, peak_big) = res
    assert (rows_small, rows_big) == (50_000, 1_500_000)
    extra_input = big.stat().st_size - small.stat().st_size
    growth = peak_big - peak_small
    assert growth < 0.5 * extra_input, (f"peak grew by {growth / 2**20:.1f} MB for {extra_input / 2**20:.1f} MB "
                                        f"more input ({peak_small / 2**20:.0f} -> {peak_big / 2**20:.0f} MB)")
