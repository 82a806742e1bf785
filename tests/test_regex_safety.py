"""Regular expressions written in a spec cannot take exponential time (ReDoS, runtime/regex_safety.py).

A spec is untrusted, and its patterns run with Python's backtracking `re` on request data. The
attack: plant `(a+)+$` (or an alternation whose branches overlap) in a copy of a bundled spec, with
a value that makes it backtrack in the data. `aiops check` refuses it (E017) at once, without running
it; the runtime refuses it too when an artefact holds one; plain `re` really takes seconds on a
27-character input.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aiops.compiler.check import run_check
from aiops.runtime.contract import ColumnRule, Contract
from aiops.runtime.errors import UserError
from aiops.runtime.genai import guardrails
from aiops.runtime.genai.guardrails import InputGuards, OutputGuards
from aiops.runtime.masking import Masker
from aiops.runtime.regex_safety import UnsafeRegex, compile_safe, regex_hazard, schema_patterns

SPECS = Path(__file__).resolve().parent.parent / "specs"
HANG_LIMIT_S = 60  # a check that ran the planted pattern over the planted value would never end

UNSAFE = {  # pattern -> the start of the reason
    "(a+)+$": "the nested quantifier `(a+)+`",
    "(a*)*": "the nested quantifier `(a*)*`",
    r"(?:\w+\s?)*$": r"the nested quantifier `(?:\w+\s?)*`",
    "(a+b?)+": "the nested quantifier `(a+b?)+`",
    "(a+?)+": "the nested quantifier `(a+?)+`",  # lazy repeats backtrack too
    "(x+x+)+y": "the nested quantifier `(x+x+)+`",
    r"(\w+,\w+)*$": r"the nested quantifier `(\w+,\w+)*`",  # a delimiter, but runs on both sides of it
    r"(?:\.a?[a-z]+)*": r"the nested quantifier `(?:\.a?[a-z]+)*`",  # a? and [a-z]+ share the a's
    "(.*a){20}": "the nested quantifier `(.*a){20}`",  # bounded, but n**20
    "(a|a)*": "the repeated alternation `(a|a)*`",
    "(a|ab)*": "the repeated alternation `(a|ab)*`",
    r"(\w|\d)+": r"the repeated alternation `(\w|\d)+`",
    r"(\w|\d\d?)+$": r"the repeated alternation `(\w|\d\d?)+`",
    "(?i)(a|A)+": "the repeated alternation `(a|A)+`",
    r'"(\\.|[^"])*"': r'the repeated alternation `(\\.|[^"])*`',
    "(a|b?)+": "the repeated alternation `(a|b?)+`",
    r"(\w|[\u4e00-\u9fff])*": "the repeated alternation `(\\w|[\u4e00-\u9fff])*`",
    r"(a)\1": r"the backreference `\1`",
    "(?P<x>a)(?P=x)": r"the backreference `\1`",
    "(a)?(?(1)b|c)": "the conditional group `(?(1)b|c)`",
    "a" * 1001: "the pattern has 1,001 characters, more than 1,000",
}
SAFE = [
    "^[A-Z0-9]{2}$", r"\d+\.\d+", "(a|b)*", "(ab|cd)*", r"(?i)(a|b)+", r"(\s|\w)+",
    r"(?:\d{1,3}\.){3}\d{1,3}", r"(?:\d+\.){3}\d+", r"(?:[a-z]+\.)*x", r"(\.[a-z]+)*$", r"(?:[^,]+,)*$",
    "(.*a){5}",
    # possessive quantifiers, atomic groups and lookarounds do not backtrack into what they matched
    "(a+)++$", "(?>a+)+$", "(?>a|ab)*c", "(a|ab)*+c", r"(?=(\w+))", "a" * 1000,
]


@pytest.mark.parametrize("pattern", list(UNSAFE), ids=lambda p: p[:30])
def test_unsafe_patterns_are_refused(pattern):
    t = time.perf_counter()
    hazard = regex_hazard(pattern)
    assert time.perf_counter() - t < 0.5
    assert hazard is not None and hazard.reason.startswith(UNSAFE[pattern]), hazard


@pytest.mark.parametrize("pattern", SAFE, ids=lambda p: p[:30])
def test_safe_patterns_pass(pattern):
    assert regex_hazard(pattern) is None


def test_the_messages_name_the_construct_and_the_fix():
    h = regex_hazard("(a+)+$")
    assert str(h) == ("the nested quantifier `(a+)+` can take exponential time on a non-matching input (the repeat "
                      "`a+` is repeated); remove the inner or the outer repeat, or stop the backtracking with a "
                      "possessive quantifier or an atomic group, e.g. `(a+)++`")
    h = regex_hazard("(a|ab)*?c")
    assert h.reason == ("the repeated alternation `(a|ab)*?` can take exponential time on a non-matching input (its "
                        "branches `a` and `ab` can both start with 'a')")
    assert h.fix.endswith("e.g. `(?>(a|ab)*?)`")  # a lazy repeat has no possessive form: an atomic group


def _bundled_patterns() -> list[tuple[str, str]]:
    """(where, pattern) of every regular expression of the bundled specs and the built-in guardrails."""
    out: list[tuple[str, str]] = [(f"guardrails._PATTERNS[{k}]", p.pattern) for k, p in guardrails._PATTERNS.items()]

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("regex", "pattern") and isinstance(v, str):
                    out.append((f"{where}.{k}", v))
                elif k == "patterns" and isinstance(v, list):
                    out.extend((f"{where}.patterns[{i}]", p) for i, p in enumerate(v))
                else:
                    walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    for f in sorted(SPECS.rglob("*")):
        if f.suffix == ".yaml":
            walk(yaml.safe_load(f.read_text(encoding="utf-8")), str(f.relative_to(SPECS)))
        elif f.name.endswith(".schema.json"):
            out += [(f"{f.relative_to(SPECS)}{w}", p) for w, p in schema_patterns(json.loads(f.read_text()))]
        elif f.suffix == ".jsonl":
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    walk(json.loads(line), f"{f.relative_to(SPECS)}:{n}")
    return out


def test_the_bundled_patterns_and_the_built_in_guardrails_pass():
    found = _bundled_patterns()
    names = [p for _w, p in found]
    assert "^[A-Z0-9]{2}$" in names and "(?i)password\\s*[:=]" in names and "^[0-9]{5}$" in names
    assert '"category": "shipping"' in names and len([w for w, _p in found if w.startswith("guardrails.")]) == 4
    assert [(w, p, str(regex_hazard(p))) for w, p in found if regex_hazard(p) is not None] == []


# ------------------------------------------------------------------ the attack
SLOW = {"(a+)+$": "a" * 26 + "!", r"(\w|\d\d?)+$": "1" * 26 + "!"}


@pytest.mark.parametrize("pattern", list(SLOW))
def test_the_payload_really_is_slow_with_plain_re(pattern):
    """The proof that the refusal matters: one short input keeps a core busy (bounded by a timeout)."""
    code = f"import re; re.match({pattern!r}, {SLOW[pattern]!r})"
    t = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", code], timeout=3, check=True)
    except subprocess.TimeoutExpired:
        pass
    assert time.perf_counter() - t > 0.5


def _plant_in_the_data(spec, column: str, value: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = spec.dir / "data" / "flights_2013.parquet"
    table = pq.read_table(f)
    values = table.column(column).to_pylist()
    values[0] = value
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, pa.array(values)), f)


@pytest.mark.usefixtures("hang_guard")
def test_check_refuses_a_nested_quantifier_in_the_contract_at_once(spec_copy):
    spec = spec_copy("flight_delays")
    spec.replace("spec.yaml", 'checks: {regex: "^[A-Z0-9]{2}$"}', 'checks: {regex: "^([A-Z0-9]+)+$"}')
    _plant_in_the_data(spec, "carrier", "A" * 40 + "!")  # 2**40 steps for the contract, were it run on the sample
    t = time.perf_counter()
    assert regex_hazard("^([A-Z0-9]+)+$") is not None and time.perf_counter() - t < 0.5
    text, ok = run_check(spec.rel, [])
    took = time.perf_counter() - t
    assert not ok and took < 5, took  # the sample is not judged by a refused contract (about 0.3 s)
    assert f"""\
