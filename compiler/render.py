"""render: plan -> {relative path: file content}. Pure; templates see only the plan.

Code templates run with `escape.finalize`: every value they print goes through the escaping
filter of its target language (`escape.FILTERS`). The rendered Python is then parsed and
checked against the shape the templates produce (`check_python`), so text from a spec that
escaped its quotes would be caught before anything imports the file.
"""
from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import jinja2

from aiops.compiler import escape
from aiops.compiler.plan import Plan

TEMPLATES = Path(str(resources.files("aiops.templates")))  # package data: in a wheel too

CODE_FILES = {
    "pipeline/__init__.py": "pipeline/__init__.py.j2",
    "pipeline/schema.py": "pipeline/schema.py.j2",
    "pipeline/features.py": "pipeline/features.py.j2",
    "pipeline/train.py": "pipeline/train.py.j2",
}

# what generated Python may import, and the only statements the templates write
IMPORTS = ("sklearn", "pandera", "aiops.runtime", "aiops.compiler")


def _allowed(module: str) -> bool:
    """An import the generated code may make: scikit-learn, pandera, or aiops itself."""
    return any(module == m or module.startswith(m + ".") for m in IMPORTS)
TOP_STATEMENTS = (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef)
FORBIDDEN = (ast.Global, ast.Nonlocal, ast.Delete, ast.With, ast.AsyncWith, ast.Try, ast.While, ast.For,
             ast.AsyncFor, ast.AsyncFunctionDef, ast.ClassDef, ast.Await, ast.Yield, ast.YieldFrom,
             ast.NamedExpr, ast.Starred, ast.Subscript, ast.JoinedStr)


class UnsafeOutput(Exception):
    """Generated code that is not what the templates write: a spec value became code."""


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=escape.finalize,
    )
    env.filters.update(escape.FILTERS)
    from aiops.compiler.rules_policy import cron_fields

    env.filters["cron_fields"] = cron_fields
    return env


def check_python(text: str, rel: str) -> None:
    """Raise UnsafeOutput unless `text` has the templates' shape: a docstring, imports from
    sklearn/pandera/runtime or the package itself, UPPER_CASE assignments and functions that
    return; every name it reads is one it imports or defines, and no attribute is private."""
    try:
        tree = ast.parse(text, filename=rel)
    except SyntaxError as exc:
        raise UnsafeOutput(f"{rel} is not valid Python: {exc.msg} at line {exc.lineno}") from None
    defined: set[str] = set()
    for i, stmt in enumerate(tree.body):
        if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # the module docstring
        if not isinstance(stmt, TOP_STATEMENTS):
            raise UnsafeOutput(f"{rel}:{stmt.lineno}: a {type(stmt).__name__} statement")
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if not _allowed(a.name):
                    raise UnsafeOutput(f"{rel}:{stmt.lineno}: 'import {a.name}'")
                defined.add(a.asname or a.name.split(".")[0])
        elif isinstance(stmt, ast.ImportFrom):
            mod = stmt.module or ""
            if not (stmt.level == 1 and not mod) and (stmt.level or not _allowed(mod)):
                raise UnsafeOutput(f"{rel}:{stmt.lineno}: an import from '{'.' * stmt.level}{mod}'")
            defined |= {a.asname or a.name for a in stmt.names}
        elif isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if not (isinstance(t, ast.Name) and t.id.isupper()):
                    raise UnsafeOutput(f"{rel}:{stmt.lineno}: an assignment to {ast.unparse(t)}")
                defined.add(t.id)
        elif isinstance(stmt, ast.FunctionDef):
            if stmt.decorator_list or not all(isinstance(s, ast.Return) for s in stmt.body[-1:]) or \
                    len(stmt.body) != 1:
                raise UnsafeOutput(f"{rel}:{stmt.lineno}: function '{stmt.name}' is not one return statement")
            defined.add(stmt.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            defined.add(node.arg)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, FORBIDDEN):
            raise UnsafeOutput(f"{rel}:{line}: a {type(node).__name__}")
        if isinstance(node, ast.Name) and node.id not in defined:
            raise UnsafeOutput(f"{rel}:{line}: the name '{node.id}' is neither imported nor defined")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise UnsafeOutput(f"{rel}:{line}: the private attribute '{node.attr}'")


def render_code(plan: Plan) -> dict[str, str]:
    env = environment()
    out = {}
    for rel, tpl in CODE_FILES.items():
        try:
            text = env.get_template(tpl).render(plan=plan)
        except escape.EscapeError as exc:
            raise UnsafeOutput(f"{rel}: {exc}") from None
        check_python(text, rel)
        out[rel] = text
    return out
