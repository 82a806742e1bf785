"""The compliance document plan: frozen dataclasses that templates only print, small builders
of its blocks, the section titles and regulation mapping, and the evidence files it reads."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHART_DIR = "evidence/charts"


# ---------------------------------------------------------------- the document plan
@dataclass(frozen=True)
class Cell:
    """One printed value: plain text, code (keys, hashes, files), a link, or a gate result."""

    text: str
    code: bool = False
    href: str = ""  # relative to the artefact folder, or '#anchor'
    tone: str = ""  # "pass" | "fail" | ""


Parts = tuple[Cell, ...]  # a table cell: one or more parts, printed comma-separated


@dataclass(frozen=True)
class Curve:
    x: tuple[float, ...]
    y: tuple[float, ...]
    rows: tuple[int, ...] = ()  # points of a calibration curve: rows per bin
    label: str = "model"


@dataclass(frozen=True)
class Matrix:
    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]  # rows: true class, columns: predicted class


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    error: float | None = None
    lo: float | None = None  # the bound, drawn as a tick
    hi: float | None = None
    tone: str = ""  # pass | fail | muted | ""


@dataclass(frozen=True)
class Panel:
    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Bars:
    panels: tuple[Panel, ...]
    xlabel: str
    xlim: tuple[float, float] | None = None


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Chart:
    name: str  # evidence/charts/<name>.svg
    kind: str  # roc | calibration | confusion | bars | histogram
    title: str
    caption: str
    data: Curve | Matrix | Bars | Histogram

    @property
    def path(self) -> str:
        return f"{CHART_DIR}/{self.name}.svg"


@dataclass(frozen=True)
class Block:
    kind: str  # text | list | table | chart
    title: str = ""
    text: str = ""
    tone: str = ""
    items: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Parts, ...], ...] = ()
    chart: Chart | None = None
    sources: Parts = ()


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    anchor: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Document:
    title: str
    status: str
    tone: str
    preamble: str
    regenerate: str
    sections: tuple[Section, ...]

    @property
    def charts(self) -> tuple[Chart, ...]:
        return tuple(b.chart for s in self.sections for b in s.blocks if b.chart is not None)


@dataclass(frozen=True)
class Missing:
    """A required section that would be empty, and the spec key that fills it."""

    section: str
    key: str
    value: Any
    expected: str
    example: str


# ---------------------------------------------------------------- small builders
def key(k: str) -> Cell:
    return Cell(k, code=True)


def file(p: str) -> Cell:
    return Cell(p, code=True, href=p)


def _parts(v: Any) -> Parts:
    if isinstance(v, Cell):
        return (v,)
    if isinstance(v, tuple):
        return v
    return (Cell(str(v)),)


def text(t: str, *sources: Cell, tone: str = "", title: str = "") -> Block:
    return Block("text", title=title, text=t, tone=tone, sources=sources)


def bullets(items: list[str], *sources: Cell, title: str = "") -> Block:
    return Block("list", title=title, items=tuple(items), sources=sources)


def table(columns: tuple[str, ...], rows: list[tuple], *sources: Cell, title: str = "") -> Block:
    return Block("table", title=title, columns=columns, rows=tuple(tuple(_parts(c) for c in r) for r in rows),
                 sources=sources)


def facts(rows: list[tuple[str, Any, Any]], *sources: Cell, title: str = "") -> Block:
    """A two-column list of claims, each with its source."""
    return table(("Item", "Value", "Source"), rows, *sources, title=title)


def chart(c: Chart, *sources: Cell, title: str | None = None) -> Block:
    return Block("chart", title=c.title if title is None else title, chart=c, sources=sources)


def result(passed: bool) -> Cell:
    return Cell("pass" if passed else "FAIL", tone="pass" if passed else "fail")


def f4(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def num(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def bound_text(lo: float | None, hi: float | None) -> str:
    parts = ([f">= {num(lo)}"] if lo is not None else []) + ([f"<= {num(hi)}"] if hi is not None else [])
    return " and ".join(parts) or "none"


def yes(v: bool) -> str:
    return "yes" if v else "no"


def days(n: int) -> str:
    return f"{n} day" + ("" if n == 1 else "s")


def anchor(title: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).strip().replace(" ", "-")


# ---------------------------------------------------------------- regulation mapping
TITLES = {
    "summary": "Summary",
    "mapping": "Regulation mapping",
    "problem": "Problem and KPIs",
    "use": "Intended and out-of-scope use",
    "data": "Data contract and provenance",
    "features": "Features",
    "model": "Model and assumptions",
    "evaluation": "Evaluation against thresholds",
    "fairness": "Fairness",
    "explanations": "Explanations",
    "parity": "ONNX parity",
    "limitations": "Limitations and ethical considerations",
    "security": "Security controls",
    "governance": "Governance",
    "monitoring": "Monitoring plan",
    "standards": "Standards and tools",
    "history": "Change history",
}

# (framework, spec value in governance.regulations, item, sections that answer it)
MAPPING: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("EU AI Act", "eu_ai_act", "Annex IV(1) general description of the AI system",
     ("summary", "problem", "use", "model")),
    ("EU AI Act", "eu_ai_act", "Annex IV(2) elements of the system and its development process",
     ("data", "features", "model", "evaluation", "parity")),
    ("EU AI Act", "eu_ai_act", "Annex IV(3) monitoring, functioning and control",
     ("evaluation", "fairness", "explanations", "limitations", "security")),
    ("EU AI Act", "eu_ai_act", "Annex IV(4) appropriateness of the performance metrics",
     ("problem", "evaluation")),
    ("EU AI Act", "eu_ai_act", "Annex IV(5) risk management system (Article 9)",
     ("governance", "limitations", "fairness", "monitoring")),
    ("EU AI Act", "eu_ai_act", "Annex IV(6) relevant changes through the lifecycle", ("history",)),
    ("EU AI Act", "eu_ai_act", "Annex IV(7) standards and specifications applied", ("standards",)),
    ("EU AI Act", "eu_ai_act", "Annex IV(9) post-market monitoring plan (Article 72)", ("monitoring",)),
    ("NIST AI RMF", "nist_ai_rmf", "GOVERN", ("governance", "security", "history")),
    ("NIST AI RMF", "nist_ai_rmf", "MAP", ("problem", "use", "data", "limitations")),
    ("NIST AI RMF", "nist_ai_rmf", "MEASURE", ("evaluation", "fairness", "explanations", "parity")),
    ("NIST AI RMF", "nist_ai_rmf", "MANAGE", ("monitoring", "governance", "security")),
    ("SR 11-7", "sr_11_7", "Purpose", ("problem", "use")),
    ("SR 11-7", "sr_11_7", "Data", ("data", "features")),
    ("SR 11-7", "sr_11_7", "Assumptions", ("model", "features")),
    ("SR 11-7", "sr_11_7", "Limitations", ("limitations",)),
    ("SR 11-7", "sr_11_7", "Validation", ("evaluation", "fairness", "parity", "explanations")),
    ("SR 11-7", "sr_11_7", "Ongoing monitoring", ("monitoring",)),
    ("SR 11-7", "sr_11_7", "Governance", ("governance", "history")),
)


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Evidence:
    data: dict
    evaluation: dict
    parity: dict
    importance: dict
    profile: dict
    blessing: dict
    features: dict
    contract: dict
    history: tuple[dict, ...] | None  # evidence/history.json, written by `aiops retrain`
    overrides: dict | None = None  # evidence/overrides.json: thresholds loosened on the command line
    diff: dict | None = None  # evidence/diff.json: the change from the model this one replaced (aiops retrain)


def read_evidence(stage: Path) -> Evidence:
    def load(rel: str) -> Any:
        return json.loads((stage / rel).read_text(encoding="utf-8"))

    hist = stage / "evidence" / "history.json"
    return Evidence(
        data=load("evidence/data.json"), evaluation=load("evidence/evaluation.json"),
        parity=load("evidence/parity.json"), importance=load("evidence/importance.json"),
        profile=load("evidence/profile.json"), blessing=load("evidence/blessing.json"),
        features=load("features.json"), contract=load("contract.json"),
        history=tuple(load("evidence/history.json")) if hist.is_file() else None,
        overrides=load("evidence/overrides.json") if (stage / "evidence" / "overrides.json").is_file() else None,
        diff=load("evidence/diff.json") if (stage / "evidence" / "diff.json").is_file() else None,
    )
