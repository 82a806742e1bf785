"""What `aiops check` reads from a prompt template without running it: its variables and its
sandbox-unsafe constructs, each with the line it is on (from Jinja2's syntax tree).

The runtime renders templates in Jinja2's SandboxedEnvironment (runtime/genai/render.py), which
refuses these constructs when they run; check reports them before anything runs, at file:line.
"""
from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, TemplateSyntaxError, meta, nodes

# attributes and names a template has no business with: the way out of a sandbox starts there
UNSAFE_NAMES = ("self", "cycler", "joiner", "namespace", "lipsum", "range", "config", "request")
UNSAFE_ATTRS = ("mro", "format", "format_map", "func_globals", "gi_frame", "gi_code", "cr_frame", "f_globals")


@dataclass(frozen=True)
class Scan:
    variables: dict[str, int]  # undeclared (free) variable -> the first line that reads it
    unsafe: tuple[tuple[int, str], ...]  # (line, what)
    syntax_error: tuple[int, str] | None = None


def _env() -> Environment:
    return Environment(autoescape=False)  # parsing only: nothing is rendered here


def scan(text: str) -> Scan:
    try:
        tree = _env().parse(text)
    except TemplateSyntaxError as exc:
        return Scan({}, (), (exc.lineno or 1, exc.message or "syntax error"))
    free = meta.find_undeclared_variables(tree)
    first: dict[str, int] = {}
    for n in tree.find_all(nodes.Name):
        if n.ctx == "load" and n.name in free and n.name not in first:
            first[n.name] = n.lineno
    unsafe: list[tuple[int, str]] = []
    for n in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Include, nodes.Import,
                            nodes.FromImport, nodes.Extends)):
        what = _unsafe(n)
        if what is not None:
            unsafe.append((n.lineno, what))
    return Scan(first, tuple(sorted(set(unsafe))))


def _unsafe(n: nodes.Node) -> str | None:
    if isinstance(n, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        tag = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from ... import",
               nodes.Extends: "extends"}[type(n)]
        return f"{{% {tag} %}} (a template may not load other files)"
    if isinstance(n, nodes.Getattr):
        if n.attr.startswith("_"):
            return f"the attribute '{n.attr}' (underscore attributes lead out of the sandbox)"
        if n.attr in UNSAFE_ATTRS:
            return f"the attribute '{n.attr}'"
    if isinstance(n, nodes.Getitem) and isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str) \
            and n.arg.value.startswith("_"):
        return f"the item '{n.arg.value}' (underscore attributes lead out of the sandbox)"
    if isinstance(n, nodes.Name) and n.ctx == "load" and n.name in UNSAFE_NAMES:
        return f"the global '{n.name}'"
    return None
