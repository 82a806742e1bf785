"""A spec is untrusted input (issue 10, docs/security.md).

Each reproduction of the issue plants its payload and looks for the effect: a marker file,
a canary secret in the output, a folder written or deleted outside its place, a hang. Each
now answers exit 2 with a clear error, or (for text that is allowed) stays text.
"""
from __future__ import annotations

import ast
import io
import json
import os
import shlex
import shutil
import tempfile
import time
import tokenize
from pathlib import Path

import pytest
import yaml

from aiops.compiler import escape
from aiops.compiler.cli import main
from aiops.compiler.outdir import MARK, OutputError, clean_interrupted, clean_stale_staging, output_dir, replace, staging
from aiops.compiler.render import UnsafeOutput, check_python, environment

REPO = Path(__file__).resolve().parent.parent
SPEC = "spec.yaml"
RUN_PY = "__import__('os').system('touch PWNED')"
PAYLOAD = f"\"\"\"'\n{RUN_PY} #\n$(touch PWNED) `touch PWNED`; touch PWNED % \\ \u2028{{{{ x }}}}"


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def no_marker(root: Path) -> None:
    assert not list(root.rglob("PWNED")) and not Path("PWNED").exists()


def yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


# ---------------------------------------------------------------- 1. code execution at compile time
def test_code_in_version_is_refused_before_anything_runs(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "version: 1.0.0", "version: " + yaml_str('1.0.0"""\nimport os; os.system(\'touch pwned\')\n"""'))
    rc, text = run(capsys, "compile", spec.rel, "--out", "out/credit_risk", "--quiet")
    assert rc == 2
    assert "error[E105]: the spec version is not a semantic version" in text
    assert "Got '1.0.0\"\"\"\\nimport os; os.system(\\'touch pwned\\')\\n\"\"\"' instead." in text
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_code_in_name_is_refused(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "name: credit_risk", "name: " + yaml_str('x"""\nimport os; os.system(\'touch pwned\')\n"""'))
    rc, text = run(capsys, "compile", spec.rel, "--quiet")
    assert rc == 2
    assert "error[E104]: the spec name is not an identifier" in text
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "generated").exists()


