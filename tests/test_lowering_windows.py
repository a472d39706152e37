"""Sliding windows on dynamic lengths and shape computations reshaped (lower/nn_ops.py,
lower/spec_fixes.py, lower/shape_ops.py, shapes/symbolic.py).

A Conv or pooling window longer than the analysis' hint of a dynamic length (5) is a
precondition of the model, not a fact about the length: the analysis restarts with
larger hints and the window lowers with its length still dynamic (an audio model's
feature extractor). Each graph is checked against onnxruntime at lengths the analysis
never saw; the refusal sides keep the module with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    init,
    make_model,
    optimize_onnx,
    tensor_info,
)

from fxsurgeon.errors import LoweringError
from fxsurgeon.pipeline import report_of
from fxsurgeon.shapes import HintTooSmall, InputSignature, SymbolicShapes

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(3)


def x_of(*shape):
    return rng.standard_normal(shape).astype(F32)


def w_of(*shape):
    """A weight scaled as trained ones are (1/sqrt(fan in)): outputs stay near 1, where
    float32's rounding is well below the tolerance."""
    return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(F32)


def _assert_dynamic(optimized):
    assert_lowered(optimized)
    report = report_of(optimized)
    assert report.forced_dims == [], report.forced_dims
    code = optimized.code
    for forbidden in ("torch.tensor", ".item()", ".tolist()"):
        assert forbidden not in code, code


def conv_chain():
    """wav2vec2's feature extractor: Conv k10 s5, then two Conv k3 s2 (needs L >= 40)."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["h0"], kernel_shape=[10], strides=[5]),
        helper.make_node("Relu", ["h0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["h1"], kernel_shape=[3], strides=[2]),
        helper.make_node("Conv", ["h1", "w2"], ["y"], kernel_shape=[3], strides=[2]),
    ]
    inits = [
        init("w0", w_of(4, 1, 10)),
        init("w1", w_of(4, 4, 3)),
        init("b1", x_of(4)),
        init("w2", w_of(4, 4, 3)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 1, "L"])], [tensor_info("y", F32, None)], inits
    )
    return model, lambda n: [x_of(n % 3 + 1, 1, 40 + 13 * n)]


def pool_after_conv():
    """A MaxPool k7 s3 after a padded Conv k5: the pool's window lands on a computed length."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], kernel_shape=[5], pads=[2, 2]),
        helper.make_node("MaxPool", ["h"], ["y"], kernel_shape=[7], strides=[3]),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", 2, "L"])],
        [tensor_info("y", F32, None)],
        [init("w", w_of(3, 2, 5))],
    )
    return model, lambda n: [x_of(2, 2, 9 + 7 * n)]


def weight_norm_conv():
    """wav2vec2's positional conv: weight norm g * v / ||v|| computed in the graph (the
    Conv's weight is data, fxsurgeon's OnnxConvSpec), groups 2, padding, kernel 8."""
    nodes = [
        helper.make_node("Mul", ["v", "v"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
        helper.make_node("Max", ["ss", "eps"], ["ssm"]),
        helper.make_node("Sqrt", ["ssm"], ["norm"]),
        helper.make_node("Reciprocal", ["norm"], ["inv"]),
        helper.make_node("Mul", ["v", "inv"], ["unit"]),
        helper.make_node("Mul", ["unit", "g"], ["w"]),
        helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, pads=[4, 3]),
    ]
    inits = [
        init("v", x_of(4, 2, 8)),
        init("axes", np.array([0, 1], I64)),
        init("eps", np.array(1e-12, F32)),
        init("g", x_of(1, 1, 8)),
        init("b", x_of(4)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 4, "L"])], [tensor_info("y", F32, None)], inits
    )
    return model, lambda n: [x_of(2, 4, 3 + 5 * n)]


