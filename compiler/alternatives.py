"""`aiops check` on every option of every config group, not only the selected one.

A spec folder carries alternatives (model/logistic.yaml beside model/gradient_boosting.yaml);
a broken one would otherwise wait for the day someone selects it. Each option that is not
selected is composed with the selected options of the other groups (and the primary file,
`_self_`, last), validated by the same rules as the selection, and the diagnostics that point
into that option's file are reported, with a note naming the option.

Composing is done on the parsed YAML, as Hydra merges a group file at its package (the
group's path) and `_self_` after it (a Hydra composition costs ~0.1 s, and check stays fast);
a folder that uses anything more (a group file with its own defaults list or an `@package`
header, an interpolation, command-line overrides) is composed by Hydra itself. tests/test_check_alternatives.py checks both give the same config.
"""
from __future__ import annotations

import copy
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from aiops.compiler.diagnostics import Diagnostic
from aiops.compiler.load import PRIMARY, Loaded, SourceMap, _compose, _rel, _source_map


def options(spec_dir: Path) -> dict[str, list[str]]:
    """Config group -> its options (YAML files of the group's folder), as Hydra sees them."""
    out: dict[str, list[str]] = {}
    for p in sorted(spec_dir.rglob("*.yaml")):
        rel = p.relative_to(spec_dir)
        if len(rel.parts) > 1 and "data" not in rel.parts:
            out.setdefault("/".join(rel.parts[:-1]), []).append(p.stem)
    return out


def check_alternatives(loaded: Loaded) -> list[Diagnostic]:
    from aiops.compiler.validate import validate

    d = loaded.spec_dir
    files = _Files()
    out: list[Diagnostic] = []
    seen: set[tuple] = set()
    for group, opts in options(d).items():
        chosen = loaded.choices.get(group)
        if chosen is None:
            continue  # a folder the defaults list does not use is no config group of this spec
        for opt in opts:
            if opt == chosen:
                continue
            choices = {**loaded.choices, group: opt}
            alt = d / group / f"{opt}.yaml"
            config = None if loaded.overrides else _merge(d, choices, files)
            sm = SourceMap(lines=loaded.sources.lines)
            overrides: list[str] = []
            if config is None:  # more than plain group files: Hydra composes it
                overrides = [o for o in loaded.overrides if o.split("=", 1)[0].lstrip("+~") != group]
                overrides.append(f"{group}={opt}")
                config, _, err = _compose(d, overrides, sm, d / PRIMARY)
                if err is not None:
                    if err.location.file == _rel(alt):
                        out.append(_note(err, group, opt, chosen))
                    continue
            nodes = {p: files.node(p) for p in [d / PRIMARY, *(d / g / f"{o}.yaml" for g, o in choices.items())]
                     if p.is_file()}
            used = _source_map(d, nodes, d / PRIMARY, choices, overrides, sm, config)
            _, diags = validate(Loaded(d, config, sm, choices, overrides, used), data=False)
            for diag in diags:
                key = (diag.code, diag.location, diag.summary)
                if diag.location.file == _rel(alt) and key not in seen:
                    seen.add(key)
                    out.append(_note(diag, group, opt, chosen))
    return out


def _note(diag: Diagnostic, group: str, opt: str, chosen: str) -> Diagnostic:
    return replace(diag, notes=diag.notes + (f"found with {group}: {opt}, an option that is not selected "
                                             f"({group}: {chosen} is); aiops check composes every option",))


class _Files:
    """Each file of the folder read and parsed once per check: its text, its YAML nodes (for
    positions) and its data, read as OmegaConf reads YAML (e.g. 1e-3 is a number, a date a string)."""

    def __init__(self) -> None:
        self.texts: dict[Path, str] = {}
        self.nodes: dict[Path, Any] = {}
        self.data: dict[Path, Any] = {}

    def text(self, p: Path) -> str:
        if p not in self.texts:
            self.texts[p] = p.read_text(encoding="utf-8")
        return self.texts[p]

    def node(self, p: Path) -> Any:
        if p not in self.nodes:
            self.nodes[p] = yaml.compose(self.text(p), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return self.nodes[p]

    def load(self, p: Path) -> Any:
        if p not in self.data:
            self.data[p] = yaml.load(self.text(p), Loader=_omegaconf_loader())
        return self.data[p]


def _omegaconf_loader() -> type:
    """OmegaConf's YAML loader (its resolvers and constructors), on libyaml's parser when there is one."""
    from omegaconf._utils import get_yaml_loader

    ref = get_yaml_loader()
    if not yaml.__with_libyaml__:
        return ref
    global _LOADER
    if _LOADER is None:
        _LOADER = type("FastOmegaConfLoader", (yaml.CSafeLoader,),
                       {"yaml_implicit_resolvers": ref.yaml_implicit_resolvers,
                        "yaml_constructors": ref.yaml_constructors})
    return _LOADER


_LOADER: type | None = None
_PACKAGE = re.compile(r"^\s*#\s*@package", re.M)


def _deep_merge(base: Any, top: Any) -> Any:
    """OmegaConf.merge on plain containers: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for k, v in top.items():
            out[k] = _deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(top)


def _merge(d: Path, choices: dict[str, str], files: _Files) -> dict[str, Any] | None:
    """The composed config for `choices`, merged as Hydra does; None when Hydra is needed."""
    primary = files.load(d / PRIMARY)
    if not isinstance(primary, dict):
        return None
    order: list[str | None] = []
    for item in primary.get("defaults") or []:
        if item == "_self_":
            order.append(None)
        elif isinstance(item, dict) and len(item) == 1 and next(iter(item)) in choices:
            order.append(next(iter(item)))
        else:
            return None
    if None not in order:
        order.append(None)
    config: Any = {}
    for group in order:
        if group is None:
            part = {k: v for k, v in primary.items() if k != "defaults"}
            text = files.text(d / PRIMARY)
        else:
            p = d / group / f"{choices[group]}.yaml"
            text, content = files.text(p), files.load(p)
            if _PACKAGE.search(text) or (isinstance(content, dict) and "defaults" in content) or \
                    not isinstance(content, (dict, type(None))):
                return None
            part = content or {}
            for name in reversed(group.split("/")):
                part = {name: part}
        if "${" in text:  # an interpolation: OmegaConf resolves it
            return None
        config = _deep_merge(config, part)
    return config
