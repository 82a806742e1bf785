"""Load: compose a spec folder with Hydra and keep a source map of every key.

Hydra (through OmegaConf) drops YAML positions, so each file that takes part in the
composition is also parsed with `yaml.compose`, and every key path of the composed config
is mapped back to the file, line and column that set it last, or to the command-line
override that set it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from aiops.compiler import guard
from aiops.compiler.diagnostics import Diagnostic, Location, did_you_mean

PathT = tuple  # a key path: ("features", 3, "source")

PRIMARY = "spec.yaml"


def path_str(path: PathT) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def parse_path(text: str) -> PathT:
    parts: list[Any] = []
    for tok in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        parts.append(int(tok[1:-1]) if tok.startswith("[") else tok)
    return tuple(parts)


@dataclass
class SourceMap:
    """key path -> where it was set (last writer wins, as in the composition)."""

    positions: dict[PathT, Location] = field(default_factory=dict)
    key_positions: dict[PathT, Location] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)  # file -> its lines
    children: dict[PathT, set[PathT]] = field(default_factory=dict)  # path -> its set child paths

    def set(self, path: PathT, loc: Location, key_loc: Location | None = None) -> None:
        self.positions[path] = loc
        self.key_positions[path] = key_loc or loc
        if path:
            self.children.setdefault(path[:-1], set()).add(path)

    def drop_under(self, path: PathT) -> None:
        """Forget every position below `path` (a list replaced whole); linear in what it drops."""
        stack = list(self.children.pop(path, ()))
        while stack:
            q = stack.pop()
            self.positions.pop(q, None)
            self.key_positions.pop(q, None)
            stack.extend(self.children.pop(q, ()))

    def clear(self) -> None:
        self.positions.clear()
        self.key_positions.clear()
        self.children.clear()

    def locate(self, path: PathT, key: bool = False) -> Location:
        table = self.key_positions if key else self.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), Location())

    def line_of(self, loc: Location) -> str | None:
        if loc.file is None or loc.line is None:
            return None
        lines = self.lines.get(loc.file)
        if not lines or loc.line > len(lines):
            return None
        return lines[loc.line - 1]


@dataclass
class Loaded:
    spec_dir: Path
    config: dict[str, Any]  # the composed, resolved config (plain containers)
    sources: SourceMap
    choices: dict[str, str]  # config group -> selected option
    overrides: list[str]
    files: list[Path]  # files that took part, in composition order

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.config)


def spec_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _walk_yaml(node: yaml.Node, prefix: PathT, file: str, sm: SourceMap) -> None:
    """Record where every key of `node` is set; a list replaces the previous one whole."""
    stack: list[tuple[yaml.Node, PathT]] = [(node, prefix)]
    while stack:
        n, at = stack.pop()
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                if at == () and key == "defaults":
                    continue
                p = at + (key,)
                sm.set(p, Location(file, v.start_mark.line + 1, v.start_mark.column + 1),
                       Location(file, k.start_mark.line + 1, k.start_mark.column + 1))
                stack.append((v, p))
        elif isinstance(n, yaml.SequenceNode):
            sm.drop_under(at)  # forget positions of the old items
            for i, v in enumerate(n.value):
                p = at + (i,)
                sm.set(p, Location(file, v.start_mark.line + 1, v.start_mark.column + 1))
                stack.append((v, p))


def _yaml_error(exc: yaml.YAMLError, file: str, lines: list[str]) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    problem = getattr(exc, "problem", None) or str(exc)
    ctx = getattr(exc, "context", None)
    ctx_mark = getattr(exc, "context_mark", None)
    src = lines[mark.line] if mark and mark.line < len(lines) else None
    if ctx and ctx_mark is not None and ctx_mark is not mark:
        ctx = f"{ctx} that starts at line {ctx_mark.line + 1}, column {ctx_mark.column + 1}"
    notes = (ctx,) if ctx else ()
    return Diagnostic("E002", f"YAML syntax error: {problem}", "", loc, src, notes,
                      "fix the YAML syntax at this position (indentation, a missing ':' or an unclosed quote)")


def _parse_file(path: Path, sm: SourceMap, diags: list[Diagnostic], prefix: PathT = ()) -> yaml.Node | None:
    file = _rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        diags.append(Diagnostic("E002", "YAML syntax error: the file is not UTF-8 text", "", Location(file),
                                notes=(str(exc),), help="save the file as UTF-8"))
        return None
    sm.lines[file] = text.splitlines()
    too_big = guard.check_text(text, file)
    if too_big is not None:
        line = sm.line_of(too_big.location)
        diags.append(replace(too_big, source_line=line[:160] + ("..." if len(line) > 160 else "") if line else None))
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        diags.append(_yaml_error(exc, file, sm.lines[file]))
        return None
    dup = _duplicate_keys(node, file, sm.lines[file], prefix)
    dup += guard.check_node(node, file, sm.lines[file], prefix)
    diags.extend(dup)
    return None if dup else node


def _duplicate_keys(node: yaml.Node | None, file: str, lines: list[str], prefix: PathT = ()) -> list[Diagnostic]:
    """A key written twice in one mapping: YAML keeps the last silently, Hydra refuses it."""
    out: list[Diagnostic] = []
    stack: list[tuple[yaml.Node | None, PathT]] = [(node, prefix)]
    while stack:
        n, at = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for k, v in n.value:
                key = str(k.value)
                if key in seen:
                    first = seen[key].start_mark
                    out.append(Diagnostic(
                        "E007", f"duplicate key '{key}'", path_str(at + (key,)),
                        Location(file, k.start_mark.line + 1, k.start_mark.column + 1),
                        lines[k.start_mark.line] if k.start_mark.line < len(lines) else None,
                        (f"'{key}' is already set at {file}:{first.line + 1}:{first.column + 1}",),
                        "keep one of the two: merge their contents under one key"))
                else:
                    seen[key] = k
                stack.append((v, at + (key,)))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, at + (i,)) for i, v in enumerate(n.value))
    return out


def _defaults_order(primary: yaml.Node | None) -> list[str]:
    """Group names (and '_self_') in the order of the primary defaults list."""
    order: list[str] = []
    if not isinstance(primary, yaml.MappingNode):
        return order
    for k, v in primary.value:
        if k.value != "defaults" or not isinstance(v, yaml.SequenceNode):
            continue
        for item in v.value:
            if isinstance(item, yaml.ScalarNode):
                order.append(item.value)
            elif isinstance(item, yaml.MappingNode) and item.value:
                order.append(str(item.value[0][0].value).split("@")[0].lstrip("+~"))
    if "_self_" not in order:
        order.append("_self_")
    return order


def load(spec_dir: str | Path, overrides: list[str] | None = None) -> tuple[Loaded | None, list[Diagnostic]]:
    """Compose the spec. Returns (loaded, diagnostics); loaded is None when it cannot compose."""
    overrides = list(overrides or [])
    diags: list[Diagnostic] = []
    bad_dir = guard.check_dir_name(str(spec_dir))
    if bad_dir is not None:
        return None, [bad_dir]
    d = Path(spec_dir)
    if not d.is_dir():
        siblings = [p.name for p in d.parent.iterdir() if p.is_dir()] if d.parent.is_dir() else []
        hint = did_you_mean(d.name, siblings)
        return None, [Diagnostic("E001", "spec folder not found", "", Location(str(spec_dir)),
                                 notes=(f"'{spec_dir}' is not a folder",),
                                 help=(hint.replace("did you mean '", f"did you mean '{d.parent}/") if hint
                                       else "give the folder that holds spec.yaml, e.g. specs/credit_risk"))]
    primary = d / PRIMARY
    if not primary.is_file():
        return None, [Diagnostic("E001", f"the spec folder has no {PRIMARY}", "", Location(_rel(d)),
                                 help=f"create {_rel(primary)} with a defaults list and the spec's keys")]

    # 1. parse every YAML file of the folder, so syntax errors anywhere are reported at once
    sm = SourceMap()
    nodes: dict[Path, yaml.Node | None] = {}
    every = sorted(d.rglob("*.yaml"))
    diags.extend(guard.check_folder(d, every, _rel))
    if diags:
        return None, diags
    for p in every:
        if "data" in p.relative_to(d).parts:
            continue
        nodes[p] = _parse_file(p, sm, diags, tuple(p.relative_to(d).parts[:-1]))
    if diags:
        return None, diags

    # 2. parse each override on its own, so that every bad one is reported
    groups = {p.name for p in d.iterdir() if p.is_dir() and any(p.glob("*.yaml"))}
    good, group_ovs, value_ovs = _parse_overrides(overrides, groups, diags)

    # 3. compose with the config-group choices, then check the value overrides' keys
    config, choices, err = _compose(d, group_ovs, sm, primary)
    if err is not None:
        return None, diags + [_relocate(err, d, nodes, primary, choices, group_ovs, sm)]
    kept = list(group_ovs)
    for ov, key, is_add in value_ovs:
        problem = None if is_add else _key_problem(config, _config_path(config, key), ov)
        if problem is None:
            kept.append(ov)
        else:
            diags.append(problem)
    if len(kept) != len(group_ovs):
        config, choices, err = _compose(d, kept, sm, primary)
        if err is not None:
            return None, diags + [_relocate(err, d, nodes, primary, choices, kept, sm)]
    overrides = kept
    files = _source_map(d, nodes, primary, choices, overrides, sm, config)
    return Loaded(d, config, sm, choices, overrides, files), diags


def _relocate(err: Diagnostic, d: Path, nodes: dict[Path, yaml.Node | None], primary: Path,
              choices: dict[str, str], overrides: list[str], sm: SourceMap) -> Diagnostic:
    """An interpolation error is found while composing, before the source map exists: locate it now."""
    if err.code != "E006" or not err.path:
        return err
    _source_map(d, nodes, primary, choices, overrides, sm, None)
    loc = sm.locate(parse_path(err.path))
    return replace(err, location=loc, source_line=sm.line_of(loc))


def _config_path(config: dict[str, Any] | None, key: str) -> PathT:
    """The key path of an override's key: a number is a list index where the config has a list."""
    out: list[Any] = []
    node: Any = config
    for part in parse_path(key):
        if isinstance(node, list) and isinstance(part, str) and part.isdigit():
            part = int(part)
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _source_map(d: Path, nodes: dict[Path, yaml.Node | None], primary: Path, choices: dict[str, str],
                overrides: list[str], sm: SourceMap, config: dict[str, Any] | None) -> list[Path]:
    """4. Fill the source map in composition order; returns the files that took part."""
    sm.clear()
    sm.positions[()] = Location(_rel(primary))
    files: list[Path] = []
    for item in _defaults_order(nodes.get(primary)):
        if item == "_self_":
            files.append(primary)
            _walk_yaml(nodes[primary], (), _rel(primary), sm)
            continue
        opt = choices.get(item)
        if opt is None:
            continue
        gfile = d / item / f"{opt}.yaml"
        if gfile in nodes and nodes[gfile] is not None:
            files.append(gfile)
            prefix = tuple(item.split("/"))
            # a key missing from the group file is reported at the file itself
            if prefix not in sm.positions:
                sm.set(prefix, Location(_rel(gfile)))
            _walk_yaml(nodes[gfile], prefix, _rel(gfile), sm)
    for ov in overrides:
        if "=" not in ov:
            continue
        key = ov.split("=", 1)[0].lstrip("+~")
        if key in choices or "/" in key:
            continue
        p = _config_path(config, key)
        sm.drop_under(p)  # the override sets the whole value: its items are located at it
        sm.set(p, Location(override=ov))
    return files


