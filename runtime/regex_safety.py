"""Refuses the regular expressions of a spec that can backtrack catastrophically (ReDoS).

A spec is untrusted input, and its regular expressions (a contract column's `regex`, a prompt's
guardrail patterns and `regex` assertions, the `pattern` keywords of its JSON Schemas) run with
Python's backtracking `re` against request data, with no time limit: `(a+)+$` on 'a' * 30 + '!'
keeps a core busy for minutes. `regex_hazard` reads a pattern with Python's own parser and
returns why it is refused, or None. It refuses, as an over-approximation:

- a pattern longer than MAX_CHARS characters, or nesting more than MAX_DEPTH groups;
- a nested quantifier: an unbounded repeat (`*`, `+`, `{n,}`, or `{n,m}` with m > LARGE_REPEAT)
  that contains another one (star height above 1: `(a+)+`, `(a*)*`, `(?:\\w+\\s?)*`, `(a+b?)+`),
  unless the outer one is a delimited list: its body starts or ends with one character that its
  only inner repeat, a repeated single character, cannot match, and the rest of it has a fixed
  width (`(?:\\.[a-z0-9-]+)*`, `(?:\\d+,)*`): each iteration then ends at a delimiter, one way;
- a repeated alternation whose branches can match the same text: two branches that can start
  with the same character, or a branch that can match nothing (`(a|a)*`, `(a|ab)*`, `(\\w|\\d)+`).
  First characters are compared over the characters the pattern names plus a sample of Unicode
  (ASCII, Latin, Greek, Cyrillic and a few digits and letters of other scripts);
- a backreference (`\\1`, `(?P=name)`) or a conditional group (`(?(1)...)`).

A possessive quantifier (`a++`, `(a|ab)*+`), an atomic group (`(?>...)`) and a lookaround (atomic in
Python) do not backtrack into what they matched: the repeats inside them start afresh. Alternations
are judged as written: the stdlib parser folds `a|b` into `[ab]` and moves a common prefix out
(`a|ab` becomes `a(?:|b)`), which would hide them, so a private copy of it keeps them as they are.

`aiops check` reports a hazard as E017; the runtime compiles a spec's patterns with
`compile_safe`, which raises UnsafeRegex (a UserError and a ValueError) instead. Stdlib only: the
runtime uses it.
"""
from __future__ import annotations

import functools
import importlib.util
import re
from typing import Any, Iterator, NamedTuple

from aiops.runtime.errors import UserError

try:  # Python 3.11+
    from re import _constants as C
    from re import _parser as _stdlib_parser
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse as _stdlib_parser  # type: ignore[no-redef]

MAX_CHARS = 1000  # the longest pattern a spec may hold
MAX_DEPTH = 50  # the deepest nesting of groups (re itself overflows its stack at about 500)
LARGE_REPEAT = 10  # a bounded repeat with a larger maximum counts as unbounded: `(.*a){20}` is n**20
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT)
_POSSESSIVE = getattr(C, "POSSESSIVE_REPEAT", None)
_ATOMIC = getattr(C, "ATOMIC_GROUP", None)


class Hazard(NamedTuple):
    """Why a pattern is refused: the construct, one sentence saying why, and the fix."""
    construct: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.reason}; {self.fix}"


class UnsafeRegex(UserError, ValueError):
    """A spec's pattern that the runtime refuses to compile (see regex_hazard)."""


# ------------------------------------------------------------------ the parser
def _load_parser() -> Any:
    """A private copy of the stdlib regex parser whose alternations stay as written (no shared
    state is changed: the copy is a separate module object). The stdlib parser when it cannot be copied."""
    try:
        spec = importlib.util.spec_from_file_location(_stdlib_parser.__name__ + "_aiops_redos",
                                                      _stdlib_parser.__file__)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except Exception:  # pragma: no cover - a frozen or zipped stdlib: the folding parser is still sound for nesting
        return _stdlib_parser

    def _parse_sub(source, state, verbose, nested):  # the stdlib's, without its two foldings
        items = []
        while True:
            items.append(mod._parse(source, state, verbose, nested + 1, not nested and not items))
            if not source.match("|"):
                break
            if not nested:
                verbose = state.flags & C.SRE_FLAG_VERBOSE
        if len(items) == 1:
            return items[0]
        sub = mod.SubPattern(state)
        sub.append((C.BRANCH, (None, items)))
        return sub

    mod._parse_sub = _parse_sub
    return mod


