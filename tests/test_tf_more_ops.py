"""TF ops tf2onnx cannot export, written by the front door (fxsurgeon/frontdoor/tf_more_ops.py):
onnxruntime on the export and the optimized module must give what TensorFlow gives, on the
edge cases of each definition (values on a boundary, ties, zeros, gray pixels, empty
segments, ids out of range); tf2onnx's handlers come back after the export."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx_cases import assert_lowered, assert_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Ops(keras.layers.Layer):
    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def call(self, *xs):
        return self.fn(*xs)


def _check(fn, inputs: dict[str, np.ndarray], dynamic: tuple[int, ...] = ()) -> onnx.ModelProto:
    """Export ``fn`` over ``inputs`` (dims in `dynamic` left free), compare onnxruntime and
    the optimized module with TF; the export."""
    specs = [
        keras.Input(
            tuple(None if d in dynamic else s for d, s in enumerate(v.shape[1:], 1)),
            dtype=str(v.dtype),
            name=k,
        )
        for k, v in inputs.items()
    ]
    model = keras.Model(specs, _Ops(fn)(*specs))
    want = [
        np.asarray(t) for t in tf.nest.flatten(model([tf.constant(v) for v in inputs.values()]))
    ]
    proto = fxsurgeon.export_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    out = module(*[torch.from_numpy(v) for v in inputs.values()])
    out = [out] if isinstance(out, torch.Tensor) else list(out)
    assert_lowered(module)
    for g, t, w in zip(got, out, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(t.numpy(), w, atol=1e-6, rtol=1e-6)
    return proto


def _ops(proto: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


def test_log1p_expm1_bucketize_and_searchsorted_match_tf():
    """Values on the boundaries (bucketize counts boundaries <= x) and ties in the sorted
    rows (left: first index, right: after the last equal)."""
    x = np.array([[-1.0, -0.3, 0.0, 0.25, 0.3, 1.0, 5.0, -2.0]], np.float32).repeat(2, 0)
    x[1] *= 0.5
    rows = np.sort(
        np.array([[0.3, -1.0, 0.3, 0.0, 2.0, 0.3], [1.0, 1.0, -2.0, 0.0, 0.5, 0.5]], np.float32), -1
    )

    def fn(x, rows):
        bucket = tf.raw_ops.Bucketize(input=x, boundaries=[-1.0, -0.3, 0.0, 0.3, 1.0])
        left = tf.searchsorted(rows, x, side="left")
        right = tf.searchsorted(rows, x, side="right", out_type=tf.int64)
        return [tf.math.log1p(tf.abs(x)), tf.math.expm1(x), bucket, left, right]

    ops = _ops(_check(fn, {"x": x, "rows": rows}, dynamic=(1,)))
    assert not ops & {"Loop", "TopK", "Unique"}


def test_cumprod_every_direction_matches_tf_with_zeros():
    """exclusive x reverse, on axis 1 of a rank-3 input of dynamic length, a zero inside."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 5, 3)).astype(np.float32)
    x[0, 2, 1] = 0.0

    def fn(x):
        return [
            tf.math.cumprod(x, axis=1, exclusive=e, reverse=r)
            for e in (False, True)
            for r in (False, True)
        ] + [tf.math.cumprod(x, axis=-1)]

    ops = _ops(_check(fn, {"x": x}, dynamic=(1,)))
    assert "Loop" not in ops


def test_unsorted_segment_max_and_min_match_tf_with_empty_segments_and_dropped_ids():
    """2-D ids; segment 3 empty (TF's lowest / highest float), id -1 dropped."""
    data = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    ids = tf.constant([[0, 1, 1, -1], [2, 0, 2, 4]])

    def fn(data):
        return [
            tf.math.unsorted_segment_max(data, ids, 5),
            tf.math.unsorted_segment_min(data, ids, 5),
        ]

    ops = _ops(_check(fn, {"data": data}))
    assert not ops & {"Unique", "TopK"}


def test_rgb_to_hsv_matches_tf_on_gray_black_and_each_dominant_channel():
    pixels = np.array(
        [
            [
                [0.0, 0.0, 0.0],
                [0.5, 0.5, 0.5],
                [0.9, 0.2, 0.4],
                [0.1, 0.8, 0.3],
                [0.2, 0.3, 0.7],
                [0.9, 0.1, 0.1],
                [0.7, 0.7, 0.2],
                [0.3, 0.6, 0.6],
            ]
        ],
        np.float32,
    )
    pixels = np.concatenate([pixels, np.random.default_rng(2).uniform(0, 1, (1, 8, 3))]).astype(
        np.float32
    )
    _check(lambda p: tf.image.rgb_to_hsv(p[:, :, None, :]), {"pixels": pixels}, dynamic=(1,))