CASES = {
    "conv_chain": conv_chain,
    "pool_after_conv": pool_after_conv,
    "weight_norm_conv": weight_norm_conv,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_window_longer_than_the_hint_lowers_with_its_length_dynamic(name):
    model, make = CASES[name]()
    optimized = optimize_onnx(model)
    _assert_dynamic(optimized)
    for n in (1, 4, 11):  # lengths the analysis never saw
        assert_module_matches_ort(optimized, model, make(n))


def test_the_weight_norm_vectors_come_back_as_parameters():
    """The params rule on both sides: v, g and the bias are learned (read as data through
    the weight-norm computation), the one-element eps and the integer axes are not."""
    model, make = weight_norm_conv()
    optimized = optimize_onnx(model)
    trainable = sorted(tuple(p.shape) for p in optimized.parameters() if p.requires_grad)
    assert trainable == [(1, 1, 8), (4,), (4, 2, 8)]
    buffers = {tuple(b.shape) for b in optimized.buffers()}
    assert (1, 1, 8) not in buffers and (4, 2, 8) not in buffers
    assert_module_matches_ort(optimized, model, make(2))


def test_a_window_longer_than_a_static_length_is_kept_with_the_reason():
    """The refusal side: a static length the kernel does not fit is the model's error;
    no hint can change it, the Conv stays with torch's reason."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[10])
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 1, 4])],
        [tensor_info("y", F32, None)],
        [init("w", w_of(2, 1, 10))],
    )
    optimized = optimize_onnx(model)
    unconverted = report_of(optimized).unconverted
    assert list(unconverted) == ["Conv1d"]
    assert "Kernel size can't be greater" in unconverted["Conv1d"][0]


def test_admit_asks_for_larger_hints_only_when_the_size_is_too_small():
    shapes = SymbolicShapes([InputSignature("x", torch.float32, (None, 1, None), (2, 1, 5))])
    (x,) = shapes.fake_inputs
    shapes.admit(x.shape[2], 5, "a window of 5")  # the hint gives it: nothing asked
    shapes.admit(x.shape[1], 100, "a static dim")  # no symbol: the op decides
    with pytest.raises(HintTooSmall) as info:
        shapes.admit(x.shape[2] // 5 + 1, 5, "a window of 5 after a stride")
    assert info.value.hints == {("x", 2): 20}
    shapes.restart(info.value.hints)
    (x,) = shapes.fake_inputs
    shapes.admit(x.shape[2] // 5 + 1, 5, "the same, after the restart")
    assert shapes.static(x.shape[2]) is None and shapes.forced == []


def _batch_as_vector(target: list[int]):
    """tf.ones([B]): Expand(1.0, Reshape(Squeeze(Slice(Shape(mask))), target))."""
    nodes = [
        helper.make_node("Shape", ["mask"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "one"], ["b1"]),
        helper.make_node("Squeeze", ["b1", "zero"], ["b"]),
        helper.make_node("Reshape", ["b", "target"], ["bv"]),
        helper.make_node("Expand", ["onef", "bv"], ["ones"]),
        helper.make_node("Mul", ["ones", "x"], ["y"]),
    ]
    inits = [
        init("zero", np.array([0], I64)),
        init("one", np.array([1], I64)),
        init("target", np.array(target, I64)),
        init("onef", np.array(2.5, F32)),
    ]
    return make_model(
        nodes,
        [tensor_info("mask", I64, ["N", "T"]), tensor_info("x", F32, ["N"])],
        [tensor_info("y", F32, None)],
        inits,
    )


@pytest.mark.parametrize("target", [[-1], [1]], ids=["minus_one", "one"])
def test_a_size_reshaped_to_a_vector_stays_a_shape_computation(target):
    model = _batch_as_vector(target)
    optimized = optimize_onnx(model)
    _assert_dynamic(optimized)
    for n in (1, 4, 7):
        assert_module_matches_ort(optimized, model, [np.ones((n, n + 2), I64), x_of(n)])


def test_a_shape_computation_reshaped_to_the_wrong_count_is_an_error():
    from fxsurgeon.lower.shape_ops import _reshape_sym
    from fxsurgeon.lower.values import Sym

    assert _reshape_sym(Sym([3, 4]), [2, 1]) is None  # rank 2: not a Sym's
    assert _reshape_sym(Sym([7]), []) == Sym([7], scalar=True)
    assert _reshape_sym(Sym([7], scalar=True), [-1]) == Sym([7])
    with pytest.raises(LoweringError, match="Reshape of 2 element"):
        _reshape_sym(Sym([3, 4]), [3])


# --------------------------------------------------------------------------- divisible hints


def skip_concat():
    """A U-Net skip: x concatenated with upsample(maxpool(x)), defined only for even H and
    W. At the default hint 5 the analysis' Concat (4 vs 5 rows) fails."""
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "scales"], ["u"], mode="nearest"),
        helper.make_node("Concat", ["x", "u"], ["y"], axis=1),
    ]
    scales = init("scales", np.array([1, 1, 2, 2], np.float32))
    x = tensor_info("x", np.float32, ["N", 3, "H", "W"])
    return make_model(nodes, [x], [tensor_info("y", np.float32, None)], [scales])


def test_hints_outside_the_models_domain_are_retried_divisible():
    model = skip_concat()
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    assert report_of(optimized).forced_dims == []
    for n, h, w in ((1, 6, 8), (2, 10, 4), (3, 2, 14)):  # sizes the analysis never saw
        assert_module_matches_ort(optimized, model, [x_of(n, 3, h, w)])