_PARSER = _load_parser()


# ------------------------------------------------------------------ the analysis
def regex_hazard(pattern: str, flags: int = 0) -> Hazard | None:
    """Why `pattern` can take exponential time (a Hazard), or None. None too when it does not parse:
    re.compile reports that (ask first: a pattern nesting hundreds of groups overflows re's own stack)."""
    if len(pattern) > MAX_CHARS:
        return Hazard("", f"the pattern has {len(pattern):,} characters, more than {MAX_CHARS:,}",
                      f"shorten it to at most {MAX_CHARS:,} characters")
    depth = _depth(pattern)
    if depth > MAX_DEPTH:
        return Hazard("", f"the pattern nests {depth} groups, more than {MAX_DEPTH}",
                      f"nest at most {MAX_DEPTH} groups")
    try:
        return _analyse(pattern, flags)
    except re.error:
        return None


def _depth(pattern: str) -> int:
    """How deep the pattern's parentheses nest (escapes and character classes skipped)."""
    depth = top = i = 0
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 1
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 2 if pattern[i + 1: i + 3] == "^]" else 1 if pattern[i + 1: i + 2] == "]" else 0
        elif c == "(":
            depth += 1
            top = max(top, depth)
        elif c == ")":
            depth -= 1
        i += 1
    return top


@functools.lru_cache(maxsize=512)
def _analyse(pattern: str, flags: int) -> Hazard | None:
    tree = _PARSER.parse(pattern, flags)
    state = getattr(tree, "state", None) or getattr(tree, "pattern", None)
    return _scan(tree.data, None, getattr(state, "flags", flags))


def compile_safe(pattern: str, where: str, flags: int = 0) -> re.Pattern:
    """re.compile for a spec's pattern: UnsafeRegex when it does not compile or can backtrack
    catastrophically. `where` names it in the message (e.g. "contract column 'carrier': regex")."""
    try:
        hazard = regex_hazard(pattern, flags)
        if hazard is None:
            return re.compile(pattern, flags)
    except (re.error, TypeError, RecursionError) as exc:
        raise UnsafeRegex(f"{where} is not a valid regular expression: {exc}") from None
    raise UnsafeRegex(f"{where}: the regular expression {_short(pattern)!r} is refused: {hazard} "
                      "(recompile the spec with a safe pattern)")


def schema_patterns(schema: Any, at: str = "") -> Iterator[tuple[str, str]]:
    """(where, pattern) of every regular expression of a JSON Schema: the `pattern` keywords and
    the `patternProperties` keys (which jsonschema runs with `re`). Values of enum, const, default
    and examples are data, not schemas."""
    if isinstance(schema, list):
        for i, v in enumerate(schema):
            yield from schema_patterns(v, f"{at}/{i}")
    elif isinstance(schema, dict):
        for k, v in schema.items():
            here = f"{at}/{k}"
            if k == "pattern" and isinstance(v, str):
                yield here, v
            elif k == "patternProperties" and isinstance(v, dict):
                for p, sub in v.items():
                    yield f"{here}/{p}", p
                    yield from schema_patterns(sub, f"{here}/{p}")
            elif k == "properties" and isinstance(v, dict):  # property names are names, not keywords
                for name, sub in v.items():
                    yield from schema_patterns(sub, f"{here}/{name}")
            elif k not in ("enum", "const", "default", "examples"):
                yield from schema_patterns(v, here)


def _big(hi: int) -> bool:
    return hi is C.MAXREPEAT or hi == C.MAXREPEAT or hi > LARGE_REPEAT


def _scan(items: Any, outer: tuple | None, flags: int) -> Hazard | None:
    """The first hazard in a sequence; `outer` is the innermost unbounded repeat that backtracks
    around it (None when there is none, or an atomic construct lies in between)."""
    for op, av in items:
        h = _node(op, av, outer, flags)
        if h is not None:
            return h
    return None


