"""Commands beyond `check`: compile, and the runtime commands."""
from __future__ import annotations

import argparse
import sys


def _compile(args: argparse.Namespace) -> int:
    from .build import BuildFailed, compile_spec

    try:
        return compile_spec(args.spec_dir, args.overrides, out=args.out, check_only=args.check, quiet=args.quiet)
    except BuildFailed as exc:
        print(exc.text, file=sys.stderr)
        return exc.code


# Modules that add their own sub-commands: each has register(subparsers) and imports
# nothing heavy at module level.
EXTRA = ("runtime.cli_serve", "runtime.cli_score", "runtime.cli_monitor", "compiler.cli_retrain",
         "compiler.cli_pipeline")


def register(sub) -> None:
    c = sub.add_parser("compile", help="check, train, export, verify and write generated/<name>/")
    c.add_argument("spec_dir")
    c.add_argument("overrides", nargs="*", help="Hydra overrides: group=option or key.path=value")
    c.add_argument("--out", help="output folder (default: generated/<name>)")
    c.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and list stale files if the committed output is out of date")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.set_defaults(func=_compile)

    import importlib

    for name in EXTRA:
        importlib.import_module(name).register(sub)
