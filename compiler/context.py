"""What the semantic rules share: the typed spec, where each key came from, and a way to
report a diagnostic at a key path."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiops.compiler import schema as S
from aiops.compiler.diagnostics import Diagnostic, did_you_mean
from aiops.compiler.load import PathT, SourceMap, path_str

NUMERIC = ("int", "float", "bool")
CATEGORICAL = ("str", "category", "bool")


@dataclass
class Ctx:
    spec: S.Spec
    sm: SourceMap
    spec_dir: Path
    diags: list[Diagnostic] = field(default_factory=list)
    header: list[str] | None = None  # the data file's columns, when it could be read

    def err(self, code: str, summary: str, path: PathT, *notes: str, help: str | None = None,
            key: bool = False) -> None:
        loc = self.sm.locate(path, key=key)
        self.diags.append(Diagnostic(code, summary, path_str(path), loc, self.sm.line_of(loc), tuple(notes), help))

    warn = err  # codes starting with W are warnings

    @property
    def columns(self) -> dict[str, S.Column]:
        return (self.spec.data.columns if self.spec.data is not None else None) or {}

    def column_ref(self, name: str | None, path: PathT, what: str, code: str = "E310",
                   key: bool = False) -> S.Column | None:
        """Resolve a reference to a contract column, reporting it (with did-you-mean) if absent."""
        if name is None:
            return None
        col = self.columns.get(name)
        if col is None:
            decl = self.sm.locate(("data", "columns"), key=True)
            self.err(code, f"{what} refers to an undeclared column", path,
                     f"'{name}' is not a column of data.columns ({decl.render()})",
                     help=did_you_mean(name, self.columns) or "declare the column in data.columns, or fix the name",
                     key=key)
        return col
