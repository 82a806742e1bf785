"""`--engine dask` on a LocalCluster of 2 worker processes, on the bundled examples' real
rows: the same predictions bit for bit, the same quarantine, counts that reconcile, drift
within 1e-9 (relative) of the single-process run, and a worker killed mid-job that loses
and duplicates nothing."""
from __future__ import annotations

import glob
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from tests._build import ROOT, build

distributed = pytest.importorskip("distributed")

FLIGHTS = ROOT / "specs/flight_delays/data/flights_2013.parquet"
CREDIT = ROOT / "specs/credit_risk/data/german_credit.csv"
REL_TOL = 1e-9  # drift and quality figures: float sums added in another order
ENV = {"AIOPS_DATA_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
       "AIOPS_MASK_SALT": "test-salt-of-16-chars"}  # credit_risk: encrypted at rest, PII masked


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as mp:  # the workers get the keys through their environment
        for k, v in ENV.items():
            mp.setenv(k, v)
        c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None, silence_logs=40)
        client = distributed.Client(c)
        yield c, client
        client.close()
        c.close()


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for k, v in ENV.items():  # the same keys in this process, which scores single-process
        monkeypatch.setenv(k, v)


def _read(path: Path, encrypted: bool) -> pa.Table:
    """A Parquet file or folder, decrypted when it was written encrypted at rest."""
    from aiops.runtime.policy import load_cipher
    from aiops.runtime.score.scorer import decrypt_file

    files = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
    tables = []
    for f in files:
        if encrypted:
            with pytest.raises(pa.ArrowInvalid):  # sealed: not readable as Parquet
                pq.read_table(f)
            plain = decrypt_file(f, load_cipher({"encryption_at_rest": {"enabled": True}}))
            tables.append(pq.read_table(pa.BufferReader(plain if isinstance(plain, bytes) else b"".join(plain))))
        else:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables)


def _split(table: pa.Table, folder: Path, files: int) -> Path:
    """The table as `files` Parquet files of several row groups, in name order."""
    folder.mkdir(parents=True)
    step = math.ceil(table.num_rows / files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), folder / f"f{i}.parquet", row_group_size=max(step // 3, 1))
    return folder


def _dirty_flights() -> pa.Table:
    """The real flights, with a few rows broken the way real files are (a bad carrier code,
    a negative distance), so that the quarantine has rows and reasons."""
    t = pq.read_table(FLIGHTS)
    carrier = t.column("carrier").to_pylist()
    distance = t.column("distance").to_pylist()
    for i in range(7, t.num_rows, 4999):
        carrier[i] = "not a carrier"
    for i in range(11, t.num_rows, 7001):
        distance[i] = -distance[i]
    t = t.set_column(t.schema.get_field_index("carrier"), "carrier", pa.array(carrier, t.schema.field("carrier").type))
    return t.set_column(t.schema.get_field_index("distance"), "distance",
                        pa.array(distance, t.schema.field("distance").type))


def _score_both(tmp_path: Path, art: Path, table: pa.Table, client, files: int, partition_rows: int):
    from aiops.runtime.scale.engine import score_dask
    from aiops.runtime.score.scorer import score_file

    whole = tmp_path / "whole.parquet"
    pq.write_table(table, whole)
    single = score_file(art, whole, tmp_path / "single.parquet", quarantine_path=tmp_path / "single.q.parquet",
                        progress=False)
    folder = _split(table, tmp_path / "in", files)
    dist = score_dask(art, str(folder), str(tmp_path / "out"), partition_rows=partition_rows, client=client)
    return single, dist


@pytest.mark.parametrize("example", ["flight_delays", "credit_risk"])
def test_dask_score_is_the_single_process_score(tmp_path, cluster, example):
    _, client = cluster
    art = build(example)
    table = _dirty_flights().slice(0, 20_000) if example == "flight_delays" else pcsv.read_csv(CREDIT)
    single, dist = _score_both(tmp_path, art, table, client, files=3, partition_rows=3000 if example ==
                               "flight_delays" else 150)
    assert dist.partitions > 3  # files split into row ranges
    # counts reconcile, per reason too
    assert (dist.rows_in, dist.scored, dist.quarantined) == (single.rows_in, single.scored, single.quarantined)
    assert dist.rows_in == table.num_rows == dist.scored + dist.quarantined
    assert dist.reasons == single.reasons
    if example == "flight_delays":
        assert dist.reasons == {"carrier: regex": 4, "distance: out_of_range": 3}
    else:
        assert dist.encrypted and single.encrypted
    success = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert success == {"rows_in": dist.rows_in, "scored": dist.scored, "quarantined": dist.quarantined,
                       "partitions": dist.partitions, "reasons": dist.reasons}
    # bit for bit: every column, float64 probabilities included
    a = _read(tmp_path / "single.parquet", single.encrypted)
    b = _read(tmp_path / "out", dist.encrypted).sort_by("row")
    assert b.column_names == a.column_names
    assert a.equals(b)
    qa = _read(tmp_path / "single.q.parquet", single.encrypted)
    qb = _read(tmp_path / "out.quarantine", dist.encrypted).sort_by("row")
    assert qa.equals(qb)
    assert sorted(os.listdir(tmp_path)) == ["in", "out", "out.quarantine", "single.parquet", "single.q.parquet",
                                            "whole.parquet"]  # the staging folder is gone


def _close(x, y, path: str = "") -> list[str]:
    """Where two reports differ beyond REL_TOL."""
    if isinstance(x, dict) and isinstance(y, dict):
        return [d for k in sorted(set(x) | set(y)) for d in _close(x.get(k), y.get(k), f"{path}/{k}")]
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [d for i, (p, q) in enumerate(zip(x, y)) for d in _close(p, q, f"{path}[{i}]")]
    if isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=REL_TOL, abs_tol=1e-12):
        return []
    return [] if x == y else [f"{path}: {x!r} != {y!r}"]


