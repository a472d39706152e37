"""A LayerNorm whose mean is a reshape of a mean over size-1 dims (``layer_norm_unit_mean``).

keras.io's timeseries Transformer normalises a one-feature series after a Conv1D: tf2onnx
takes the LayerNormalization's ReduceMean across the channels-first transpose, which a
reshape does for one channel, so the mean reads ``Reshape(ReduceMean(y, [1]), [-1, L, 1])``
while the rest reads ``x = Reshape(y, [-1, L, 1])``. A mean over size-1 dims is its input,
so that is x, which is mean(x) over x's own size-1 dims: the rule writes it so and the
layer norm rules fuse it, gamma and beta back as the layer's weights. Compared with
onnxruntime; the forms where the mean is not the mean of x are left alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from fusion_cases import assert_matches_ort, calls, graph, matches, node, optimized
from torch import nn

L = 5


def unit_mean_ln(
    channels: int = 1,
    x_shape=(-1, L, 1),
    mean_shape=(-1, L, 1),
    var_axis: int = -1,
    x_first: bool = True,
):
    """y [N, channels, L] -> x = Reshape(y), m = Reshape(ReduceMean(y, [1])); Keras 3's
    LayerNormalization of x over `var_axis` with m as the mean, plus x (the residual)."""
    make_x = node("Reshape", ["y", "x_shape"], "x")
    nodes = [
        *([make_x] if x_first else []),
        node("ReduceMean", ["y"], "m0", axes=[1], keepdims=1),
        node("Reshape", ["m0", "mean_shape"], "m"),
        *([] if x_first else [make_x]),
        node("Sub", ["x", "m"], "d"),
        node("Mul", ["d", "d"], "sq"),
        node("ReduceMean", ["sq"], "var", axes=[var_axis], keepdims=1),
        node("Add", ["var", "eps"], "ve"),
        node("Sqrt", ["ve"], "sd"),
        node("Reciprocal", ["sd"], "inv"),
        node("Mul", ["inv", "gamma"], "s"),
        node("Mul", ["x", "s"], "xs"),
        node("Neg", ["m"], "nm"),
        node("Mul", ["nm", "s"], "nms"),
        node("Add", ["nms", "beta"], "shift"),
        node("Add", ["xs", "shift"], "ln"),
        node("Add", ["ln", "x"], "out"),
    ]
    consts = {
        "x_shape": np.array(x_shape, np.int64),
        "mean_shape": np.array(mean_shape, np.int64),
        "eps": 1e-6,
        "gamma": [0.9],
        "beta": [-0.25],
    }
    return graph(nodes, {"y": ["N", channels, L]}, ["out"], consts)


@pytest.mark.parametrize("x_first", [True, False])
def test_a_mean_over_unit_dims_reshaped_as_x_is_a_layer_norm(x_first):
    model = unit_mean_ln(x_first=x_first)
    module = optimized(model)
    assert matches(module).get("layer_norm_unit_mean") == 1, matches(module)
    (norm,) = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    assert tuple(norm.normalized_shape) == (1,)
    assert sum(p.numel() for p in module.parameters()) == 2  # gamma and beta, learnable
    assert "mean" not in module.code
    assert_matches_ort(module, model)


@pytest.mark.parametrize(
    "case",
    [
        # the variance over L (not 1): m is x, so the "norm" is beta, no layer norm over L
        dict(x_shape=(-1, 1, L), mean_shape=(-1, 1, L)),
        # the mean reshaped to another shape than x: x - m broadcasts to [N, L, L]
        dict(mean_shape=(-1, 1, L)),
        # a mean over 2 channels is not the input: not x
        dict(channels=2, x_shape=(-1, L, 2)),
    ],
)
def test_a_mean_that_is_not_the_mean_of_x_is_left_alone(case):
    model = unit_mean_ln(**case)
    module = optimized(model)
    assert "layer_norm_unit_mean" not in matches(module), matches(module)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 0
    assert_matches_ort(module, model)
