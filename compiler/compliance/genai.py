"""The compliance document of a prompt spec (kind: prompt): the generative-AI sections, mapped to the
NIST AI 600-1 Generative AI Profile (its twelve risks, by the AI RMF subcategories its actions sit
under) and to the EU AI Act. It is a document plan of compiler/compliance/model.py, printed by the
same templates as the tabular document. Claims match enforcement: each control names its code and
test, or says "declared, not enforced" (compiler/compliance/enforcement.py)."""
from __future__ import annotations

from typing import Any

from aiops.compiler.compliance.enforcement import DECLARED, GENAI_CONTROLS
from aiops.compiler.compliance.model import (Cell, Document, Section, anchor, bullets, facts, file, key, num, result,
                                             table, text)

# (risk as NIST AI 600-1 names it, AI RMF subcategories whose suggested actions address it here,
#  how this system meets it, the sections holding the evidence)
NIST_600_1: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Confabulation", "MEASURE 2.3, MEASURE 2.5",
     "the golden set measures wrong answers before release; the gates decide the blessing; failed cases are listed",
     ("evaluation", "failures")),
    ("Data Privacy", "MEASURE 2.10, MAP 4.1",
     "PII flagged on variables; input guardrails mask e-mails, phone numbers, cards and IBANs before the model; "
     "evidence and logs masked", ("guardrails", "controls")),
    ("Information Integrity", "MEASURE 2.5, MANAGE 4.1",
     "outputs checked against a JSON Schema; a person reads every output (limited tier)", ("guardrails", "use")),
    ("Information Security", "MEASURE 2.7",
     "templates rendered in a sandbox; deny patterns against prompt injection; provider and tokens named by "
     "environment variable, never in the spec", ("guardrails", "provider", "controls")),
    ("Harmful Bias and Homogenization", "MEASURE 2.11",
     "not measured: the golden set has no groups of people to compare", ("limitations",)),
    ("Human-AI Configuration", "GOVERN 3.2, MAP 3.5",
     "intended use says a person reads and can change every output", ("use",)),
    ("Value Chain and Component Integration", "GOVERN 6.1, MAP 4.1",
     "the provider, model name and the model id the endpoint reported are recorded; any change re-runs the evaluation",
     ("provider",)),
    ("Dangerous, Violent, or Hateful Content", "MEASURE 2.6", "output deny patterns, where the spec declares them",
     ("guardrails",)),
    ("Obscene, Degrading, and/or Abusive Content", "MEASURE 2.6", "output deny patterns, where the spec declares them",
     ("guardrails",)),
    ("CBRN Information or Capabilities", "MAP 1.1", "out of scope by intended use", ("use",)),
    ("Intellectual Property", "MAP 4.1", "not assessed by aiops", ("limitations",)),
    ("Environmental Impacts", "MEASURE 2.12", "tokens per call are recorded; energy is not measured", ("evaluation",)),
)

TITLES = {"summary": "Summary", "mapping": "Regulation mapping", "use": "Intended and out-of-scope use",
          "provider": "Provider and model identity", "guardrails": "Guardrails", "evaluation": "Evaluation results",
          "failures": "Known failure cases", "controls": "Controls and their enforcement",
          "limitations": "Limitations and ethical considerations", "reproducibility": "Reproducibility"}


def _section(k: str, *blocks) -> Section:
    return Section(k, TITLES[k], anchor(TITLES[k]), tuple(blocks))


def _link(k: str) -> Cell:
    return Cell(TITLES[k], href=f"#{anchor(TITLES[k])}")


