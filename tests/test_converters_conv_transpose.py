"""ConvTranspose that onnx2torch refuses, against onnxruntime through both doors.

TF's ``Conv2DTranspose(3, strides=2, padding="same")`` exports ``pads=[0, 0, 1, 1]``
(uneven), which onnx2torch cannot convert; ``auto_pad=SAME_*`` and ``output_shape`` it
converts without their padding. `OnnxConvTransposeSpec` computes the full transposed
convolution and removes the pads (``F.conv_transpose2d`` then a slice, sizes
symbolic); the weight and bias stay parameters. Evenly padded nodes keep onnx2torch's
``nn.ConvTranspose2d``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_cases import assert_lowered, init, tensor_info
from test_converters_pool_pad import F32, both_doors, check, model_of, rnd, targets

from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.errors import InputError
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx


def conv_transpose_model(dims, weight_shape, bias=True, **attrs):
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    inits = [init("w", rnd(*weight_shape))]
    if bias:
        inits.append(init("b", rnd(weight_shape[1] * attrs.get("group", 1))))
    return model_of(
        [helper.make_node("ConvTranspose", inputs, ["y"], **attrs)],
        [tensor_info("x", F32, dims)],
        [tensor_info("y", F32, None)],
        inits,
    )


@pytest.mark.parametrize("pads", [[0, 0, 1, 1], [1, 0, 0, 2], [2, 1, 1, 1]])
def test_uneven_pads_match_onnxruntime_at_every_size(pads):
    model = conv_transpose_model(
        ["N", 4, "H", "W"], (4, 3, 3, 3), kernel_shape=[3, 3], strides=[2, 2], pads=pads
    )
    modules = check(model, [rnd(2, 4, 5, 6)], [rnd(1, 4, 8, 3)])
    for module in modules:
        assert F.conv_transpose2d in targets(module)
        assert not report_of(module).forced_dims
        assert report_of(module).trainable_after == 4 * 3 * 3 * 3 + 3


@pytest.mark.parametrize("bias", [True, False])
def test_negative_end_pads_are_keras_output_padding(bias):
    """tf2onnx writes Keras' ``Conv2DTranspose(strides=2, output_padding=1)`` as ``pads=[0, 0,
    -1, -1]`` (which ONNX's shape inference and onnxruntime refuse): TF's output is one wider
    than the full transposed convolution, the new positions no input reaches (the bias),
    torch's ``output_padding``. Both doors, two sizes."""
    w, b = rnd(4, 3, 3, 3), rnd(3)
    inits = [init("w", w)] + ([init("b", b)] if bias else [])
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w", "b"][: len(inits) + 1],
        ["y"],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[0, 0, -1, -1],
    )
    graph = helper.make_graph(
        [node],
        "case",
        [tensor_info("x", F32, ["N", 4, "H", "W"])],
        [tensor_info("y", F32, ["N", 3, "H2", "W2"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for module in both_doors(model):
        assert F.conv_transpose2d in targets(module)
        assert_lowered(module)
        for x in (rnd(2, 4, 5, 6), rnd(1, 4, 8, 3)):
            x = torch.from_numpy(x)
            want = F.conv_transpose2d(
                x, torch.from_numpy(w), torch.from_numpy(b) if bias else None, 2, 0, 1
            )
            torch.testing.assert_close(module(x), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("output_padding", [[0, 0], [1, 0]])
def test_same_auto_pad(auto_pad, output_padding):
    model = conv_transpose_model(
        ["N", 4, "H", "W"],
        (4, 2, 3, 4),
        kernel_shape=[3, 4],
        strides=[2, 3],
        auto_pad=auto_pad,
        output_padding=output_padding,
    )
    check(model, [rnd(2, 4, 5, 6)], [rnd(1, 4, 3, 2)])


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER"])
def test_output_shape(auto_pad):
    model = conv_transpose_model(
        [2, 4, 5, 6],
        (4, 2, 3, 3),
        kernel_shape=[3, 3],
        strides=[2, 2],
        output_shape=[10, 9],
        auto_pad=auto_pad,
    )
    check(model, [rnd(2, 4, 5, 6)])


@pytest.mark.parametrize(
    "dims, weight, pads",
    [([2, 4, 7], (4, 3, 4), [0, 1]), ([1, 2, 3, 4, 5], (2, 2, 3, 3, 2), [0, 1, 1, 1, 0, 0])],
)
def test_one_and_three_spatial_dims(dims, weight, pads):
    model = conv_transpose_model(dims, weight, bias=False, strides=[2] * (len(dims) - 2), pads=pads)
    check(model, [rnd(*dims)])


def test_groups_and_dilations():
    model = conv_transpose_model(
        ["N", 4, "H", 6],
        (4, 3, 3, 3),
        group=2,
        dilations=[2, 1],
        strides=[2, 2],
        pads=[0, 1, 2, 0],
    )
    check(model, [rnd(2, 4, 5, 6)])


def test_even_pads_stay_with_onnx2torch():
    model = conv_transpose_model(["N", 4, 5, 5], (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
    converted = import_onnx2torch().convert(model)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in converted.modules())
    check(model, [rnd(2, 4, 5, 5)])


def test_output_shape_of_an_input_of_unknown_size_is_refused_by_name():
    model = conv_transpose_model(
        ["N", 4, "H", "W"], (4, 2, 3, 3), strides=[2, 2], output_shape=[10, 12]
    )
    with pytest.raises(InputError, match="output_shape with an input of unknown spatial size"):
        from_onnx(model)
    with pytest.raises(NotImplementedError, match="output_shape"):
        import_onnx2torch().convert(model)