error[E017]: a regular expression can take exponential time (ReDoS)
  --> {spec.where("spec.yaml", "([A-Z0-9]+)+", '"^(')} (data.columns.carrier.checks.regex)
   |     carrier: {{dtype: category, checks: {{regex: "^([A-Z0-9]+)+$"}}}}
   = '^([A-Z0-9]+)+$': the nested quantifier `([A-Z0-9]+)+` can take exponential time on a non-matching input \
(the repeat `[A-Z0-9]+` is repeated)
   = help: remove the inner or the outer repeat, or stop the backtracking with a possessive quantifier or an atomic \
group, e.g. `([A-Z0-9]+)++`
error: 1 error; nothing was written.""" in text


@pytest.mark.usefixtures("hang_guard")
def test_check_refuses_an_overlapping_alternation_in_a_prompt_spec(spec_copy):
    spec = spec_copy("support_triage")
    spec.replace("spec.yaml", '"(?i)ignore (all )?(previous|prior) instructions"',
                 '"(?i)ignore (all )?(previous|prior) instructions", "^(\\\\w|\\\\d\\\\d?)+$"')
    spec.replace("prompts/triage_golden.jsonl", '"pattern": "\\"category\\": \\"shipping\\""',
                 '"pattern": "(a|a)+$"')
    t = time.perf_counter()
    text, ok = run_check(spec.rel, [])
    assert not ok and time.perf_counter() - t < 5
    assert """\
