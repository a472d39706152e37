"""Half precision where an If's branch reads a size from the data (LED's bfloat16 and half
lines: a float32 mask met a constant in a MatMul after ``.to(torch.bfloat16)``).

The dtype rule (`lower/dtypes.py`) reads the nodes' dtypes by running the example inputs
when fake tensors cannot run the graph (an ``.item()`` size). Eager torch.cond traces both
branches, and the branch the data does not take may not run on it (a Reshape by a size
the data makes 0): the run takes the branch the predicate picks (`run_cond`, as
optimize's result runs it), so the rule still applies; float32 == onnxruntime.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon.lower.dtypes import follow_dtype
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64


def _graph(name, nodes, out):
    info = [helper.make_tensor_value_info(out, helper.TensorProto.FLOAT, None)]
    return helper.make_graph(nodes, name, [], info)


def masked_product_model():
    """y = If(max(k) > 0, x reshaped to [n, -1] and back, times 2; else x * 3) where n is
    the number of k > 0 (a NonZero's length, 0 where the else runs), then
    MatMul(float(y > 0) as a row, y as a column): a pinned float32 mask meets y."""
    then = _graph(
        "then",
        [
            helper.make_node("Shape", ["g"], ["gs"]),
            helper.make_node("Slice", ["gs", "one_1d", "two_1d"], ["n1"]),
            helper.make_node("Concat", ["n1", "minus_1d"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["r"]),
            helper.make_node("Mul", ["r", "two"], ["r2"]),
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Reshape", ["r2", "s"], ["t"]),
        ],
        "t",
    )
    other = _graph("else", [helper.make_node("Mul", ["x", "three"], ["e"])], "e")
    nodes = [
        helper.make_node("ReduceMax", ["k"], ["top"], keepdims=0),
        helper.make_node("Greater", ["k", "zero"], ["kpos"]),
        helper.make_node("NonZero", ["kpos"], ["g"]),
        helper.make_node("Greater", ["top", "zero"], ["p"]),
        helper.make_node("If", ["p"], ["y"], then_branch=then, else_branch=other),
        helper.make_node("Greater", ["y", "zero_f"], ["pos"]),
        helper.make_node("Cast", ["pos"], ["m"], to=1),
        helper.make_node("Unsqueeze", ["m", "zero_1d"], ["row"]),
        helper.make_node("Unsqueeze", ["y", "one_1d"], ["col"]),
        helper.make_node("MatMul", ["row", "col"], ["out"]),
    ]
    inits = [
        init("zero", np.array(0, I64)),
        init("zero_f", np.array(0, F32)),
        init("zero_1d", np.array([0], I64)),
        init("one_1d", np.array([1], I64)),
        init("two_1d", np.array([2], I64)),
        init("minus_1d", np.array([-1], I64)),
        init("two", np.array(2.0, F32)),
        init("three", np.array(3.0, F32)),
    ]
    inputs = [tensor_info("x", F32, ["N"]), tensor_info("k", I64, ["K"])]
    return make_model(nodes, inputs, [tensor_info("out", F32, [1, 1])], inits)


def _cases():
    x = np.array([1.0, -2.0, 3.0, 0.5], F32)
    return [
        [x, np.array([0, -1], I64)],
        [x, np.array([2, 1], I64)],
        [x, np.array([0, 3, 1, 0], I64)],
    ]


def test_the_dtype_rule_runs_the_branch_the_data_takes_where_the_other_cannot_run():
    model = masked_product_model()
    x, k = (torch.from_numpy(a) for a in _cases()[0])  # max(k) = 0: the then branch fails
    optimized = fxsurgeon.optimize(from_onnx(model), [x, k])
    assert_lowered(optimized)
    assert follow_dtype in {n.target for n in optimized.graph.nodes}
    for case in _cases():
        assert_module_matches_ort(optimized, model, case)
    low = copy.deepcopy(optimized).to(torch.bfloat16)
    for case in _cases():
        xs, ks = (torch.from_numpy(a) for a in case)
        out = low(xs.to(torch.bfloat16), ks)
        assert out.dtype == torch.bfloat16
        assert torch.allclose(out.float(), optimized(xs, ks), rtol=1e-2)


def test_examples_that_the_branch_taken_cannot_run_leave_the_graph_as_it_is():
    """max(k) = 2 over 3 elements: the Reshape fails in the branch taken too, so no dtypes
    are read and nothing is rewritten (float32 still == onnxruntime)."""
    model = masked_product_model()
    x, k = torch.ones(3), torch.tensor([2, 1])
    optimized = fxsurgeon.optimize(from_onnx(model), [x, k])
    assert_lowered(optimized)
    assert follow_dtype not in {n.target for n in optimized.graph.nodes}
    for case in _cases():
        assert_module_matches_ort(optimized, model, case)
