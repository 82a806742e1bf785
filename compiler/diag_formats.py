"""Diagnostics for machines: JSON, SARIF 2.1.0 and GitHub workflow annotations.

`aiops check --format` and `aiops compile --check --format` print the same diagnostics the
text renderer prints, in the language a CI system reads. Spec text is untrusted, so every
value placed in a workflow command is escaped (a newline in a spec string cannot start a new
workflow command).
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from aiops.compiler import __version__
from aiops.compiler.diagnostics import Diagnostic, render_all, sort_diagnostics

FORMATS = ("text", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _message(d: Diagnostic) -> str:
    parts = [d.summary]
    if d.path:
        parts[0] += f" ({d.path})"
    parts.extend(d.notes)
    if d.help:
        parts.append(f"help: {d.help}")
    return "\n".join(parts)


def as_dict(d: Diagnostic) -> dict[str, Any]:
    loc = d.location
    return {"code": d.code, "severity": "error" if d.is_error else "warning", "summary": d.summary,
            "path": d.path, "file": loc.file, "line": loc.line, "column": loc.col, "override": loc.override,
            "source_line": d.source_line.strip() if d.source_line is not None else None,
            "notes": list(d.notes), "help": d.help}


def to_json(diags: Sequence[Diagnostic]) -> str:
    ds = sort_diagnostics(diags)
    errors = sum(d.is_error for d in ds)
    return json.dumps({"tool": "aiops", "version": __version__, "errors": errors, "warnings": len(ds) - errors,
                       "diagnostics": [as_dict(d) for d in ds]}, indent=2, sort_keys=True)


def to_sarif(diags: Sequence[Diagnostic]) -> str:
    ds = sort_diagnostics(diags)
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for d in ds:
        rules.setdefault(d.code, {"id": d.code, "shortDescription": {"text": d.summary}})
        result: dict[str, Any] = {"ruleId": d.code, "level": "error" if d.is_error else "warning",
                                  "message": {"text": _message(d)}}
        loc = d.location
        if loc.file is not None:
            region: dict[str, Any] = {}
            if loc.line is not None:
                region = {"startLine": loc.line, "startColumn": loc.col or 1}
                if d.source_line is not None:
                    region["snippet"] = {"text": d.source_line.rstrip("\n")}
            physical: dict[str, Any] = {"artifactLocation": {"uri": loc.file}}
            if region:
                physical["region"] = region
            result["locations"] = [{"physicalLocation": physical}]
        elif loc.override is not None:
            result["locations"] = [{"logicalLocations": [{"name": loc.override, "kind": "command-line override"}]}]
        if d.path:
            result["properties"] = {"keyPath": d.path}
        results.append(result)
    order = sorted(rules)
    for r in results:
        r["ruleIndex"] = order.index(r["ruleId"])
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0",
           "runs": [{"tool": {"driver": {"name": "aiops", "version": __version__,
                                         "rules": [rules[k] for k in sorted(rules)]}},
                     "results": results}]}
    return json.dumps(doc, indent=2, sort_keys=True)


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(diags: Sequence[Diagnostic]) -> str:
    """One workflow command per diagnostic: `::error file=F,line=L,col=C,title=CODE::message`."""
    lines = []
    for d in sort_diagnostics(diags):
        loc = d.location
        props = []
        if loc.file is not None:
            props.append(f"file={_gh_prop(loc.file)}")
            if loc.line is not None:
                props.append(f"line={loc.line}")
                props.append(f"col={loc.col or 1}")
        props.append(f"title={_gh_prop(d.code + ': ' + d.summary)}")
        msg = _message(d)
        if loc.override is not None:
            msg = f"in command-line override '{loc.override}': {msg}"
        lines.append(f"::{'error' if d.is_error else 'warning'} {','.join(props)}::{_gh_data(msg)}")
    return "\n".join(lines)


def render(diags: Sequence[Diagnostic], fmt: str, wrote_nothing: bool = True) -> str:
    if fmt == "json":
        return to_json(diags)
    if fmt == "sarif":
        return to_sarif(diags)
    if fmt == "github":
        return to_github(diags)
    return render_all(diags, wrote_nothing=wrote_nothing)


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="how diagnostics are printed: text (default), json, sarif (SARIF 2.1.0 for "
                             "code scanning) or github (workflow annotations on the spec's lines); "
                             "machine formats go to stdout")
