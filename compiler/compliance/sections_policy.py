"""Sections on how the model is controlled: limitations, security, governance, monitoring,
standards and change history."""
from __future__ import annotations

from typing import Any

from aiops.compiler import schema as S
from aiops.compiler.plan import Plan, jsonable
from aiops.compiler.compliance.model import Block, Cell, Evidence, bound_text, bullets, days, f4, facts, file, key, num, table, text, yes


def limitations(plan: Plan) -> list[Block]:
    g = plan.governance
    return [bullets(g.limitations, key("governance.limitations"), title="Limitations"),
            bullets(g.ethical_considerations, key("governance.ethical_considerations"),
                    title="Ethical considerations")]


def security(plan: Plan) -> list[Block]:
    sec = plan.security
    masking = sec.masking
    cols = [(Cell(c.name, code=True), yes(c.pii), yes(c.sensitive), masking[c.name].method if c.name in masking
             else "-", yes(masking[c.name].allow_as_feature) if c.name in masking else "-", yes(c.required),
             key(f"security.masking.{c.name}") if c.name in masking else key(f"data.columns.{c.name}"))
            for c in sorted(plan.columns, key=lambda c: c.name) if c.pii or c.sensitive or c.name in masking]
    enc = sec.encryption_at_rest
    audit = sec.audit_log
    blocks = [
        table(("Column", "PII", "Sensitive", "Masking", "Allowed as feature", "Model input", "Source"), cols,
              file("contract.json"), title="Personal and sensitive columns") if cols else
        text("No column is marked pii or sensitive and no masking is set.", key("data.columns"),
             key("security.masking"), title="Personal and sensitive columns"),
        facts([
            ("Encryption at rest", f"enabled, key from the environment variable {enc.key_env}" if enc.enabled
             else "disabled", key("security.encryption_at_rest")),
            ("Key source", sec.key_source, key("security.key_source")),
            ("Audit log", f"enabled, kept {days(audit.retention_days)}; enforced by aiops serve: entries chained "
             "by HMAC-SHA256 under the deployment's log key, Ed25519-signed checkpoints, older segments expired as "
             "a checkpointed event (runtime/audit/chain.py, tests/test_audit_log.py); the server refuses to start "
             "without the keys and refuses predictions while the log cannot be written" if audit.enabled
             else "disabled (predictions are still logged, MAC-chained when AIOPS_LOG_KEY is set)",
             key("security.audit_log")),
            ("Artefact signature", _signing(plan), key("security.signing_key_env")),
        ], file("serving.json"), title="Controls"),
    ]
    from aiops.compiler.compliance.enforcement import applicable

    blocks.append(table(("Control", "Status", "Enforced by", "Test", "Source"), [
        (c.name, c.status, f"{c.code}: {c.how}" if c.code else c.how, Cell(c.test, code=True) if c.test else "-",
         key(c.key)) for c in applicable(sec, plan.serving)],
        key("compiler/compliance/enforcement.py"), title="Enforcement of the declared controls"))
    roles = sorted(sec.roles.items())
    blocks.append(table(("Role", "Permissions", "Source"),
                        [(r, ", ".join(p), key(f"security.roles.{r}")) for r, p in roles], file("serving.json"),
                        title="Roles") if roles else
                  text("security.roles is empty: no role is defined.", key("security.roles"), title="Roles"))
    s = plan.serving
    blocks.append(facts([
        ("Modes", ", ".join(s.modes), key("serving.modes")),
        ("Records per request", f"at most {s.max_records_per_request}", key("serving.max_records_per_request")),
        ("Request body", f"at most {s.max_body_bytes} bytes", key("serving.max_body_bytes")),
        ("Latency objective", f"{num(s.latency_objective_ms)} ms", key("serving.latency_objective_ms")),
        ("Timeout", f"{num(s.timeout_s)} s", key("serving.timeout_s")),
        ("Batch chunk", f"{s.batch_chunk_rows} rows", key("serving.batch_chunk_rows")),
    ], file("serving.json"), title="Serving limits"))
    return blocks


