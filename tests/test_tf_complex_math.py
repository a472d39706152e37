"""Complex arithmetic and the real FFTs in the export (fxsurgeon/frontdoor/tf_complex.py's
tables, tf_fft.py's RFFT/IRFFT): onnxruntime and fxsurgeon's optimized module against
TensorFlow itself, on a dynamic length, float32, max abs diff 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from tests.test_tf_complex import _check

tf = import_tensorflow()
keras = pytest.importorskip("keras")


def _parts(*zs):
    return [f(z) for z in zs for f in (tf.math.real, tf.math.imag)]


class _Arithmetic(keras.layers.Layer):
    """Each arithmetic op of the tables, on complex tensors made three ways (tf.complex,
    an FFT, a cast) and with complex constants (the real-valued ones on the pairs); the
    matrix products with transposes and adjoints."""

    def call(self, x, y):
        z, w = tf.complex(x, y), tf.signal.fft(tf.complex(y, x))
        c = tf.cast(y, tf.complex64)
        scale = tf.constant(np.linspace(-1, 2, 6) + 1j * np.linspace(0.5, 1, 6), tf.complex64)
        grid = np.arange(24).reshape(4, 6)
        matrix = tf.constant(np.cos(grid) + 1j * np.sin(grid), tf.complex64)
        return [
            *_parts(z * w, z / w, tf.square(z), tf.exp(0.3 * z), tf.math.conj(w), -z),
            *_parts(z + w - c, tf.add_n([z, w, c]), z * scale, 2.0 * z, z / 4.0),
            *_parts(tf.complex(2.0, 0.5) * z - tf.constant(1j, tf.complex64)),
            *_parts(tf.matmul(z, w[:, :3], adjoint_b=True), tf.matmul(z, w, adjoint_a=True)),
            *_parts(tf.matmul(z[0], matrix, transpose_b=True), tf.matmul(z, tf.transpose(matrix))),
            tf.abs(z * w),
            tf.math.angle(z),
            tf.math.angle(w),
        ]


def _inputs(rng, length: int) -> dict[str, np.ndarray]:
    x, y = (rng.standard_normal((2, length, 6)).astype(np.float32) for _ in range(2))
    x[:, :, 0] = 0.0  # angles on the imaginary axis (both signs) and at the origin
    y[:, 0, 0] = 0.0
    y[:, :, 1] = 0.0  # angles on the real axis: 0 and pi
    x[:, :, 2] = -np.abs(x[:, :, 2])  # the left half plane, both signs of the imaginary part
    return {"x": x, "y": y}


def test_elementwise_complex_ops_match_tf():
    x = keras.Input((None, 6), name="x")
    y = keras.Input((None, 6), name="y")
    model = keras.Model([x, y], _Arithmetic()(x, y))
    rng = np.random.default_rng(0)
    _check(model, [_inputs(rng, length) for length in (3, 5)])


class _RealFFTs(keras.layers.Layer):
    """rfft/irfft with fft_length cutting and padding the input, 2D and 3D, a slice with an
    ellipsis of a spectrum (the MFCCs' DCT) and GFNet's filter."""

    def call(self, x):
        spectrum = tf.signal.rfft(x)  # 4 bins of 6
        filtered = spectrum * tf.constant(np.array([1.0, 0.5j, -2.0, 1 + 1j], np.complex64))
        shifted = tf.expand_dims(x, 1)
        return [
            *_parts(spectrum, tf.signal.rfft(x, fft_length=[4]), tf.signal.rfft(x, [9])),
            *_parts(spectrum[..., :3], spectrum[:, 1:, None, 2], spectrum[..., -1]),
            tf.signal.irfft(filtered),  # 6
            tf.signal.irfft(filtered, fft_length=[5]),  # cut to 3 bins
            tf.signal.irfft(filtered, fft_length=[10]),  # padded to 6 bins
            tf.signal.irfft(spectrum[..., :3], fft_length=[6]) - x,  # the even bin missing
            *_parts(tf.signal.rfft2d(x), tf.signal.rfft2d(x, fft_length=[3, 6])),
            *_parts(tf.signal.rfft3d(shifted)),
            tf.signal.irfft2d(tf.signal.rfft2d(x), fft_length=[4, 6]),
            *_parts(tf.signal.fft2d(tf.complex(x, tf.zeros_like(x)))),  # real-valued: zeros
            *_parts(tf.signal.ifft2d(tf.cast(x, tf.complex64))),  # real-valued: a cast
            *_parts(tf.signal.ifft(tf.complex(x, tf.ones_like(x)))),  # not real-valued
            tf.signal.irfft(tf.cast(x, tf.complex64)),
            tf.signal.irfft3d(tf.signal.rfft3d(shifted))[:, 0] - x,
        ]


def test_real_ffts_and_their_inverses_match_tf_on_a_dynamic_length():
    x = keras.Input((None, 6), name="x")
    model = keras.Model(x, _RealFFTs()(x))
    rng = np.random.default_rng(1)
    cases = [{"x": rng.standard_normal((2, length, 6)).astype(np.float32)} for length in (3, 4)]
    for want in _check(model, cases):
        assert np.abs(want[-1]).max() < 1e-5  # the inverse is one


class _Mixing(keras.layers.Layer):
    def call(self, x):
        turned = tf.transpose(tf.complex(x, tf.zeros_like(x)), [0, 2, 1]) * 2.0
        return [
            tf.math.real(tf.signal.fft2d(tf.cast(x, tf.complex64))),
            tf.math.imag(tf.signal.fft(turned)),
        ]


def test_the_fft_of_a_real_valued_tensor_skips_the_zero_products():
    """FNet's fft2d of a cast: the first axis transformed (the last one) has no imaginary
    part, so 2 products for it and 4 for the other, not 8; a transpose of a real-valued
    tensor, times a real constant, is real-valued: 2, not 4."""
    x = keras.Input((None, 6), name="x")
    model = keras.Model(x, _Mixing()(x))
    proto = fxsurgeon.export_onnx(model)
    assert sum(node.op_type == "MatMul" for node in proto.graph.node) == 8
    rng = np.random.default_rng(3)
    _check(model, [{"x": rng.standard_normal((2, n, 6)).astype(np.float32)} for n in (3, 4)])


class _Reshaped(keras.layers.Layer):
    """Each shape op of the table on a complex tensor, with axes from the end and all axes."""

    def call(self, x, y):
        z, w = tf.complex(x, y), tf.signal.fft(tf.complex(y, x))
        return [
            *_parts(tf.reshape(z, [-1, 3]), tf.transpose(z, [2, 0, 1]), tf.tile(z, [1, 2, 1])),
            *_parts(tf.concat([z, w], axis=-1), tf.stack([z, w], -1), tf.stack([z, w], 1)),
            *_parts(tf.squeeze(tf.expand_dims(z, -1), -1), tf.squeeze(z[:, :1], axis=[1])),
            *_parts(tf.reduce_sum(z, -1), tf.reduce_mean(z, axis=[1]), tf.reduce_sum(z)),
            *_parts(tf.gather(z, [0, 2], axis=-1), tf.gather(w, [1, 0], axis=0)),
            *_parts(tf.slice(z, [0, 1, 2], [-1, -1, 3]), tf.pad(w, [[0, 0], [1, 2], [0, 0]])),
            *_parts(tf.pad(z, [[0, 0], [0, 0], [2, 1]], mode="REFLECT")),
            *_parts(tf.pad(z, [[0, 0], [1, 0], [2, 3]], mode="SYMMETRIC")),
            *_parts(tf.math.cumsum(z, -1, exclusive=True), tf.signal.fftshift(w, axes=-1)),
            *_parts(tf.roll(z, shift=[1, -2], axis=[1, -1])),
            tf.cast(tf.shape(z), tf.float32),
        ]


def test_shape_ops_of_complex_tensors_match_tf():
    x = keras.Input((None, 6), name="x")
    y = keras.Input((None, 6), name="y")
    model = keras.Model([x, y], _Reshaped()(x, y))
    rng = np.random.default_rng(2)
    _check(model, [_inputs(rng, length) for length in (2, 5)])


class _Given(keras.layers.Layer):
    def call(self, z):
        return tf.math.real(z)


def test_a_complex_input_is_refused_naming_the_op():
    """A complex tensor none of the tables made (a model input) has no pairs to read."""
    z = keras.Input((4,), name="z", dtype="complex64")
    model = keras.Model(z, _Given()(z))
    with pytest.raises(Exception, match=r"Real of a complex tensor not made by a supported op"):
        fxsurgeon.export_onnx(model)
