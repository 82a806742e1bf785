"""compliance.md and compliance.html rendered from templates/compliance/, which only print
the document plan."""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from aiops.compiler.compliance.charts import inline_svg
from aiops.compiler.compliance.model import Document

TEMPLATES = Path(str(resources.files("aiops.templates"))) / "compliance"  # package data: in a wheel too


# ---------------------------------------------------------------- render and write
def _md_text(s: str) -> str:
    """Markdown-safe text on one line: pipes escaped (tables), no raw HTML tags."""
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", _md_code(s))


def _md_code(s: str) -> str:
    return " ".join(str(s).split()).replace("|", "\\|")


def render(doc: Document, svgs: dict[str, str]) -> dict[str, str]:
    import jinja2
    from markupsafe import Markup

    common = dict(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    md_env = jinja2.Environment(autoescape=False, **common)
    md_env.filters["md"] = _md_text
    md_env.filters["mdcode"] = _md_code
    html_env = jinja2.Environment(autoescape=True, **common)
    inline = {name: Markup(inline_svg(name, svg)) for name, svg in sorted(svgs.items())}
    md = md_env.get_template("compliance.md.j2").render(doc=doc)
    md = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", md)).rstrip("\n") + "\n"
    html = html_env.get_template("compliance.html.j2").render(doc=doc, svgs=inline)
    html = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", html)).rstrip("\n") + "\n"
    return {"compliance.md": md, "compliance.html": html}