def test_dask_monitor_is_the_single_process_monitor(tmp_path, cluster):
    from aiops.runtime.scale.engine import monitor_dask
    from aiops.runtime.monitor.job import Source, run

    _, client = cluster
    art = build("flight_delays")
    table = _dirty_flights()
    whole = tmp_path / "whole.parquet"
    pq.write_table(table, whole)
    one = run(art, Source(current=whole), tmp_path / "one", html=False)
    url = f"file://{_split(table, tmp_path / 'in', 4)}"  # an fsspec URL, as s3://... would be
    many = monitor_dask(art, Source(current=url), tmp_path / "many", html=False, partition_rows=5000, client=client)
    a, b = one.report, many.report
    assert b["source"]["path"] == url
    b["source"]["path"] = a["source"]["path"]
    assert _close(a, b) == []
    assert b["source"]["rows"] == table.num_rows and b["source"]["rows_breaking_contract"] == 19
    assert sum(w["rows"] for w in b["windows"]) + b["source"]["rows_without_window"] == table.num_rows
    assert many.exit_code == one.exit_code == 1 and len(many.alerts) == len(one.alerts) > 0


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(tmp_path, cluster):
    from aiops.runtime.scale.engine import score_dask

    c, client = cluster
    art = build("flight_delays")
    table = pq.read_table(FLIGHTS).slice(0, 20_000)
    folder = _split(table, tmp_path / "in", 2)
    out: dict = {}

    def job():
        try:
            out["result"] = score_dask(art, str(folder), str(tmp_path / "out"), partition_rows=250,
                                       scheduler=c.scheduler_address)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=job)
    t.start()
    deadline = time.monotonic() + 60
    while len(glob.glob(str(tmp_path / "out.aiops-staging-*/predictions/part-*.parquet"))) < 4:
        assert time.monotonic() < deadline and t.is_alive(), out
        time.sleep(0.01)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    assert t.is_alive()  # killed mid-job
    t.join(120)
    assert "error" not in out, out.get("error")
    r = out["result"]
    assert victim not in client.run(os.getpid).values()  # the worker did die (its nanny started another)
    assert (r.rows_in, r.scored, r.quarantined, r.partitions) == (20_000, 20_000, 0, 80)
    got = pq.read_table(tmp_path / "out")
    rows = got.column("row").to_numpy()
    assert len(rows) == 20_000 and np.array_equal(np.sort(rows), np.arange(1, 20_001))  # none lost, none twice
    assert sorted(os.listdir(tmp_path / "out")) == ["_SUCCESS"] + [f"part-{i:05d}.parquet" for i in range(80)]
    assert not glob.glob(str(tmp_path / "out.aiops-staging-*"))
    assert pc.all(pc.is_valid(got.column("label"))).as_py()


