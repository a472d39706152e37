"""A Concat of constant fills around one tensor lowers to one F.pad, and a zero pad before a
convolution goes into its padding: both against onnxruntime, on sizes optimize never saw,
and both refused where they would not be the same computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from onnx_cases import init, make_model, run_ort, tensor_info

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(5)


def calls(module, target) -> int:
    return sum(n.op == "call_function" and n.target is target for n in module.graph.nodes)


def conv_paddings(module) -> list[tuple]:
    """The padding of every convolution: modules, or torch's functional calls."""
    found = [
        tuple(m.padding) for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)
    ]
    for node in module.graph.nodes:
        if node.op == "call_function" and "conv" in getattr(node.target, "__name__", ""):
            found.append(tuple(node.args[4]))
    return found


def fill_nodes(name: str, value, extent: int, other=None):
    """tf2onnx's ``tf.zeros((B, extent, C))``: an Expand of a [1, 1, 1] constant to
    x's batch, `extent` and x's channels (`other`'s batch, when given)."""
    source = other or "x"
    return [
        helper.make_node("Shape", [source], [f"{name}_s"]),
        helper.make_node("Slice", [f"{name}_s", "zero", "one"], [f"{name}_b"]),
        helper.make_node("Concat", [f"{name}_b", f"{name}_e", "c"], [f"{name}_shape"], axis=0),
        helper.make_node("Expand", [f"{name}_v", f"{name}_shape"], [name]),
    ], [init(f"{name}_v", np.full((1, 1, 1), value, F32)), init(f"{name}_e", [extent])]


def concat_model(before, after, operands=("x",), other=None, conv=False):
    """Concat([fill(before), *operands, fill(after)], 1) of x [B, T, 3]; `conv`: then
    Transpose to [B, 3, T'] and a Conv with kernel 3 and no padding."""
    nodes, inits = [], [init("zero", [0]), init("one", [1]), init("c", [3])]
    names = []
    for name, spec in (("pre", before), ("post", after)):
        if spec is not None:
            more, values = fill_nodes(name, spec[0], spec[1], other)
            nodes += more
            inits += values
            names.append(name)
    order = names[:1] + list(operands) + names[1:] if before is not None else list(operands) + names
    nodes.append(helper.make_node("Concat", order, ["cat"], axis=1))
    out = "cat"
    if conv:
        nodes.append(helper.make_node("Transpose", ["cat"], ["ncw"], perm=[0, 2, 1]))
        nodes.append(helper.make_node("Conv", ["ncw", "w", "bias"], ["y"], kernel_shape=[3]))
        inits += [
            init("w", rng.standard_normal((4, 3, 3)).astype(F32)),
            init("bias", np.asarray([0.1, 0.2, 0.3, 0.4], F32)),
        ]
        out = "y"
    inputs = [tensor_info("x", F32, ["B", "T", 3])]
    if other:
        inputs.append(tensor_info(other, F32, ["B2", 5]))
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
    return make_model(nodes, inputs, outputs, inits)


def optimized_and_checked(model, shapes, other=False):
    optimized = fxsurgeon.optimize(from_onnx(model))
    for b, t in shapes:
        inputs = [rng.standard_normal((b, t, 3)).astype(F32)]
        if other:
            inputs.append(rng.standard_normal((b, 5)).astype(F32))
        (want,) = run_ort(model, inputs)
        with torch.no_grad():
            got = optimized(*[torch.from_numpy(i) for i in inputs])
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
        assert got.shape == want.shape
    return optimized


SIZES = [(1, 4), (2, 7), (3, 1)]


@pytest.mark.parametrize(
    "before, after",
    [((0.0, 2), (0.0, 2)), ((1.5, 1), (1.5, 3)), ((0.0, 2), None), (None, (-2.0, 1))],
)
def test_concat_of_fills_is_one_pad(before, after):
    optimized = optimized_and_checked(concat_model(before, after), SIZES)
    assert calls(optimized, torch.cat) == 0
    assert calls(optimized, F.pad) == 1
    (pad,) = [n for n in optimized.graph.nodes if n.target is F.pad]
    extents = (0 if before is None else before[1], 0 if after is None else after[1])
    assert tuple(pad.args[1]) == (0, 0, *extents)
    assert pad.args[3] == (before or after)[0]