def test_newline_in_the_spec_folder_name_is_refused(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    evil = tmp_path / "specs" / "cr\nimport os; os.system('touch pwned')\n"
    spec.dir.rename(evil)
    rc, text = run(capsys, "check", str(evil.relative_to(tmp_path)))
    assert rc == 2
    assert text.startswith("error[E016]: the spec folder's path holds characters a spec may not use\n"
                           "  --> specs/cr\\nimport os; os.system('touch pwned')\\n\n"
                           "   = it holds a control character (a newline, tab or escape)\n")
    assert not (tmp_path / "pwned").exists()


def test_newline_in_an_override_is_refused(spec_copy, capsys):
    spec = spec_copy("credit_risk")
    rc, text = run(capsys, "check", spec.rel, "description='x\"\"\"\nimport os'")
    assert rc == 2
    assert "error[E016]: a command-line override holds characters a spec may not use" in text


# ---------------------------------------------------------------- 2. shell injection in scheduling files
def test_shell_in_name_is_refused(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "name: credit_risk", 'name: "cr$(touch x)"')
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2
    assert "Got 'cr$(touch x)' instead." in text


def test_crontab_and_workflow_quote_every_value():
    assert escape.crontab("generated/a b%c") == "'generated/a b\\%c'"
    assert escape.sh("$(touch x)") == "'$(touch x)'"
    assert escape.yaml_scalar("0 6 * * 1", quoted=True) == '"0 6 * * 1"'
    for hostile in ("a: b #c", "x\ny: 1", "'\"", "\u2028- z", "*alias", "{a: 1}"):
        assert yaml.safe_load("k: " + escape.yaml_scalar(hostile)) == {"k": hostile}
        assert "\n" not in escape.yaml_scalar(hostile)
    with pytest.raises(escape.EscapeError, match=r"not a cron schedule: '\* \* \* \* \* touch x'"):
        escape.cron("* * * * * touch x")
    with pytest.raises(escape.EscapeError, match="not an identifier"):
        escape.ident("AIOPS_X$(touch y)")


# ---------------------------------------------------------------- 3. the name is not a path
def test_name_that_climbs_out_of_generated_is_refused(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    spec.replace(SPEC, "name: credit_risk", "name: ../victim")
    rc, text = run(capsys, "compile", spec.rel, "--quiet")
    assert rc == 2 and "error[E104]" in text
    assert (victim / "keep.txt").read_text() == "mine" and sorted(p.name for p in victim.iterdir()) == ["keep.txt"]


def test_empty_name_cannot_replace_generated(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    other = tmp_path / "generated" / "other_model"
    other.mkdir(parents=True)
    (other / "manifest.json").write_text('{"name": "other_model"}')
    spec.replace(SPEC, "name: credit_risk", 'name: ""')
    rc, text = run(capsys, "compile", spec.rel, "--quiet")
    assert rc == 2 and "error[E104]: the spec name is not an identifier" in text
    assert (other / "manifest.json").is_file()


def test_a_spec_file_cannot_send_the_registry_or_quarantine_elsewhere(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    spec.replace("env/local.yaml", "registry: .aiops/registry.db", "registry: /tmp/elsewhere/registry.db")
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2 and "error[E214]: env.registry leaves the working folder" in text
    # whoever runs aiops may choose another place on the command line
    rc, text = run(capsys, "check", spec.rel, f"env.registry={tmp_path.parent / 'registry.db'}")
    assert rc == 0, text


def test_output_folder_is_proven_inside_its_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert output_dir("credit_risk", None) == Path("generated/credit_risk")
    with pytest.raises(OutputError, match=r"the output folder 'generated/\.\.' \(spec name '\.\.'\) is not a plain"):
        output_dir("..", None)
    with pytest.raises(OutputError, match="is not a plain folder name"):
        output_dir("", None)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match=r"does not lie inside 'generated'"):
        output_dir("linked", None)
    # the staging copy: every path is proven inside the staging folder
    from aiops.compiler.outdir import inside

    assert inside(tmp_path / "stage" / "credit_risk", tmp_path / "stage") == tmp_path / "stage" / "credit_risk"
    with pytest.raises(OutputError, match="does not lie inside"):
        inside(tmp_path / "stage" / ".." / "victim", tmp_path / "stage")


def test_compile_never_deletes_a_folder_it_did_not_create(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "manifest.json").write_text('{"name": "credit_risk"}')
    theirs = tmp_path / "out" / "credit_risk"
    theirs.mkdir(parents=True)
    (theirs / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError) as exc:
        replace(stage, theirs)
    assert str(exc.value) == (f"error: refusing to replace '{theirs}': it is not a folder aiops wrote for "
                              "'credit_risk' (no manifest.json of 'credit_risk')\n"
                              "   = help: move it away, or choose another --out")
    assert (theirs / "thesis.tex").read_text() == "mine"
    # a folder of another model is not ours either
    (theirs / "thesis.tex").unlink()
    (theirs / "manifest.json").write_text('{"name": "flight_delays"}')
    with pytest.raises(OutputError):
        replace(stage, theirs)
    # ours is replaced whole
    (theirs / "manifest.json").write_text('{"name": "credit_risk"}')
    (theirs / "old.txt").write_text("x")
    replace(stage, theirs)
    assert sorted(p.name for p in theirs.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in theirs.parent.iterdir()) == ["credit_risk"]


# ---------------------------------------------------------------- 4. secrets stay out
def test_env_resolver_is_refused_and_the_secret_not_read(spec_copy, capsys, monkeypatch):
    monkeypatch.setenv("AIOPS_SIGNING_KEY", "canary-7f3a")
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "description: Probability", "description: key=${oc.env:AIOPS_SIGNING_KEY} Probability")
    rc, text = run(capsys, "compile", spec.rel, "--out", "out/credit_risk", "--quiet")
    assert rc == 2
    assert f"error[E010]: a spec value may not call the resolver 'oc.env'\n  --> {spec.where(SPEC, 'key=', 'key=')} " \
           "(description)" in text
    assert "canary-7f3a" not in text and not Path("out").exists()
    rc, text = run(capsys, "check", spec_copy("flight_delays").rel, "description=${oc.env:AIOPS_SIGNING_KEY}")
    assert rc == 2 and "error[E010]" in text and "canary-7f3a" not in text


def test_no_resolver_is_registered_while_a_spec_resolves(monkeypatch):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from aiops.compiler.load import _resolve_without_resolvers

    monkeypatch.setenv("AIOPS_DATA_KEY", "canary-91c2")
    for value in ("${oc.env:AIOPS_DATA_KEY}", "${oc.decode:'${oc.env:AIOPS_DATA_KEY}'}", "${now:%Y}"):
        with pytest.raises(OmegaConfBaseException):
            _resolve_without_resolvers(OmegaConf.create({"a": value}))
    assert _resolve_without_resolvers(OmegaConf.create({"a": 1, "b": "${a}"})) == {"a": 1, "b": 1}
    assert OmegaConf.has_resolver("oc.env")  # restored for everyone else


# ---------------------------------------------------------------- 5. bounded parsing
def _timed_check(capsys, folder: str, *overrides: str) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    rc, text = run(capsys, "check", folder, *overrides)
    return rc, text, time.perf_counter() - t0


def test_alias_bomb_is_refused_quickly(spec_copy, capsys):
    spec = spec_copy("credit_risk")
    bomb = "bomb:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 6))  # 10^6 leaves
    spec.replace(SPEC, "name: credit_risk\n", "name: credit_risk\n" + bomb)
    rc, text, took = _timed_check(capsys, spec.rel)
    assert rc == 2 and "error[E013]: the YAML expands to too many values" in text and took < 2.0


def test_fifty_megabyte_spec_is_refused_quickly(spec_copy, capsys):
    spec = spec_copy("credit_risk")
    with open(spec.dir / SPEC, "a", encoding="utf-8") as f:
        f.write("# " + "x" * 50_000_000 + "\n")
    rc, text, took = _timed_check(capsys, spec.rel)
    assert rc == 2 and took < 2.0
    assert "error[E012]: the spec folder is too large\n  --> specs/credit_risk\n" \
           "   = its YAML files hold 50,00" in text


def test_deep_nesting_is_refused_quickly(spec_copy, capsys):
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "name: credit_risk\n", "name: credit_risk\ndeep: " + "[" * 300 + "]" * 300 + "\n")
    rc, text, took = _timed_check(capsys, spec.rel)
    assert rc == 2 and "error[E014]: the YAML nests too deep" in text and took < 2.0
    rc, text, took = _timed_check(capsys, spec_copy("flight_delays").rel, "model.params.C=" + "[" * 300 + "]" * 300)
    assert rc == 2 and "error[E014]: the override nests too deep" in text and took < 2.0


def test_source_map_is_linear_in_the_document():
    from aiops.compiler.load import SourceMap, _walk_yaml

    n = 5_000  # a list of n lists: the old walk rescanned every position for each of them
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    first = yaml.compose("items: [" + ", ".join(["[1]"] * n) + "]", Loader=loader)
    second = yaml.compose("items: [" + ", ".join(["[2]"] * n) + "]", Loader=loader)
    sm = SourceMap()
    t0 = time.perf_counter()
    _walk_yaml(first, (), "a.yaml", sm)
    _walk_yaml(second, (), "b.yaml", sm)  # replaces the list whole
    assert time.perf_counter() - t0 < 1.0
    assert len(sm.positions) == 2 * n + 1 and sm.positions[("items", n - 1, 0)].file == "b.yaml"


# ---------------------------------------------------------------- 6. reaching outside the spec
def test_data_source_outside_the_spec_folder_is_refused(spec_copy, capsys, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("password,token\nhunter2,abc\n")
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, "source: data/german_credit.csv", f"source: {secret}")
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2 and "error[E212]: the data source lies outside the spec folder" in text
    assert "password" not in text and "hunter2" not in text


def test_a_link_out_of_the_spec_folder_is_not_followed(spec_copy, capsys, tmp_path):
    spec = spec_copy("credit_risk")
    outside = tmp_path / "shared" / "german_credit.csv"
    outside.parent.mkdir()
    shutil.move(spec.dir / "data" / "german_credit.csv", outside)
    (spec.dir / "data" / "german_credit.csv").symlink_to(outside)
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2
    assert f"   = 'data/german_credit.csv' resolves to '{outside}' (links followed); data roots declared by env: none" \
        in text
    # the env group declares the folder a data root: now the link is followed
    rc, text = run(capsys, "check", spec.rel, f"+env.data_roots=[{outside.parent}]")
    assert rc == 0, text


def test_hydra_settings_are_refused(spec_copy, capsys):
    spec = spec_copy("credit_risk")
    rc, text = run(capsys, "check", spec.rel, "hydra.searchpath=[file:///etc]")
    assert rc == 2 and "error[E011]: a spec may not configure Hydra\n  --> command-line override " \
                       "'hydra.searchpath=[file:///etc]' (hydra.searchpath)" in text
    spec.replace(SPEC, "  - _self_\n", "  - override hydra/launcher: basic\n  - _self_\n")
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2 and "the defaults entry 'override hydra/launcher' selects a Hydra config" in text
    other = spec_copy("flight_delays")
    (other.dir / "model" / "logistic.yaml").write_text("# @package _global_\nhydra: {searchpath: [file:///etc]}\n")
    rc, text = run(capsys, "check", other.rel)
    assert rc == 2 and "'@package _global_' would set keys outside this file's group" in text


def test_config_group_options_stay_in_the_folder(spec_copy, capsys, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.yaml").write_text("estimator: LogisticRegression\nparams: {C: 1.0}\ndescription: from outside\n")
    spec = spec_copy("credit_risk")
    rc, text = run(capsys, "check", spec.rel, "model=../../outside/evil")
    assert rc == 2 and text.startswith(
        "error[E003]: config group 'model' takes an option of its own folder\n"
        "  --> command-line override 'model=../../outside/evil' (model)\n"
        "   = '../../outside/evil' is not a file name in the folder 'model' (letters, digits, '_' and '-')\n")
    spec.replace(SPEC, "  - model: logistic", "  - model: ../../outside/evil")
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2 and "error[E003]: a defaults entry reaches outside the spec folder" in text


def test_interrupted_compiles_are_cleaned_and_never_taken_for_output(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "out" / "credit_risk"
    half_new = out.with_name("credit_risk.new")  # killed while copying
    half_new.mkdir(parents=True)
    (half_new / MARK).write_text("")
    (half_new / "model.onnx").write_bytes(b"half")
    old = out.with_name("credit_risk.old")  # killed before the old output was deleted
    old.mkdir()
    (old / "manifest.json").write_text('{"name": "credit_risk"}')
    theirs = out.with_name("credit_risk.new.bak")
    theirs.mkdir()
    clean_interrupted(out, "credit_risk")
    assert sorted(p.name for p in out.parent.iterdir()) == ["credit_risk.new.bak"]
    # a staging folder whose build was killed (its lock is free) goes; a running build's stays
    dead = Path(tempfile.mkdtemp(prefix="aiops-build-"))
    (dead / ".lock").write_text("")
    os.utime(dead / ".lock", (time.time() - 3600, time.time() - 3600))
    (dead / "credit_risk").mkdir()
    with staging() as live:
        os.utime(live / ".lock", (time.time() - 3600, time.time() - 3600))
        assert not dead.exists()
        assert clean_stale_staging() == [] and live.is_dir()
    assert not live.exists()


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule, note", [
    ("1-5/2,70 * * * *", "the minute field '1-5/2,70' is not valid: it takes 0-59"),
    ("*/0 * * * *", "the minute field '*/0' is not valid: it takes 0-59"),
    ("0 6 * * 1 ; touch x", "a cron schedule has 5 fields (minute hour day month weekday) separated by single "
                            "spaces; got 8"),
    ("@reboot", "'@reboot' is not a cron macro"),
])
def test_bad_cron_schedules_are_refused(spec_copy, capsys, schedule, note):
    spec = spec_copy("credit_risk")
    spec.replace(SPEC, 'schedule: "0 6 * * 1"', f"schedule: {yaml_str(schedule)}")
    rc, text = run(capsys, "check", spec.rel)
    assert rc == 2 and "error[E701]: invalid cron schedule" in text and f"   = {note}" in text


def test_valid_cron_schedules_are_accepted_and_quoted():
    from aiops.compiler.rules_policy import cron_problem

    for ok in ("0 6 * * MON", "0 6 * JAN *", "@daily", "*/15 8-18 * * 1-5"):
        assert cron_problem(ok) is None, ok
    env = environment()
    tpl = env.from_string("- cron: {{ s | cron_fields | yaml(quoted=true) }}\n{{ s | cron }} job")
    assert tpl.render(s="@daily") == '- cron: "0 0 * * *"\n@daily job'
    assert tpl.render(s="0 6 * * MON") == '- cron: "0 6 * * MON"\n0 6 * * MON job'


# ---------------------------------------------------------------- generated code cannot be steered by text
def test_a_template_that_forgets_to_escape_fails():
    env = environment()
    with pytest.raises(escape.EscapeError, match=r"a code template prints 'x' without an escaping filter"):
        env.from_string("NAME = {{ name }}").render(name="x")
    assert env.from_string("NAME = {{ name | py }}  # {{ name | comment }}").render(name="a\nb") == \
        "NAME = 'a\\nb'  # a\\nb"


@pytest.mark.parametrize("text, why", [
    ('"""doc"""\nimport os\n', "'import os'"),
    ('X = __import__("os").system("touch PWNED")\n', "the name '__import__' is neither imported nor defined"),
    ('from aiops.runtime.features import FeatureStep\nX = FeatureStep.__init__\n', "the private attribute '__init__'"),
    ('from subprocess import run\n', "an import from 'subprocess'"),
    ('X = 1\nprint(X)\n', "a Expr statement"),
])
def test_generated_python_of_the_wrong_shape_is_refused(text, why):
    with pytest.raises(UnsafeOutput, match=__import__("re").escape(why)):
        check_python(text, "pipeline/x.py")


def code_shape(text: str) -> list[str]:
    """The token stream without strings and comments: what text in a spec may not change."""
    return [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type not in (tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)]


def _strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)] + [k for k in obj if isinstance(k, str)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def assert_text_stayed_text(files: dict[str, str], benign: dict[str, str]) -> None:
    for rel, text in files.items():
        if rel.endswith(".py"):
            check_python(text, rel)
            assert code_shape(text) == code_shape(benign[rel]), rel
            for node in ast.walk(ast.parse(text)):  # no payload became a name or a call
                assert not (isinstance(node, ast.Name) and node.id in ("__import__", "os", "exec", "eval"))
        elif rel.endswith(".yml"):
            doc, ref = yaml.safe_load(text), yaml.safe_load(benign[rel])
            assert doc.keys() == ref.keys() and doc["jobs"].keys() == ref["jobs"].keys()
            for job in ref["jobs"]:
                assert [s["name"] for s in doc["jobs"][job]["steps"] if "name" in s] == \
                    [s["name"] for s in ref["jobs"][job]["steps"] if "name" in s]
                assert [sorted(s) for s in doc["jobs"][job]["steps"]] == [sorted(s) for s in ref["jobs"][job]["steps"]]
        elif rel.endswith("crontab"):
            lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
            ref = [ln for ln in benign[rel].splitlines() if not ln.startswith("#")]
            assert len(lines) == len(ref) == 1
            assert len(text.splitlines()) == len(benign[rel].splitlines())


# ---------------------------------------------------------------- property: hostile text in every string field
FREE_TEXT = {"description", "statement", "decision", "business_outcome", "definition", "owner", "unit", "origin",
             "license", "derived_by", "reason", "intended_use", "out_of_scope_use", "limitations",
             "ethical_considerations", "approvers"}
HOSTILE = ['"""', "'''", "\\", "\n", "\r", "\u2028", "#", "$(touch PWNED)", "`touch PWNED`", "; touch PWNED",
           "%", "{{ x }}", "${a}", RUN_PY, "\x00", "\t", "*", "&a", ": ", " #", "'", '"']


@pytest.fixture(scope="module")
def benign_plan():
    from aiops.compiler.check import check
    from aiops.compiler.plan import build_plan

    loaded, spec, diags = check(REPO / "specs" / "credit_risk", [])
    assert spec is not None, diags
    return loaded, build_plan(loaded, spec, "specs/credit_risk/data/german_credit.csv")


def _render(plan) -> dict[str, str]:
    from aiops.compiler.monitoring_plan import render_monitoring
    from aiops.compiler.render import render_code

    from aiops.compiler.review_workflow import render_review

    files = render_code(plan)
    files.update(render_monitoring(plan))
    files.update(render_review(plan))
    return files


def _hostile_config(config, payload: str, path=()):
    if isinstance(config, dict):
        return {k: _hostile_config(v, payload, path + (k,)) for k, v in config.items()}
    if isinstance(config, list):
        return [_hostile_config(v, payload, path) for v in config]
    last = next((p for p in reversed(path) if isinstance(p, str)), "")
    if isinstance(config, str) and (last in FREE_TEXT or (last == "isin" and "creditability" not in path)):
        return payload + config
    return config


def test_hostile_text_in_every_string_field_stays_text(benign_plan):
    import dataclasses

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from aiops.compiler.plan import build_plan
    from aiops.compiler.validate import validate

    loaded, plan = benign_plan
    benign = _render(plan)
    import aiops.compiler.rules_sample as RS

    sample_check, RS.check_sample = RS.check_sample, lambda ctx: None  # hostile isin values no longer fit the data
    payloads = st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=6).map("".join) | st.text(
        alphabet=st.sampled_from(list("\"'\\\n\r#$`;%{}()[]&*:|<> \u2028ax")), min_size=1, max_size=24)

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(payload=payloads, folder=payloads, override=payloads)
    def prop(payload, folder, override):
        hostile = dataclasses.replace(loaded, config=_hostile_config(loaded.config, payload))
        spec, diags = validate(hostile)
        assert spec is not None, [d.render() for d in diags if d.is_error]
        p = build_plan(hostile, spec, plan.data_source)
        # the folder name and an override reach the headers; the plan is changed directly here,
        # past the checks that refuse control characters, to prove the escaping alone holds
        p = dataclasses.replace(p, spec_dir=f"specs/{folder}", overrides=(f"description={override}",),
                                regenerate=f"aiops compile specs/{folder} description={override}")
        files = _render(p)
        assert_text_stayed_text(files, benign)
        texts = [n.value for n in ast.walk(ast.parse(files["pipeline/schema.py"]))
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert any(payload in t for t in texts)  # the column descriptions kept it, as text
        # name and version too, past E104/E105: either escaped or refused, never code
        for field in ("name", "version"):
            try:
                files = _render(dataclasses.replace(p, **{field: payload}))
            except (escape.EscapeError, UnsafeOutput):
                continue
            assert_text_stayed_text(files, benign)

    try:
        prop()
    finally:
        RS.check_sample = sample_check
    no_marker(Path.cwd())


# ---------------------------------------------------------------- one full compile of a hostile spec
@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "specs" / "cr $(touch PWNED) ';\"x"
    shutil.copytree(REPO / "specs" / "credit_risk", folder)
    text = (folder / SPEC).read_text()
    for line in ("description: Probability that a consumer loan application turns into a bad credit.",
                 "  decision: Route an application to manual review when the predicted probability of bad credit "
                 "is at least 0.5.",
                 "    license: CC BY 4.0"):
        assert text.count(line) == 1
        key, _ = line.split(":", 1)
        text = text.replace(line, f"{key}: {yaml_str(PAYLOAD)}")
    text = text.replace("reason: protected attribute; used only to measure fairness", f"reason: {yaml_str(PAYLOAD)}")
    (folder / SPEC).write_text(text)
    gov = folder / "governance" / "high_risk.yaml"
    gov.write_text(gov.read_text().replace("owner: head-of-credit-risk", f"owner: {yaml_str(PAYLOAD)}"))
    out = root / "out" / "credit_risk"
    out.with_name("credit_risk.new").mkdir(parents=True)
    (out.with_name("credit_risk.new") / MARK).write_text("")
    out.with_name("credit_risk.old").mkdir()
    (out.with_name("credit_risk.old") / "manifest.json").write_text('{"name": "credit_risk"}')
    (root / "out" / "not_ours").mkdir()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        rc = main(["compile", str(folder.relative_to(root)), "problem.business_outcome='$(touch PWNED) \"\\''",
                   "--out", str(out), "--quiet"])
    finally:
        os.chdir(cwd)
    return root, out, rc


def test_a_hostile_spec_compiles_to_text_not_code(hostile_build):
    root, out, rc = hostile_build
    assert rc in (0, 1)  # built (blessed or not); nothing ran
    no_marker(root)
    golden = REPO / "generated" / "credit_risk"
    files = {rel: (out / rel).read_text() for rel in
             ("pipeline/__init__.py", "pipeline/schema.py", "pipeline/features.py", "pipeline/train.py",
              "monitoring/crontab", "monitoring/workflow.yml", "ci/pull-request.yml")}
    assert_text_stayed_text(files, {rel: (golden / rel).read_text() for rel in files})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["dir"] == "specs/cr $(touch PWNED) ';\"x"
    # the pull-request workflow runs the same words: the hostile folder and override stay one word each
    runs = [st.get("run", "") for st in yaml.safe_load(files["ci/pull-request.yml"])["jobs"]["review"]["steps"]]
    assert shlex.split(next(r for r in runs if r.startswith("aiops check "))) == [
        "aiops", "check", manifest["spec"]["dir"], "problem.business_outcome='$(touch PWNED) \"\\''", "--format",
        "github"]
    assert "touch PWNED" in (out / "compliance.md").read_text()  # documented, as text


def test_a_compile_cleans_what_a_killed_one_left_and_keeps_the_rest(hostile_build):
    root, out, _ = hostile_build
    assert sorted(p.name for p in out.parent.iterdir()) == ["credit_risk", "not_ours"]
    assert not list(out.rglob("__pycache__")) and not (out / MARK).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*")
                                               if p.is_file() and p.name not in ("manifest.json", "manifest.sig"))


# ---------------------------------------------------------------- the threat model names real tests
def test_every_line_of_the_threat_model_names_tests_that_exist():
    import re

    doc = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    model = doc.split("## Threat model", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in model.splitlines() if ln.startswith("| ") and not ln.startswith("| who") and "---" not in ln]
    assert len(rows) >= 12
    file = None  # a `::name` continues the file named before it
    for row in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", row)
        assert refs, f"a line of the threat model names no test: {row}"
        for path, name in refs:
            file = path or file
            assert re.search(rf"^(async )?def {name}\(", (REPO / file).read_text(encoding="utf-8"), re.M), \
                f"{file}::{name} is named in docs/security.md but does not exist"
