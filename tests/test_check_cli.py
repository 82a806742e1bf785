"""`aiops check` end to end: the bundled examples, composition and overrides, the real
console script on bad input, and a fuzz test over mutated copies of a spec."""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiops.compiler.check import run_check
from aiops.compiler.cli import main

REPO = Path(__file__).resolve().parent.parent
AIOPS = shutil.which("aiops", path=str(Path(sys.executable).parent)) or shutil.which("aiops")

CREDIT_RISK_SUMMARY = [
    "ok: credit_risk 1.0.0 (specs/credit_risk; env=local, governance=high_risk, model=logistic, security=strict)",
    "  task       binary_classification: predict creditability = 'bad'",
    "  data       data/german_credit.csv: 21 columns in the contract (1 pii, 3 sensitive), split stratified, "
    "max rejected 2.0%",
    "  features   19 model features, 2 dropped (clip, log, onehot, passthrough, ratio, scale)",
    "  model      LogisticRegression(C=0.5, max_iter=2000, class_weight=balanced) exportable to ONNX",
    "  gates      roc_auc >= 0.74, average_precision >= 0.5, brier <= 0.2, accuracy >= 0.7; 2 slice, "
    "3 fairness bounds",
    "  monitoring '0 6 * * 1', 4 drift rules, window rows:250",
    "  serving    http, batch, async; max 1000 records/request",
    "  policy     risk tier high, 2 of 2 approvals, audit log on, encryption at rest on, 4 roles",
]
FLIGHT_DELAYS_SUMMARY = [
    "ok: flight_delays 1.0.0 (specs/flight_delays; env=local, governance=limited_risk, model=gradient_boosting, "
    "security=internal)",
    "  task       binary_classification: predict arr_delayed = 1",
    "  data       data/flights_2013.parquet: 15 columns in the contract (0 pii, 0 sensitive), split time, "
    "max rejected 1.0%",
    "  features   12 model features, 2 dropped (bucketize, clip, date_part, impute, log, onehot)",
    "  model      HistGradientBoostingClassifier(max_iter=200, learning_rate=0.08, max_leaf_nodes=31, "
    "l2_regularization=1.0, early_stopping=False, random_state=13) exportable to ONNX",
    "  gates      roc_auc >= 0.62, brier <= 0.25; 1 slice, 0 fairness bounds",
    "  monitoring '0 5 * * *', 2 drift rules, window time:month",
    "  serving    http, batch, async; max 1000 records/request",
    "  policy     risk tier limited, 1 of 1 approvals, audit log on, encryption at rest off, 2 roles",
]
HASH_LINE = re.compile(r"^  spec hash  ([0-9a-f]{16})$", re.M)


