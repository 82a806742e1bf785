"""Batch scoring benchmark: `aiops score` against scikit-learn and raw onnxruntime, measured
in the same run on the bundled examples, plus single-record latency and peak memory.

    python bench/batch.py            # full run (a few minutes)
    python bench/batch.py --quick    # smaller inputs, fewer repeats

Measured, each repeated and interleaved (A B C A B C ...) so that a noisy neighbour hits all
of them alike; the tables show medians:

- rows/s of `runtime.score.score_file` (what `aiops score` runs, validation included: read
  the file, check every value against the contract, derive features, onnxruntime, write the
  predictions and the quarantine file) on CSV and Parquet inputs;
- rows/s of scikit-learn `predict_proba` on the same rows, already featurized and in memory
  (the fitted pipeline that the ONNX model was exported from);
- rows/s of raw onnxruntime `session.run` on the already-featurized arrays, in chunks of the
  same size and with the same single intra-op thread as `aiops score`, and with
  onnxruntime's default threads in one call;
- single-record latency in process: `Predictor.predict_records` and the server's fast path
  (`FeatureRows.rows` + `feed` + `Predictor.run` + `lists`) against raw `session.run` of one
  prepared row;
- peak RSS of `aiops score` (a fresh process) on inputs of 1, 5 and 20 times its chunk size.

Floors (issue): faster than scikit-learn; at least 0.5x raw onnxruntime; issue 14's goal,
at least 0.8x raw onnxruntime from CSV and from Parquet. Results go to
bench/results/batch.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (WORK, artefacts, bench_env, trust, fitted_pipeline, fmt_table, machine, median,  # noqa: E402
                     read_table, repeat_table, spread, timed, write_input, write_results)

# VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss across fork and exec
PEAK = r"""
import sys
from aiops.compiler.cli import main
rc = main(sys.argv[1:])
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("PEAK", rc, int(hwm) * 1024)
"""


def featurize(art: Path, table):
    """Contract-clean columns, ONNX feed and model frame of `table` (outside any timing)."""
    import pandas as pd

    from aiops.runtime.predictor import Predictor

    p = Predictor(art)
    data = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    cols, errors = p.contract.validate_columns(data, table.num_rows)
    assert not errors.items, errors.items[:3]
    from aiops.runtime.features import derive

    feed = derive(p.steps, cols)
    frame = pd.DataFrame({k: v[:, 0] for k, v in feed.items()})
    return p, feed, frame


def throughput(name: str, art: Path, rows: int, repeats: int, log) -> dict:
    import onnxruntime as ort

    from aiops.runtime.score.scorer import score_file

    serving = json.loads((art / "serving.json").read_text())
    chunk = int(serving["serving"]["batch_chunk_rows"])
    from aiops.runtime.contract import Contract

    unique = [c.name for c in Contract.load(art / "contract.json").request_columns if c.unique and c.dtype == "str"]
    table = repeat_table(read_table(name), rows, unique)
    target = json.loads((art / "features.json").read_text())["target"]
    inputs = {fmt: write_input(table, WORK / "inputs" / f"{name}-{rows}.{fmt}") for fmt in ("csv", "parquet")}
    outdir = WORK / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    log(f"{name}: fitting the scikit-learn pipeline as aiops compile does")
    pipe = fitted_pipeline(art)
    pred, feed, frame = featurize(art, table.drop_columns([target]))
    names = [i.name for i in pred.session.get_inputs()]
    so1 = ort.SessionOptions()
    so1.intra_op_num_threads, so1.inter_op_num_threads = 1, 1
    sess1 = ort.InferenceSession(str(art / "model.onnx"), so1, providers=["CPUExecutionProvider"])
    sess_default = ort.InferenceSession(str(art / "model.onnx"), providers=["CPUExecutionProvider"])
    sk = pipe.predict_proba(frame.head(1000))
    ref = sess1.run(None, {k: feed[k][:1000] for k in names})[1]
    parity = float(np.abs(sk - ref).max())

    def run_chunks(sess):
        for i in range(0, rows, chunk):
            sess.run(None, {k: feed[k][i:i + chunk] for k in names})

    cases = {
        "aiops score (CSV in)": lambda: score_file(art, inputs["csv"], outdir / f"{name}.parquet", progress=False),
        "aiops score (Parquet in)": lambda: score_file(art, inputs["parquet"], outdir / f"{name}.parquet",
                                                       progress=False),
        "scikit-learn predict_proba (featurized, in memory)": lambda: pipe.predict_proba(frame),
        "onnxruntime, featurized, same chunks, 1 thread": lambda: run_chunks(sess1),
        "onnxruntime, featurized, one call, default threads":
            lambda: sess_default.run(None, {k: feed[k] for k in names}),
    }
    for fn in cases.values():  # warm up: imports, arenas, caches
        fn()
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(repeats):
        log(f"{name}: repeat {r + 1}/{repeats}")
        for k, fn in cases.items():
            w, c = timed(fn)
            wall[k].append(w)
            cpu[k].append(c)
    res = {k: {"rows_per_s": rows / median(wall[k]), "rows_per_cpu_s": rows / median(cpu[k]),
               "wall_s": wall[k], "cpu_s": cpu[k], "spread": spread(wall[k])} for k in cases}
    cli = _cli_end_to_end(art, inputs["csv"], outdir / f"{name}-cli.parquet")
    return {"rows": rows, "chunk_rows": chunk, "input_bytes": {f: p.stat().st_size for f, p in inputs.items()},
            "sklearn_vs_onnx_max_abs_diff": parity, "cases": res, "cli_end_to_end": cli}


def _cli_end_to_end(art: Path, inp: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "aiops.compiler.cli", "score", str(art), str(inp), "--output", str(out),
                        "--quiet"], env=bench_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr
    return {"wall_s": wall, "summary": p.stdout.splitlines()[0]}


def latency(name: str, art: Path, n: int, log) -> dict:
    """Single-record latency in process, microseconds."""
    from aiops.runtime.features import derive
    from aiops.runtime.serve.rows import FeatureRows, RowAcceptor
    from aiops.runtime.predictor import Predictor

    log(f"{name}: single-record latency ({n} calls each)")
    table = read_table(name)
    target = json.loads((art / "features.json").read_text())["target"]
    recs = json.loads(json.dumps(table.drop_columns([target]).slice(0, 200).to_pylist()))
    p = Predictor(art)
    fr = FeatureRows(RowAcceptor(p.contract), p.steps, p.input_names)
    names = [i.name for i in p.session.get_inputs()]
    feeds = []
    for r in recs:
        cols, _ = p.contract.validate_records([r])
        feeds.append({k: v for k, v in derive(p.steps, cols).items()})
    sess = p.session

    def fast(r):
        rows = fr.rows([r])
        assert rows is not None
        return p.lists(p.run(fr.feed(rows)), 1)

    cases = {
        "raw session.run (prepared one-row feed)": lambda i: sess.run(None, {k: feeds[i][k] for k in names}),
        "Predictor.run_feed (prepared feed)": lambda i: p.run_feed(feeds[i]),
        "server fast path: FeatureRows + run + lists": lambda i: fast(recs[i]),
        "Predictor.predict_records (contract + derive + run)": lambda i: p.predict_records([recs[i]]),
    }
    out = {}
    for k, fn in cases.items():
        for i in range(200):
            fn(i)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for j in range(n):  # interleaved
        i = j % len(recs)
        for k, fn in cases.items():
            t0 = time.perf_counter_ns()
            fn(i)
            samples[k].append((time.perf_counter_ns() - t0) / 1000)
    for k, xs in samples.items():
        a = np.array(xs)
        out[k] = {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
                  "mean_us": float(a.mean())}
    return out


def peak_memory(name: str, art: Path, multiples: list[int], log) -> dict:
    serving = json.loads((art / "serving.json").read_text())
    chunk = int(serving["serving"]["batch_chunk_rows"])
    base = read_table(name)
    out = {"chunk_rows": chunk, "runs": []}
    for m in multiples:
        rows = chunk * m
        inp = write_input(repeat_table(base, rows), WORK / "inputs" / f"{name}-mem-{rows}.csv")
        log(f"{name}: peak memory, {rows} rows ({m}x the chunk size)")
        p = subprocess.run([sys.executable, "-c", PEAK, "score", str(art), str(inp), "--output",
                            str(WORK / "out" / f"{name}-mem.csv"), "--quiet"],
                           env=bench_env(), capture_output=True, text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("PEAK")][0].split()
        assert line[1] == "0", p.stderr
        out["runs"].append({"multiple": m, "rows": rows, "input_bytes": inp.stat().st_size,
                            "peak_rss_bytes": int(line[2])})
        inp.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats (about a minute)")
    ap.add_argument("--repeats", type=int, help="repeats per case (default 5, quick 2)")
    ap.add_argument("--only", choices=("credit_risk", "flight_delays"), help="one example only")
    args = ap.parse_args(argv)
    os.environ.setdefault("AIOPS_DATA_KEY", bench_env()["AIOPS_DATA_KEY"])
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIOPS_MASK_SALT", "bench-only-mask-salt-0123456789abcdef")  # 16+ characters
    repeats = args.repeats or (2 if args.quick else 5)
    sizes = {"credit_risk": 150_000 if args.quick else 400_000, "flight_delays": 60_000 if args.quick else 200_000}
    multiples = [1, 5] if args.quick else [1, 5, 20]

    def log(msg: str) -> None:
        print(f"[batch] {msg}", file=sys.stderr, flush=True)

    results = {"machine": machine(), "quick": args.quick, "repeats": repeats, "examples": {}}
    for name in ("credit_risk", "flight_delays"):
        if args.only and name != args.only:
            continue
        art = artefacts(name)
        trust(art)
        results["examples"][name] = {
            "throughput": throughput(name, art, sizes[name], repeats, log),
            "latency": latency(name, art, 500 if args.quick else 3000, log),
            "memory": peak_memory(name, art, multiples, log),
        }
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    path = write_results("batch", results, quick=args.quick)
    print(report(results))
    print(f"\nwritten: {path}")
    return 0


def report(results: dict) -> str:
    out = [f"machine: {results['machine']['cpus']} CPUs, load average {results['machine']['load_average_1m_at_start']}"
           f" at start, {results['machine'].get('load_average_1m_at_end')} at end; medians of {results['repeats']} "
           "repeats"]
    floors = []
    for name, ex in results["examples"].items():
        th = ex["throughput"]
        cases = th["cases"]
        aiops_csv = cases["aiops score (CSV in)"]["rows_per_s"]
        aiops_pq = cases["aiops score (Parquet in)"]["rows_per_s"]
        sk = cases["scikit-learn predict_proba (featurized, in memory)"]["rows_per_s"]
        ort1 = cases["onnxruntime, featurized, same chunks, 1 thread"]["rows_per_s"]
        rows = []
        for k, c in cases.items():
            rows.append([k, c["rows_per_s"], c["rows_per_cpu_s"], f"{c['spread']:.0%}",
                         c["rows_per_s"] / sk, c["rows_per_s"] / ort1])
        out.append(f"\n{name}: {th['rows']:,} rows, chunks of {th['chunk_rows']:,}; scikit-learn vs ONNX max "
                   f"|diff| {th['sklearn_vs_onnx_max_abs_diff']:.1e}")
        out.append(fmt_table(["batch", "rows/s", "rows/CPU-s", "spread", "x sklearn", "x raw ORT"], rows))
        out.append(f"aiops score CLI end to end (fresh process, CSV in): {th['cli_end_to_end']['wall_s']:.2f} s; "
                   f"{th['cli_end_to_end']['summary']}")
        aiops = min(aiops_csv, aiops_pq)
        floors.append((f"{name}: aiops score faster than scikit-learn (worst input format)", aiops / sk, 1.0))
        floors.append((f"{name}: aiops score >= 0.5x raw onnxruntime (worst input format)", aiops / ort1, 0.5))
        for fmt, v in (("CSV", aiops_csv), ("Parquet", aiops_pq)):  # issue 14's goal, per input format
            floors.append((f"{name}: aiops score >= 0.8x raw onnxruntime ({fmt} in; issue 14)", v / ort1, 0.8))
        lat = ex["latency"]
        raw = lat["raw session.run (prepared one-row feed)"]["p50_us"]
        out.append(fmt_table(["single record, in process", "p50 us", "p99 us", "x raw p50"],
                             [[k, v["p50_us"], v["p99_us"], v["p50_us"] / raw] for k, v in lat.items()]))
        mem = ex["memory"]
        out.append(fmt_table(["peak memory of aiops score", "rows", "input MB", "peak RSS MB"],
                             [[f"{r['multiple']}x chunk ({mem['chunk_rows']:,} rows)", r["rows"],
                               r["input_bytes"] / 2**20, r["peak_rss_bytes"] / 2**20] for r in mem["runs"]]))
    out.append("\nfloors:")
    for what, value, floor in floors:
        out.append(f"  {'MET ' if value >= floor else 'MISSED'}  {what}: {value:.2f}x (floor {floor}x)")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
