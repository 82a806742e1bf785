"""Import a generated pipeline package (`<artefacts>/pipeline/`) under a private module name.

Used by compile and retrain, which train by calling its `fit`, and by `aiops run-pipeline`.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


class PipelineImportError(Exception):
    """The folder holds no importable generated pipeline."""


def import_pipeline(folder: Path, name: str) -> dict[str, ModuleType]:
    """The modules schema, features and train of the package in `folder`, imported without
    writing __pycache__ among the artefacts."""
    pkg = f"_aiops_generated_{name}_{abs(hash(str(Path(folder).resolve()))) % 10**8}"
    if not pkg.isidentifier():  # the name grammar makes it one; never import under anything else
        raise PipelineImportError(f"cannot import the generated package as '{pkg}'")
    init = Path(folder) / "__init__.py"
    if not init.is_file():
        raise PipelineImportError(f"no generated pipeline at '{folder}' (no __init__.py)")
    for mod in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[mod]  # a folder imported before may have changed since
    spec = importlib.util.spec_from_file_location(pkg, init, submodule_search_locations=[str(folder)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[pkg] = mod
    was, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(mod)
        return {n: importlib.import_module(f"{pkg}.{n}") for n in ("schema", "features", "train")}
    finally:
        sys.dont_write_bytecode = was
