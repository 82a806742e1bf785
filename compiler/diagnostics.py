"""Diagnostics: every user error is a value with a code, a location and a fix.

Checks return lists of :class:`Diagnostic` and never raise; the CLI prints them all,
sorted by file and line, and fails once.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file position, or a command-line override."""

    file: str | None = None
    line: int | None = None
    col: int | None = None
    override: str | None = None  # the override text, when the value came from the command line

    def render(self) -> str:
        if self.override is not None:
            return f"command-line override '{self.override}'"
        if self.file is None:
            return "<spec>"
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col or 1}"

    def sort_key(self) -> tuple:
        # files first (by name and line), then overrides, then locationless
        if self.override is not None:
            return (1, "", 0, 0, self.override)
        if self.file is None:
            return (2, "", 0, 0, "")
        return (0, self.file, self.line or 0, self.col or 0, "")


@dataclass(frozen=True)
class Diagnostic:
    code: str  # E101, W201, ...
    summary: str
    path: str = ""  # key path, e.g. features[3].source
    location: Location = field(default_factory=Location)
    source_line: str | None = None  # the offending line of the file, when known
    notes: tuple[str, ...] = ()  # "= ..." lines: the value, what was expected
    help: str | None = None  # "did you mean" or what to do

    @property
    def is_error(self) -> bool:
        return self.code.startswith("E")

    def render(self) -> str:
        kind = "error" if self.is_error else "warning"
        out = [f"{kind}[{self.code}]: {self.summary}"]
        where = self.location.render()
        out.append(f"  --> {where}" + (f" ({self.path})" if self.path else ""))
        if self.source_line is not None:
            out.append(f"   |     {self.source_line.strip()}")
        out.extend(f"   = {n}" for n in self.notes)
        if self.help:
            out.append(f"   = help: {self.help}")
        return "\n".join(out)


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str | None:
    """The closest choice within a small edit distance, as a 'did you mean' phrase."""
    pool = [str(c) for c in choices]
    match = difflib.get_close_matches(str(word), pool, n=n, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in pool}
        if str(word).lower() in lowered:
            match = [lowered[str(word).lower()]]
    if not match:
        return None
    return f"did you mean '{match[0]}'?"


def sort_diagnostics(diags: Sequence[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple] = set()
    out = []
    for d in sorted(diags, key=lambda d: (d.location.sort_key(), d.path, d.code, d.summary)):
        key = (d.code, d.path, d.summary, d.location)
        if key in seen:
            continue
        seen.add(key)
        out.append(d)
    return out


def render_all(diags: Sequence[Diagnostic], wrote_nothing: bool = True) -> str:
    diags = sort_diagnostics(diags)
    errors = sum(d.is_error for d in diags)
    warnings = len(diags) - errors
    body = "\n".join(d.render() for d in diags)
    if errors:
        tail = f"error: {errors} error{'s' if errors != 1 else ''}"
        if warnings:
            tail += f", {warnings} warning{'s' if warnings != 1 else ''}"
        tail += "; nothing was written." if wrote_nothing else "."
        return (body + "\n" + tail) if body else tail
    return body


def fmt_choices(choices: Iterable[object]) -> str:
    return ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