def _signed_pairs(dtype: str) -> dict[str, np.ndarray]:
    """Every sign pairing, quotients exact and not (floats: halves and thirds too)."""
    values = [-9, -8, -7, -4, -1, 0, 1, 3, 4, 7, 8]
    if dtype.startswith("float"):
        values += [-4.5, -1.5, 0.5, 2.5, 1.0 / 3.0]
    pairs = [(a, b) for a in values for b in values if b != 0]
    x, y = (np.array([p[i] for p in pairs], dtype=dtype)[None, :] for i in (0, 1))
    return {"x": x, "y": y}


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_truncate_div_and_mod_match_tf_for_every_sign(dtype):
    """TruncateMod (no tf2onnx handler) is ``Mod(fmod=1)``; float TruncateDiv, which tf2onnx
    wrote as an unrounded Div, is truncated toward zero."""
    proto = _check(lambda x, y: [tf.truncatediv(x, y), tf.truncatemod(x, y)], _signed_pairs(dtype))
    mods = [n for n in proto.graph.node if n.op_type == "Mod"]
    assert [a.i for n in mods for a in n.attribute if a.name == "fmod"] == [1]


def test_l2_loss_and_global_norm_clipping_match_tf():
    """L2Loss (no tf2onnx handler) is half the sum of squares over every axis: l2_loss,
    global_norm and clip_by_global_norm of two tensors of a dynamic length."""
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32)

    def fn(x):
        (a, b), norm = tf.clip_by_global_norm([x, 2.0 * x[:, :2]], 3.0)
        return [tf.nn.l2_loss(x), tf.linalg.global_norm([x, x[:, :1]]), a, b, norm]

    _check(fn, {"x": x}, dynamic=(1,))


def test_integer_truncate_div_keeps_tf2onnx_div():
    """Refusal: ONNX's integer Div already truncates; no Floor/Sign is written for it."""
    ops = _ops(_check(lambda x, y: tf.truncatediv(x, y), _signed_pairs("int32")))
    assert "Div" in ops and not ops & {"Floor", "Sign", "Abs"}


def test_tf2onnx_handlers_are_restored_after_the_export():
    from tf2onnx import constants
    from tf2onnx.handler import tf_op

    from fxsurgeon.frontdoor.tf_handlers import corrected_handlers

    def table():
        return [dict(h) for h in tf_op.get_opsets()[constants.ONNX_DOMAIN]]

    before = table()
    with corrected_handlers():
        assert any("Bucketize" in h for h in tf_op.get_opsets()[constants.ONNX_DOMAIN])
    assert table() == before


