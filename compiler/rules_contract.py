"""Semantic rules for what a contract says beyond one column's values: a column read under
another name (`source_name`), cross-column row checks (`data.row_checks`) and columns known
only after the outcome (`known_after_outcome`, refused as model inputs: leakage)."""
from __future__ import annotations

from aiops.compiler.context import Ctx
from aiops.compiler.diagnostics import did_you_mean
from aiops.runtime import rowchecks


def check_source_names(ctx: Ctx) -> None:
    seen: dict[str, str] = {}
    for name, col in ctx.columns.items():
        if col is None or col.source_name is None:
            continue
        path = ("data", "columns", name, "source_name")
        src = col.source_name
        if not isinstance(src, str) or not src or len(src) > 256 or not src.isprintable():
            ctx.err("E227", "source_name is not a header name", path,
                    "'source_name' must be the column's name in the file's header (printable text, at most 256 "
                    "characters)", help="write the header as it is in the file, e.g. source_name: \"loan-status\"")
            continue
        if src in seen:
            ctx.err("E227", "two columns are read from the same header name", path,
                    f"'{seen[src]}' also has source_name '{src}'", help="give each column its own source_name")
        seen[src] = name
        if src != name and src in ctx.columns:
            ctx.err("E227", "source_name is the name of another column of the contract", path,
                    f"'{src}' is also a column of data.columns", help="rename one of them")


def check_row_checks(ctx: Ctx) -> None:
    data = ctx.spec.data
    if data is None or not data.row_checks:
        return
    dtypes = {n: c.dtype for n, c in ctx.columns.items() if c is not None and c.dtype is not None}
    names: dict[str, int] = {}
    for i, r in enumerate(data.row_checks):
        if r is None:
            continue
        base = ("data", "row_checks", i)
        if r.name is not None:
            if not rowchecks.NAME.match(str(r.name)):
                ctx.err("E228", "a row check's name is not an identifier", base + ("name",),
                        f"'name' must match [A-Za-z_][A-Za-z0-9_]{{0,63}} (it becomes a reason code). "
                        f"Got '{r.name}' instead.", help="e.g. name: released_after_booked")
            elif r.name in names:
                ctx.err("E228", "two row checks have the same name", base + ("name",),
                        f"'{r.name}' is also the name of data.row_checks[{names[r.name]}]",
                        help="give each row check its own name")
            else:
                names[r.name] = i
        if r.check is None:
            continue
        try:
            parsed = rowchecks.parse(r.check)
        except rowchecks.RowCheckError as exc:
            ctx.err("E229", "a row check is not a comparison aiops can read", base + ("check",), str(exc),
                    help=rowchecks.GRAMMAR_HELP)
            continue
        unknown = [c for c in (parsed.left, parsed.right) if c is not None and c not in ctx.columns]
        if unknown:
            ctx.err("E229", "a row check refers to an undeclared column", base + ("check",),
                    f"'{unknown[0]}' is not a column of data.columns",
                    help=did_you_mean(unknown[0], ctx.columns) or "declare the column, or fix the check")
            continue
        if parsed.left not in dtypes or (parsed.right is not None and parsed.right not in dtypes):
            continue
        try:
            rowchecks.resolve(parsed, dtypes)
        except rowchecks.RowCheckError as exc:
            ctx.err("E229", "a row check compares values that do not fit", base + ("check",), str(exc),
                    help=rowchecks.GRAMMAR_HELP)


def check_leakage(ctx: Ctx) -> None:
    """A feature reading a column known only after the outcome would learn the answer."""
    for i, f in enumerate(ctx.spec.features or []):
        if f is None or f.transform in (None, "drop"):
            continue
        for key in ("source", "other"):
            name = getattr(f, key)
            col = ctx.columns.get(name) if name else None
            if col is not None and col.known_after_outcome:
                decl = ctx.sm.locate(("data", "columns", name, "known_after_outcome"))
                ctx.err("E328", "a feature reads a column known only after the outcome", ("features", i, key),
                        f"'{name}' is marked known_after_outcome ({decl.render()}): the model would learn from the "
                        "answer (leakage), and it is not known when a prediction is made",
                        help=f"use transform: drop for '{name}', or remove known_after_outcome if it is known "
                             "before the outcome")
