"""Nearest Resize at a whole-number upscale: F.interpolate's nearest-exact at every size.

Rule `repeat_factors` (frontdoor/converters/resize.py): where each resized dim's output
is ``s * in`` for a whole ``s`` (constant scales, or sizes that the shape analysis shows
are ``s`` times the input's run-time lengths, as tf2onnx writes Keras' UpSampling2D and
tf.image.resize by ``2 * shape``), the nearest forms whose pixel is ``p // s`` (asymmetric
or tf_half_pixel_for_nn with floor, half_pixel or pytorch_half_pixel with either
round_prefer mode, Resize-10) are torch's nearest-exact: the lowered graph holds it and
no gather, matches onnxruntime at image sizes never seen at optimize time, eager and
compiled in one graph. A non-whole scale, or a rounding whose pixel is not ``p // s``
(ceil, floor of half_pixel), keeps the spec's gathers, and still matches onnxruntime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, run_ort
from onnx_cases import tensor_info as info

import fxsurgeon
from fxsurgeon.frontdoor.converters.resize import (
    EXACT_BELOW,
    Sampling,
    repeat_factors,
    whole_factor,
)
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(21)
SHAPES = [(2, 3, 5, 7), (1, 3, 1, 1), (3, 3, 16, 9), (1, 3, 33, 20)]  # optimized at the first


def _dynamic_sizes_model(attrs, factors):
    """tf2onnx's Resize of a dynamic image to ``factors * (H, W)``: sizes =
    Concat(Shape(x)[:2], Shape(x)[2:] * factors)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "two"], ["lead"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("Mul", ["hw", "factors"], ["target"]),
        helper.make_node("Concat", ["lead", "target"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up", **attrs),
    ]
    inits = [
        init("zero", np.array([0], np.int64)),
        init("two", np.array([2], np.int64)),
        init("four", np.array([4], np.int64)),
        init("factors", np.array(factors, np.int64)),
    ]
    dims = ["N", 3, "H", "W"]
    return make_model(nodes, [info("x", F32, dims)], [info("y", F32, None)], inits)


def _dynamic_scales_model(attrs, scales, opset=19):
    names = ["x", "scales"] if opset == 10 else ["x", "", "scales"]
    node = helper.make_node("Resize", names, ["y"], name="up", **attrs)
    dims = ["N", 3, "H", "W"]
    inits = [init("scales", np.array(scales, F32))]
    return make_model([node], [info("x", F32, dims)], [info("y", F32, None)], inits, opset=opset)


def _nearest(transform, rounding):
    return {
        "mode": "nearest",
        "coordinate_transformation_mode": transform,
        "nearest_mode": rounding,
    }


def _targets(optimized):
    return [n.target for n in optimized.graph.nodes if n.op == "call_function"]


def _check_everywhere(model, fast):
    """Optimized at SHAPES[0]; eager and compiled (fullgraph, dynamic) == onnxruntime at
    every shape, pixel for pixel; `fast`: F.interpolate and no gather, else gathers."""
    x0 = rng.random(SHAPES[0], dtype=F32)
    optimized = fxsurgeon.optimize(from_onnx(model), example_inputs=(torch.from_numpy(x0),))
    assert_lowered(optimized)
    targets = _targets(optimized)
    assert (F.interpolate in targets) == fast, targets
    calls = [n for n in optimized.graph.nodes if n.target is F.interpolate]
    assert all(n.kwargs.get("mode", n.args[3:4]) == ("nearest-exact",) for n in calls)
    # the gathers: one per resized dim (H, W), the batch and channels (scale 1) left alone
    assert targets.count(torch.index_select) == (0 if fast else 2), targets
    compiled = torch.compile(optimized, fullgraph=True, backend="aot_eager", dynamic=True)
    converted = from_onnx(model)
    for shape in SHAPES:
        x = rng.random(shape, dtype=F32)
        (want,) = run_ort(model, [x])
        for module in (optimized, compiled, converted):
            with torch.no_grad():
                got = module(torch.from_numpy(x)).numpy()
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)  # the same pixels: bit for bit
    return optimized


FAST_FORMS = [
    ("asymmetric", "floor"),  # TF1's resize_nearest_neighbor (tf2onnx)
    ("tf_half_pixel_for_nn", "floor"),  # TF2's tf.image.resize nearest (tf2onnx)
    ("half_pixel", "round_prefer_floor"),
    ("half_pixel", "round_prefer_ceil"),
    ("pytorch_half_pixel", "round_prefer_floor"),
    ("pytorch_half_pixel", "round_prefer_ceil"),
]


@pytest.mark.parametrize("transform, rounding", FAST_FORMS)
@pytest.mark.parametrize("factors", [[2, 2], [3, 5]])
def test_whole_upscale_of_run_time_sizes_is_nearest_exact_and_matches_onnxruntime(
    transform, rounding, factors
):
    _check_everywhere(_dynamic_sizes_model(_nearest(transform, rounding), factors), fast=True)


@pytest.mark.parametrize("transform, rounding", FAST_FORMS[:3])
def test_whole_scales_of_a_dynamic_image_are_nearest_exact(transform, rounding):
    model = _dynamic_scales_model(_nearest(transform, rounding), [1, 1, 2, 4])
    _check_everywhere(model, fast=True)


def test_resize10_whole_upscale_is_nearest_exact():
    model = _dynamic_scales_model({"mode": "nearest"}, [1, 1, 3, 2], opset=10)
    _check_everywhere(model, fast=True)


@pytest.mark.parametrize(
    "transform, rounding",
    [
        ("asymmetric", "ceil"),  # k + 1 where r > 0
        ("asymmetric", "round_prefer_floor"),  # k + 1 where r > s / 2
        ("half_pixel", "floor"),  # k - 1 where r < (s - 1) / 2
        ("tf_half_pixel_for_nn", "round_prefer_ceil"),
        ("align_corners", "round_prefer_floor"),  # c depends on the input's length
    ],
)
def test_roundings_whose_pixel_is_not_repeated_keep_the_gathers(transform, rounding):
    _check_everywhere(_dynamic_sizes_model(_nearest(transform, rounding), [3, 2]), fast=False)


def test_a_scale_that_is_not_whole_keeps_the_gathers():
    model = _dynamic_scales_model(_nearest("asymmetric", "floor"), [1, 1, 2.5, 2])
    _check_everywhere(model, fast=False)


def test_sizes_not_a_multiple_of_the_input_keep_the_gathers():
    """Shape(x)[2:] * 2 + 1: not s * in at every size."""
    model = _dynamic_sizes_model(_nearest("tf_half_pixel_for_nn", "floor"), [2, 2])
    graph = model.graph
    graph.initializer.append(init("one", np.array([1, 1], np.int64)))
    mul = next(n for n in graph.node if n.op_type == "Mul")
    mul.output[0] = "twice"
    graph.node.insert(
        list(graph.node).index(mul) + 1, helper.make_node("Add", ["twice", "one"], ["target"])
    )
    _check_everywhere(model, fast=False)


@pytest.mark.parametrize("mode, transform", [("linear", "half_pixel"), ("linear", "align_corners")])
def test_linear_to_run_time_sizes_is_f_interpolate_and_matches_onnxruntime(mode, transform):
    """Linear's weights are continuous in the source coordinate: torch's formulas
    (align_corners False / True) are the spec's half_pixel / align_corners at any scale."""
    attrs = {"mode": mode, "coordinate_transformation_mode": transform}
    model = _dynamic_sizes_model(attrs, [2, 3])
    x0 = rng.random(SHAPES[0], dtype=F32)
    optimized = fxsurgeon.optimize(from_onnx(model), example_inputs=(torch.from_numpy(x0),))
    assert F.interpolate in _targets(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="aot_eager", dynamic=True)
    for shape in SHAPES:
        x = rng.random(shape, dtype=F32)
        assert_module_matches_ort(optimized, model, [x])
        assert_module_matches_ort(compiled, model, [x])


def test_whole_factor_reads_lengths_and_bounds():
    import sympy

    h = sympy.Symbol("h", positive=True, integer=True)
    assert whole_factor(h, 2 * h) == 2
    assert whole_factor(h, 2 * h + 1) is None
    assert whole_factor(h, 7) is None
    assert whole_factor(3, 12) == 4
    assert whole_factor(3, 10) is None
    assert whole_factor(4, 2) is None  # a downscale
    assert whole_factor(EXACT_BELOW // 2, EXACT_BELOW) is None  # past float32's margin
    how = Sampling("nearest", "half_pixel", "floor")
    assert repeat_factors(how, [h, 3], [2 * h, 6]) is None  # floor of half_pixel: k - 1
    how = Sampling("nearest", "half_pixel", "round_prefer_floor")
    assert repeat_factors(how, [h, 3], [2 * h, 6]) == [2, 2]
