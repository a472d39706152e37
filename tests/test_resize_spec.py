"""ONNX Resize in every mode (opsets 10-19) against onnxruntime, table-driven.

Every combination of mode, coordinate_transformation_mode and nearest_mode at an
upscale and a downscale by non-integer scales; then scales vs sizes, ``axes``,
keep_aspect_ratio_policy, antialias, cubic's ``a`` and ``exclude_outside``, roi and
extrapolation, 1-D to 5-D. Each case runs the converter's module (door B unoptimized) and
the lowered graph; a few compile in one graph at two sizes. Forms onnxruntime refuses
(cubic over 3 dims, linear over the batch) are checked against ONNX's reference
implementation. What the spec does not define is refused naming the node and attribute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, run_ort
from onnx_cases import tensor_info as info

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(13)


def resize(attrs, shape, scales=None, sizes=None, roi=None, opset=19, dynamic=False):
    """A one-Resize model; the batch dim named (dynamic) when `dynamic`."""
    names = ["x", "roi" if roi is not None else "", "scales" if scales is not None else ""]
    names.append("sizes" if sizes is not None else "")
    while names[-1] == "":
        names.pop()
    if opset == 10:
        names = ["x", "scales"]
    inits = [init("roi", np.array(roi, F32))] if roi is not None else []
    inits += [init("scales", np.array(scales, F32))] if scales is not None else []
    inits += [init("sizes", np.array(sizes, np.int64))] if sizes is not None else []
    node = helper.make_node("Resize", names, ["y"], name="my_resize", **attrs)
    dims = ["N", *shape[1:]] if dynamic else list(shape)
    return make_model([node], [info("x", F32, dims)], [info("y", F32, None)], inits, opset=opset)


def check(model, shape, want=None):
    """The converter's module and the lowered graph == onnxruntime (or `want`)."""
    x = rng.random(shape, dtype=F32)
    if want is None:
        (want,) = run_ort(model, [x])
    else:
        want = want(model, x)
    eager = from_onnx(model)(torch.from_numpy(x)).numpy()
    assert eager.shape == want.shape
    np.testing.assert_allclose(eager, want, atol=1e-5, rtol=0)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    with torch.no_grad():
        got = optimized(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    return optimized


TRANSFORMS = [
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
]
ROUNDINGS = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SCALES = {"up": [1, 1, 1.7, 2.3], "down": [1, 1, 0.6, 0.45]}
ROI = [0, 0, 0.1, -0.2, 1, 1, 0.8, 1.1]  # partly outside the image: extrapolated


def _attrs(mode, transform, rounding=None, **more):
    attrs = {"mode": mode, "coordinate_transformation_mode": transform, **more}
    if rounding is not None:
        attrs["nearest_mode"] = rounding
    if transform == "tf_crop_and_resize":
        attrs["extrapolation_value"] = -2.0
    return attrs


GRID = [
    (mode, transform, rounding)
    for mode in ("nearest", "linear", "cubic")
    for transform in TRANSFORMS
    for rounding in (ROUNDINGS if mode == "nearest" else [None])
]


@pytest.mark.parametrize("way", ["up", "down"])
@pytest.mark.parametrize("mode, transform, rounding", GRID)
def test_every_mode_transform_and_rounding_matches_onnxruntime(mode, transform, rounding, way):
    roi = ROI if transform == "tf_crop_and_resize" else None
    scales = SCALES[way]
    if transform == "half_pixel_symmetric" and mode == "nearest" and way == "down":
        scales = [1, 1, 0.6, 0.5]  # 0.45 of 9: a pixel 2e-7 past halfway (see test_quirk)
    model = resize(_attrs(mode, transform, rounding), (2, 3, 5, 9), scales=scales, roi=roi)
    check(model, (2, 3, 5, 9))


CUBICS = [
    {"cubic_coeff_a": -0.5},
    {"cubic_coeff_a": -0.5, "exclude_outside": 1},  # TF's bicubic
    {"exclude_outside": 1},
]


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("cubic", CUBICS)
def test_cubic_coefficient_and_edge_rule_match_onnxruntime(transform, cubic):
    roi = ROI if transform == "tf_crop_and_resize" else None
    model = resize(_attrs("cubic", transform, **cubic), (2, 3, 5, 9), SCALES["down"], roi=roi)
    check(model, (2, 3, 5, 9))


ANTIALIAS = [
    ("linear", "half_pixel", {}),
    ("linear", "asymmetric", {"exclude_outside": 1}),
    ("linear", "tf_crop_and_resize", {}),
    ("cubic", "half_pixel", {}),
    ("cubic", "align_corners", {"cubic_coeff_a": -0.5, "exclude_outside": 1}),
    ("cubic", "pytorch_half_pixel", {"exclude_outside": 1}),
]


@pytest.mark.parametrize("mode, transform, more", ANTIALIAS)
@pytest.mark.parametrize("scales", [[1, 1, 0.5, 0.37], [1, 1, 1.7, 0.3]])
def test_antialias_matches_onnxruntime(mode, transform, more, scales):
    roi = ROI if transform == "tf_crop_and_resize" else None
    attrs = _attrs(mode, transform, antialias=1, **more)
    check(resize(attrs, (2, 3, 9, 11), scales=scales, roi=roi), (2, 3, 9, 11))


LINEAR, CUBIC, NEAREST = ({"mode": m} for m in ("linear", "cubic", "nearest"))
HPS = "half_pixel_symmetric"
FORMS = [  # (name, attrs, input shape, Resize inputs)
    ("sizes", LINEAR, (2, 3, 4, 5), {"sizes": [2, 3, 7, 3]}),
    ("sizes_nearest", NEAREST, (2, 3, 4, 5), {"sizes": [2, 3, 7, 3]}),
    (
        "sizes_tf_bicubic",
        {**CUBIC, "cubic_coeff_a": -0.5, "exclude_outside": 1},
        (2, 3, 5, 6),
        {"sizes": [2, 3, 7, 4]},
    ),
    (
        "sizes_symmetric",
        {**CUBIC, "coordinate_transformation_mode": HPS},
        (2, 3, 4, 5),
        {"sizes": [2, 3, 7, 3]},
    ),
    ("axes", {**LINEAR, "axes": [2, 3]}, (2, 3, 4, 5), {"scales": [2, 0.6]}),
    ("axes_negative", {**NEAREST, "axes": [-1]}, (2, 3, 4, 5), {"scales": [1.5]}),
    ("axes_sizes_reversed", {**CUBIC, "axes": [3, 2]}, (2, 3, 5, 6), {"sizes": [9, 3]}),
    (
        "not_larger",
        {**LINEAR, "keep_aspect_ratio_policy": "not_larger"},
        (2, 3, 4, 6),
        {"sizes": [2, 3, 9, 9]},
    ),
    (
        "not_smaller",
        {**NEAREST, "keep_aspect_ratio_policy": "not_smaller"},
        (2, 3, 4, 6),
        {"sizes": [2, 3, 9, 9]},
    ),
    (
        "not_smaller_axes",
        {**CUBIC, "keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]},
        (2, 3, 4, 6),
        {"sizes": [5, 5]},
    ),
    ("antialias_sizes", {**LINEAR, "antialias": 1}, (2, 3, 9, 11), {"sizes": [2, 3, 4, 3]}),
    (
        "crop_axes",
        {**LINEAR, "coordinate_transformation_mode": "tf_crop_and_resize", "axes": [2, 3]},
        (2, 3, 4, 5),
        {"sizes": [6, 3], "roi": [-0.5, 0.2, 0.9, 1.5]},
    ),
    (
        "crop_one_pixel",
        {**LINEAR, "coordinate_transformation_mode": "tf_crop_and_resize"},
        (2, 3, 4, 5),
        {"sizes": [2, 3, 1, 3], "roi": [0, 0, 0.2, 0.2, 1, 1, 0.9, 1.5]},
    ),
    (
        "pytorch_one_pixel",
        {**CUBIC, "coordinate_transformation_mode": "pytorch_half_pixel"},
        (2, 3, 4, 5),
        {"sizes": [2, 3, 1, 3]},
    ),
    (
        "align_one_pixel",
        {**LINEAR, "coordinate_transformation_mode": "align_corners"},
        (2, 3, 4, 5),
        {"sizes": [2, 3, 1, 3]},
    ),
    (
        "tf_half_pixel_for_nn",
        {
            **NEAREST,
            "coordinate_transformation_mode": "tf_half_pixel_for_nn",
            "nearest_mode": "floor",
        },
        (2, 3, 4, 5),
        {"scales": [1, 1, 1.3, 0.7], "roi": [], "opset": 11},
    ),
    ("opset10_nearest_up", NEAREST, (2, 3, 4, 5), {"scales": [1, 1, 2, 3], "opset": 10}),
    ("opset10_nearest_down", NEAREST, (2, 3, 4, 5), {"scales": [1, 1, 0.5, 0.6], "opset": 10}),
    ("opset10_linear", LINEAR, (2, 3, 4, 5), {"scales": [1, 1, 2, 0.6], "opset": 10}),
    (
        "opset13_asymmetric_linear",
        {**LINEAR, "coordinate_transformation_mode": "asymmetric"},
        (2, 3, 4, 5),
        {"scales": [1, 1, 2, 0.6], "opset": 13},
    ),
    ("opset18_half_pixel", LINEAR, (2, 3, 4, 5), {"scales": [1, 1, 1.5, 0.6], "opset": 18}),
    ("1d_spatial", LINEAR, (2, 3, 7), {"scales": [1, 1, 1.6]}),
    ("2d_tensor", LINEAR, (5, 7), {"scales": [1.6, 0.5]}),
    ("3d_tensor", LINEAR, (3, 5, 7), {"scales": [2, 1.6, 0.5]}),
    ("3d_spatial", LINEAR, (1, 2, 3, 4, 5), {"scales": [1, 1, 1.5, 2, 0.6]}),
    (
        "5d_nearest_channels",
        {**NEAREST, "nearest_mode": "ceil"},
        (1, 2, 3, 4, 5),
        {"scales": [1, 2, 1.5, 2, 0.6]},
    ),
]


@pytest.mark.parametrize("name, attrs, shape, given", FORMS, ids=[f[0] for f in FORMS])
def test_scales_sizes_axes_policies_and_ranks_match_onnxruntime(name, attrs, shape, given):
    check(resize(attrs, shape, **given), shape)


def _reference(model, x):
    (out,) = ReferenceEvaluator(model).run(None, {"x": x})
    return out


BEYOND_ORT = [  # onnxruntime refuses these (its kernels' limits), the spec defines them
    ("cubic_3d", CUBIC, (1, 2, 3, 4, 5), {"scales": [1, 1, 1.5, 2, 0.6]}),
    ("linear_batch", LINEAR, (2, 3, 4, 5), {"scales": [2, 1, 1.5, 1]}),
    ("linear_6d", LINEAR, (1, 2, 3, 4, 5, 2), {"scales": [1, 1, 1.5, 2, 0.6, 2]}),
    ("cubic_1d", {**CUBIC, "cubic_coeff_a": -0.5}, (7,), {"scales": [0.6]}),
]


@pytest.mark.parametrize("name, attrs, shape, given", BEYOND_ORT, ids=[f[0] for f in BEYOND_ORT])
def test_forms_onnxruntime_refuses_match_the_reference_implementation(name, attrs, shape, given):
    check(resize(attrs, shape, **given), shape, want=_reference)


def test_quirk_half_pixel_symmetric_nearest_follows_the_spec_at_a_near_tie():
    """7 -> 4 at 0.6: pixel 0's source is 0.5000001 by the spec (and ONNX's reference,
    which rounds it up), 0.5000002 in onnxruntime's linear, but onnxruntime's nearest picks
    pixel 0 there. fxsurgeon follows the spec."""
    attrs = _attrs("nearest", HPS, "round_prefer_floor")
    model = resize(attrs, (1, 1, 1, 7), scales=[1, 1, 1, 0.6])
    x = np.arange(7, dtype=F32).reshape(1, 1, 1, 7)
    got = from_onnx(model)(torch.from_numpy(x)).numpy().ravel()
    np.testing.assert_array_equal(got, _reference(model, x).ravel())
    np.testing.assert_array_equal(got, [1, 2, 4, 5])


@pytest.mark.parametrize(
    "attrs, given",
    [
        (_attrs("linear", "asymmetric"), {"scales": [1, 1, 1.7, 0.6]}),
        (_attrs("nearest", "half_pixel", "round_prefer_ceil"), {"scales": [1, 1, 1.7, 0.6]}),
        (
            _attrs("cubic", "tf_crop_and_resize", cubic_coeff_a=-0.5),
            {"scales": [1, 1, 2, 0.6], "roi": ROI},
        ),
        (_attrs("linear", "half_pixel", antialias=1), {"scales": [1, 1, 0.5, 0.4]}),
    ],
)
def test_compiles_in_one_graph_at_two_batch_sizes(attrs, given):
    model = resize(attrs, (2, 3, 5, 9), dynamic=True, **given)
    optimized = check(model, (2, 3, 5, 9))
    compiled = torch.compile(optimized, fullgraph=True, backend="aot_eager", dynamic=True)
    for batch in (2, 3):
        x = rng.random((batch, 3, 5, 9), dtype=F32)
        assert_module_matches_ort(compiled, model, [x])


def test_sizes_of_a_dynamic_image_compile_in_one_graph():
    """tf.image.resize to a fixed (5, 7) of an image of any size, asymmetric bilinear (TF1
    without half_pixel_centers): the coordinate scale out / in is a run-time value."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero1", "two1"], ["lead"]),
        helper.make_node("Concat", ["lead", "target"], ["sizes"], axis=0),
        helper.make_node(
            "Resize",
            ["x", "", "", "sizes"],
            ["y"],
            mode="linear",
            coordinate_transformation_mode="asymmetric",
        ),
    ]
    inits = [
        init("zero1", np.array([0], np.int64)),
        init("two1", np.array([2], np.int64)),
        init("target", np.array([5, 7], np.int64)),
    ]
    model = make_model(nodes, [info("x", F32, ["N", 2, "H", "W"])], [info("y", F32, None)], inits)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="aot_eager", dynamic=True)
    for shape in ((2, 2, 4, 6), (1, 2, 9, 3)):
        x = rng.random(shape, dtype=F32)
        assert_module_matches_ort(optimized, model, [x])
        assert_module_matches_ort(compiled, model, [x])


@pytest.mark.parametrize(
    "attrs, given, why",
    [
        (_attrs("linear", "tf_crop_and_resize"), {"scales": [1, 1, 2, 2]}, "without a roi"),
        ({"mode": "area"}, {"scales": [1, 1, 2, 2]}, "mode 'area'"),
        (_attrs("linear", "center"), {"scales": [1, 1, 2, 2]}, "coordinate_transformation_mode"),
        (
            _attrs("nearest", "half_pixel", "round_half_even"),
            {"scales": [1, 1, 2, 2]},
            "nearest_mode",
        ),
        (
            {"mode": "linear", "keep_aspect_ratio_policy": "fill"},
            {"sizes": [2, 3, 9, 9]},
            "keep_aspect_ratio_policy",
        ),
    ],
)
def test_what_the_spec_does_not_define_is_refused_naming_node_and_attribute(attrs, given, why):
    key = "scales" if "scales" in given else "sizes"
    names = ["x", "", "scales"] if key == "scales" else ["x", "", "", "sizes"]
    node = helper.make_node("Resize", names, ["y"], name="my_resize", **attrs)
    dtype = F32 if key == "scales" else np.int64
    graph = helper.make_graph(
        [node],
        "g",
        [info("x", F32, [2, 3, 4, 6])],
        [info("y", F32, [2, 3, 8, 12])],
        [init(key, np.array(given[key], dtype))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(InputError, match=rf"'my_resize' \(op Resize\).*{why}"):
        from_onnx(model)


def test_antialias_to_run_time_sizes_is_refused_naming_it():
    """antialias stretches the kernel by the scale; to sizes of a run-time image the scale,
    and so the number of taps, is known only at run time: refused, naming node and attribute."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero1", "two1"], ["lead"]),
        helper.make_node("Concat", ["lead", "target"], ["sizes"], axis=0),
        helper.make_node(
            "Resize", ["x", "", "", "sizes"], ["y"], name="my_resize", mode="linear", antialias=1
        ),
    ]
    inits = [
        init("zero1", np.array([0], np.int64)),
        init("two1", np.array([2], np.int64)),
        init("target", np.array([3, 4], np.int64)),
    ]
    x_info = info("x", F32, ["N", 2, "H", "W"])
    model = make_model(nodes, [x_info], [info("y", F32, None)], inits, opset=18)
    with pytest.raises(InputError, match=r"'my_resize' \(op Resize\).*antialias"):
        fxsurgeon.optimize(from_onnx(model))


def test_linear_of_an_integer_tensor_is_refused_naming_it():
    model = resize(_attrs("linear", "asymmetric"), (1, 1, 4, 4), scales=[1, 1, 2, 2])
    model.graph.input[0].type.tensor_type.elem_type = 6  # int32
    model.graph.output[0].type.tensor_type.elem_type = 6
    with pytest.raises(InputError, match=r"'my_resize' \(op Resize\).*linear Resize of a"):
        fxsurgeon.optimize(from_onnx(model))
