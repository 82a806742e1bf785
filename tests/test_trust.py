"""Artefact trust anchored outside the artefact, and the blessing as a verdict (issue 11).

Every attack is planted on a copy of a signed high-risk build (specs/credit_risk, signed with the
TEST ONLY key of tests/keys, trusted through AIOPS_TRUSTED_KEYS set in conftest.py) and must be
refused by verify, score, monitor, serve (its startup, `Service`) and retrain.
"""
from __future__ import annotations

import json
import re
import shutil
import stat
from pathlib import Path

import pytest

from aiops.compiler.build import BuildFailed, compile_spec
from aiops.compiler.cli import main
from aiops.runtime.trust import signatures as trust
from aiops.runtime.artefacts import ArtefactError, verify
from tests._build import ROOT, build, reseal

KEYS = ROOT / "tests" / "keys"
TEST_FP = "ed25519:0920dd3ed0ec0268"
CREDIT = ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv"
DATA_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
VERB = {"verify": "trust", "score": "score", "monitor": "monitor", "serve": "serve", "retrain": "retrain from"}


def _serve_env() -> dict[str, str]:
    """What a server needs besides trust: the data key, a masking key, the audit log's keys."""
    import os

    return {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_MASK_SALT": "test-salt-of-at-least-16-characters",
            **{k: os.environ[k] for k in ("AIOPS_LOG_KEY", "AIOPS_LOG_SIGNING_KEY") if k in os.environ}}


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIOPS_DATA_KEY", DATA_KEY)
    monkeypatch.setenv("AIOPS_MASK_SALT", "test-salt-of-at-least-16-characters")
    monkeypatch.setenv("AIOPS_TRUSTED_KEYS", str(KEYS / "TEST_ONLY_trusted.keys"))  # restored after a test's CLI
    yield
    trust.set_insecure_dev(False)


@pytest.fixture(scope="module")
def unblessed(tmp_path_factory) -> Path:
    """A genuine, signed build whose gate failed (roc_auc >= 0.99)."""
    out = tmp_path_factory.mktemp("unblessed") / "credit_risk"
    with pytest.MonkeyPatch.context() as mp, pytest.raises(BuildFailed):
        mp.setenv("AIOPS_REGISTRY", str(out.parent / "registry.db"))  # not the repository's .aiops/
        compile_spec(str(ROOT / "specs/credit_risk"), ["thresholds.evaluation.roc_auc.min=0.99"], out=str(out),
                     quiet=True)
    return out


def copy(src: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(src, tmp / "art"))


def recompute_hashes(root: Path) -> None:
    """What an attacker without a trusted key can do: rewrite manifest.json, keep manifest.sig."""
    sig = (root / "manifest.sig").read_bytes()
    reseal(root, None)
    (root / "manifest.sig").write_bytes(sig)


def cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out + err


def attempt(command: str, art: Path, tmp: Path, capsys, *more: str) -> tuple[int, str]:
    """Run `command` on `art` the cheapest way; (exit code, what it printed or raised)."""
    if command == "serve":
        from aiops.runtime.serve.server import Service

        try:
            Service(art, tmp / "log", env=_serve_env(), job_threads=0)
        except ArtefactError as exc:
            return 2, str(exc)
        return 0, ""
    if command == "score":
        return cli(capsys, "score", art, CREDIT, "--output", tmp / "o.csv", "--quiet", *more)
    if command == "monitor":
        return cli(capsys, "monitor", art, "--current", CREDIT, "--report", tmp / "report", "--quiet", *more)
    if command == "retrain":
        return cli(capsys, "retrain", art, "--data", CREDIT, "--quiet", *more)
    return cli(capsys, "verify", art, *more)


# ------------------------------------------------------------------ the attacks
def strip_signature(root: Path, tmp: Path) -> str:
    (root / "manifest.sig").unlink()
    return f"{root}/manifest.sig is missing: the artefact is unsigned, and the artefact's policy " \
           "(governance.risk_tier is high) and this deployment"


def resign_untrusted(root: Path, tmp: Path) -> str:
    from aiops.runtime.trust.keys import write_new_key

    attacker = write_new_key(tmp / "attacker.key")
    reseal(root, tmp / "attacker.key")
    return f"{root}/manifest.sig is signed by key {attacker.fingerprint}, which is not among the trusted keys in " \
           f"{KEYS / 'TEST_ONLY_trusted.keys'} ({TEST_FP})"


