"""Scale-out benchmark: `aiops score` and `aiops monitor` in one process against
`--engine dask` on a local cluster, on rows resampled from the bundled examples' real data.

    python bench/dask_scale.py                       # 5M rows of flight_delays (minutes)
    python bench/dask_scale.py --rows 200000 --repeat 1   # a quick check that it runs
    python bench/dask_scale.py --workers 1 2 4       # throughput by number of workers

The input: `--rows` rows drawn with replacement (seeded) from the example's real rows (not
from fitted distributions), written once as one Parquet file (the single-process input)
and as files of `--file-rows` rows (the Dask input); both hold the same rows in the same
order. Timed: `runtime.score.score_file` on the one file, and `runtime.dask_engine.score_dask`
on the folder, with the cluster already started (its start-up is reported apart); the same
for monitoring with `--monitor`. Each repeated and interleaved; medians.

The figure of the issue: Dask's cost as a ratio of the single-process cost on this machine
(goal: at most 1.3x), and rows/s by number of workers (goal: near-linear up to the cores).
Results go to bench/results/dask_scale.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, artefacts, bench_env, fmt_table, machine, median, read_table, write_results  # noqa: E402


def resample(name: str, rows: int, seed: int):
    """`rows` real rows of the example, drawn with replacement."""
    import pyarrow as pa

    table = read_table(name)
    idx = np.random.default_rng(seed).integers(0, table.num_rows, rows)
    return table.take(pa.array(idx)).combine_chunks()


def write_inputs(table, folder: Path, file_rows: int) -> tuple[Path, Path]:
    import pyarrow.parquet as pq

    if folder.exists():
        shutil.rmtree(folder)
    (folder / "parts").mkdir(parents=True)
    one = folder / "all.parquet"
    pq.write_table(table, one, compression="zstd", row_group_size=100_000)
    for i, start in enumerate(range(0, table.num_rows, file_rows)):
        pq.write_table(table.slice(start, file_rows), folder / "parts" / f"part-{i:05d}.parquet",
                       compression="zstd", row_group_size=100_000)
    return one, folder / "parts"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--example", default="flight_delays", choices=("flight_delays", "credit_risk"))
    ap.add_argument("--artefacts", help="default generated/<example>")
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--file-rows", type=int, default=500_000, help="rows per file of the Dask input")
    ap.add_argument("--partition-rows", type=int, default=500_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--monitor", action="store_true", help="time `aiops monitor` too")
    ap.add_argument("--seed", type=int, default=2013)
    args = ap.parse_args()
    for k, v in bench_env().items():  # the data key (credit_risk encrypts at rest); workers inherit it
        os.environ.setdefault(k, v)

    from distributed import Client, LocalCluster

    from aiops.runtime.scale.engine import monitor_dask, score_dask
    from aiops.runtime.monitor.job import Source, run
    from aiops.runtime.score.scorer import score_file

    art = artefacts(args.example, args.artefacts)
    work = WORK / "dask_scale" / args.example
    t0 = time.perf_counter()
    table = resample(args.example, args.rows, args.seed)
    one, parts = write_inputs(table, work / "input", args.file_rows)
    print(f"{args.rows:,} rows resampled from {args.example}'s real rows, written in {time.perf_counter() - t0:.1f} s")
    out = work / "out"
    results: dict = {"machine": machine(), "example": args.example, "rows": args.rows, "runs": {}}
    clusters = {}
    for n in args.workers:
        t = time.perf_counter()
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=40)
        clusters[n] = (cluster, Client(cluster))
        results.setdefault("cluster_start_s", {})[n] = time.perf_counter() - t

    def single_score():
        score_file(art, one, out / "single.parquet", progress=False)

    def dask_score(n):
        return lambda: score_dask(art, str(parts), str(out / f"dask-{n}"), partition_rows=args.partition_rows,
                                  client=clusters[n][1])

    jobs = {"score single": single_score, **{f"score dask x{n}": dask_score(n) for n in args.workers}}
    if args.monitor:
        jobs["monitor single"] = lambda: run(art, Source(current=one), out / "mon-single", html=False)
        for n in args.workers:
            jobs[f"monitor dask x{n}"] = (lambda n=n: monitor_dask(art, Source(current=str(parts)), out / f"mon-{n}",
                                                                   html=False, partition_rows=args.partition_rows,
                                                                   client=clusters[n][1]))
    times: dict[str, list[float]] = {k: [] for k in jobs}
    try:
        for _ in range(args.repeat):
            for name, fn in jobs.items():  # interleaved: a noisy neighbour hits every job alike
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    rows = []
    for name, ts in times.items():
        kind = name.split()[0]
        base = median(times[f"{kind} single"])
        rows.append([name, median(ts), args.rows / median(ts), median(ts) / base])
        results["runs"][name] = {"seconds": ts, "median_s": median(ts), "rows_per_s": args.rows / median(ts),
                                 "cost_vs_single": median(ts) / base}
    print(fmt_table(["job", "median s", "rows/s", "cost vs single process"], rows))
    print("cluster start-up (not timed above): " + ", ".join(f"{n} workers {s:.1f} s"
                                                             for n, s in results["cluster_start_s"].items()))
    print(f"results: {write_results('dask_scale', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
