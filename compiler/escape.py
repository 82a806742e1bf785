"""Escaping: one function per target language for every value printed into generated code.

Spec text is untrusted; generated files are code (Python, YAML, crontab, shell). A value
reaches a code template only through one of these functions, which return `Escaped` (a
`str` that says it is safe where it is printed). The code templates' `finalize` refuses any
other string (`render.environment`), so a new template cannot forget to escape.

| where the value lands             | function   | how                                            |
|-----------------------------------|------------|------------------------------------------------|
| a Python literal                  | `py`       | `repr` (strings, numbers, lists, dicts)        |
| a Python expression the plan built| `code`     | must parse as one expression (the plan quotes its values with repr) |
| a Python name / import path       | `ident`    | must be a (dotted) identifier                  |
| a docstring                       | `doc`      | backslash and quotes escaped, one line         |
| a comment (Python, YAML, crontab) | `comment`  | control characters (newlines) shown as escapes |
| a YAML scalar                     | `yaml`     | PyYAML's emitter, one line, read back to check |
| a shell word                      | `sh`       | `shlex.quote`                                  |
| a shell word in a crontab line    | `crontab`  | `shlex.quote`, then `%` escaped (cron ends the command at `%`) |
| a crontab schedule                | `cron`     | must be a valid schedule (`rules_policy.cron_problem`) |
"""
from __future__ import annotations

import ast
import pprint
import re
import shlex
from typing import Any

import yaml


class Escaped(str):
    """A string already escaped for the place a template prints it."""


class EscapeError(ValueError):
    """A value that cannot be printed safely where a template asks for it."""


def py(value: Any) -> Escaped:
    return Escaped(repr(value))


def pyjson(value: Any) -> Escaped:
    """A Python literal of a JSON-like value, laid out on several lines."""
    return Escaped(pprint.pformat(value, width=100, sort_dicts=True))


def code(source: str) -> Escaped:
    try:
        ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise EscapeError(f"not one Python expression: {source!r}") from exc
    return Escaped(source)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def ident(name: str) -> Escaped:
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise EscapeError(f"not an identifier: {name!r}")
    return Escaped(name)


def comment(text: Any) -> Escaped:
    """Text for the rest of a comment line: nothing in it can end the line."""
    return Escaped("".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in str(text)))


def doc(text: Any) -> Escaped:
    """Text inside a triple-quoted docstring: it cannot close the string or end the line."""
    return comment(str(text).replace("\\", "\\\\").replace('"', '\\"'))


def yaml_scalar(value: Any, quoted: bool = False) -> Escaped:
    """One YAML scalar on one line, as PyYAML emits it (double-quoted when `quoted`, or when
    its own choice would span lines); read back to prove it round-trips."""
    def emit(style: str | None) -> str:
        out = yaml.safe_dump(value, default_style=style, default_flow_style=True, width=1 << 30,
                             allow_unicode=True)
        return out[: -len("\n...\n")] if out.endswith("\n...\n") else out.rstrip("\n")

    printable = not isinstance(value, str) or value.isprintable()
    out = emit('"' if quoted or not printable else None)
    if "\n" in out or "\r" in out:
        out = emit('"')
    if "\n" in out or "\r" in out or yaml.safe_load("k: " + out) != {"k": value}:
        raise EscapeError(f"cannot write {value!r} as a one-line YAML scalar")
    return Escaped(out)


def sh(word: Any) -> Escaped:
    return Escaped(shlex.quote(str(word)))


def crontab(word: Any) -> Escaped:
    """A shell word in a crontab command: cron turns an unescaped '%' into a newline."""
    if any(not ch.isprintable() for ch in str(word)):
        raise EscapeError(f"a crontab line cannot hold {word!r}")
    return Escaped(sh(word).replace("%", "\\%"))


def cron(schedule: str) -> Escaped:
    """A crontab schedule is printed as its fields (cron has no quoting): it must be valid."""
    from aiops.compiler.rules_policy import cron_problem

    why = cron_problem(schedule) if isinstance(schedule, str) else "not a string"
    if why is not None:
        raise EscapeError(f"not a cron schedule: {schedule!r} ({why})")
    return Escaped(schedule)


FILTERS = {"py": py, "pyjson": pyjson, "code": code, "ident": ident, "comment": comment, "doc": doc,
           "yaml": yaml_scalar, "sh": sh, "crontab": crontab, "cron": cron}


def finalize(value: Any) -> Any:
    """Jinja2 `finalize` of the code templates: an unescaped string is refused."""
    if isinstance(value, (Escaped, bool, int)):  # a bool or an int prints as itself everywhere
        return value
    raise EscapeError(f"a code template prints {value!r} without an escaping filter "
                      f"({', '.join(sorted(FILTERS))})")
