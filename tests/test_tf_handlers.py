"""tf2onnx's op handlers as the front door corrects them (fxsurgeon/frontdoor/tf_handlers.py).

onnxruntime runs the export and must give what TensorFlow gives, for every sign of the
operands; the corrections must hold on the first export of a fresh process too (tf2onnx
registers its handlers on import).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Floors(keras.layers.Layer):
    def call(self, x, y):
        return [tf.math.floormod(x, y), tf.math.floordiv(x, y)]


def _floors_model(dtype: str):
    x = keras.Input((None,), dtype=dtype, name="x")
    y = keras.Input((None,), dtype=dtype, name="y")
    return keras.Model([x, y], _Floors()(x, y))


def _signed_pairs(dtype) -> dict[str, np.ndarray]:
    values = [-9, -8, -7, -4, -1, 0, 1, 3, 4, 7, 8]
    pairs = [(a, b) for a, b in itertools.product(values, values) if b != 0]
    x, y = (np.array([p[i] for p in pairs], dtype=dtype)[None, :] for i in (0, 1))
    return {"x": x, "y": y}


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_floor_mod_and_floor_div_match_tf_for_every_sign(dtype):
    """tf2onnx writes integer FloorMod/FloorDiv with ONNX's truncating Div: -4 % 8 gave -4."""
    model = _floors_model(dtype)
    inputs = _signed_pairs(dtype)
    want = [np.asarray(t) for t in model([tf.constant(v) for v in inputs.values()])]
    proto = fxsurgeon.export_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    for name, g, w in zip(("floormod", "floordiv"), got, want, strict=True):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    torch_out = module(*[torch.from_numpy(v) for v in inputs.values()])
    for name, g, w in zip(("floormod", "floordiv"), torch_out, want, strict=True):
        np.testing.assert_array_equal(g.numpy(), w, err_msg=f"optimized {name}")


