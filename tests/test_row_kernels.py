"""A row gets the same bits alone as inside a batch (runtime/row_kernels.py): the rule that
lets tree models score a lone row once, held on every bundled model and real row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from aiops.runtime.features import derive
from aiops.runtime.predictor import Predictor
from aiops.runtime.row_kernels import rows_independent

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"credit_risk": True, "diabetes": False, "flight_delays": False, "penguins": False}  # lone_row_twice


def _records(name: str, n: int) -> list[dict]:
    import pyarrow.csv as pc
    import pyarrow.parquet as pq

    path = sorted(f for f in (ROOT / "specs" / name / "data").iterdir() if f.suffix in (".csv", ".parquet"))[0]
    table = pc.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)
    step = max(1, table.num_rows // n)  # spread through the file
    return table.take(list(range(0, table.num_rows, step))[:n]).to_pylist()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_rule_on_each_bundled_model(name):
    p = Predictor(ROOT / "generated" / name)
    assert p.lone_row_twice is EXPECTED[name]


@pytest.mark.parametrize("name", ["diabetes", "flight_delays", "penguins"])
def test_a_lone_row_of_a_tree_model_has_its_batch_bits(name):
    """Every row scored alone (one copy) equals the same row inside the batch, bit for bit."""
    p = Predictor(ROOT / "generated" / name)
    cols, errors = p.contract.validate_records(_records(name, 600))
    feed = derive(p.steps, cols)
    n = len(feed[p.input_names[0]])
    assert n >= 300
    batch = p.run(feed)
    for i in range(n):
        alone = p.run({k: v[i:i + 1] for k, v in feed.items()})
        for a, b in zip(alone, batch):
            a, b = np.asarray(a), np.asarray(b)[i:i + 1]
            if a.dtype == object:  # labels as strings
                assert a.tolist() == b.tolist(), (name, i)
            else:
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (name, i)
    out = p.run_feed({k: v[:1] for k, v in feed.items()})  # the path the server takes: one copy
    key = "value" if "value" in out else "probabilities"
    assert out[key].tobytes() == p.run_feed(feed)[key][:1].tobytes()


def _graph(*nodes, inits=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    return helper.make_graph(list(nodes), "g", [x], [y], initializer=list(inits))


def _trees(inp="x", out="y"):
    return helper.make_node("TreeEnsembleRegressor", [inp], [out], domain="ai.onnx.ml", n_targets=1,
                            nodes_treeids=[0], nodes_nodeids=[0], nodes_featureids=[0], nodes_modes=["LEAF"],
                            nodes_values=[0.0], nodes_truenodeids=[0], nodes_falsenodeids=[0],
                            target_treeids=[0], target_nodeids=[0], target_ids=[0], target_weights=[1.0])


def test_an_op_outside_the_list_keeps_the_two_copies():
    assert rows_independent(_graph(_trees()))
    gemm = helper.make_node("MatMul", ["x", "w"], ["xw"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], [0.1] * 9)
    assert not rows_independent(_graph(gemm, _trees("xw"), inits=[w]))  # a matrix product before the trees
    linear = helper.make_node("LinearRegressor", ["x"], ["y"], domain="ai.onnx.ml", coefficients=[1.0, 2.0, 3.0])
    assert not rows_independent(_graph(linear))  # no trees: the rule is not for it


def test_reduce_sum_only_over_one_hot_indicators():
    axis = helper.make_tensor("axis", TensorProto.INT64, [1], [1])
    summed = helper.make_node("ReduceSum", ["x", "axis"], ["s"], keepdims=1)
    assert not rows_independent(_graph(summed, _trees("s"), inits=[axis]))  # a sum of any floats: order matters
    onehot = helper.make_node("OneHotEncoder", ["c"], ["oh"], domain="ai.onnx.ml", cats_strings=["a", "b"])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 2])
    flat = helper.make_node("Reshape", ["oh", "shape"], ["ohf"])
    summed = helper.make_node("ReduceSum", ["ohf", "axis"], ["s"], keepdims=1)
    assert rows_independent(_graph(onehot, flat, summed, _trees("s"), inits=[axis, shape]))