def _node(op: Any, av: Any, outer: tuple | None, flags: int) -> Hazard | None:
    if op in _REPEATS:
        lo, hi, body = av
        if _big(hi) and body.getwidth()[1] > 0:
            if outer is not None:
                return _nested(outer, (op, av))
            listed = _delimited(body, flags)
            if listed is not None:  # the one inner repeat is a single character: nothing to scan in it
                items, inner, flags = listed
                return _scan([it for it in items if it is not inner], (op, av), flags)
            return _scan(body, (op, av), flags)
        return _scan(body, outer, flags)
    if op is _POSSESSIVE:
        return _scan(av[2], None, flags)
    if op is _ATOMIC:
        return _scan(av, None, flags)
    if op is C.SUBPATTERN:
        _group, add, dele, body = av
        return _scan(body, outer, (flags | add) & ~dele)
    if op is C.BRANCH:
        if outer is not None and (h := _overlap(av[1], outer, flags)) is not None:
            return h
        for b in av[1]:
            if (h := _scan(b, outer, flags)) is not None:
                return h
        return None
    if op in (C.ASSERT, C.ASSERT_NOT):  # atomic in Python
        return _scan(av[1], None, flags)
    if op in (C.GROUPREF, C.GROUPREF_EXISTS):
        shown = _show([(op, av)])
        return Hazard(shown, f"the {'backreference' if op is C.GROUPREF else 'conditional group'} `{shown}` "
                      "can take exponential time and is not supported in a spec's patterns",
                      "write the pattern without backreferences or conditional groups")
    return None


def _delimited(body: Any, flags: int) -> tuple[list, tuple, int] | None:
    """(the body's items, its one inner repeat, the flags) when a repeat's body is a delimited list
    item: one unbounded repeat of a single character, other items of fixed width, and a first or
    last item that is one character the inner repeat cannot match. None otherwise."""
    items = list(body)
    while len(items) == 1 and items[0][0] is C.SUBPATTERN:
        _group, add, dele, sub = items[0][1]
        items, flags = list(sub), (flags | add) & ~dele
    if len(items) < 2:
        return None
    repeats = [it for it in items if (it[0] in _REPEATS or it[0] is _POSSESSIVE) and _big(it[1][1])]
    if len(repeats) != 1:
        return None
    inner = repeats[0]
    char = list(inner[1][2])
    if len(char) != 1 or char[0][0] not in (C.LITERAL, C.NOT_LITERAL, C.IN, C.ANY):
        return None
    state = getattr(body, "state", None)
    for it in items:
        if it is not inner:
            lo, hi = _PARSER.SubPattern(state, [it]).getwidth()
            if lo != hi:
                return None
    run, _ = _first1(*char[0], flags)
    for x in (items[0], items[-1]):
        if x is not inner and x[0] in (C.LITERAL, C.NOT_LITERAL, C.IN):
            delim, _ = _first1(*x, flags)
            universe = _SAMPLE | _named_chars(delim) | _named_chars(run)
            if not any(_has(delim, c) and _has(run, c) for c in universe):
                return items, inner, flags
    return None


def _nested(outer: tuple, inner: tuple) -> Hazard:
    o, i = _show([outer]), _show([inner])
    return Hazard(o, f"the nested quantifier `{_short(o)}` can take exponential time on a non-matching input "
                  f"(the repeat `{_short(i)}` is repeated)",
                  f"remove the inner or the outer repeat, or stop the backtracking with a possessive quantifier "
                  f"or an atomic group, e.g. `{_short(_atomic(outer))}`")


def _overlap(branches: list, outer: tuple, flags: int) -> Hazard | None:
    o = _show([outer])
    firsts = [_first(b, flags) for b in branches]
    for b, (_parts, nullable) in zip(branches, firsts):
        if nullable:
            return Hazard(o, f"the repeated alternation `{_short(o)}` can take exponential time on a non-matching "
                          f"input (its branch `{_show(b) or '(empty)'}` can match the empty string)",
                          "make every branch match at least one character and put the repeat outside, or stop the "
                          "backtracking with a possessive quantifier or an atomic group, "
                          f"e.g. `{_short(_atomic(outer))}`")
    universe = set(_SAMPLE)
    for parts, _n in firsts:
        universe |= _named_chars(parts)
    members = [frozenset(c for c in universe if _has(parts, c)) for parts, _n in firsts]
    for i in range(len(branches)):
        for j in range(i + 1, len(branches)):
            common = members[i] & members[j]
            if common:
                ch = min(common, key=lambda c: (not (33 <= c < 127), c))
                return Hazard(o, f"the repeated alternation `{_short(o)}` can take exponential time on a non-matching "
                              f"input (its branches `{_short(_show(branches[i]))}` and `{_short(_show(branches[j]))}` "
                              f"can both start with {chr(ch)!r})",
                              "make the branches start with different characters (single characters belong in one "
                              "character class, e.g. `[ab]+` rather than `(a|b)+`), or stop the backtracking with a "
                              f"possessive quantifier or an atomic group, e.g. `{_short(_atomic(outer))}`")
    return None


