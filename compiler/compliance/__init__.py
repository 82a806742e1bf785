"""compliance: the compliance document of a build (compliance.md, compliance.html, evidence/charts/).

plan + evidence files -> a resolved, frozen document plan in which every claim names its
source (a spec key or an evidence file) -> a check that no required section is empty (one
DataError naming every empty section and the spec key that fills it; nothing is drawn or
written then) -> charts (matplotlib, byte-deterministic SVG) -> Markdown and HTML rendered
from templates/compliance/, which only print the document plan. No clocks.
"""
from __future__ import annotations

from pathlib import Path

from aiops.compiler.plan import Plan
from aiops.compiler.compliance.charts import draw, inline_svg
from aiops.compiler.compliance.model import CHART_DIR, MAPPING, TITLES, Document, Evidence, Missing, anchor, read_evidence
from aiops.compiler.compliance.render import render
from aiops.compiler.compliance.required import missing_error, missing_sections
from aiops.compiler.compliance.sections import document_plan

__all__ = ["CHART_DIR", "MAPPING", "TITLES", "Document", "Evidence", "Missing", "anchor", "document_plan", "draw",
           "inline_svg", "missing_error", "missing_sections", "read_evidence", "render", "write_compliance"]


def write_compliance(plan: Plan, stage: Path) -> None:
    """Write compliance.md, compliance.html and evidence/charts/*.svg into `stage`.

    Raises DataError (reported as a build error, exit 2, nothing written) when a section the
    regulations need would be empty, naming each section and the spec key that fills it.
    """
    missing = missing_sections(plan)
    if missing:
        raise missing_error(plan, missing)
    doc = document_plan(plan, read_evidence(stage))
    svgs = draw(doc.charts)
    (stage / CHART_DIR).mkdir(parents=True, exist_ok=True)
    for old in sorted((stage / CHART_DIR).glob("*.svg")):  # a chart this build does not draw must not linger
        old.unlink()
    for name, svg in sorted(svgs.items()):
        (stage / CHART_DIR / f"{name}.svg").write_text(svg, encoding="utf-8")
    for rel, content in render(doc, svgs).items():
        (stage / rel).write_text(content, encoding="utf-8")
