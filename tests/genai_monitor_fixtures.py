"""Helpers of the prompt monitoring tests (tests/test_genai_monitor.py): a signed prompt artefact
folder holding the monitoring plan that compiler/prompt_monitoring.py writes, prompt calls
appended to a log by the audit log's writer (runtime/audit/chain.ChainWriter) in the entry
format of docs/genai.md, and texts of two domains (support messages, cooking questions).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from aiops.compiler.prompt_monitoring import PromptRef, render_prompt_monitoring
from aiops.runtime.masking import Masker
from aiops.runtime.stable import dumps, file_sha256

GUARDRAILS = {"input": [{"type": "pii", "action": "mask"}, {"type": "deny", "patterns": ["(?i)ignore previous"]}],
              "output": [{"type": "json_schema"}]}
PROMPT = PromptRef("triage", ("email",), GUARDRAILS)

SUBJECTS = ["my invoice", "the refund", "my password", "the login page", "my order", "the delivery",
            "my subscription", "the mobile app", "the checkout", "my account"]
VERBS = ["is wrong", "never arrived", "does not work", "was charged twice", "keeps failing", "is late",
         "shows an error", "was cancelled", "is locked", "cannot be updated"]
TAILS = ["please help", "can you check", "I need this fixed today", "thanks", "this is urgent", "what should I do"]
DISHES = ["the pasta", "a risotto", "the sourdough", "my soup", "the curry", "a lemon cake", "the roast"]
FAULTS = ["needs more salt", "tastes bland", "came out dry", "burned in the oven", "is too spicy", "did not rise"]
CATEGORY = {"invoice": "billing", "refund": "billing", "charged": "billing", "password": "account",
            "login": "account", "account": "account", "order": "shipping", "delivery": "shipping"}


def support_text(r: random.Random) -> str:
    return f"Hi, {r.choice(SUBJECTS)} {r.choice(VERBS)}, {r.choice(TAILS)}."


def cooking_text(r: random.Random) -> str:
    return f"Cooking question: {r.choice(DISHES)} {r.choice(FAULTS)}, any recipe tips for dinner tonight?"


def answer(text: str) -> dict[str, Any]:
    cat = next((c for w, c in CATEGORY.items() if w in text), "other")
    return {"category": cat, "urgent": "urgent" in text or "today" in text}


MASKER = Masker({"email": "hash"}, b"k" * 32)  # the deployment's masker: the PII variable hashed


def call(pid: str, ts: str, message: str, *, refused: bool = False, error: str | None = None,
         deny_hit: bool = False, json_valid: bool | None = True, email: str = "ann@example.com") -> dict[str, Any]:
    """A prompt-call entry as the server builds it (runtime/genai/logentry.build_entry: variables and
    output masked), with `ts` (ISO) for write_log."""
    from aiops.runtime.genai.logentry import build_entry

    out = None if (refused or error) else answer(message)
    hits_in = [{"guard": "pii", "action": "mask", "detail": "1 email in 'message'"}]
    if deny_hit:
        hits_in.append({"guard": "deny", "action": "block", "detail": "pattern 0"})
    e = build_entry(masker=MASKER, pii=["email"], prediction_id=pid, prompt="triage",
                    prompt_version="sha256:" + "ab" * 32, model="gemma-3-270m-q4_k_m",
                    variables={"message": f"{message} Write to me at {email}.", "email": email, "channel": "email"},
                    output=out, input_chars=180 + len(message),
                    output_chars=len(json.dumps(out)) if out is not None else 0,
                    input_tokens=40 + len(message) // 4, output_tokens=12 if out is not None else 0,
                    latency_ms=350.0, guardrails={"input": hits_in, "output": []}, refused=refused,
                    json_valid=json_valid if out is not None else None, error=error)
    return {**e, "ts": ts}


def write_log(log_dir: Path, entries: list[dict[str, Any]], data_key: bytes | None = None) -> Path:
    """Append `entries` to the hash-chained log in `log_dir` as the server's prompt log does
    (runtime/genai/logentry.entry_parts, runtime/audit/chain.ChainWriter), sealed with `data_key`."""
    from datetime import datetime

    from aiops.runtime.audit.chain import ChainWriter
    from aiops.runtime.genai.logentry import entry_parts

    w = ChainWriter(log_dir, log_key=b"\x11" * 32, data_key=data_key)
    w.append([entry_parts({k: v for k, v in e.items() if k != "ts"},
                          datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp(), data_key is not None)
              for e in entries])
    w.close()
    return log_dir


def reference_cases(n: int = 30, seed: int = 7) -> list[dict[str, Any]]:
    """Evaluation cases as genai_compile hands them to render_prompt_monitoring (variables as in the golden set)."""
    r = random.Random(seed)
    cases = []
    for i in range(n):
        msg = support_text(r)
        out = answer(msg)
        cases.append({"prompt": "triage", "id": f"case{i:02d}",
                      "variables": {"message": f"{msg} Write to me at user{i}@example.com.",
                                    "email": f"user{i}@example.com", "channel": "email"},
                      "output": out, "input_chars": 180 + len(msg), "input_tokens": 40 + len(msg) // 4,
                      "output_tokens": 12, "json_valid": True,
                      "guardrail_hits": {"input": [{"guard": "pii", "action": "mask", "detail": "email"}],
                                         "output": []}})
    return cases


def prompt_artefacts(root: Path, monitoring: dict[str, Any] | None = None, cases: list | None = None,
                     security: dict[str, Any] | None = None) -> Path:
    """A signed, blessed artefact folder of a prompt spec 'support_triage' with its monitoring plan."""
    from aiops.compiler.sign import sign_folder
    from aiops.runtime.trust.keys import load_private_key

    d = root / "generated" / "support_triage"
    (d / "monitoring").mkdir(parents=True)
    (d / "evidence").mkdir()
    m = {"schedule": "0 6 * * *", "window": {"by": "time", "size": "day"}, "min_rows": 20,
         "guardrail_hit_rates": {"input.pii": 1.0}, "min_feedback_pass_rate": 0.7, "min_feedback_rows": 10,
         **(monitoring or {})}
    files = render_prompt_monitoring("support_triage", "1.0.0", m, [PROMPT],
                                     reference_cases() if cases is None else cases, "specs/support_triage")
    for rel, text in files.items():
        (d / rel).write_text(text)
    (d / "serving.json").write_text(dumps({"kind": "prompt", "name": "support_triage", "version": "1.0.0",
                                           "prompts": ["triage"], "security": security or {}}))
    # the evidence and gate of a blessed prompt artefact, as compiler/prompt_build.py writes them
    gate = {"prompts": {"triage": {"pass_rate": {"min": 0.6, "max": None}}}}
    (d / "evidence" / "prompts" / "triage").mkdir(parents=True)
    (d / "evidence" / "prompts" / "triage" / "evaluation.json").write_text(dumps({
        "prompt": "triage", "pass_rate": 0.8, "passed": True,
        "gates": {"pass_rate": {"min": 0.6, "max": None, "value": 0.8, "passed": True}}}))
    (d / "evidence" / "blessing.json").write_text(dumps({
        "blessed": True, "failed": [],
        "thresholds": [{"kind": "prompt", "name": "triage: pass_rate", "value": 0.8, "passed": True}]}))
    listed = {p.relative_to(d).as_posix(): {"sha256": file_sha256(p), "size": p.stat().st_size}
              for p in sorted(d.rglob("*")) if p.is_file()}
    (d / "manifest.json").write_text(dumps({
        "manifest_schema": 2, "name": "support_triage", "version": "1.0.0", "kind": "prompt", "blessed": True,
        "gate": gate, "files": listed, "policy": {"signature_required": False, "why": "", "risk_tier": "limited"},
        "spec": {"dir": "specs/support_triage"}}))
    key = load_private_key(env=None, env_name="AIOPS_SIGNING_KEY")
    sign_folder(d, "support_triage", key)
    return d
