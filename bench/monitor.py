"""Benchmark: `aiops monitor` against Evidently's DataDriftPreset on the same data.

    python bench/monitor.py                # 100k vs 100k (3 runs each), then 1M and 10M rows
    python bench/monitor.py --skip-scaling # the comparison only

Data: real flights (specs/flight_delays/data), resampled. Each row of the 32-column table
joins three independently drawn flights (prefixes a_, b_, c_): 12 + 12 + 8 real columns,
25 numeric and 7 categorical. Reference: 100,000 rows drawn from January-March 2013;
current: rows drawn from June-August 2013 (a real seasonal shift).

aiops: a spec over those columns is compiled once (reference = its training data, the
profile is written at compile time, as in production); the timed part is
`runtime.monitor.run` on the current parquet file: read in 100k-row chunks, validate
against the contract, score with the ONNX model, data quality, PSI + KS + Wasserstein
per numeric column, chi-square + Jensen-Shannon per categorical column, Holm
correction, prediction drift, report.json and alerts.json. Evidently: the time of
`Report([DataDriftPreset()]).run(...)` and `.dict()` on the two DataFrames already in
memory, in its own venv (.aiops/bench/evidently-venv). Both run in fresh subprocesses,
libraries imported before the clock starts; median of 3, interleaved. Also a plain
numpy/scipy pass (PSI + KS + chi-square on the raw columns), and the wall time of the
whole `aiops monitor` command (interpreter start, imports, report.html included).

Scaling: the same job on 1M and 10M current rows (100k-row windows), wall time and peak
resident memory of the process. Results: bench/results/monitor.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".aiops" / "bench" / "monitor"
VENV = ROOT / ".aiops" / "bench" / "evidently-venv"
EVIDENTLY = ["evidently==0.7.23", "pandas>=2.2,<3", "pyarrow"]  # evidently 0.7 does not import with pandas 3
FLIGHTS = ROOT / "specs" / "flight_delays" / "data" / "flights_2013.parquet"
NUMERIC = ["sched_dep_time", "sched_arr_time", "distance", "temp", "humid", "wind_speed", "precip", "visib",
           "arr_delay"]
CATEGORICAL = ["carrier", "origin", "dest"]
THIRD = ["temp", "humid", "wind_speed", "visib", "distance", "arr_delay", "sched_dep_time", "carrier"]
LAYOUT = [("a", NUMERIC + CATEGORICAL), ("b", NUMERIC + CATEGORICAL), ("c", THIRD)]
COLUMNS = [f"{p}_{c}" for p, cols in LAYOUT for c in cols]
ROWS = 100_000
FLOOR = 8.0


# ------------------------------------------------------------------ data
def _months(t, months: list[int]):
    import pyarrow as pa
    import pyarrow.compute as pc

    m = pc.cast(pc.utf8_slice_codeunits(t["flight_date"], 5, 7), "int32")
    return t.filter(pc.is_in(m, value_set=pa.array(months, "int32")))


def draw(pool, n: int, seed: int):
    """n rows of the 32-column table from a pool of real flights (with the a_ flight's label)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols = {}
    label = None
    for p, names in LAYOUT:
        idx = pa.array(rng.integers(0, pool.num_rows, n))
        part = pool.take(idx)
        for c in names:
            cols[f"{p}_{c}"] = part[c]
        if label is None:
            label = part["arr_delayed"]
    cols["arr_delayed"] = label
    return pa.table(cols)


def make_data(sizes: list[int]) -> dict[str, Path]:
    import pyarrow.parquet as pq

    d = WORK / "data"
    d.mkdir(parents=True, exist_ok=True)
    flights = pq.read_table(FLIGHTS)
    out = {"reference": d / "reference.parquet"}
    if not out["reference"].exists():
        pq.write_table(draw(_months(flights, [1, 2, 3]), ROWS, 1), out["reference"])
    summer = _months(flights, [6, 7, 8])
    for n in sizes:
        p = d / f"current_{n}.parquet"
        out[str(n)] = p
        if p.exists():
            continue
        tmp = p.with_suffix(".tmp")
        writer = None
        for i, start in enumerate(range(0, n, 1_000_000)):
            t = draw(summer, min(1_000_000, n - start), 100 + i)
            writer = writer or pq.ParquetWriter(tmp, t.schema)
            writer.write_table(t, row_group_size=100_000)
        writer.close()
        tmp.rename(p)
    return out


# ------------------------------------------------------------------ the spec
def write_spec(reference: Path) -> Path:
    import yaml

    src = ROOT / "specs" / "flight_delays"
    spec_dir = WORK / "spec"
    if spec_dir.exists():
        shutil.rmtree(spec_dir)
    for sub in ("model", "security", "governance", "env"):
        shutil.copytree(src / sub, spec_dir / sub)
    base = yaml.safe_load((src / "spec.yaml").read_text())
    columns = {}
    features = []
    for p, names in LAYOUT:
        for c in names:
            col = dict(base["data"]["columns"][c])
            col.pop("description", None)
            columns[f"{p}_{c}"] = col
            features.append({"name": f"{p}_{c}", "transform": "onehot", "source": f"{p}_{c}"} if c in CATEGORICAL
                             else {"name": f"{p}_{c}", "transform": "impute", "source": f"{p}_{c}", "impute": "median"})
    columns["arr_delayed"] = base["data"]["columns"]["arr_delayed"]
    spec = {
        "defaults": base["defaults"],
        "name": "monitor_bench32", "version": "1.0.0",
        "description": "Benchmark model for aiops monitor: 32 real flight columns, resampled.",
        "problem": dict(base["problem"]), "kpis": base["kpis"],
        "data": {"source": os.path.relpath(reference, spec_dir), "format": "parquet",
                 "provenance": dict(base["data"]["provenance"], derived_by="bench/monitor.py"),
                 "max_rejected_share": 0.01, "split": {"method": "stratified", "test_size": 0.2, "seed": 0},
                 "columns": columns},
        "features": features,
        "thresholds": {"evaluation": {"roc_auc": {"min": 0.5}}, "parity": base["thresholds"]["parity"]},
        "monitoring": {
            "schedule": "0 5 * * *", "window": {"by": "rows", "size": ROWS},
            "data_quality": base["monitoring"]["data_quality"],
            "drift": [{"test": "psi", "threshold": 0.25, "applies_to": "numeric"},
                      {"test": "ks", "threshold": 0.01, "applies_to": "numeric"},
                      {"test": "wasserstein", "threshold": 0.1, "applies_to": "numeric"},
                      {"test": "chi_square", "threshold": 0.01, "applies_to": "categorical"},
                      {"test": "jensen_shannon", "threshold": 0.1, "applies_to": "categorical"}],
            "drift_correction": "holm", "prediction_drift": {"test": "psi", "threshold": 0.2, "applies_to": "numeric"},
            "performance": {"roc_auc": {"min": 0.5}}, "fairness": False,
            "actions": base["monitoring"]["actions"]},
        "serving": base["serving"],
    }
    (spec_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, width=120))
    return spec_dir


