"""Contained inputs and outputs: `data.source` resolves inside the spec folder or a declared
data root; the run registry and quarantine folder a spec file names stay in the working folder.

A spec is untrusted: a path to /etc/passwd, or a link in data/ that points out of the
folder, would have compile read (and `check` quote the header of) a file the spec author
cannot see. The path is resolved with every link followed, then must lie inside the spec
folder or inside one of `env.data_roots` (folders the env group declares, relative to the
working folder; a root may not contain the working folder itself).

`env.registry` and `env.quarantine_dir` are written (and a stale quarantine file deleted) by
compile: set in a spec file they must stay inside the working folder; a path elsewhere may
only come from a command-line override, given by whoever runs aiops.
"""
from __future__ import annotations

from pathlib import Path

from aiops.compiler.context import Ctx


def data_roots(ctx: Ctx) -> list[Path]:
    """The resolved data roots the env group declares, reporting the unusable ones."""
    roots = []
    cwd = Path.cwd().resolve()
    env = ctx.spec.env
    for i, text in enumerate((env.data_roots or []) if env is not None else []):
        if text is None:
            continue
        root = Path(text).resolve()
        if not root.is_dir():
            ctx.err("E213", "a data root is not a folder", ("env", "data_roots", i),
                    f"'{text}' resolves to '{root}', which is not a folder",
                    help="list folders that hold data files, relative to the repository root")
        elif cwd.is_relative_to(root):
            ctx.err("E213", "a data root may not contain the working folder", ("env", "data_roots", i),
                    f"'{text}' resolves to '{root}', which holds the repository itself (and its secrets, "
                    "keys and other specs)",
                    help="name the folder that holds the data files, e.g. /srv/data/credit")
        else:
            roots.append(root)
    return roots


def source_inside(ctx: Ctx) -> bool:
    """E212 unless data.source, links followed, lies inside the spec folder or a data root."""
    d = ctx.spec.data
    if d is None or not d.source:
        return False
    roots = data_roots(ctx)
    real = (ctx.spec_dir / d.source).resolve()
    allowed = [ctx.spec_dir.resolve(), *roots]
    if any(real.is_relative_to(r) for r in allowed):
        return True
    declared = ", ".join(f"'{r}'" for r in roots) or "none"
    ctx.err("E212", "the data source lies outside the spec folder", ("data", "source"),
            f"'{d.source}' resolves to '{real}' (links followed); data roots declared by env: {declared}",
            help="copy the file into the spec folder's data/, or declare its folder in env.data_roots")
    return False


def check_env_outputs(ctx: Ctx) -> None:
    """E214 a registry or quarantine path, set in a spec file, that leaves the working folder."""
    env = ctx.spec.env
    if env is None:
        return
    cwd = Path.cwd().resolve()
    for key in ("registry", "quarantine_dir"):
        text = getattr(env, key)
        loc = ctx.sm.locate(("env", key))
        if not text or loc.override is not None:
            continue
        real = Path(text).resolve()
        if not real.is_relative_to(cwd) or real == cwd:
            ctx.err("E214", f"env.{key} leaves the working folder", ("env", key),
                    f"'{text}' resolves to '{real}'; compile writes there (and deletes a stale quarantine file)",
                    help=f"keep it under the repository, e.g. .aiops/{'registry.db' if key == 'registry' else 'quarantine'}, "
                         f"or give it on the command line: env.{key}=...")
