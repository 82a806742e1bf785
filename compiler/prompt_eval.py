"""The evaluation of a prompt against its golden set, as evidence (docs/genai.md#evaluation).

Each case goes the way a served call goes (runtime/genai): the variables are checked by the one
contract core, the input guardrails run (PII masked before the model sees it), the template is
rendered in the sandbox, the provider completes it, the output guardrails parse and check the
answer; then the case's assertions judge it. The evidence keeps, per case, a hash of the input,
the output with PII masked, each assertion's verdict, latency and tokens.

Reproducible: `cache_key` hashes what can change an answer or a verdict (the prompt version, the
golden set, the gates, the provider block, this evaluator's version), not the URL; compile reuses the
recorded evidence while the key is unchanged, and calls the provider only when it changes (or with
--reevaluate). Masking in the evidence redacts PII spans ([email], [phone]): no deployment key is
involved, so the committed evidence is the same on every machine.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable

from aiops.runtime.evaluation import bound_text, check_bound
from aiops.runtime.regex_safety import compile_safe

from aiops.compiler.prompt_plan import PromptPlan, _hash

EVALUATOR = 1  # bump when an assertion's meaning changes: every cache key changes with it


class EvaluationUnavailable(Exception):
    """The provider cannot be called (its variable unset): a user error, exit 2."""


def cache_key(p: PromptPlan) -> str:
    return _hash({"evaluator": EVALUATOR, "prompt_version": p.version,
                  "golden_sha256": hashlib.sha256(p.golden_bytes).hexdigest(), "gates": p.gates,
                  "provider": p.prompt_json["provider"]})


def input_hash(variables: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(variables, sort_keys=True, separators=(",", ":"),
                                                 ensure_ascii=True).encode()).hexdigest()


# ---------------------------------------------------------------- assertions
def _field(value: Any, path: str) -> tuple[bool, Any]:
    cur = value
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return False, None
    return True, cur


def similarity(a: str, b: str) -> float:
    """TF-IDF cosine similarity of two texts (word unigrams and bigrams, fitted on the pair)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    if not a.strip() or not b.strip():
        return 0.0
    try:
        m = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b").fit_transform([a, b])
    except ValueError:  # no token at all
        return 0.0
    return float(cosine_similarity(m[0], m[1])[0, 0])


def judge(a: dict[str, Any], text: str, parsed: Any, json_ok: bool | None, schema_ok: bool | None,
          latency_ms: float, output_tokens: int, grade: Callable[[str, str], float | None]) -> tuple[bool, str]:
    """One assertion on one output: (passed, detail)."""
    t = a["type"]
    if t == "equals":
        want = a["value"]
        got = text.strip() if isinstance(want, str) else parsed
        return got == want, f"equals {json.dumps(want)}" + ("" if got == want else " (it does not)")
    if t == "contains":
        ok = str(a["value"]) in text
        return ok, f"{'contains' if ok else 'does not contain'} {json.dumps(a['value'])}"
    if t == "regex":
        ok = compile_safe(a["pattern"], "golden regex assertion").search(text) is not None  # refused when unsafe
        return ok, f"{'matches' if ok else 'does not match'} /{a['pattern']}/"
    if t == "json_schema":
        if not json_ok:
            return False, "not JSON"
        return bool(schema_ok), "valid against the output schema" if schema_ok else "JSON, but not valid against the output schema"
    if t == "json_field":
        if not json_ok:
            return False, f"{a['path']}: no JSON to read"
        found, v = _field(parsed, a["path"])
        ok = found and v == a["equals"]
        return ok, f"{a['path']} = {json.dumps(v) if found else '(absent)'}, expected {json.dumps(a['equals'])}"
    if t == "similar":
        s = similarity(text, str(a["reference"]))
        return s >= a["min"], f"TF-IDF cosine {s:.3f} (needs >= {a['min']})"
    if t == "max_latency_ms":
        return latency_ms <= a["value"], f"{latency_ms:.0f} ms (at most {a['value']})"
    if t == "max_tokens":
        return output_tokens <= a["value"], f"{output_tokens} output tokens (at most {a['value']})"
    if t == "rubric":
        s = grade(str(a["criteria"]), text)
        if s is None:
            return False, "the grader gave no score"
        return s >= a["min"], f"graded {s:.2f} against the rubric (needs >= {a['min']})"
    raise ValueError(f"unknown assertion type {t!r}")  # aiops check refuses it (E416)


# ---------------------------------------------------------------- running the cases
RUBRIC_PROMPT = ("Rate how well the answer meets the criteria, from 0 (not at all) to 10 (fully).\n"
                 "Criteria: {criteria}\nAnswer: {answer}\nRating (0-10):")


