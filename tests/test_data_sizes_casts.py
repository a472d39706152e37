"""A size read from the data, cast to float (ONNX Cast of a Shape): the int -> float rule
(`sym_math.cast`) asserts at run time that the float holds it exactly. The assert must not
ask the analysis or torch.compile to guard on the data (hf_led's compile failed so): it is
``aten._assert_scalar``, == onnxruntime eager and compiled fullgraph; a size past float32's
exact range still stops with the rule's error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_module_matches_ort, make_model, tensor_info

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64


def tiled_scale_model(elem=F32):
    """y = Tile(x, [max(k)]) * float(its length): a length the data decides, cast to float."""
    nodes = [
        helper.make_node("ReduceMax", ["k"], ["top"], keepdims=1),
        helper.make_node("Tile", ["x", "top"], ["xt"]),
        helper.make_node("Shape", ["xt"], ["s"]),
        helper.make_node("Cast", ["s"], ["c"], to=1),
        helper.make_node("Cast", ["xt"], ["xf"], to=1),
        helper.make_node("Mul", ["xf", "c"], ["y"]),
    ]
    inputs = [tensor_info("x", elem, ["N"]), tensor_info("k", I64, ["K"])]
    return make_model(nodes, inputs, [tensor_info("y", F32, ["M"])])


def test_a_data_size_cast_to_float_matches_onnxruntime_eager_and_compiled():
    model = tiled_scale_model()
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    assert torch.ops.aten._assert_scalar in {n.target for n in optimized.graph.nodes}
    cases = [
        [np.arange(3, dtype=F32), np.array([2, 1], I64)],
        [np.arange(2, dtype=F32), np.array([3], I64)],
        [np.arange(4, dtype=F32), np.array([1, 0], I64)],
    ]
    for case in cases:
        assert_module_matches_ort(optimized, model, case)
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for case in cases:
        assert_module_matches_ort(compiled, model, case)
    torch._dynamo.reset()


def test_a_data_size_past_float32s_exact_range_fails_the_rules_assert():
    optimized = fxsurgeon.optimize(from_onnx(tiled_scale_model(np.bool_)))
    x, k = torch.ones(1, dtype=torch.bool), torch.tensor([2**24 + 1])
    with pytest.raises(RuntimeError, match="exceeds 16777216"):
        optimized(x, k)
