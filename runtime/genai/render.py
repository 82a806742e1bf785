"""Rendering prompt templates: a template is untrusted input, so it renders in Jinja2's
immutable sandbox with no globals, no loader (no include/import/extends), strict undefined
variables, autoescape off (the output is a prompt, not HTML) and bounded string growth.

`render` is what serving and evaluation call; `template_variables` and `unsafe_constructs`
read the template's syntax tree for `aiops check` (it reports them at file:line, offline).
"""
from __future__ import annotations

import operator
from typing import Any, Mapping

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_RENDERED_CHARS = 200_000  # a rendered prompt larger than this is refused
MAX_REPEAT = 10_000  # `'x' * n` and `[..] * n` with n above this are refused, as is `**` above MAX_POWER
MAX_POWER = 64
# names a template may not use: Jinja2's default globals (all removed here) and `self`
UNSAFE_NAMES = {"self": "the template object 'self'", "cycler": "the global 'cycler'", "joiner": "the global 'joiner'",
                "namespace": "the global 'namespace' (mutable state)", "lipsum": "the global 'lipsum'",
                "range": "the global 'range'", "dict": "the global 'dict'", "config": "'config'",
                "request": "'request'"}
UNSAFE_ATTRS = {"mro", "format", "format_map", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "f_globals",
                "f_locals", "func_globals", "func_code", "im_func", "tb_frame", "co_code"}


class PromptError(Exception):
    """The template cannot be rendered safely (a sandbox violation, an undefined variable,
    a syntax error, an output too large). `line` is the template line when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` bounded (they would otherwise build huge strings)."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_POWER:
                raise SecurityError(f"'**' with an exponent above {MAX_POWER} is refused")
            return operator.pow(left, right)
        for a, b in ((left, right), (right, left)):
            if isinstance(a, (str, list, tuple, bytes)) and isinstance(b, int) and b > MAX_REPEAT:
                raise SecurityError(f"repeating a sequence more than {MAX_REPEAT} times is refused")
        return operator.mul(left, right)


def sandbox() -> ImmutableSandboxedEnvironment:
    """A fresh sandboxed environment: no loader, no globals, StrictUndefined, autoescape off,
    no trailing newline kept (so a template file's last newline does not reach the prompt)."""
    env = _Sandbox(loader=None, autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    env.globals.clear()
    return env


def _template_line(exc: BaseException) -> int | None:
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _where(line: int | None) -> str:
    return f" (template line {line})" if line else ""


def compile_template(template_text: str) -> jinja2.Template:
    """The template compiled in the sandbox; PromptError on a syntax error."""
    try:
        return sandbox().from_string(template_text)
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"the template has a syntax error{_where(exc.lineno)}: {exc.message}", exc.lineno) from None


def render(template_text: str | jinja2.Template, variables: Mapping[str, Any]) -> str:
    """The prompt text. Raises PromptError naming the template line for a sandbox
    violation, an undefined variable, or a prompt over MAX_RENDERED_CHARS."""
    tpl = compile_template(template_text) if isinstance(template_text, str) else template_text
    try:
        text = tpl.render(dict(variables))
    except SecurityError as exc:
        line = _template_line(exc)
        raise PromptError(f"the template was refused by the sandbox{_where(line)}: {exc}", line) from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc)
        raise PromptError(f"the template uses an undefined variable{_where(line)}: {exc.message}", line) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        line = _template_line(exc)
        raise PromptError(f"the template failed to render{_where(line)}: {type(exc).__name__}: {exc}", line) from None
    if len(text) > MAX_RENDERED_CHARS:
        raise PromptError(f"the rendered prompt has {len(text)} characters; at most {MAX_RENDERED_CHARS} are allowed")
    return text


def template_variables(template_text: str) -> set[str]:
    """The variables the template reads (its undeclared names), from the syntax tree."""
    try:
        return set(meta.find_undeclared_variables(sandbox().parse(template_text)))
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"the template has a syntax error{_where(exc.lineno)}: {exc.message}", exc.lineno) from None


def variable_lines(template_text: str) -> dict[str, int]:
    """The first template line each variable is read on (for check's file:line)."""
    out: dict[str, int] = {}
    try:
        ast = sandbox().parse(template_text)
    except jinja2.TemplateSyntaxError:
        return out
    for n in ast.find_all(nodes.Name):
        if n.ctx == "load":
            out[n.name] = min(out.get(n.name, n.lineno), n.lineno)
    return out


def unsafe_constructs(template_text: str) -> list[tuple[int, str]]:
    """(line, what) for every construct the sandbox refuses or that has no place in a
    prompt template: dunder or private attributes, frame and format attributes, the
    template object and the removed globals, include/import/extends, and a syntax error."""
    try:
        ast = sandbox().parse(template_text)
    except jinja2.TemplateSyntaxError as exc:
        return [(exc.lineno or 1, f"a syntax error: {exc.message}")]
    found: list[tuple[int, str]] = []
    for n in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Include, nodes.Import,
                           nodes.FromImport, nodes.Extends)):
        if isinstance(n, nodes.Getattr):
            if n.attr.startswith("_") or n.attr in UNSAFE_ATTRS:
                found.append((n.lineno, f"the attribute '.{n.attr}'"))
        elif isinstance(n, nodes.Getitem):
            if isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str) and \
                    (n.arg.value.startswith("_") or n.arg.value in UNSAFE_ATTRS):
                found.append((n.lineno, f"the item [{n.arg.value!r}]"))
        elif isinstance(n, nodes.Name):
            if n.ctx == "load" and n.name in UNSAFE_NAMES:
                found.append((n.lineno, UNSAFE_NAMES[n.name]))
        else:
            tag = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from ... import",
                   nodes.Extends: "extends"}[type(n)]
            found.append((n.lineno, f"'{{% {tag} %}}' (templates cannot load other files)"))
    return sorted(set(found))