def _parse_overrides(overrides: list[str], groups: set[str], diags: list[Diagnostic]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    good: list[str] = []
    group_ovs: list[str] = []
    value_ovs: list[tuple[str, str, bool]] = []
    for ov in overrides:
        unsafe = guard.check_override(ov)
        if unsafe is not None:
            diags.append(unsafe)
            continue
        try:
            parsed = parser.parse_overrides([ov])[0]
        except HydraException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            diags.append(Diagnostic("E004", "a command-line override cannot be parsed", "", Location(override=ov),
                                    notes=(first,), help="write overrides as key.path=value or group=option, e.g. "
                                                         "model=logistic or thresholds.evaluation.roc_auc.min=0.8"))
            continue
        key = parsed.key_or_group
        if key.split("/")[0] in groups:
            value = None if parsed.is_sweep_override() else parsed.value()  # Hydra reports sweeps itself
            if not (value is None or isinstance(value, str)):  # Hydra itself fails on e.g. model=[1,2]
                diags.append(Diagnostic("E004", f"config group '{key}' takes one option name", key,
                                        Location(override=ov), notes=(f"got '{ov.split('=', 1)[-1]}'",),
                                        help=f"write {key}=option, e.g. model=logistic"))
                continue
            outside = guard.check_group_override(ov, key, value)
            if outside is not None:
                diags.append(outside)
                continue
            good.append(ov)
            group_ovs.append(ov)
            continue
        good.append(ov)
        value_ovs.append((ov, key, parsed.is_add() or parsed.is_force_add()))
    return good, group_ovs, value_ovs


def _compose(d: Path, overrides: list[str], sm: SourceMap, primary: Path):
    """Compose with Hydra; returns (config, choices, diagnostic-or-None)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(d.resolve()), version_base="1.3", job_name="aiops"):
            cfg = compose(config_name="spec", overrides=overrides, return_hydra_config=True)
            choices = {k: str(v) for k, v in cfg.hydra.runtime.choices.items()
                       if not k.startswith("hydra") and v is not None}
            with open_dict(cfg):
                cfg.pop("hydra")
            try:
                config = _resolve_without_resolvers(cfg)
            except OmegaConfBaseException as exc:
                key = getattr(exc, "full_key", "") or ""
                return None, choices, Diagnostic("E006", "an interpolation cannot be resolved", key,
                                            sm.locate(parse_path(key)) if key else Location(_rel(primary)),
                                            notes=(str(exc).splitlines()[0],), help="point ${...} at a key that exists")
    except MissingConfigException as exc:
        return None, {}, _missing_option(exc, d, overrides, sm, primary)
    except (HydraException, OmegaConfBaseException, ValueError, AssertionError) as exc:
        # Hydra rejects some malformed defaults lists (e.g. an empty group name) with an assert
        diag = _override_error(exc, overrides, config_keys=[])
        if diag.location == Location():
            diag = _blame(exc, diag, d, overrides, sm, primary)
        return None, {}, diag
    return config, choices, None


def _resolve_without_resolvers(cfg) -> dict[str, Any]:
    """The config as plain containers, with ${key} interpolations resolved and no resolver
    registered (oc.env, oc.decode, now, ...): a resolver in a spec fails instead of reading."""
    from omegaconf import OmegaConf
    from omegaconf.basecontainer import BaseContainer

    saved = BaseContainer._resolvers
    BaseContainer._resolvers = {}
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    finally:
        BaseContainer._resolvers = saved


def _blame(exc: Exception, diag: Diagnostic, d: Path, overrides: list[str], sm: SourceMap,
           primary: Path) -> Diagnostic:
    """A composition error whose message names no override: the spec's own defaults list is to
    blame when it fails alone, else the first override that fails on its own."""
    if not overrides:
        return _defaults_error(exc, sm, primary)
    alone = _compose(d, [], sm, primary)[2]
    if alone is not None:
        return alone
    culprit = overrides[0] if len(overrides) == 1 else next(
        (o for o in overrides if _compose(d, [o], sm, primary)[2] is not None), overrides[-1])
    return replace(diag, location=Location(override=culprit))


def _defaults_error(exc: Exception, sm: SourceMap, primary: Path) -> Diagnostic:
    file = _rel(primary)
    loc = Location(file)
    src = None
    for i, line in enumerate(sm.lines.get(file, []), 1):
        if re.match(r"defaults\s*:", line):
            loc, src = Location(file, i, 1), line
            break
    msg = str(exc).strip()
    return Diagnostic("E003", "the defaults list cannot be composed", "defaults", loc, src,
                      notes=(msg.splitlines()[0] if msg else f"Hydra rejected it ({type(exc).__name__})",),
                      help="list one '- group: option' item per config group, e.g. '- model: logistic', "
                           "then '- _self_'")


def _key_problem(config: dict[str, Any], path: PathT, ov: str) -> Diagnostic | None:
    node: Any = config
    for i, part in enumerate(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            continue
        here = path_str(path[:i]) or "the spec"
        options = [str(k) for k in node] if isinstance(node, dict) else []
        return Diagnostic("E005", f"override of a key that the spec does not have: '{path_str(path)}'",
                          path_str(path), Location(override=ov),
                          notes=(f"{here} has no key '{part}'" + (f"; its keys: {', '.join(options)}" if options else ""),),
                          help=did_you_mean(str(part), options) or f"check the key path, or add it with '+{ov}'")
    return None


def _missing_option(exc: Exception, d: Path, overrides: list[str], sm: SourceMap, primary: Path) -> Diagnostic:
    msg = str(exc)
    m = re.search(r"Could not find '([^']+)'", msg) or re.search(r"In '[^']+': Could not find '([^']+)'", msg)
    missing = m.group(1) if m else ""
    group, _, option = missing.rpartition("/")
    options = sorted(p.stem for p in (d / group).glob("*.yaml")) if group else []
    # where was the option chosen: an override, or the defaults list
    loc = Location(_rel(primary))
    src = None
    for ov in overrides:
        if ov.split("=", 1)[0].lstrip("+~") == group:
            loc = Location(override=ov)
            break
    else:
        for i, line in enumerate(sm.lines.get(_rel(primary), []), 1):
            if re.match(rf"\s*-\s*{re.escape(group)}\s*:\s*{re.escape(option)}\b", line):
                loc, src = Location(_rel(primary), i, line.index(group) + 1), line
                break
    if not group:
        return Diagnostic("E003", "a config in the defaults list does not exist", "defaults", loc, src,
                          notes=(msg.splitlines()[0],))
    return Diagnostic(
        "E003", f"unknown option '{option}' for config group '{group}'", f"defaults.{group}", loc, src,
        notes=(f"'{group}/{option}.yaml' does not exist in {_rel(d)}",
               f"available options in '{group}': {', '.join(options) or '(none)'}"),
        help=did_you_mean(option, options) or f"choose one of: {', '.join(options)}",
    )


def _override_error(exc: Exception, overrides: list[str], config_keys: list[str]) -> Diagnostic:
    msg = str(exc).strip()
    first = msg.splitlines()[0] if msg else type(exc).__name__
    bad = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") in msg or o in msg), None)
    m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        key = m.group(1)
        bad = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), bad)
        head = key.split(".")[0]
        hint = did_you_mean(head, config_keys) if head not in config_keys else None
        return Diagnostic("E005", f"override of a key that the spec does not have: '{key}'", key,
                          Location(override=bad or key), notes=(first,),
                          help=hint or f"check the key path, or add it with '+{key}=...' if it is new")
    if "mismatched input" in msg or "no viable alternative" in msg or "Error parsing override" in msg or \
            "token recognition error" in msg or "extraneous input" in msg or "missing" in msg.lower():
        return Diagnostic("E004", "a command-line override cannot be parsed", "", Location(override=bad or "?"),
                          notes=(first,), help="write overrides as key.path=value, e.g. model=logistic or "
                                               "thresholds.evaluation.roc_auc.min=0.8")
    return Diagnostic("E004", "the spec cannot be composed with these overrides", "",
                      Location(override=bad) if bad else Location(), notes=(first,),
                      help="check the override syntax: key.path=value, group=option")
