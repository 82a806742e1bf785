"""`aiops check` and `aiops compile` of a prompt spec (kind: prompt, docs/genai.md).

The evaluation runs against the real local model (Gemma 3 270M through llama.cpp, the session
fixture `llm_base_url`) on a two-case golden set; the committed example's evidence is reused
without any model, byte for byte."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aiops.compiler.check import run_check
from aiops.compiler.cli import main

REPO = Path(__file__).resolve().parent.parent
SPEC, TRI, GOLD = "spec.yaml", "prompts/triage.j2", "prompts/triage_golden.jsonl"
CANARY = "zq.canary.7731@example.com"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_reports_prompt_mistakes_at_file_and_line(spec_copy):
    """Several mistakes in three files: each at its file and line, all at once, nothing else."""
    spec = spec_copy("support_triage")
    spec.replace(TRI, "): {{ message }}", "): {{ message }} {{ ticket.__globals__ }}")
    spec.replace(GOLD, 'Norway cost?", "channel": "chat"', 'Norway cost?", "channel": "chat", "lang": "en"')
    spec.replace(SPEC, "- {type: pii, action: mask}\n        - {type: deny",
                 "- {type: pii, action: mask}\n        - {type: profanity}\n        - {type: deny")
    spec.replace(SPEC, "base_url_env: AIOPS_LLM_BASE_URL", "base_url_env: https://api.example.com/v1")
    text, ok = run_check(spec.rel, [])
    assert ok is False
    heads = [(ln.split(":")[0], text.splitlines()[i + 1]) for i, ln in enumerate(text.splitlines())
             if ln.startswith("error[")]
    assert heads == [
        ("error[E404]", f"  --> {spec.where(TRI, '{{ ticket')}"),
        ("error[E406]", f"  --> {spec.where(TRI, '{{ ticket')}"),
        ("error[E413]", f"  --> {spec.where(GOLD, 'ship-cost')} (ship-cost)"),
        ("error[E410]", f"  --> {spec.where(SPEC, 'base_url_env:', 'https')} (provider.base_url_env)"),
        ("error[E407]", f"  --> {spec.where(SPEC, 'type: profanity', 'profanity')} (prompts.triage.guardrails.input[1].type)"),
    ]
    assert "   = the attribute '.__globals__'" in text
    assert "error[E404]: the template uses an undeclared variable 'ticket'" in text
    assert text.splitlines()[-1] == "error: 5 errors; nothing was written."


def test_a_masking_entry_applies_to_the_variable_of_its_name_in_every_prompt(spec_copy):
    """security.masking is spec-wide: with a second prompt that declares 'message' without pii, the entry
    for 'message' is W804 there (its method would not be applied); with no entry, the one E802 names both
    prompts where 'message' is pii."""
    spec = spec_copy("support_triage")
    second = ("  summary:\n    template: prompts/triage.j2\n    variables:\n"
              "      message: {dtype: str, pii: false}\n      channel: {dtype: category}\n"
              "    output: {format: json, schema: prompts/triage.schema.json}\n"
              "    evaluation: {golden: prompts/triage_golden.jsonl, gates: {pass_rate: {min: 0.5}}}\n\nmonitoring:")
    spec.replace(SPEC, "\nmonitoring:", "\n" + second)
    text, ok = run_check(spec.rel, [])
    assert ok is True, text
    assert f"""\
warning[W804]: masking is set for a variable that is not flagged pii
  --> {spec.where("security/internal.yaml", "message:", "message")} (security.masking.message)
   |     message: {{method: redact}}
   = 'message' has pii: false in prompts.summary.variables
""" in text
    spec.replace(SPEC, "message: {dtype: str, pii: false}", "message: {dtype: str, pii: true}")
    spec.replace("security/internal.yaml", "masking:\n  message: {method: redact}\n", "masking: {}\n")
    text, ok = run_check(spec.rel, [])
    assert ok is False
    assert f"""\
