"""AveragePool that onnx2torch refuses, against onnxruntime through both doors.

TF's ``AveragePooling2D(padding="same")`` on an even input with an odd kernel exports
uneven pads (``pads=[0, 0, 1, 1]``) and ``count_include_pad=0``: the divisor of a window
is the number of input elements in it. onnx2torch has no converter for uneven pads,
``auto_pad=SAME_*`` or AveragePool-19; `OnnxAvgPoolSpec` computes it by the spec and
lowers to ``avg_pool(pad(x)) / avg_pool(counted)``. Evenly padded nodes stay with
onnx2torch's own converter (``nn.AvgPool2d``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_cases import tensor_info
from test_converters_pool_pad import F32, check, model_of, rnd, targets

from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.errors import InputError
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx


def avg_pool_model(dims, opset=17, **attrs):
    return model_of(
        [helper.make_node("AveragePool", ["x"], ["y"], **attrs)],
        [tensor_info("x", F32, dims)],
        [tensor_info("y", F32, None)],
        opset=opset,
    )


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("pads", [[0, 0, 1, 1], [1, 0, 0, 1], [2, 1, 1, 0]])
def test_uneven_pads_match_onnxruntime_at_every_size(pads, count_include_pad):
    model = avg_pool_model(
        ["N", 3, "H", "W"],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=pads,
        count_include_pad=count_include_pad,
    )
    modules = check(model, [rnd(2, 3, 8, 8)], [rnd(1, 3, 7, 10)], [rnd(3, 3, 9, 5)])
    for module in modules:
        assert F.avg_pool2d in targets(module)
        # the counted elements come from the input's own size: no size is frozen
        assert not report_of(module).forced_dims, report_of(module).forced_dims


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("pads", [[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])
def test_ceil_mode_counts_no_position_past_the_pads(pads, count_include_pad):
    model = avg_pool_model(
        [2, 3, 8, 7],
        kernel_shape=[3, 2],
        strides=[2, 2],
        pads=pads,
        ceil_mode=1,
        count_include_pad=count_include_pad,
    )
    check(model, [rnd(2, 3, 8, 7)])


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(auto_pad):
    model = avg_pool_model([2, 3, 8, 7], kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad)
    check(model, [rnd(2, 3, 8, 7)])


@pytest.mark.parametrize(
    "dims, kernel, pads",
    [([2, 3, 9], [4], [1, 2]), ([1, 2, 6, 5, 4], [3, 3, 2], [0, 1, 1, 1, 0, 0])],
)
def test_one_and_three_spatial_dims(dims, kernel, pads):
    model = avg_pool_model(dims, kernel_shape=kernel, strides=[2] * len(kernel), pads=pads)
    check(model, [rnd(*dims)])


def test_opset_19_is_converted():
    model = avg_pool_model(["N", 3, 8, 8], opset=19, kernel_shape=[2, 2], pads=[1, 1, 1, 1])
    check(model, [rnd(2, 3, 8, 8)])


def test_even_pads_stay_with_onnx2torch():
    model = avg_pool_model(["N", 3, 8, 8], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    converted = import_onnx2torch().convert(model)
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in converted.modules())
    check(model, [rnd(2, 3, 8, 8)])


def test_dilated_uneven_pool_is_refused_by_name():
    model = avg_pool_model(
        ["N", 3, 9, 9], opset=19, kernel_shape=[2, 2], dilations=[2, 2], pads=[0, 0, 1, 1]
    )
    with pytest.raises(InputError, match="dilated average pooling"):
        from_onnx(model)
    with pytest.raises(NotImplementedError, match="dilated average pooling"):
        import_onnx2torch().convert(model)


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]},  # even: onnx2torch's AvgPool3d
        {"kernel_shape": [3, 3, 3], "strides": [1, 2, 2], "pads": [1, 1, 1, 1, 1, 1]},
        {"kernel_shape": [3, 2, 3], "strides": [2, 2, 1], "pads": [1, 0, 1, 1, 1, 1]},
        {"kernel_shape": [3, 3, 2], "strides": [2, 2, 2], "auto_pad": "SAME_UPPER"},
        {"kernel_shape": [3, 3, 3], "strides": [2, 2, 2], "ceil_mode": 1},
    ],
)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_three_spatial_dims_are_two_2d_pools_in_any_dtype(attrs, count_include_pad):
    """torch has no CPU avg_pool3d for bfloat16 or half: a 3-D window's mean is the mean
    over D of the means over (H, W) (the divisor a product of per-axis counts), so the
    lowering writes two avg_pool2d and a bfloat16 copy runs, near the float32 result."""
    model = avg_pool_model(["N", 2, 5, 7, 6], count_include_pad=count_include_pad, **attrs)
    modules = check(model, [rnd(2, 2, 5, 7, 6)], [rnd(1, 2, 5, 7, 6)])
    x = torch.from_numpy(rnd(2, 2, 5, 7, 6))
    for module in modules:
        assert F.avg_pool3d not in targets(module) and F.avg_pool2d in targets(module)
        with torch.no_grad():
            want = module(x)
            low = module.to(torch.bfloat16)(x.to(torch.bfloat16))
        torch.testing.assert_close(low.float(), want, atol=3e-2, rtol=3e-2)


def test_three_spatial_dims_keep_avg_pool3d_where_the_channels_are_dynamic():
    """The unfold back needs the channel count: a dynamic one keeps F.avg_pool3d."""
    model = avg_pool_model(["N", "C", 4, 4, 4], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    for module in check(model, [rnd(1, 3, 4, 4, 4)]):
        assert F.avg_pool3d in targets(module)
