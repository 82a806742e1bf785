"""Commands beyond `check`: compile, and the runtime commands."""
from __future__ import annotations

import argparse
import sys


def _compile(args: argparse.Namespace) -> int:
    from aiops.compiler.build import BuildFailed, compile_spec

    try:
        return compile_spec(args.spec_dir, args.overrides, out=args.out, check_only=args.check, quiet=args.quiet,
                            override_reason=args.override_reason, reevaluate=args.reevaluate)
    except BuildFailed as exc:
        if args.format != "text" and exc.diags:
            from aiops.compiler.diag_formats import render

            print(render(exc.diags, args.format))
        else:
            print(exc.text, file=sys.stderr)
        return exc.code


def _package(args: argparse.Namespace) -> int:
    from aiops.compiler.errors import UserError
    from aiops.compiler.package import DEFAULT_BASE, PackageError, plan, write

    try:
        p = plan(args.artefact_dir, args.out, args.base_image or DEFAULT_BASE, args.replicas, args.workers)
    except PackageError as exc:
        raise UserError(str(exc)) from None
    stale = write(p, check_only=args.check)
    if args.check:
        for s in stale:
            print(f"stale: {s}", file=sys.stderr)
        print(f"{'ok: ' + p.out_dir + ' is up to date' if not stale else 'run: aiops package ' + p.artefact_dir}",
              file=sys.stderr)
        return 1 if stale else 0
    print(f"wrote {p.out_dir}/Dockerfile and {p.out_dir}/kubernetes.yaml (image {p.image})", file=sys.stderr)
    return 0


# Modules that add their own sub-commands: each has register(subparsers) and imports
# nothing heavy at module level.
EXTRA = ("aiops.runtime.serve.cli", "aiops.runtime.audit.cli", "aiops.runtime.score.cli", "aiops.runtime.monitor.cli", "aiops.compiler.cli_retrain",
         "aiops.compiler.cli_governance", "aiops.runtime.trust.cli", "aiops.compiler.cli_pipeline")


def register(sub) -> None:
    c = sub.add_parser("compile", help="check, train, export, verify and write generated/<name>/")
    c.add_argument("spec_dir")
    c.add_argument("overrides", nargs="*", help="Hydra overrides: group=option or key.path=value")
    c.add_argument("--out", help="output folder (default: generated/<name>)")
    c.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and list stale files if the committed output is out of date")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    from aiops.compiler.diag_formats import add_format_option

    add_format_option(c)
    c.add_argument("--override-reason", metavar="TEXT",
                   help="why an override loosens a threshold (required on a high risk tier; in the compliance document)")
    c.add_argument("--reevaluate", action="store_true",
                   help="prompt specs: run the golden set against the provider even when the recorded evidence is current")
    c.set_defaults(func=_compile)

    k = sub.add_parser("package", help="write a Dockerfile and a Kubernetes manifest for the slim runtime")
    k.add_argument("artefact_dir", help="e.g. generated/credit_risk (relative to the build context)")
    k.add_argument("--out", help="output folder (default: deploy/<name>)")
    k.add_argument("--base-image", help="base image pinned by digest, IMAGE@sha256:<64 hex>")
    k.add_argument("--replicas", type=int, default=2)
    k.add_argument("--workers", type=int, default=2, help="serving worker processes per pod (and its CPU limit)")
    k.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files are stale")
    k.set_defaults(func=_package)

    import importlib

    for name in EXTRA:
        importlib.import_module(name).register(sub)
    importlib.import_module("aiops.runtime.trust.cli").register_options(sub)  # --trusted-keys, --insecure-dev