error[E017]: golden case 'ship-late': a regular expression can take exponential time (ReDoS)
  --> specs/support_triage/prompts/triage_golden.jsonl:20:1 (ship-late)""" in text
    assert "   = '(a|a)+$': the repeated alternation `(a|a)+` can take exponential time on a non-matching input (its " \
           "branches `a` and `a` can both start with 'a')\n" in text
    assert f"""\
error[E017]: a regular expression can take exponential time (ReDoS)
  --> {spec.where("spec.yaml", "(previous|prior)", '"^(')} (prompts.triage.guardrails.input[1].patterns[1])""" \
        in text
    assert "   = '^(\\\\w|\\\\d\\\\d?)+$': the repeated alternation `(\\w|\\d\\d?)+` can take exponential time on a " \
           "non-matching input (its branches `\\w` and `\\d\\d?` can both start with '0')\n" in text
    assert "error: 2 errors; nothing was written." in text


# ------------------------------------------------------------------ the runtime refuses too
def _masker() -> Masker:
    return Masker({"message": "hash"}, b"k" * 32, {"message": ("str", ())}, "kid")


def test_the_runtime_refuses_an_unsafe_contract_regex():
    msg = ("contract column 'carrier': regex: the regular expression '^([A-Z0-9]+)+$' is refused: the nested "
           "quantifier `([A-Z0-9]+)+` can take exponential time on a non-matching input (the repeat `[A-Z0-9]+` is "
           "repeated); remove the inner or the outer repeat, or stop the backtracking with a possessive quantifier or "
           "an atomic group, e.g. `([A-Z0-9]+)++` (recompile the spec with a safe pattern)")
    with pytest.raises(UnsafeRegex) as exc:
        Contract([ColumnRule("carrier", "category", regex="^([A-Z0-9]+)+$")])
    assert str(exc.value) == msg
    assert isinstance(exc.value, UserError) and isinstance(exc.value, ValueError)  # the CLI prints it, exit 2
    with pytest.raises(UnsafeRegex, match=re.escape(msg)):
        Contract.from_dict({"columns": [{"name": "carrier", "dtype": "category", "regex": "^([A-Z0-9]+)+$"}]})
    assert Contract([ColumnRule("carrier", "category", regex="^[A-Z0-9]{2}$")])._regex["carrier"].search("AA")


def test_the_runtime_refuses_unsafe_guardrail_and_schema_patterns():
    with pytest.raises(UnsafeRegex, match=re.escape("guardrails.input[0].patterns[1]: the regular expression "
                                                    "'(a|a)+$' is refused: the repeated alternation `(a|a)+`")):
        InputGuards([{"type": "deny", "patterns": ["(?i)ignore previous", "(a|a)+$"]}], _masker())
    with pytest.raises(UnsafeRegex, match=re.escape("guardrails.output[0].patterns[0]: the regular expression "
                                                    "'(x+x+)+y' is refused: the nested quantifier `(x+x+)+`")):
        OutputGuards([{"type": "deny", "patterns": ["(x+x+)+y"]}], {"format": "text"}, _masker())
    schema = {"type": "object", "properties": {"order": {"type": "string", "pattern": r"^(\d+)*$"}}}
    with pytest.raises(UnsafeRegex, match=re.escape("output.schema at properties/order/pattern: the regular "
                                                    r"expression '^(\\d+)*$' is refused: the nested quantifier")):
        OutputGuards([{"type": "json_schema"}], {"format": "json", "schema": schema}, _masker())
    tools = {"allow": {"lookup": {"type": "object", "patternProperties": {"^(a|ab)*$": {"type": "string"}}}}}
    with pytest.raises(UnsafeRegex, match=re.escape("tools.allow.lookup.schema at patternProperties/^(a|ab)*$: ")):
        OutputGuards([], {"format": "json"}, _masker(), tools)
    with pytest.raises(ValueError, match=re.escape("guardrails.input[0].patterns[0] is not a valid regular "
                                                   "expression: missing ), unterminated subpattern at position 0")):
        InputGuards([{"type": "deny", "patterns": ["(a"]}], _masker())


def test_compile_safe_and_schema_patterns():
    assert compile_safe("^[0-9]{5}$", "x").match("12345")
    with pytest.raises(UnsafeRegex, match=re.escape("x is not a valid regular expression: missing ), "
                                                    "unterminated subpattern at position 0")):
        compile_safe("(a", "x")
    assert regex_hazard("(a") is None  # re.compile says why
    deep = "(" * 499 + "a" + ")" * 499  # 999 characters that overflow re's own stack
    assert str(regex_hazard(deep)) == "the pattern nests 499 groups, more than 50; nest at most 50 groups"
    with pytest.raises(UnsafeRegex, match=re.escape("x: the regular expression '((((")):
        compile_safe(deep, "x")
    fifty = r"[(]\((?:[^)]]|[]()])" + "(" * 50 + ")" * 50  # 50 deep: the classes and escapes are skipped
    assert re.compile(fifty) and regex_hazard(fifty) is None
    doc = {"properties": {"pattern": {"type": "string", "pattern": "^a$"}, "b": {"enum": [{"pattern": "(a+)+"}]}},
           "patternProperties": {"^x": {"pattern": "y"}}, "items": [{"pattern": "z"}]}
    assert list(schema_patterns(doc)) == [("/properties/pattern/pattern", "^a$"), ("/patternProperties/^x", "^x"),
                                          ("/patternProperties/^x/pattern", "y"), ("/items/0/pattern", "z")]


@pytest.mark.slow
@pytest.mark.usefixtures("hang_guard")
def test_a_signed_artefact_holding_an_unsafe_regex_is_refused_not_run(tmp_path, capsys, monkeypatch):
    """Defence in depth: an artefact compiled before E017 (here: planted, then signed with the trusted
    test key) holds `^(a+)+$` for a column, and the data to score holds the value that makes it run
    for 2**40 steps. score, monitor and the server refuse it at load (exit 2, no traceback)."""
    from aiops.compiler.cli import main
    from aiops.runtime.serve.server import Service
    from tests._build import build, reseal

    monkeypatch.chdir(tmp_path)
    art = Path(shutil.copytree(build("credit_risk"), tmp_path / "art"))
    contract = json.loads((art / "contract.json").read_text())
    col = next(c for c in contract["columns"] if c["name"] == "credit_history")
    col["regex"] = "^(a+)+$"
    (art / "contract.json").write_text(json.dumps(contract))
    reseal(art)
    data = tmp_path / "score.csv"
    lines = (SPECS / "credit_risk/data/german_credit.csv").read_text().splitlines()[:3]
    head = lines[0].split(",")
    row = next(csv.reader(lines[1:2]))
    row[head.index("credit_history")] = "a" * 40 + "!"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows([head, row])
    msg = ("error: contract column 'credit_history': regex: the regular expression '^(a+)+$' is refused: the nested "
           "quantifier `(a+)+` can take exponential time on a non-matching input (the repeat `a+` is repeated); remove "
           "the inner or the outer repeat, or stop the backtracking with a possessive quantifier or an atomic group, "
           "e.g. `(a+)++` (recompile the spec with a safe pattern)\n")
    for argv in (["score", art, data, "--output", tmp_path / "o.csv", "--quiet"],
                 ["monitor", art, "--current", data, "--report", tmp_path / "report", "--quiet"]):
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert (rc, err) == (2, msg), argv[0]
    env = {"AIOPS_DATA_KEY": "00" * 32, "AIOPS_MASK_SALT": "test-salt-of-at-least-16-characters",
           "AIOPS_API_KEYS": "s" * 32 + ":scorer",
           **{k: os.environ[k] for k in ("AIOPS_LOG_KEY", "AIOPS_LOG_SIGNING_KEY")}}
    with pytest.raises(UnsafeRegex, match=re.escape(msg[len("error: "):-1])):  # `aiops serve` prints it, exit 2
        Service(art, tmp_path / "log", env=env, job_threads=0)
