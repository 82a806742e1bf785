"""The monitoring plan of a prompt spec: generated/<name>/monitoring/{monitoring.json, reference.jsonl, crontab}.

`render_prompt_monitoring(...)` is a pure function of the resolved `monitoring:` section
(schema.PromptMonitoring), the prompts' guardrail plans and PII variables, and the evaluation
cases; genai_compile's compile step calls it and writes what it returns. `aiops monitor`
(runtime/monitor/prompt_job.py) reads monitoring.json, not the spec.

reference.jsonl holds one line per evaluation case, sorted by prompt and case id:
{"prompt", "case", "variables" (PII variables masked by the one masker, runtime/masking.py,
with the keyless method 'redact', so the file is the same on every machine), "output" (the
evaluation's masked output), "input_chars", "output_chars", "input_tokens", "output_tokens",
"json_valid", "guardrails"}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

MONITORING_SCHEMA = 1  # the same job file version as tabular monitoring.json (runtime/monitor/job.py)
REFERENCE = "monitoring/reference.jsonl"
TEXT_DRIFT = {"classifier": "tf-idf word 1-2 grams + logistic regression (liblinear)", "folds": 5, "seed": 0,
              "max_rows_per_side": 2000}


@dataclass(frozen=True)
class PromptRef:
    """What the plan needs of one prompt."""

    name: str
    pii: tuple[str, ...]  # the variables with pii: true
    guardrails: Mapping[str, Sequence[Mapping[str, Any]]]  # {"input": [{"type": ...}], "output": [...]}


def guard_names(guardrails: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """'input.pii', 'output.json_schema', ...: how the report names a guard (side.type)."""
    return sorted({f"{side}.{g.get('type')}" for side in ("input", "output") for g in guardrails.get(side) or []})


def job_definition(name: str, version: str, monitoring: Mapping[str, Any], prompts: Sequence[PromptRef]) -> dict:
    m = monitoring
    window = m.get("window") or {}
    length = m.get("length_drift") or {}
    return {
        "monitoring_schema": MONITORING_SCHEMA, "kind": "prompt", "name": name, "version": version,
        "artefact_dir": f"generated/{name}", "report_dir": f".aiops/monitoring/{name}",
        "prediction_log": f".aiops/serving/{name}", "reference": REFERENCE,  # the folder: every segment
        "schedule": m["schedule"],
        "window": {"by": window.get("by", "time"), "size": window.get("size", "day")},
        "min_rows": int(m.get("min_rows", 30)),
        "prompts": sorted(p.name for p in prompts),
        "guards": {p.name: guard_names(p.guardrails) for p in sorted(prompts, key=lambda p: p.name)},
        "thresholds": {
            "text_drift_auc": float(m.get("text_drift_auc", 0.75)),
            "text_drift_on": list(m.get("text_drift_on") or ["input", "output"]),
            "length_drift": {"test": length.get("test", "psi"), "threshold": float(length.get("threshold", 0.25))},
            "max_guardrail_hit_rate": float(m.get("max_guardrail_hit_rate", 0.2)),
            "guardrail_hit_rates": {k: float(v) for k, v in sorted((m.get("guardrail_hit_rates") or {}).items())},
            "max_refusal_rate": float(m.get("max_refusal_rate", 0.1)),
            "min_json_valid_rate": float(m.get("min_json_valid_rate", 0.9)),
            "max_error_rate": float(m.get("max_error_rate", 0.05)),
            "min_feedback_pass_rate": (None if m.get("min_feedback_pass_rate") is None
                                       else float(m["min_feedback_pass_rate"])),
            "min_feedback_rows": int(m.get("min_feedback_rows", 20)),
        },
        "text_drift": dict(TEXT_DRIFT),
        "actions": {k: (m.get("actions") or {}).get(k, "alert") for k in ("drift", "feedback", "quality")},
        "webhook": m.get("webhook"),
    }


def reference_lines(prompts: Sequence[PromptRef], cases: Sequence[Mapping[str, Any]],
                    mask_text: Callable[[str], str] | None = None) -> str:
    """reference.jsonl. cases: {"prompt", "id", "variables" (as in the golden set), "output" (masked),
    and, when known, "input_chars", "output_chars", "input_tokens", "output_tokens", "json_valid",
    "error", "guardrail_hits" (a list of hits with "side", as evaluation.json has them)}. PII variables
    are redacted whole; PII spans in the other text variables are masked by `mask_text` (default:
    the guardrails' span masker, redacting)."""
    from aiops.runtime.genai.guardrails import SpanMasker
    from aiops.runtime.masking import REDACTED, Masker

    if mask_text is None:  # PII spans in free text, redacted (no key: the same on every machine)
        spans = SpanMasker(Masker({}))

        def mask_text(text: str) -> str:
            return spans.mask(text)[0]

    by_name = {p.name: p for p in prompts}
    lines = []
    for c in sorted(cases, key=lambda c: (str(c["prompt"]), str(c["id"]))):
        p = by_name[c["prompt"]]
        masker = Masker({v: "redact" for v in p.pii})
        raw = c.get("variables") or {}
        # a PII variable's value repeated in another text is masked as the variable (as the log does)
        echoes = sorted((str(raw[k]) for k in p.pii if isinstance(raw.get(k), str) and len(raw[k]) >= 4),
                        key=lambda v: -len(v))

        def masked(k: str, v: Any) -> Any:
            if k in p.pii:
                return masker.mask(k, v)
            if not isinstance(v, str):
                return v
            for e in echoes:
                v = v.replace(e, REDACTED)
            return mask_text(v)

        variables = {k: masked(k, v) for k, v in sorted(raw.items())}
        out = c.get("output")
        rec = {"prompt": p.name, "case": str(c["id"]), "variables": variables, "output": out,
               "output_chars": c.get("output_chars", len(out if isinstance(out, str) else json.dumps(out))
                                     if out is not None else None)}
        for k in ("input_chars", "input_tokens", "output_tokens", "json_valid", "error"):
            rec[k] = c.get(k)
        hits = c.get("guardrail_hits") or []
        rec["guardrails"] = hits if isinstance(hits, dict) else \
            {side: [{k: v for k, v in h.items() if k != "side"} for h in hits if h.get("side") == side]
             for side in ("input", "output")}
        lines.append(json.dumps(rec, sort_keys=True, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def render_prompt_monitoring(name: str, version: str, monitoring: Mapping[str, Any], prompts: Sequence[PromptRef],
                             cases: Sequence[Mapping[str, Any]], spec_dir: str = "",
                             mask_text: Callable[[str], str] | None = None) -> dict[str, str]:
    """{relative path: content} of the prompt monitoring job."""
    from aiops.runtime.stable import dumps

    job = job_definition(name, version, monitoring, prompts)
    return {"monitoring/monitoring.json": dumps(job), REFERENCE: reference_lines(prompts, cases, mask_text),
            "monitoring/crontab": crontab(job, spec_dir)}


def crontab(job: Mapping[str, Any], spec_dir: str) -> str:
    """One crontab line running the job on the server's log (each value escaped for its place:
    compiler/escape.py)."""
    from aiops.compiler.escape import comment, cron, crontab as word

    art, rep = word(job["artefact_dir"]), word(job["report_dir"])
    return (f"# Generated by aiops from {comment(spec_dir or 'the spec')} (monitoring.schedule). DO NOT EDIT.\n"
            f"# The monitoring job of the prompts of {comment(job['name'])} {comment(job['version'])}, over the "
            "server's prompt log.\n"
            "# Set AIOPS_REPO (the repository root) at the top of the crontab. Exit codes: 0 all within bounds,\n"
            "# 1 an alert fired (alerts.json, and the webhook if set), 2 error.\n"
            f"{cron(job['schedule'])} cd \"$AIOPS_REPO\" && mkdir -p {rep} && aiops monitor {art} "
            f"--from-log --report {rep} >> {word(job['report_dir'] + '/cron.log')} 2>&1\n")


def monitoring_files(plan, evaluations: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The monitoring files of a compiled prompt spec (compiler/prompt_build.py): `plan` a
    prompt_plan.SpecPlan, `evaluations` prompt -> its evaluation evidence (evidence/prompts/<p>/)."""
    from aiops.runtime.genai.guardrails import SpanMasker
    from aiops.runtime.genai.render import PromptError, render
    from aiops.runtime.masking import Masker

    spans = SpanMasker(Masker({}))
    refs, cases = [], []
    for p in plan.prompts:
        pj = p.prompt_json
        refs.append(PromptRef(p.name, tuple(pj["pii"]), pj["guardrails"]))
        recorded = {str(c.get("id")): c for c in (evaluations.get(p.name) or {}).get("cases") or []}
        masks = any(g.get("type") == "pii" and g.get("action", "mask") == "mask" for g in pj["guardrails"]["input"])
        for g in p.golden:
            ev = recorded.get(str(g["id"]), {})
            variables = g.get("variables") or {}
            if masks:  # the prompt the server renders: PII spans masked by the input guardrail
                variables = {k: spans.mask(v)[0] if isinstance(v, str) else v for k, v in variables.items()}
            try:
                chars = len(render(p.template_text, variables))  # input_chars: the rendered prompt
            except PromptError:
                chars = None
            out = ev.get("output")
            cases.append({"prompt": p.name, "id": g["id"], "variables": g.get("variables") or {}, "output": out,
                          "input_chars": chars, "output_chars": len(out) if isinstance(out, str) else None,
                          "input_tokens": ev.get("input_tokens"), "output_tokens": ev.get("output_tokens"),
                          "json_valid": ev.get("json_valid"), "error": ev.get("error"),
                          "guardrail_hits": ev.get("guardrail_hits") or []})
    return render_prompt_monitoring(plan.name, plan.version, plan.spec["monitoring"], refs, cases, plan.spec_dir)
