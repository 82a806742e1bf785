"""CI-native output: `--format json|sarif|github` for check and compile --check, and the
library-version verdict of `compile --check` (E910) before any training."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jsonschema

from aiops.compiler.diag_formats import to_github
from aiops.compiler.diagnostics import Diagnostic, Location
from tests._build import ROOT

AIOPS = [sys.executable, "-m", "aiops.compiler.cli"]

# The constraints of the official SARIF 2.1.0 schema (sarif-schema-2.1.0.json, OASIS) on every
# object aiops emits: required properties, the `level` and `version` enums, integer ranges and
# additionalProperties: false, so a misspelt or invented property fails the test.
_MSG = {"type": "object", "additionalProperties": False, "properties": {"text": {"type": "string"}},
        "required": ["text"]}
_REGION = {"type": "object", "additionalProperties": False, "properties": {
    "startLine": {"type": "integer", "minimum": 1}, "startColumn": {"type": "integer", "minimum": 1},
    "snippet": {"type": "object", "additionalProperties": False, "properties": {"text": {"type": "string"}}}}}
_LOCATION = {"type": "object", "additionalProperties": False, "properties": {
    "physicalLocation": {"type": "object", "additionalProperties": False, "properties": {
        "artifactLocation": {"type": "object", "additionalProperties": False,
                             "properties": {"uri": {"type": "string"}}},
        "region": _REGION}},
    "logicalLocations": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                    "properties": {"name": {"type": "string"},
                                                                   "kind": {"type": "string"}}}}}}
SARIF_SUBSET = {
    "type": "object", "additionalProperties": False, "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string"},
        "version": {"enum": ["2.1.0"]},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "additionalProperties": False, "required": ["driver"], "properties": {
                    "driver": {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
                        "name": {"type": "string"}, "version": {"type": "string"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False, "required": ["id"],
                            "properties": {"id": {"type": "string"}, "shortDescription": _MSG}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": -1},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": _MSG,
                        "locations": {"type": "array", "items": _LOCATION},
                        "properties": {"type": "object"}}}}}}}}}


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AIOPS_DEBUG"}
    return subprocess.run([*AIOPS, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_check_sarif_is_valid_and_points_at_the_spec_lines(spec_copy):
    spec = spec_copy("credit_risk")
    spec.replace("spec.yaml", "other: duration_in_month", "other: duration_in_mnth")
    res = run("check", spec.rel, "thresholds.evaluation.roc_auc.min=74", "--format", "sarif", cwd=spec.dir.parent.parent)
    assert res.returncode == 2, res.stderr
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, SARIF_SUBSET)
    results = doc["runs"][0]["results"]
    by_rule = {r["ruleId"]: r for r in results}
    assert set(by_rule) == {"E311", "E603"}
    region = by_rule["E311"]["locations"][0]["physicalLocation"]
    assert region["artifactLocation"]["uri"] == "specs/credit_risk/spec.yaml"
    assert (region["region"]["startLine"], region["region"]["startColumn"]) == tuple(
        int(x) for x in spec.where("spec.yaml", "duration_in_mnth", "duration_in_mnth").split(":")[1:])
    assert by_rule["E311"]["message"]["text"].endswith("help: did you mean 'duration_in_month'?")
    assert by_rule["E603"]["locations"][0]["logicalLocations"][0]["name"] == "thresholds.evaluation.roc_auc.min=74"
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert [rules[r["ruleIndex"]]["id"] for r in results] == [r["ruleId"] for r in results]


def test_check_github_annotations_and_json(spec_copy):
    spec = spec_copy("credit_risk")
    spec.replace("spec.yaml", "other: duration_in_month", "other: duration_in_mnth")
    res = run("check", spec.rel, "--format", "github", cwd=spec.dir.parent.parent)
    assert res.returncode == 2
    where = spec.where("spec.yaml", "duration_in_mnth", "duration_in_mnth").split(":")
    assert res.stdout.splitlines() == [
        f"::error file=specs/credit_risk/spec.yaml,line={where[1]},col={where[2]},"
        "title=E311%3A feature refers to an undeclared column::feature refers to an undeclared column "
        "(features[5].other)%0A'duration_in_mnth' is not a column of data.columns "
        "(specs/credit_risk/spec.yaml:53:3)%0Ahelp: did you mean 'duration_in_month'?"]
    res = run("check", spec.rel, "--format", "json", cwd=spec.dir.parent.parent)
    doc = json.loads(res.stdout)
    assert (doc["errors"], doc["warnings"]) == (1, 0)
    assert doc["diagnostics"][0]["code"] == "E311" and doc["diagnostics"][0]["line"] == int(where[1])
    spec.replace("spec.yaml", "other: duration_in_mnth", "other: duration_in_month")
    ok = run("check", spec.rel, "--format", "json", cwd=spec.dir.parent.parent)
    assert ok.returncode == 0 and json.loads(ok.stdout)["diagnostics"] == []


def test_github_annotation_cannot_be_steered_by_spec_text():
    """A newline in spec text must not start a second workflow command."""
    d = Diagnostic("E100", "unknown key", "x", Location(file="specs/a,b:c.yaml", line=3, col=1),
                   notes=("value\n::warning::injected %0A",))
    out = to_github([d])
    assert "\n" not in out and "\r" not in out and out.startswith("::error file=")  # one command, one line
    assert "file=specs/a%2Cb%3Ac.yaml" in out and "%0A::warning::injected %250A" in out


def test_compile_check_names_library_drift_before_training(tmp_path):
    out = tmp_path / "credit_risk"
    shutil.copytree(ROOT / "generated" / "credit_risk", out)
    manifest = json.loads((out / "manifest.json").read_text())
    real = manifest["libraries"]["scikit-learn"]
    manifest["libraries"]["scikit-learn"] = "0.0.1"
    (out / "manifest.json").write_text(json.dumps(manifest))
    t0 = time.perf_counter()
    res = run("compile", "specs/credit_risk", "--check", "--out", str(out))
    assert time.perf_counter() - t0 < 60
    assert res.returncode == 1, res.stderr
    assert f"error[E910]: library versions differ from the build; recompile" in res.stderr
    assert f"   = built with scikit-learn 0.0.1 vs {real} (built vs installed)" in res.stderr
    assert "fitting" not in res.stderr  # decided before any training
    res = run("compile", "specs/credit_risk", "--check", "--out", str(out), "--format", "sarif")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, SARIF_SUBSET)
    assert doc["runs"][0]["results"][0]["ruleId"] == "E910"
