"""Ties without the TF model when one read of a variable carries extra unit dims.

tf2onnx's transpose optimizer stores a LayerNormalization gamma [C] that it reads in a
channels-first layout as a second initializer [1, C, 1] (keras.io's MLP-Mixer applies
one LayerNormalization in both layouts). Equal values up to unit dims are one variable
(`fxsurgeon.params.ties`); different values stay two parameters.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper
from onnx_cases import init, run_ort, tensor_info

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32


def scale_in_two_layouts(second: np.ndarray) -> onnx.ModelProto:
    """y = x * gamma + transpose(transpose(x) * gamma'), gamma [4], gamma' [1, 4, 1]."""
    nodes = [
        helper.make_node(
            "Mul", ["x", "block/ln/mul/ReadVariableOp/resource:0"], ["a"], name="block/ln/mul"
        ),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="block/t"),
        helper.make_node(
            "Mul", ["xt", "block/ln/mul/ReadVariableOp/resource__7"], ["bt"], name="block/ln_1/mul"
        ),
        helper.make_node("Transpose", ["bt"], ["b"], perm=[0, 2, 1], name="block/t_1"),
        helper.make_node("Add", ["a", "b"], ["y"], name="block/add"),
    ]
    gamma = np.random.default_rng(0).standard_normal(4).astype(F32)
    inits = [
        init("block/ln/mul/ReadVariableOp/resource:0", gamma),
        init("block/ln/mul/ReadVariableOp/resource__7", second(gamma).reshape(1, 4, 1)),
    ]
    graph = helper.make_graph(
        nodes,
        "ties",
        [tensor_info("x", F32, ["N", 3, 4])],
        [tensor_info("y", F32, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _check(model: onnx.ModelProto, trainable: int) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(F32)
    (expected,) = run_ort(model, [x])
    for module in (
        fxsurgeon.optimize(from_onnx(model)),
        fxsurgeon.optimize(import_onnx2torch().convert(model)),
    ):
        assert report_of(module).trainable_after == trainable
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_a_copy_with_unit_dims_is_one_parameter():
    _check(scale_in_two_layouts(lambda g: g), trainable=4)


def test_different_values_with_unit_dims_stay_two_parameters():
    _check(scale_in_two_layouts(lambda g: g[::-1].copy()), trainable=8)