def swap_model(root: Path, tmp: Path) -> str:
    import onnx

    model = onnx.load(root / "model.onnx")
    node = next(n for n in model.graph.node if n.op_type == "LinearClassifier")
    coef = next(a for a in node.attribute if a.name == "coefficients")
    inverted = [-c for c in coef.floats]  # a working model that ranks applicants the other way round
    del coef.floats[:]
    coef.floats.extend(inverted)
    onnx.save(model, root / "model.onnx")
    onnx.checker.check_model(onnx.load(root / "model.onnx"))
    recompute_hashes(root)
    return "modified after signing: model.onnx (sha256 differs from manifest.sig)"


def weaken_serving(root: Path, tmp: Path) -> str:
    s = json.loads((root / "serving.json").read_text())
    s["security"]["encryption_at_rest"]["enabled"] = False
    s["security"]["masking"] = {c: {"method": "none", "allow_as_feature": False} for c in s["security"]["masking"]}
    (root / "serving.json").write_text(json.dumps(s))
    recompute_hashes(root)
    return "modified after signing: serving.json (sha256 differs from manifest.sig)"


def bless_by_flag(root: Path, tmp: Path) -> str:
    m = json.loads((root / "manifest.json").read_text())
    assert m["blessed"] is False
    m["blessed"] = True
    (root / "manifest.json").write_text(json.dumps(m))
    recompute_hashes(root)
    return "modified after signing: manifest.json (sha256 differs from manifest.sig)"


def plant_pycache(root: Path, tmp: Path) -> str:
    d = root / "pipeline" / "__pycache__"
    d.mkdir()
    (d / "schema.cpython-311.pyc").write_bytes(b"\xa7\r\r\n" + b"\0" * 12 + b"import os; os.system('id')")
    return "not in the manifest: pipeline/__pycache__/schema.cpython-311.pyc"


ATTACKS = [strip_signature, resign_untrusted, swap_model, weaken_serving, bless_by_flag, plant_pycache]


@pytest.mark.parametrize("command", list(VERB))
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_every_command_refuses_every_attack(attack, command, tmp_path, capsys, unblessed):
    src = unblessed if attack is bless_by_flag else build("credit_risk")
    art = copy(src, tmp_path)
    expected = attack(art, tmp_path)
    rc, text = attempt(command, art, tmp_path, capsys)
    assert rc == (1 if command == "verify" else 2), text
    assert expected in text
    assert f"refusing to {VERB[command]}" in text
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "report").exists()