# ------------------------------------------------------------------ first characters
# a part is ("any",) or ("in", negated, atoms, ignorecase, ascii): the atoms of an IN set
_SAMPLE = frozenset(range(0x250)) | {0x2028, 0x3000, 0x0660, 0x0966, 0x4E00, 0xFF10, 0xFF21, 0xFF41, 0x1D7CE, 0x10000}
_CATEGORIES = {C.CATEGORY_DIGIT: r"\d", C.CATEGORY_NOT_DIGIT: r"\D", C.CATEGORY_SPACE: r"\s",
               C.CATEGORY_NOT_SPACE: r"\S", C.CATEGORY_WORD: r"\w", C.CATEGORY_NOT_WORD: r"\W"}


def _first(items: Any, flags: int) -> tuple[list, bool]:
    """(the parts that contain every first character of `items`, whether they can match nothing)."""
    parts: list = []
    for op, av in items:
        p, nullable = _first1(op, av, flags)
        parts += p
        if not nullable:
            return parts, False
    return parts, True


def _first1(op: Any, av: Any, flags: int) -> tuple[list, bool]:
    ic, asc = bool(flags & C.SRE_FLAG_IGNORECASE), bool(flags & C.SRE_FLAG_ASCII)
    if op is C.LITERAL:
        return [("in", False, ((C.LITERAL, av),), ic, asc)], False
    if op is C.NOT_LITERAL:
        return [("in", True, ((C.LITERAL, av),), ic, asc)], False
    if op is C.ANY:
        return [("any",)], False
    if op is C.IN:
        neg = bool(av) and av[0][0] is C.NEGATE
        return [("in", neg, tuple(av[1:] if neg else av), ic, asc)], False
    if op in _REPEATS or op is _POSSESSIVE:
        parts, nullable = _first(av[2], flags)
        return parts, nullable or av[0] == 0
    if op is C.SUBPATTERN:
        return _first(av[3], (flags | av[1]) & ~av[2])
    if op is _ATOMIC:
        return _first(av, flags)
    if op is C.BRANCH:
        parts, nullable = [], False
        for b in av[1]:
            p, n = _first(b, flags)
            parts, nullable = parts + p, nullable or n
        return parts, nullable
    if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
        return [], True
    return [("any",)], True  # backreferences and the like: anything


def _named_chars(parts: list) -> set[int]:
    """The characters a set names (literals and the ends of ranges: two ranges that overlap share the
    larger of their starts), with their cases."""
    out: set[int] = set()
    for p in parts:
        if p[0] != "in":
            continue
        for op, av in p[2]:
            if op is C.LITERAL:
                out.add(av)
            elif op is C.RANGE:
                out |= set(av)
    return out | {ord(v) for c in out for v in (chr(c).lower(), chr(c).upper()) if len(v) == 1}


@functools.lru_cache(maxsize=None)
def _category(cat: Any, ascii_only: bool) -> re.Pattern:
    return re.compile(_CATEGORIES.get(cat, r"[\s\S]"), re.ASCII if ascii_only else 0)


def _in(atoms: tuple, o: int, asc: bool) -> bool:
    for op, av in atoms:
        if op is C.LITERAL and av == o or op is C.RANGE and av[0] <= o <= av[1]:
            return True
        if op is C.CATEGORY and _category(av, asc).match(chr(o)):
            return True
    return False


def _has(parts: list, o: int) -> bool:
    for p in parts:
        if p[0] == "any":
            return True
        _, neg, atoms, ic, asc = p
        ch = chr(o)
        variants = {o} | ({ord(v) for v in (ch.lower(), ch.upper()) if len(v) == 1} if ic else set())
        if any(_in(atoms, v, asc) for v in variants) != neg:
            return True
    return False