def _signing(plan: Plan) -> str:
    """The signing control as enforced (compiler/sign.py, runtime/trust/signatures.py, tests/test_trust.py)."""
    from aiops.compiler.sign import signature_policy

    p = signature_policy(plan.security, plan.risk_tier)
    env = plan.security.signing_key_env
    head = (f"required ({p['why']}): the build is refused without the key in {env}; serve, score, monitor, "
            "retrain and verify refuse an unsigned artefact or one whose signer is not in the deployment's "
            "trusted keys (AIOPS_TRUSTED_KEYS)" if p["signature_required"] else
            f"signed when {env} is set at compile time; required wherever the deployment names trusted keys "
            "(AIOPS_TRUSTED_KEYS)")
    return (head + ". manifest.sig: an in-toto statement over the sha256 of every file (manifest.json included), "
            "Ed25519 in a DSSE envelope; the blessing is re-derived from evidence/evaluation.json against the "
            "gate in manifest.json, and any disagreeing evidence is refused. Only --insecure-dev gets round a "
            "missing or untrusted signature, never round tampering")


def governance(plan: Plan, ev: Evidence) -> list[Block]:
    g = plan.governance
    kpi_owners = sorted({k.owner for k in plan.kpis})
    return [facts([
        ("Owner", g.owner, key("governance.owner")),
        ("Approvers", ", ".join(g.approvers) or "(none)", key("governance.approvers")),
        ("Approvals required", str(g.approvals_required), key("governance.approvals_required")),
        ("Risk tier", g.risk_tier, key("governance.risk_tier")),
        ("Review cadence", f"every {days(g.review_cadence_days)}", key("governance.review_cadence_days")),
        ("Regulations declared", ", ".join(g.regulations) or "(none)", key("governance.regulations")),
        ("KPI owners", ", ".join(kpi_owners), key("kpis")),
        ("Release gate", ev.blessing["rule"], file("evidence/blessing.json")),
        ("Blessed", yes(ev.blessing["blessed"]), file("evidence/blessing.json")),
        ("Build record", f"every compile is recorded in the registry {plan.env.registry}",
         key("env.registry")),
    ]), *approval_blocks(plan, ev)]


def approval_blocks(plan: Plan, ev: Evidence) -> list[Block]:
    """What production needs, and where the live state is: stages and approvals change after compile,
    so this document names the run and the rule; approvals/ and `aiops runs` hold the rest."""
    from aiops.runtime.governance.approvals import check_evidence
    from aiops.runtime.governance.subject import run_id

    g = plan.governance
    rid = run_id(plan.spec_hash, ev.data["sha256"], ev.blessing["model_sha256"])
    high = g.risk_tier == "high"
    fair = [t for t in ev.evaluation["thresholds"] if t["kind"] == "fairness"]
    expl = "present" if ev.importance.get("features") else "missing"
    problems = check_evidence(ev.evaluation, ev.importance, {"risk_tier": g.risk_tier,
                                                             "explainability": jsonable(g.explainability)})
    return [facts([
        ("Registry run", Cell(rid, code=True), file("manifest.json")),
        ("Stage at compile", "candidate: every build enters the registry as a candidate", key("env.registry")),
        ("Production rule", f"{g.approvals_required} signed approval(s) from distinct listed approvers "
         f"({', '.join(g.approvers) or 'none'}), none of them the run's author", key("governance.approvals_required")),
        ("High risk evidence", ("required: fairness bounds measured and passing, explanations present; this build: "
                                + ("; ".join(problems) if problems else
                                   f"{len(fair)} fairness bounds passed, explanations {expl}")) if high else
         "not required (risk tier " + g.risk_tier + ")", key("governance.risk_tier")),
        ("Approvals", "signed records in approvals/ next to this document (not in manifest.json; verified "
         "against $AIOPS_TRUSTED_KEYS by 'aiops promote' and by serve/score --production)", file("governance.json")),
        ("Live state", Cell(f"aiops runs {plan.name}", code=True), key("env.registry")),
    ], title="Approvals and stages")]


