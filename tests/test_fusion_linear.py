"""Convolution fusions (patterns/conv.py): Keras Conv1D is F.conv1d, not a conv2d in unsqueezes."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from fusion_cases import (
    assert_matches_ort,
    calls,
    graph,
    keras_vs_tf,
    matches,
    node,
    optimized,
    rng,
)
from torch import nn

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables


def conv1d_onnx(expose: str | None = None, bias_shape=(1, 5, 1)):
    """tf2onnx's Conv1D on x [N, 9, 4] (NWC): Unsqueeze, NCHW Transpose, Conv, Squeeze, Add."""
    nodes = [
        node("Unsqueeze", ["x", "axis1"], "u"),
        node("Transpose", ["u"], "t", perm=[0, 3, 1, 2]),
        node("Conv", ["t", "w"], "c", kernel_shape=[1, 3]),
        node("Squeeze", ["c", "axis2"], "s"),
        node("Add", ["s", "b"], "y"),
    ]
    consts = {
        "w": rng.standard_normal((5, 4, 1, 3)) * 0.5,
        "b": rng.standard_normal(bias_shape),
        "axis1": np.array([1], dtype=np.int64),
        "axis2": np.array([2], dtype=np.int64),
    }
    return graph(nodes, {"x": ["N", 9, 4]}, ["y"] + ([expose] if expose else []), consts)


def test_tf2onnx_conv1d_is_conv1d_with_its_bias():
    model = conv1d_onnx()
    module = optimized(model)
    assert matches(module).get("conv1d_1") == 1 and matches(module).get("conv1d_bias_1") == 1
    assert calls(module, F.conv1d, nn.Conv1d) == 1 and calls(module, F.conv2d, nn.Conv2d) == 0
    assert_matches_ort(module, model)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"expose": "t"}, "the NCHW input is also an output"),
        ({"bias_shape": (7,)}, "a [7] addend adds along W, not per channel"),
    ],
)
def test_conv1d_refusals(kwargs, why):
    model = conv1d_onnx(**kwargs)
    module = optimized(model)
    if "expose" in kwargs:
        assert calls(module, F.conv1d, nn.Conv1d) == 0, why
    else:
        assert "conv1d_bias_1" not in matches(module), why
    assert_matches_ort(module, model)


def test_keras3_conv1d_is_one_conv1d_with_tf_parameters():
    import_tensorflow()
    import keras

    inp = keras.Input((12, 4))
    h = keras.layers.Conv1D(6, 3, strides=2, name="c1")(inp)
    h = keras.layers.Conv1D(6, 3, dilation_rate=2, padding="same", name="c2")(h)
    model = keras.Model(inp, h)
    randomize_variables(model, 0)
    x = np.random.default_rng(4).standard_normal((3, 12, 4)).astype(np.float32)
    module, diff = keras_vs_tf(model, [x])
    assert calls(module, F.conv1d, nn.Conv1d) == 2 and calls(module, F.conv2d, nn.Conv2d) == 0
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert diff <= 1e-5
