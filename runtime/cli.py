"""The `aiops` command line (entry point `aiops.runtime.cli:main`).

A plain install is the runtime, so the command line is the runtime's: it registers the runtime
commands (verify, keys, serve, score, monitor, audit, decrypt, ...) from COMMANDS, then the
commands of every installed provider of the `aiops.commands` entry-point group (the compiler
registers check, compile, retrain, approve, ... there; see pyproject.toml). The runtime names no
compiler module: the compiler adds itself. A provider is a callable `register(subparsers)` whose
module imports nothing heavy, so that its commands show on every install; a command whose
libraries come with a missing extra says which extra to install (exit 2), never an ImportError.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Iterable

from aiops.runtime import __version__
from aiops.runtime.errors import UserError

# Runtime modules that add their own sub-commands: each has register(subparsers).
COMMANDS = ("aiops.runtime.trust.cli", "aiops.runtime.serve.cli", "aiops.runtime.audit.cli",
            "aiops.runtime.score.cli", "aiops.runtime.monitor.cli")
GROUP = "aiops.commands"  # the entry-point group through which other packages add commands

# Top-level modules that come with an extra, not with the plain (runtime) install.
EXTRA_MODULES = {"hydra": "compile", "omegaconf": "compile", "yaml": "compile", "jinja2": "compile",
                 "pandera": "compile", "pandas": "compile", "skl2onnx": "compile", "sklearn": "compile",
                 "matplotlib": "compile", "croniter": "compile", "dask": "dask", "distributed": "dask",
                 "fsspec": "dask"}
REPORT_COMMANDS = ("monitor",)

Provider = Callable[[argparse._SubParsersAction], None]


def missing_extra(module: str, command: str) -> str | None:
    """The extra that provides `module` for `command`, or None if the module is not an extra's."""
    top = module.split(".")[0]
    if top not in EXTRA_MODULES:
        return None
    if command in REPORT_COMMANDS and top in ("matplotlib", "sklearn"):
        return "report"
    return EXTRA_MODULES[top]


def installed_providers() -> list[tuple[str, Provider]]:
    """(name, register) of every installed `aiops.commands` entry point, by name. One that cannot
    be loaded is left out with a warning: the runtime's own commands still work."""
    out = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            out.append((ep.value, ep.load()))
        except Exception as exc:  # a broken plug-in must not take verify/serve down with it
            print(f"warning: the commands of {ep.value} ({GROUP} entry point {ep.name!r}) are left out: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def build_parser(providers: Iterable[tuple[str, Provider]] = ()) -> argparse.ArgumentParser:
    """The parser of the runtime commands, plus those of `providers` and of the installed ones
    (each provider once, by its name)."""
    p = argparse.ArgumentParser(prog="aiops", description="Compile a declarative ML spec into a governed system, "
                                                          "and serve, score, monitor and audit what it built.")
    p.add_argument("--version", action="version", version=f"aiops {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    seen: set[str] = set()
    for name, register in [*providers, *installed_providers()]:
        if name not in seen:
            seen.add(name)
            register(sub)
    importlib.import_module("aiops.runtime.trust.cli").register_options(sub)  # --trusted-keys, --insecure-dev
    return p


def main(argv: list[str] | None = None, providers: Iterable[tuple[str, Provider]] = ()) -> int:
    """Run one `aiops` command; its exit code."""
    parser = build_parser(providers)
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
        return _crash()


def _crash() -> int:
    """Write the traceback (scrubbed) to the crash log and say so: exit 3."""
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
