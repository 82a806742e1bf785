"""Where a build writes: the output folder, proven inside its root, and replaced safely.

- `output_dir`: `generated/<name>` (or `--out DIR`) is computed, then proven to be a direct
  child of its root (no '..', no link) before anything is written, moved or deleted.
- `replace`: the staged artefacts go to `<out>.new` (marked incomplete while it fills), the
  old folder to `<out>.old`, then `<out>.new` becomes `<out>`. Only a folder aiops made is
  ever deleted: one that carries the mark, or whose manifest.json names the same model.
- `staging`: the `aiops-build-*` temporary folder, locked while the build runs; the next
  build deletes the ones whose owner died (kill -9) and the `<out>.new`/`.old` it left.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, no cleaning of others' folders
    fcntl = None

MARK = ".aiops-incomplete"  # in a folder aiops is filling or deleting; never in finished output
STAGING_PREFIX = "aiops-build-"
_LOCK = ".lock"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class OutputError(Exception):
    """A user error about the output folder: printed as is, exit 2."""


def output_dir(name: str, out: str | None) -> Path:
    """The folder a build of `name` writes, proven to be a direct child of its root."""
    target = Path(out) if out else Path("generated") / name
    root = target.parent
    where = f"--out {out}" if out else f"spec name '{name}'"
    leaf = Path(out).name if out else name  # Path("generated") / "" would be generated/ itself
    if not _FOLDER_NAME.fullmatch(leaf) or leaf in (".", "..") or (not out and target.name != name):
        raise OutputError(f"error: the output folder '{target}' ({where}) is not a plain folder name\n"
                          f"   = help: name the model with letters, digits and '_' (name: credit_risk)")
    if target.is_symlink() or target.resolve().parent != root.resolve():
        raise OutputError(f"error: the output folder '{target}' ({where}) does not lie inside "
                          f"'{root}'\n   = help: give a folder that is not a link, e.g. --out generated/{name}")
    return target


def _manifest_name(folder: Path) -> str | None:
    try:
        body = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body.get("name") if isinstance(body, dict) else None


def ours(folder: Path, name: str | None) -> bool:
    """A folder aiops made: marked as being filled/deleted, or holding the manifest of `name`."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return (folder / MARK).is_file() or (name is not None and _manifest_name(folder) == name)


def remove_ours(folder: Path, name: str | None) -> None:
    """Delete `folder` if aiops made it; refuse otherwise. Marked first, so that a kill halfway
    leaves a folder the next build still recognises."""
    if not folder.exists() and not folder.is_symlink():
        return
    if not ours(folder, name):
        raise OutputError(f"error: refusing to delete '{folder}': aiops did not make it (no manifest.json "
                          f"of '{name}')\n   = help: move it away, or choose another --out")
    (folder / MARK).write_text("an aiops build is writing or deleting this folder; safe to delete\n")
    for child in folder.iterdir():
        if child.name == MARK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (folder / MARK).unlink()
    folder.rmdir()


def clean_interrupted(out_dir: Path, name: str | None) -> None:
    """What a killed build of `out_dir` left: `<out>.new`, `<out>.old` (if aiops made them)."""
    for suffix in (".new", ".old"):
        left = out_dir.with_name(out_dir.name + suffix)
        if ours(left, name):
            remove_ours(left, name)


def replace(stage: Path, out_dir: Path) -> None:
    """Put the staged artefacts at `out_dir`, replacing what a previous build wrote there."""
    name = _manifest_name(stage)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    new = out_dir.with_name(out_dir.name + ".new")
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists() or out_dir.is_symlink():
        empty = out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir())
        if not empty and not ours(out_dir, name):
            raise OutputError(f"error: refusing to replace '{out_dir}': it is not a folder aiops wrote for "
                              f"'{name}' (no manifest.json of '{name}')\n"
                              f"   = help: move it away, or choose another --out")
    remove_ours(new, name)
    remove_ours(old, name)
    new.mkdir()
    (new / MARK).write_text("an aiops build is writing this folder; safe to delete\n")
    shutil.copytree(stage, new, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", MARK))
    (new / MARK).unlink()
    if out_dir.exists():
        out_dir.rename(old)
    new.rename(out_dir)
    remove_ours(old, name)


@contextmanager
def staging() -> Iterator[Path]:
    """A private temporary folder for one build, locked while it runs; the stale ones that
    killed builds left behind are deleted first."""
    clean_stale_staging()
    tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    lock = open(tmp / _LOCK, "w")
    try:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield tmp
    finally:
        lock.close()
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale_staging(max_unlocked_age: float = 6 * 3600.0) -> list[Path]:
    """Delete `aiops-build-*` folders of this user whose build is gone (its lock is free)."""
    if fcntl is None:
        return []
    removed = []
    for d in Path(tempfile.gettempdir()).glob(STAGING_PREFIX + "*"):
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            lock_file = d / _LOCK
            if not lock_file.is_file():  # made a moment ago, or by a build that died at once
                if time.time() - d.stat().st_mtime < max_unlocked_age:
                    continue
            else:
                with open(lock_file) as lk:
                    try:
                        fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # a running build holds it
                    if time.time() - lock_file.stat().st_mtime < 60:
                        continue  # a build that is only now taking its lock
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except OSError:
            continue
    return removed


def inside(child: Path, parent: Path) -> Path:
    """`child`, proven to lie inside `parent` (resolved), for the staging copy."""
    if not child.resolve().is_relative_to(parent.resolve()) or child.resolve() == parent.resolve():
        raise OutputError(f"error: '{child}' does not lie inside '{parent}'")
    return child


def history_dir(artefact_dir: Path) -> Path:
    return artefact_dir.parent / ".history" / artefact_dir.name


def archive(d: Path) -> Path:
    """Copy the artefact folder `d` into its history (`.history/<name>/NNNN`); the copy's path."""
    h = history_dir(d)
    h.mkdir(parents=True, exist_ok=True)
    n = max([int(p.name) for p in h.iterdir() if p.is_dir() and p.name.isdigit()] or [0]) + 1
    tmp = h / f".{n:04d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(d, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp.rename(h / f"{n:04d}")
