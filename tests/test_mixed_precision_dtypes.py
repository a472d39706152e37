"""Keras mixed precision (``mixed_float16``) under ``.half()`` / ``.to(torch.bfloat16)``.

A mixed-precision Dense casts its float32 input and variables to float16, computes, and the
float32 layer after it casts the result back: ``Cast(f32)`` of a value computed from a
float32 activation's ``Cast(f16)``. That cast back returns to the activation's run-time dtype
(`lower/dtypes._round_trips`, the rule of the float64 detour), so a low-precision copy gives
outputs in its own dtype and float32 is bitwise what it was. The refusal side: a float16
graph input cast to float32 came from no float32 activation, and stays a float32 cast.

onnxruntime's CPU kernels compute float16 through float32 and drop the roundings between
Cast pairs, so the reference for the float16 graph is onnx2torch's own module (the same
ops, ONNX's roundings).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import init, make_model, optimize_onnx, tensor_info

from fxsurgeon.tensorflow import from_onnx
from fxsurgeon.verify import verify

LOW = {"bfloat16": torch.bfloat16, "half": torch.float16}
RNG = np.random.default_rng(0)


def mixed_dense_model():
    """x [b, 6] -> Cast(f16) @ Cast(w, f16) + Cast(b, f16) -> Relu -> Cast(f32) -> Softmax."""
    f16 = TensorProto.FLOAT16
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=f16),
        helper.make_node("Cast", ["w"], ["w16"], to=f16),
        helper.make_node("Cast", ["b"], ["b16"], to=f16),
        helper.make_node("MatMul", ["x16", "w16"], ["m"]),
        helper.make_node("Add", ["m", "b16"], ["mb"]),
        helper.make_node("Relu", ["mb"], ["r"]),
        helper.make_node("Cast", ["r"], ["r32"], to=TensorProto.FLOAT),
        helper.make_node("Softmax", ["r32"], ["out"], axis=-1),
    ]
    weights = [
        init("w", RNG.standard_normal((6, 4)).astype(np.float32)),
        init("b", RNG.standard_normal(4).astype(np.float32)),
    ]
    return make_model(
        nodes,
        [tensor_info("x", np.float32, ["b", 6])],
        [tensor_info("out", np.float32, None)],
        weights,
    )


def _x(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def mixed():
    model = mixed_dense_model()
    return model, optimize_onnx(model)


def test_float32_is_bitwise_onnx2torch_s(mixed):
    model, optimized = mixed
    x = torch.from_numpy(_x())
    with torch.no_grad():
        got = optimized(x)
        assert got.dtype == torch.float32
        assert torch.equal(got, from_onnx(model)(x))
    casts = [n for n in optimized.graph.nodes if n.target == "to"]
    assert torch.float32 not in [a for n in casts for a in n.args[1:]], "the cast back follows"


@pytest.mark.parametrize("how", list(LOW))
def test_the_cast_back_follows_the_low_precision_copy(mixed, how):
    _, optimized = mixed
    low = copy.deepcopy(optimized).to(LOW[how])
    report = verify(low, optimized, inputs=[[_x()], [_x(2)]])
    assert report.passed, report
    assert {str(r.dtype) for r in report.results} == {str(LOW[how]).removeprefix("torch.")}


def test_a_float32_cast_of_a_float16_input_stays_a_cast():
    """x16 [b, 6] -> Cast(f32) -> MatMul: the float16 value came from no float32 activation."""
    nodes = [
        helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x32", "w"], ["out"]),
    ]
    x16 = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["b", 6])
    w = init("w", RNG.standard_normal((6, 4)).astype(np.float32))
    model = make_model(nodes, [x16], [tensor_info("out", np.float32, None)], [w])
    optimized = optimize_onnx(model)
    casts = [n for n in optimized.graph.nodes if n.target == "to"]
    assert [n.args[1:] for n in casts] == [(torch.float32,)]
    x = torch.from_numpy(_x().astype(np.float16))
    with torch.no_grad():  # float32 throughout: F.linear against MatMul, float32 roundings
        torch.testing.assert_close(optimized(x), from_onnx(model)(x), atol=1e-6, rtol=0)