def aiops(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed console script, as a user would."""
    assert AIOPS, "the aiops console script is not installed (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "AIOPS_DEBUG"}
    return subprocess.run([AIOPS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def spec_hash(text: str) -> str:
    m = HASH_LINE.search(text)
    assert m, text
    return m.group(1)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


# ---------------------------------------------------------------- the bundled examples pass
@pytest.mark.parametrize("name, summary", [("credit_risk", CREDIT_RISK_SUMMARY),
                                           ("flight_delays", FLIGHT_DELAYS_SUMMARY)])
def test_bundled_example_passes(name, summary):
    res = aiops("check", f"specs/{name}", cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    lines = res.stdout.splitlines()
    assert lines[0] == summary[0]
    assert HASH_LINE.match(lines[1]), lines[1]
    assert lines[2:] == summary[1:]


def test_check_is_deterministic_and_in_process_matches_cli(in_repo, capsys):
    assert main(["check", "specs/credit_risk"]) == 0
    first = capsys.readouterr()
    assert first.err == ""
    text, ok = run_check("specs/credit_risk", [])
    assert ok and first.out == text + "\n"
    assert run_check("specs/credit_risk", []) == (text, True)


# ---------------------------------------------------------------- composition and overrides
def test_group_override_selects_another_model(in_repo):
    base, _ = run_check("specs/credit_risk", [])
    text, ok = run_check("specs/credit_risk", ["model=random_forest"])
    assert ok, text
    assert text.splitlines()[0] == ("ok: credit_risk 1.0.0 (specs/credit_risk; env=local, governance=high_risk, "
                                    "model=random_forest, security=strict)")
    assert ("  model      RandomForestClassifier(n_estimators=300, max_depth=8, min_samples_leaf=5, "
            "class_weight=balanced, random_state=7, n_jobs=1) exportable to ONNX") in text.splitlines()
    assert spec_hash(text) != spec_hash(base)
    # everything that does not come from the model group is unchanged
    same = [ln for ln in base.splitlines() if not ln.startswith(("ok:", "  spec hash", "  model"))]
    assert same == [ln for ln in text.splitlines() if not ln.startswith(("ok:", "  spec hash", "  model"))]


def test_group_override_of_security_changes_the_policy(in_repo):
    text, ok = run_check("specs/credit_risk", ["security=basic", "governance.risk_tier=limited"])
    assert ok, text
    assert "  policy     risk tier limited, 2 of 2 approvals, audit log on, encryption at rest off, 1 role" in text


def test_value_override_changes_the_spec_hash_and_only_what_it_sets(in_repo):
    base, _ = run_check("specs/credit_risk", [])
    text, ok = run_check("specs/credit_risk", ["thresholds.evaluation.roc_auc.min=0.8"])
    assert ok, text
    assert spec_hash(text) != spec_hash(base)
    assert "  gates      roc_auc >= 0.8, average_precision >= 0.5, brier <= 0.2, accuracy >= 0.7; 2 slice, " \
           "3 fairness bounds" in text.splitlines()
    changed = [a[:11] for a, b in zip(base.splitlines(), text.splitlines()) if a != b]
    assert changed == ["  spec hash", "  gates    "]


def test_overriding_a_value_with_itself_keeps_the_spec_hash(in_repo):
    base, _ = run_check("specs/credit_risk", [])
    text, ok = run_check("specs/credit_risk", ["model.params.C=0.5", "env=local"])
    assert ok, text
    assert spec_hash(text) == spec_hash(base)


def test_list_item_override_by_index(in_repo):
    text, ok = run_check("specs/credit_risk", ["features.3.source=credit_histor"])
    assert not ok
    assert """\
error[E310]: feature refers to an undeclared column
  --> command-line override 'features.3.source=credit_histor' (features[3].source)
   = 'credit_histor' is not a column of data.columns (specs/credit_risk/spec.yaml:53:3)
   = help: did you mean 'credit_history'?""" in text


def test_error_caused_by_an_override_names_the_override(in_repo):
    text, ok = run_check("specs/credit_risk", ["model.params.C=-1", "thresholds.evaluation.roc_auc.min=1.8"])
    assert not ok
    assert text == """\
error[E505]: invalid estimator parameter value
  --> command-line override 'model.params.C=-1' (model.params.C)
   = The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 instead.
error[E603]: threshold for 'roc_auc' is out of range
  --> command-line override 'thresholds.evaluation.roc_auc.min=1.8' (thresholds.evaluation.roc_auc.min)
   = 'roc_auc' takes values in [0.0, 1.0]. Got min: 1.8 instead.
error: 2 errors; nothing was written."""


def test_composition_error_is_blamed_on_the_override_that_causes_it(in_repo):
    # `data` is a folder of the spec, so Hydra takes it for a config group
    text, ok = run_check("specs/credit_risk", ["name=other", "data=5"])
    assert not ok
    assert """\
error[E004]: the spec cannot be composed with these overrides
  --> command-line override 'data=5'
   = Config group override must be a string or a list. Got int""" in text


# ---------------------------------------------------------------- the console script on bad input
def _assert_user_error(res: subprocess.CompletedProcess, expected: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    assert "internal error" not in res.stderr
    assert res.stdout == ""
    assert expected in res.stderr, res.stderr
    assert res.stderr.rstrip("\n").splitlines()[-1] == "error: 1 error; nothing was written."


def test_cli_missing_folder(spec_copy, tmp_path):
    spec_copy("credit_risk")
    res = aiops("check", "specs/credit_rsk", cwd=tmp_path)
    _assert_user_error(res, """\
error[E001]: spec folder not found
  --> specs/credit_rsk
   = 'specs/credit_rsk' is not a folder
   = help: did you mean 'specs/credit_risk'?""")


def test_cli_yaml_syntax_error(spec_copy, tmp_path):
    spec = spec_copy("credit_risk")
    spec.replace("governance/high_risk.yaml", "risk_tier: high", "risk_tier: 'high")
    res = aiops("check", spec.rel, cwd=tmp_path)
    _assert_user_error(res, "error[E002]: YAML syntax error: ")
    assert "  --> specs/credit_risk/governance/high_risk.yaml:" in res.stderr


def test_cli_unknown_group_option(spec_copy, tmp_path):
    spec = spec_copy("credit_risk")
    res = aiops("check", spec.rel, "model=random_forrest", cwd=tmp_path)
    _assert_user_error(res, """\
error[E003]: unknown option 'random_forrest' for config group 'model'
  --> command-line override 'model=random_forrest' (defaults.model)
   = 'model/random_forrest.yaml' does not exist in specs/credit_risk
   = available options in 'model': gradient_boosting, logistic, random_forest
   = help: did you mean 'random_forest'?""")


def test_cli_bad_override(spec_copy, tmp_path):
    spec = spec_copy("credit_risk")
    res = aiops("check", spec.rel, "thresholds.evaluation.roc_auc.min=[0.8", cwd=tmp_path)
    _assert_user_error(res, """\
error[E004]: a command-line override cannot be parsed
  --> command-line override 'thresholds.evaluation.roc_auc.min=[0.8'""")
    assert not (tmp_path / ".aiops").exists()  # no crash log either


def test_cli_prompt_masking_key_that_names_no_variable_is_refused(spec_copy, tmp_path):
    """A typo in security.masking of a prompt spec masks nothing: the console script refuses it (exit 2)."""
    spec = spec_copy("support_triage")
    spec.replace("security/internal.yaml", "  message: {method: redact}", "  mesage: {method: hash}")
    res = aiops("check", spec.rel, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr, (res.stdout, res.stderr)
    assert f"""\
error[E801]: security.masking refers to an undeclared variable
  --> {spec.where("security/internal.yaml", "mesage:", "mesage")} (security.masking.mesage)
   |     mesage: {{method: hash}}
   = 'mesage' is not a variable of any prompt (prompts.triage.variables: message, channel)
   = an entry masks the variable of its name in every prompt: this one masks nothing
   = help: did you mean 'message'?""" in res.stderr, res.stderr
    assert "error[E802]: a PII variable has no masking method" in res.stderr  # 'message' itself is now unnamed
    assert res.stderr.rstrip("\n").splitlines()[-1] == "error: 2 errors; nothing was written."


# ---------------------------------------------------------------- fuzz: mutated copies of a spec
ORIGINAL = yaml.safe_load((REPO / "specs" / "credit_risk" / "spec.yaml").read_text(encoding="utf-8"))


def _walk(node, prefix=()):
    """(path, value) of every mapping key and list item."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield prefix + (k,), v
        yield from _walk(v, prefix + (k,))


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "1e9", "drop", "date", "category", "${name}", "${nosuch}", "[", "{}"]),
)
KEY_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
MUTATION = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), SCALARS),
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("rename"), st.integers(0, 10**6), KEY_NAMES),
    st.tuples(st.just("typo"), st.integers(0, 10**6), st.integers(0, 40)),
)


