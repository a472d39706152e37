"""Convolutions whose data tf2onnx knows no rank of (fxsurgeon/frontdoor/tf_conv_rank.py).

A Conv2D reached through a Reshape whose target tf2onnx cannot size (its length computed
at run time, as pfor's loops under Keras 3's TimeDistributed make it) must be converted
with the op's rank: onnxruntime gives TF's values (tf2onnx alone left a Conv that mixed
up the channels, which onnxruntime refused). A shape tf2onnx knows is left as it is.
"""

from __future__ import annotations

import types

import numpy as np
import onnxruntime as ort
import pytest

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.frontdoor import tf_conv_rank

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _FoldConv(keras.layers.Layer):
    """Frames folded into the batch by a Reshape whose target has a run-time length."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(3, 3, 3, 4), name="kernel")

    def call(self, x):
        shape = tf.shape(x)
        start = tf.cast(tf.reduce_min(tf.abs(x)) * 0.0, tf.int32) + 2  # data: never folded
        frames = tf.reshape(x, tf.concat([[-1], shape[start:]], 0))
        y = tf.reduce_mean(tf.nn.conv2d(frames, self.kernel, 1, "SAME"), axis=[1, 2])
        return tf.reshape(y, tf.concat([shape[:2], [4]], 0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], 4)


def test_a_convolution_of_data_of_unknown_rank_is_converted_and_matches_tf():
    clip = keras.Input((None, 6, 6, 3), name="clip")
    model = keras.Model(clip, _FoldConv()(clip))
    proto = fxsurgeon.export_onnx(model)
    assert [n.op_type for n in proto.graph.node].count("Conv") == 1
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch, frames in ((1, 3), (2, 5)):
        x = np.random.default_rng(frames).standard_normal((batch, frames, 6, 6, 3))
        x = x.astype(np.float32)
        want = np.asarray(model(x))
        (got,) = session.run(None, {"clip": x})
        np.testing.assert_allclose(got, want, atol=1e-5)


class _Ctx:
    def __init__(self, shapes):
        self.shapes = dict(shapes)

    def get_shape(self, name):
        return self.shapes.get(name)

    def set_shape(self, name, shape):
        self.shapes[name] = shape


@pytest.mark.parametrize(
    ("op", "rank"), [("Conv2D", 4), ("DepthwiseConv2dNative", 4), ("Conv3D", 5)]
)
def test_an_unknown_data_shape_takes_the_op_s_rank(op, rank):
    ctx = _Ctx({"k": [3, 3, 2, 4]})
    node = types.SimpleNamespace(input=["x", "k"], output=["y"])
    seen = {}
    handler = tf_conv_rank.CORRECTIONS[op](lambda c, n, **kw: seen.update(c.shapes))
    handler(ctx, node)
    assert seen["x"] == [-1] * rank and seen["y"] == [-1] * rank


def test_a_known_shape_is_left_as_it_is():
    """Refusal: a known shape (even of another rank, tf2onnx's Conv1D-as-Conv2D unsqueeze
    path) is tf2onnx's to read, never replaced."""
    known = {"x": [-1, 8, 8, 3], "y": [-1, 8, 8], "k": [3, 3, 3, 4]}
    ctx = _Ctx(known)
    node = types.SimpleNamespace(input=["x", "k"], output=["y"])
    seen = {}
    handler = tf_conv_rank.CORRECTIONS["Conv2D"](lambda c, n, **kw: seen.update(c.shapes))
    handler(ctx, node)
    assert seen == known
