"""A catalog of bad specs, one per rule of `aiops check`.

Each case copies a bundled spec folder (data included), changes one thing (a line of one
YAML file, or a command-line override), runs the check in-process and quotes the message it
expects, line for line. Locations are written as markers that are looked up in the edited
file, so a case names the line it points at rather than a bare number:

    @AT@       where the diagnostic points (case.at: file, a unique part of the line, the token)
    @COLUMNS@  where data.columns is declared (the `columns:` key of spec.yaml)
    @TIER@     where governance.risk_tier is set
    @DIR@      the absolute path of the copied spec folder
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiops.compiler import estimators
from aiops.compiler.check import run_check

COMPILER = Path(__file__).resolve().parent.parent / "compiler"

Mark = tuple[str, str, str]  # (file, a unique part of the line, the token the column points at)


@dataclass(frozen=True)
class Bad:
    expected: str  # the exact lines of the diagnostic, with markers
    edits: tuple[tuple[str, str, str], ...] = ()  # (file, old text, new text)
    overrides: tuple[str, ...] = ()
    at: Mark | None = None
    spec: str = "credit_risk"
    target: str | None = None  # the folder given to the check, when not the copy itself
    delete: str | None = None  # a file to delete from the copy
    onnx_probe_fails: str | None = None  # simulate an exporter failure with this message
    link: tuple[str, str] | None = None  # (a path in the copy, where it points): a symbolic link


SPEC = "spec.yaml"
LOGISTIC = "model/logistic.yaml"
STRICT = "security/strict.yaml"
HIGH_RISK = "governance/high_risk.yaml"
TRI = "prompts/triage.j2"  # the support_triage prompt spec (kind: prompt)
GOLD = "prompts/triage_golden.jsonl"
SCH = "prompts/triage.schema.json"
PGOV = "governance/limited_risk.yaml"
PSEC = "security/internal.yaml"

CASES: dict[str, Bad] = {
    # ------------------------------------------------------------------ load: folder, YAML, Hydra
    "E001-missing-folder": Bad(
        target="specs/credit_rsk",
        expected="""\
error[E001]: spec folder not found
  --> specs/credit_rsk
   = 'specs/credit_rsk' is not a folder
   = help: did you mean 'specs/credit_risk'?""",
    ),
    "E001-no-spec-yaml": Bad(
        delete=SPEC,
        expected="""\
