"""Guards on spec text before anything composes it: a spec is untrusted input.

Run by `load` before Hydra sees a file or an override, each returning diagnostics:

- bounds: the YAML files of a spec folder together are at most MAX_SPEC_BYTES, each file
  expands (YAML aliases included) to at most MAX_VALUES values and nests at most MAX_DEPTH
  deep; checked on the event stream, which never recurses and stops at the first excess;
- every YAML file is a regular file inside the spec folder (no link to /dev/zero or /etc);
- no OmegaConf resolver (`${oc.env:VAR}`, `${oc.decode:...}`, any `${name:...}`): a spec
  names environment variables (`key_env: AIOPS_DATA_KEY`), it never reads them;
- no `hydra` key, `hydra/...` defaults entry or `@package` outside the file's own group:
  `hydra.searchpath` would compose config from anywhere; a config-group option, in a
  defaults list or an override, is a plain file name (`model=../../elsewhere/x` is refused);
- no control character (a newline, say) in the spec folder's path or in an override.
"""
from __future__ import annotations

import re
import stat
from pathlib import Path

import yaml

from aiops.compiler.diagnostics import Diagnostic, Location

MAX_SPEC_BYTES = 1_048_576  # all YAML files of a spec folder together (1 MiB)
MAX_VALUES = 10_000  # values of one YAML file once its aliases are expanded
MAX_DEPTH = 32  # nested mappings and lists in one YAML file or override
MAX_OVERRIDE_CHARS = 4096

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.\-]*)\s*:")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")
OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")  # a config-group option: a file name in its folder
GROUP = re.compile(r"[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*")  # a config group: a folder of the spec
_PREFIXES = re.compile(r"^((override|optional)\s+)*[+~]*")


def printable(text: str) -> str:
    """`text` with every control character shown as an escape (for messages)."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def check_folder(d: Path, files: list[Path], rel) -> list[Diagnostic]:
    """E012 the folder's YAML is too large; E015 a YAML file is a link out or not a file."""
    out: list[Diagnostic] = []
    root = d.resolve()
    total = 0
    links = [p for p in d.rglob("*") if p.is_symlink() and (p.suffix == ".yaml" or p.is_dir())]
    for p in sorted(set(files) | set(links)):
        real = p.resolve()
        try:
            st = real.stat()
        except OSError:
            st = None
        kind_ok = st is not None and (stat.S_ISREG(st.st_mode) or (stat.S_ISDIR(st.st_mode) and p.suffix != ".yaml"))
        if not kind_ok or not real.is_relative_to(root):
            out.append(Diagnostic(
                "E015", "a spec file is not a regular file inside the spec folder", "", Location(rel(p)),
                notes=(f"'{rel(p)}' points to '{real}'",),
                help="copy the file into the spec folder instead of linking to it"))
            continue
        if p.suffix == ".yaml":
            total += st.st_size
    if total > MAX_SPEC_BYTES:
        out.append(Diagnostic(
            "E012", "the spec folder is too large", "", Location(rel(d)),
            notes=(f"its YAML files hold {total:,} bytes; the limit is {MAX_SPEC_BYTES:,}",),
            help="a spec is a few kilobytes: keep data in data files, not in YAML"))
    return out


def check_text(text: str, file: str) -> Diagnostic | None:
    """E013 aliases expand to too many values, E014 nesting too deep; None when within bounds
    (or when the YAML is malformed: the parser then reports it with its position)."""
    anchors: dict[str, int] = {}
    starts: list[tuple[int, str | None]] = []
    total = 0
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            if isinstance(ev, yaml.AliasEvent):
                total += anchors.get(ev.anchor, 1)
            elif isinstance(ev, yaml.ScalarEvent):
                total += 1
                if ev.anchor:
                    anchors[ev.anchor] = 1
            elif isinstance(ev, yaml.CollectionStartEvent):
                total += 1
                starts.append((total, ev.anchor))
                if len(starts) > MAX_DEPTH:
                    return _at("E014", "the YAML nests too deep", file, ev,
                               f"mappings and lists nest more than {MAX_DEPTH} levels deep here",
                               "a spec nests a few levels: flatten this value")
            elif isinstance(ev, yaml.CollectionEndEvent):
                begin, anchor = starts.pop()
                if anchor:
                    anchors[anchor] = total - begin + 1
            if total > MAX_VALUES:
                return _at("E013", "the YAML expands to too many values", file, ev,
                           f"with its aliases (*name) expanded, this file holds more than {MAX_VALUES:,} values",
                           "write the values out, or reuse an anchor fewer times")
    except yaml.YAMLError:
        return None
    return None


def _at(code: str, summary: str, file: str, ev: yaml.Event, note: str, help: str) -> Diagnostic:
    m = ev.start_mark
    return Diagnostic(code, summary, "", Location(file, m.line + 1, m.column + 1), None, (note,), help)