def test_dask_engine_user_errors(tmp_path, capsys):
    from aiops.compiler.cli import main

    art = build("flight_delays")
    rc = main(["score", str(art), str(tmp_path / "missing"), "--output", str(tmp_path / "o"), "--engine", "dask"])
    assert rc == 2
    assert capsys.readouterr().err == f"error: no input at '{tmp_path / 'missing'}'\n"
    csv = tmp_path / "x.csv"
    csv.write_text("a\n1\n")
    rc = main(["score", str(art), str(csv), "--output", str(tmp_path / "o"), "--engine", "dask"])
    assert rc == 2
    assert capsys.readouterr().err == (f"error: --engine dask reads Parquet (a .parquet file or a folder of them). Got "
                                       f"'{csv}' instead; use the default engine for CSV\n")
    rc = main(["monitor", str(art), "--from-log", str(tmp_path / "p.jsonl"), "--engine", "dask"])
    assert rc == 2
    assert capsys.readouterr().err == ("error: --engine dask monitors Parquet data given with --current; monitor the "
                                       "prediction log (--from-log) with the default engine\n")


def test_merged_sketches_equal_one_sketch_and_unknown_fields_are_refused():
    from aiops.runtime.monitor.merge import merge
    from aiops.runtime.monitor.stats import CategorySketch, NumericSketch

    ref = {"edges": [1.0, 2.0, 3.0], "quantiles": [0.0, 1.0, 2.0, 3.0, 4.0], "rows": 10, "std": 1.0}
    x = np.random.default_rng(0).normal(2.0, 1.0, 1000)
    whole, a, b = NumericSketch(ref), NumericSketch(ref), NumericSketch(ref)
    whole.add(x)
    a.add(x[:300])
    b.add(x[300:])
    merge(a, b)
    assert a.n == whole.n and np.array_equal(a.bins, whole.bins) and np.array_equal(a.grid_counts, whole.grid_counts)
    assert (a.min, a.max) == (whole.min, whole.max) and math.isclose(a.total, whole.total, rel_tol=REL_TOL)
    assert a.test("ks").value == whole.test("ks").value
    c, d = CategorySketch({"x": 3}), CategorySketch({"x": 3})
    c.add(np.array(["x", "y", None], dtype=object))
    d.add(np.array(["y"], dtype=object))
    assert merge(c, d).counts == {"x": 1, "y": 2} and c.nulls == 1
    d.extra = 1  # an accumulator that gained a field without a merge rule
    with pytest.raises(TypeError, match=r"CategorySketch has attributes \['extra'\] that runtime/monitor/merge.py "
                                        r"does not know how to merge: add them to RULES"):
        merge(c, d)


def test_unique_holds_across_partitions(tmp_path, cluster):
    """flight_key is `unique`: keys repeated across partitions (and files) are quarantined as
    in one process, with the same reason, the same rows and the same counts."""
    _, client = cluster
    art = build("flight_delays")
    t = pq.read_table(FLIGHTS).slice(0, 4000)
    keys = t.column("flight_key").to_pylist()
    keys[2500] = keys[10]  # partition 2 (rows 2000-2999) repeats a key of partition 0, in another file
    keys[1200] = keys[1100]  # partition 1 repeats a key of its own
    keys[3999] = keys[2500]  # ... and the last partition the key again
    keys[1500] = keys[3000]  # a later partition's first row holds a key first seen in partition 1
    t = t.set_column(t.schema.get_field_index("flight_key"), "flight_key",
                     pa.array(keys, t.schema.field("flight_key").type))
    single, dist = _score_both(tmp_path, art, t, client, files=2, partition_rows=1000)
    assert dist.partitions == 4
    assert single.reasons == {"flight_key: duplicate": 4}
    assert (dist.rows_in, dist.scored, dist.quarantined, dist.reasons) == \
        (single.rows_in, single.scored, single.quarantined, single.reasons)
    qa = _read(tmp_path / "single.q.parquet", False)
    qb = _read(tmp_path / "out.quarantine", False).sort_by("row")
    assert qa.equals(qb) and qb.column("row").to_pylist() == [1201, 2501, 3001, 4000]
    assert _read(tmp_path / "single.parquet", False).equals(_read(tmp_path / "out", False).sort_by("row"))