error[E001]: the spec folder has no spec.yaml
  --> specs/credit_risk
   = help: create specs/credit_risk/spec.yaml with a defaults list and the spec's keys""",
    ),
    "E002-yaml-syntax-in-group-file": Bad(
        edits=((LOGISTIC, "C: 0.5", "C: [0.5"),),
        at=(LOGISTIC, "max_iter: 2000", ":"),
        expected="""\
error[E002]: YAML syntax error: expected ',' or ']', but got ':'
  --> @AT@
   |     max_iter: 2000
   = while parsing a flow sequence that starts at line 3, column 6
   = help: fix the YAML syntax at this position (indentation, a missing ':' or an unclosed quote)""",
    ),
    "E007-duplicate-key": Bad(
        edits=((LOGISTIC, "  max_iter: 2000", "  max_iter: 2000\n  C: 2.0"),),
        at=(LOGISTIC, "C: 2.0", "C"),
        expected="""\
error[E007]: duplicate key 'C'
  --> @AT@ (model.params.C)
   |     C: 2.0
   = 'C' is already set at specs/credit_risk/model/logistic.yaml:3:3
   = help: keep one of the two: merge their contents under one key""",
    ),
    "E003-defaults-list": Bad(
        edits=((SPEC, "- model: logistic", "- model: logistc"),),
        at=(SPEC, "- model: logistc", "model"),
        expected="""\
error[E003]: unknown option 'logistc' for config group 'model'
  --> @AT@ (defaults.model)
   |     - model: logistc
   = 'model/logistc.yaml' does not exist in specs/credit_risk
   = available options in 'model': gradient_boosting, logistic, random_forest
   = help: did you mean 'logistic'?""",
    ),
    "E003-command-line": Bad(
        overrides=("security=strikt",),
        expected="""\
error[E003]: unknown option 'strikt' for config group 'security'
  --> command-line override 'security=strikt' (defaults.security)
   = 'security/strikt.yaml' does not exist in specs/credit_risk
   = available options in 'security': basic, strict
   = help: did you mean 'strict'?""",
    ),
    "E003-malformed-defaults-list": Bad(
        edits=((SPEC, "  - env: local\n", "  - 7\n"),),
        at=(SPEC, "defaults:", "defaults"),
        expected="""\
error[E003]: the defaults list cannot be composed
  --> @AT@ (defaults)
   |     defaults:
   = Unsupported type in defaults : int
   = help: list one '- group: option' item per config group, e.g. '- model: logistic', then '- _self_'""",
    ),
    "E004-unparsable-override": Bad(
        overrides=("model.params.C=[1,",),
        expected="""\
error[E004]: a command-line override cannot be parsed
  --> command-line override 'model.params.C=[1,'
   = no viable alternative at input '[1,'
   = help: write overrides as key.path=value or group=option, e.g. model=logistic or \
thresholds.evaluation.roc_auc.min=0.8""",
    ),
    "E004-group-takes-one-option": Bad(
        overrides=("model=[1,2]",),
        expected="""\
error[E004]: config group 'model' takes one option name
  --> command-line override 'model=[1,2]' (model)
   = got '[1,2]'
   = help: write model=option, e.g. model=logistic""",
    ),
    "E005-unknown-override-key": Bad(
        overrides=("thresholds.evaluaton.roc_auc.min=0.8",),
        expected="""\
error[E005]: override of a key that the spec does not have: 'thresholds.evaluaton.roc_auc.min'
  --> command-line override 'thresholds.evaluaton.roc_auc.min=0.8' (thresholds.evaluaton.roc_auc.min)
   = thresholds has no key 'evaluaton'; its keys: evaluation, slices, fairness, parity
   = help: did you mean 'evaluation'?""",
    ),
    "E006-bad-interpolation": Bad(
        edits=((SPEC, "version: 1.0.0", "version: ${nosuch.key}"),),
        at=(SPEC, "version: ${nosuch.key}", "${"),
        expected="""\
error[E006]: an interpolation cannot be resolved
  --> @AT@ (version)
   |     version: ${nosuch.key}
   = Interpolation key 'nosuch.key' not found
   = help: point ${...} at a key that exists""",
    ),
    # ------------------------------------------------------------------ load: untrusted text
    "E010-resolver-in-a-value": Bad(
        edits=((SPEC, "description: Probability", "description: key=${oc.env:AIOPS_SIGNING_KEY} Probability"),),
        at=(SPEC, "description: key=", "key="),
        expected="""\
error[E010]: a spec value may not call the resolver 'oc.env'
  --> @AT@ (description)
   |     description: key=${oc.env:AIOPS_SIGNING_KEY} Probability that a consumer loan application turns into a \
bad credit.
   = resolvers read the environment or files at compile time, and the value lands in committed documents
   = help: write the text itself; name an environment variable in a *_env key (e.g. key_env) instead""",
    ),
    "E011-hydra-key": Bad(
        edits=((SPEC, "name: credit_risk\n", "name: credit_risk\nhydra:\n  searchpath: [file:///etc]\n"),),
        at=(SPEC, "hydra:", "hydra"),
        expected="""\
error[E011]: a spec may not configure Hydra
  --> @AT@ (hydra)
   |     hydra:
   = 'hydra' settings (searchpath, run dirs, launchers) reach outside the spec folder
   = help: remove the 'hydra' key: a spec composes only the config groups of its own folder""",
    ),
    "E012-spec-folder-too-large": Bad(
        edits=((SPEC, "name: credit_risk\n", "name: credit_risk\n# " + "x" * 1_100_000 + "\n"),),
        expected="""\
error[E012]: the spec folder is too large
  --> specs/credit_risk
   = its YAML files hold 1,108,""",
    ),
    "E013-alias-expansion": Bad(
        edits=((SPEC, "name: credit_risk\n", "name: credit_risk\nbomb:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                + "".join(f"  {k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcd", "bcde"))),),
        at=(SPEC, "  d: &d", "*c, *c, *c]"),  # the eighth *c passes 10,000 values
        expected="""\
error[E013]: the YAML expands to too many values
  --> @AT@
   |     d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
   = with its aliases (*name) expanded, this file holds more than 10,000 values
   = help: write the values out, or reuse an anchor fewer times""",
    ),
    "E014-nesting-too-deep": Bad(
        edits=((SPEC, "name: credit_risk\n", "name: credit_risk\ndeep: " + "[" * 300 + "]" * 300 + "\n"),),
        expected="""\
error[E014]: the YAML nests too deep
  --> specs/credit_risk/spec.yaml:10:38
   |     deep: [[[[[""",
    ),
    "E015-link-out-of-the-folder": Bad(
        link=("model/linked.yaml", "/etc/hostname"),
        expected="""\
error[E015]: a spec file is not a regular file inside the spec folder
  --> specs/credit_risk/model/linked.yaml
   = 'specs/credit_risk/model/linked.yaml' points to '/etc/hostname'
   = help: copy the file into the spec folder instead of linking to it""",
    ),
    "E016-control-character-in-override": Bad(
        overrides=("description=one\nimport os",),
        expected="""\
error[E016]: a command-line override holds characters a spec may not use
  --> command-line override 'description=one\\nimport os'
   = it holds a control character (a newline, tab or escape)
   = help: write the value on one line, with printable characters only""",
    ),
    "E017-nested-quantifier-in-a-contract-regex": Bad(
        spec="flight_delays",
        edits=((SPEC, 'checks: {regex: "^[A-Z0-9]{2}$"}', 'checks: {regex: "^([A-Z0-9]+)+$"}'),),
        at=(SPEC, '"^([A-Z0-9]+)+$"', '"^('),
        expected="""\
error[E017]: a regular expression can take exponential time (ReDoS)
  --> @AT@ (data.columns.carrier.checks.regex)
   |     carrier: {dtype: category, checks: {regex: "^([A-Z0-9]+)+$"}}
   = '^([A-Z0-9]+)+$': the nested quantifier `([A-Z0-9]+)+` can take exponential time on a non-matching input (the repeat `[A-Z0-9]+` is repeated)
   = help: remove the inner or the outer repeat, or stop the backtracking with a possessive quantifier or an atomic group, e.g. `([A-Z0-9]+)++`""",
    ),
    "E017-overlapping-alternation-in-a-guardrail": Bad(
        spec="support_triage",
        edits=((SPEC, "'(?i)password\\s*[:=]'", "'(?i)password\\s*[:=]', '(\\w|\\d\\d?)+$'"),),
        at=(SPEC, "(\\w|", "'(\\w|"),
        expected="""\
error[E017]: a regular expression can take exponential time (ReDoS)
  --> @AT@ (prompts.triage.guardrails.output[1].patterns[1])
   |     - {type: deny, patterns: ['(?i)password\\s*[:=]', '(\\w|\\d\\d?)+$']}   # a leaked credential, not the word alone
   = '(\\\\w|\\\\d\\\\d?)+$': the repeated alternation `(\\w|\\d\\d?)+` can take exponential time on a non-matching input (its branches `\\w` and `\\d\\d?` can both start with '0')
   = help: make the branches start with different characters (single characters belong in one character class, e.g. `[ab]+` rather than `(a|b)+`), or stop the backtracking with a possessive quantifier or an atomic group, e.g. `(\\w|\\d\\d?)++`""",
    ),
    "E017-backreference-in-a-json-schema-pattern": Bad(
        spec="support_triage",
        edits=((SCH, '"pattern": "^[0-9]{5}$"', '"pattern": "^([0-9])\\\\1{4}$"'),),
        at=(SPEC, "schema: prompts/triage.schema.json", "prompts"),
        expected="""\
error[E017]: a regular expression can take exponential time (ReDoS)
  --> @AT@ (prompts.triage.output.schema)
   |     schema: prompts/triage.schema.json
   = 'prompts/triage.schema.json' at properties/order/pattern: '^([0-9])\\\\1{4}$': the backreference `\\1` can take exponential time and is not supported in a spec's patterns
   = help: write the pattern without backreferences or conditional groups""",
    ),
    # ------------------------------------------------------------------ structure
    "E100-unknown-key": Bad(
        edits=((SPEC, "seed: 42", "sed: 42"),),
        at=(SPEC, "sed: 42", "sed"),
        expected="""\
error[E100]: unknown key 'sed'
  --> @AT@ (data.split.sed)
   |     sed: 42
   = 'data.split' has no key 'sed'; valid keys: method, test_size, seed, time_column, test_start, end
   = help: did you mean 'seed'?""",
    ),
    "E101-missing-key-in-group-file": Bad(
        edits=((HIGH_RISK, "owner: head-of-credit-risk\n", ""),),
        expected="""\
error[E101]: missing required key 'governance.owner'
  --> specs/credit_risk/governance/high_risk.yaml (governance)
   = 'governance' must set 'owner' (a string)
   = help: add 'owner: ...' here""",
    ),
    "E102-wrong-type": Bad(
        edits=((SPEC, "test_size: 0.3", "test_size: thirty"),),
        at=(SPEC, "test_size: thirty", "thirty"),
        expected="""\
error[E102]: 'data.split.test_size' has the wrong type
  --> @AT@ (data.split.test_size)
   |     test_size: thirty
   = 'data.split.test_size' must be a number. Got 'thirty' instead.""",
    ),
    "E103-invalid-choice": Bad(
        edits=((SPEC, "method: stratified", "method: stratifed"),),
        at=(SPEC, "method: stratifed", "stratifed"),
        expected="""\
error[E103]: invalid value for 'method'
  --> @AT@ (data.split.method)
   |     method: stratifed
   = 'data.split.method' must be one of 'random', 'stratified', 'time'. Got 'stratifed' instead.
   = help: did you mean 'stratified'?""",
    ),
    # ------------------------------------------------------------------ data contract and source
    "E104-name-not-an-identifier": Bad(
        edits=((SPEC, "name: credit_risk", "name: ../victim"),),
        at=(SPEC, "name: ../victim", "../"),
        expected="""\
error[E104]: the spec name is not an identifier
  --> @AT@ (name)
   |     name: ../victim
   = 'name' must match [a-z][a-z0-9_]{0,63} (it names the output folder, a Python package and a crontab \
entry). Got '../victim' instead.
   = help: e.g. name: victim""",
    ),
    "E105-version-not-semver": Bad(
        edits=((SPEC, "version: 1.0.0", "version: '1.0'"),),
        at=(SPEC, "version: '1.0'", "'1.0'"),
        expected="""\
error[E105]: the spec version is not a semantic version
  --> @AT@ (version)
   |     version: '1.0'
   = 'version' must be MAJOR.MINOR.PATCH, optionally with -prerelease and +build (https://semver.org). \
Got '1.0' instead.
   = help: e.g. version: 1.0.0 (quote it if YAML would read a number: "1.0.0")""",
    ),
    "E201-source-missing": Bad(
        edits=((SPEC, "source: data/german_credit.csv", "source: data/german_credt.csv"),),
        at=(SPEC, "source: data/german_credt.csv", "data/"),
        expected="""\
error[E201]: the data source does not exist
  --> @AT@ (data.source)
   |     source: data/german_credt.csv
   = no file at '@DIR@/data/german_credt.csv' (paths are relative to the spec folder)
   = help: did you mean 'data/german_credit.csv'?""",
    ),
    "E202-unknown-format": Bad(
        edits=((SPEC, "source: data/german_credit.csv", "source: data/german_credit.txt"),
               (SPEC, "  format: csv\n", "")),
        at=(SPEC, "source: data/german_credit.txt", "data/"),
        expected="""\
error[E202]: cannot tell the data format from the file name
  --> @AT@ (data.source)
   |     source: data/german_credit.txt
   = 'data/german_credit.txt' ends in neither .csv nor .parquet
   = help: set data.format: csv or parquet""",
    ),
    "E203-column-not-in-source": Bad(
        edits=((SPEC, "telephone: {dtype: category}", "telephon: {dtype: category}"),),
        at=(SPEC, "telephon: {dtype: category}", "telephon"),
        expected="""\
error[E203]: a column of the data contract is not in the data source
  --> @AT@ (data.columns.telephon)
   |     telephon: {dtype: category}
   = 'telephon' is not in the header of data/german_credit.csv (21 columns)
   = help: did you mean 'telephone'?""",
    ),
    "E204-unsafe-column-name": Bad(
        edits=((SPEC, "job: {dtype: category}", "job title: {dtype: category}"),),
        at=(SPEC, "job title: {dtype: category}", "job"),
        expected="""\
error[E204]: column name is not a safe identifier
  --> @AT@ (data.columns.job title)
   |     job title: {dtype: category}
   = 'job title' must match [A-Za-z_][A-Za-z0-9_]* (it becomes an ONNX input name)
   = help: name the column 'job_title' and read it from the file's header with source_name: 'job title'""",
    ),
    "E206-datetime-without-formats": Bad(
        spec="flight_delays",
        edits=((SPEC, 'dtype: date\n      formats: ["%Y-%m-%d", "%m/%d/%Y", "%d%m%Y"]', "dtype: datetime"),),
        at=(SPEC, "    flight_date:", "flight_date"),
        expected="""\
error[E206]: a datetime column needs its accepted input formats
  --> @AT@ (data.columns.flight_date.formats)
   |     flight_date:
   = 'flight_date' has dtype datetime but no formats
   = help: add e.g. formats: ['%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S']""",
    ),
    "E227-source-name-of-another-column": Bad(
        edits=((SPEC, "purpose: {dtype: category}", "purpose: {dtype: category, source_name: job}"),),
        at=(SPEC, "purpose: {dtype: category, source_name: job}", "job}"),
        expected="""\
error[E227]: source_name is the name of another column of the contract
  --> @AT@ (data.columns.purpose.source_name)
   |     purpose: {dtype: category, source_name: job}
   = 'job' is also a column of data.columns
   = help: rename one of them""",
    ),
    "E227-file-has-both-names": Bad(
        edits=((SPEC, "purpose: {dtype: category}", "purpose: {dtype: category, source_name: job}"),),
        at=(SPEC, "purpose: {dtype: category, source_name: job}", "purpose"),
        expected="""\
error[E227]: the data source has both the column and its source_name
  --> @AT@ (data.columns.purpose)
   |     purpose: {dtype: category, source_name: job}
   = 'job' is read as 'purpose', but data/german_credit.csv also has a column 'purpose'
   = help: remove source_name, or one of the two columns from the file""",
    ),
    "E228-row-check-name": Bad(
        edits=((SPEC, "  max_rejected_share: 0.02",
                '  max_rejected_share: 0.02\n  row_checks:\n    - {name: "long loan", check: "duration_in_month >= 6"}'),),
        at=(SPEC, '{name: "long loan"', '"long loan"'),
        expected="""\
error[E228]: a row check's name is not an identifier
  --> @AT@ (data.row_checks[0].name)
   |     - {name: "long loan", check: "duration_in_month >= 6"}
   = 'name' must match [A-Za-z_][A-Za-z0-9_]{0,63} (it becomes a reason code). Got 'long loan' instead.
   = help: e.g. name: released_after_booked""",
    ),
    "E229-row-check-is-not-a-comparison": Bad(
        edits=((SPEC, "  max_rejected_share: 0.02",
                '  max_rejected_share: 0.02\n  row_checks:\n    - {name: big, check: "credit_amount > 1; import os"}'),),
        at=(SPEC, "{name: big,", '"credit_amount'),
        expected="""\
error[E229]: a row check is not a comparison aiops can read
  --> @AT@ (data.row_checks[0].check)
   |     - {name: big, check: "credit_amount > 1; import os"}
   = 'credit_amount > 1; import os' is not a comparison aiops can read
   = help: write '<column> <op> <column>' or '<column> <op> <literal>', op one of >= > <= < == !=, a literal a number or quoted text (e.g. released_at >= booked_at, or age >= 18)""",
    ),
    "E229-row-check-operands-do-not-fit": Bad(
        edits=((SPEC, "  max_rejected_share: 0.02",
                '  max_rejected_share: 0.02\n  row_checks:\n    - {name: aged, check: "age_in_years >= purpose"}'),),
        at=(SPEC, "{name: aged,", '"age_in_years'),
        expected="""\
error[E229]: a row check compares values that do not fit
  --> @AT@ (data.row_checks[0].check)
   |     - {name: aged, check: "age_in_years >= purpose"}
   = 'age_in_years' (int) and 'purpose' (category) cannot be compared""",
    ),
    "E205-unreadable-source": Bad(
        edits=((SPEC, "format: csv", "format: parquet"),),
        at=(SPEC, "source: data/german_credit.csv", "data/"),
        expected="""\
error[E205]: cannot read the header of the data source as parquet
  --> @AT@ (data.source)
   |     source: data/german_credit.csv
   = ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.
   = help: check data.format and that the file is not damaged""",
    ),
    "E206-invalid-date-format": Bad(
        spec="flight_delays",
        edits=((SPEC, '"%d%m%Y"]', '"%d%m%Q"]'),),
        at=(SPEC, '"%d%m%Q"]', '"%d%m%Q"'),
        expected="""\
error[E206]: invalid date format
  --> @AT@ (data.columns.flight_date.formats[2])
   |     formats: ["%Y-%m-%d", "%m/%d/%Y", "%d%m%Q"]
   = '%d%m%Q' is not a strftime format that can be parsed back
   = help: use directives such as %Y, %m, %d, e.g. '%Y-%m-%d' or '%d/%m/%Y'""",
    ),
    "E207-check-does-not-fit-dtype": Bad(
        edits=((SPEC, "credit_history: {dtype: category}", "credit_history: {dtype: category, checks: {ge: 1}}"),),
        at=(SPEC, "credit_history: {dtype: category, checks: {ge: 1}}", "1}"),
        expected="""\
error[E207]: a range check does not fit the column's dtype
  --> @AT@ (data.columns.credit_history.checks.ge)
   |     credit_history: {dtype: category, checks: {ge: 1}}
   = 'ge' compares numbers, but 'credit_history' has dtype category
   = help: use isin for categories, or change the dtype""",
    ),
    "E208-empty-range": Bad(
        edits=((SPEC, "{dtype: int, checks: {ge: 1, le: 120}}", "{dtype: int, checks: {ge: 200, le: 120}}"),),
        at=(SPEC, "duration_in_month: {dtype: int", "{ge"),
        expected="""\
error[E208]: the range check is empty
  --> @AT@ (data.columns.duration_in_month.checks)
   |     duration_in_month: {dtype: int, checks: {ge: 200, le: 120}}
   = lower bound 200.0 is above upper bound 120.0
   = help: swap or fix the bounds""",
    ),
    "E209-split": Bad(
        edits=((SPEC, "test_size: 0.3", "test_size: 1.5"),),
        at=(SPEC, "test_size: 1.5", "1.5"),
        expected="""\
error[E209]: split.test_size is out of range
  --> @AT@ (data.split.test_size)
   |     test_size: 1.5
   = 'data.split.test_size' must be a float in the range (0.0, 1.0). Got 1.5 instead.""",
    ),
    "E210-max-rejected-share": Bad(
        overrides=("data.max_rejected_share=2",),
        expected="""\
error[E210]: max_rejected_share is out of range
  --> command-line override 'data.max_rejected_share=2' (data.max_rejected_share)
   = 'data.max_rejected_share' must be a float in the range [0.0, 1.0]. Got 2.0 instead.""",
    ),
    "E211-key-undeclared": Bad(
        spec="flight_delays",
        edits=((SPEC, "  key: flight_key", "  key: flight_ky"),),
        at=(SPEC, "  key: flight_ky", "flight_ky"),
        expected="""\
error[E211]: data.key refers to an undeclared column
  --> @AT@ (data.key)
   |     key: flight_ky
   = 'flight_ky' is not a column of data.columns (@COLUMNS@)
   = help: did you mean 'flight_key'?""",
    ),
    # ------------------------------------------------------------------ the data, sampled (rules_sample.py)
    "E220-repeated-header-name": Bad(
        edits=(("data/german_credit.csv", "telephone,foreign_worker,creditability", "telephone,telephone,creditability"),),
        at=(SPEC, "source: data/german_credit.csv", "data/"),
        expected="""\
error[E220]: the data source repeats a column name
  --> @AT@ (data.source)
   |     source: data/german_credit.csv
   = 'telephone' is the name of columns 19 and 20 of the header of data/german_credit.csv
   = help: give each column its own name in the file (every command refuses the file as it is)""",
    ),
    "E221-date-format-matches-no-value": Bad(
        spec="flight_delays",
        edits=((SPEC, 'formats: ["%Y-%m-%d", "%m/%d/%Y", "%d%m%Y"]', 'formats: ["%d.%m.%Y"]'),),
        at=(SPEC, 'formats: ["%d.%m.%Y"]', '['),
        expected="""\
error[E221]: no value of the date column is written in its formats
  --> @AT@ (data.columns.flight_date.formats)
   |     formats: ["%d.%m.%Y"]
   = none of the 10,000 values of 'flight_date' in 10,000 records sampled through data/flights_2013.parquet is written as %d.%m.%Y; e.g. '9999-99-99' (masked: 9 is a digit, x a letter)
   = help: the values look like '%Y-%m-%d': add it to formats""",
    ),
    "E222-values-do-not-fit-the-dtype": Bad(
        edits=((SPEC, "credit_history: {dtype: category}", "credit_history: {dtype: int}"),),
        at=(SPEC, "credit_history: {dtype: int}", "int"),
        expected="""\
error[E222]: the data does not fit the column's dtype
  --> @AT@ (data.columns.credit_history.dtype)
   |     credit_history: {dtype: int}
   = 1,000 of the 1,000 records of data/german_credit.csv (100.0%) have a value of 'credit_history' that is not an integer; e.g. 'critical account/ other credits existing'
   = help: fix the dtype of 'credit_history', or the data; data.max_rejected_share is 2.0%""",
    ),
    "E223-values-outside-isin": Bad(
        edits=((SPEC, "isin: [rent, own, for free]", "isin: [rent, own]"),),
        at=(SPEC, "isin: [rent, own]}", "["),
        expected="""\
error[E223]: the data does not fit the column's isin
  --> @AT@ (data.columns.housing.checks.isin)
   |     housing: {dtype: category, checks: {isin: [rent, own]}}
   = 108 of the 1,000 records of data/german_credit.csv (10.8%) have a value of 'housing' that is not in isin; e.g. 'for free'
   = help: fix the isin of 'housing', or the data; data.max_rejected_share is 2.0%""",
    ),
    "E224-sample-rejected-share": Bad(
        edits=((SPEC, "isin: [rent, own, for free]", "isin: [rent, own]"),),
        at=(SPEC, "max_rejected_share: 0.02", "0.02"),
        expected="""\
error[E224]: the data breaks the contract more than data.max_rejected_share allows
  --> @AT@ (data.max_rejected_share)
   |     max_rejected_share: 0.02
   = 108 of the 1,000 records of data/german_credit.csv (10.8%) would be quarantined; the spec tolerates 2.0%
   = 108 rows: housing: not_in_set
   = help: fix the data, or the contract where it is wrong (each reason is above or in the notes)""",
    ),
    "E225-single-class-target": Bad(
        edits=((SPEC, "creditability: {dtype: category, checks: {isin: [good, bad]}}",
                "creditability: {dtype: category, checks: {isin: [good]}}"),
               (SPEC, "positive_class: bad", "positive_class: good")),
        at=(SPEC, "target: creditability", "creditability"),
        expected="""\
error[E225]: the target has a single class
  --> @AT@ (problem.target)
   |     target: creditability
   = every one of the 700 rows of the 1,000 records of data/german_credit.csv that the contract accepts has creditability = 'good'
   = help: a classifier needs rows of at least two classes: fix the data or the contract's checks on the target""",
    ),
    "E226-split-leaves-a-class-too-few-rows": Bad(
        edits=((SPEC, "test_size: 0.3", "test_size: 0.01"),),
        at=(SPEC, "  split:", "split"),
        expected="""\
error[E226]: the split leaves a class too few rows
  --> @AT@ (data.split)
   |     split:
   = the stratified split (test_size 0.01) would leave about 3 rows of class 'bad' in the holdout of the 1,000 records of data/german_credit.csv; at least 5 are needed to train and to measure
   = help: move test_start/end, change test_size, or add rows of that class""",
    ),
    # ------------------------------------------------------------------ problem and features
    "E212-source-outside-the-spec-folder": Bad(
        edits=((SPEC, "source: data/german_credit.csv", "source: ../../secret.csv"),),
        at=(SPEC, "source: ../../secret.csv", "../"),
        expected="""\
error[E212]: the data source lies outside the spec folder
  --> @AT@ (data.source)
   |     source: ../../secret.csv
   = '../../secret.csv' resolves to '@TMP@/secret.csv' (links followed); data roots declared by env: none
   = help: copy the file into the spec folder's data/, or declare its folder in env.data_roots""",
    ),
    "E213-data-root-holds-the-repository": Bad(
        edits=(("env/local.yaml", "name: local\n", "name: local\ndata_roots: [..]\n"),),
        at=("env/local.yaml", "data_roots:", ".."),
        expected="""\
error[E213]: a data root may not contain the working folder
  --> @AT@ (env.data_roots[0])
   |     data_roots: [..]
   = '..' resolves to '@UP@', which holds the repository itself (and its secrets, keys and other specs)
   = help: name the folder that holds the data files, e.g. /srv/data/credit""",
    ),
    "E214-quarantine-outside-the-working-folder": Bad(
        edits=(("env/local.yaml", "quarantine_dir: .aiops/quarantine", "quarantine_dir: ../../victim"),),
        at=("env/local.yaml", "quarantine_dir:", "../"),
        expected="""\
error[E214]: env.quarantine_dir leaves the working folder
  --> @AT@ (env.quarantine_dir)
   |     quarantine_dir: ../../victim
   = '../../victim' resolves to '@UP2@/victim'; compile writes there (and deletes a stale quarantine file)
   = help: keep it under the repository, e.g. .aiops/quarantine, or give it on the command line: env.quarantine_dir=...""",
    ),
    "E301-target-undeclared": Bad(
        edits=((SPEC, "target: creditability", "target: creditabilty"),),
        at=(SPEC, "target: creditabilty", "creditabilty"),
        expected="""\
error[E301]: problem.target refers to an undeclared column
  --> @AT@ (problem.target)
   |     target: creditabilty
   = 'creditabilty' is not a column of data.columns (@COLUMNS@)
   = help: did you mean 'creditability'?""",
    ),
    "E302-positive-class": Bad(
        edits=((SPEC, "positive_class: bad", "positive_class: baad"),),
        at=(SPEC, "positive_class: baad", "baad"),
        expected="""\
error[E302]: the positive class is not a label of the target
  --> @AT@ (problem.positive_class)
   |     positive_class: baad
   = 'baad' is not in creditability's isin ['good', 'bad']
   = help: did you mean 'bad'?""",
    ),
    "E304-positive-class-for-regression": Bad(
        spec="diabetes",
        edits=((SPEC, "  target: progression\n", "  target: progression\n  positive_class: 30\n"),),
        at=(SPEC, "positive_class: 30", "30"),
        expected="""\
error[E304]: positive_class does not apply to the task
  --> @AT@ (problem.positive_class)
   |     positive_class: 30
   = a regression model predicts a number; there is no class; problem.task is regression
   = help: remove problem.positive_class""",
    ),
    "E303-target-as-feature": Bad(
        edits=((SPEC, "transform: onehot, source: telephone}", "transform: onehot, source: creditability}"),),
        at=(SPEC, "source: creditability}", "creditability}"),
        expected="""\
error[E303]: the target is used as a feature
  --> @AT@ (features[18].source)
   |     - {name: telephone, transform: onehot, source: creditability}
   = 'creditability' is problem.target
   = help: remove this feature: the model would see the answer""",
    ),
    "E310-feature-source-undeclared": Bad(
        edits=((SPEC, "transform: scale, source: duration_in_month", "transform: scale, source: duration_in_mnth"),),
        at=(SPEC, "source: duration_in_mnth", "duration_in_mnth"),
        expected="""\
error[E310]: feature refers to an undeclared column
  --> @AT@ (features[1].source)
   |     - {name: duration, transform: scale, source: duration_in_mnth, scale: standard}
   = 'duration_in_mnth' is not a column of data.columns (@COLUMNS@)
   = help: did you mean 'duration_in_month'?""",
    ),
    "E311-feature-other-undeclared": Bad(
        edits=((SPEC, "other: duration_in_month", "other: duration_in_mnth"),),
        at=(SPEC, "other: duration_in_mnth", "duration_in_mnth"),
        expected="""\
error[E311]: feature refers to an undeclared column
  --> @AT@ (features[5].other)
   |     - {name: amount_per_month, transform: ratio, source: credit_amount, other: duration_in_mnth, scale: standard}
   = 'duration_in_mnth' is not a column of data.columns (@COLUMNS@)
   = help: did you mean 'duration_in_month'?""",
    ),
    "E312-duplicate-feature-name": Bad(
        edits=((SPEC, "{name: job,", "{name: housing,"),),
        at=(SPEC, "source: job}", "housing"),
        expected="""\
error[E312]: duplicate feature name
  --> @AT@ (features[16].name)
   |     - {name: housing, transform: onehot, source: job}
   = 'housing' is also the name of features[14]
   = help: give each feature its own name""",
    ),
    "E313-hour-of-a-date": Bad(
        spec="flight_delays",
        edits=((SPEC, "part: day_of_week}", "part: hour}"),),
        at=(SPEC, "part: hour}", "hour"),
        expected="""\
error[E313]: a date has no hour
  --> @AT@ (features[2].part)
   |     - {name: day_of_week, transform: date_part, source: flight_date, part: hour}
   = 'flight_date' has dtype date (a day, without a time of day)
   = help: use a datetime column, or a part of a date: year, quarter, month, day, day_of_week, day_of_year""",
    ),
    "E328-feature-known-after-outcome": Bad(
        spec="flight_delays",
        edits=((SPEC, "{name: arr_delay, transform: drop, source: arr_delay, reason: known only after arrival (label leakage)}",
                "{name: arr_delay, transform: passthrough, source: arr_delay}"),),
        at=(SPEC, "{name: arr_delay, transform: passthrough", "arr_delay}"),
        expected="""\
error[E328]: a feature reads a column known only after the outcome
  --> @AT@ (features[1].source)
   |     - {name: arr_delay, transform: passthrough, source: arr_delay}
   = 'arr_delay' is marked known_after_outcome (@KAO@): the model would learn from the answer (leakage), and it is not known when a prediction is made
   = help: use transform: drop for 'arr_delay', or remove known_after_outcome if it is known before the outcome""",
    ),
    "E313-transform-does-not-fit-dtype": Bad(
        edits=((SPEC, "{name: purpose, transform: onehot", "{name: purpose, transform: log"),),
        at=(SPEC, "{name: purpose, transform: log", "log"),
        expected="""\
error[E313]: transform 'log' does not fit the column's dtype
  --> @AT@ (features[3].transform)
   |     - {name: purpose, transform: log, source: purpose}
   = 'log' takes a column of dtype 'int', 'float'; 'purpose' has dtype category
   = help: use onehot or ordinal for a categorical column""",
    ),
    "E314-transform-parameter-missing": Bad(
        edits=((SPEC, "source: duration_in_month, scale: standard}", "source: duration_in_month}"),),
        at=(SPEC, "{name: duration,", "{name"),
        expected="""\
error[E314]: transform 'scale' needs 'scale'
  --> @AT@ (features[1])
   |     - {name: duration, transform: scale, source: duration_in_month}
   = features[1] ('duration') has no 'scale'
   = help: add 'scale: ...' to this feature""",
    ),
    "E314-onehot-min-frequency-out-of-range": Bad(
        edits=((SPEC, "{name: purpose, transform: onehot, source: purpose}",
                "{name: purpose, transform: onehot, source: purpose, min_frequency: 1.5}"),),
        at=(SPEC, "min_frequency: 1.5", "1.5"),
        expected="""\
error[E314]: onehot min_frequency out of range
  --> @AT@ (features[3].min_frequency)
   |     - {name: purpose, transform: onehot, source: purpose, min_frequency: 1.5}
   = 'min_frequency' must be a count (an int >= 1) or a share of the training rows (a number in (0, 1)). Got 1.5 instead.
   = help: e.g. min_frequency: 50, or min_frequency: 0.01""",
    ),
    "E315-parameter-does-not-apply": Bad(
        edits=((SPEC, "source: status_of_existing_checking_account}",
                "source: status_of_existing_checking_account, scale: standard}"),),
        at=(SPEC, "{name: checking_account,", "scale"),
        expected="""\
error[E315]: 'scale' does not apply to transform 'onehot'
  --> @AT@ (features[0].scale)
   |     - {name: checking_account, transform: onehot, source: status_of_existing_checking_account, scale: standard}
   = 'onehot' takes: min_frequency, max_categories
   = help: remove 'scale'""",
    ),
    "E316-unsafe-feature-name": Bad(
        edits=((SPEC, "name: log_credit_amount", "name: log-credit-amount"),),
        at=(SPEC, "name: log-credit-amount", "log-credit-amount"),
        expected="""\
error[E316]: feature name is not a safe identifier
  --> @AT@ (features[4].name)
   |     - {name: log-credit-amount, transform: log, source: credit_amount, scale: standard}
   = 'log-credit-amount' must match [A-Za-z_][A-Za-z0-9_]* (it becomes an ONNX input name)""",
    ),
    "E317-no-model-feature": Bad(
        overrides=("features=[{name:x,transform:drop,source:purpose}]",),
        expected="""\
error[E317]: the spec has no model feature
  --> command-line override 'features=[{name:x,transform:drop,source:purpose}]' (features)
   = every feature is 'drop'
   = help: keep at least one feature""",
    ),
    "W318-column-neither-used-nor-dropped": Bad(
        edits=((SPEC, "  - {name: telephone, transform: onehot, source: telephone}\n", ""),),
        at=(SPEC, "telephone: {dtype: category}", "telephone"),
        expected="""\
warning[W318]: a column of the contract is neither used nor dropped
  --> @AT@ (data.columns.telephone)
   |     telephone: {dtype: category}
   = no feature takes 'telephone'
   = help: add {name: telephone, transform: drop, source: telephone, reason: ...} to say it is left out on purpose""",
    ),
    # ------------------------------------------------------------------ model
    "E501-estimator-not-allowed": Bad(
        edits=((LOGISTIC, "estimator: LogisticRegression", "estimator: LogisticRegresion"),),
        at=(LOGISTIC, "estimator:", "Logistic"),
        expected="""\
error[E501]: estimator is not in the allow-list
  --> @AT@ (model.estimator)
   |     estimator: LogisticRegresion
   = 'LogisticRegresion' is not one of the estimators aiops can export to ONNX and verify
   = allowed: LogisticRegression, RandomForestClassifier, ExtraTreesClassifier, GradientBoostingClassifier, \
HistGradientBoostingClassifier, DecisionTreeClassifier, LinearRegression, Ridge, Lasso, RandomForestRegressor, \
GradientBoostingRegressor, HistGradientBoostingRegressor, DecisionTreeRegressor
   = help: did you mean 'LogisticRegression'?""",
    ),
    "E502-estimator-does-not-fit-task": Bad(
        overrides=("model.estimator=Ridge",),
        expected="""\
error[E502]: the estimator does not fit the task
  --> command-line override 'model.estimator=Ridge' (model.estimator)
   = Ridge is for regression; problem.task is binary_classification
   = help: choose one of: LogisticRegression, RandomForestClassifier, ExtraTreesClassifier, \
GradientBoostingClassifier, HistGradientBoostingClassifier, DecisionTreeClassifier""",
    ),
    "E503-not-exportable": Bad(
        onnx_probe_fails="MissingShapeCalculator: Unable to find a shape calculator",
        at=(LOGISTIC, "estimator:", "Logistic"),
        expected="""\
error[E503]: the estimator cannot be exported to ONNX with the installed libraries
  --> @AT@ (model.estimator)
   |     estimator: LogisticRegression
   = LogisticRegression with @VERSIONS@: MissingShapeCalculator: Unable to find a shape calculator
   = help: install the pinned versions (pip install -e .), or choose another estimator""",
    ),
    "E504-unknown-estimator-parameter": Bad(
        edits=((LOGISTIC, "max_iter: 2000", "max_itr: 2000"),),
        at=(LOGISTIC, "max_itr: 2000", "max_itr"),
        expected="""\
error[E504]: unknown estimator parameter
  --> @AT@ (model.params.max_itr)
   |     max_itr: 2000
   = 'max_itr' is not a parameter of LogisticRegression
   = help: did you mean 'max_iter'?""",
    ),
    "E505-invalid-estimator-parameter": Bad(
        edits=((LOGISTIC, "C: 0.5", "C: -1"),),
        at=(LOGISTIC, "C: -1", "-1"),
        expected="""\
error[E505]: invalid estimator parameter value
  --> @AT@ (model.params.C)
   |     C: -1
   = The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 instead.""",
    ),
    # ------------------------------------------------------------------ thresholds
    "E505-in-an-option-that-is-not-selected": Bad(
        spec="flight_delays",
        edits=(("model/logistic.yaml", "C: 1.0", "C: -1"),),
        at=("model/logistic.yaml", "C: -1", "-1"),
        expected="""\
error[E505]: invalid estimator parameter value
  --> @AT@ (model.params.C)
   |     C: -1
   = The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 instead.
   = found with model: logistic, an option that is not selected (model: gradient_boosting is); aiops check composes every option""",
    ),
    "E601-unknown-metric": Bad(
        edits=((SPEC, "roc_auc: {min: 0.74}", "roc_auk: {min: 0.74}"),),
        at=(SPEC, "roc_auk: {min: 0.74}", "roc_auk"),
        expected="""\
error[E601]: unknown metric
  --> @AT@ (thresholds.evaluation.roc_auk)
   |     roc_auk: {min: 0.74}
   = 'roc_auk' is not a metric aiops computes
   = metrics: roc_auc, average_precision, accuracy, balanced_accuracy, precision, recall, f1, log_loss, brier, r2, \
mae, rmse, mape
   = help: did you mean 'roc_auc'?""",
    ),
    "E602-metric-does-not-fit-task": Bad(
        edits=((SPEC, "accuracy: {min: 0.7}", "r2: {min: 0.7}"),),
        at=(SPEC, "r2: {min: 0.7}", "r2"),
        expected="""\
error[E602]: the metric does not fit the task
  --> @AT@ (thresholds.evaluation.r2)
   |     r2: {min: 0.7}
   = 'r2' is for regression; problem.task is binary_classification
   = help: metrics for binary_classification: roc_auc, average_precision, accuracy, balanced_accuracy, precision, \
recall, f1, log_loss, brier""",
    ),
    "E603-threshold-out-of-range": Bad(
        edits=((SPEC, "roc_auc: {min: 0.74}", "roc_auc: {min: 74}"),),
        at=(SPEC, "roc_auc: {min: 74}", "74"),
        expected="""\
error[E603]: threshold for 'roc_auc' is out of range
  --> @AT@ (thresholds.evaluation.roc_auc.min)
   |     roc_auc: {min: 74}
   = 'roc_auc' takes values in [0.0, 1.0]. Got min: 74.0 instead.
   = help: a share is written 0.8, not 80""",
    ),
    "E604-threshold-without-bound": Bad(
        edits=((SPEC, "brier: {max: 0.2}", "brier: {}"),),
        at=(SPEC, "brier: {}", "brier"),
        expected="""\
error[E604]: a threshold sets neither min nor max
  --> @AT@ (thresholds.evaluation.brier)
   |     brier: {}
   = 'brier' has no bound
   = help: add min: or max:""",
    ),
    "E605-slice-column-undeclared": Bad(
        edits=((SPEC, "- {column: housing,", "- {column: housng,"),),
        at=(SPEC, "- {column: housng,", "housng"),
        expected="""\
error[E605]: slice refers to an undeclared column
  --> @AT@ (thresholds.slices[0].column)
   |     - {column: housng, metric: roc_auc, min: 0.65, min_rows: 30}
   = 'housng' is not a column of data.columns (@COLUMNS@)
   = help: did you mean 'housing'?""",
    ),
    "E606-fairness-on-non-sensitive-column": Bad(
        edits=((SPEC, "{attribute: foreign_worker,", "{attribute: telephone,"),),
        at=(SPEC, "{attribute: telephone,", "telephone"),
        expected="""\
error[E606]: fairness bound on a column that is not sensitive
  --> @AT@ (thresholds.fairness[2].attribute)
   |     - {attribute: telephone, metric: demographic_parity_difference, max: 0.25}
   = 'telephone' is not flagged sensitive in data.columns
   = sensitive columns: personal_status_and_sex, age_in_years, foreign_worker
   = help: set sensitive: true on data.columns.telephone""",
    ),
    "E607-numeric-attribute-without-bins": Bad(
        edits=((SPEC, "{attribute: age_in_years, bins: [18, 25, 101],", "{attribute: age_in_years,"),),
        at=(SPEC, "{attribute: age_in_years,", "age_in_years"),
        expected="""\
error[E607]: a fairness bound on a numeric attribute needs bins
  --> @AT@ (thresholds.fairness[1].attribute)
   |     - {attribute: age_in_years, metric: disparate_impact_ratio, min: 0.5}
   = 'age_in_years' has dtype int
   = help: add bins: [18, ..., 101] to define the groups: increasing edges, each group is [a, b)""",
    ),
    "E607-coded-attribute-without-codes": Bad(
        spec="diabetes",
        edits=(("spec.yaml", "checks: {isin: [1, 2]}", "checks: {ge: 0, le: 1}"),),
        at=("spec.yaml", "metric: mean_absolute_error_difference", "sex"),
        expected="""\
error[E607]: a fairness bound on a numeric attribute needs bins
  --> @AT@ (thresholds.fairness[0].attribute)
   |     - {attribute: sex, metric: mean_absolute_error_difference, max: 12}
   = 'sex' has dtype int
   = help: 'sex' holds codes 0 to 1: list them, checks: {isin: [0, 1]}, and name them with labels: {0: ..., 1: ...} on data.columns.sex""",
    ),
    "E620-label-of-a-value-the-column-cannot-take": Bad(
        spec="diabetes",
        edits=(("spec.yaml", "checks: {isin: [1, 2]}\n", "checks: {isin: [1, 2]}\n      labels: {1: group_a, 3: group_b}\n"),),
        at=("spec.yaml", "labels: {1: group_a", "3"),
        expected="""\
error[E620]: a label names a value the column cannot take
  --> @AT@ (data.columns.sex.labels.3)
   |     labels: {1: group_a, 3: group_b}
   = '3' is not one of the values of 'sex': 1, 2
   = help: name the values the contract allows (checks.isin)""",
    ),
    "E621-indicator-column-not-binary": Bad(
        edits=((SPEC, "  max_rejected_share: 0.02\n",
                "  max_rejected_share: 0.02\n  indicators:\n    origin: {columns: {foreign_worker: foreign, age_in_years: aged}}\n"),),
        at=(SPEC, "{foreign_worker: foreign", "foreign_worker"),
        expected="""\
error[E621]: an indicator column is not 0/1
  --> @AT@ (data.indicators.origin.columns.foreign_worker)
   |     origin: {columns: {foreign_worker: foreign, age_in_years: aged}}
   = 'foreign_worker' has dtype category
   = help: declare data.columns.foreign_worker as dtype bool, or int with checks: {isin: [0, 1]}""",
    ),
    "E609-parity-tolerance-unset": Bad(
        edits=((SPEC, "    probabilities_atol: 1.0e-4\n", ""),),
        at=(SPEC, "  parity:", "parity"),
        expected="""\
error[E609]: the parity tolerance 'probabilities_atol' is not set
  --> @AT@ (thresholds.parity)
   |     parity:
   = a binary_classification model's ONNX export is verified per output; 'probabilities_atol' has no tolerance
   = help: set thresholds.parity.probabilities_atol (e.g. 1e-4; tree models in float32 may need 1e-3)""",
    ),
    "E610-fairness-metric-does-not-fit-task": Bad(
        spec="diabetes",
        edits=((SPEC, "metric: mean_prediction_difference, max: 30", "metric: demographic_parity_difference, max: 0.2"),),
        at=(SPEC, "metric: demographic_parity_difference, max: 0.2", "demographic"),
        expected="""\
error[E610]: the fairness metric does not fit the task
  --> @AT@ (thresholds.fairness[1].metric)
   |     - {attribute: sex, metric: demographic_parity_difference, max: 0.2}
   = demographic_parity_difference is for classification; problem.task is regression
   = help: fairness metrics for regression: mean_prediction_difference, mean_absolute_error_difference, bounded_group_loss""",
    ),
    "E611-multiclass-fairness-needs-class": Bad(
        spec="penguins",
        edits=((SPEC, "metric: demographic_parity_difference, positive_class: Adelie,",
                "metric: demographic_parity_difference,"),),
        at=(SPEC, "metric: demographic_parity_difference,", "{"),
        expected="""\
error[E611]: a multiclass fairness bound needs the class it is about
  --> @AT@ (thresholds.fairness[0])
   |     - {attribute: sex, metric: demographic_parity_difference, max: 0.2}
   = demographic_parity_difference compares how often groups are predicted one class (one-vs-rest); thresholds.fairness[].positive_class is not set
   = help: add positive_class: <a label of the target> (one of Adelie, Chinstrap, Gentoo); one bound per class that matters""",
    ),
    "E611-fairness-class-not-a-label": Bad(
        spec="penguins",
        edits=((SPEC, "positive_class: Adelie,", "positive_class: Adelei,"),),
        at=(SPEC, "positive_class: Adelei,", "Adelei"),
        expected="""\
error[E611]: the fairness bound's class is not a label of the target
  --> @AT@ (thresholds.fairness[0].positive_class)
   |     - {attribute: sex, metric: demographic_parity_difference, positive_class: Adelei, max: 0.2}
   = 'Adelei' is not in the target's isin ['Adelie', 'Chinstrap', 'Gentoo']
   = help: did you mean 'Adelie'?""",
    ),
    "E611-regression-bound-has-class": Bad(
        spec="diabetes",
        edits=((SPEC, "metric: mean_prediction_difference, max: 30", "metric: mean_prediction_difference, positive_class: 2, max: 30"),),
        at=(SPEC, "positive_class: 2,", "2"),
        expected="""\
error[E611]: positive_class does not apply to this fairness bound
  --> @AT@ (thresholds.fairness[1].positive_class)
   |     - {attribute: sex, metric: mean_prediction_difference, positive_class: 2, max: 30}
   = a regression bound compares predictions, not a class; problem.task is regression
   = help: remove positive_class from this bound""",
    ),
    # ------------------------------------------------------------------ monitoring and serving
    "E710-monitoring-minimum-too-small": Bad(
        spec="penguins",
        edits=((SPEC, "  min_rows: 60\n", "  min_rows: 1\n"),),
        at=(SPEC, "  min_rows: 1", "1"),
        expected="""\
error[E710]: a monitoring minimum is too small
  --> @AT@ (monitoring.min_rows)
   |     min_rows: 1
   = 'monitoring.min_rows' must be an int of at least 2. Got 1 instead.
   = help: statistics on fewer rows mean nothing; the default is 100""",
    ),
    "E711-drift-column-not-testable": Bad(
        spec="penguins",
        edits=((SPEC, "  min_labelled_rows: 60\n", "  min_labelled_rows: 60\n  drift_columns: [year, island]\n"),),
        at=(SPEC, "drift_columns:", "island"),
        expected="""\
error[E711]: a drift column cannot be tested
  --> @AT@ (monitoring.drift_columns[1])
   |     drift_columns: [year, island]
   = 'island': it is a model input: model inputs are always tested
   = help: remove 'island' from monitoring.drift_columns""",
    ),
    "E711-drift-features-of-an-untested-column": Bad(
        spec="penguins",
        edits=((SPEC, "  min_labelled_rows: 60\n",
                "  min_labelled_rows: 60\n  drift_features: {year: [{test: psi, threshold: 0.2, applies_to: numeric}]}\n"),),
        at=(SPEC, "drift_features:", "year"),
        expected="""\
error[E711]: drift_features names a column that is not tested
  --> @AT@ (monitoring.drift_features.year)
   |     drift_features: {year: [{test: psi, threshold: 0.2, applies_to: numeric}]}
   = 'year' is not a model input; drift is tested on model inputs and the prediction, and on other columns \
only when monitoring.drift_columns lists them
   = help: add 'year' to monitoring.drift_columns, or remove its drift_features entry""",
    ),
    # prompt monitoring (compiler/rules_prompt_monitoring.py)
    "E712-guardrail-ceiling-names-no-guard": Bad(
        spec="support_triage",
        edits=((SPEC, "guardrail_hit_rates: {input.pii: 0.5}", "guardrail_hit_rates: {input.pi: 0.5}"),),
        at=(SPEC, "guardrail_hit_rates:", "input.pi"),
        expected="""\
error[E712]: a guardrail ceiling names no guard
  --> @AT@ (monitoring.guardrail_hit_rates.input.pi)
   |     guardrail_hit_rates: {input.pi: 0.5}   # masking PII in messages is routine; half of them is not
   = 'input.pi' is not a guard of any prompt; guards are named side.type: input.deny, input.length, input.pii, \
output.deny, output.json_schema, output.pii
   = help: did you mean 'input.pii'?""",
    ),
    "E713-text-drift-auc": Bad(
        spec="support_triage",
        edits=((SPEC, "text_drift_auc: 0.75 ", "text_drift_auc: 0.4  "),),
        at=(SPEC, "text_drift_auc: 0.4", "0.4"),
        expected="""\
error[E713]: the text-drift AUC threshold is out of range
  --> @AT@ (monitoring.text_drift_auc)
   |     text_drift_auc: 0.4                  # a classifier telling the day's texts from the golden set's
   = 'monitoring.text_drift_auc' must be a float in the range (0.5, 1.0]. Got 0.4 instead.
   = help: 0.5 means the classifier cannot tell the window from the reference; 0.75 is a usual alarm""",
    ),
    "E714-length-drift-threshold": Bad(
        spec="support_triage",
        edits=((SPEC, '  schedule: "0 6 * * *"\n', '  schedule: "0 6 * * *"\n  length_drift: {test: psi, threshold: 0}\n'),),
        at=(SPEC, "length_drift:", "0}"),
        expected="""\
error[E714]: the length-drift threshold is not positive
  --> @AT@ (monitoring.length_drift.threshold)
   |     length_drift: {test: psi, threshold: 0}
   = 'monitoring.length_drift.threshold' must be a float above 0. Got 0.0 instead.""",
    ),
    "E707-prompt-monitoring-rate": Bad(
        spec="support_triage",
        edits=((SPEC, '  schedule: "0 6 * * *"\n', '  schedule: "0 6 * * *"\n  max_refusal_rate: 1.5\n'),),
        at=(SPEC, "max_refusal_rate: 1.5", "1.5"),
        expected="""\
error[E707]: a monitoring rate is out of range
  --> @AT@ (monitoring.max_refusal_rate)
   |     max_refusal_rate: 1.5
   = 'monitoring.max_refusal_rate' must be a float in the range [0.0, 1.0]. Got 1.5 instead.""",
    ),
    "E701-invalid-cron": Bad(
        edits=((SPEC, 'schedule: "0 6 * * 1"', 'schedule: "0 25 * * 1"'),),
        at=(SPEC, "schedule:", '"0 25'),
        expected="""\
error[E701]: invalid cron schedule
  --> @AT@ (monitoring.schedule)
   |     schedule: "0 25 * * 1"
   = the hour field '25' is not valid: it takes 0-23, lists (1,3), ranges (1-5) and steps of at least 1 (*/15)
   = help: e.g. '0 6 * * 1' or '0 6 * * MON' runs every Monday at 06:00; '@daily' at midnight""",
    ),
    "E702-drift-test-does-not-fit": Bad(
        edits=((SPEC, "{test: ks, threshold: 0.01, applies_to: numeric}",
                "{test: ks, threshold: 0.01, applies_to: categorical}"),),
        at=(SPEC, "{test: ks,", "ks"),
        expected="""\
error[E702]: drift test 'ks' does not fit categorical features
  --> @AT@ (monitoring.drift[1].test)
   |     - {test: ks, threshold: 0.01, applies_to: categorical}
   = 'ks' applies to numeric features
   = help: use ks, psi or wasserstein for numeric; chi_square or jensen_shannon for categorical""",
    ),
    "E703-drift-feature-does-not-fit": Bad(
        spec="flight_delays",
        edits=((SPEC, "    arr_delay:\n      - {test: wasserstein, threshold: 0.1, applies_to: numeric}",
                "    flight_date:\n      - {test: psi, threshold: 0.2, applies_to: numeric}"),),
        at=(SPEC, "- {test: psi, threshold: 0.2, applies_to: numeric}", "psi"),
        expected="""\
error[E703]: drift test 'psi' does not fit column 'flight_date'
  --> @AT@ (monitoring.drift_features.flight_date[0].test)
   |     - {test: psi, threshold: 0.2, applies_to: numeric}
   = 'flight_date' has dtype date; 'psi' applies to numeric and categorical""",
    ),
    "E704-window": Bad(
        spec="flight_delays",
        edits=((SPEC, "size: month}", "size: mnth}"),),
        at=(SPEC, "size: mnth}", "mnth"),
        expected="""\
error[E704]: invalid time window size
  --> @AT@ (monitoring.window.size)
   |     window: {by: time, column: flight_date, size: mnth}
   = 'monitoring.window.size' must be one of 'day', 'week', 'month' for a time window. Got 'mnth' instead.
   = help: did you mean 'month'?""",
    ),
    "E706-labels": Bad(
        edits=((SPEC, "label_delay_days: 365", "label_delay_days: -1"),),
        at=(SPEC, "label_delay_days: -1", "-1"),
        expected="""\
error[E706]: label_delay_days is negative
  --> @AT@ (monitoring.label_delay_days)
   |     label_delay_days: -1
   = got -1""",
    ),
    "E707-data-quality-rate": Bad(
        edits=((SPEC, "max_null_rate: 0.01", "max_null_rate: 1.5"),),
        at=(SPEC, "max_null_rate: 1.5", "1.5"),
        expected="""\
error[E707]: a data-quality rate is out of range
  --> @AT@ (monitoring.data_quality.max_null_rate)
   |     max_null_rate: 1.5
   = 'monitoring.data_quality.max_null_rate' must be a float in the range [0.0, 1.0]. Got 1.5 instead.""",
    ),
    "E708-webhook": Bad(
        overrides=("+monitoring.webhook=hooks.example.com/aiops",),
        expected="""\
error[E708]: the webhook is not an http(s) URL
  --> command-line override '+monitoring.webhook=hooks.example.com/aiops' (monitoring.webhook)
   = got 'hooks.example.com/aiops'""",
    ),
    "E709-fairness-monitoring-without-bounds": Bad(
        spec="flight_delays",
        edits=((SPEC, "fairness: false", "fairness: true"),),
        at=(SPEC, "fairness: true", "true"),
        expected="""\
error[E709]: fairness monitoring needs fairness bounds
  --> @AT@ (monitoring.fairness)
   |     fairness: true
   = monitoring.fairness is true but thresholds.fairness is empty
   = help: add thresholds.fairness, or set monitoring.fairness: false""",
    ),
    "E720-serving": Bad(
        edits=((SPEC, "max_records_per_request: 1000", "max_records_per_request: 0"),),
        at=(SPEC, "max_records_per_request: 0", "0"),
        expected="""\
error[E720]: serving.max_records_per_request must be positive
  --> @AT@ (serving.max_records_per_request)
   |     max_records_per_request: 0
   = 'serving.max_records_per_request' must be a number in the range (0, inf). Got 0 instead.""",
    ),
    "E720-serving-connection-limit": Bad(
        overrides=("+serving.header_timeout_s=0",),
        expected="""\
error[E720]: serving.header_timeout_s must be positive
  --> command-line override '+serving.header_timeout_s=0' (serving.header_timeout_s)
   = 'serving.header_timeout_s' must be a number in the range (0, inf). Got 0.0 instead.""",
    ),
    "E721-header-limit-out-of-range": Bad(
        overrides=("+serving.max_header_bytes=67108864",),
        expected="""\
error[E721]: serving.max_header_bytes is out of range
  --> command-line override '+serving.max_header_bytes=67108864' (serving.max_header_bytes)
   = 'serving.max_header_bytes' must be an int in the range [1024, 1048576]. Got 67108864 instead.
   = help: the default, 32768, fits any API key; a larger limit lets one request hold more memory""",
    ),
    "E722-jobs-would-store-a-pii-feature-in-clear": Bad(
        overrides=("security=basic",),
        edits=((SPEC, "transform: drop, source: personal_status_and_sex, reason: special-category personal data; "
                      "used only to measure fairness", "transform: onehot, source: personal_status_and_sex"),
               ("security/basic.yaml", "{method: redact, allow_as_feature: false}",
                "{method: redact, allow_as_feature: true}")),
        at=(SPEC, "modes: [http, batch, async]", "["),
        expected="""\
error[E722]: asynchronous jobs would store a PII feature in clear text
  --> @AT@ (serving.modes)
   |     modes: [http, batch, async]
   = serving.modes has 'async', the PII column(s) 'personal_status_and_sex' feed the model and \
security.encryption_at_rest is off: a job's input must keep them to score them
   = help: enable security.encryption_at_rest, or remove 'async' from serving.modes""",
    ),
    "E723-high-risk-without-roles": Bad(
        edits=((STRICT, "roles:\n  scorer: [predict, explain, metadata]\n  batch: [predict, score, jobs, metadata]\n"
                        "  auditor: [audit, metadata, metrics]\n  admin: [admin]", "roles: {}"),),
        at=(STRICT, "roles: {}", "roles"),
        expected="""\
error[E723]: a high-risk model needs API roles
  --> @AT@ (security.roles)
   |     roles: {}
   = governance.risk_tier is high (@TIER@): 'aiops serve' refuses to run it without API keys, and every key \
names a role
   = help: define security.roles, e.g. {scorer: [predict, explain, metadata], auditor: [audit, metrics]}""",
    ),
    # ------------------------------------------------------------------ security
    "E801-masking-undeclared-column": Bad(
        edits=((STRICT, "  personal_status_and_sex:", "  personal_status_and_sx:"),),
        at=(STRICT, "personal_status_and_sx:", "personal"),
        expected="""\
error[E801]: security.masking refers to an undeclared column
  --> @AT@ (security.masking.personal_status_and_sx)
   |     personal_status_and_sx: {method: hash, allow_as_feature: false}
   = 'personal_status_and_sx' is not a column of data.columns (@COLUMNS@)
   = help: did you mean 'personal_status_and_sex'?""",
    ),
    "E802-pii-without-masking": Bad(
        overrides=("+data.columns.foreign_worker.pii=true",),
        expected="""\
error[E802]: a PII column has no masking method
  --> command-line override '+data.columns.foreign_worker.pii=true' (data.columns.foreign_worker.pii)
   = 'foreign_worker' is flagged pii but security.masking does not name it
   = help: add security.masking.foreign_worker: {method: hash} (hash, redact or generalize)""",
    ),
    "E803-pii-as-feature": Bad(
        edits=((SPEC, "telephone: {dtype: category}", "telephone: {dtype: category, pii: true}"),),
        at=(SPEC, "{name: telephone,", "telephone}"),
        expected="""\
error[E803]: a PII column is used as a model feature
  --> @AT@ (features[18].source)
   |     - {name: telephone, transform: onehot, source: telephone}
   = 'telephone' is flagged pii and the policy does not allow it as a feature
   = help: drop the feature, or set security.masking.telephone: {method: hash, allow_as_feature: true} if the \
policy allows it""",
    ),
    "W804-masking-non-pii-column": Bad(
        edits=((STRICT, "masking:\n", "masking:\n  telephone: {method: hash}\n"),),
        at=(STRICT, "telephone: {method: hash}", "telephone"),
        expected="""\
warning[W804]: masking is set for a column that is not flagged pii
  --> @AT@ (security.masking.telephone)
   |     telephone: {method: hash}
   = 'telephone' has pii: false in data.columns
   = help: set pii: true on data.columns.telephone""",
    ),
    "W816-pii-column-masking-none": Bad(
        edits=((STRICT, "personal_status_and_sex: {method: hash", "personal_status_and_sex: {method: none"),),
        at=(STRICT, "personal_status_and_sex: {method: none", "personal_status_and_sex"),
        expected="""\
warning[W816]: a PII value's masking method is none, which is not applied
  --> @AT@ (security.masking.personal_status_and_sex)
   |     personal_status_and_sex: {method: none, allow_as_feature: false}
   = 'personal_status_and_sex' is flagged pii (data.columns.personal_status_and_sex): the runtime never writes a \
PII value in clear, so it redacts it, as with no method
   = help: write security.masking.personal_status_and_sex: {method: redact} (or hash, or generalize), or set \
pii: false on data.columns.personal_status_and_sex if it is not PII""",
    ),
    "W816-pii-variable-masking-none": Bad(
        spec="support_triage",
        edits=((PSEC, "  message: {method: redact}", "  message: {method: none}"),),
        at=(PSEC, "message: {method: none}", "message"),
        expected="""\
warning[W816]: a PII value's masking method is none, which is not applied
  --> @AT@ (security.masking.message)
   |     message: {method: none}
   = 'message' is flagged pii (prompts.triage.variables.message): the runtime never writes a PII value in clear, \
so it redacts it, as with no method
   = help: write security.masking.message: {method: redact} (or hash, or generalize), or set pii: false on \
prompts.triage.variables.message if it is not PII""",
    ),
    "E805-encryption-without-key": Bad(
        edits=((STRICT, "key_env: AIOPS_DATA_KEY", 'key_env: ""'),),
        at=(STRICT, "encryption_at_rest:", '""'),
        expected="""\
error[E805]: encryption at rest needs a key source
  --> @AT@ (security.encryption_at_rest.key_env)
   |     encryption_at_rest: {enabled: true, key_env: ""}
   = key_env is empty
   = help: name the environment variable that holds the key""",
    ),
    "E806-empty-role": Bad(
        edits=((STRICT, "admin: [admin]", "admin: []"),),
        at=(STRICT, "admin: []", "[]"),
        expected="""\
error[E806]: a role grants no permission
  --> @AT@ (security.roles.admin)
   |     admin: []
   = role 'admin' is empty""",
    ),
    "E807-audit-retention": Bad(
        edits=((STRICT, "retention_days: 2555", "retention_days: 0"),),
        at=(STRICT, "retention_days: 0", "0}"),
        expected="""\
error[E807]: audit log retention must be at least one day
  --> @AT@ (security.audit_log.retention_days)
   |     audit_log: {enabled: true, retention_days: 0}
   = got 0""",
    ),
    # ------------------------------------------------------------------ governance
    "E810-high-risk-without-fairness": Bad(
        overrides=("thresholds.fairness=[]",),
        expected="""\
error[E810]: a high-risk model needs fairness bounds
  --> command-line override 'thresholds.fairness=[]' (thresholds.fairness)
   = governance.risk_tier is high (@TIER@)
   = help: add thresholds.fairness with a bound per sensitive column""",
    ),
    "E811-high-risk-without-explainability": Bad(
        edits=((HIGH_RISK, "required: true", "required: false"),),
        at=(HIGH_RISK, "explainability:", "explainability"),
        expected="""\
error[E811]: a high-risk model needs explainability
  --> @AT@ (governance.explainability)
   |     explainability: {required: false, method: permutation_importance}
   = governance.risk_tier is high (@TIER@)
   = help: set explainability.required: true""",
    ),
    "E812-high-risk-single-approval": Bad(
        edits=((HIGH_RISK, "approvals_required: 2", "approvals_required: 1"),),
        at=(HIGH_RISK, "approvals_required: 1", "1"),
        expected="""\
error[E812]: a high-risk model needs at least two approvers
  --> @AT@ (governance.approvals_required)
   |     approvals_required: 1
   = governance.risk_tier is high (@TIER@); approvers: 2, approvals_required: 1
   = help: list two approvers and set approvals_required: 2""",
    ),
    "E813-high-risk-without-audit-log": Bad(
        edits=((STRICT, "audit_log: {enabled: true, retention_days: 2555}", "audit_log: {enabled: false}"),),
        at=(STRICT, "audit_log:", "audit_log"),
        expected="""\
error[E813]: a high-risk model needs an audit log
  --> @AT@ (security.audit_log)
   |     audit_log: {enabled: false}
   = governance.risk_tier is high (@TIER@)
   = help: set security.audit_log.enabled: true""",
    ),
    "E814-high-risk-without-sensitive-columns": Bad(
        spec="flight_delays",
        overrides=("governance.risk_tier=high",),
        at=(SPEC, "  columns:", "columns"),
        expected="""\
error[E814]: a high-risk model needs its sensitive columns declared
  --> @AT@ (data.columns)
   |     columns:
   = governance.risk_tier is high (command-line override 'governance.risk_tier=high') and no column has \
sensitive: true""",
    ),
    "E815-approvals": Bad(
        edits=((HIGH_RISK, "approvals_required: 2", "approvals_required: 3"),),
        at=(HIGH_RISK, "approvals_required: 3", "3"),
        expected="""\
error[E815]: more approvals required than there are approvers
  --> @AT@ (governance.approvals_required)
   |     approvals_required: 3
   = approvals_required is 3; governance.approvers lists 2""",
    ),
    # ------------------------------------------------------------------ prompt specs (kind: prompt, docs/genai.md)
    "E401-prompt-file-outside-the-spec-folder": Bad(
        spec="support_triage",
        edits=((SPEC, 'template: prompts/triage.j2', 'template: ../credit_risk/prompt.j2'),),
        at=(SPEC, 'template: ../credit_risk', '../'),
        expected="""\
error[E401]: the prompt template lies outside the spec folder
  --> @AT@ (prompts.triage.template)
   |     template: ../credit_risk/prompt.j2
   = '../credit_risk/prompt.j2' resolves to '@TMP@/specs/credit_risk/prompt.j2' (links followed)
   = help: keep prompt files in the spec folder, e.g. prompts/<name>.j2""",
    ),
    "E402-prompt-file-missing": Bad(
        spec="support_triage",
        edits=((SPEC, 'template: prompts/triage.j2', 'template: prompts/triag.j2'),),
        at=(SPEC, 'template: prompts/triag.j2', 'prompts'),
        expected="""\
error[E402]: the prompt template does not exist
  --> @AT@ (prompts.triage.template)
   |     template: prompts/triag.j2
   = 'prompts/triag.j2' is not a file in specs/support_triage
   = help: did you mean 'triage.j2'?""",
    ),
    "E403-template-syntax": Bad(
        spec="support_triage",
        edits=((TRI, 'Message ({{ channel }}): {{ message }}', 'Message ({{ channel }): {{ message }}'),),
        at=(TRI, 'Message ({{ channel }):'),
        expected="""\
error[E403]: template syntax error: unexpected '}'
  --> @AT@
   |     Message ({{ channel }): {{ message }}
   = help: fix the Jinja2 syntax at this line""",
    ),
    "E404-undeclared-template-variable": Bad(
        spec="support_triage",
        edits=((TRI, '): {{ message }}', '): {{ mesage }}'),),
        at=(TRI, '{{ mesage }}'),
        expected="""\
error[E404]: the template uses an undeclared variable 'mesage'
  --> @AT@
   |     Message ({{ channel }}): {{ mesage }}
   = prompts.triage.variables declares: message, channel
   = help: did you mean 'message'?""",
    ),
    "W405-unused-variable": Bad(
        spec="support_triage",
        edits=((SPEC, '      channel: {dtype: category', '      locale: {dtype: str, nullable: true}\n      channel: {dtype: category'),),
        at=(SPEC, 'locale: {dtype', 'locale'),
        expected="""\
warning[W405]: the variable 'locale' is not used by the template
  --> @AT@ (prompts.triage.variables.locale)
   |     locale: {dtype: str, nullable: true}
   = 'prompts/triage.j2' never reads 'locale'
   = help: remove it, or use it in the template: {{ locale }}""",
    ),
    "E406-sandbox-unsafe-construct": Bad(
        spec="support_triage",
        edits=((TRI, 'Message ({{ channel }})', 'Message ({{ channel.__class__ }})'),),
        at=(TRI, 'channel.__class__'),
        expected="""\
error[E406]: the template uses a construct the sandbox refuses
  --> @AT@
   |     Message ({{ channel.__class__ }}): {{ message }}
   = the attribute '.__class__'
   = help: templates only print their variables; remove it""",
    ),
    "E407-unknown-guardrail": Bad(
        spec="support_triage",
        edits=((SPEC, '- {type: length, max_chars: 1000}', '- {type: lenght, max_chars: 1000}'),),
        at=(SPEC, 'type: lenght', 'lenght'),
        expected="""\
error[E407]: unknown input guardrail 'lenght'
  --> @AT@ (prompts.triage.guardrails.input[2].type)
   |     - {type: lenght, max_chars: 1000}
   = an input guardrail is one of 'pii', 'deny', 'allow', 'length'. Got 'lenght' instead.
   = help: did you mean 'length'?""",
    ),
    "E408-bad-regex": Bad(
        spec="support_triage",
        edits=((SPEC, "'(?i)password", "'(?i)pass(word"),),
        at=(SPEC, 'pass(word', "'(?i)pass(word"),
        expected="""\
error[E408]: a regular expression does not compile
  --> @AT@ (prompts.triage.guardrails.output[1].patterns[0])
   |     - {type: deny, patterns: ['(?i)pass(word\\s*[:=]']}   # a leaked credential, not the word alone
   = '(?i)pass(word\\\\s*[:=]': missing ), unterminated subpattern at position 8
   = help: fix the pattern (Python re syntax); escape a literal character with a backslash""",
    ),
    "E409-invalid-json-schema": Bad(
        spec="support_triage",
        edits=((SCH, '"type": "object"', '"type": "objekt"'),),
        at=(SPEC, 'schema: prompts/triage.schema.json', 'prompts'),
        expected="""\
error[E409]: the output schema is not a valid JSON Schema
  --> @AT@ (prompts.triage.output.schema)
   |     schema: prompts/triage.schema.json
   = 'prompts/triage.schema.json' at type: 'objekt' is not valid under any of the given schemas
   = help: fix it against JSON Schema draft 2020-12""",
    ),
    "E410-provider-not-named-by-environment-variable": Bad(
        spec="support_triage",
        edits=((SPEC, 'base_url_env: AIOPS_LLM_BASE_URL', 'base_url_env: http://127.0.0.1:8080/v1'),),
        at=(SPEC, 'base_url_env: http', 'http'),
        expected="""\
error[E410]: provider.base_url_env must name an environment variable
  --> @AT@ (provider.base_url_env)
   |     base_url_env: http://127.0.0.1:8080/v1
   = 'provider.base_url_env' is the NAME of a variable that holds the base URL, matching [A-Z_][A-Z0-9_]*. Got 'http://127.0.0.1:8080/v1' instead.
   = help: export the URL in a variable and name it here, e.g. base_url_env: AIOPS_LLM_BASE_URL""",
    ),
    "E411-credential-in-the-spec": Bad(
        spec="support_triage",
        edits=((SPEC, 'parameters: {temperature: 0,', 'parameters: {api_key: sk-123, temperature: 0,'),),
        at=(SPEC, 'api_key: sk-123', 'api_key'),
        expected="""\
error[E411]: a provider credential is written in the spec
  --> @AT@ (provider.parameters.api_key)
   |     parameters: {api_key: sk-123, temperature: 0, seed: 7, max_tokens: 40, stop: ["\\n"]}
   = 'provider.parameters.api_key' would be committed with the spec and copied into the artefacts
   = help: remove it; put the token in an environment variable named by provider.api_key_env""",
    ),
    "E412-golden-case-not-json": Bad(
        spec="support_triage",
        edits=((GOLD, '"id": "ship-cost", ', '"id": "ship-cost" '),),
        at=(GOLD, '"ship-cost"'),
        expected="""\
error[E412]: a golden case is not JSON
  --> @AT@
   |     {"id": "ship-cost" "variables": {"message": "How much does delivery to Norway cost?", "channel": "chat"}, "assert": [{"type": "json_schema"}, {"type": "json_field", "path": "category", "equals": "shipping"}, {"type": "json_field", "path": "order", "equals": null}]}
   = Expecting ',' delimiter: line 1 column 20 (char 19)
   = help: write one JSON object per line: {"id": ..., "variables": {...}, "assert": [...]}""",
    ),
    "E413-golden-case-unknown-variable": Bad(
        spec="support_triage",
        edits=((GOLD, 'Norway cost?", "channel": "chat"', 'Norway cost?", "chanel": "chat"'),),
        at=(GOLD, '"ship-cost"'),
        expected="""\
error[E413]: golden case 'ship-cost' sets an undeclared variable 'chanel'
  --> @AT@ (ship-cost)
   |     {"id": "ship-cost", "variables": {"message": "How much does delivery to Norway cost?", "chanel": "chat"}, "assert": [{"type": "json_schema"}, {"type": "json_field", "path": "category", "equals": "shipping"}, {"type": "json_field", "path": "order", "equals": null}]}
   = prompts.triage.variables declares: message, channel
   = help: did you mean 'channel'?""",
    ),
    "E414-golden-case-missing-variable": Bad(
        spec="support_triage",
        edits=((GOLD, 'Norway cost?", "channel": "chat"}', 'Norway cost?"}'),),
        at=(GOLD, '"ship-cost"'),
        expected="""\
error[E414]: golden case 'ship-cost' does not set the variable 'channel'
  --> @AT@ (ship-cost)
   |     {"id": "ship-cost", "variables": {"message": "How much does delivery to Norway cost?"}, "assert": [{"type": "json_schema"}, {"type": "json_field", "path": "category", "equals": "shipping"}, {"type": "json_field", "path": "order", "equals": null}]}
   = 'channel' is required (category, not nullable)
   = help: add "channel": ... to its variables""",
    ),
    "E415-golden-case-breaks-the-contract": Bad(
        spec="support_triage",
        edits=((GOLD, 'Norway cost?", "channel": "chat"}', 'Norway cost?", "channel": "fax"}'),),
        at=(GOLD, '"ship-cost"'),
        expected="""\
error[E415]: golden case 'ship-cost': the variable 'channel' breaks its contract
  --> @AT@ (ship-cost)
   |     {"id": "ship-cost", "variables": {"message": "How much does delivery to Norway cost?", "channel": "fax"}, "assert": [{"type": "json_schema"}, {"type": "json_field", "path": "category", "equals": "shipping"}, {"type": "json_field", "path": "order", "equals": null}]}
   = not_in_set: 'channel' must be one of chat, email, phone
   = help: fix the value, or the checks of prompts.triage.variables.channel""",
    ),
    "E416-unknown-assertion": Bad(
        spec="support_triage",
        edits=((GOLD, '{"type": "max_tokens", "value": 40}', '{"type": "max_tokns", "value": 40}'),),
        at=(GOLD, '"acct-delete"'),
        expected="""\
error[E416]: golden case 'acct-delete': unknown assertion type "max_tokns"
  --> @AT@ (acct-delete)
   |     {"id": "acct-delete", "variables": {"message": "Please delete my account and all my data.", "channel": "email"}, "assert": [{"type": "json_schema"}, {"type": "json_field", "path": "category", "equals": "account"}, {"type": "json_field", "path": "order", "equals": null}, {"type": "max_tokns", "value": 40}]}
   = assert[3].type is one of 'equals', 'contains', 'regex', 'json_schema', 'json_field', 'similar', 'max_latency_ms', 'max_tokens', 'rubric'
   = help: did you mean 'max_tokens'?""",
    ),
    "E417-json-output-without-schema": Bad(
        spec="support_triage",
        edits=((SPEC, '    output:\n      format: json\n      prefill: \'{"topic": "\'\n      schema: prompts/triage.schema.json\n', '    output: {format: json}\n'),),
        at=(SPEC, 'output: {format: json}', 'output'),
        expected="""\
error[E417]: a JSON output needs a schema
  --> @AT@ (prompts.triage.output)
   |     output: {format: json}
   = prompts.triage.output.format is json
   = help: add output.schema: prompts/<name>.schema.json (a JSON Schema)""",
    ),
    "E418-unknown-gate": Bad(
        spec="support_triage",
        edits=((SPEC, 'json_valid_rate: {min: 0.9}', 'json_valid: {min: 0.9}'),),
        at=(SPEC, 'json_valid: {min', 'json_valid'),
        expected="""\
error[E418]: unknown evaluation gate 'json_valid'
  --> @AT@ (prompts.triage.evaluation.gates.json_valid)
   |     json_valid: {min: 0.9}
   = a prompt gate is one of 'pass_rate', 'json_valid_rate'. Got 'json_valid' instead.
   = help: did you mean 'json_valid_rate'?""",
    ),
    "W418-no-gate": Bad(
        spec="support_triage",
        edits=((SPEC, '      gates:\n        pass_rate: {min: 0.5}\n        json_valid_rate: {min: 0.9}\n', '      gates: {}\n'),),
        at=(SPEC, 'gates: {}', 'gates'),
        expected="""\
warning[W418]: the prompt has no evaluation gate: it will not be blessed
  --> @AT@ (prompts.triage.evaluation.gates)
   |     gates: {}
   = help: add e.g. gates: {pass_rate: {min: 0.8}, json_valid_rate: {min: 0.95}}""",
    ),
    "E419-guardrail-without-its-setting": Bad(
        spec="support_triage",
        edits=((SPEC, '- {type: length, max_chars: 1000}', '- {type: length}'),),
        at=(SPEC, '- {type: length}', '{'),
        expected="""\
error[E419]: the length guardrail needs 'max_chars'
  --> @AT@ (prompts.triage.guardrails.input[2])
   |     - {type: length}
   = help: e.g. {type: length, max_chars: 1000}""",
    ),
    "E420-prompt-name-not-an-identifier": Bad(
        spec="support_triage",
        edits=((SPEC, '  triage:\n    description: Few-shot', '  Triage:\n    description: Few-shot'),),
        at=(SPEC, '  Triage:', 'Triage'),
        expected="""\
error[E420]: a prompt name is not an identifier
  --> @AT@ (prompts.Triage)
   |     Triage:
   = prompt names become URL paths and folders: they must match [a-z][a-z0-9_]{0,63}. Got 'Triage' instead.
   = help: e.g. triage""",
    ),
    "E421-high-risk-prompt": Bad(
        spec="support_triage",
        edits=((PGOV, 'risk_tier: limited', 'risk_tier: high'),),
        at=(PGOV, 'risk_tier: high', 'high'),
        expected="""\
error[E421]: the prompt spec kind does not support governance.risk_tier: high
  --> @AT@ (governance.risk_tier)
   |     risk_tier: high
   = a high-risk system needs controls (fairness bounds, explanations, sign-off on each output) that aiops does not enforce for prompts
   = help: use risk_tier: limited (a person reviews every output) or minimal""",
    ),
    # security.masking of a prompt spec: the codes of tabular specs, for variables (compiler/rules_prompt.py)
    "E801-masking-undeclared-variable": Bad(
        spec="support_triage",
        edits=((PSEC, "  message: {method: redact}", "  mesage: {method: hash}"),),
        at=(PSEC, "mesage: {method: hash}", "mesage"),
        expected="""\
error[E801]: security.masking refers to an undeclared variable
  --> @AT@ (security.masking.mesage)
   |     mesage: {method: hash}
   = 'mesage' is not a variable of any prompt (prompts.triage.variables: message, channel)
   = an entry masks the variable of its name in every prompt: this one masks nothing
   = help: did you mean 'message'?""",
    ),
    "E802-pii-variable-without-masking": Bad(
        spec="support_triage",
        edits=((PSEC, "masking:\n  message: {method: redact}\n", "masking: {}\n"),),
        at=(SPEC, "message: {dtype: str, pii: true", "true"),
        expected="""\
error[E802]: a PII variable has no masking method
  --> @AT@ (prompts.triage.variables.message.pii)
   |     message: {dtype: str, pii: true, checks: {str_length: {min: 1, max: 1000}},
   = 'message' is flagged pii in prompts.triage.variables but security.masking does not name it
   = help: add security.masking.message: {method: redact} (hash, redact or generalize): the runtime would \
redact it without one, but, as for a PII column, the policy must name the method it applies""",
    ),
    "W804-masking-non-pii-variable": Bad(
        spec="support_triage",
        edits=((PSEC, "  message: {method: redact}", "  message: {method: redact}\n  channel: {method: hash}"),),
        at=(PSEC, "channel: {method: hash}", "channel"),
        expected="""\
warning[W804]: masking is set for a variable that is not flagged pii
  --> @AT@ (security.masking.channel)
   |     channel: {method: hash}
   = 'channel' has pii: false in prompts.triage.variables
   = only pii variables are masked whole by their method: this method is not applied, the value is logged with \
PII spans (e-mails, phone numbers, cards, IBANs) masked
   = help: set pii: true on prompts.triage.variables.channel, or remove security.masking.channel""",
    ),
    "E806-prompt-role-grants-nothing": Bad(  # the data-free security rules are shared with tabular specs
        spec="support_triage",
        edits=((PSEC, "  agent: [generate, metadata]", "  agent: []"),),
        at=(PSEC, "agent: []", "[]"),
        expected="""\
error[E806]: a role grants no permission
  --> @AT@ (security.roles.agent)
   |     agent: []
   = role 'agent' is empty""",
    ),

}


def _prepare(case: Bad, spec_copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = spec_copy(case.spec)
    if case.delete:
        (spec.dir / case.delete).unlink()
    for file, old, new in case.edits:
        spec.replace(file, old, new)
    if case.link is not None:
        (spec.dir / case.link[0]).symlink_to(case.link[1])
    if case.onnx_probe_fails is not None:
        monkeypatch.setenv("AIOPS_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setattr(estimators, "_probe_now", lambda name: (False, case.onnx_probe_fails))
    return spec


def _expected(case: Bad, spec) -> str:
    text = case.expected
    if case.at is not None:
        text = text.replace("@AT@", spec.where(*case.at))
    if "@COLUMNS@" in text:
        text = text.replace("@COLUMNS@", spec.where(SPEC, "  columns:", "columns"))
    if "@KAO@" in text:
        text = text.replace("@KAO@", spec.where(SPEC, "known_after_outcome: true", "true"))
    if "@TIER@" in text:
        text = text.replace("@TIER@", spec.where(HIGH_RISK, "risk_tier:", "high"))
    if "@VERSIONS@" in text:
        v = estimators.versions()
        text = text.replace("@VERSIONS@", f"scikit-learn {v['scikit-learn']}, skl2onnx {v['skl2onnx']}, "
                                          f"onnx {v['onnx']}, protobuf {v['protobuf']}")
    text = text.replace("@DIR@", str(spec.dir.resolve()))
    text = text.replace("@TMP@", str(spec.dir.parent.parent.resolve()))
    text = text.replace("@UP@", str(spec.dir.parent.parent.parent.resolve()))
    text = text.replace("@UP2@", str(spec.dir.parent.parent.parent.parent.resolve()))
    assert not re.search(r"@[A-Z]+@", text), f"a marker is left in {text}"
    return text


@pytest.mark.parametrize("case", [pytest.param(c, id=i) for i, c in CASES.items()])
def test_bad_spec(case: Bad, spec_copy, tmp_path, monkeypatch):
    spec = _prepare(case, spec_copy, tmp_path, monkeypatch)
    text, ok = run_check(case.target or spec.rel, list(case.overrides))
    expected = _expected(case, spec)
    assert expected in text, f"expected:\n{expected}\n\ngot:\n{text}"
    is_warning = expected.startswith("warning[")
    # a warning alone does not fail the check; every error does, with the tail line
    assert ok is is_warning
    if not is_warning:
        assert re.search(r"^error: \d+ errors?(, \d+ warnings?)?; nothing was written\.$", text, re.M), text


# the modules of `aiops check` (compile-time codes such as E9xx live elsewhere)
CHECK_MODULES = ("load.py", "guard.py", "rules_inputs.py", "structure.py", "rules_data.py", "rules_sample.py",
                 "rules_contract.py", "rules_model.py", "rules_groups.py", "rules_policy.py", "context.py", "diagnostics.py",
                 "check.py", "rules_prompt.py")
CHECK_MODULES += ("rules_prompt_monitoring.py",)


def _codes_in_compiler() -> set[str]:
    codes: set[str] = set()
    for path in (COMPILER / m for m in CHECK_MODULES):
        codes |= set(re.findall(r"\"([EW]\d{3})\"", path.read_text(encoding="utf-8")))
    return codes


def test_catalog_covers_every_code():
    """Every diagnostic code `aiops check` can emit has a bad-spec case above."""
    covered = {i.split("-")[0] for i in CASES}
    assert _codes_in_compiler() - covered == set()
    assert covered - _codes_in_compiler() == set(), "a case names a code the compiler does not have"


def test_several_mistakes_in_several_files_are_reported_at_once(spec_copy):
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "method: stratified", "method: stratifed")  # E103
    spec.replace(SPEC, "source: duration_in_month, scale", "source: duration_in_mnth, scale")  # E310
    spec.replace(LOGISTIC, "C: 0.5", "C: -1")  # E505
    spec.replace(HIGH_RISK, "approvals_required: 2", "approvals_required: 3")  # E815
    spec.replace(STRICT, "admin: [admin]", "admin: []")  # E806
    text, ok = run_check(spec.rel, ["thresholds.evaluation.roc_auc.min=1.8"])  # E603

    assert ok is False
    lines = text.splitlines()
    heads = [(lines[i].split("]")[0], lines[i + 1]) for i, ln in enumerate(lines) if ln.startswith("error[")]
    assert heads == [  # sorted by file, then line; command-line overrides last
        ("error[E815", f"  --> {spec.where(HIGH_RISK, 'approvals_required:', '3')} (governance.approvals_required)"),
        ("error[E505", f"  --> {spec.where(LOGISTIC, 'C: -1', '-1')} (model.params.C)"),
        ("error[E806", f"  --> {spec.where(STRICT, 'admin: []', '[]')} (security.roles.admin)"),
        ("error[E103", f"  --> {spec.where(SPEC, 'method: stratifed', 'stratifed')} (data.split.method)"),
        ("error[E310", f"  --> {spec.where(SPEC, 'duration_in_mnth', 'duration_in_mnth')} (features[1].source)"),
        ("error[E603", "  --> command-line override 'thresholds.evaluation.roc_auc.min=1.8' "
                       "(thresholds.evaluation.roc_auc.min)"),
    ]
    assert lines[-1] == "error: 6 errors; nothing was written."


def test_yaml_errors_in_several_files_are_reported_at_once(spec_copy):
    spec = spec_copy("credit_risk")
    spec.replace(LOGISTIC, "C: 0.5", "C: [0.5")
    spec.replace(STRICT, "admin: [admin]", "admin: [admin")
    text, ok = run_check(spec.rel, [])
    assert ok is False
    assert f"error[E002]: YAML syntax error: expected ',' or ']', but got ':'\n  --> {spec.rel}/{LOGISTIC}:4:" in text
    assert f"error[E002]: YAML syntax error: expected ',' or ']', but got ':'\n  --> {spec.rel}/{STRICT}:9:" in text
    assert text.index(LOGISTIC) < text.index(STRICT)
    assert text.splitlines()[-1] == "error: 2 errors; nothing was written."