def document(plan, evaluations: dict[str, dict[str, Any]], blessing: dict[str, Any]) -> Document:
    """`plan`: compiler/prompt_plan.SpecPlan; `evaluations`: prompt -> evidence/prompts/<p>/evaluation.json."""
    spec = plan.spec
    g, pr = spec["governance"], spec["provider"]
    blessed = bool(blessing["blessed"])
    status = "BLESSED" if blessed else "NOT BLESSED"
    gate_rows = [(c["name"], num(c["value"]), c["bound"], result(c["passed"])) for c in blessing["thresholds"]]
    summary = _section(
        "summary",
        text(f"{plan.name} {plan.version} is a prompt system (kind: prompt) on {pr['model']}. Its release gate: "
             f"{blessing['rule']}. Verdict: {status}.", file("evidence/blessing.json"),
             tone="" if blessed else "fail"),
        table(("Gate", "Value", "Bound", "Result"), gate_rows, file("evidence/blessing.json")))
    regs = set(g["regulations"])
    rows = []
    if "eu_ai_act" in regs:
        rows += [("EU AI Act", "Art. 50 transparency obligations (limited risk)",
                  (_link("use"), _link("controls"))),
                 ("EU AI Act", "Art. 53 and Annex XII information on the general-purpose model used",
                  (_link("provider"),)),
                 ("EU AI Act", "Art. 9-15 (high risk): not applicable at risk tier " + g["risk_tier"],
                  (_link("use"),))]
    rows += [("NIST AI 600-1", f"{risk} ({subs})", tuple(_link(s) for s in secs))
             for risk, subs, _how, secs in NIST_600_1]
    nist = table(("Risk (NIST AI 600-1)", "AI RMF subcategories", "How this system addresses it"),
                 [(r, s, how) for r, s, how, _ in NIST_600_1], title="NIST AI 600-1 Generative AI Profile")
    mapping = _section("mapping", table(("Framework", "Requirement", "Sections"), rows), nist)
    use = _section("use", bullets(list(g["intended_use"]), key("governance.intended_use"), title="Intended use"),
                   bullets(list(g["out_of_scope_use"]) or ["none declared"], key("governance.out_of_scope_use"),
                           title="Out of scope"),
                   facts([("Risk tier", g["risk_tier"], key("governance.risk_tier")),
                          ("Owner", g["owner"], key("governance.owner")),
                          ("Approvers", ", ".join(g["approvers"]) or "none", key("governance.approvers"))]))
    model_ids = sorted({str(e.get("model_id")) for e in evaluations.values()})
    provider = _section("provider", facts([
        ("Model (requested)", pr["model"], key("provider.model")),
        ("Model id the endpoint reported", ", ".join(model_ids), file("evidence/prompts")),
        ("API", f"OpenAI-compatible {pr['api']}", key("provider.api")),
        ("Base URL", f"from ${pr['base_url_env']} (never written in the spec or the artefacts)",
         key("provider.base_url_env")),
        ("Token", f"from ${pr['api_key_env']}" if pr["api_key_env"] else "none", key("provider.api_key_env")),
        ("Parameters", ", ".join(f"{k}={v}" for k, v in sorted(pr["parameters"].items())),
         key("provider.parameters")),
        ("Timeout and retries", f"{num(pr['timeout_s'])} s, {pr['retries']} retr{'y' if pr['retries'] == 1 else 'ies'}", key("provider.timeout_s")),
        ("Budget", ", ".join(f"{k} {v}" for k, v in sorted(pr["budget"].items())), key("provider.budget")),
    ] + [(f"Prompt {p.name} version", p.version, file(f"prompts/{p.name}/prompt.json")) for p in plan.prompts]))
    guard_rows = []
    for p in plan.prompts:
        for side in ("input", "output"):
            for gd in p.prompt_json["guardrails"][side]:
                what = ", ".join(f"{k}={v}" for k, v in sorted(gd.items()) if k != "type")
                guard_rows.append((p.name, side, gd["type"], what or "-"))
    guardrails = _section("guardrails", table(("Prompt", "Side", "Guardrail", "Settings"), guard_rows,
                                              *(file(f"prompts/{p.name}/prompt.json") for p in plan.prompts)),
                          text("Input guardrails run concurrently on every call; PII flagged variables: "
                               + "; ".join(f"{p.name}: {', '.join(p.prompt_json['pii']) or 'none'}"
                                           for p in plan.prompts) + "."))
    ev_blocks, fail_blocks = [], []
    for p in plan.prompts:
        ev = evaluations[p.name]
        src = file(f"evidence/prompts/{p.name}/evaluation.json")
        ev_blocks.append(facts([
            ("Golden cases", f"{ev['n_cases']} ({ev['n_passed']} passed)", key(f"prompts.{p.name}.evaluation.golden")),
            ("Pass rate", num(ev["pass_rate"]), src), ("JSON valid rate", num(ev["json_valid_rate"]), src),
            ("Cache key", ev["cache_key"], src)], title=f"Prompt {p.name}"))
        failed = [c for c in ev["cases"] if not c["passed"]]
        rows = [(c["id"], Cell(c["output"] if c["output"] is not None else "(no output)", code=True),
                 "; ".join([a["detail"] for a in c["assertions"] if not a["passed"]]
                           + ([c["error"]] if c.get("error") else []))) for c in failed]
        fail_blocks.append(table(("Case", "Output (PII masked)", "What failed"), rows, src,
                                 title=f"Prompt {p.name}: {len(failed)} of {ev['n_cases']} cases failed")
                           if rows else text(f"Prompt {p.name}: every golden case passed.", src))
    evaluation = _section("evaluation", *ev_blocks)
    failures = _section("failures", text("The cases below failed on the recorded run. They are what the model is "
                                         "known to get wrong; a person reading the outputs should expect errors "
                                         "like these."), *fail_blocks)
    controls = _section("controls", table(("Control", "Status", "Enforced by", "Test"), [
        (c.name, Cell(c.status, tone="" if c.status != DECLARED else "fail"),
         Cell(c.code or "-", code=bool(c.code)), Cell(c.test or "-", code=bool(c.test))) for c in GENAI_CONTROLS]))
    limitations = _section("limitations", bullets(list(g["limitations"]) or ["none declared"],
                                                  key("governance.limitations"), title="Limitations"),
                           bullets(list(g["ethical_considerations"]) or ["none declared"],
                                   key("governance.ethical_considerations"), title="Ethical considerations"))
    repro = _section("reproducibility", bullets([
        "Temperature 0 and a fixed seed (provider.parameters) make a re-run give the same outputs on the same "
        "model build.",
        "Each evaluation's cache key hashes the prompt version (template, variables, output, tools, guardrails, "
        "provider), the golden set and the gates; a recompile reuses the recorded evidence while the key holds, "
        "so it needs no model and is byte-identical.",
        "Latencies are those of the recorded run.",
        f"Regenerate: {plan.regenerate} (add --reevaluate to call the provider again)."]))
    sections = (summary, mapping, use, provider, guardrails, evaluation, failures, controls, limitations, repro)
    return Document(f"Compliance: {plan.name} {plan.version} (generative AI)", status, "pass" if blessed else "fail",
                    "Generated from the spec and the evaluation evidence; every claim names its source.",
                    plan.regenerate, sections)