def _alerts_on(r: S.DriftRule) -> str:
    """A drift rule's alert condition: ks and chi_square thresholds are p-value floors."""
    return f"{'p-value below' if r.test in ('ks', 'chi_square') else 'statistic above'} {num(r.threshold)}"


def monitoring(plan: Plan, ev: Evidence) -> list[Block]:
    m = plan.monitoring
    w = m.window
    per = {"day": "daily", "week": "weekly", "month": "monthly"}
    window = f"{per.get(w.size, w.size)} windows on {w.column}" if w.by == "time" else \
        f"windows of {w.size} rows"

    dq = jsonable(m.data_quality)
    pd = m.prediction_drift
    blocks = [facts([
        ("Schedule (cron)", Cell(m.schedule, code=True), key("monitoring.schedule")),
        ("Window", window, key("monitoring.window")),
        ("Label delay", days(m.label_delay_days), key("monitoring.label_delay_days")),
        ("Label join key", m.label_key or "(none)", key("monitoring.label_key")),
        ("Reference profile", f"{len(ev.profile['columns'])} columns of the training rows (no raw rows)",
         file("evidence/profile.json")),
        ("Multiple-test correction", m.drift_correction, key("monitoring.drift_correction")),
        ("Prediction drift", f"{pd.test} on the score: alert on {_alerts_on(pd)}" if pd else "(not monitored)",
         key("monitoring.prediction_drift")),
        ("Fairness monitored", yes(m.fairness), key("monitoring.fairness")),
        ("Retrain margin", num(m.retrain_margin), key("monitoring.retrain_margin")),
        ("Webhook", "configured" if m.webhook else "(none)", key("monitoring.webhook")),
    ])]
    blocks.append(table(("Check", "Limit", "Source"), [
        (k.removeprefix("max_").replace("_", " "), f"<= {num(v)}", key(f"monitoring.data_quality.{k}"))
        for k, v in sorted(dq.items())], title="Data quality"))
    drift = [(r.test, r.applies_to, _alerts_on(r), "all", key(f"monitoring.drift[{i}]"))
             for i, r in enumerate(m.drift)]
    drift += [(r.test, r.applies_to, _alerts_on(r), col, key(f"monitoring.drift_features.{col}[{i}]"))
              for col, rules in sorted(m.drift_features.items()) for i, r in enumerate(rules)]
    blocks.append(table(("Test", "Applies to", "Alerts on", "Features", "Source"), drift, title="Drift rules")
                  if drift else text("No drift rule is set.", key("monitoring.drift"), title="Drift rules"))
    perf = [(k, bound_text(b.min, b.max), key(f"monitoring.performance.{k}"))
            for k, b in sorted(m.performance.items())]
    blocks.append(table(("Metric", "Bound", "Source"), perf, title="Performance once labels arrive") if perf else
                  text("No live performance bound is set.", key("monitoring.performance"),
                       title="Performance once labels arrive"))
    blocks.append(table(("Signal", "Action", "Source"), [(k.replace("_", " "), v, key(f"monitoring.actions.{k}"))
                                                        for k, v in sorted(jsonable(m.actions).items())],
                        title="Actions"))
    return blocks


def standards(plan: Plan) -> list[Block]:
    from aiops.compiler import estimators as E

    g = plan.governance
    libs = ", ".join(f"{k} {v}" for k, v in sorted(E.versions().items()))
    return [
        text("No harmonised standard under the EU AI Act is claimed. The document follows the structure of "
             "EU AI Act Annex IV, the NIST AI Risk Management Framework 1.0 and the SR 11-7 supervisory "
             "guidance on model risk management (see Regulation mapping).", key("governance.regulations")),
        facts([
            ("Frameworks declared", ", ".join(g.regulations) or "(none)", key("governance.regulations")),
            ("Compiler", f"aiops {plan.tool_version}", file("manifest.json")),
            ("Libraries", libs, file("manifest.json")),
            ("Model format", "ONNX, checked against scikit-learn (see ONNX parity)", file("evidence/parity.json")),
            ("Data contract", "pandera schema, validated lazily; rejected rows quarantined",
             file("pipeline/schema.py")),
            ("Reproduce", Cell(plan.regenerate, code=True), file("manifest.json")),
        ]),
    ]