def test_monitor_counts_duplicates_across_partitions(tmp_path, cluster):
    from aiops.runtime.scale.engine import monitor_dask
    from aiops.runtime.monitor.job import Source, run

    _, client = cluster
    art = build("flight_delays")
    t = pq.read_table(FLIGHTS).slice(0, 8000)
    keys = t.column("flight_key").to_pylist()
    for dst, src in ((2500, 10), (7999, 10), (4100, 4000), (6000, 3000)):  # across partitions, and within one
        keys[dst] = keys[src]
    t = t.set_column(t.schema.get_field_index("flight_key"), "flight_key",
                     pa.array(keys, t.schema.field("flight_key").type))
    whole = tmp_path / "whole.parquet"
    pq.write_table(t, whole)
    one = run(art, Source(current=whole), tmp_path / "one", html=False)
    many = monitor_dask(art, Source(current=str(_split(t, tmp_path / "in", 2))), tmp_path / "many", html=False,
                        partition_rows=2000, client=client)
    a, b = one.report, many.report
    b["source"]["path"] = a["source"]["path"]
    assert a["source"]["rows_breaking_contract"] == 4
    assert _close(a, b) == []


def test_unique_first_pass_arrow_contract_and_hash_paths_agree(tmp_path, monkeypatch):
    """The first pass takes Arrow's distinct values for text and numbers (`arrow_keys`) and asks
    the contract otherwise: both give the single-process verdicts, also for keys that are
    null-like or break another check of the column, repeated across partitions; and hashes
    that collide for different values change nothing (the values decide)."""
    from aiops.runtime.scale import partition, unique
    from aiops.runtime.score.scorer import score_file

    art = build("flight_delays")
    t = pq.read_table(FLIGHTS).slice(0, 4000)
    keys = t.column("flight_key").to_pylist()
    for dst, src in ((2500, 10), (3999, 10), (1200, 1100), (1500, 3000)):
        keys[dst] = keys[src]
    keys[5] = keys[2005] = "short"  # breaks str_length in both partitions: never a duplicate
    keys[6] = keys[3006] = "   "  # null-like text
    t = t.set_column(t.schema.get_field_index("flight_key"), "flight_key",
                     pa.array(keys, t.schema.field("flight_key").type))
    pq.write_table(t, tmp_path / "whole.parquet")
    single = score_file(art, tmp_path / "whole.parquet", tmp_path / "s.parquet",
                        quarantine_path=tmp_path / "s.q.parquet", progress=False)
    scorer = partition.PartitionScorer(art, t.column_names)
    parts = [t.slice(i, 1000) for i in range(0, 4000, 1000)]

    def run() -> tuple[dict, pa.Table]:  # engine._unique_pass, in this process
        values = [scorer.unique_values(p) for p in parts]
        coll = unique.colliding([{k: unique.key_hashes(v) for k, v in vals.items()} for vals in values])
        earlier = unique.unique_across([unique.candidates(vals, coll) for vals in values])
        total, qs = partition.ScoreCounts(), []
        for i, p in enumerate(parts):
            _, q, counts = scorer.score(p, i * 1000, earlier[i])
            total.add(counts)
            qs.append(q)
        return total.reasons, pa.concat_tables(qs).select(["row", "reasons"])

    fast = run()
    monkeypatch.setattr(partition, "arrow_keys", lambda col, rule: None)
    slow = run()
    # every hash equal: every value is a candidate, and the exact pass alone decides
    monkeypatch.setattr(unique, "key_hashes", lambda v: np.zeros(len(v), dtype=np.uint64))
    collide = run()
    expected = pq.read_table(tmp_path / "s.q.parquet").select(["row", "reasons"])
    assert fast[0] == slow[0] == collide[0] == single.reasons and single.reasons["flight_key: duplicate"] == 4
    assert fast[1].equals(expected) and slow[1].equals(expected) and collide[1].equals(expected)
