"""The rules of a prompt spec (`kind: prompt`, docs/genai.md): files stay in the spec folder,
templates use exactly their declared variables and nothing unsafe, guardrails, assertions, regexes
and JSON Schemas are valid, the golden set matches the variables' contract, the provider is named by
environment variables, `security.masking` names the variables it masks. Offline and fast: nothing is
rendered or sent.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiops.compiler import schema as S
from aiops.compiler.context import Ctx
from aiops.compiler.diagnostics import Diagnostic, Location, did_you_mean, fmt_choices
from aiops.compiler.load import PathT, path_str
from aiops.compiler.rules_data import check_regex_safety
from aiops.runtime.regex_safety import regex_hazard, schema_patterns

ENV_NAME = r"[A-Z_][A-Z0-9_]*"
GATES = ("pass_rate", "json_valid_rate")
SECRET_KEYS = ("api_key", "key", "token", "secret", "password", "authorization", "bearer")
MAX_GOLDEN_BYTES = 5_000_000
MAX_FILE_BYTES = 5_000_000
ASSERT_FIELDS = {"equals": ("value",), "contains": ("value",), "regex": ("pattern",), "json_schema": (),
                 "json_field": ("path", "equals"), "similar": ("reference", "min"), "max_latency_ms": ("value",),
                 "max_tokens": ("value",), "rubric": ("criteria", "min")}


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def spec_file(ctx: Ctx, text: str | None, path: PathT, what: str) -> Path | None:
    """E401 a path that leaves the spec folder (links followed), E402 one that is not a file."""
    if not text:
        return None
    real = (ctx.spec_dir / text).resolve()
    if not real.is_relative_to(ctx.spec_dir.resolve()):
        ctx.err("E401", f"the {what} lies outside the spec folder", path,
                f"'{text}' resolves to '{real}' (links followed)",
                help="keep prompt files in the spec folder, e.g. prompts/<name>.j2")
        return None
    if real.is_file() and real.stat().st_size > MAX_FILE_BYTES:
        ctx.err("E402", f"the {what} is too large", path,
                f"'{text}' has {real.stat().st_size} bytes; at most {MAX_FILE_BYTES}",
                help="a prompt file is a template, a schema or a few dozen golden cases")
        return None
    if not real.is_file():
        ctx.err("E402", f"the {what} does not exist", path, f"'{text}' is not a file in {_rel(ctx.spec_dir)}",
                help=did_you_mean(Path(text).name, [p.name for p in real.parent.glob("*")] if real.parent.is_dir()
                                  else []) or "create it, or fix the path")
        return None
    return real


def _file_diag(code: str, summary: str, file: Path, line: int | None, notes: tuple[str, ...], help: str,
               path: str = "") -> Diagnostic:
    lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    src = lines[line - 1] if line and 0 < line <= len(lines) else None
    return Diagnostic(code, summary, path, Location(_rel(file), line, 1 if line else None), src, notes, help)


def check_prompt_spec(ctx: Ctx) -> None:
    spec: S.PromptSpec = ctx.spec  # type: ignore[assignment]
    check_provider(ctx, spec)
    for name, p in (spec.prompts or {}).items():
        base: PathT = ("prompts", name)
        if not re.fullmatch(S.PROMPT_NAME_GRAMMAR, name):
            ctx.err("E420", "a prompt name is not an identifier", base,
                    f"prompt names become URL paths and folders: they must match {S.PROMPT_NAME_GRAMMAR}. "
                    f"Got {name!r} instead.", key=True, help="e.g. triage")
        if p is None:
            continue
        check_template(ctx, p, base)
        for var, col in (p.variables or {}).items():
            if col is not None and col.checks is not None and col.checks.regex is not None:
                _regex(ctx, col.checks.regex, base + ("variables", var, "checks", "regex"))
        schema = check_output(ctx, p, base)
        check_tools(ctx, p, base)
        check_guards(ctx, p, base, schema)
        check_golden(ctx, p, base)
        check_gates(ctx, p, base)
    check_prompt_masking(ctx, spec)
    from aiops.compiler import rules_policy

    rules_policy.check_security_controls(ctx)


def check_prompt_masking(ctx: Ctx, spec: S.PromptSpec) -> None:
    """The masking codes of tabular specs (compiler/rules_policy.py check_security), for variables.
    `security.masking` is spec-wide and the runtime (runtime/masking.py masker_for, per prompt) reads
    it by name: an entry applies to the variable of that name in every prompt that declares one.
    E801 an entry that names no variable of any prompt (it masks nothing); W804 an entry for a variable
    declared without pii (the runtime masks only pii variables whole, by their method: this method is not
    applied); E802 a pii variable that no entry names (the runtime would redact it, as it would a tabular
    PII column: the same rule, so the policy a reviewer reads names the method applied)."""
    from aiops.compiler import rules_policy

    masking = (spec.security.masking if spec.security else None) or {}
    declared: dict[str, list[tuple[str, S.Column]]] = {}  # variable -> [(prompt, its declaration)]
    for pname, p in (spec.prompts or {}).items():
        for var, col in ((p.variables or {}) if p is not None else {}).items():
            if col is not None:
                declared.setdefault(var, []).append((pname, col))
    for name in masking:
        at: PathT = ("security", "masking", name)
        uses = declared.get(name)
        if not uses:
            listing = "; ".join(f"prompts.{pn}.variables: {', '.join(p.variables or {}) or 'nothing'}"
                                for pn, p in (spec.prompts or {}).items() if p is not None) or "no prompt"
            ctx.err("E801", "security.masking refers to an undeclared variable", at,
                    f"'{name}' is not a variable of any prompt ({listing})",
                    "an entry masks the variable of its name in every prompt: this one masks nothing",
                    help=did_you_mean(name, declared) or "declare the variable in prompts.<name>.variables, "
                                                         "or fix the name", key=True)
            continue
        plain = [pn for pn, col in uses if not col.pii]
        if plain:
            where = " and ".join(f"prompts.{pn}.variables" for pn in plain)
            ctx.warn("W804", "masking is set for a variable that is not flagged pii", at,
                     f"'{name}' has pii: false in {where}",
                     "only pii variables are masked whole by their method: this method is not applied, the "
                     "value is logged with PII spans (e-mails, phone numbers, cards, IBANs) masked", key=True,
                     help=" and ".join(f"set pii: true on prompts.{pn}.variables.{name}" for pn in plain)
                     + f", or remove security.masking.{name}")
    for var, uses in declared.items():
        pii = [pn for pn, col in uses if col.pii]
        mk = masking.get(var)
        if pii and mk is not None and getattr(mk, "method", None) == "none":
            rules_policy.warn_unmasked_pii(ctx, var, " and ".join(f"prompts.{pn}.variables.{var}" for pn in pii))
        if pii and var not in masking:
            where = " and ".join(f"prompts.{pn}.variables" for pn in pii)
            ctx.err("E802", "a PII variable has no masking method", ("prompts", pii[0], "variables", var, "pii"),
                    f"'{var}' is flagged pii in {where} but security.masking does not name it",
                    help=f"add security.masking.{var}: {{method: redact}} (hash, redact or generalize): the "
                         "runtime would redact it without one, but, as for a PII column, the policy must name the "
                         "method it applies")


def check_provider(ctx: Ctx, spec: S.PromptSpec) -> None:
    """E410 a provider not named by environment variable; E411 a secret written in the spec."""
    pr = spec.provider
    if pr is None:
        return
    for key in ("base_url_env", "api_key_env"):
        text = getattr(pr, key)
        if text is not None and not re.fullmatch(ENV_NAME, text):
            ctx.err("E410", f"provider.{key} must name an environment variable", ("provider", key),
                    f"'provider.{key}' is the NAME of a variable that holds the "
                    f"{'base URL' if key == 'base_url_env' else 'token'}, matching {ENV_NAME}. Got {text!r} instead.",
                    help=f"export the {'URL' if key == 'base_url_env' else 'token'} in a variable and name it here, "
                         f"e.g. {key}: {'AIOPS_LLM_BASE_URL' if key == 'base_url_env' else 'AIOPS_LLM_API_KEY'}")
    for k in sorted(pr.parameters or {}):
        if k.lower().replace("-", "_") in SECRET_KEYS:
            ctx.err("E411", "a provider credential is written in the spec", ("provider", "parameters", k),
                    f"'provider.parameters.{k}' would be committed with the spec and copied into the artefacts",
                    key=True, help="remove it; put the token in an environment variable named by provider.api_key_env")


def check_template(ctx: Ctx, p: S.Prompt, base: PathT) -> None:
    """E403 syntax, E404 undeclared variables, W405 unused ones, E406 sandbox-unsafe constructs."""
    from aiops.compiler.template_scan import scan

    f = spec_file(ctx, p.template, base + ("template",), "prompt template")
    if f is None:
        return
    try:
        text = f.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        ctx.err("E403", "the prompt template is not UTF-8 text", base + ("template",), f"'{p.template}'",
                help="save the template as UTF-8")
        return
    sc = scan(text)
    if sc.syntax_error is not None:
        line, msg = sc.syntax_error
        ctx.diags.append(_file_diag("E403", f"template syntax error: {msg}", f, line, (),
                                    "fix the Jinja2 syntax at this line"))
        return
    declared = p.variables or {}
    for var, line in sorted(sc.variables.items(), key=lambda kv: (kv[1], kv[0])):
        if var not in declared:
            ctx.diags.append(_file_diag(
                "E404", f"the template uses an undeclared variable '{var}'", f, line,
                (f"prompts.{base[1]}.variables declares: {', '.join(declared) or 'nothing'}",),
                did_you_mean(var, declared) or f"declare it in prompts.{base[1]}.variables, or remove it"))
    for var in declared:
        if var not in sc.variables:
            ctx.warn("W405", f"the variable '{var}' is not used by the template", base + ("variables", var),
                     f"'{p.template}' never reads '{var}'", key=True,
                     help=f"remove it, or use it in the template: {{{{ {var} }}}}")
    for line, what in sc.unsafe:
        ctx.diags.append(_file_diag("E406", "the template uses a construct the sandbox refuses", f, line,
                                    (f"{what}",), "templates only print their variables; remove it"))


def _schema_file(ctx: Ctx, text: str | None, path: PathT, what: str) -> dict | None:
    """E409 a JSON Schema file that is not JSON, or not a valid schema."""
    f = spec_file(ctx, text, path, what)
    if f is None:
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        ctx.err("E409", f"the {what} is not JSON", path, f"'{text}': {exc}", help="write the schema as JSON")
        return None
    # E017 first: jsonschema runs `pattern` with re on the model's output (and compiles it to check the schema)
    safe = [check_regex_safety(ctx, pat, path, f"'{text}' at {where[1:]}: ") for where, pat in schema_patterns(doc)]
    if not all(safe):
        return None
    try:
        Draft202012Validator.check_schema(doc)
    except SchemaError as exc:
        where = "/".join(str(x) for x in exc.path) or "(top level)"
        ctx.err("E409", f"the {what} is not a valid JSON Schema", path,
                f"'{text}' at {where}: {exc.message}", help="fix it against JSON Schema draft 2020-12")
        return None
    return doc


def check_output(ctx: Ctx, p: S.Prompt, base: PathT) -> dict | None:
    """E417 an output that asks for JSON without a schema, or a schema for text."""
    out = p.output
    if out is None:
        return None
    if out.format == "json" and not out.schema:
        ctx.err("E417", "a JSON output needs a schema", base + ("output",),
                f"prompts.{base[1]}.output.format is json", key=True,
                help="add output.schema: prompts/<name>.schema.json (a JSON Schema)")
        return None
    if out.format == "text" and out.schema:
        ctx.err("E417", "a text output has no JSON Schema", base + ("output", "schema"),
                f"prompts.{base[1]}.output.format is text", help="set output.format: json, or remove output.schema")
        return None
    return _schema_file(ctx, out.schema, base + ("output", "schema"), "output schema")


def check_tools(ctx: Ctx, p: S.Prompt, base: PathT) -> None:
    if p.tools is None:
        return
    for tool, decl in (p.tools.allow or {}).items():
        if decl is not None:
            _schema_file(ctx, decl.schema, base + ("tools", "allow", tool, "schema"), f"schema of the tool '{tool}'")
    if p.tools.max_steps is not None and p.tools.max_steps < 1:
        ctx.err("E419", "tools.max_steps must be at least 1", base + ("tools", "max_steps"),
                f"got {p.tools.max_steps}")


def _compiles(pattern: Any) -> bool:
    """Whether the pattern compiles and is safe to run (E408, E017)."""
    try:
        return regex_hazard(pattern) is None and re.compile(pattern) is not None
    except (re.error, TypeError):
        return False


def _regex(ctx: Ctx, pattern: Any, path: PathT) -> None:
    """E408 a pattern that does not compile; E017 one that can take exponential time."""
    if not isinstance(pattern, str):
        ctx.err("E408", "a pattern must be a string", path, f"got {pattern!r}")
        return
    if not check_regex_safety(ctx, pattern, path):
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        ctx.err("E408", "a regular expression does not compile", path, f"{pattern!r}: {exc}",
                help="fix the pattern (Python re syntax); escape a literal character with a backslash")


def check_guards(ctx: Ctx, p: S.Prompt, base: PathT, schema: dict | None) -> None:
    """E407 an unknown guardrail, E419 a guardrail without what it needs, E408 bad patterns."""
    g = p.guardrails
    if g is None:
        return
    for side in ("input", "output"):
        for i, guard in enumerate(getattr(g, side) or []):
            if guard is None:
                continue
            at = base + ("guardrails", side, i)
            allowed = ("pii", "deny", "allow", "length") if side == "input" else ("pii", "deny", "json_schema")
            if guard.type not in allowed:
                ctx.err("E407", f"unknown {side} guardrail '{guard.type}'", at + ("type",),
                        f"an {side} guardrail is one of {fmt_choices(allowed)}. Got {guard.type!r} instead.",
                        help=did_you_mean(guard.type, allowed) or "remove it, or choose a known guardrail")
                continue
            need = {"pii": "action", "length": "max_chars"}.get(guard.type)
            if need and getattr(guard, need) is None:
                ctx.err("E419", f"the {guard.type} guardrail needs '{need}'", at, key=True,
                        help="e.g. {type: pii, action: mask}" if need == "action" else "e.g. {type: length, max_chars: 1000}")
            if guard.type in ("deny", "allow"):
                if not guard.patterns:
                    ctx.err("E419", f"the {guard.type} guardrail needs 'patterns'", at, key=True,
                            help=f"e.g. {{type: {guard.type}, patterns: ['(?i)ignore previous instructions']}}")
                for j, pat in enumerate(guard.patterns or []):
                    _regex(ctx, pat, at + ("patterns", j))
            if guard.type == "json_schema" and (p.output is None or p.output.format != "json"):
                ctx.err("E417", "a json_schema guardrail needs a JSON output", at + ("type",),
                        f"prompts.{base[1]}.output.format is text", help="set output.format: json and output.schema")


def _golden_diag(ctx: Ctx, f: Path, line: int, case: str, summary: str, *notes: str, help: str,
                 code: str) -> None:
    ctx.diags.append(_file_diag(code, summary, f, line, tuple(notes), help, path=case))


def check_golden(ctx: Ctx, p: S.Prompt, base: PathT) -> None:
    """E412 unreadable rows, E413 unknown variables, E414 missing ones, E415 values the contract refuses,
    E416 bad assertions, E408 bad assertion regexes."""
    ev = p.evaluation
    if ev is None:
        return
    f = spec_file(ctx, ev.golden, base + ("evaluation", "golden"), "golden set")
    if f is None:
        return
    if f.stat().st_size > MAX_GOLDEN_BYTES:
        ctx.err("E412", "the golden set is too large", base + ("evaluation", "golden"),
                f"'{ev.golden}' has {f.stat().st_size} bytes; at most {MAX_GOLDEN_BYTES}",
                help="a golden set is a few dozen hand-written cases")
        return
    from aiops.runtime.contract import Contract

    from aiops.compiler.plan import _contract_entry

    declared = {k: v for k, v in (p.variables or {}).items() if v is not None}
    if any(c.checks is not None and c.checks.regex is not None and not _compiles(c.checks.regex)
           for c in declared.values()):
        return  # E408 is reported on the variable: its contract cannot judge the golden rows
    contract = Contract.from_dict({"columns": [_contract_entry(k, c, not c.nullable, None)
                                               for k, c in declared.items()]})
    seen: dict[str, int] = {}
    rows = 0
    for n, raw in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        rows += 1
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            _golden_diag(ctx, f, n, "", "a golden case is not JSON", str(exc), code="E412",
                         help='write one JSON object per line: {"id": ..., "variables": {...}, "assert": [...]}')
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("variables"), dict) \
                or not isinstance(row.get("assert"), list):
            _golden_diag(ctx, f, n, "", "a golden case needs an id, variables and assertions",
                         'each line is {"id": "<text>", "variables": {...}, "assert": [...]}', code="E412",
                         help="add the missing key")
            continue
        cid = row["id"]
        if cid in seen:
            _golden_diag(ctx, f, n, cid, f"the golden case id '{cid}' is used twice",
                         f"first at line {seen[cid]}", code="E412", help="give every case its own id")
        seen.setdefault(cid, n)
        variables = row["variables"]
        for k in variables:
            if k not in declared:
                _golden_diag(ctx, f, n, cid, f"golden case '{cid}' sets an undeclared variable '{k}'",
                             f"prompts.{base[1]}.variables declares: {', '.join(declared)}", code="E413",
                             help=did_you_mean(k, declared) or "remove it, or declare the variable")
        known = {k: v for k, v in variables.items() if k in declared}
        _, errors = contract.validate_records([known])
        for _i, col, code, message in sorted(errors.items, key=lambda e: (e[1], e[2])):
            if code == "missing_field":
                _golden_diag(ctx, f, n, cid, f"golden case '{cid}' does not set the variable '{col}'",
                             f"'{col}' is required ({declared[col].dtype}, not nullable)", code="E414",
                             help=f"add \"{col}\": ... to its variables")
            else:
                _golden_diag(ctx, f, n, cid, f"golden case '{cid}': the variable '{col}' breaks its contract",
                             f"{code}: '{col}' {message}", code="E415",
                             help=f"fix the value, or the checks of prompts.{base[1]}.variables.{col}")
        for j, a in enumerate(row["assert"]):
            _check_assertion(ctx, f, n, cid, j, a, p)
    if rows == 0:
        ctx.err("E412", "the golden set has no cases", base + ("evaluation", "golden"), f"'{ev.golden}' is empty",
                help="write at least one case; with no evaluation, nothing is blessed")


def _check_assertion(ctx: Ctx, f: Path, n: int, cid: str, j: int, a: Any, p: S.Prompt) -> None:
    if not isinstance(a, dict) or a.get("type") not in ASSERT_FIELDS:
        t = a.get("type") if isinstance(a, dict) else a
        _golden_diag(ctx, f, n, cid, f"golden case '{cid}': unknown assertion type {json.dumps(t)}",
                     f"assert[{j}].type is one of {fmt_choices(ASSERT_FIELDS)}", code="E416",
                     help=did_you_mean(str(t), ASSERT_FIELDS) or "choose a known assertion")
        return
    t = a["type"]
    missing = [k for k in ASSERT_FIELDS[t] if k not in a]
    extra = [k for k in a if k != "type" and k not in ASSERT_FIELDS[t]]
    if missing or extra:
        what = (f"needs {', '.join(missing)}" if missing else "") + ("; " if missing and extra else "") \
            + (f"has no key {', '.join(extra)}" if extra else "")
        _golden_diag(ctx, f, n, cid, f"golden case '{cid}': the {t} assertion {what}",
                     f"assert[{j}]: a {t} assertion has the keys {', '.join(('type',) + ASSERT_FIELDS[t])}",
                     code="E416", help="fix the assertion's keys")
        return
    if t == "json_field" and not (isinstance(a["path"], str) and a["path"]):
        _golden_diag(ctx, f, n, cid, f"golden case '{cid}': the json_field assertion's path must be a dotted key",
                     f"got {json.dumps(a['path'])}", code="E416", help='e.g. "path": "category"')
    if t == "regex":
        before = len(ctx.diags)
        _regex(ctx, a["pattern"], ())
        for k in range(before, len(ctx.diags)):  # re-locate at the golden line
            d = ctx.diags[k]
            ctx.diags[k] = _file_diag(d.code, f"golden case '{cid}': {d.summary}", f, n, d.notes, d.help or "",
                                      path=cid)
    if t in ("json_schema", "json_field") and (p.output is None or p.output.format != "json"):
        _golden_diag(ctx, f, n, cid, f"golden case '{cid}': a {t} assertion needs a JSON output",
                     "the prompt's output.format is text", code="E416", help="use equals, contains or regex")
    if t in ("similar", "rubric") and not (isinstance(a["min"], (int, float)) and 0 <= a["min"] <= 1):
        _golden_diag(ctx, f, n, cid, f"golden case '{cid}': the {t} assertion's min must be in [0, 1]",
                     f"got {a['min']!r}", code="E416", help="e.g. \"min\": 0.6")
    if t in ("max_latency_ms", "max_tokens") and not (isinstance(a["value"], (int, float))
                                                     and not isinstance(a["value"], bool) and a["value"] > 0):
        _golden_diag(ctx, f, n, cid, f"golden case '{cid}': the {t} assertion needs a positive number",
                     f"got {a['value']!r}", code="E416", help="e.g. \"value\": 2000")


def check_gates(ctx: Ctx, p: S.Prompt, base: PathT) -> None:
    """E418 an unknown gate or a bound outside [0, 1]; W418 no gate (nothing will be blessed)."""
    ev = p.evaluation
    if ev is None:
        return
    at = base + ("evaluation", "gates")
    if not ev.gates:
        ctx.warn("W418", "the prompt has no evaluation gate: it will not be blessed", at, key=True,
                 help="add e.g. gates: {pass_rate: {min: 0.8}, json_valid_rate: {min: 0.95}}")
    for name, b in (ev.gates or {}).items():
        if name not in GATES:
            ctx.err("E418", f"unknown evaluation gate '{name}'", at + (name,),
                    f"a prompt gate is one of {fmt_choices(GATES)}. Got {name!r} instead.", key=True,
                    help=did_you_mean(name, GATES) or "choose a known gate")
            continue
        if name == "json_valid_rate" and (p.output is None or p.output.format != "json"):
            ctx.err("E418", "the json_valid_rate gate needs a JSON output", at + (name,),
                    f"prompts.{base[1]}.output.format is text", key=True,
                    help="use pass_rate, or set output.format: json")
        for side in ("min", "max"):
            v = getattr(b, side) if b is not None else None
            if v is not None and not 0 <= v <= 1:
                ctx.err("E418", f"the {name} gate is a rate in [0, 1]", at + (name, side),
                        f"'{path_str(at + (name, side))}' must be between 0 and 1. Got {v:g} instead.")


def check_prompt_governance(ctx: Ctx) -> None:
    """The approval rules shared with tabular specs; E421 a high risk tier, which the prompt kind does not
    support yet (its extra controls, fairness and explainability, have no prompt counterpart here)."""
    from aiops.compiler import rules_policy

    g = ctx.spec.governance
    if g is None:
        return
    if g.risk_tier == "high":
        ctx.err("E421", "the prompt spec kind does not support governance.risk_tier: high", ("governance", "risk_tier"),
                "a high-risk system needs controls (fairness bounds, explanations, sign-off on each output) "
                "that aiops does not enforce for prompts",
                help="use risk_tier: limited (a person reviews every output) or minimal")
        return
    rules_policy.check_governance(ctx)
