"""`aiops retrain` and `aiops rollback` (logic in compiler/retrain.py, imported when run)."""
from __future__ import annotations

import argparse
import sys


def _retrain(args: argparse.Namespace) -> int:
    from aiops.compiler.retrain import RetrainFailed, retrain

    try:
        out = retrain(args.artefact_dir, args.data, holdout_from=args.holdout_from, quiet=args.quiet)
    except RetrainFailed as exc:
        print(exc.text, file=sys.stderr)
        return exc.code
    ev, m = out.event, out.event["metrics"]
    print(f"champion   {ev['from_model_sha256'][:12]}  " + _metrics(m["champion"]), file=sys.stderr)
    print(f"challenger {ev['to_model_sha256'][:12]}  " + _metrics(m["challenger"])
          + f"  gate {'passed' if m['challenger_gate_passed'] else 'FAILED'}", file=sys.stderr)
    print(f"  on {ev['holdout']['rows']} holdout rows of {ev['data']['source']}"
          + (f" from {ev['holdout']['from']}" if ev["holdout"]["from"] else ""), file=sys.stderr)
    if out.registry:
        print(out.registry, file=sys.stderr)
    if out.promoted:
        print(f"promoted: {ev['reason']}\n  {args.artefact_dir} now holds the challenger; the champion is archived in "
              f"{out.archived} ('aiops rollback {args.artefact_dir}' restores it)", file=sys.stderr)
        return 0
    print(f"error[E904]: the challenger was not promoted: {ev['reason']}\n"
          f"  --> {out.where / 'evidence' / 'evaluation.json'}\n"
          f"   = the champion in {args.artefact_dir} is untouched\n"
          f"   = the challenger's artefacts and evidence are kept in {out.where} (until the next refused challenger)",
          file=sys.stderr)
    return 1


def _metrics(m: dict) -> str:
    return "  ".join(f"{k} {'n/a' if v is None else f'{v:.4f}'}" for k, v in m.items())


def _rollback(args: argparse.Namespace) -> int:
    from aiops.compiler.retrain import RetrainFailed, rollback

    try:
        ev = rollback(args.artefact_dir)
    except RetrainFailed as exc:
        print(exc.text, file=sys.stderr)
        return exc.code
    print(f"rolled back {args.artefact_dir}: model {(ev['from_model_sha256'] or '?')[:12]} -> "
          f"{ev['to_model_sha256'][:12]}\n  {ev['reason']}", file=sys.stderr)
    if ev.get("registry"):
        print(ev["registry"], file=sys.stderr)
    return 0


def register(sub) -> None:
    r = sub.add_parser("retrain", help="train a challenger on new data; promote it only if it beats the champion")
    r.add_argument("artefact_dir", help="the champion's artefact folder, e.g. generated/flight_delays")
    r.add_argument("--data", required=True, metavar="FILE", help="CSV or Parquet of the new window, with labels")
    r.add_argument("--holdout-from", metavar="DATE",
                   help="time-split specs: rows on or after DATE (YYYY-MM-DD) are the holdout both models are "
                        "scored on; earlier rows train the challenger")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.set_defaults(func=_retrain)

    b = sub.add_parser("rollback", help="restore the model that the last promotion replaced")
    b.add_argument("artefact_dir")
    b.set_defaults(func=_rollback)
