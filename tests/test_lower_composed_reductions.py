"""ReduceSumSquare, ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp (opset 17, axes as an
attribute) lower to torch sums as ONNX defines them (tf2onnx writes TF's ``l2_normalize``,
Keras UnitNormalization, with ReduceSumSquare), against onnxruntime through both doors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import tensor_info
from test_converters_pool_pad import F32, check, model_of, rnd


@pytest.mark.parametrize(
    "op", ["ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"]
)
@pytest.mark.parametrize("axes, keepdims", [([1], 1), ([-1, 1], 0), (None, 1)])
def test_composed_reductions_match_onnxruntime(op, axes, keepdims):
    attrs = {"keepdims": keepdims} | ({"axes": axes} if axes is not None else {})
    model = model_of(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        [tensor_info("x", F32, ["N", 3, "L"])],
        [tensor_info("y", F32, None)],
    )
    positive = op == "ReduceLogSum"  # log of a sum: the sum must be positive
    sets = [[rnd(2, 3, 5)], [rnd(1, 3, 4)]]
    if positive:
        sets = [[np.abs(s[0]) + 0.1] for s in sets]
    for module in check(model, *sets):
        assert torch.sum in {n.target for n in module.graph.nodes} or op == "ReduceLogSumExp"
