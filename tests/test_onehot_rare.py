"""onehot's rare-category grouping (min_frequency / max_categories): the ONNX export puts every
category, rare, unseen or missing, in the same column as scikit-learn does."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from aiops.compiler.export import to_onnx_bytes

# 'a' 40 times, 'b' 30, 'c' 20, 'd' 6, 'e' 3, 'f' 1
TRAIN = ["a"] * 40 + ["b"] * 30 + ["c"] * 20 + ["d"] * 6 + ["e"] * 3 + ["f"]
PROBE = ["a", "b", "c", "d", "e", "f", "never_seen", "__missing__", ""]


def _fit_and_export(**grouping):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"dest": TRAIN, "n": rng.normal(size=len(TRAIN))})
    y = (np.isin(x["dest"], ["a", "e", "f"]) ^ (rng.random(len(TRAIN)) < 0.1)).astype(int)
    enc = OneHotEncoder(handle_unknown="infrequent_if_exist" if grouping else "ignore", sparse_output=False,
                        **grouping)
    pipe = Pipeline([("features", ColumnTransformer([("dest", enc, ["dest"]), ("n", "passthrough", ["n"])])),
                     ("model", LogisticRegression())]).fit(x, y)
    feats = [SimpleNamespace(name="dest", kind="categorical"), SimpleNamespace(name="n", kind="numeric")]
    sess = ort.InferenceSession(to_onnx_bytes(pipe, feats, True, "t"), providers=["CPUExecutionProvider"])
    return pipe, sess


@pytest.mark.parametrize("grouping,columns", [
    ({"min_frequency": 10}, ["a", "b", "c", "infrequent_sklearn"]),
    ({"min_frequency": 0.05}, ["a", "b", "c", "d", "infrequent_sklearn"]),
    ({"max_categories": 3}, ["a", "b", "infrequent_sklearn"]),
    ({"min_frequency": 1}, ["a", "b", "c", "d", "e", "f"]),  # nothing is rare: an unseen category is all zeros
    ({}, ["a", "b", "c", "d", "e", "f"]),
])
def test_rare_and_unseen_categories_land_where_scikit_learn_puts_them(grouping, columns):
    pipe, sess = _fit_and_export(**grouping)
    enc = pipe.named_steps["features"].named_transformers_["dest"]
    assert [str(c) for c in enc._compute_transformed_categories(0)] == columns
    probe = pd.DataFrame({"dest": PROBE, "n": np.linspace(-1, 1, len(PROBE))})
    sk = pipe.predict_proba(probe)
    hot = enc.transform(probe[["dest"]])
    onnx = sess.run(None, {"dest": probe[["dest"]].to_numpy(dtype=object).astype(str),
                           "n": probe[["n"]].to_numpy(dtype=np.float32)})[1]
    np.testing.assert_allclose(onnx, sk, atol=1e-6)
    if "infrequent_sklearn" in columns:  # rare ('e', 'f') and unseen values share the last column
        other = hot[:, -1]
        rare = [v not in columns for v in PROBE]
        assert other.tolist() == [1.0 if r else 0.0 for r in rare]
    else:
        assert hot[PROBE.index("never_seen")].tolist() == [0.0] * len(columns)

