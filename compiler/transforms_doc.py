"""docs/transforms.md, the reference of every feature transform and its parameters, generated
from the schema (compiler/schema.py: the transform names, the Feature fields and their types)
and the rules of `aiops check` (compiler/rules_model.TRANSFORMS: the dtypes each transform
takes, the parameters it needs and may take), so the page cannot drift from what check accepts.

    python -m aiops.compiler.transforms_doc --write    # regenerate docs/transforms.md
    python -m aiops.compiler.transforms_doc --check    # exit 1 when the committed page differs

tests/test_transforms_doc.py fails when the committed page is not what this renders.
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, get_args

from aiops.compiler import schema as S
from aiops.compiler.rules_model import TRANSFORMS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "transforms.md"

# what each transform computes; where it runs ("model.onnx" or "runtime/features.py, before the model")
TRANSFORM_DOCS: dict[str, tuple[str, str, str]] = {
    "passthrough": ("The value as a number (a bool is 0/1); a missing value is filled as `impute` says (default: the "
                    "median of the training rows).", "model.onnx",
                    "{name: age, transform: passthrough, source: age}"),
    "impute": ("The value as a number, a missing one replaced by `impute` (fitted on the training rows).",
               "model.onnx", "{name: precip, transform: impute, source: precip, impute: constant, fill_value: 0}"),
    "scale": ("The value, scaled by `scale` (fitted on the training rows).", "model.onnx",
              "{name: duration, transform: scale, source: duration_in_month, scale: standard}"),
    "onehot": ("One 0/1 column per category seen in training; a missing value is a category of its own. An unseen "
               "category is all zeros, or, with `min_frequency` / `max_categories`, goes to the \"other\" column "
               "that the rare categories share when some category is rare (scikit-learn's infrequent categories; the ONNX export puts every "
               "value where scikit-learn does).", "model.onnx",
               "{name: dest, transform: onehot, source: dest, min_frequency: 50}"),
    "ordinal": ("The position of the value in `categories` (0, 1, ...); an unseen or missing value is -1.",
                "model.onnx", "{name: size, transform: ordinal, source: size, categories: [S, M, L]}"),
    "log": ("log(1 + x); a value at or below -1 is missing (then imputed).", "runtime/features.py, before the model",
            "{name: log_amount, transform: log, source: credit_amount, scale: standard}"),
    "clip": ("The value limited to [`min`, `max`].", "runtime/features.py, before the model",
             "{name: wind_speed, transform: clip, source: wind_speed, min: 0, max: 60, impute: median}"),
    "bucketize": ("The bucket's number: `bins` as a count cuts at training quantiles (in the model); `bins` as "
                  "edges [e0, e1, ..., ek] gives bucket i for e_i <= x < e_i+1, a value below e0 bucket 0 and one at "
                  "or above ek the last bucket.", "edges: runtime/features.py; a count: model.onnx",
                  "{name: dep_slot, transform: bucketize, source: sched_dep_time, bins: [0, 600, 1200, 1800, 2400]}"),
    "days_between": ("Days from `other` (a date column) or from `reference` (a fixed date) to the source date.",
                     "runtime/features.py, before the model",
                     "{name: account_age, transform: days_between, source: opened, reference: '2020-01-01'}"),
    "date_part": ("A part of the date: month 1-12, day_of_week 0-6 (Monday 0), day_of_year 1-366, day 1-31, year, "
                  "quarter 1-4.", "runtime/features.py, before the model",
                  "{name: day_of_week, transform: date_part, source: flight_date, part: day_of_week}"),
    "ratio": ("source / other; missing where `other` is 0.", "runtime/features.py, before the model",
              "{name: amount_per_month, transform: ratio, source: credit_amount, other: duration_in_month}"),
    "difference": ("source - other.", "runtime/features.py, before the model",
                   "{name: delay_change, transform: difference, source: arr_delay, other: dep_delay}"),
    "drop": ("Not a model input: the column stays in the contract (validated, monitored, usable for fairness) "
             "and `reason` says why it is left out.", "nowhere",
             "{name: flight_key, transform: drop, source: flight_key, reason: row identifier}"),
}

PARAM_DOCS: dict[str, str] = {
    "name": "The model input's name (an ONNX input name: `[A-Za-z_][A-Za-z0-9_]*`), unique among the features.",
    "transform": "What to compute; one of the transforms on this page.",
    "source": "The contract column (data.columns) the feature reads.",
    "other": "A second contract column: the divisor of `ratio`, the subtrahend of `difference`, the start date of "
             "`days_between`. Same kind as the source (both numbers, or both dates).",
    "reference": "`days_between`: a fixed start date, written YYYY-MM-DD (instead of `other`).",
    "part": "`date_part`: which part of the date.",
    "impute": "How a missing value is filled, from the training rows. Default: median, or most_frequent for "
              "bucketize and date_part.",
    "fill_value": "The value used by `impute: constant`.",
    "scale": "Scaling after imputation: standard (mean 0, std 1), minmax (0 to 1), robust (median 0, IQR 1).",
    "categories": "`ordinal`: the categories in their order.",
    "min": "`clip`: the lower limit.",
    "max": "`clip`: the upper limit.",
    "bins": "`bucketize`: a count of quantile buckets (2 to 255), or the strictly increasing bucket edges.",
    "reason": "`drop`: why the column is not a model input (shown in the compliance document).",
    "min_frequency": "`onehot`: a category seen fewer times than this in the training rows (an int >= 1), or in a "
                     "smaller share of them (a number in (0, 1)), goes to the \"other\" column.",
    "max_categories": "`onehot`: at most this many columns, \"other\" included (>= 2); the most frequent "
                      "categories keep their own column.",
}


def _type(tp: Any) -> str:
    from aiops.compiler.structure import _describe

    return _describe(tp)


def render() -> str:
    hints = typing.get_type_hints(S.Feature, vars(S))
    fields = [f for f in dataclasses.fields(S.Feature)]
    names = list(get_args(S.TransformName))
    out = [
        "# Feature transforms",
        "",
        "<!-- DO NOT EDIT: generated from compiler/schema.py and compiler/rules_model.py by "
        "`python -m aiops.compiler.transforms_doc --write` -->",
        "",
        "Each entry of a spec's `features:` list makes one model input from a contract column. "
        "The same code derives it in training, batch scoring and serving; what the ONNX graph "
        "cannot express runs in `runtime/features.py` before the model, the rest is fitted on the "
        "training rows and exported inside `model.onnx`. `aiops check` refuses a transform on a "
        "column of another dtype (E313), a missing parameter (E314) and a parameter the transform "
        "does not take (E315).",
        "",
        "| transform | source dtype | needs | may take | runs in |",
        "|---|---|---|---|---|",
    ]
    for t in names:
        accepts, required, optional = TRANSFORMS[t]
        out.append(f"| [`{t}`](#{t}) | {', '.join(accepts)} | {', '.join(f'`{p}`' for p in required) or '-'} | "
                   f"{', '.join(f'`{p}`' for p in optional) or '-'} | {TRANSFORM_DOCS[t][1]} |")
    out += ["", "## Transforms", ""]
    for t in names:
        what, where, example = TRANSFORM_DOCS[t]
        accepts, required, optional = TRANSFORMS[t]
        out += [f"### {t}", "", what, "",
                f"- source dtype: {', '.join(accepts)}",
                f"- needs: {', '.join(f'`{p}`' for p in required) or 'nothing more'}",
                f"- may take: {', '.join(f'`{p}`' for p in optional) or 'nothing more'}",
                f"- runs in: {where}", "",
                "```yaml", f"- {example}", "```", ""]
    out += ["## Parameters", "", "| parameter | type | default | taken by | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        users = [t for t in names if f.name in TRANSFORMS[t][1] + TRANSFORMS[t][2]]
        taken = "every transform" if f.name in ("name", "transform", "source") else \
            ", ".join(f"`{t}`" + (" (needed)" if f.name in TRANSFORMS[t][1] else "") for t in users)
        default = "required" if f.default is S.REQUIRED else \
            ("none" if f.default is None else f"`{f.default!r}`" if f.default != "" else "`\"\"`")
        out.append(f"| `{f.name}` | {_type(hints[f.name])} | {default} | {taken} | {PARAM_DOCS[f.name]} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        PAGE.write_text(text, encoding="utf-8")
        return 0
    if "--check" in argv:
        same = PAGE.is_file() and PAGE.read_text(encoding="utf-8") == text
        if not same:
            print(f"{PAGE} is out of date: run python -m aiops.compiler.transforms_doc --write", file=sys.stderr)
        return 0 if same else 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
