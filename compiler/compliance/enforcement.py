"""Claims match enforcement: for each control the spec declares, the code that enforces it and
the test that proves it, or "declared, not enforced".

One table, read by the compliance document (section "Security controls") and held true by
tests/test_compliance.py::test_every_enforcement_claim_names_code_and_a_test_that_exist, which
fails when a named module or test does not exist.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiops.compiler import schema as S

DECLARED = "declared, not enforced"


@dataclass(frozen=True)
class Control:
    name: str
    key: str  # the spec key that declares it
    code: str  # module (and function) that enforces it, "" when nothing does
    test: str  # tests/<file>.py::<test>, "" when nothing does
    how: str  # what the code does, in one phrase

    @property
    def status(self) -> str:
        return "enforced" if self.code and self.test else DECLARED


CONTROLS: tuple[Control, ...] = (
    Control("Masking of PII columns", "security.masking", "runtime/masking.py (masker_for)",
            "tests/test_canary.py::test_no_clear_text_pii_anywhere",
            "one keyed masker on every path: quarantines, prediction log, jobs, reports, errors"),
    Control("Encryption at rest", "security.encryption_at_rest", "runtime/sealed.py, runtime/policy.py (load_cipher)",
            "tests/test_audit_sealed.py::test_a_sealed_blob_opens_only_whole_in_order_and_in_its_place",
            "AES-GCM with one HKDF subkey per file or log segment; the server refuses to start without the key"),
    Control("API keys and roles", "security.roles", "runtime/policy.py (load_access, Access.check)",
            "tests/test_serve_access.py::test_a_high_risk_server_without_keys_refuses_to_start",
            "keys of 32+ characters compared in constant time; no keys: refused unless --insecure-dev"),
    Control("Owned jobs", "serving.modes", "runtime/serve/server.py, runtime/serve/jobs.py",
            "tests/test_serve_access.py::test_another_key_reading_a_job_gets_404",
            "a job belongs to the key that created it; another key gets 404"),
    Control("Audit log and its retention", "security.audit_log", "runtime/audit/chain.py, runtime/audit/checkpoints.py",
            "tests/test_audit_log.py::test_retention_expires_old_segments_as_an_audited_checkpointed_event",
            "HMAC-chained entries, signed checkpoints, expiry as a checkpointed event"),
    Control("Artefact signature", "security.signing_key_env", "runtime/trust/signatures.py, runtime/artefacts.py (verify)",
            "tests/test_trust.py::test_every_command_refuses_every_attack",
            "serve, score, monitor, retrain and verify refuse an unsigned or untrusted artefact"),
    Control("Release gate (blessing)", "thresholds", "runtime/blessing.py, runtime/artefacts.py (verify)",
            "tests/test_trust.py::test_the_blessing_is_re_derived_from_the_evidence_not_read_from_a_flag",
            "re-derived from the evidence at every load; an unblessed model is refused"),
    Control("Request size and records per request", "serving.max_body_bytes", "runtime/serve/server.py",
            "tests/test_serve.py::test_limits_oversized_body_and_too_many_records", "413 beyond the limits"),
    Control("Request timeout", "serving.timeout_s", "runtime/serve/server.py (App deadlines)",
            "tests/test_serve_limits.py::test_serving_timeout_s_answers_504", "504 after serving.timeout_s"),
    Control("Connection limits", "serving.max_header_bytes", "runtime/serve/limits.py",
            "tests/test_serve_limits.py::test_1100_slow_connections_do_not_stop_normal_answers",
            "header size (431), header and body deadlines (408), idle and concurrent connections"),
    Control("Approvals before production", "governance.approvals_required",
            "runtime/governance/approvals.py, compiler/governance/workflow.py (promote)",
            "tests/test_governance.py::test_production_needs_enough_distinct_approvals_and_serving_checks_them",
            "signed approvals by distinct listed approvers other than the author; serve --production checks them"),
    Control("Accountable overrides", "thresholds", "compiler/governance/overrides.py",
            "tests/test_governance_changes.py::test_a_high_risk_loosening_needs_a_reason",
            "a loosened threshold is a warning, needs --override-reason on a high risk tier, and is documented"),
    Control("No regular expression of the spec can take exponential time", "data.columns",
            "runtime/regex_safety.py (regex_hazard), compiler/rules_data.py, runtime/contract.py",
            "tests/test_regex_safety.py::test_check_refuses_a_nested_quantifier_in_the_contract_at_once",
            "aiops check refuses nested or overlapping repeats and backreferences (E017); the runtime refuses them again"),
    Control("Latency objective", "serving.latency_objective_ms", "", "",
            "measured in /metrics (request duration histogram); no request is refused for it"),
    Control("Review cadence", "governance.review_cadence_days", "", "",
            "no command reminds or refuses when a review is overdue"),
    Control("Intended and out-of-scope use", "governance.intended_use", "", "",
            "documented here; no command can tell how a prediction is used"),
)


def applicable(sec: S.Security, serving: S.Serving) -> list[Control]:
    """The controls this spec declares (a disabled one is left out)."""
    out = []
    for c in CONTROLS:
        if c.key == "security.masking" and not sec.masking:
            continue
        if c.key == "security.encryption_at_rest" and not sec.encryption_at_rest.enabled:
            continue
        if c.key == "security.audit_log" and not sec.audit_log.enabled:
            continue
        if c.key == "security.roles" and not sec.roles:
            continue
        if c.name == "Owned jobs" and "async" not in serving.modes:
            continue
        out.append(c)
    return out


# the controls of a prompt spec (kind: prompt), read by compiler/compliance/genai.py
GENAI_CONTROLS: tuple[Control, ...] = (
    Control("Template sandbox", "prompts.*.template",
            "runtime/genai/render.py (sandbox), compiler/rules_prompt.py (check)",
            "tests/test_genai_runtime.py::test_sandbox_escapes_are_refused_and_write_nothing",
            "templates render in Jinja2's sandbox; aiops check refuses unsafe constructs at file:line"),
    Control("Input guardrails (PII, deny, allow, length), run concurrently", "prompts.*.guardrails.input",
            "runtime/genai/guardrails.py (InputGuards)", "tests/test_genai_runtime.py::test_input_guards",
            "PII spans masked through the one masker's key before the model; deny, allow and length block"),
    Control("Output guardrails and the tool allow-list", "prompts.*.guardrails.output",
            "runtime/genai/guardrails.py (OutputGuards)",
            "tests/test_genai_runtime.py::test_tool_calls_outside_the_allow_list_are_refused",
            "JSON Schema, deny patterns, PII in the output; tools outside the allow-list or max_steps refused"),
    Control("Provider timeout, retries and token budget", "provider.budget", "runtime/genai/provider.py (Provider)",
            "tests/test_genai_runtime.py::test_budget_is_refused_before_sending",
            "a call over max_input_tokens or the per-minute budget is refused before it is sent"),
    Control("Prompt calls in the audit log, masked", "security.audit_log", "runtime/genai/logentry.py",
            "tests/test_genai_runtime.py::test_prompt_entries_are_chained_masked_and_sealed",
            "each call chained in the same audit log, variables and outputs masked, sealed when encryption is on"),
    Control("Masking policy of PII variables", "security.masking",
            "compiler/rules_prompt.py (check_prompt_masking), runtime/masking.py (masker_for)",
            "tests/test_check_cli.py::test_cli_prompt_masking_key_that_names_no_variable_is_refused",
            "every masking entry names a variable (E801) and every pii variable has a method (E802); "
            "a pii variable is masked whole in the log by its method"),
    Control("No regular expression of the spec can take exponential time", "prompts.*.guardrails",
            "runtime/regex_safety.py (regex_hazard), compiler/rules_prompt.py, runtime/genai/guardrails.py",
            "tests/test_regex_safety.py::test_check_refuses_an_overlapping_alternation_in_a_prompt_spec",
            "guardrail, variable, schema and golden patterns: aiops check refuses nested or overlapping repeats and "
            "backreferences (E017); the runtime refuses them again"),
    Control("Variables judged by the data contract", "prompts.*.variables", "runtime/contract.py, compiler/rules_prompt.py",
            "tests/test_check_catalog.py::test_bad_spec",
            "one contract core: the golden set is checked at check time, every call at serving time"),
    Control("Release gate on the golden set (blessing)", "prompts.*.evaluation.gates",
            "compiler/prompt_eval.py, runtime/blessing.py (derive_prompts)",
            "tests/test_genai_compile.py::test_a_failed_gate_refuses_the_blessing_with_reasons",
            "every golden case run against the provider; blessed only when every gate passes"),
    Control("Evaluation evidence is reproducible", "provider.parameters",
            "compiler/prompt_eval.py (cache_key), compiler/prompt_build.py",
            "tests/test_genai_compile.py::test_evidence_is_reused_byte_identically_and_check_tells_stale",
            "temperature 0 and a fixed seed; evidence re-run only when its cache key changes"),
    Control("Provider named by environment variable", "provider.base_url_env", "compiler/rules_prompt.py (check_provider)",
            "tests/test_check_catalog.py::test_bad_spec",
            "a literal URL or a credential in the spec is refused by aiops check"),
    Control("PII masked in the evaluation evidence", "prompts.*.guardrails",
            "compiler/prompt_eval.py, runtime/genai/guardrails.py (SpanMasker)",
            "tests/test_genai_compile.py::test_a_failed_gate_refuses_the_blessing_with_reasons",
            "e-mail addresses and phone numbers are redacted in recorded outputs"),
    Control("Monitoring of the prompt calls in production", "monitoring",
            "runtime/monitor/prompt_job.py, compiler/prompt_monitoring.py",
            "tests/test_genai_monitor.py::test_text_drift_alert_on_the_shifted_day_only_and_feedback_pass_rate",
            "per window: text drift against the masked evaluation set (domain-classifier AUC), lengths, guardrail, "
            "refusal, JSON validity and error rates, feedback pass rate; alerts exit 1 and reach the webhook"),
    Control("Transparency towards the people who read the output", "governance.intended_use", "", "",
            "documented here; no command can tell whether readers are told the text comes from a model"),
    Control("Human oversight of every output", "governance.risk_tier", "", "",
            "the limited tier assumes a person reads every output; nothing in aiops enforces it"),
)
