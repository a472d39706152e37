"""The TF ops tf2onnx writes as ONNX ops onnx2torch has no converter for, through the front
door (door B): tf.math.sinh/cosh/asinh/acosh/atanh, tf-keras' ThresholdedReLU, tf.linalg.det,
tf.bitwise.left_shift/right_shift of int8 and int32, int8 matmul to int32 (MatMulInteger),
tf.dynamic_stitch (ScatterElements), fake quantization (Quantize/DequantizeLinear),
tf.unique_with_counts and a per-row tf.math.bincount (Unique, Compress), tf.reduce_* and
tf.split at opset 18 match TensorFlow with nothing of onnx2torch or of the converters left;
tf.random.normal is refused naming the node and op."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_cases import assert_lowered

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.errors import InputError

tf = import_tensorflow()
keras = pytest.importorskip("keras")
rng = np.random.default_rng(31)


class _Lambda(keras.layers.Layer):
    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def call(self, x):
        return self.fn(x)


def _model(fn, shape, dtype="float32"):
    x = keras.Input(shape, name="x", dtype=dtype)
    return keras.Model(x, _Lambda(fn)(x))


def _matches_tf(model, inputs, atol=1e-5, **export):
    optimized = fxsurgeon.optimize(fxsurgeon.from_tensorflow(model, **export))
    assert_lowered(optimized)
    for x in inputs:
        want = np.asarray(model(tf.constant(x)))
        got = optimized(torch.from_numpy(x)).detach().numpy()
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, atol=atol, rtol=0)
    return optimized


def _hyperbolic(x):
    inside = tf.tanh(x) * 0.9  # in (-0.9, 0.9): atanh's domain
    return tf.concat(
        [tf.sinh(x), tf.cosh(x), tf.asinh(x), tf.acosh(1.0 + x * x), tf.atanh(inside)], -1
    )


def test_hyperbolic_functions_match_tf():
    x = [rng.uniform(-3, 3, (n, 4)).astype(np.float32) for n in (2, 5)]
    _matches_tf(_model(_hyperbolic, (4,)), x)


def test_thresholded_relu_matches_tf():
    tf_keras = pytest.importorskip("tf_keras")
    x = tf_keras.Input((6,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.ThresholdedReLU(theta=0.4)(x))
    inputs = rng.uniform(-1, 1, (3, 6)).astype(np.float32)
    inputs[0, :2] = [0.4, 0.41]  # at the threshold: 0
    optimized = _matches_tf(model, [inputs])
    assert any("threshold" in str(n.target) for n in optimized.graph.nodes)


def test_det_matches_tf():
    _matches_tf(_model(tf.linalg.det, (3, 3)), [rng.standard_normal((4, 3, 3)).astype(np.float32)])


@pytest.mark.parametrize("dtype", ["int8", "int32"])
def test_bit_shifts_match_tf(dtype):
    """tf2onnx casts int8 to uint8 and int32 to uint64 for BitShift (a logical right shift of
    the unsigned bits, as TF's right_shift of a negative number is not)."""
    bits = np.iinfo(dtype).bits

    def shifts(x):
        amount = tf.constant([0, 1, 3, bits - 1], dtype)
        return tf.concat(
            [tf.bitwise.left_shift(x, amount), tf.bitwise.right_shift(tf.abs(x), amount)], -1
        )

    x = rng.integers(np.iinfo(dtype).min + 1, np.iinfo(dtype).max, (3, 4)).astype(dtype)
    _matches_tf(_model(shifts, (4,), dtype), [x], atol=0)


def test_int8_matmul_to_int32_matches_tf():
    """tf2onnx writes an int8 matmul with output_type=tf.int32 as MatMulInteger."""
    weights = tf.constant(rng.integers(-128, 128, (6, 3)).astype(np.int8))

    def matmul(x):
        return tf.linalg.matmul(x, weights, output_type=tf.int32)

    x = rng.integers(-128, 128, (4, 6)).astype(np.int8)
    optimized = _matches_tf(_model(matmul, (6,), "int8"), [x], atol=0)
    assert any("matmul" in str(n.target) for n in optimized.graph.nodes)


def test_dynamic_stitch_matches_tf():
    """tf.dynamic_stitch is ScatterElements of the data into zeros along axis 0."""

    def stitch(x):
        parts = [tf.transpose(x[:, :2]), tf.transpose(x[:, 2:])]
        return tf.dynamic_stitch([tf.constant([0, 3]), tf.constant([2, 1, 4])], parts)

    model = _model(stitch, (5,))
    _matches_tf(model, [rng.standard_normal((n, 5)).astype(np.float32) for n in (2, 3)])


def test_fake_quantization_matches_tf():
    """Fake quantization is Q then DQ with one uint8 scale and zero point; the values land
    between the levels, outside the range, and on the levels."""

    def fake_quant(x):
        args = tf.quantization.fake_quant_with_min_max_args(x, -1.0, 2.0)
        low, high = tf.constant(-0.5), tf.constant(1.5)
        return args + tf.quantization.fake_quant_with_min_max_vars(x * 0.7, low, high)

    x = rng.uniform(-3, 3, (4, 8)).astype(np.float32)
    x[0] = np.arange(8, dtype=np.float32) * (3 / 255)  # on the levels of the first
    _matches_tf(_model(fake_quant, (8,)), [x])


def _unique(x):
    """tf.unique_with_counts of the flattened input: values in order of first occurrence,
    each element's index among them, the counts (Unique, sorted=0), all as float."""
    values, index, counts = tf.unique_with_counts(tf.reshape(x, [-1]))
    return tf.concat([values, tf.cast(index, tf.float32), tf.cast(counts, tf.float32)], 0)


def test_unique_with_counts_matches_tf():
    model = _model(_unique, (4,))
    x = rng.integers(-3, 3, (3, 4)).astype(np.float32)
    _matches_tf(model, [x, x[:1], np.full((2, 4), 7.0, np.float32)], atol=0)


def test_bincount_of_each_row_matches_tf():
    """tf2onnx writes a per-row bincount as Unique of (row, value) pairs (axis 0, sorted)
    and Compress of the in-range ones, scattered into zeros."""

    def bincount(x):
        counts = tf.math.bincount(tf.cast(x, tf.int32), minlength=6, maxlength=6, axis=-1)
        return tf.cast(counts, tf.float32)

    optimized = _matches_tf(
        _model(bincount, (4,)), [rng.integers(0, 8, (n, 4)).astype(np.float32) for n in (3, 1)]
    )
    assert torch.unique in [n.target for n in optimized.graph.nodes]


def _reductions_and_split(x):
    parts = tf.split(x, 3, axis=1)  # Split-18 with num_outputs
    uneven = tf.split(x, [2, 4], axis=1)  # with the sizes as an input
    reduced = [tf.reduce_mean(x, 1), tf.reduce_max(x, 1), tf.reduce_prod(parts[0], 1)]
    reduced += [tf.reduce_logsumexp(uneven[1], 1), tf.norm(x, axis=1), tf.reduce_min(x, 1)]
    return tf.concat(
        [tf.stack(reduced, 1), parts[2], uneven[0], tf.reduce_sum(x)[None, None] + x], 1
    )


def test_reductions_and_split_at_opset_18_match_tf():
    """tf2onnx --opset 18: the reductions take their axes as an input, Split num_outputs."""
    model = _model(_reductions_and_split, (6,))
    x = [rng.uniform(0.5, 1.5, (n, 6)).astype(np.float32) for n in (2, 5)]
    _matches_tf(model, x, opset=18)


def test_random_ops_are_refused_by_node_and_op():
    def noisy(x):
        return x + tf.random.normal(tf.shape(x))

    with pytest.raises(InputError, match=r"\(op RandomNormalLike\) cannot be converted: .*random"):
        fxsurgeon.from_tensorflow(_model(noisy, (4,)))
