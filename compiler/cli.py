"""The `aiops` command line. Heavy libraries are imported lazily, per command."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aiops.compiler import __version__
from aiops.compiler.diag_formats import add_format_option
from aiops.compiler.errors import UserError


def _check(args: argparse.Namespace) -> int:
    from aiops.compiler.check import run_check

    text, ok = run_check(args.spec_dir, args.overrides, args.format)
    print(text, file=sys.stdout if ok or args.format != "text" else sys.stderr)
    return 0 if ok else 2


# Top-level modules that come with an extra, not with the plain (runtime) install.
EXTRA_MODULES = {"hydra": "compile", "omegaconf": "compile", "yaml": "compile", "jinja2": "compile",
                 "pandera": "compile", "pandas": "compile", "skl2onnx": "compile", "sklearn": "compile",
                 "matplotlib": "compile", "croniter": "compile", "dask": "dask", "distributed": "dask",
                 "fsspec": "dask"}
REPORT_COMMANDS = ("monitor",)


def missing_extra(module: str, command: str) -> str | None:
    """The extra that provides `module` for `command`, or None if the module is not an extra's."""
    top = module.split(".")[0]
    if top not in EXTRA_MODULES:
        return None
    if command in REPORT_COMMANDS and top in ("matplotlib", "sklearn"):
        return "report"
    return EXTRA_MODULES[top]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiops", description="Compile a declarative ML spec into a governed system.")
    p.add_argument("--version", action="version", version=f"aiops {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from aiops.compiler.rules_sample import SAMPLE_HELP

    c = sub.add_parser("check", help="compose and validate a spec; write nothing",
                       description=f"Compose and validate a spec, then look at the data: {SAMPLE_HELP}. "
                                   "Writes nothing.")
    c.add_argument("spec_dir", help="the spec folder, e.g. specs/credit_risk")
    c.add_argument("overrides", nargs="*", help="Hydra overrides: group=option or key.path=value")
    add_format_option(c)
    c.set_defaults(func=_check)

    from aiops.compiler.cli_commands import register  # commands beyond check

    register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may come after options: `aiops compile specs/x --check model=rf`
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from aiops.runtime.trust.cli import apply_arguments

    apply_arguments(args)  # --trusted-keys, --insecure-dev
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        extra = missing_extra(exc.name or "", args.command) if isinstance(exc, ModuleNotFoundError) else None
        if extra is not None:
            print(f"error: 'aiops {args.command}' needs the '{extra}' extra, which is not installed "
                  f"(no module named {exc.name!r}): pip install 'aiops[{extra}]'", file=sys.stderr)
            return 2
        if os.environ.get("AIOPS_DEBUG"):
            raise
        import traceback

        crash = Path(os.environ.get("AIOPS_CRASH_LOG", ".aiops/crash.log"))
        try:
            crash.parent.mkdir(parents=True, exist_ok=True)
            from aiops.runtime.masking import scrub  # a library's message may quote a value of the data

            crash.write_text(scrub(traceback.format_exc()))
            where = f"; details in {crash}"
        except OSError:
            where = ""
        print(f"internal error: aiops failed unexpectedly{where}. This is a bug in aiops, not in your input; "
              "set AIOPS_DEBUG=1 to see the traceback.", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
