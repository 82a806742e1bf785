"""`aiops score` (batch scoring). `aiops verify` is in runtime/trust/cli.py.

Imports nothing heavy at module level: the logic is in runtime.score and runtime.artefacts.
"""
from __future__ import annotations

import argparse
import sys

from aiops.runtime.scale.cli import _positive_int


def _score(args: argparse.Namespace) -> int:
    from aiops.runtime.governance.production import gate
    from aiops.runtime.score.scorer import ScoreError, print_result, score_file

    if (refused := gate(args)) is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    if args.engine == "dask":
        from aiops.runtime.scale.cli import score_dask_command

        return score_dask_command(args)
    try:
        r = score_file(args.artefact_dir, args.input, args.output, chunk_rows=args.chunk_rows,
                       quarantine_path=args.quarantine, max_rejected_share=args.max_rejected_share,
                       threads=args.threads, progress=not args.quiet)
    except ScoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print_result(r, r.output, r.quarantine)
    return 0


def _share(text: str) -> float:
    try:
        v = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a share such as 0.05 or 5%. Got {text!r} instead.") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share in [0, 1]. Got {text!r} instead.")
    return v


def register(sub) -> None:
    s = sub.add_parser("score", help="batch-score a CSV or Parquet file in bounded memory, with a quarantine file",
                       description="Stream INPUT in chunks through the data contract and the model. Valid rows "
                       "are written to OUTPUT (.csv or .parquet), rejected rows with their reasons to the "
                       "quarantine file. Exit 0 when done (even with quarantined rows), 1 when the quarantined "
                       "share exceeds --max-rejected-share, 2 on a usage or input error.")
    s.add_argument("artefact_dir", help="compiled artefacts, e.g. generated/credit_risk")
    s.add_argument("input", help="a .csv or .parquet file (--engine dask: Parquet file or folder, or fsspec URL)")
    s.add_argument("--output", "-o", required=True, help="predictions: .csv or .parquet (--engine dask: a folder "
                   "of part-NNNNN.parquet)")
    s.add_argument("--quarantine", help="rejected rows and reasons (default: OUTPUT.quarantine.csv)")
    s.add_argument("--chunk-rows", type=_positive_int,
                   help="rows per chunk (default: serving.batch_chunk_rows of serving.json)")
    s.add_argument("--max-rejected-share", type=_share, default=None,
                   help="fail (exit 1, no output) when more than this share of rows is quarantined, e.g. 0.01")
    s.add_argument("--threads", type=_positive_int, default=1, help="onnxruntime threads (default 1)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    from aiops.runtime.scale.cli import add_engine_options
    from aiops.runtime.governance.production import add_arguments

    add_engine_options(s)

    add_arguments(s)
    s.set_defaults(func=_score)