def test_the_signed_build_is_trusted_and_names_its_signer(capsys):
    art = build("credit_risk")
    rc, text = cli(capsys, "verify", art)
    assert rc == 0, text
    assert f"signature: signed by {TEST_FP}, a trusted key ({KEYS / 'TEST_ONLY_trusted.keys'})" in text
    assert "signature required by: the artefact's policy (governance.risk_tier is high)" in text
    assert "blessing: blessed: re-derived from evidence/evaluation.json, 15 of 15 thresholds" in text
    sig = json.loads((art / "manifest.sig").read_text())
    assert sig["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert sig["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    m = json.loads((art / "manifest.json").read_text())
    assert "signature" not in m and "public_key" not in json.dumps(m)  # trust never comes from the artefact


def test_without_trusted_keys_a_high_risk_build_is_refused_naming_the_key(capsys, monkeypatch):
    art = build("credit_risk")
    monkeypatch.delenv("AIOPS_TRUSTED_KEYS")
    rc, text = cli(capsys, "verify", art)
    assert rc == 1
    assert f"{art}/manifest.sig is signed by key {TEST_FP} (as it says), but no trusted keys are configured, and " \
           "the artefact's policy (governance.risk_tier is high) requires a signature by a trusted key: set " \
           "AIOPS_TRUSTED_KEYS=FILE or pass --trusted-keys FILE" in text
    rc, text = cli(capsys, "verify", art, "--trusted-keys", KEYS / "TEST_ONLY_trusted.keys")
    assert rc == 0 and f"signed by {TEST_FP}, a trusted key" in text


def test_a_limited_tier_build_runs_unsigned_only_where_no_keys_are_trusted(tmp_path, capsys, monkeypatch):
    art = copy(build("flight_delays"), tmp_path)
    (art / "manifest.sig").unlink()  # what a machine without AIOPS_SIGNING_KEY compiles (README command 1)
    rc, text = cli(capsys, "verify", art)
    assert rc == 1
    assert f"{art}/manifest.sig is missing: the artefact is unsigned, and this deployment (it trusts only the " \
           f"keys in {KEYS / 'TEST_ONLY_trusted.keys'}) requires a signature by a trusted key" in text
    monkeypatch.delenv("AIOPS_TRUSTED_KEYS")
    rc, text = cli(capsys, "verify", art)
    assert rc == 0, text
    assert "signature: unsigned (the policy does not require a signature and no trusted keys are configured)" in text


def test_insecure_dev_is_the_only_way_round_and_it_is_loud_and_recorded(tmp_path, capsys):
    from aiops.runtime.serve.server import Service

    art = copy(build("credit_risk"), tmp_path)
    why = strip_signature(art, tmp_path)
    rc, text = cli(capsys, "score", art, CREDIT, "--output", tmp_path / "o.csv", "--quiet", "--insecure-dev")
    assert rc == 0, text
    assert "!! INSECURE DEV MODE (--insecure-dev) for" in text and f"!!   waived: {why}" in text
    trust.set_insecure_dev(True)  # as `aiops serve --insecure-dev` does
    service = Service(art, tmp_path / "log", env=_serve_env(), job_threads=0, insecure_dev=True)
    meta = json.loads(service.metadata)["model"]
    assert meta["signed"] is False and meta["trust"]["insecure_dev"] is True
    assert meta["trust"]["waived"][0].startswith(why)
    assert "!! INSECURE DEV MODE" in capsys.readouterr().err
    trust.set_insecure_dev(False)
    rc, text = cli(capsys, "verify", art)  # the flag does not outlive its command
    assert rc == 1 and why in text


def test_insecure_dev_never_waives_tampering(tmp_path, capsys):
    art = copy(build("credit_risk"), tmp_path)
    expected = swap_model(art, tmp_path)
    for command in ("verify", "score", "retrain"):
        rc, text = attempt(command, art, tmp_path, capsys, "--insecure-dev")
        assert rc in (1, 2) and expected in text


def test_the_blessing_is_re_derived_from_the_evidence_not_read_from_a_flag(tmp_path, capsys, unblessed):
    """A full forgery of every flag on an unsigned copy (signature waived with --insecure-dev, so
    only the re-derivation stands in the way) is still refused: roc_auc's value fails its bound."""
    art = copy(unblessed, tmp_path)
    (art / "manifest.sig").unlink()
    for rel, edit in (("manifest.json", lambda d: d.update(blessed=True)),
                      ("evidence/blessing.json", lambda d: d.update(blessed=True, failed=[])),
                      ("evidence/evaluation.json", lambda d: (d.update(passed=True),
                                                              [t.update(passed=True) for t in d["thresholds"]]))):
        doc = json.loads((art / rel).read_text())
        edit(doc)
        (art / rel).write_text(json.dumps(doc))
    reseal(art, None)
    roc = json.loads((art / "evidence/evaluation.json").read_text())["metrics"]["roc_auc"]
    for command in ("verify", "score", "serve", "monitor"):
        trust.set_insecure_dev(True)
        rc, text = attempt(command, art, tmp_path, capsys, "--insecure-dev")
        assert rc in (1, 2), (command, text)
        assert f"refusing to {VERB[command]} '{art}': the evidence disagrees with itself (re-derived from " \
               "evidence/evaluation.json against the gate in manifest.json, the model is NOT blessed)" in text
        assert f"evidence/evaluation.json says \"passed\": true for roc_auc, but its value {roc:.4f} does not meet " \
               ">= 0.99" in text
        assert "manifest.json says \"blessed\": true" in text


def test_a_genuinely_unblessed_build_is_refused_but_verifiable(capsys, unblessed):
    rc, text = cli(capsys, "verify", unblessed)
    assert rc == 1 and f"refusing to trust '{unblessed}': the model is not blessed (failed gates: roc_auc)" in text
    rc, text = cli(capsys, "verify", unblessed, "--allow-unblessed")
    assert rc == 0 and "blessing: NOT blessed (failed: roc_auc)" in text


# ------------------------------------------------------------------ signing and keys
def test_compile_refuses_a_high_risk_build_without_a_signing_key(monkeypatch, tmp_path):
    monkeypatch.setenv("AIOPS_SIGNING_KEY", "")
    with pytest.raises(BuildFailed) as exc:
        compile_spec(str(ROOT / "specs/credit_risk"), [], out=str(tmp_path / "cr"), quiet=True)
    assert exc.value.code == 2
    assert exc.value.text.startswith("error[E911]: this build must be signed (governance.risk_tier is high), but "
                                     "$AIOPS_SIGNING_KEY is not set")
    assert not (tmp_path / "cr").exists()


def test_signatures_are_deterministic_and_cover_every_file(tmp_path):
    art = copy(build("credit_risk"), tmp_path)
    before = (art / "manifest.sig").read_bytes()
    reseal(art)
    assert (art / "manifest.sig").read_bytes() == before
    stmt = json.loads(__import__("base64").b64decode(json.loads(before)["dsseEnvelope"]["payload"]))
    names = [r["name"] for r in stmt["predicate"]["resources"]]
    on_disk = sorted(p.relative_to(art).as_posix() for p in art.rglob("*") if p.is_file())
    assert names == [n for n in on_disk if n != "manifest.sig"] and "manifest.json" in names
    assert stmt["predicateType"] == "https://model_signing/signature/v1.0"


def test_keys_generate_writes_a_private_file_outside_artefacts(tmp_path, capsys):
    key = tmp_path / "k" / "signing.key"
    rc, text = cli(capsys, "keys", "generate", "--out", key, "--trusted-keys", tmp_path / "trusted.keys")
    assert rc == 0, text
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    fp = re.search(r"fingerprint: (ed25519:[0-9a-f]{16})", text).group(1)
    line = Path(f"{key}.pub").read_text().strip()
    assert (tmp_path / "trusted.keys").read_text().strip() == line and line in text
    rc, text = cli(capsys, "keys", "list", "--trusted-keys", tmp_path / "trusted.keys")
    assert rc == 0 and text.startswith(fp)
    rc, text = cli(capsys, "keys", "generate", "--out", key)
    assert rc == 2 and f"error: {key} exists: refusing to overwrite a key (use 'aiops keys rotate'" in text
    art = copy(build("credit_risk"), tmp_path)
    rc, text = cli(capsys, "keys", "generate", "--out", art / "evidence" / "my.key")
    assert rc == 2 and f"error: refusing to write a private key into the artefact folder {art.resolve()}" in text
    assert not (art / "evidence" / "my.key").exists()


def test_keys_rotate_keeps_the_old_key_trusted_until_removed(tmp_path, capsys):
    key, trusted = tmp_path / "signing.key", tmp_path / "trusted.keys"
    assert cli(capsys, "keys", "generate", "--out", key, "--trusted-keys", trusted)[0] == 0
    old_art = copy(build("credit_risk"), tmp_path)
    reseal(old_art, key)  # signed by the old key
    rc, text = cli(capsys, "keys", "rotate", "--key", key, "--trusted-keys", trusted)
    assert rc == 0, text
    old_fp, new_fp = re.search(r"(ed25519:\w+) kept", text).group(1), re.search(r"new key (ed25519:\w+)", text).group(1)
    assert old_fp != new_fp and stat.S_IMODE(key.stat().st_mode) == 0o600
    new_art = Path(shutil.copytree(old_art, tmp_path / "new"))
    reseal(new_art, key)  # the key file now holds the new key
    for art, fp in ((old_art, old_fp), (new_art, new_fp)):
        rc, text = cli(capsys, "verify", art, "--trusted-keys", trusted)
        assert rc == 0 and f"signed by {fp}, a trusted key" in text
    # the procedure's last step: remove the old key's line
    trusted.write_text("".join(ln for ln in trusted.read_text().splitlines(True) if "retired" not in ln))
    rc, text = cli(capsys, "verify", old_art, "--trusted-keys", trusted)
    assert rc == 1 and f"is signed by key {old_fp}, which is not among the trusted keys in" in text
    assert cli(capsys, "verify", new_art, "--trusted-keys", trusted)[0] == 0


def test_the_old_single_key_variable_is_refused_not_ignored(capsys, monkeypatch):
    monkeypatch.delenv("AIOPS_TRUSTED_KEYS")
    monkeypatch.setenv("AIOPS_TRUSTED_KEY", "ab" * 32)
    rc, text = cli(capsys, "verify", build("credit_risk"))
    assert rc == 1 and "$AIOPS_TRUSTED_KEY is no longer read: put the key in a file as 'ed25519 abab" in text
    with pytest.raises(ArtefactError, match=re.escape("refusing to load")):
        verify(build("credit_risk"))
