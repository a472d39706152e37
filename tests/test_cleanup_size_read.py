"""Sizes read back from values that state them (patterns/cleanup.py ``size_read``).

On dynamic sides tf2onnx writes a channels-first LayerNormalization's mean through a round
trip ``Reshape(m, [1, -1, H, W, 1])`` and back to ``[-1, 1, H', W']``, H and W read by Shape
from the mean and H', W' from the first reshape (keras.io ShiftViT's patch merging), and
another op reads the mean's H and W too. Those size reads keep the reshape and the mean out
of any match: read at their source (the reshape's own target entry; the mean's input, whose
size it keeps on the dims it does not reduce), the round trip goes and the layer norm fuses.
A reduction without keepdim moves the dims after the reduced one: its sizes stay its own."""

from __future__ import annotations

import numpy as np
import torch
from onnx import helper

from tests.onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    init,
    make_model,
    optimize_onnx,
    tensor_info,
)

F32, I64 = np.float32, np.int64
C = 4


def _n(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, [outputs], **attrs)


def _sizes(value: str, dims: tuple[int, ...]) -> list:
    nodes = [_n("Shape", [value], f"{value}_shape")]
    for d in dims:
        nodes.append(_n("Gather", [f"{value}_shape", f"i{d}"], f"{value}_{d}"))
        nodes.append(_n("Unsqueeze", [f"{value}_{d}", "ax0"], f"{value}_{d}u"))
    return nodes


def channels_layer_norm_model():
    nodes = [
        _n("ReduceMean", ["x"], "m", axes=[1], keepdims=1),
        *_sizes("m", (2, 3)),
        _n("Concat", ["one", "minus_one", "m_2u", "m_3u", "one"], "s1", axis=0),
        _n("Reshape", ["m", "s1"], "r1"),
        *_sizes("r1", (2, 3)),
        _n("Concat", ["minus_one", "one", "r1_2u", "r1_3u"], "s2", axis=0),
        _n("Reshape", ["r1", "s2"], "mr"),
        _n("Sub", ["x", "mr"], "d"),
        _n("Mul", ["d", "d"], "sq"),
        _n("ReduceMean", ["sq"], "v", axes=[1], keepdims=1),
        _n("Add", ["v", "eps"], "ve"),
        _n("Sqrt", ["ve"], "sd"),
        _n("Reciprocal", ["sd"], "inv"),
        _n("Mul", ["inv", "gamma"], "s"),
        _n("Mul", ["m", "s"], "ms"),
        _n("Sub", ["beta", "ms"], "b2"),
        _n("Mul", ["x", "s"], "xs"),
        _n("Add", ["xs", "b2"], "y"),
        # the mean's H and W read by another op (ShiftViT's zero fill of a shifted group)
        _n("Concat", ["m_2u", "m_3u"], "hw", axis=0),
        _n("ConstantOfShape", ["hw"], "z", value=helper.make_tensor("v", 1, [1], [2.0])),
    ]
    rng = np.random.default_rng(0)
    inits = [
        init("ax0", np.array([0], I64)),
        init("i2", np.array(2, I64)),
        init("i3", np.array(3, I64)),
        init("one", np.array([1], I64)),
        init("minus_one", np.array([-1], I64)),
        init("eps", np.array(1e-5, F32)),
        init("gamma", rng.standard_normal((C, 1, 1)).astype(F32)),
        init("beta", rng.standard_normal((C, 1, 1)).astype(F32)),
    ]
    return make_model(
        nodes,
        [tensor_info("x", F32, ["N", C, "H", "W"])],
        [tensor_info("y", F32, None), tensor_info("z", F32, None)],
        inits,
    )


def _layer_norms(module) -> int:
    found = 0
    for node in module.graph.nodes:
        if node.op == "call_function" and node.target is torch.nn.functional.layer_norm:
            found += 1
        if node.op == "call_module" and isinstance(
            module.get_submodule(node.target), torch.nn.LayerNorm
        ):
            found += 1
    return found


def test_a_round_trip_whose_sizes_are_read_back_fuses_the_layer_norm():
    model = channels_layer_norm_model()
    module = optimize_onnx(model)
    assert_lowered(module)
    assert _layer_norms(module) == 1
    rng = np.random.default_rng(1)
    for h, w in ((3, 5), (6, 2)):
        x = rng.standard_normal((2, C, h, w)).astype(F32)
        assert_module_matches_ort(module, model, [x])


def test_a_reduction_without_keepdim_keeps_its_own_sizes():
    """m = ReduceMean(x [N, C, H, W], axis 1, no keepdim) is [N, H, W]: m's dim 1 is H, not
    x's C (a rewrite to x.size(1) would fill C rows)."""
    nodes = [
        _n("ReduceMean", ["x"], "m", axes=[1], keepdims=0),
        *_sizes("m", (1, 2)),
        _n("Concat", ["m_1u", "m_2u"], "hw", axis=0),
        _n("ConstantOfShape", ["hw"], "z", value=helper.make_tensor("v", 1, [1], [2.0])),
        _n("Add", ["m", "z"], "y"),
    ]
    inits = [
        init("ax0", np.array([0], I64)),
        init("i1", np.array(1, I64)),
        init("i2", np.array(2, I64)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", C, "H", "W"])], [tensor_info("y", F32, None)], inits
    )
    module = optimize_onnx(model)
    x = np.random.default_rng(2).standard_normal((2, C, 3, 5)).astype(F32)
    assert_module_matches_ort(module, model, [x])
