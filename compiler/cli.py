"""The compiler's commands on the `aiops` command line, and `python -m aiops.compiler.cli`.

The command line is the runtime's (runtime/cli.py); the compiler adds its commands to it
through the `aiops.commands` entry point `aiops.compiler.cli:register` (pyproject.toml). This
module and the ones it registers import nothing heavy at module level, so that on a plain
install (no `compile` extra) a compiler command says which extra to install. `main` is the
runtime's with the compiler's commands, whatever the installed metadata says.
"""
from __future__ import annotations

import argparse
import sys

from aiops.compiler.diag_formats import add_format_option
from aiops.runtime.cli import main as runtime_main

PROVIDER = "aiops.compiler.cli:register"


def _check(args: argparse.Namespace) -> int:
    from aiops.compiler.check import run_check

    text, ok = run_check(args.spec_dir, args.overrides, args.format)
    print(text, file=sys.stdout if ok or args.format != "text" else sys.stderr)
    return 0 if ok else 2


def register(sub) -> None:
    """Add the compiler's commands (check, compile, package, retrain, approve, ...) to `sub`."""
    from aiops.compiler.rules_sample import SAMPLE_HELP

    c = sub.add_parser("check", help="compose and validate a spec; write nothing",
                       description=f"Compose and validate a spec, then look at the data: {SAMPLE_HELP}. "
                                   "Writes nothing.")
    c.add_argument("spec_dir", help="the spec folder, e.g. specs/credit_risk")
    c.add_argument("overrides", nargs="*", help="Hydra overrides: group=option or key.path=value")
    add_format_option(c)
    c.set_defaults(func=_check)

    from aiops.compiler.cli_commands import register as commands  # commands beyond check

    commands(sub)


def main(argv: list[str] | None = None) -> int:
    """`aiops` with the compiler's commands."""
    return runtime_main(argv, providers=[(PROVIDER, register)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