def _path_str(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def check_node(node: yaml.Node | None, file: str, lines: list[str], prefix: tuple = ()) -> list[Diagnostic]:
    """E010 a resolver in a value; E011 a hydra key, hydra defaults entry or foreign @package.
    `prefix` is the key path of a config-group file (("model",) for model/logistic.yaml)."""
    out: list[Diagnostic] = []
    group_file = bool(prefix)

    def err(code: str, summary: str, mark, note: str, help: str, path: tuple = ()) -> None:
        line = lines[mark.line][:160] if mark.line < len(lines) else None
        out.append(Diagnostic(code, summary, _path_str(path), Location(file, mark.line + 1, mark.column + 1), line,
                              (note,), help))

    for i, line in enumerate(lines[:20]):
        m = _PACKAGE.match(line)
        if m and group_file and (m.group(1).startswith(("hydra", "_global_"))):
            out.append(Diagnostic("E011", "a spec file may not write outside its own config group", "",
                                  Location(file, i + 1, line.index(m.group(1)) + 1), line,
                                  (f"'@package {m.group(1)}' would set keys outside this file's group",),
                                  "remove the @package line"))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == "hydra":
                err("E011", "a spec may not configure Hydra", k.start_mark,
                    "'hydra' settings (searchpath, run dirs, launchers) reach outside the spec folder",
                    "remove the 'hydra' key: a spec composes only the config groups of its own folder", ("hydra",))
            elif k.value == "defaults" and isinstance(v, yaml.SequenceNode):
                for item in v.value:
                    _check_default(item, err)
    seen: set[int] = set()  # an aliased node is checked once (expansion is bounded, but need not be walked)
    stack: list[tuple[yaml.Node | None, tuple]] = [(node, prefix)]
    while stack:
        n, at = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, yaml.ScalarNode):
            m = RESOLVER.search(str(n.value)) if "${" in str(n.value) else None
            if m:
                err("E010", f"a spec value may not call the resolver '{m.group(1)}'", n.start_mark,
                    "resolvers read the environment or files at compile time, and the value lands in "
                    "committed documents",
                    "write the text itself; name an environment variable in a *_env key (e.g. key_env) instead", at)
        elif isinstance(n, yaml.MappingNode):
            stack.extend((v, at + (str(k.value),)) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, at + (i,)) for i, v in enumerate(n.value))
    return out


def _check_default(item: yaml.Node, err) -> None:
    """A defaults entry names a config group of this folder and one of its files, nothing else."""
    if isinstance(item, yaml.ScalarNode):
        group, option = str(item.value), None
    elif isinstance(item, yaml.MappingNode) and len(item.value) == 1:
        group, option = str(item.value[0][0].value), item.value[0][1]
    else:
        return  # Hydra reports malformed entries itself (E003)
    bare = _PREFIXES.sub("", group).lstrip("/")
    if bare.startswith("hydra"):
        err("E011", "a spec may not configure Hydra", item.start_mark,
            f"the defaults entry '{group}' selects a Hydra config",
            "remove it: a spec composes only the config groups of its own folder")
        return
    value = option.value if isinstance(option, yaml.ScalarNode) else None
    if bare == "_self_" and option is None:
        return
    if not GROUP.fullmatch(bare) or (option is not None and not (
            isinstance(option, yaml.ScalarNode) and (OPTION.fullmatch(str(value)) or value in ("null", "")))):
        shown = group if option is None else f"{group}: {value if value is not None else '...'}"
        err("E003", "a defaults entry reaches outside the spec folder", item.start_mark,
            f"'{shown}' is not a config group of this folder and one of its files (no '/', '..' or '@' "
            "in an option)",
            "write '- group: option', where group/option.yaml is a file of the spec folder")


def check_group_override(ov: str, key: str, value: str | None) -> Diagnostic | None:
    """E003 a group override whose option is not a plain file name of the group's folder."""
    if (value is None or OPTION.fullmatch(value)) and GROUP.fullmatch(key):
        return None
    return Diagnostic("E003", f"config group '{key}' takes an option of its own folder", key,
                      Location(override=printable(ov)),
                      notes=(f"'{value}' is not a file name in the folder '{key}' (letters, digits, '_' and '-')",),
                      help=f"write {key}=option, where {key}/option.yaml is a file of the spec folder")


def check_override(ov: str) -> Diagnostic | None:
    """E016 a control character or an over-long override; E010 a resolver; E011 a hydra key; E014 depth."""
    shown = printable(ov[:200]) + ("..." if len(ov) > 200 else "")
    if len(ov) > MAX_OVERRIDE_CHARS or not all(ch.isprintable() or ch == " " for ch in ov):
        why = (f"it is {len(ov):,} characters long; the limit is {MAX_OVERRIDE_CHARS:,}"
               if len(ov) > MAX_OVERRIDE_CHARS else "it holds a control character (a newline, tab or escape)")
        return Diagnostic("E016", "a command-line override holds characters a spec may not use", "",
                          Location(override=shown), notes=(why,),
                          help="write the value on one line, with printable characters only")
    key = ov.split("=", 1)[0].lstrip("+~")
    if re.sub(r"^((override|optional)\s+)*[+~/]*", "", key).startswith("hydra"):
        return Diagnostic("E011", "a spec may not configure Hydra", key, Location(override=shown),
                          notes=("'hydra' settings (searchpath, run dirs, launchers) reach outside the spec folder",),
                          help="remove this override")
    m = RESOLVER.search(ov)
    if m:
        return Diagnostic("E010", f"a spec value may not call the resolver '{m.group(1)}'", key,
                          Location(override=shown),
                          notes=("resolvers read the environment or files at compile time, and the value lands in "
                                 "committed documents",),
                          help="write the text itself; name an environment variable in a *_env key instead")
    depth = deepest = 0
    for ch in ov:
        depth += ch in "[{"
        depth -= ch in "]}"
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        return Diagnostic("E014", "the override nests too deep", key, Location(override=shown),
                          notes=(f"lists and mappings nest more than {MAX_DEPTH} levels deep",),
                          help="a spec nests a few levels: flatten this value")
    return None


def check_dir_name(spec_dir: str) -> Diagnostic | None:
    """E016 a control character in the spec folder's path (it is printed into generated files)."""
    if all(ch.isprintable() or ch == " " for ch in spec_dir):
        return None
    return Diagnostic("E016", "the spec folder's path holds characters a spec may not use", "",
                      Location(printable(spec_dir)),
                      notes=("it holds a control character (a newline, tab or escape)",),
                      help="rename the folder: letters, digits, '_', '-' and '/'")
