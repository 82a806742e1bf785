"""render: plan -> {relative path: file content}. Pure; templates see only the plan."""
from __future__ import annotations

import ast
import pprint
from pathlib import Path
from typing import Any

import jinja2

from .plan import Plan

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

CODE_FILES = {
    "pipeline/__init__.py": "pipeline/__init__.py.j2",
    "pipeline/schema.py": "pipeline/schema.py.j2",
    "pipeline/features.py": "pipeline/features.py.j2",
    "pipeline/train.py": "pipeline/train.py.j2",
}


def _pyjson(obj: Any) -> str:
    return pprint.pformat(obj, width=100, sort_dicts=True)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = repr
    env.filters["pyjson"] = _pyjson
    return env


def render_code(plan: Plan) -> dict[str, str]:
    env = environment()
    out = {}
    for rel, tpl in CODE_FILES.items():
        text = env.get_template(tpl).render(plan=plan)
        ast.parse(text, filename=rel)  # a template bug, not a user error, if this fails
        out[rel] = text
    return out