def test_the_corrections_hold_on_the_first_export_of_a_process():
    """Select is written as Where and integer FloorMod as Mod on the very first export."""
    script = textwrap.dedent(
        """
        import fxsurgeon
        from fxsurgeon._compat import import_tensorflow
        tf = import_tensorflow()
        import keras

        class Ops(keras.layers.Layer):
            def call(self, x, n):
                masked = tf.where(x > 0, x, tf.fill(tf.shape(x), float("-inf")))
                return [masked, tf.math.floormod(n, tf.shape(n)[1])]

        x = keras.Input((4,), name="x")
        n = keras.Input((None,), dtype="int32", name="n")
        proto = fxsurgeon.export_onnx(keras.Model([x, n], Ops()(x, n)))
        print(sorted({node.op_type for node in proto.graph.node}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ops = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
    assert "Where" in ops and "Mod" in ops, ops
    assert "Div" not in ops, ops


def test_a_contrib_range_tf2onnx_writes_becomes_onnx_range_in_subgraphs_too():
    """tf2onnx may write a dynamic tf.range as com.microsoft Range without importing the
    domain: invalid. It is ONNX's Range (opset 11), given the ONNX domain; the model
    then checks and runs as np.arange."""
    import onnx
    from onnx import TensorProto, helper

    from fxsurgeon.frontdoor.export import _standard_contrib_ops

    def ranged(name: str) -> onnx.GraphProto:
        node = helper.make_node(
            "Range", ["start", "limit", "delta"], [name], domain="com.microsoft"
        )
        out = helper.make_tensor_value_info(name, TensorProto.INT64, [None])
        return helper.make_graph([node], f"{name}_graph", [], [out])

    branch = helper.make_node(
        "If", ["flag"], ["y"], then_branch=ranged("a"), else_branch=ranged("b")
    )
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, []) for n in ("start", "limit", "delta")
    ] + [helper.make_tensor_value_info("flag", TensorProto.BOOL, [])]
    graph = helper.make_graph(
        [branch], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.INT64, [None])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnx.checker.ValidationError, match="com.microsoft"):
        onnx.checker.check_model(model)
    _standard_contrib_ops(model.graph)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"start": np.array(2), "limit": np.array(11), "delta": np.array(3)}
    (got,) = session.run(None, {**feeds, "flag": np.array(True)})
    np.testing.assert_array_equal(got, np.arange(2, 11, 3))


class _Bands(keras.layers.Layer):
    """band_part at constant and run-time bounds, the Keras causal-mask idiom, and set_diag
    on the main diagonal and one above and below it, all over a dynamic L."""

    def call(self, x, lower):
        length = tf.shape(x)[1]
        causal = 1.0 - tf.linalg.band_part(tf.ones((length, length)), -1, 0)
        lower = tf.cast(lower[0, 0], tf.int64)
        return [
            tf.linalg.band_part(x, 0, -1),
            tf.linalg.band_part(x, -1, 0),
            tf.linalg.band_part(x, 1, 2),
            tf.linalg.band_part(x, lower, 0),
            causal[None] + 0.0 * x,
            tf.linalg.set_diag(x, x[:, 0, :] * 2.0),
            tf.linalg.set_diag(x, x[:, 1, 1:] * 3.0, k=1),
            tf.linalg.set_diag(x, x[:, 2, 1:] * 5.0, k=-1),
        ]


def test_band_part_and_set_diag_are_masks_not_loops_and_match_tf():
    """tf2onnx wrote band_part as a Loop (rank 2, constant bounds only) and set_diag through
    Ifs whose branches differ in rank: CLIP's causal mask could not be lowered. Now plain
    position masks: no Loop or If in the export, and TF's values at every L, also with
    M != N (rows and columns counted separately) and a run-time bound of -1 (unbounded)."""
    x = keras.Input((None, None), name="x")
    lower = keras.Input((1,), dtype="int32", name="lower")
    model = keras.Model([x, lower], _Bands()(x, lower))
    proto = fxsurgeon.export_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Loop", "If"}, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    assert fxsurgeon.report_of(module).unconverted == {}
    rng = np.random.default_rng(0)
    for batch, length, bound in ((2, 5, 2), (1, 3, -1), (3, 8, 0), (2, 4, 1)):
        xv = rng.standard_normal((batch, length, length)).astype(np.float32)
        lv = np.full((batch, 1), bound, np.int32)
        want = [np.asarray(t) for t in model([tf.constant(xv), tf.constant(lv)])]
        got = session.run(None, {"x": xv, "lower": lv})
        with torch.no_grad():
            out = module(torch.from_numpy(xv), torch.from_numpy(lv))
        for k, (g, o, w) in enumerate(zip(got, out, want, strict=True)):
            np.testing.assert_array_equal(g, w, err_msg=f"onnxruntime, output {k}, L={length}")
            np.testing.assert_array_equal(
                o.numpy(), w, err_msg=f"optimized, output {k}, L={length}"
            )


def test_band_part_of_a_non_square_batch_of_integers_matches_tf():
    """Rows and columns are counted separately (M != N), any rank, any dtype."""

    class Band(keras.layers.Layer):
        def call(self, x):
            return [tf.linalg.band_part(x, 1, 0), tf.linalg.band_part(x, 0, 2)]

    x = keras.Input((None, 3, None), dtype="int32", name="x")
    model = keras.Model(x, Band()(x))
    proto = fxsurgeon.export_onnx(model)
    assert "Loop" not in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in ((2, 4, 3, 6), (1, 2, 3, 2)):
        xv = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) + 1
        want = [np.asarray(t) for t in model(tf.constant(xv))]
        for g, w in zip(session.run(None, {"x": xv}), want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_set_diag_over_a_band_of_diagonals_keeps_tf2onnx_s_handler():
    """k = (-1, 1) sets three diagonals at once, and a run-time k is not known: not the
    one-diagonal mask, so tf2onnx's own handler writes them."""
    from types import SimpleNamespace

    from fxsurgeon.frontdoor.tf_handlers import CORRECTIONS

    calls = []
    handler = CORRECTIONS["MatrixSetDiagV3"](lambda ctx, node, **kw: calls.append(node))
    for const, k in ((True, np.array([-1, 1])), (False, None)):
        k_node = SimpleNamespace(is_const=lambda c=const: c, get_tensor_value=lambda k=k, **kw: k)
        node = SimpleNamespace(inputs=[None, None, k_node], input=["x", "d", "k"])
        handler(SimpleNamespace(opset=17), node)
        assert calls[-1] is node
    assert len(calls) == 2


class _BatchGathers(keras.layers.Layer):
    """HF's pixel shuffle reorders channels per row with ``batch_dims=-1`` (axis left at
    -1 too); the others count batch_dims or axis from the end, one at a time."""

    def call(self, x, order):
        return [
            tf.gather(x, order, batch_dims=-1),  # batch_dims 1, axis -1 -> 3
            tf.gather(x, order, axis=-1, batch_dims=1),
            tf.gather(x, order[:, :2] // 2, axis=2, batch_dims=-1),
        ]


def test_gather_with_negative_batch_dims_and_axis_matches_tf():
    """tf2onnx copied batch_dims=-1 into GatherND, which onnxruntime refuses."""
    x = keras.Input((3, 4, 6), name="x")
    order = keras.Input((6,), dtype="int32", name="order")
    model = keras.Model([x, order], _BatchGathers()(x, order))
    rng = np.random.default_rng(0)
    inputs = {
        "x": rng.standard_normal((2, 3, 4, 6)).astype(np.float32),
        "order": np.stack([rng.permutation(6), rng.permutation(6)]).astype(np.int32),
    }
    want = [np.asarray(t) for t in model([tf.constant(v) for v in inputs.values()])]
    proto = fxsurgeon.export_onnx(model)
    assert all(a.i >= 0 for n in proto.graph.node if n.op_type == "GatherND" for a in n.attribute)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for g, w in zip(session.run(None, inputs), want, strict=True):
        np.testing.assert_array_equal(g, w)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    got = module(*[torch.from_numpy(v) for v in inputs.values()])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.numpy(), w)


class _Patches(keras.layers.Layer):
    def __init__(self, size, stride, rate, padding, **kwargs):
        super().__init__(**kwargs)
        self.args = (size, stride, rate, padding)

    def call(self, x):
        (rows, cols), stride, rate, padding = self.args
        return tf.image.extract_patches(
            x, (1, rows, cols, 1), (1, stride, stride, 1), (1, rate, rate, 1), padding
        )


@pytest.mark.parametrize(
    ("size", "stride", "rate", "padding", "spatial"),
    [
        ((2, 2), 2, 1, "VALID", (8, 8)),  # Swin's patches
        ((3, 2), 2, 1, "SAME", (7, 6)),  # uneven SAME pads, extra at the end
        ((3, 3), 1, 2, "SAME", (6, 5)),  # rates are dilations
        ((2, 3), 3, 1, "VALID", (None, None)),  # dynamic height and width
        ((3, 3), 2, 1, "SAME", (None, None)),  # SAME on dynamic sizes: auto_pad
    ],
)
def test_extract_patches_runs_for_any_batch_and_matches_tf(size, stride, rate, padding, spatial):
    """tf2onnx wrote [N * C, H, W, 1] as [-3, 8, 8, 1] for a dynamic batch (no runtime runs
    it); the patches are (row, column, channel) ordered, SAME pads as TF's."""
    x = keras.Input((*spatial, 3), name="x")
    model = keras.Model(x, _Patches(size, stride, rate, padding)(x))
    proto = fxsurgeon.export_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    sizes = [spatial, spatial] if spatial[0] is not None else [(7, 6), (7, 6), (9, 8)]
    for batch, dims in zip((1, 3, 2), sizes, strict=False):
        value = np.random.default_rng(batch).standard_normal((batch, *dims, 3))
        value = value.astype(np.float32)
        want = np.asarray(model(tf.constant(value)))
        np.testing.assert_allclose(session.run(None, {"x": value})[0], want, rtol=0, atol=1e-6)
        got = module(torch.from_numpy(value))
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-6)


