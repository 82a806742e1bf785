"""The rules of `monitoring:` in a prompt spec (schema.PromptMonitoring, docs/genai.md#monitoring-prompts):
the codes of tabular monitoring where the rule is the same (E701 cron, E704 window, E707 a rate in
[0, 1], E708 webhook, E710 minimums), and E712 a per-guard ceiling naming no guard, E713 a text-drift
AUC threshold outside (0.5, 1], E714 a length-drift threshold that is not positive.
"""
from __future__ import annotations

import re

from aiops.compiler.context import Ctx
from aiops.compiler.diagnostics import did_you_mean
from aiops.compiler.rules_policy import cron_problem

RATES = ("max_guardrail_hit_rate", "max_refusal_rate", "min_json_valid_rate", "max_error_rate",
         "min_feedback_pass_rate")


def guard_names(spec) -> list[str]:
    """'input.pii', 'output.json_schema', ...: every guard some prompt of the spec declares."""
    names = set()
    for p in (spec.prompts or {}).values():
        g = getattr(p, "guardrails", None)
        for side in ("input", "output"):
            for guard in (getattr(g, side, None) or []) if g is not None else []:
                if getattr(guard, "type", None):
                    names.add(f"{side}.{guard.type}")
    return sorted(names)


def check_prompt_monitoring(ctx: Ctx) -> None:
    m = ctx.spec.monitoring
    if m is None:
        return
    base = ("monitoring",)
    if m.schedule is not None:
        why = cron_problem(m.schedule) if isinstance(m.schedule, str) else "not a string"
        if why:
            ctx.err("E701", "invalid cron schedule", base + ("schedule",), why,
                    help="e.g. '0 6 * * *' runs every day at 06:00; '@daily' at midnight")
    w = m.window
    if w is not None:
        if w.by == "time" and w.size not in ("day", "week", "month"):
            ctx.err("E704", "invalid time window size", base + ("window", "size"),
                    f"'monitoring.window.size' must be one of 'day', 'week', 'month' for a time window. "
                    f"Got {w.size!r} instead.", help=did_you_mean(str(w.size), ["day", "week", "month"]))
        elif w.by == "rows" and not (isinstance(w.size, int) and not isinstance(w.size, bool) and w.size > 0):
            ctx.err("E704", "invalid row window size", base + ("window", "size"),
                    f"'monitoring.window.size' must be a positive int for a row window. Got {w.size!r} instead.")
    for k in RATES:
        v = getattr(m, k, None)
        if v is not None and not 0.0 <= v <= 1.0:
            ctx.err("E707", "a monitoring rate is out of range", base + (k,),
                    f"'monitoring.{k}' must be a float in the range [0.0, 1.0]. Got {v} instead.")
    guards = guard_names(ctx.spec)
    for name, v in (m.guardrail_hit_rates or {}).items():
        if name not in guards:
            ctx.err("E712", "a guardrail ceiling names no guard", base + ("guardrail_hit_rates", name),
                    f"'{name}' is not a guard of any prompt; guards are named side.type: "
                    f"{', '.join(guards) or '(none declared)'}", key=True,
                    help=did_you_mean(name, guards) or "name a guard the prompts declare, e.g. 'input.pii'")
        elif v is not None and not 0.0 <= v <= 1.0:
            ctx.err("E707", "a monitoring rate is out of range", base + ("guardrail_hit_rates", name),
                    f"'monitoring.guardrail_hit_rates.{name}' must be a float in the range [0.0, 1.0]. "
                    f"Got {v} instead.")
    auc = m.text_drift_auc
    if auc is not None and not 0.5 < auc <= 1.0:
        ctx.err("E713", "the text-drift AUC threshold is out of range", base + ("text_drift_auc",),
                f"'monitoring.text_drift_auc' must be a float in the range (0.5, 1.0]. Got {auc} instead.",
                help="0.5 means the classifier cannot tell the window from the reference; 0.75 is a usual alarm")
    ld = m.length_drift
    if ld is not None and ld.threshold is not None and not ld.threshold > 0:
        ctx.err("E714", "the length-drift threshold is not positive", base + ("length_drift", "threshold"),
                f"'monitoring.length_drift.threshold' must be a float above 0. Got {ld.threshold} instead.")
    if m.webhook is not None and not re.match(r"^https?://[^\s/]+", m.webhook):
        ctx.err("E708", "the webhook is not an http(s) URL", base + ("webhook",), f"got '{m.webhook}'")
    for k in ("min_rows", "min_feedback_rows"):
        v = getattr(m, k, None)
        if v is not None and v < 2:
            ctx.err("E710", "a monitoring minimum is too small", base + (k,),
                    f"'monitoring.{k}' must be an int of at least 2. Got {v} instead.",
                    help="statistics on fewer calls mean nothing; the default min_rows is 30")
