"""A MatMul by a weight with leading unit dims ([1, in, out]) is one linear (patterns/linear.py,
linear_matmul_1): tf2onnx writes TF's ``tf.matmul(h, wte, transpose_b=True)`` of a 3-D h
(GPT-2's tied LM head) as a MatMul by the folded wte^T reshaped to [1, 32, 99]; matmul
broadcasts the unit dim over h's batch dims, so it is h @ W. A batch of matrices, or unit
dims that would add dims to the output (a 2-D input), are not one linear."""

from __future__ import annotations

import pytest
from fusion_cases import assert_matches_ort, calls, f32, graph, matches, node, optimized, rng
from torch.nn import functional as F

W3 = f32(rng.standard_normal((1, 6, 5)))


def _matmul(x_shape, w) -> object:
    return graph([node("MatMul", ["x", "w"], "y")], {"x": x_shape}, ["y"], {"w": w})


@pytest.mark.parametrize("x_shape", [["N", 4, 6], ["N", 2, 4, 6]])
def test_a_weight_with_a_leading_unit_dim_is_one_linear(x_shape):
    model = _matmul(x_shape, W3)
    module = optimized(model)
    assert matches(module).get("linear_matmul_1") == 1
    assert calls(module, F.linear) == 1 and "matmul" not in module.code
    assert_matches_ort(module, model)


@pytest.mark.parametrize(
    ("x_shape", "w"),
    [
        (["N", 6], W3),  # [N, 6] @ [1, 6, 5] is [1, N, 5]: the unit dim is an output dim
        ([2, 4, 6], f32(rng.standard_normal((2, 6, 5)))),  # two matrices, one per batch row
    ],
)
def test_a_batch_of_matrices_or_an_added_dim_is_not_a_linear(x_shape, w):
    model = _matmul(x_shape, w)
    module = optimized(model)
    assert "linear_matmul_1" not in matches(module)
    assert calls(module, F.linear) == 0
    assert_matches_ort(module, model)