def test_extract_patches_of_integers_keeps_tf2onnx_s_handler():
    """ONNX Conv takes no integers: an integer image is left to tf2onnx (static batch)."""
    x = keras.Input((4, 4, 1), batch_size=2, dtype="int32", name="x")
    model = keras.Model(x, _Patches((2, 2), 2, 1, "VALID")(x))
    proto = fxsurgeon.export_onnx(model)
    assert "EyeLike" in {n.op_type for n in proto.graph.node}


@pytest.mark.parametrize(
    ("make", "shape", "sizes"),
    [
        (lambda: keras.layers.Conv1D(4, 3, dilation_rate=3, padding="same"), (None, 2), (7, 9)),
        (lambda: keras.layers.Conv1D(4, 4, dilation_rate=2, padding="same"), (None, 2), (5, 8)),
        (lambda: keras.layers.Conv1D(4, 3, dilation_rate=2, padding="valid"), (None, 2), (7, 9)),
        (
            lambda: keras.layers.Conv2D(4, (3, 2), dilation_rate=(2, 3), padding="same"),
            (None, None, 2),
            ((6, 7), (9, 5)),
        ),
        (
            lambda: keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same"),
            (None, None, 2),
            ((6, 7), (5, 5)),
        ),
    ],
)
def test_dilated_convolutions_on_dynamic_sizes_are_one_conv(make, shape, sizes):
    """TF's SpaceToBatchND / Conv / BatchToSpaceND with computed paddings: tf2onnx made
    one dilated Conv for VALID only; SAME left dynamic Pads and reshapes per layer."""
    x = keras.Input(shape, name="x")
    model = keras.Model(x, make()(x))
    proto = fxsurgeon.export_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert "Pad" not in ops and "Conv" in ops, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    for batch, size in zip((1, 3), sizes, strict=True):
        dims = size if isinstance(size, tuple) else (size,)
        value = np.random.default_rng(batch).standard_normal((batch, *dims, shape[-1]))
        value = value.astype(np.float32)
        want = np.asarray(model(tf.constant(value)))
        np.testing.assert_allclose(session.run(None, {"x": value})[0], want, atol=1e-5)
        got = module(torch.from_numpy(value)).detach().numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