def test_an_op_on_constants_folds_for_a_range():
    """keras.ops.diagonal (tf2onnx MatrixDiagPart): a Range over ReduceMax of constants (no weight)."""
    nodes = [
        helper.make_node("ReduceMax", ["offset"], ["top"], keepdims=0),
        helper.make_node("Add", ["top", "three"], ["stop"]),
        helper.make_node("Range", ["top", "stop", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=1),
        helper.make_node("Mul", ["x", "rf"], ["y"]),
    ]
    inits = [
        init("offset", np.array([-1, 0], np.int64)),
        init("three", np.array(3, np.int64)),
        init("one", np.array(1, np.int64)),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", np.float32, ["N", 3])],
        [tensor_info("y", np.float32, ["N", 3])],
        inits,
    )
    optimized = assert_matches_ort(model, [np.ones((2, 3), np.float32)])
    assert_lowered(optimized)


@pytest.mark.parametrize(
    "method, antialias",
    [
        ("bilinear", True),
        ("bicubic", True),
        ("lanczos3", False),
        ("gaussian", True),
    ],
)
def test_scale_and_translate_matches_tf_down_and_up_on_a_dynamic_image(method, antialias):
    """tf.image.resize through ScaleAndTranslate, to a smaller height and a larger width
    (the kernel widens only when downscaling), the input's H and W dynamic."""
    image = np.random.default_rng(3).standard_normal((2, 11, 5, 2)).astype(np.float32)

    def fn(x):
        return tf.image.resize(x, (4, 9), method=method, antialias=antialias)

    proto = _check(fn, {"image": image}, dynamic=(1, 2))
    # tf.image.resize's constant zero translation is folded, not read as a tensor (which
    # the front door without the TF model would take for a learned bias)
    arrays = [numpy_helper.to_array(i) for i in proto.graph.initializer]
    assert not [a for a in arrays if a.dtype == np.float32 and a.size > 1 and not a.any()]


def test_resize_area_matches_tf_down_and_up_on_a_dynamic_image():
    """tf2onnx wrote ResizeArea as a nearest Resize (another image); TF's box average."""
    image = np.random.default_rng(4).standard_normal((2, 11, 5, 2)).astype(np.float32)
    _check(lambda x: tf.image.resize(x, (4, 9), method="area"), {"image": image}, dynamic=(1, 2))


@pytest.mark.parametrize("half_pixel", [True, False])
def test_resize_bicubic_matches_tf_with_its_coefficient_table(half_pixel):
    """TF rounds each tap offset to 1/1024 (ONNX's exact cubic was 1.5e-3 off): TF 2's
    half-pixel Keys cubic (a = -0.5, outside taps dropped) and the legacy a = -0.75 form
    with edge-clamped taps (compat.v1, align_corners)."""
    image = np.random.default_rng(5).standard_normal((2, 11, 5, 2)).astype(np.float32)

    def fn(x):
        if half_pixel:
            return tf.image.resize(x, (4, 9), method="bicubic")
        return tf.raw_ops.ResizeBicubic(images=x, size=[4, 9], align_corners=True)

    _check(fn, {"image": image}, dynamic=(1, 2))


def _v1(kind, align_corners, half_pixel_centers):
    op = (
        tf.compat.v1.image.resize_bilinear
        if kind == "bilinear"
        else (tf.compat.v1.image.resize_nearest_neighbor)
    )
    return lambda x: op(
        x, (4, 9), align_corners=align_corners, half_pixel_centers=half_pixel_centers
    )


@pytest.mark.parametrize(
    "name, fn",
    [
        ("resize_bilinear", lambda x: tf.image.resize(x, (4, 9), method="bilinear")),
        ("resize_nearest", lambda x: tf.image.resize(x, (4, 9), method="nearest")),
        ("resize_bilinear_aa", lambda x: tf.image.resize(x, (4, 9), antialias=True)),
        ("v1_bilinear_asymmetric", _v1("bilinear", False, False)),  # TF1's default
        ("v1_bilinear_align_corners", _v1("bilinear", True, False)),
        ("v1_bilinear_half_pixel", _v1("bilinear", False, True)),
        ("v1_nearest_asymmetric", _v1("nearest", False, False)),
        ("v1_nearest_align_corners", _v1("nearest", True, False)),
        ("v1_nearest_half_pixel", _v1("nearest", False, True)),
    ],
)
def test_tf_resize_through_tf2onnx_matches_tf(name, fn):
    """tf2onnx's Resize for each TF resize (asymmetric bilinear was refused): the optimized
    module == TF on a dynamic image, down in height and up in width."""
    image = np.random.default_rng(6).standard_normal((2, 11, 5, 2)).astype(np.float32)
    _check(fn, {"image": image}, dynamic=(1, 2))


@pytest.mark.parametrize(
    "name, fn",
    [
        ("resize_nearest", lambda x: tf.image.resize(x, 2 * tf.shape(x)[1:3], "nearest")),
        (
            "v1_nearest_asymmetric",
            lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, tf.shape(x)[1:3] * [3, 2]),
        ),
        (
            "v1_nearest_half_pixel",
            lambda x: tf.compat.v1.image.resize_nearest_neighbor(
                x, tf.shape(x)[1:3] * 2, half_pixel_centers=True
            ),
        ),
    ],
)
def test_tf_nearest_whole_upscale_of_a_dynamic_image_is_nearest_exact(name, fn):
    """TF's nearest resize to a whole multiple of a run-time image size (UpSampling2D's
    form in tf.keras): tf2onnx's sizes are Shape(x)[2:] * s, the optimized module is
    F.interpolate's nearest-exact with no gather (rule repeat_factors) and == TF."""
    image = np.random.default_rng(7).standard_normal((2, 5, 7, 3)).astype(np.float32)
    proto = _check(fn, {"image": image}, dynamic=(1, 2))
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    calls = [n for n in module.graph.nodes if n.op == "call_function"]
    modes = [n.kwargs.get("mode", n.args[3:4]) for n in calls if n.target is F.interpolate]
    assert modes == [("nearest-exact",)], modes
    assert not any(n.target is torch.index_select for n in calls)
    for shape in ((1, 9, 4, 3), (3, 2, 11, 3)):  # sizes the export never saw
        x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
        want = np.asarray(fn(tf.constant(x)))
        np.testing.assert_array_equal(module(torch.from_numpy(x)).numpy(), want)
