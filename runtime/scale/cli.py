"""The `--engine dask` options of `aiops score` and `aiops monitor`, and the score command
on Dask (runtime/scale/engine.py; docs/scale.md). Nothing heavy imported at module level.
"""
from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    """A positive whole number on the command line (argparse type)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number. Got {text!r} instead.")
    return v


def score_dask_command(args: argparse.Namespace) -> int:
    """`aiops score --engine dask`."""
    from aiops.runtime.scale.engine import score_dask
    from aiops.runtime.score.scorer import ScoreError, print_result

    try:
        r = score_dask(args.artefact_dir, args.input, args.output, quarantine_url=args.quarantine,
                       max_rejected_share=args.max_rejected_share, scheduler=args.scheduler,
                       partition_rows=args.partition_rows)
    except ScoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print_result(r, f"{r.output}/part-*.parquet", f"{r.quarantine}/part-*.parquet")
    return 0


def add_engine_options(parser) -> None:
    """--engine, --scheduler and --partition-rows (shared by score and monitor)."""
    parser.add_argument("--engine", choices=("local", "dask"), default="local",
                        help="local: one process (default); dask: partitions of a Parquet input (a file or folder, "
                             "local or any fsspec URL) as Dask tasks (pip install 'aiops[dask]'; docs/scale.md)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="--engine dask: the Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: "
                             "$DASK_SCHEDULER_ADDRESS, else a local cluster on 127.0.0.1)")
    parser.add_argument("--partition-rows", type=_positive_int, default=500_000, metavar="N",
                        help="--engine dask: rows per partition (default 500000)")
