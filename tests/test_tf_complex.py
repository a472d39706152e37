"""TF complex tensors and cumulative products in the export (fxsurgeon/frontdoor/tf_complex.py,
tf_handlers.py's Cumprod): onnxruntime runs the export, and fxsurgeon's optimized module,
and both must give what TensorFlow gives, on a dynamic length."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


def _check(model, cases: list[dict[str, np.ndarray]], atol: float = 1e-5) -> list:
    """TF's outputs per case, after checking onnxruntime and the optimized module on them."""
    proto = fxsurgeon.export_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    wanted = []
    for inputs in cases:
        tensors = [tf.constant(v) for v in inputs.values()]
        want = model(tensors if len(tensors) > 1 else tensors[0])
        want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
        for got, w in zip(session.run(None, inputs), want, strict=True):
            np.testing.assert_allclose(got, w, atol=atol, rtol=0)
        out = module(*[torch.from_numpy(v) for v in inputs.values()])
        for got, w in zip(out if isinstance(out, (list, tuple)) else [out], want, strict=True):
            np.testing.assert_allclose(got.detach().numpy(), w, atol=atol, rtol=0)
        wanted.append(want)
    return wanted


class _Spectra(keras.layers.Layer):
    """Every complex op the export writes: tf.complex, casts, the FFTs and their inverses,
    real/imag/abs, a slice and an expand_dims of a complex tensor."""

    def call(self, x, y):
        z = tf.complex(x, y)
        fnet = tf.math.real(tf.signal.fft2d(tf.cast(x, tf.complex64)))  # keras_hub's FNet
        back = tf.math.imag(tf.signal.ifft2d(tf.signal.fft2d(z)))  # == y
        spectrum = tf.expand_dims(tf.signal.fft(z), axis=-1)
        magnitude = tf.math.abs(spectrum[:, :3, :])  # keras.io's speaker recogniser
        lifted = tf.expand_dims(tf.signal.fft(z), 0)
        cube = tf.math.real(tf.signal.ifft3d(lifted + tf.signal.fft3d(tf.expand_dims(z, 0))))
        return [fnet, back, magnitude, cube[0]]


def test_complex_ffts_match_tf_on_a_dynamic_length():
    x = keras.Input((None, 6), name="x")
    y = keras.Input((None, 6), name="y")
    model = keras.Model([x, y], _Spectra()(x, y))
    rng = np.random.default_rng(0)
    cases = [
        {k: rng.standard_normal((2, length, 6)).astype(np.float32) for k in "xy"}
        for length in (5, 8)
    ]
    for inputs, want in zip(cases, _check(model, cases), strict=True):
        np.testing.assert_allclose(want[1], inputs["y"], atol=1e-5)  # the inverse is one


class _Product(keras.layers.Layer):
    def call(self, x):
        z = tf.signal.fft(tf.complex(x, x))
        return tf.math.real(tf.reduce_prod(z, axis=0))


def test_a_product_over_an_axis_of_a_complex_tensor_is_refused_naming_the_op():
    """On the real/imaginary pairs ONNX's ReduceProd would multiply each part: refused."""
    x = keras.Input((4,), name="x")
    model = keras.Model(x, _Product()(x))
    with pytest.raises(Exception, match=r"Prod of a complex tensor cannot be exported"):
        fxsurgeon.export_onnx(model)


class _Cumprods(keras.layers.Layer):
    def call(self, x):
        return [
            tf.math.cumprod(x, axis=axis, exclusive=exclusive, reverse=reverse)
            for axis in (1, -1)
            for exclusive in (False, True)
            for reverse in (False, True)
        ]


def test_cumprod_matches_tf_on_any_axis_without_a_loop():
    """tf2onnx wrote Cumprod as a Loop, and failed on a negative axis (NeRF's exclusive
    transmittance): a product over a triangle of positions instead."""
    x = keras.Input((None, 4), name="x")
    model = keras.Model(x, _Cumprods()(x))
    proto = fxsurgeon.export_onnx(model)
    assert "Loop" not in {n.op_type for n in proto.graph.node}
    rng = np.random.default_rng(1)
    _check(model, [{"x": rng.uniform(-1.5, 1.5, (2, n, 4)).astype(np.float32)} for n in (1, 6)])