class _PixelAttention(keras.layers.Layer):
    """keras.io DDPM's attention: upper- and lower-case letters are different axes."""

    def call(self, q, k):
        scores = tf.einsum("bhwc, bHWc->bhwHW", q, k)
        shape = tf.shape(q)
        flat = tf.reshape(scores, [shape[0], shape[1], shape[2], shape[1] * shape[2]])
        weights = tf.reshape(tf.nn.softmax(flat, -1), tf.shape(scores))
        return tf.einsum("bhwHW,bHWc->bhwc", weights, k)


def test_einsum_letters_that_differ_in_case_stay_different_axes():
    """tf2onnx lowercased ``bhwc,bHWc->bhwHW`` to ``bhwc,bhwc->bhwhw``."""
    q = keras.Input((3, 4, 5), name="q")
    k = keras.Input((3, 4, 5), name="k")
    model = keras.Model([q, k], _PixelAttention()(q, k))
    proto = fxsurgeon.export_onnx(model)
    equations = [
        a.s.decode() for n in proto.graph.node if n.op_type == "Einsum" for a in n.attribute
    ]
    assert all(e == e.lower() for e in equations), equations
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for n in ("q", "k")}
    want = np.asarray(model([tf.constant(v) for v in inputs.values()]))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, inputs)[0], want, atol=1e-5)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    got = module(*[torch.from_numpy(v) for v in inputs.values()]).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_einsum_renaming_uses_free_letters_and_gives_up_past_26():
    from fxsurgeon.frontdoor.tf_handlers import _einsum_lowercase

    assert _einsum_lowercase("bhwc,bHWc->bhwHW") == "bhwc,badc->bhwad"
    assert _einsum_lowercase("ij,jk->ik") == "ij,jk->ik"
    assert _einsum_lowercase("...Ij,jK->...IK") == "...aj,jb->...ab"
    letters = "abcdefghijklmnopqrstuvwxyz"
    assert _einsum_lowercase(f"{letters}A->A") is None


class _SafeDivisions(keras.layers.Layer):
    def call(self, x, y):
        return [tf.math.divide_no_nan(x, tf.nn.relu(y)), tf.math.divide(x, tf.nn.relu(y) + 1.0)]


def test_divide_no_nan_has_tf_s_finite_gradient_where_the_divisor_is_zero():
    """tf2onnx's ``Where(y == 0, 0, x / y)`` gave a NaN gradient to y where it is 0 (inf
    times the Where's 0); the divisor is ``Where(y == 0, 1, y)`` now: TF's values and
    gradients. A plain division keeps no Where (the near miss)."""
    x = keras.Input((6,), name="x")
    y = keras.Input((6,), name="y")
    model = keras.Model([x, y], _SafeDivisions()(x, y))
    proto = fxsurgeon.export_onnx(model)
    wheres = [n for n in proto.graph.node if n.op_type == "Where"]
    assert len(wheres) == 2, [n.op_type for n in proto.graph.node]  # the guard, the divisor
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((3, 6)).astype(np.float32)
    yv = rng.standard_normal((3, 6)).astype(np.float32)  # relu: about half the divisors 0
    tx, ty = tf.Variable(xv), tf.Variable(yv)
    with tf.GradientTape() as tape:
        want = model([tx, ty])
        loss = tf.reduce_sum(want[0]) + tf.reduce_sum(want[1])
    want_grads = [np.asarray(g) for g in tape.gradient(loss, [tx, ty])]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for g, w in zip(session.run(None, {"x": xv, "y": yv}), want, strict=True):
        np.testing.assert_allclose(g, np.asarray(w), atol=1e-6, rtol=0)
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    px = torch.from_numpy(xv).requires_grad_()
    py = torch.from_numpy(yv).requires_grad_()
    got = module(px, py)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.detach().numpy(), np.asarray(w), atol=1e-6, rtol=0)
    sum(g.sum() for g in got).backward()
    for g, w in zip((px.grad, py.grad), want_grads, strict=True):
        assert bool(torch.isfinite(g).all())
        np.testing.assert_allclose(g.numpy(), w, atol=1e-5, rtol=1e-5)
