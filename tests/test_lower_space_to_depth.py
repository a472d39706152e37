"""SpaceToDepth (which onnx2torch cannot convert) and LRN in half precision, against
onnxruntime and the spec: dynamic sides at several sizes, the round trip with
DepthToSpace, what cannot be expressed refused naming the node and op, model.py (codegen)
and back, bfloat16/half copies that run on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_cases import assert_lowered, assert_module_matches_ort, make_model, tensor_info
from test_codegen_control_flow import check_everywhere
from test_lower_more_ops import lrn_by_the_spec, one_op

import fxsurgeon
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(31)


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def space_to_depth_by_the_spec(x: np.ndarray, b: int) -> np.ndarray:
    n, c, h, w = x.shape
    tmp = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return tmp.reshape(n, c * b * b, h // b, w // b)


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("blocksize", [1, 2, 3])
def test_space_to_depth_matches_onnxruntime_and_the_spec(opset, blocksize):
    b = blocksize
    model = one_op(
        "SpaceToDepth", [tensor_info("x", F32, ["N", 3, "H", "W"])], opset=opset, blocksize=b
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for n, h, w in ((2, 2 * b, 4 * b), (1, 3 * b, b)):  # sizes the optimize did not see
        x = rnd(n, 3, h, w)
        assert_module_matches_ort(optimized, model, [x], atol=0)
        with torch.no_grad():
            got = optimized(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(got, space_to_depth_by_the_spec(x, b))


def test_space_to_depth_then_depth_to_space_is_the_identity(tmp_path):
    """TensorFlow's space_to_depth / depth_to_space pair (DCR): the input back, bitwise,
    through model.py and compiled."""
    from onnx import helper

    nodes = [
        helper.make_node("SpaceToDepth", ["x"], ["d"], blocksize=2),
        helper.make_node("DepthToSpace", ["d"], ["y"], blocksize=2, mode="DCR"),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 4, "H", "W"])], [tensor_info("y", F32, None)]
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    x = rnd(2, 4, 6, 8)
    with torch.no_grad():
        np.testing.assert_array_equal(optimized(torch.from_numpy(x)).numpy(), x)
    check_everywhere(
        optimized, [(torch.from_numpy(x),), (torch.from_numpy(rnd(1, 4, 2, 4)),)], tmp_path
    )


def test_space_to_depth_of_a_side_that_is_not_a_multiple_is_kept_with_the_reason():
    model = one_op("SpaceToDepth", [tensor_info("x", F32, [1, 3, 5, 4])], blocksize=2)
    optimized = fxsurgeon.optimize(from_onnx(model))
    (reason,) = report_of(optimized).unconverted["OnnxSpaceToDepthSpec"]
    assert "a side of 5 for blocksize 2" in reason


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.half])
@pytest.mark.parametrize("size", [4, 5])
def test_lrn_runs_in_half_precision_on_the_cpu(dtype, size):
    """F.local_response_norm goes through avg_pool3d, which has no CPU kernel for bfloat16 or
    half; the lowering's window sum runs in any dtype and stays the spec."""
    attrs = {"alpha": 0.1, "beta": 0.75, "bias": 2.0}
    model = one_op("LRN", [tensor_info("x", F32, ["N", 7, "H", "W"])], size=size, **attrs)
    optimized = fxsurgeon.optimize(from_onnx(model))
    x = 3 * rnd(2, 7, 3, 4)
    with torch.no_grad():
        got = optimized.to(dtype)(torch.from_numpy(x).to(dtype)).float().numpy()
    np.testing.assert_allclose(got, lrn_by_the_spec(x, size, **attrs), atol=0.05, rtol=0.02)
