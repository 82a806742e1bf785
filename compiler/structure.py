"""Structural validation: the composed config against the dataclasses of `schema`.

One walk collects every unknown key (with "did you mean"), missing key, wrong type and
invalid choice, and builds the typed spec object for the semantic checks.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, Literal, Union, get_args, get_origin

from aiops.compiler import schema as S
from aiops.compiler.diagnostics import Diagnostic, did_you_mean, fmt_choices
from aiops.compiler.load import PathT, SourceMap, path_str

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(S))


def _is_required(f: dataclasses.Field, hint: Any) -> bool:
    if f.default is S.REQUIRED:
        return True
    return False


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + fmt_choices(get_args(tp))
    if origin is Union:
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Walker:
    def __init__(self, sm: SourceMap):
        self.sm = sm
        self.diags: list[Diagnostic] = []

    def err(self, code: str, summary: str, path: PathT, notes: tuple[str, ...] = (), help: str | None = None,
            key: bool = False) -> None:
        loc = self.sm.locate(path, key=key)
        self.diags.append(Diagnostic(code, summary, path_str(path), loc, self.sm.line_of(loc), notes, help))

    def wrong_type(self, path: PathT, value: Any, tp: Any) -> None:
        self.err("E102", f"'{path_str(path)}' has the wrong type", path,
                 (f"'{path_str(path)}' must be {_describe(tp)}. Got {_show(value)} instead.",))

    # ------------------------------------------------------------------ the walk
    def value(self, value: Any, tp: Any, path: PathT) -> Any:
        origin = get_origin(tp)
        if tp is Any:
            return value
        if origin is Union:
            args = [a for a in get_args(tp) if a is not type(None)]
            if value is None:
                if type(None) in get_args(tp):
                    return None
                self.wrong_type(path, value, tp)
                return None
            if len(args) == 1:
                return self.value(value, args[0], path)
            for a in args:  # first that fits without diagnostics
                probe = Walker(self.sm)
                out = probe.value(value, a, path)
                if not probe.diags:
                    return out
            self.wrong_type(path, value, tp)
            return None
        if origin is Literal:
            choices = get_args(tp)
            if value in choices and type(value) is type(choices[0]):
                return value
            hint = did_you_mean(str(value), [str(c) for c in choices])
            self.err("E103", f"invalid value for '{path[-1] if path else ''}'", path,
                     (f"'{path_str(path)}' must be one of {fmt_choices(choices)}. Got {_show(value)} instead.",),
                     hint)
            return None
        if origin is list:
            if not isinstance(value, list):
                self.wrong_type(path, value, tp)
                return None
            (item,) = get_args(tp)
            return [self.value(v, item, path + (i,)) for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                self.wrong_type(path, value, tp)
                return None
            _, item = get_args(tp)
            return {str(k): self.value(v, item, path + (str(k),)) for k, v in value.items()}
        if dataclasses.is_dataclass(tp):
            return self.dataclass(value, tp, path)
        if tp is bool:
            if isinstance(value, bool):
                return value
            self.wrong_type(path, value, tp)
            return None
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            self.wrong_type(path, value, tp)
            return None
        if tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            self.wrong_type(path, value, tp)
            return None
        if tp is str:
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            self.wrong_type(path, value, tp)
            return None
        raise TypeError(f"schema type not handled: {tp!r}")  # a bug in the schema, not user input

    def dataclass(self, value: Any, cls: type, path: PathT) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.wrong_type(path, value, cls)
            return None
        hints = _hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key in value:
            if key not in fields:
                where = f"'{path_str(path)}'" if path else "the spec"
                self.err("E100", f"unknown key '{key}'", path + (key,),
                         (f"{where} has no key '{key}'; valid keys: {', '.join(fields)}",),
                         did_you_mean(str(key), fields) or "remove it, or check the spelling",
                         key=True)
        for name, f in fields.items():
            tp = hints[name]
            if name in value:
                kwargs[name] = self.value(value[name], tp, path + (name,))
            elif _is_required(f, tp):
                where = f"'{path_str(path)}'" if path else "the spec"
                self.err("E101", f"missing required key '{path_str(path + (name,))}'", path,
                         (f"{where} must set '{name}' ({_describe(tp)})",), f"add '{name}: ...' here", key=True)
                kwargs[name] = None
            elif dataclasses.is_dataclass(tp) and any(
                    g.default is S.REQUIRED for g in dataclasses.fields(tp)):
                self.err("E101", f"missing required section '{path_str(path + (name,))}'", path,
                         (f"'{name}' has required keys: "
                          + ", ".join(g.name for g in dataclasses.fields(tp) if g.default is S.REQUIRED),),
                         f"add a '{name}:' section, or select it in the defaults list", key=True)
                kwargs[name] = None
        try:
            return cls(**kwargs)
        except TypeError:  # pragma: no cover - fields already checked
            return None


def check_identity(spec: S.Spec, w: Walker) -> None:
    """E104 a name that is not an identifier, E105 a version that is not SemVer."""
    if isinstance(spec.name, str) and not re.fullmatch(S.NAME_GRAMMAR, spec.name):
        w.err("E104", "the spec name is not an identifier", ("name",),
              (f"'name' must match {S.NAME_GRAMMAR} (it names the output folder, a Python package and a "
               f"crontab entry). Got {_show(spec.name)} instead.",),
              help=f"e.g. name: {_suggest_name(spec.name)}")
    if isinstance(spec.version, str) and not re.fullmatch(S.VERSION_GRAMMAR, spec.version):
        w.err("E105", "the spec version is not a semantic version", ("version",),
              (f"'version' must be MAJOR.MINOR.PATCH, optionally with -prerelease and +build "
               f"(https://semver.org). Got {_show(spec.version)} instead.",),
              help="e.g. version: 1.0.0 (quote it if YAML would read a number: \"1.0.0\")")


def _suggest_name(name: str) -> str:
    word = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:64]
    return word if re.fullmatch(S.NAME_GRAMMAR, word) else "credit_risk"


def structure(config: dict[str, Any], sm: SourceMap) -> tuple[S.Spec | S.PromptSpec | None, list[Diagnostic]]:
    w = Walker(sm)
    cls = S.PromptSpec if isinstance(config, dict) and config.get("kind") == "prompt" else S.Spec
    spec = w.dataclass(config, cls, ())
    if spec is not None:
        check_identity(spec, w)
    return spec, w.diags
