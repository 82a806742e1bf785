"""What `aiops check` reads from a prompt template without running it: its syntax error, its
variables and its sandbox-unsafe constructs, each with the line it is on.

The analysis itself is the runtime's (runtime/genai/render.py: template_variables, variable_lines,
unsafe_constructs, from Jinja2's syntax tree), so check and serving judge a template alike; this
module only shapes it for the diagnostics of compiler/rules_prompt.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import jinja2


@dataclass(frozen=True)
class Scan:
    variables: dict[str, int]  # undeclared (free) variable -> the first line that reads it
    unsafe: tuple[tuple[int, str], ...]  # (line, what)
    syntax_error: tuple[int, str] | None = None


def scan(text: str) -> Scan:
    from aiops.runtime.genai.render import sandbox, template_variables, unsafe_constructs, variable_lines

    try:
        sandbox().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return Scan({}, (), (exc.lineno or 1, exc.message or "syntax error"))
    except RecursionError:
        return Scan({}, (), (1, "the template nests too deeply to parse"))
    lines = variable_lines(text)
    free = template_variables(text)
    return Scan({v: lines.get(v, 1) for v in free}, tuple(unsafe_constructs(text)))