def history(plan: Plan, ev: Evidence) -> list[Block]:
    choices = ", ".join(f"{k}={v}" for k, v in plan.choices) or "(none)"
    blocks = [facts([
        ("Spec hash", Cell(plan.spec_hash, code=True), file("evidence/blessing.json")),
        ("Config choices", choices, file("manifest.json")),
        ("Overrides", ", ".join(plan.overrides) or "(none)", file("manifest.json")),
        ("Data sha256", Cell(ev.data["sha256"], code=True), file("evidence/data.json")),
        ("Model sha256", Cell(ev.blessing["model_sha256"], code=True), file("evidence/blessing.json")),
        ("Tool version", f"aiops {plan.tool_version}", file("manifest.json")),
    ], title="This build")]
    if ev.history is None:
        blocks.append(text(f"This is the first build of spec hash {plan.spec_hash[:12]}: evidence/history.json "
                           "does not exist. aiops retrain records each change of model there.",
                           file("evidence/blessing.json"), title="Earlier changes"))
    elif not ev.history:
        blocks.append(text("evidence/history.json lists no change.", file("evidence/history.json"),
                           title="Earlier changes"))
    else:
        rows = [(n, h.get("event", "?"), Cell(str(h.get("from_model_sha256") or "-")[:12], code=True),
                 Cell(str(h.get("to_model_sha256") or "-")[:12], code=True), h.get("reason") or "-",
                 _history_metrics(h.get("metrics") or {}), _history_data(h))
                for n, h in enumerate(ev.history, 1)]
        blocks.append(table(("#", "Event", "From model", "To model", "Reason", "Metrics", "Data"), rows,
                            file("evidence/history.json"), title="Earlier changes"))
    if ev.diff is not None:
        from aiops.compiler.governance.diff import lines

        blocks.append(bullets([ln for ln in lines(ev.diff) if ln], file("evidence/diff.json"),
                              title="Changes from the model this one replaced (aiops diff)"))
    return blocks


def _value(v: Any) -> str:
    return f4(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else num(v)


def _history_metrics(m: dict) -> str:
    """An event's metrics: champion -> challenger per metric (aiops retrain), or name value pairs."""
    if isinstance(m.get("champion"), dict) and isinstance(m.get("challenger"), dict):
        names = sorted(set(m["champion"]) | set(m["challenger"]))
        out = ", ".join(f"{n} {_value(m['champion'].get(n))} -> {_value(m['challenger'].get(n))}" for n in names)
        notes = [f"primary {m['primary']}" if "primary" in m else "",
                 f"margin {num(m['margin'])}" if "margin" in m else "",
                 f"challenger gate {'passed' if m['challenger_gate_passed'] else 'failed'}"
                 if "challenger_gate_passed" in m else ""]
        return "champion -> challenger: " + out + "".join(f"; {t}" for t in notes if t)
    return ", ".join(f"{k} {_value(v)}" for k, v in sorted(m.items()) if not isinstance(v, (dict, list))) or "-"


def _history_data(h: dict) -> str:
    d, ho = h.get("data") or {}, h.get("holdout") or {}
    parts = [f"{d['source']} (sha256 {str(d.get('sha256'))[:12]})" if d.get("source") else "",
             f"holdout from {ho['from']}" if ho.get("from") else "",
             f"{ho['rows']} holdout rows" if ho.get("rows") is not None else ""]
    return ", ".join(p for p in parts if p) or "-"
