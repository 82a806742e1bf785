"""The code's layout: no import cycles among the project's modules (function-level imports
included), and the runtime never imports the compiler."""
from __future__ import annotations

import ast
from pathlib import Path

from tests._build import ROOT

PACKAGES = ("compiler", "runtime")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the project modules it imports, anywhere in its body."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            names = [n.removeprefix("aiops.") for n in names]  # installed as aiops.compiler, aiops.runtime
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycles_even_through_function_level_imports():
    graph = _imports()
    # a package's __init__ importing its own modules is how a package exports; not a cycle
    graph = {m: {d for d in ds if not (m.startswith(d + ".") and d.count(".") < m.count("."))} for m, ds in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_runtime_never_imports_the_compiler():
    bad = sorted(f"{m} imports {d}" for m, ds in _imports().items() if m.startswith("runtime")
                 for d in ds if d.startswith("compiler"))
    assert bad == []