@pytest.mark.parametrize(
    "before, after, operands, other",
    [
        ((0.0, 2), (1.0, 2), ("x",), None),  # two values
        ((0.0, 2), (-0.0, 2), ("x",), None),  # the sign of zero is a value
        ((0.0, 2), (0.0, 2), ("x", "x"), None),  # two non-constant operands
        ((0.0, 2), (0.0, 2), ("x",), "y"),  # the fills take another input's batch
    ],
)
def test_concat_of_fills_declined(before, after, operands, other):
    model = concat_model(before, after, operands, other)
    optimized = optimized_and_checked(model, [(2, 4), (2, 6)], other=bool(other))
    assert calls(optimized, torch.cat) == 1
    assert calls(optimized, F.pad) == 0


def test_zero_pad_goes_into_the_convolution():
    """Speech2Text's subsampler: zeros concatenated around the time axis, channels-last,
    then a valid Conv1D: one conv1d with padding 2, no pad and no cat left."""
    model = concat_model((0.0, 2), (0.0, 2), conv=True)
    optimized = optimized_and_checked(model, SIZES)
    assert calls(optimized, torch.cat) == calls(optimized, F.pad) == 0
    assert conv_paddings(optimized) == [(2,)]


@pytest.mark.parametrize("before, after", [((0.0, 2), (0.0, 1)), ((1.0, 1), (1.0, 1))])
def test_pad_stays_before_the_convolution_unless_zero_and_symmetric(before, after):
    optimized = optimized_and_checked(concat_model(before, after, conv=True), SIZES)
    assert calls(optimized, F.pad) == 1
    assert conv_paddings(optimized) == [(0,)]


def pad_conv_model(pads, value=0.0):
    """Pad(x [B, 2, H, W], pads, value) -> Conv 3x3 without padding."""
    nodes = [
        helper.make_node("Pad", ["x", "pads", "value"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3]),
    ]
    inits = [
        init("pads", np.asarray(pads, np.int64)),
        init("value", np.asarray(value, F32)),
        init("w", rng.standard_normal((3, 2, 3, 3)).astype(F32)),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    return make_model(nodes, [tensor_info("x", F32, ["B", 2, "H", "W"])], outputs, inits)


@pytest.mark.parametrize(
    "pads, value, folded",
    [
        ([0, 0, 1, 2, 0, 0, 1, 2], 0.0, (1, 2)),  # ZeroPadding2D((1, 2))
        ([0, 0, 0, 1, 0, 0, 1, 1], 0.0, None),  # uneven: stays a pad
        ([0, 0, 1, 1, 0, 0, 1, 1], 0.5, None),  # not zero
        ([1, 0, 1, 1, 0, 0, 1, 1], 0.0, None),  # pads the batch
    ],
)
def test_pad_then_conv2d(pads, value, folded):
    model = pad_conv_model(pads, value)
    optimized = fxsurgeon.optimize(from_onnx(model))
    for shape in [(1, 2, 5, 6), (2, 2, 7, 4)]:
        x = rng.standard_normal(shape).astype(F32)
        (want,) = run_ort(model, [x])
        with torch.no_grad():
            got = optimized(torch.from_numpy(x))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    assert calls(optimized, F.pad) == (0 if folded else 1)
    assert conv_paddings(optimized) == [folded or (0, 0)]


def test_pads_from_a_max_of_constants_are_known_at_optimize_time():
    """tf2onnx's Conv2DTranspose to a computed output shape pads by ``Max(-(target -
    size), 0)``; where both sides are constants the Max is one constant, so the Pad is an
    F.pad of numbers (SAM's upscaling was left as an onnx2torch module)."""
    nodes = [
        helper.make_node("Max", ["a", "b"], ["m"]),
        helper.make_node("Concat", ["zeros", "m", "zeros", "m"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant"),
    ]
    inits = [
        init("a", np.asarray([-1], np.int64)),
        init("b", np.asarray([2], np.int64)),
        init("zeros", np.asarray([0, 0], np.int64)),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    model = make_model(nodes, [tensor_info("x", F32, ["B", 2, "W"])], outputs, inits)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert calls(optimized, torch.maximum) == 0
    (pad,) = [n for n in optimized.graph.nodes if n.target is F.pad]
    assert tuple(pad.args[1]) == (2, 2)
    for shape in [(1, 2, 3), (2, 2, 5)]:
        x = rng.standard_normal(shape).astype(F32)
        (want,) = run_ort(model, [x])
        np.testing.assert_array_equal(optimized(torch.from_numpy(x)).numpy(), want)
