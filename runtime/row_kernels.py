"""Whether onnxruntime gives a row the same bits alone as inside a batch.

A row must get the same prediction however it is sent: alone over HTTP, or among thousands
in `aiops score`. onnxruntime does not promise that. For a linear model a one-row input
takes another kernel (GEMV instead of GEMM), which differs in the last bit; that is why
`Predictor.run_feed` scores a lone row as two copies of itself, which costs a second row
of work and a copy of every input: for flight_delays 64.9 against 54.2 µs of the event
loop's CPU per request (`python bench/serve_costs.py --lone-row-ab`, medians of 9).

`rows_independent(graph)` says when the copy is not needed: every node of the graph
computes each row on its own with the same operations whatever the batch size:

- tree ensembles: each row walks the trees in the same order and sums in that order, and
  the post-transform (logistic, softmax) is applied per row (onnxruntime's
  tree_ensemble_aggregator); with the one intra-op thread the Predictor uses there is no
  parallel reduction over trees either;
- per-element operations whose result is exactly rounded and so independent of SIMD or
  scalar code (Sub, Div, Add, Mul), lookups and reshaping (Imputer, OneHotEncoder,
  LabelEncoder, Gather, Concat, Reshape, Cast, ...);
- ReduceSum only over one-hot indicators (aiops's rare-category column, compiler/export.py):
  a sum of zeros and ones is exact in any order.

Anything else (LinearClassifier, LinearRegressor, MatMul, Gemm, SVMs, Normalizer, a
ReduceSum of other values, an op this list does not know) keeps the two copies. The rule
is an allow-list, so a new op fails safe (slower, never different), and
tests/test_row_kernels.py holds it on the bundled models: every real row scored alone has
the bits it has inside the batch, for each graph the rule lets through.
"""
from __future__ import annotations

from typing import Any

TREES = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})
PER_ROW = frozenset({
    "Imputer", "OneHotEncoder", "LabelEncoder", "CategoryMapper", "Binarizer", "ArrayFeatureExtractor", "ZipMap",
    "Concat", "Gather", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "Slice",
    "Sub", "Div", "Add", "Mul", "Neg", "Abs", "Equal", "Less", "Greater", "Not", "Where", "ArgMax",
})
SHAPE_ONLY = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Concat", "Gather", "Slice", "Cast"})


def rows_independent(graph: Any) -> bool:
    """True when every node of this ONNX graph (onnx.GraphProto) computes a row alone with
    the bits it gets inside a larger batch (see the module's text); False otherwise."""
    made_by = {out: n for n in graph.node for out in n.output}
    consts = {i.name for i in graph.initializer}

    def one_hot_only(name: str, seen: frozenset = frozenset()) -> bool:
        """`name` holds only values of OneHotEncoder outputs (and constants), through shape ops."""
        if name in consts:
            return True
        node = made_by.get(name)
        if node is None or name in seen:
            return False
        if node.op_type == "OneHotEncoder":
            return True
        if node.op_type not in SHAPE_ONLY:
            return False
        data = node.input[:1] if node.op_type in ("Reshape", "Gather", "Slice") else node.input
        return all(one_hot_only(i, seen | {name}) for i in data if i)

    if not any(n.op_type in TREES for n in graph.node):
        return False  # the rule is for tree models; everything else keeps the two copies
    for n in graph.node:
        if n.op_type in TREES or n.op_type in PER_ROW:
            continue
        if n.op_type == "ReduceSum" and n.input and one_hot_only(n.input[0]):
            continue
        return False
    return True


def lone_row_twice(model_path: str) -> bool:
    """Whether a lone row of this model must be scored as two copies (see the module's text)."""
    import onnx

    return not rows_independent(onnx.load(model_path, load_external_data=False).graph)
