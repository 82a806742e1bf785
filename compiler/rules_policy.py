"""Semantic rules for monitoring, serving, security and governance (policy coherence)."""
from __future__ import annotations

import re

from aiops.compiler.context import Ctx
from aiops.compiler.diagnostics import did_you_mean
from aiops.compiler.rules_model import check_metric_bound

DRIFT_FITS = {
    "psi": ("numeric", "categorical"),
    "ks": ("numeric",),
    "wasserstein": ("numeric",),
    "chi_square": ("categorical",),
    "jensen_shannon": ("numeric", "categorical"),
}
_CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_CRON_TAKES = ("0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT")
CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
               "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_CRON_FIELD = re.compile(r"[0-9*/,\-]+|[0-9*/,\-]*[A-Za-z]{3}([0-9*/,\-]+[A-Za-z]{3})*[0-9*/,\-]*")


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a crontab schedule (five fields or a macro such as @daily), or None.

    croniter decides what each field means; the five-field shape and the characters are
    checked first, since croniter also takes seconds, years and its own extensions (H, L, #)
    that neither cron nor GitHub Actions know. The schedule is printed into crontab and
    workflow.yml lines, so nothing else may pass."""
    from croniter import croniter

    if expr in CRON_MACROS:
        return None
    if expr.startswith("@"):
        return f"'{expr}' is not a cron macro; the macros are {', '.join(CRON_MACROS)}"
    if expr != expr.strip() or any(not ch.isprintable() for ch in expr):
        return "the schedule starts or ends with a space, or holds a newline or tab"
    parts = expr.split(" ")
    if len(parts) != 5:
        return f"a cron schedule has 5 fields (minute hour day month weekday) separated by single spaces; " \
               f"got {len(expr.split())}"
    for i, (part, name) in enumerate(zip(parts, _CRON_NAMES)):
        alone = " ".join(part if j == i else "*" for j in range(5))
        if not _CRON_FIELD.fullmatch(part) or not croniter.is_valid(alone):
            return f"the {name} field '{part}' is not valid: it takes {_CRON_TAKES[i]}, lists (1,3), ranges (1-5) " \
                   f"and steps of at least 1 (*/15)"
    if not croniter.is_valid(expr):
        return f"'{expr}' is not a valid cron schedule"
    return None


def cron_fields(expr: str) -> str:
    """A valid schedule as five fields (a macro such as @daily spelled out), for GitHub Actions."""
    return CRON_MACROS.get(expr, expr)


def kind_of(dtype: str) -> str:
    return "numeric" if dtype in ("int", "float") else ("date" if dtype in ("date", "datetime") else "categorical")


def check_monitoring(ctx: Ctx) -> None:
    m = ctx.spec.monitoring
    task = ctx.spec.problem.task if ctx.spec.problem else None
    if m is None:
        return
    base = ("monitoring",)
    if m.schedule is not None:
        why = cron_problem(m.schedule)
        if why:
            ctx.err("E701", "invalid cron schedule", base + ("schedule",), why,
                    help="e.g. '0 6 * * 1' or '0 6 * * MON' runs every Monday at 06:00; '@daily' at midnight")
    for i, r in enumerate(m.drift or []):
        if r is not None and r.test and r.applies_to and r.applies_to not in DRIFT_FITS[r.test]:
            ctx.err("E702", f"drift test '{r.test}' does not fit {r.applies_to} features", base + ("drift", i, "test"),
                    f"'{r.test}' applies to {' and '.join(DRIFT_FITS[r.test])} features",
                    help="use ks, psi or wasserstein for numeric; chi_square or jensen_shannon for categorical")
        _check_drift_threshold(ctx, r, base + ("drift", i))
    for col_name, rules in (m.drift_features or {}).items():
        col = ctx.column_ref(col_name, base + ("drift_features", col_name), "drift_features", code="E703",
                             key=True)
        for j, r in enumerate(rules or []):
            if r is None or col is None or r.test is None:
                continue
            kind = kind_of(col.dtype)
            if kind == "date" or kind not in DRIFT_FITS[r.test]:
                ctx.err("E703", f"drift test '{r.test}' does not fit column '{col_name}'",
                        base + ("drift_features", col_name, j, "test"),
                        f"'{col_name}' has dtype {col.dtype}; '{r.test}' applies to {' and '.join(DRIFT_FITS[r.test])}")
            _check_drift_threshold(ctx, r, base + ("drift_features", col_name, j))
    if m.prediction_drift is not None:
        _check_drift_threshold(ctx, m.prediction_drift, base + ("prediction_drift",))
    _check_drift_columns(ctx, m)
    w = m.window
    if w is not None:
        if w.by == "time":
            if not w.column:
                ctx.err("E704", "a time window needs a column", base + ("window",), key=True,
                        help="set window.column to a date column")
            else:
                col = ctx.column_ref(w.column, base + ("window", "column"), "monitoring.window", code="E704")
                if col is not None and col.dtype not in ("date", "datetime"):
                    ctx.err("E704", "the window column must be a date", base + ("window", "column"),
                            f"'{w.column}' has dtype {col.dtype}")
            if w.size not in ("day", "week", "month"):
                ctx.err("E704", "invalid time window size", base + ("window", "size"),
                        f"'monitoring.window.size' must be one of 'day', 'week', 'month' for a time window. "
                        f"Got {w.size!r} instead.", help=did_you_mean(str(w.size), ["day", "week", "month"]))
        elif not (isinstance(w.size, int) and w.size > 0):
            ctx.err("E704", "invalid row window size", base + ("window", "size"),
                    f"'monitoring.window.size' must be a positive int for a row window. Got {w.size!r} instead.")
    if m.label_key is not None:
        ctx.column_ref(m.label_key, base + ("label_key",), "monitoring.label_key", code="E706")
    if m.label_delay_days is not None and m.label_delay_days < 0:
        ctx.err("E706", "label_delay_days is negative", base + ("label_delay_days",), f"got {m.label_delay_days}")
    for name, b in (m.performance or {}).items():
        check_metric_bound(ctx, name, b, base + ("performance", name), task)
    dq = m.data_quality
    if dq is not None:
        for k in ("max_schema_violation_rate", "max_null_rate", "max_out_of_range_rate", "max_unseen_category_rate"):
            v = getattr(dq, k)
            if v is not None and not 0.0 <= v <= 1.0:
                ctx.err("E707", "a data-quality rate is out of range", base + ("data_quality", k),
                        f"'monitoring.data_quality.{k}' must be a float in the range [0.0, 1.0]. Got {v} instead.")
    if m.webhook is not None and not re.match(r"^https?://[^\s/]+", m.webhook):
        ctx.err("E708", "the webhook is not an http(s) URL", base + ("webhook",), f"got '{m.webhook}'")
    for k in ("min_rows", "min_labelled_rows"):
        v = getattr(m, k, None)
        if v is not None and v < 2:
            ctx.err("E710", "a monitoring minimum is too small", base + (k,),
                    f"'monitoring.{k}' must be an int of at least 2. Got {v} instead.",
                    help="statistics on fewer rows mean nothing; the default is 100")
    if m.fairness and not (ctx.spec.thresholds and ctx.spec.thresholds.fairness):
        ctx.err("E709", "fairness monitoring needs fairness bounds", base + ("fairness",),
                "monitoring.fairness is true but thresholds.fairness is empty",
                help="add thresholds.fairness, or set monitoring.fairness: false")


def model_inputs(spec) -> set[str]:
    """The contract columns a model feature reads (drift is tested on these by default)."""
    return {s for f in (spec.features or []) if f is not None and f.transform not in (None, "drop")
            for s in (f.source, f.other) if s}


def _check_drift_columns(ctx: Ctx, m) -> None:
    """monitoring.drift_columns: columns that are not model inputs but whose drift is tested
    too; drift_features may only tune a column that is tested."""
    base = ("monitoring", "drift_columns")
    inputs = model_inputs(ctx.spec)
    data = ctx.spec.data
    problem = ctx.spec.problem
    not_testable = {problem.target if problem else None: "it is the target: its drift is tested with the labels",
                    data.key if data else None: "it is the row key",
                    m.label_key: "it is the label key",
                    m.window.column if m.window and m.window.by == "time" else None: "it is the window column"}
    for i, name in enumerate(m.drift_columns or []):
        col = ctx.column_ref(name, base + (i,), "monitoring.drift_columns", code="E711")
        if col is None:
            continue
        why = not_testable.get(name) or ("it is a model input: model inputs are always tested" if name in inputs
                                         else "it is PII: the reference profile keeps counts only" if col.pii
                                         else "it is a date: its values move with time" if col.dtype in ("date", "datetime")
                                         else None)
        if why:
            ctx.err("E711", "a drift column cannot be tested", base + (i,), f"'{name}': {why}",
                    help=f"remove '{name}' from monitoring.drift_columns")
    listed = set(m.drift_columns or [])
    for name in (m.drift_features or {}):
        if name in ctx.columns and name not in inputs and name not in listed:
            ctx.err("E711", "drift_features names a column that is not tested", ("monitoring", "drift_features", name),
                    f"'{name}' is not a model input; drift is tested on model inputs and the prediction, and on "
                    "other columns only when monitoring.drift_columns lists them", key=True,
                    help=f"add '{name}' to monitoring.drift_columns, or remove its drift_features entry")


def _check_drift_threshold(ctx: Ctx, r, path) -> None:
    if r is None or r.threshold is None or r.test is None:
        return
    if r.test in ("ks", "chi_square") and not 0.0 < r.threshold < 1.0:
        ctx.err("E702", f"the {r.test} threshold is a p-value", path + ("threshold",),
                f"'{r.test}' alerts when the p-value falls below the threshold, a float in the range (0.0, 1.0). "
                f"Got {r.threshold} instead.")
    elif r.threshold < 0:
        ctx.err("E702", "a drift threshold is negative", path + ("threshold",), f"got {r.threshold}")
    elif r.test == "jensen_shannon" and r.threshold > 1:
        ctx.err("E702", "the jensen_shannon threshold is a distance in [0, 1]", path + ("threshold",),
                f"got {r.threshold}")


MAX_HEADER_RANGE = (1024, 1_048_576)
_POSITIVE = ("max_records_per_request", "max_body_bytes", "latency_objective_ms", "timeout_s", "batch_chunk_rows",
             "max_header_bytes", "header_timeout_s", "body_timeout_s", "keepalive_timeout_s", "max_connections",
             "job_max_attempts")


def check_serving(ctx: Ctx) -> None:
    s = ctx.spec.serving
    if s is None:
        return
    for k in _POSITIVE:
        v = getattr(s, k)
        if v is not None and v <= 0:
            ctx.err("E720", f"serving.{k} must be positive", ("serving", k),
                    f"'serving.{k}' must be a number in the range (0, inf). Got {v} instead.")
    if s.modes is not None and not s.modes:
        ctx.err("E720", "serving.modes is empty", ("serving", "modes"), help="list at least one of http, batch, async")
    lo, hi = MAX_HEADER_RANGE
    if s.max_header_bytes is not None and s.max_header_bytes > 0 and not lo <= s.max_header_bytes <= hi:
        ctx.err("E721", "serving.max_header_bytes is out of range", ("serving", "max_header_bytes"),
                f"'serving.max_header_bytes' must be an int in the range [{lo}, {hi}]. Got {s.max_header_bytes} instead.",
                help="the default, 32768, fits any API key; a larger limit lets one request hold more memory")
    sec = ctx.spec.security
    encrypted = bool(sec and sec.encryption_at_rest and sec.encryption_at_rest.enabled)
    if s.modes and "async" in s.modes and not encrypted:
        used = {src for f in (ctx.spec.features or []) if f is not None and f.transform not in (None, "drop")
                for src in (f.source, f.other) if src}
        pii = sorted(n for n, c in ctx.columns.items() if c is not None and c.pii and n in used)
        if pii:
            ctx.err("E722", "asynchronous jobs would store a PII feature in clear text", ("serving", "modes"),
                    f"serving.modes has 'async', the PII column(s) {', '.join(repr(n) for n in pii)} feed the model "
                    "and security.encryption_at_rest is off: a job's input must keep them to score them",
                    help="enable security.encryption_at_rest, or remove 'async' from serving.modes")
    g = ctx.spec.governance
    if g is not None and g.risk_tier == "high" and sec is not None and not sec.roles:
        tier = ctx.sm.locate(("governance", "risk_tier")).render()
        ctx.err("E723", "a high-risk model needs API roles", ("security", "roles"),
                f"governance.risk_tier is high ({tier}): 'aiops serve' refuses to run it without API keys, "
                "and every key names a role", key=True,
                help="define security.roles, e.g. {scorer: [predict, explain, metadata], auditor: [audit, metrics]}")


def check_security(ctx: Ctx) -> None:
    sec = ctx.spec.security
    if sec is None:
        return
    base = ("security",)
    features_by_source: dict[str, int] = {}
    for i, f in enumerate(ctx.spec.features or []):
        if f is not None and f.transform not in (None, "drop"):
            for src in (f.source, f.other):
                if src:
                    features_by_source.setdefault(src, i)
    masking = sec.masking or {}
    for name, mk in masking.items():
        col = ctx.column_ref(name, base + ("masking", name), "security.masking", code="E801", key=True)
        if col is not None and not col.pii:
            ctx.warn("W804", "masking is set for a column that is not flagged pii", base + ("masking", name),
                     f"'{name}' has pii: false in data.columns", help=f"set pii: true on data.columns.{name}", key=True)
    for name, col in ctx.columns.items():
        if col is None or not col.pii:
            continue
        mk = masking.get(name)
        if mk is None:
            ctx.err("E802", "a PII column has no masking method", ("data", "columns", name, "pii"),
                    f"'{name}' is flagged pii but security.masking does not name it",
                    help=f"add security.masking.{name}: {{method: hash}} (hash, redact or generalize)")
        elif mk.method == "none":
            warn_unmasked_pii(ctx, name, f"data.columns.{name}")
        if name in features_by_source:
            i = features_by_source[name]
            if mk is None or not mk.allow_as_feature or mk.method == "none":
                ctx.err("E803", "a PII column is used as a model feature", ("features", i, "source"),
                        f"'{name}' is flagged pii and the policy does not allow it as a feature",
                        help=f"drop the feature, or set security.masking.{name}: "
                             "{method: hash, allow_as_feature: true} if the policy allows it")
    check_security_controls(ctx)


def warn_unmasked_pii(ctx, name: str, declared_at: str) -> None:
    """W816: `method: none` on a PII column or variable. The runtime never writes a PII value in
    clear (runtime/masking.py masker_for redacts it, as with no method), so the policy would
    claim less masking than is applied: say so, and how to make the spec say what happens."""
    ctx.warn("W816", "a PII value's masking method is none, which is not applied",
             ("security", "masking", name), f"'{name}' is flagged pii ({declared_at}): the runtime never writes a PII "
             "value in clear, so it redacts it, as with no method", key=True,
             help=f"write security.masking.{name}: {{method: redact}} (or hash, or generalize), or set pii: false on "
                  f"{declared_at} if it is not PII")


def check_security_controls(ctx: Ctx) -> None:
    """The security rules that do not depend on the data, shared with prompt specs (compiler/rules_prompt.py):
    E805 encryption without a key source, E806 an empty role, E807 a retention under a day."""
    sec = ctx.spec.security
    if sec is None:
        return
    base = ("security",)
    if sec.encryption_at_rest is not None and sec.encryption_at_rest.enabled and not sec.encryption_at_rest.key_env:
        ctx.err("E805", "encryption at rest needs a key source", base + ("encryption_at_rest", "key_env"),
                "key_env is empty", help="name the environment variable that holds the key")
    for role, perms in (sec.roles or {}).items():
        if perms is not None and not perms:
            ctx.err("E806", "a role grants no permission", base + ("roles", role), f"role '{role}' is empty")
    if sec.audit_log is not None and sec.audit_log.retention_days is not None and sec.audit_log.retention_days < 1:
        ctx.err("E807", "audit log retention must be at least one day", base + ("audit_log", "retention_days"),
                f"got {sec.audit_log.retention_days}")


def check_governance(ctx: Ctx) -> None:
    g = ctx.spec.governance
    if g is None:
        return
    base = ("governance",)
    approvers = g.approvers or []
    if g.approvals_required is not None and g.approvals_required > len(approvers):
        ctx.err("E815", "more approvals required than there are approvers", base + ("approvals_required",),
                f"approvals_required is {g.approvals_required}; governance.approvers lists {len(approvers)}")
    if g.approvals_required is not None and g.approvals_required < 1:
        ctx.err("E815", "at least one approval is required", base + ("approvals_required",),
                f"got {g.approvals_required}")
    if g.risk_tier != "high":
        return
    tier = ctx.sm.locate(base + ("risk_tier",)).render()
    fairness = ctx.spec.thresholds.fairness if ctx.spec.thresholds else []
    if not fairness:
        ctx.err("E810", "a high-risk model needs fairness bounds", ("thresholds", "fairness"),
                f"governance.risk_tier is high ({tier})",
                help="add thresholds.fairness with a bound per sensitive column", key=True)
    if not (g.explainability and g.explainability.required):
        ctx.err("E811", "a high-risk model needs explainability", base + ("explainability",),
                f"governance.risk_tier is high ({tier})", help="set explainability.required: true", key=True)
    if len(approvers) < 2 or (g.approvals_required or 0) < 2:
        ctx.err("E812", "a high-risk model needs at least two approvers", base + ("approvals_required",),
                f"governance.risk_tier is high ({tier}); approvers: {len(approvers)}, "
                f"approvals_required: {g.approvals_required}", help="list two approvers and set approvals_required: 2")
    sec = ctx.spec.security
    if not (sec and sec.audit_log and sec.audit_log.enabled):
        ctx.err("E813", "a high-risk model needs an audit log", ("security", "audit_log"),
                f"governance.risk_tier is high ({tier})", help="set security.audit_log.enabled: true", key=True)
    if not any(c is not None and c.sensitive for c in ctx.columns.values()):
        ctx.err("E814", "a high-risk model needs its sensitive columns declared", ("data", "columns"),
                f"governance.risk_tier is high ({tier}) and no column has sensitive: true", key=True)