def compile_bench(reference: Path) -> Path:
    spec_dir = write_spec(reference)
    out = WORK / "generated" / "monitor_bench32"
    stamp = WORK / "generated" / "spec.sha"
    import hashlib

    h = hashlib.sha256((spec_dir / "spec.yaml").read_bytes() + (ROOT / "runtime" / "profile.py").read_bytes()
                       + (ROOT / "compiler" / "monitoring_plan.py").read_bytes()).hexdigest()
    if out.exists() and stamp.exists() and stamp.read_text() == h:
        return out
    print(f"compiling the benchmark spec ({spec_dir})...", file=sys.stderr, flush=True)
    sys.path.insert(0, str(ROOT))
    from aiops.compiler.build import compile_spec

    rc = compile_spec(str(spec_dir), [], out=str(out), quiet=True)
    if rc != 0:
        raise SystemExit(f"the benchmark spec did not compile (exit {rc})")
    stamp.write_text(h)
    return out


# ------------------------------------------------------------------ runners
# peak resident memory of this process image: VmHWM (getrusage's ru_maxrss would carry the
# high-water mark of the forking parent across exec on Linux)
PEAK = r"""
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

AIOPS_RUN = PEAK + r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import onnxruntime, pyarrow.parquet, scipy.stats  # libraries load before the clock starts, as Evidently's do
from aiops.runtime.monitor.job import Source, run
t1 = time.perf_counter()
o = run(sys.argv[1], Source(current=Path(sys.argv[2])), sys.argv[3], html=sys.argv[4] == "html")
t2 = time.perf_counter()
s = o.report["summary"]
print(json.dumps({"seconds": t2 - t1, "import_seconds": t1 - t0, "peak_rss_mb": peak_mb(),
                  "windows": s["windows"], "drifted_columns": len(s["drifted_columns"]), "alerts": s["alerts"]}))
"""