def mutate(doc, mutation):
    op, i = mutation[0], mutation[1]
    if op == "set":
        targets = [p for p, v in _walk(doc) if not isinstance(v, (dict, list))]
    elif op == "delete":
        targets = [p for p, _ in _walk(doc)]
    else:
        targets = [p for p, _ in _walk(doc) if isinstance(p[-1], str)]
    if not targets:
        return
    path = targets[i % len(targets)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "set":
        parent[key] = mutation[2]
    elif op == "delete":
        del parent[key]
    else:  # rename, keeping the value: a new name, or the old one with a letter dropped
        new = mutation[2] if op == "rename" else key[: mutation[2] % len(key)] + key[mutation[2] % len(key) + 1:]
        parent[new or "_"] = parent.pop(key)


@pytest.mark.filterwarnings("ignore:In 'spec'.*Defaults list is missing:UserWarning")  # a deleted '_self_'
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzz_mutated_spec_never_crashes_and_every_error_is_located(spec_copy, mutations):
    spec = spec_copy("credit_risk")  # the same copy for every example; spec.yaml is rewritten whole
    doc = copy.deepcopy(ORIGINAL)
    for m in mutations:
        mutate(doc, m)
    (spec.dir / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")

    text, ok = run_check(spec.rel, [])  # must not raise
    lines = text.splitlines()
    if ok:
        assert any(ln.startswith("ok: ") for ln in lines), text
        return
    heads = [i for i, ln in enumerate(lines) if ln.startswith("error[")]
    assert heads, text
    # every error says where: a file (and line) of the spec, or a command-line override
    for i in heads:
        assert lines[i + 1].startswith("  --> "), text
        assert not lines[i + 1].startswith("  --> <spec>"), text
    assert re.fullmatch(r"error: \d+ errors?(, \d+ warnings?)?; nothing was written\.", lines[-1]), text
