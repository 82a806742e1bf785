"""Governance as a workflow: approvals, stages, production mode and the registry's event log.

Each refusal is a case of a table and quotes its message. The artefacts are the session's shared
credit_risk build (tests/_build.py), copied; the registry lives in tmp_path.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests._build import ROOT, build

PEOPLE = ("model-risk-management", "chief-credit-officer", "head-of-credit-risk", "ml-engineer")


@pytest.fixture
def gov(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """tmp_path as the working folder (specs/ copied, so a test may change them), keys for PEOPLE in
    a trusted-keys file outside the artefacts, a registry in tmp_path, and the credit_risk build in
    generated/credit_risk registered by ml-engineer."""
    from aiops.runtime.governance.identity import new_seed

    shutil.copytree(ROOT / "specs" / "credit_risk", tmp_path / "specs" / "credit_risk")
    monkeypatch.chdir(tmp_path)
    keys, lines = {}, []
    for who in PEOPLE:
        seed, pub = new_seed()
        keys[who] = seed
        lines.append(f"ed25519 {pub} {who}")
    (tmp_path / "deploy").mkdir()
    test_signer = (ROOT / "tests" / "keys" / "TEST_ONLY_trusted.keys").read_text()  # signs the test builds
    (tmp_path / "deploy" / "trusted_keys").write_text(test_signer + "\n".join(lines) + "\n")
    monkeypatch.setenv("AIOPS_TRUSTED_KEYS", str(tmp_path / "deploy" / "trusted_keys"))
    monkeypatch.setenv("AIOPS_REGISTRY", str(tmp_path / "registry.db"))
    monkeypatch.delenv("AIOPS_KEY_FILE", raising=False)
    art = tmp_path / "generated" / "credit_risk"
    shutil.copytree(build("credit_risk"), art)
    m = json.loads((art / "manifest.json").read_text())
    if m["spec"]["dir"] != "specs/credit_risk":  # compiled from another working folder: name the copy here
        m["spec"]["dir"], m["data"]["source"] = "specs/credit_risk", "specs/credit_risk/data/german_credit.csv"
        (art / "manifest.json").write_text(json.dumps(m))
        _rewrite_manifest(art)

    class G:
        root, folder, key = tmp_path, art, keys

        def act(self, who: str | None) -> None:
            if who is None:
                monkeypatch.delenv("AIOPS_KEY", raising=False)
            else:
                monkeypatch.setenv("AIOPS_KEY", keys[who])

        def register(self, folder: Path, who: str = "ml-engineer") -> str:
            from aiops.compiler.registry import register_build

            self.act(who)
            return register_build("unused.db", Path("generated") / folder.name if folder.parent.name == "generated"
                                  else folder)["run_id"]

    return G()


def _approve(g, who: str | None, ref: str, reason: str = "reviewed the evidence") -> str:
    from aiops.compiler.governance.workflow import GovernanceFailed, approve

    g.act(who)
    try:
        approve(ref, reason)
    except GovernanceFailed as exc:
        return exc.text
    return "approved"


def _promote(g, ref: str, to: str = "production") -> str:
    from aiops.compiler.governance.workflow import GovernanceFailed, promote

    g.act("ml-engineer")
    try:
        out = promote(ref, to)
    except GovernanceFailed as exc:
        return exc.text
    return f"{out['from']} -> {out['to']}"


# ---------------------------------------------------------------- approvals refused
def _self(g, rid):
    import os

    from aiops.runtime.governance.store import Store

    # a run built by model-risk-management: the same artefacts registered in another registry

    os.environ["AIOPS_REGISTRY"] = str(g.root / "other.db")
    rid = g.register(g.folder, who="model-risk-management")
    assert Store(g.root / "other.db").run(rid)["built_by"] == "model-risk-management"
    return "model-risk-management", rid


def _duplicate(g, rid):
    assert _approve(g, "model-risk-management", rid) == "approved"
    return "model-risk-management", rid


def _unlisted(g, rid):
    return "head-of-credit-risk", rid


def _failed_gate(g, rid):
    from aiops.compiler.build import BuildFailed, compile_spec

    g.act("ml-engineer")
    with pytest.raises(BuildFailed):
        compile_spec("specs/credit_risk", ["thresholds.evaluation.roc_auc.min=0.99"], out="generated/strict",
                     quiet=True)
    from aiops.runtime.governance.subject import subject

    return "chief-credit-officer", subject(g.root / "generated" / "strict")["run_id"]


def _stale_spec(g, rid):
    p = g.root / "specs/credit_risk/spec.yaml"
    p.write_text(p.read_text().replace("latency_objective_ms: 10", "latency_objective_ms: 20"))
    return "chief-credit-officer", rid


def _stale_data(g, rid):
    p = g.root / "specs/credit_risk/data/german_credit.csv"
    p.write_text(p.read_text() + p.read_text().splitlines()[1] + "\n")
    return "chief-credit-officer", rid


def _no_key(g, rid):
    import os

    del os.environ["AIOPS_TRUSTED_KEYS"]
    return None, rid


def _untrusted_key(g, rid):
    from aiops.runtime.governance.identity import new_seed

    g.key["stranger"] = new_seed()[0]
    return "stranger", rid


def _tampered_artefacts(g, rid):
    p = g.folder / "evidence" / "evaluation.json"
    p.write_text(p.read_text().replace('"passed": true', '"passed": false', 1))
    return "chief-credit-officer", rid


REFUSALS = [
    ("self-approval", _self, "error: refusing the approval: 'model-risk-management' built run {rid} and cannot "
                             "approve it\n  --> run {rid} (credit_risk 1.0.0)\n   = an approval must come from "
                             "someone other than the run's author"),
    ("duplicate approver", _duplicate, "error: refusing the approval: 'model-risk-management' already approved run "
                                       "{rid}\n  --> run {rid} (credit_risk 1.0.0)\n   = approvals must come from 2 "
                                       "distinct approvers\n   = help: ask another listed approver "
                                       "(chief-credit-officer)"),
    ("unlisted approver", _unlisted, "error: refusing the approval: 'head-of-credit-risk' is not a listed approver\n"
                                     "  --> run {rid} (credit_risk 1.0.0)\n   = governance.approvers: "
                                     "model-risk-management, chief-credit-officer"),
    ("failed gate", _failed_gate, "error: refusing the approval: run {rid} failed its gate\n  --> run {rid} "
                                  "(credit_risk 1.0.0)\n   = failed: roc_auc: >= 0.99\n   = help: a model that failed "
                                  "its gate cannot be approved"),
    ("stale spec", _stale_spec, "error: refusing the approval: run {rid} is stale (the spec or data changed since it "
                                "was built)\n  --> run {rid} (credit_risk 1.0.0)\n   = the spec changed: spec hash now "),
    ("stale data", _stale_data, "error: refusing the approval: run {rid} is stale (the spec or data changed since it "
                                "was built)\n  --> run {rid} (credit_risk 1.0.0)\n   = the data changed: "
                                "specs/credit_risk/data/german_credit.csv has sha256 "),
    ("no key configured", _no_key, "error: no key is configured, so an approval cannot be tied to an identity"),
    ("untrusted key", _untrusted_key, "is not in the trusted-keys file"),
    ("tampered artefacts", _tampered_artefacts, "error: the artefacts of run {rid} do not verify"),
]


@pytest.mark.parametrize("case", [c[0] for c in REFUSALS])
def test_approval_refused(gov, case: str) -> None:
    _, setup, expected = next(c for c in REFUSALS if c[0] == case)
    rid = gov.register(gov.folder)
    who, rid = setup(gov, rid)
    text = _approve(gov, who, rid)
    assert expected.format(rid=rid) in text, text
    assert "Traceback" not in text


def test_approval_refused_on_the_command_line_exits_2(gov, capsys) -> None:
    from aiops.compiler.cli import main

    rid = gov.register(gov.folder)
    gov.act("head-of-credit-risk")
    assert main(["approve", rid, "--reason", "looks fine"]) == 2
    assert "error: refusing the approval: 'head-of-credit-risk' is not a listed approver" in capsys.readouterr().err


# ---------------------------------------------------------------- promotion and production mode
def test_production_needs_enough_distinct_approvals_and_serving_checks_them(gov, capsys) -> None:
    from aiops.compiler.cli import main
    from aiops.runtime.governance.production import GovernanceError, check
    from aiops.runtime.governance.store import Store

    rid = gov.register(gov.folder)
    assert _promote(gov, rid) == (
        f"error: refusing to promote run {rid} to production: it has 0 valid approval(s) of 2 required\n"
        f"  --> run {rid} (credit_risk 1.0.0, candidate)\n"
        "   = counted: none; approvers: model-risk-management, chief-credit-officer\n"
        "   = help: each listed approver other than the author runs 'aiops approve RUN --reason TEXT'")
    assert _approve(gov, "model-risk-management", rid) == "approved"
    assert _promote(gov, rid).startswith(f"error: refusing to promote run {rid} to production: it has 1 valid "
                                         "approval(s) of 2 required")
    with pytest.raises(GovernanceError, match="has no production model named credit_risk"):
        check(gov.folder)
    assert _approve(gov, "chief-credit-officer", "generated/credit_risk") == "approved"  # by folder
    assert _promote(gov, rid) == "candidate -> production"
    assert sorted(check(gov.folder).approvers) == ["chief-credit-officer", "model-risk-management"]
    names = sorted(p.name for p in (gov.folder / "approvals").iterdir())
    assert names == [f"{rid}-chief-credit-officer.json", f"{rid}-model-risk-management.json"]
    main(["verify", "generated/credit_risk"])  # approvals/ are not manifest files
    assert "no extra files" in capsys.readouterr().out

    # a changed approval no longer counts: production mode refuses, serve and score exit 2
    p = gov.folder / "approvals" / f"{rid}-chief-credit-officer.json"
    good = p.read_text()
    p.write_text(good.replace("reviewed the evidence", "rubber stamp"))
    with pytest.raises(GovernanceError) as err:
        check(gov.folder)
    assert str(err.value) == (
        f"refusing production mode for '{gov.folder}': run {rid} has 1 valid approval(s) of 2 required "
        f"(model-risk-management)\n  - approvals/{rid}-chief-credit-officer.json: its signature does not verify: "
        "the record was changed after signing")
    assert main(["score", "generated/credit_risk", "specs/credit_risk/data/german_credit.csv", "--output",
                 "out.csv", "--production", "-q"]) == 2
    assert "error: refusing production mode for 'generated/credit_risk'" in capsys.readouterr().err
    assert main(["serve", "generated/credit_risk", "--production"]) == 2
    assert "error: refusing production mode for 'generated/credit_risk'" in capsys.readouterr().err
    # copied from another run's approval: bound to another run id and manifest
    p.write_text(good.replace(rid, "0" * 12))
    with pytest.raises(GovernanceError, match=r"approves run 000000000000, not these artefacts"):
        check(gov.folder)
    p.write_text(good)
    check(gov.folder)

    # an unsigned approval (--insecure-dev, no keys) never counts in production
    shutil.copy(p, gov.root / "keep.json")
    rec = json.loads(good)
    del rec["signature"]
    p.write_text(json.dumps(rec))
    with pytest.raises(GovernanceError, match=r"unsigned \(recorded with --insecure-dev\); production needs"):
        check(gov.folder)
    shutil.copy(gov.root / "keep.json", p)

    # only one production model per name: promoting another archives the first
    other = gov.root / "generated" / "credit_risk_b"
    shutil.copytree(gov.folder, other)
    shutil.rmtree(other / "approvals")
    (other / "evidence" / "history.json").write_text("[]\n")  # a different manifest: another build of the model
    _rewrite_manifest(other)
    rid_b = gov.register(other)
    assert rid_b == rid  # same spec, data and model: the same run id ...
    # ... so the registry keeps one entry for it; the folder that lost it is followed
    assert Store(gov.root / "registry.db").run(rid)["artefact_dir"] == "generated/credit_risk"
    assert _promote(gov, rid, "archived") == "production -> archived"
    assert Store(gov.root / "registry.db").production("credit_risk") is None
    assert _promote(gov, rid, "production").startswith(f"error: run {rid} cannot move from archived to production")


def _rewrite_manifest(folder: Path) -> None:
    """Re-list the files of `folder` in its manifest and sign it again with the TEST ONLY key,
    as a build would (tests/_build.reseal)."""
    from tests._build import reseal

    reseal(folder)


def test_high_risk_production_needs_fairness_and_explanation_evidence(gov) -> None:
    from aiops.runtime.governance.approvals import evidence_problems
    from aiops.runtime.governance.subject import policy

    pol = policy(gov.folder)
    assert pol["risk_tier"] == "high" and evidence_problems(gov.folder, pol) == []
    ev = json.loads((gov.folder / "evidence/evaluation.json").read_text())
    ev["thresholds"] = [t for t in ev["thresholds"] if t["kind"] != "fairness"]
    (gov.folder / "evidence/evaluation.json").write_text(json.dumps(ev))
    (gov.folder / "evidence/importance.json").unlink()
    assert evidence_problems(gov.folder, pol) == [
        "no fairness evidence: evidence/evaluation.json has no fairness threshold (thresholds.fairness)",
        "no explanation evidence: evidence/importance.json is missing or unreadable"]
    assert evidence_problems(gov.folder, {**pol, "risk_tier": "limited"}) == []


# ---------------------------------------------------------------- the registry's event log
def test_registry_is_rebuilt_from_its_hash_chained_events(gov, capsys) -> None:
    from aiops.compiler.cli import main
    from aiops.runtime.governance.store import Store

    rid = gov.register(gov.folder)
    for who in ("model-risk-management", "chief-credit-officer"):
        assert _approve(gov, who, rid) == "approved"
    assert _promote(gov, rid, "staging") == "candidate -> staging"
    assert _promote(gov, rid) == "staging -> production"
    store = Store(gov.root / "registry.db")
    before = store.runs()
    assert [(e.kind, e.actor) for e in store.events()] == [
        ("run.registered", "ml-engineer"), ("approval.recorded", "model-risk-management"),
        ("approval.recorded", "chief-credit-officer"), ("stage.changed", "ml-engineer"),
        ("stage.changed", "ml-engineer")]
    assert store.rebuild() == 5 and store.runs() == before
    assert main(["registry", "verify"]) == 0
    with pytest.raises(sqlite3.DatabaseError, match="the registry event log is append-only"):
        with sqlite3.connect(gov.root / "registry.db") as con:
            con.execute("UPDATE governance_events SET actor = 'someone' WHERE seq = 2")
    with sqlite3.connect(gov.root / "registry.db") as con:  # an attacker with the file drops the trigger
        con.execute("DROP TRIGGER governance_events_no_update")
        con.execute("UPDATE governance_events SET body = replace(body, 'chief-credit-officer', 'intern') "
                    "WHERE seq = 3")
    assert main(["registry", "verify"]) == 1
    assert ("error: event 3 (approval.recorded) does not match its hash: the log was changed at or before it"
            in capsys.readouterr().err)


def test_runs_lists_builds_with_stage_and_compare_and_html(gov, capsys) -> None:
    from aiops.compiler.cli import main

    rid = gov.register(gov.folder)
    assert main(["runs", "credit_risk", "--compare", "--html", "runs.html"]) == 0
    out = capsys.readouterr().out
    assert f"{rid}  credit_risk  compile  candidate  passed  ml-engineer  -" in out
    assert "gate: roc_auc (>= 0.74)" in out.replace("  ", " ") or "gate: roc_auc" in out
    page = (gov.root / "runs.html").read_text()
    assert "<h2>Metric history</h2>" in page and "<h3>roc_auc</h3>" in page and rid in page
    assert main(["runs", "nothing_here"]) == 2
    assert "error: no run of nothing_here in the registry" in capsys.readouterr().err


def test_a_build_that_breaks_its_data_contract_is_kept_in_the_history(gov, capsys) -> None:
    from aiops.compiler.build import BuildFailed, compile_spec
    from aiops.compiler.cli import main
    from aiops.runtime.governance.store import Store

    import pandas as pd

    # the bad rows lie after the 10,000 that `aiops check` samples (E224), so the build finds them
    data = gov.root / "specs/credit_risk/data/german_credit.csv"
    df = pd.concat([pd.read_csv(data, dtype=str, keep_default_na=False)] * 11, ignore_index=True)
    df.loc[len(df) - 300:, "housing"] = "castle"
    df.to_csv(data, index=False)
    gov.act("ml-engineer")
    with pytest.raises(BuildFailed) as err:
        compile_spec("specs/credit_risk", [], out="generated/broken", quiet=True)
    assert err.value.code == 2 and "error[E901]" in err.value.text
    failed = [r for r in Store(gov.root / "registry.db").runs("credit_risk") if r["model_sha256"] is None]
    assert len(failed) == 1
    assert failed[0]["status"].startswith("failed: 300 of 11000 rows (2.7%) break the data contract")
    assert (failed[0]["built_by"], failed[0]["blessed"], failed[0]["artefact_dir"]) == ("ml-engineer", 0, None)
    assert main(["runs", "credit_risk"]) == 0
    assert f"{failed[0]['run_id']}  credit_risk  compile  candidate  failed: 300 of 11000 rows (2.7%) break t" in \
        capsys.readouterr().out
    assert _approve(gov, "chief-credit-officer", failed[0]["run_id"]).startswith(
        f"error: refusing the approval: run {failed[0]['run_id']} failed its gate")


def test_status_is_the_live_governance_report(gov, capsys) -> None:
    from aiops.compiler.cli import main

    rid = gov.register(gov.folder)
    assert _approve(gov, "model-risk-management", rid, reason="checked the slices") == "approved"
    assert main(["status", "generated/credit_risk"]) == 0
    out = capsys.readouterr().out
    assert f"# Governance report: credit_risk 1.0.0, run {rid}" in out
    assert "- stage: **candidate**; built by ml-engineer; parent -; gate passed" in out
    assert ("1 valid of 2 required (model-risk-management); approvers: model-risk-management, chief-credit-officer"
            in out)
    assert "High risk evidence: present and passing" in out
    assert "approval.recorded by model-risk-management: checked the slices" in out
