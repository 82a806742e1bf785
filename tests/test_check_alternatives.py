"""`aiops check` composes every option of every config group (compiler/alternatives.py): its
own merge gives Hydra's config, and a broken option that is not selected is reported at its
file's line, with or without command-line overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from aiops.compiler import alternatives as A
from aiops.compiler.check import run_check
from aiops.compiler.load import PRIMARY, SourceMap, _compose, load
from tests._build import ROOT


@pytest.mark.parametrize("name", ["credit_risk", "flight_delays", "diabetes", "penguins"])
def test_the_merge_of_every_option_is_hydras(name):
    d = ROOT / "specs" / name
    loaded, diags = load(d)
    assert loaded is not None, diags
    files = A._Files()
    composed = 0
    for group, opts in A.options(d).items():
        for opt in opts:
            choices = {**loaded.choices, group: opt}
            hydra, _, err = _compose(d, [f"{group}={opt}"], SourceMap(), d / PRIMARY)
            assert err is None
            assert A._merge(d, choices, files) == hydra, (group, opt)
            composed += 1
    assert composed >= 6


def test_an_interpolation_or_a_package_header_is_left_to_hydra(spec_copy):
    spec = spec_copy("flight_delays")
    d = Path(spec.rel)
    loaded, _ = load(d)
    spec.replace("model/logistic.yaml", "C: 1.0", "C: ${model.params.max_iter}")
    assert A._merge(d, {**loaded.choices, "model": "logistic"}, A._Files()) is None
    text, ok = run_check(spec.rel, [])  # Hydra composes it: 2000 is a valid C
    assert ok, text


def test_a_broken_option_is_reported_with_command_line_overrides_too(spec_copy):
    spec = spec_copy("credit_risk")
    spec.replace("model/gradient_boosting.yaml", "max_leaf_nodes: 15", "max_leaf_node: 15")
    text, ok = run_check(spec.rel, ["model=random_forest", "thresholds.evaluation.roc_auc.min=0.7"])
    assert not ok
    assert f"""\
error[E504]: unknown estimator parameter
  --> {spec.where("model/gradient_boosting.yaml", "max_leaf_node:", "max_leaf_node")} (model.params.max_leaf_node)
   |     max_leaf_node: 15
   = 'max_leaf_node' is not a parameter of HistGradientBoostingClassifier
   = found with model: gradient_boosting, an option that is not selected (model: random_forest is); aiops check \
composes every option
   = help: did you mean 'max_leaf_nodes'?""" in text
    assert text.splitlines()[-1] == "error: 1 error; nothing was written."