EVIDENTLY_RUN = PEAK + r"""
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
cols = json.loads(sys.argv[3])
ref = pd.read_parquet(sys.argv[1], columns=cols)
cur = pd.read_parquet(sys.argv[2], columns=cols)
t = time.perf_counter()
snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
d = snap.dict()
s = time.perf_counter() - t
count = next((m["value"]["count"] for m in d["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")), None)
print(json.dumps({"seconds": s, "peak_rss_mb": peak_mb(), "drifted_columns": count}))
"""


def _json_run(cmd: list[str], env: dict | None = None) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode not in (0, 1):  # aiops exits 1 in-process only through the CLI; run() returns
        raise SystemExit(f"{cmd[0]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def aiops_once(art: Path, current: Path, html: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return _json_run([sys.executable, "-c", AIOPS_RUN, str(art), str(current), str(WORK / "report"),
                      "html" if html else "json"], env)


def ensure_evidently() -> Path:
    py = VENV / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import evidently, pandas; assert pandas.__version__ < '3'"],
                                        capture_output=True).returncode == 0
    if not ok:
        print(f"installing {EVIDENTLY[0]} into {VENV}...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *EVIDENTLY], check=True)
    return py


def evidently_once(py: Path, reference: Path, current: Path) -> dict:
    return _json_run([str(py), "-c", EVIDENTLY_RUN, str(reference), str(current), json.dumps(COLUMNS)])


def numpy_scipy_pass(reference: Path, current: Path) -> float:
    """PSI + KS on every numeric column and chi-square on every categorical one, raw arrays."""
    import pyarrow.parquet as pq
    from scipy import stats

    ref, cur = pq.read_table(reference).to_pydict(), pq.read_table(current).to_pydict()
    ref = {c: np.asarray(v, dtype=object if isinstance(v[0], str) else np.float64) for c, v in ref.items()}
    cur = {c: np.asarray(v, dtype=object if isinstance(v[0], str) else np.float64) for c, v in cur.items()}
    t = time.perf_counter()
    for c in COLUMNS:
        r, k = ref[c], cur[c]
        if r.dtype == object:
            cats, inv = np.unique(np.concatenate([r, k]).astype(str), return_inverse=True)
            table = np.vstack([np.bincount(inv[:len(r)], minlength=len(cats)),
                               np.bincount(inv[len(r):], minlength=len(cats))])
            stats.chi2_contingency(table[:, table.sum(axis=0) > 0])
        else:
            r, k = r[~np.isnan(r)], k[~np.isnan(k)]
            stats.ks_2samp(r, k)
            edges = np.unique(np.quantile(r, np.linspace(0.1, 0.9, 9)))
            pr = np.maximum(np.bincount(np.searchsorted(edges, r), minlength=len(edges) + 1) / len(r), 1e-4)
            pk = np.maximum(np.bincount(np.searchsorted(edges, k), minlength=len(edges) + 1) / len(k), 1e-4)
            float(np.sum((pk - pr) * np.log(pk / pr)))
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--sizes", default="1000000,10000000", help="current rows for the scaling runs")
    args = ap.parse_args(argv)
    sizes = [] if args.skip_scaling else [int(s) for s in args.sizes.split(",") if s]
    data = make_data([ROWS] + sizes)
    art = compile_bench(data["reference"])
    py = ensure_evidently()
    cur = data[str(ROWS)]
    ev, ai, base = [], [], []
    for i in range(args.runs):  # interleaved, so that load on the machine hits both alike
        ev.append(evidently_once(py, data["reference"], cur))
        ai.append(aiops_once(art, cur))
        base.append(numpy_scipy_pass(data["reference"], cur))
        print(f"run {i + 1}: evidently {ev[-1]['seconds']:.2f}s, aiops {ai[-1]['seconds']:.2f}s, "
              f"numpy/scipy {base[-1]:.2f}s", file=sys.stderr, flush=True)
    html = aiops_once(art, cur, html=True)
    t = time.perf_counter()
    cli = subprocess.run([str(Path(sys.executable).with_name("aiops")), "monitor", str(art), "--current", str(cur),
                          "--report", str(WORK / "report"), "--quiet"], capture_output=True, cwd=ROOT)
    cli_s = time.perf_counter() - t
    ev_m = statistics.median(r["seconds"] for r in ev)
    ai_m = statistics.median(r["seconds"] for r in ai)
    scaling = [{"rows": ROWS, "seconds": ai_m, "peak_rss_mb": max(r["peak_rss_mb"] for r in ai),
                "rows_per_second": ROWS / ai_m, "windows": ai[0]["windows"]}]
    for n in sizes:
        r = aiops_once(art, data[str(n)])
        scaling.append({"rows": n, "seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                        "rows_per_second": n / r["seconds"], "windows": r["windows"]})
        print(f"aiops monitor on {n:,} rows: {r['seconds']:.1f}s, peak RSS {r['peak_rss_mb']:.0f} MB",
              file=sys.stderr, flush=True)
    result = {
        "data": {"reference_rows": ROWS, "current_rows": ROWS, "columns": len(COLUMNS),
                 "numeric": sum(1 for _, cols in LAYOUT for c in cols if c in NUMERIC),
                 "categorical": sum(1 for _, cols in LAYOUT for c in cols if c in CATEGORICAL),
                 "source": "specs/flight_delays/data/flights_2013.parquet, resampled "
                           "(reference Jan-Mar, current Jun-Aug)"},
        "evidently": {"package": EVIDENTLY[0], "what": "Report([DataDriftPreset()]).run + .dict(), data in memory",
                      "seconds": [r["seconds"] for r in ev], "median_seconds": ev_m,
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in ev), "drifted_columns": ev[0]["drifted_columns"]},
        "aiops": {"what": "aiops.runtime.monitor.job.run: read parquet in 100k chunks, contract, ONNX scoring, data quality, "
                          "PSI+KS+Wasserstein / chi-square+JS with Holm, prediction drift, report.json",
                  "seconds": [r["seconds"] for r in ai], "median_seconds": ai_m,
                  "with_html_seconds": html["seconds"], "cli_wall_seconds": cli_s, "cli_exit_code": cli.returncode,
                  "drifted_columns": ai[0]["drifted_columns"], "alerts": ai[0]["alerts"]},
        "numpy_scipy_pass": {"seconds": base, "median_seconds": statistics.median(base)},
        "ratio_evidently_over_aiops": ev_m / ai_m, "floor": FLOOR, "floor_met": ev_m / ai_m >= FLOOR,
        "scaling": scaling,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    out = ROOT / "bench" / "results" / "monitor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"Evidently DataDriftPreset: median {ev_m:.2f}s; aiops monitor: median {ai_m:.2f}s "
          f"(with report.html {html['seconds']:.2f}s, CLI wall {cli_s:.2f}s); numpy/scipy pass "
          f"{statistics.median(base):.2f}s")
    met = "met" if ev_m / ai_m >= FLOOR else "NOT met"
    print(f"ratio Evidently / aiops = {ev_m / ai_m:.1f}x (floor {FLOOR:.0f}x: {met})")
    for s in scaling:
        print(f"  {s['rows']:>12,} rows: {s['seconds']:7.2f}s  {s['rows_per_second']:>12,.0f} rows/s  "
              f"peak RSS {s['peak_rss_mb']:.0f} MB")
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if ev_m / ai_m >= FLOOR else 1


if __name__ == "__main__":
    sys.exit(main())