error[E802]: a PII variable has no masking method
  --> {spec.where(SPEC, "message: {dtype: str, pii: true, checks", "true")} (prompts.triage.variables.message.pii)
   |     message: {{dtype: str, pii: true, checks: {{str_length: {{min: 1, max: 1000}}}},
   = 'message' is flagged pii in prompts.triage.variables and prompts.summary.variables but security.masking \
does not name it
""" in text
    assert text.count("error[E802]") == 1 and "W804" not in text


def _small(spec, golden: list[dict], gates: str) -> None:
    """The example with a golden set of `golden` cases and the `gates` block."""
    (spec.dir / GOLD).write_text("".join(json.dumps(c) + "\n" for c in golden), encoding="utf-8")
    spec.replace(SPEC, "        pass_rate: {min: 0.5}\n        json_valid_rate: {min: 0.9}\n", gates)


CASES = [  # one call to the model: a PII canary in the input, an assertion no answer can meet
    {"id": "impossible", "variables": {"message": f"I was charged twice for order 51234, write to {CANARY}",
                                       "channel": "email"},
     "assert": [{"type": "json_schema"}, {"type": "json_field", "path": "category", "equals": "no such queue"}]},
]


@pytest.mark.slow
def test_a_failed_gate_refuses_the_blessing_with_reasons(spec_copy, llm_base_url, monkeypatch, capsys):
    """One compile against the real local model on one case (a PII canary in the input, an assertion
    that cannot pass): the evidence, the PII masking, and a failed gate refusing the blessing."""
    spec = spec_copy("support_triage")
    _small(spec, CASES, "        pass_rate: {min: 0.75}\n        json_valid_rate: {min: 0.5}\n")
    monkeypatch.setenv("AIOPS_LLM_BASE_URL", llm_base_url)
    rc = main(["compile", spec.rel, "--quiet"])
    err = capsys.readouterr().err
    out = Path("generated/support_triage")
    ev = json.loads((out / "evidence/prompts/triage/evaluation.json").read_text())
    (case,) = ev["cases"]
    assert ev["model_id"] == "gemma-3-270m-q4_k_m" and ev["json_valid_rate"] == 1.0 and ev["pass_rate"] == 0.0
    assert case["output"].startswith('{"topic": "') and case["output_tokens"] > 0 and case["latency_ms"] > 0
    assert {"side": "input", "guard": "pii", "action": "mask", "detail": "1 email in 'message'"} \
        in case["guardrail_hits"]
    assert [a["passed"] for a in case["assertions"]] == [True, False] and case["passed"] is False

    assert rc == 1
    assert err.splitlines()[:2] == [
        "error[E902]: the prompts did not pass their gate; they are marked not blessed and will not be served",
        "   = triage: pass_rate: 0.0000 (needs >= 0.75)"]
    assert "impossible" in err.splitlines()[2]
    blessing = json.loads((out / "evidence/blessing.json").read_text())
    assert blessing["blessed"] is False and blessing["failed"] == ["triage: pass_rate"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "prompt" and manifest["blessed"] is False
    doc = (out / "compliance.md").read_text()
    assert "Verdict: NOT BLESSED." in doc
    failures = doc.split("\n## Known failure cases")[1].split("\n## ")[0]
    assert "| impossible | `" in failures and 'expected "no such queue"' in failures

    assert json.loads((out / "serving.json").read_text())["prompts"] == ["triage"]
    prompt = json.loads((out / "prompts/triage/prompt.json").read_text())
    assert prompt["version"].startswith("sha256:") and prompt["output"]["schema"]["title"] == "support triage"
    assert (out / "prompts/triage/template.j2").read_bytes() == (spec.dir / TRI).read_bytes()
    # the PII canary is nowhere on disk in clear: not in the artefacts, not in the registry
    for p in [*out.rglob("*"), *Path(".aiops").rglob("*")]:
        if p.is_file():
            assert CANARY.encode() not in p.read_bytes(), p


def test_evidence_is_reused_byte_identically_and_check_tells_stale(spec_copy, monkeypatch, capsys):
    """No model at all: the committed evidence is reused, the output is the committed one byte for
    byte, --check is fresh; after a template edit --check is stale, and compile needs the provider."""
    spec = spec_copy("support_triage")
    monkeypatch.delenv("AIOPS_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("AIOPS_SIGNING_KEY", raising=False)
    committed = REPO / "generated" / "support_triage"
    shutil.copytree(committed, "generated/support_triage")
    assert main(["compile", spec.rel, "--quiet"]) in (0, 1)  # blessed or not, as committed
    assert _files(Path("generated/support_triage")) == _files(committed)
    capsys.readouterr()
    assert main(["compile", spec.rel, "--check"]) == 0
    assert "ok: generated/support_triage is up to date with specs/support_triage" in capsys.readouterr().err

    spec.replace(TRI, "): {{ message }}", "): {{ message | trim }}")
    assert main(["compile", spec.rel, "--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error[E903]: generated/support_triage is stale: the evaluation evidence of prompt 'triage' is not for "
        "the spec as it is now",
        "   = changed: generated/support_triage/evidence/prompts/triage/evaluation.json (cache key)",
        "   = help: run 'python tools/local_llm.py run -- aiops compile specs/support_triage' and commit "
        "generated/support_triage"]
    assert main(["compile", spec.rel, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[:3] == [
        "error[E950]: prompt 'triage' must be evaluated, but its provider cannot be called",
        "  --> specs/support_triage/spec.yaml (provider.base_url_env)",
        "   = the environment variable AIOPS_LLM_BASE_URL (provider.base_url_env) is not set: set it to an "
        "OpenAI-compatible base URL such as http://127.0.0.1:8080/v1 (tools/local_llm.py starts a local one)"]
    assert _files(Path("generated/support_triage")) == _files(committed)  # nothing was written


def test_hostile_prompt_files_are_diagnostics_not_crashes(spec_copy):
    """Untrusted prompt files: JSON nested past the recursion limit, a template nested as deep, a
    variable's regex that does not compile: each is an error at its place, never an internal error."""
    spec = spec_copy("support_triage")
    (spec.dir / "prompts/triage.schema.json").write_text("[" * 100_000 + "]" * 100_000)
    lines = spec.text(GOLD).splitlines()
    (spec.dir / GOLD).write_text("\n".join(["[" * 100_000] + lines[1:]) + "\n")
    spec.replace(TRI, "): {{ message }}", "): {{ " + "(" * 20_000 + "message" + ")" * 20_000 + " }}")
    text, ok = run_check(spec.rel, [])
    assert ok is False and "internal error" not in text
    heads = sorted(ln for ln in text.splitlines() if ln.startswith("error["))
    assert heads == ["error[E403]: template syntax error: the template nests too deeply to parse",
                     "error[E409]: the output schema is not JSON",
                     "error[E412]: a golden case is not JSON"]
    text, ok = run_check(spec.rel, ['+prompts.triage.variables.message.checks.regex="(ab"'])
    assert ok is False and "error[E408]: a regular expression does not compile\n  --> command-line override " \
        "'+prompts.triage.variables.message.checks.regex=\"(ab\"' (prompts.triage.variables.message.checks.regex)" in text