# ------------------------------------------------------------------ showing a construct
_AT = {C.AT_BEGINNING: "^", C.AT_BEGINNING_STRING: r"\A", C.AT_END: "$", C.AT_END_STRING: r"\Z",
       C.AT_BOUNDARY: r"\b", C.AT_NON_BOUNDARY: r"\B"}
_FLAGS = ((C.SRE_FLAG_IGNORECASE, "i"), (C.SRE_FLAG_MULTILINE, "m"), (C.SRE_FLAG_DOTALL, "s"),
          (C.SRE_FLAG_VERBOSE, "x"), (C.SRE_FLAG_ASCII, "a"), (C.SRE_FLAG_UNICODE, "u"))


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _lit(o: int, in_class: bool = False) -> str:
    ch = chr(o)
    if ch in ("\\]^-[" if in_class else ".^$*+?{}[]\\|()"):
        return "\\" + ch
    if ch in "\n\t\r":
        return {"\n": r"\n", "\t": r"\t", "\r": r"\r"}[ch]
    if not ch.isprintable():
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
    return ch


def _show_in(av: list) -> str:
    if len(av) == 1 and av[0][0] is C.CATEGORY:
        return _CATEGORIES.get(av[0][1], "?")
    out = []
    for op, a in av:
        if op is C.NEGATE:
            out.append("^")
        elif op is C.LITERAL:
            out.append(_lit(a, True))
        elif op is C.RANGE:
            out.append(f"{_lit(a[0], True)}-{_lit(a[1], True)}")
        elif op is C.CATEGORY:
            out.append(_CATEGORIES.get(a, "?"))
    return "[" + "".join(out) + "]"


def _quantifier(op: Any, lo: int, hi: int) -> str:
    unbounded = hi is C.MAXREPEAT or hi == C.MAXREPEAT
    q = {(0, True): "*", (1, True): "+"}.get((lo, unbounded)) or ("?" if (lo, hi) == (0, 1) else
        f"{{{lo},}}" if unbounded else f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}")
    return q + ("?" if op is C.MIN_REPEAT else "+" if op is _POSSESSIVE else "")


def _show(items: Any) -> str:
    """A parsed sequence written back as a pattern (group names and verbose spacing aside)."""
    out = []
    for op, av in items:
        if op is C.LITERAL:
            out.append(_lit(av))
        elif op is C.NOT_LITERAL:
            out.append(f"[^{_lit(av, True)}]")
        elif op is C.ANY:
            out.append(".")
        elif op is C.IN:
            out.append(_show_in(av))
        elif op is C.AT:
            out.append(_AT.get(av, ""))
        elif op is C.BRANCH:
            out.append("|".join(_show(b) for b in av[1]))
        elif op is C.SUBPATTERN:
            group, add, dele, body = av
            on = "".join(c for f, c in _FLAGS if add & f)
            off = "".join(c for f, c in _FLAGS if dele & f)
            head = "(" if group else f"(?{on}{'-' + off if off else ''}:"
            out.append(head + _show(body) + ")")
        elif op in _REPEATS or op is _POSSESSIVE:
            lo, hi, body = av
            inner = _show(body)
            single = len(body.data if hasattr(body, "data") else body) == 1 and \
                body[0][0] in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.SUBPATTERN, _ATOMIC)
            out.append((inner if single else f"(?:{inner})") + _quantifier(op, lo, hi))
        elif op is _ATOMIC:
            out.append(f"(?>{_show(av)})")
        elif op in (C.ASSERT, C.ASSERT_NOT):
            ahead = av[0] >= 0
            out.append("(?" + ("" if ahead else "<") + ("=" if op is C.ASSERT else "!") + _show(av[1]) + ")")
        elif op is C.GROUPREF:
            out.append(f"\\{av}")
        elif op is C.GROUPREF_EXISTS:
            group, yes, no = av
            out.append(f"(?({group}){_show(yes)}" + (f"|{_show(no)}" if no else "") + ")")
    return "".join(out)


def _atomic(repeat: tuple) -> str:
    """The possessive form of a greedy repeat, the atomic group around a lazy one."""
    shown = _show([repeat])
    return shown + "+" if repeat[0] is C.MAX_REPEAT else f"(?>{shown})"
