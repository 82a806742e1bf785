"""docs/transforms.md is generated from the schema (compiler/transforms_doc.py): the committed
page is what the schema renders, and every transform and parameter is described."""
from __future__ import annotations

import dataclasses
from typing import get_args

from aiops.compiler import schema as S
from aiops.compiler import transforms_doc as T


def test_the_committed_page_is_what_the_schema_generates():
    assert T.PAGE.read_text(encoding="utf-8") == T.render(), \
        "docs/transforms.md is out of date: run python -m aiops.compiler.transforms_doc --write"


def test_every_transform_and_every_parameter_is_described():
    assert set(T.TRANSFORM_DOCS) == set(get_args(S.TransformName))
    assert set(T.PARAM_DOCS) == {f.name for f in dataclasses.fields(S.Feature)}
    page = T.render()
    for t in get_args(S.TransformName):
        assert f"\n### {t}\n" in page
    for f in dataclasses.fields(S.Feature):
        assert f"\n| `{f.name}` |" in page


def test_check_mode_names_the_fix(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "transforms.md"
    stale.write_text("# old\n", encoding="utf-8")
    monkeypatch.setattr(T, "PAGE", stale)
    assert T.main(["--check"]) == 1
    assert capsys.readouterr().err == (f"{stale} is out of date: run python -m aiops.compiler.transforms_doc "
                                       "--write\n")
    assert T.main(["--write"]) == 0 and T.main(["--check"]) == 0