def evaluate(p: PromptPlan, env: dict[str, str] | None = None, progress: Callable[[str], None] | None = None
             ) -> dict[str, Any]:
    """Run every golden case of `p` against its provider; the evaluation evidence."""
    from aiops.runtime.contract import Contract
    from aiops.runtime.genai.guardrails import InputGuards, OutputGuards, SpanMasker
    from aiops.runtime.genai.provider import Provider, ProviderError
    from aiops.runtime.genai.render import PromptError, render
    from aiops.runtime.genai.variables import text_variables, validate
    from aiops.runtime.masking import Masker

    pj = p.prompt_json
    provider = Provider(pj["provider"], env)
    why = provider.problem()
    if why:
        raise EvaluationUnavailable(why)
    contract = Contract.from_dict(pj["variables"])
    redact = Masker({})  # no key: PII spans redacted, the same on every machine
    spans = SpanMasker(redact)
    inputs = InputGuards(pj["guardrails"]["input"], redact, text_variables(contract))
    outputs = OutputGuards(pj["guardrails"]["output"], pj["output"], redact, pj["tools"])
    schema_check = OutputGuards([{"type": "json_schema"}], pj["output"], redact) \
        if pj["output"]["format"] == "json" and pj["output"]["schema"] is not None else None
    prefill = pj["output"].get("prefill") or ""
    try:
        model_id = provider.model_id()
    except ProviderError as exc:
        raise EvaluationUnavailable(exc.message) from None

    def grade(criteria: str, answer: str) -> float | None:
        try:
            g = provider.complete(RUBRIC_PROMPT.format(criteria=criteria, answer=answer))
        except ProviderError:
            return None
        m = re.search(r"\d+(\.\d+)?", g.text)
        return min(float(m.group()), 10.0) / 10.0 if m else None

    cases = []
    for i, case in enumerate(p.golden):
        if progress:
            progress(f"{p.name}: case {i + 1}/{len(p.golden)} {case['id']}")
        raw = case["variables"]
        echoes = sorted(((str(raw[k]), "[redacted]") for k in pj["pii"] if isinstance(raw.get(k), str)
                         and len(raw[k]) >= 4), key=lambda e: -len(e[0]))
        rec: dict[str, Any] = {"id": case["id"], "input_hash": input_hash(raw), "output": None, "assertions": [],
                               "passed": False, "latency_ms": None, "input_tokens": None, "output_tokens": None,
                               "json_valid": None, "guardrail_hits": [], "error": None}
        clean, errors = validate(contract, raw)
        if errors:
            rec["error"] = "variables: " + "; ".join(f"{e['field']}: {e['code']}" for e in errors)
            cases.append(rec)
            continue
        gi = inputs.check(clean)
        rec["guardrail_hits"] += [{"side": "input", **h} for h in gi.hits]
        if not gi.ok:
            rec["error"] = "guardrail_blocked: input"
            cases.append(rec)
            continue
        try:
            text_in = render(p.template_text, gi.text)
            gen = provider.complete(text_in)
        except PromptError as exc:
            rec["error"] = f"render: {exc}"
            cases.append(rec)
            continue
        except ProviderError as exc:
            rec["error"] = f"{exc.code}: {spans.mask(exc.message)[0]}"
            cases.append(rec)
            continue
        go = outputs.check(gen.text)
        rec["guardrail_hits"] += [{"side": "output", **h} for h in go.hits]
        text = prefill + gen.text
        parsed = go.value if pj["output"]["format"] == "json" else text
        schema_ok = schema_check.check(gen.text).ok if schema_check is not None and go.json_valid else None
        verdicts = []
        for a in case["assert"]:
            ok, detail = judge(a, text, parsed, go.json_valid, schema_ok, gen.latency_ms, gen.output_tokens, grade)
            verdicts.append({"type": a["type"], "passed": ok, "detail": _mask(detail, spans, echoes)})
        rec.update({"output": _mask(text.rstrip(), spans, echoes), "assertions": verdicts,
                    "passed": bool(verdicts) and all(v["passed"] for v in verdicts) and go.ok,
                    "latency_ms": round(gen.latency_ms, 1), "input_tokens": gen.input_tokens,
                    "output_tokens": gen.output_tokens, "json_valid": go.json_valid})
        if not go.ok:
            rec["error"] = "guardrail_blocked: output"
        cases.append(rec)
    return summarise(p, cases, model_id)


def _mask(text: str, spans, echoes) -> str:
    for value, masked in echoes:
        text = text.replace(value, masked)
    return spans.mask(text)[0]


def summarise(p: PromptPlan, cases: list[dict[str, Any]], model_id: str | None) -> dict[str, Any]:
    n = len(cases)
    rates = {"pass_rate": sum(c["passed"] for c in cases) / n if n else None,
             "json_valid_rate": (sum(bool(c["json_valid"]) for c in cases) / n if n else None)
             if p.prompt_json["output"]["format"] == "json" else None}
    gates = {name: {**b, "value": rates.get(name), "bound": bound_text(b), "passed": check_bound(rates.get(name), b)}
             for name, b in p.gates.items()}
    return {"prompt": p.name, "prompt_version": p.version, "cache_key": cache_key(p), "model_id": model_id,
            "cases": cases, "n_cases": n, "n_passed": sum(c["passed"] for c in cases), **rates, "gates": gates,
            "passed": bool(gates) and all(g["passed"] for g in gates.values())}
