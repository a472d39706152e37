"""Linear weights computed from stored values only (patterns/linear.py `_stored_weight`).

Transfo-XL's adaptive softmax head reads ``einsum("ibd,nd->ibn", h, concat([W, cluster_W]))
+ concat([b, cluster_b])``: tf2onnx writes a MatMul by a Transpose of a Concat of two
variables, and an Add of a Concat. Each variable stays its own parameter, and the product
is one F.linear. An operand that reads an activation is no weight."""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from fusion_cases import assert_matches_ort, calls, graph, matches, node, optimized, rng
from torch import nn

from fxsurgeon.tensorflow import from_onnx


def head_onnx(right: str = "wt") -> object:
    """x [N, 3, 4] @ Transpose(Concat(w1 [5, 4], w2 [2, 4])) + Concat(b1, b2); with
    `right="vt"` the right operand is the transpose of an input instead."""
    nodes = [
        node("Concat", ["w1", "w2"], "w", axis=0),
        node("Transpose", ["w"], "wt", perm=[1, 0]),
        node("Transpose", ["v"], "vt", perm=[1, 0]),
        node("MatMul", ["x", right], "m"),
        node("Concat", ["b1", "b2"], "b", axis=0),
        node("Add", ["m", "b"], "y"),
    ]
    consts = {
        "w1": rng.standard_normal((5, 4)),
        "w2": rng.standard_normal((2, 4)),
        "b1": rng.standard_normal(5),
        "b2": rng.standard_normal(2),
    }
    return graph(nodes, {"x": ["N", 3, 4], "v": [7, 4]}, ["y"], consts)


def test_a_transposed_concat_of_weights_is_one_linear_with_its_concat_bias():
    model = head_onnx()
    module = optimized(model)
    assert matches(module).get("linear_matmul_1") == 1
    assert matches(module).get("linear_bias_1") == 1
    assert calls(module, F.linear, nn.Linear) == 1
    names = {name for name, _ in module.named_parameters()}
    assert len(names) == 4, names  # w1, w2, b1, b2: each its own parameter
    assert_matches_ort(module, model)


def test_a_transposed_activation_is_no_weight():
    model = head_onnx(right="vt")
    module = optimized(model)
    assert "linear_matmul_1" not in matches(module)
    assert calls(module, F.linear, nn.Linear) == 0
    assert_matches_ort(module, model)


def scaled_onnx(scale: str = "c") -> object:
    """StyleGAN's equalized Dense: (x [N, 4] @ (Mul(w [4, 5], c) ) + b) * lr; with
    `scale="s"` the kernel is scaled by an input (per-call data) instead."""
    nodes = [
        node("Mul", ["w", scale], "ws"),
        node("Neg", ["ws"], "wn"),
        node("Div", ["wn", "d"], "wd"),
        node("MatMul", ["x", "wd"], "m"),
        node("Add", ["m", "b"], "mb"),
        node("Mul", ["mb", "lr"], "y"),
    ]
    consts = {
        "w": rng.standard_normal((4, 5)),
        "b": rng.standard_normal(5),
        "c": rng.standard_normal(()) ** 2 + 0.5,
        "d": rng.standard_normal(()) ** 2 + 0.5,
        "lr": rng.standard_normal(()),
    }
    inputs = {"x": ["N", 4], **({"s": [1]} if scale == "s" else {})}
    return graph(nodes, inputs, ["y"], consts)


def test_a_weight_scaled_by_numbers_is_a_linear_of_the_scaled_weight():
    model = scaled_onnx()
    module = optimized(model)
    assert matches(module).get("linear_matmul_1") == 1
    assert matches(module).get("linear_bias_1") == 1
    assert calls(module, F.linear, nn.Linear) == 1
    names = {name for name, _ in module.named_parameters()}
    assert len(names) == 2, names  # w and b: the scale is applied to w each call
    assert_matches_ort(module, model)


def test_a_weight_scaled_by_an_input_is_no_weight():
    model = scaled_onnx(scale="s")
    module = optimized(model)
    assert "linear_matmul_1" not in matches(module)
    assert calls(module, F.linear, nn.Linear) == 0
    assert_matches_ort(module, model)


def mixed_precision_onnx(right: str = "w") -> object:
    """A Keras ``mixed_float16`` Dense: Cast(x, f16) @ Cast(w [4, 5], f16) + Cast(b, f16),
    then Cast to f32 (the variables stay float32, the layer computes in float16); with
    `right="v"` the right operand is the float16 cast of an input instead."""
    f16, f32_ = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    nodes = [
        node("Cast", ["x"], "x16", to=f16),
        node("Cast", [right], "w16", to=f16),
        node("Cast", ["b"], "b16", to=f16),
        node("MatMul", ["x16", "w16"], "m"),
        node("Add", ["m", "b16"], "mb"),
        node("Cast", ["mb"], "y", to=f32_),
    ]
    consts = {"w": rng.standard_normal((4, 5)), "b": rng.standard_normal(5)}
    inputs = {"x": ["N", 4], **({"v": [4, 5]} if right == "v" else {})}
    return graph(nodes, inputs, ["y"], consts)


def _feeds(model) -> list:
    return [
        torch.from_numpy(rng.standard_normal((3, 4) if i == 0 else (4, 5)).astype(np.float32))
        for i in range(len(model.graph.input))
    ]


def test_a_float16_cast_of_a_weight_is_a_linear_of_the_cast_weight():
    model = mixed_precision_onnx()
    module = optimized(model)
    assert matches(module).get("linear_matmul_1") == 1
    assert calls(module, F.linear, nn.Linear) == 1
    params = dict(module.named_parameters())
    assert len(params) == 2 and all(p.dtype == torch.float32 for p in params.values()), params
    # the bias stays an Add: ONNX rounds x @ W to float16 before it, addmm would round once
    assert "linear_bias_1" not in matches(module)
    feeds = _feeds(model)
    with torch.no_grad():
        assert torch.equal(module(*feeds), from_onnx(model)(*feeds))


def test_a_float16_cast_of_an_input_is_no_weight():
    model = mixed_precision_onnx(right="v")
    module = optimized(model)
    assert "linear_matmul_1" not in matches(module)
    assert calls(module, F.linear, nn.Linear) == 0
    feeds = _feeds(model)
    with torch.no_grad():
        assert torch.equal(module(*feeds), from_onnx(model)(*feeds))
