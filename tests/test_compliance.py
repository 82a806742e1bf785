"""The compliance document: every required section, numbers equal to the evidence, the
regulation mapping, deterministic charts and documents, and a clear error when a section the
regulations need would be empty."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiops.compiler import compliance as C
from aiops.compiler.build import BuildFailed, compile_spec
from tests._build import BUILD_ROOT, ROOT, build

CHARTS = ("roc", "calibration", "confusion_matrix", "slices", "fairness", "importance")
DOCUMENT = ("compliance.md", "compliance.html", *(f"evidence/charts/{c}.svg" for c in CHARTS))


def _plan(spec: str, *overrides: str):
    """The plan of a bundled spec, without training (for the document writer alone)."""
    from aiops.compiler.check import check
    from aiops.compiler.plan import build_plan

    loaded, typed, diags = check(str(ROOT / "specs" / spec), list(overrides))
    assert not [d.render() for d in diags if d.is_error]
    return build_plan(loaded, typed, str((loaded.spec_dir / typed.data.source).resolve()))


def _evidence(art: Path, name: str):
    return json.loads((art / "evidence" / name).read_text())


@pytest.fixture(scope="module")
def art() -> Path:
    return build("credit_risk")


@pytest.fixture(scope="module")
def md(art: Path) -> str:
    return (art / "compliance.md").read_text()


@pytest.fixture(scope="module")
def html(art: Path) -> str:
    return (art / "compliance.html").read_text()


def test_every_required_section_is_in_both_documents(md: str, html: str):
    for title in C.TITLES.values():
        assert f"\n## {title}\n" in md, title
        assert f'<section id="{C.anchor(title)}">\n<h2>{title}</h2>' in html, title
    for sub in ("KPIs", "Intended use", "Out-of-scope use", "Provenance", "Data contract", "Parameters",
                "Assumptions", "Gate", "Metrics by group", "Limitations", "Ethical considerations", "Roles",
                "Drift rules", "Actions", "This build", "Earlier changes"):
        assert f"\n### {sub}\n" in md, sub


def test_regulation_mapping_table(md: str):
    rows = [ln for ln in md.splitlines() if ln.startswith(("| EU AI Act |", "| NIST AI RMF |", "| SR 11-7 |"))]
    assert len(rows) == len(C.MAPPING) == 19
    for (framework, _, item, sections), row in zip(C.MAPPING, rows):
        links = ", ".join(f"[{C.TITLES[s]}](#{C.anchor(C.TITLES[s])})" for s in sections)
        assert row == f"| {framework} | {item} | {links} | yes |"
    for item in ("Annex IV(1)", "Annex IV(2)", "Annex IV(3)", "Annex IV(4)", "Annex IV(5)", "Annex IV(6)",
                 "Annex IV(7)", "Annex IV(9)", "| GOVERN |", "| MAP |", "| MEASURE |", "| MANAGE |", "| Purpose |",
                 "| Data |", "| Assumptions |", "| Limitations |", "| Validation |", "| Ongoing monitoring |",
                 "| Governance |"):
        assert item in md, item


def test_blessing_status_is_on_the_first_screen(md: str, art: Path):
    blessing = _evidence(art, "blessing.json")
    assert blessing["blessed"]
    first = md.splitlines()[:12]
    assert "> BLESSED: all 15 thresholds passed; serve and score accept this model." in first
    assert f"| Model sha256 | `{blessing['model_sha256']}` | [`evidence/blessing.json`](evidence/blessing.json) |" in md


def test_numbers_equal_the_evidence(md: str, art: Path):
    ev = _evidence(art, "evaluation.json")
    assert f"roc_auc {ev['metrics']['roc_auc']:.4f} on {ev['rows']} rows" in md
    for t in ev["thresholds"]:
        ci = t.get("interval_95")  # metrics and slice groups carry their bootstrap interval
        value = t["value_text"] + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "")
        assert f"| {t['kind']} | {t['name']} | {value} | {t['bound_text']} | pass |" in md, t["name"]
    slices = [t for t in ev["thresholds"] if t["kind"] == "slice"]
    assert slices and all(t["interval_95"][0] <= t["value"] <= t["interval_95"][1] for t in slices)
    for f in ev["fairness"]:
        for group, g in f["groups"].items():
            row = f"| {group} | {g['rows']} | {g['positives']} | {g['selection_rate']:.4f} | {g['tpr']:.4f} | yes |"
            assert row in md, row
    data = _evidence(art, "data.json")
    assert f"| sha256 | `{data['sha256']}` | [`evidence/data.json`](evidence/data.json) |" in md
    assert (f"rows in {data['rows_in']} = accepted {data['accepted']} + quarantined {data['quarantined']} (holds)"
            in md)
    top = _evidence(art, "importance.json")["features"][0]
    assert f"| 1 | `{top['name']}` | {top['mean']:.4f} | {top['std']:.4f} |" in md
    par = _evidence(art, "parity.json")
    assert f"| holdout | {par['holdout']['rows']} | probabilities | max abs diff " \
           f"{par['holdout']['probabilities']['max_abs_diff']:.4g} | 0.0001 | pass |" in md


def test_claims_name_their_spec_keys(md: str):
    for line in ("| Risk tier | high | `governance.risk_tier` |",
                 "| Approvals required | 2 | `governance.approvals_required` |",
                 "| Review cadence | every 90 days | `governance.review_cadence_days` |",
                 "| Audit log | enabled, kept 2555 days; enforced by aiops serve: entries chained by HMAC-SHA256 "
                 "under the deployment's log key, Ed25519-signed checkpoints, older segments expired as a "
                 "checkpointed event (runtime/audit/chain.py, tests/test_audit_log.py); the server refuses to start "
                 "without the keys and refuses predictions while the log cannot be written | `security.audit_log` |",
                 "| `personal_status_and_sex` | yes | yes | hash | no | no "
                 "| `security.masking.personal_status_and_sex` |",
                 "| Schedule (cron) | `0 6 * * 1` | `monitoring.schedule` |",
                 "| `C` | `0.5` | `model.params.C` |",
                 "| ks | numeric | p-value below 0.01 | all | `monitoring.drift[1]` |"):
        assert line in md, line
    assert "This is the first build of spec hash " in md


def test_charts_exist_are_inlined_and_carry_no_date(art: Path, html: str):
    for name in CHARTS:
        svg = (art / "evidence" / "charts" / f"{name}.svg").read_text()
        assert svg.startswith("<?xml") and "</svg>" in svg
        assert "<dc:date>" not in svg and not re.search(r"\b(19|20)\d\d-\d\d-\d\d", svg), name
        assert f'<figure id="chart-{name}">\n<svg ' in html
        assert f'id="{name}-figure_1"' in html
    assert "<?xml" not in html and "<metadata>" not in html
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_history_file_fills_the_change_history(art: Path, tmp_path: Path):
    stage = shutil.copytree(art, tmp_path / "art")
    (stage / "evidence" / "history.json").write_text(json.dumps([  # as aiops retrain writes it
        {"event": "promoted", "from_model_sha256": "a" * 64, "to_model_sha256": "b" * 64,
         "reason": "the challenger beats the champion", "holdout": {"split": "time", "from": "2013-07-01", "rows": 42},
         "data": {"source": "window.parquet", "sha256": "c" * 64},
         "metrics": {"primary": "roc_auc", "higher_is_better": True, "margin": 0.01, "improvement": 0.03,
                     "champion": {"roc_auc": 0.68651}, "challenger": {"roc_auc": 0.71649},
                     "challenger_gate_passed": True}},
        {"event": "manual", "reason": "hand-written", "metrics": {"roc_auc": 0.77123}}]))
    C.write_compliance(_plan("credit_risk"), stage)
    md = (stage / "compliance.md").read_text()
    assert ("| 1 | promoted | `aaaaaaaaaaaa` | `bbbbbbbbbbbb` | the challenger beats the champion "
            "| champion -> challenger: roc_auc 0.6865 -> 0.7165; primary roc_auc; margin 0.01; challenger gate passed "
            "| window.parquet (sha256 cccccccccccc), holdout from 2013-07-01, 42 holdout rows |") in md
    assert "| 2 | manual | `-` | `-` | hand-written | roc_auc 0.7712 | - |" in md
    assert "first build" not in md


def test_spec_text_is_escaped_in_html(art: Path, tmp_path: Path):
    stage = shutil.copytree(art, tmp_path / "art")
    C.write_compliance(_plan("credit_risk", "governance.limitations=['see <script>x</script> | here']"), stage)
    assert "<li>see &lt;script&gt;x&lt;/script&gt; | here</li>" in (stage / "compliance.html").read_text()
    assert "- see \\<script>x\\</script> \\| here\n" in (stage / "compliance.md").read_text()


def test_recompile_is_byte_identical_across_hash_seeds(art: Path, tmp_path: Path):
    """Two more compiles, in subprocesses with different PYTHONHASHSEED, into other folders."""
    procs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "aiops.compiler.cli", "compile", "specs/credit_risk", "--out", str(tmp_path / seed),
               "--quiet"]  # in the build's folder: the registry stays out of the repository
        procs.append(subprocess.Popen(cmd, cwd=BUILD_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    for rel in DOCUMENT:
        want = (art / rel).read_bytes()
        assert (tmp_path / "1" / rel).read_bytes() == want, rel
        assert (tmp_path / "4242" / rel).read_bytes() == want, rel


def test_empty_intended_use_fails_the_compile(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(BuildFailed) as e:
        compile_spec(str(ROOT / "specs" / "credit_risk"), ["governance.intended_use=[]"], out=str(out), quiet=True)
    assert e.value.code == 2
    lines = e.value.text.splitlines()
    assert lines[0] == ("error[E905]: the compliance document would have 1 empty required section: "
                        "'Intended and out-of-scope use'")
    assert lines[2] == ("   = 'governance.intended_use' fills the section 'Intended and out-of-scope use' and "
                        "must give at least one intended use. Got [] instead (set in the command-line override "
                        "'governance.intended_use=[]').")
    assert re.match(re.escape("   = help: set governance.intended_use: [") + ".+", lines[3])
    assert lines[-1] == "error: 1 error; nothing was written."
    assert not out.exists()


def test_every_empty_section_is_named_once():
    plan = _plan("credit_risk", "kpis=[]", "governance.ethical_considerations=[]", "governance.limitations=[]",
                 "~thresholds.evaluation")
    missing = C.missing_sections(plan)
    assert [(m.section, m.key) for m in missing] == [
        ("Problem and KPIs", "kpis"),
        ("Evaluation against thresholds", "thresholds.evaluation"),
        ("Limitations and ethical considerations", "governance.limitations"),
        ("Limitations and ethical considerations", "governance.ethical_considerations"),
    ]
    err = C.missing_error(plan, missing)
    assert err.summary == ("the compliance document would have 4 empty required sections: 'Problem and KPIs', "
                           "'Evaluation against thresholds', 'Limitations and ethical considerations'")
    assert err.notes[1] == ("'thresholds.evaluation' fills the section 'Evaluation against thresholds' and must give "
                            "at least one holdout metric with a bound, since thresholds.slices or "
                            "thresholds.fairness is set. Got {} instead (set in the command-line override "
                            "'~thresholds.evaluation').")


def test_sensitive_column_without_fairness_bound_is_missing():
    plan = _plan("flight_delays", "+data.columns.origin.sensitive=true")
    (m,) = C.missing_sections(plan)
    assert (m.section, m.key) == ("Fairness", "thresholds.fairness")
    note = C.missing_error(plan, [m]).notes[0]
    assert note == ("'thresholds.fairness' fills the section 'Fairness' and must give a bound per sensitive column "
                    f"(origin). Got [] instead (set in {plan.spec_dir}/spec.yaml).")


def test_every_enforcement_claim_names_code_and_a_test_that_exist():
    """Claims match enforcement: each control the compliance document calls enforced names a
    module that exists and a test function that exists; the rest say 'declared, not enforced'."""
    import re

    from aiops.compiler.compliance.enforcement import CONTROLS, DECLARED, GENAI_CONTROLS

    for c in CONTROLS + GENAI_CONTROLS:
        if c.status == DECLARED:
            assert not c.test, c.name
            continue
        for path in re.findall(r"[\w/]+\.py", c.code):
            assert (ROOT / path).is_file(), (c.name, path)
        file, _, name = c.test.partition("::")
        assert re.search(rf"^def {re.escape(name)}\(", (ROOT / file).read_text(), re.M), (c.name, c.test)
    assert {c.status for c in CONTROLS} == {"enforced", DECLARED}


def test_the_document_says_which_controls_are_enforced_and_which_are_declared(md: str):
    from aiops.compiler.compliance.enforcement import DECLARED

    assert "| Control | Status | Enforced by | Test | Source |" in md
    assert ("| Request timeout | enforced | runtime/serve/server.py (App deadlines): 504 after serving.timeout_s | "
            "`tests/test_serve_limits.py::test_serving_timeout_s_answers_504` | `serving.timeout_s` |") in md
    assert f"| Review cadence | {DECLARED} | no command reminds or refuses when a review is overdue | - |" in md
