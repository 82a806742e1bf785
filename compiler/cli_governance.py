"""`aiops approve`, `aiops promote`, `aiops runs`, `aiops diff` and `aiops registry` (logic in
compiler/governance/, imported when a command runs)."""
from __future__ import annotations

import argparse
import sys


def _approve(args: argparse.Namespace) -> int:
    from aiops.compiler.governance.workflow import GovernanceFailed, approve

    try:
        out = approve(args.run, args.reason, registry=args.registry, insecure_dev=args.insecure_dev)
    except GovernanceFailed as exc:
        print(exc.text, file=sys.stderr)
        return exc.code
    rec = out["record"]
    print(f"approved run {rec['run_id']} ({rec['name']}) as {rec['approver']}"
          f"{'' if rec['signed'] else ' (UNSIGNED: --insecure-dev)'}: {out['file']}\n"
          f"  valid approvals: {len(out['approvers'])} of {out['required']} required"
          + (f" ({', '.join(out['approvers'])})" if out["approvers"] else ""), file=sys.stderr)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from aiops.compiler.governance.workflow import GovernanceFailed, promote

    try:
        out = promote(args.run, args.to, registry=args.registry, reason=args.reason or "",
                      insecure_dev=args.insecure_dev)
    except GovernanceFailed as exc:
        print(exc.text, file=sys.stderr)
        return exc.code
    print(f"run {out['run']}: {out['from']} -> {out['to']}"
          + (f" (approved by {', '.join(out['approvers'])})" if out["approvers"] else ""), file=sys.stderr)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from aiops.compiler.governance.history import RunsFailed, show

    try:
        print(show(args.name, registry=args.registry, compare=args.compare, html_out=args.html))
    except RunsFailed as exc:
        print(exc.text, file=sys.stderr)
        return 2
    return 0


def _diff(args: argparse.Namespace) -> int:
    from aiops.compiler.governance.diff import DiffFailed, diff_text

    try:
        print(diff_text(args.a, args.b, registry=args.registry))
    except DiffFailed as exc:
        print(exc.text, file=sys.stderr)
        return 2
    return 0


def _registry(args: argparse.Namespace) -> int:
    from aiops.runtime.governance.store import RegistryError, Store
    from aiops.runtime.governance.subject import registry_location

    try:
        store = Store(registry_location(args.registry))
        if args.action == "verify":
            problems = store.verify_chain()
            for p in problems:
                print(f"error: {p}", file=sys.stderr)
            if not problems:
                print(f"ok: {len(store.events())} events in {store.path}, hash chain whole", file=sys.stderr)
            return 1 if problems else 0
        n = store.rebuild()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"rebuilt {len(store.runs())} runs from {n} events in {store.path}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from aiops.compiler.governance.history import RunsFailed
    from aiops.compiler.governance.status import report

    try:
        text = report(args.artefact_dir, registry=args.registry)
    except RunsFailed as exc:
        print(exc.text, file=sys.stderr)
        return 2
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def _whoami(args: argparse.Namespace) -> int:
    from aiops.runtime.governance import identity as I

    try:
        who = I.current()
    except I.IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{who.name} ({'key ' + who.public_key if who.public_key else 'OS user, no key configured'})")
    return 0


def register(sub) -> None:
    reg = dict(metavar="LOCATION", help="the registry: a path or sqlite:///PATH (default: $AIOPS_REGISTRY, else the "
                                         "env group's env.registry, else .aiops/registry.db)")
    a = sub.add_parser("approve", help="approve a run for production, as the identity of your key")
    a.add_argument("run", help="a run id (or a unique prefix), or the artefact folder that holds it")
    a.add_argument("--reason", required=True, metavar="TEXT", help="what you reviewed and why you approve")
    a.add_argument("--registry", **reg)
    a.add_argument("--insecure-dev", action="store_true",
                   help="no key configured: record an UNSIGNED approval by the OS user (production refuses it)")
    a.set_defaults(func=_approve)

    p = sub.add_parser("promote", help="move a run to another stage (production needs its approvals)")
    p.add_argument("run", help="a run id (or a unique prefix), or the artefact folder that holds it")
    p.add_argument("--to", required=True, choices=("candidate", "staging", "production", "archived"))
    p.add_argument("--reason", metavar="TEXT", help="recorded with the move")
    p.add_argument("--registry", **reg)
    p.add_argument("--insecure-dev", action="store_true", help="count unsigned approvals (never in production)")
    p.set_defaults(func=_promote)

    r = sub.add_parser("runs", help="every build and retrain (failed ones too): metrics, stage, parent")
    r.add_argument("name", nargs="?", help="a model name (default: every model)")
    r.add_argument("--compare", action="store_true", help="a side-by-side table of the runs' metrics and gates")
    r.add_argument("--html", metavar="FILE", help="also write an HTML page with the metric history")
    r.add_argument("--registry", **reg)
    r.set_defaults(func=_runs)

    d = sub.add_parser("diff", help="what changed between two artefact folders or registry runs")
    d.add_argument("a", help="the older: an artefact folder or a run id")
    d.add_argument("b", help="the newer: an artefact folder or a run id")
    d.add_argument("--registry", **reg)
    d.set_defaults(func=_diff)

    g = sub.add_parser("registry", help="check the registry's event log, or rebuild its run table from the events")
    g.add_argument("action", choices=("verify", "rebuild"))
    g.add_argument("--registry", **reg)
    g.set_defaults(func=_registry)

    st = sub.add_parser("status", help="the live governance report of an artefact folder: stage, approvals, events, "
                                       "diff to production")
    st.add_argument("artefact_dir")
    st.add_argument("--out", metavar="FILE", help="write the Markdown report to FILE")
    st.add_argument("--registry", **reg)
    st.set_defaults(func=_status)

    w = sub.add_parser("whoami", help="the identity your key stands for (or the OS user without keys)")
    w.set_defaults(func=_whoami)
