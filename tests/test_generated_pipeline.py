"""The generated pipeline is the program that trains: compile runs its fit(), `aiops run-pipeline`
runs it on its own to the same model.onnx bytes, and an edited constant changes the result."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aiops.compiler.cli import main
from tests._build import ROOT, build, copy_artefacts

CREDIT_DATA = str(ROOT / "specs/credit_risk/data/german_credit.csv")
SEED = "'seed': 42,"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def test_run_pipeline_alone_gives_the_same_model_and_an_edited_seed_changes_it(tmp_path, capsys):
    art = copy_artefacts(build("credit_risk"), tmp_path / "credit_risk")
    assert main(["run-pipeline", str(art), "--data", CREDIT_DATA, "--out", str(tmp_path / "again.onnx")]) == 0
    out = capsys.readouterr().out
    assert f"same bytes as {art / 'model.onnx'}" in out
    assert (tmp_path / "again.onnx").read_bytes() == (art / "model.onnx").read_bytes()

    _edit(art / "pipeline/train.py", SEED, "'seed': 7,")  # CONFIG's split seed: other training rows
    assert main(["run-pipeline", str(art), "--data", CREDIT_DATA]) == 1
    assert f"differs from {art / 'model.onnx'}" in capsys.readouterr().out


def test_run_pipeline_outside_an_artefact_folder_is_a_user_error(tmp_path, capsys):
    assert main(["run-pipeline", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: '{tmp_path}' is not an artefact folder with a generated pipeline (")
    assert "give the folder that 'aiops compile' wrote" in err


@pytest.mark.slow
def test_compile_trains_with_the_generated_constants_and_check_writes_nothing(spec_copy, tmp_path,
                                                                              monkeypatch, capsys):
    """Compile the bundled spec with one generated constant edited (CONFIG's seed) in --check mode
    against the unedited artefacts: the model and its evidence change, so the edited code ran;
    and --check leaves the quarantine file that a real compile would replace or delete."""
    import aiops.compiler.build as B

    spec = spec_copy("credit_risk")
    art = copy_artefacts(build("credit_risk"), tmp_path / "out")
    planted = tmp_path / ".aiops/quarantine/credit_risk.csv"
    planted.parent.mkdir(parents=True)
    planted.write_text("left alone\n")
    render = B.render_all_files

    def edited(plan):
        files = render(plan)
        assert files["pipeline/train.py"].count(SEED) == 1
        files["pipeline/train.py"] = files["pipeline/train.py"].replace(SEED, "'seed': 7,")
        return files

    monkeypatch.setattr(B, "render_all_files", edited)
    assert B.compile_spec(spec.rel, [], out=str(art), check_only=True, quiet=True) == 1
    err = capsys.readouterr().err
    for rel in ("model.onnx", "evidence/evaluation.json", "pipeline/train.py"):
        assert f"   = changed: {art / rel}" in err
    assert f"   = changed: {art / 'contract.json'}" not in err  # the contract does not depend on the seed
    assert planted.read_text() == "left alone\n"  # --check wrote nothing outside its staging folder
    assert not (tmp_path / ".aiops/registry.db").exists()


@pytest.mark.parametrize("name", ["credit_risk", "flight_delays"])
def test_generated_code_imports_what_it_uses_and_every_constant_is_read(name):
    import io

    from pyflakes.api import check
    from pyflakes.reporter import Reporter

    pipeline = build(name) / "pipeline"
    out = io.StringIO()
    for p in sorted(pipeline.glob("*.py")):
        assert check(p.read_text(), str(p), Reporter(out, out)) == 0, out.getvalue()
    trees = [ast.parse(p.read_text()) for p in sorted(pipeline.glob("*.py"))]
    assigned = {t.id for tree in trees for s in tree.body if isinstance(s, ast.Assign) for t in s.targets}
    read = {n.id for tree in trees for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    read |= {n.attr for tree in trees for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert assigned == {"SCHEMA", "STEPS", "DATA", "DATA_FORMAT", "CONFIG"}
    assert assigned <= read, f"constants that nothing reads: {sorted(assigned - read)}"
