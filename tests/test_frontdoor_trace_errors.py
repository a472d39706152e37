"""A model whose Python fails when traced on the export's specs is refused with an
InputError that says what failed, in which Keras layer, and which input dims were dynamic
(fxsurgeon/frontdoor/freeze._trace_failure): transformers' TF Mistral adds a cache length
read as a static shape, None for a dynamic one. The same layer with that dim static exports
and matches TF through onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.errors import InputError

tf = import_tensorflow()
keras = pytest.importorskip("tf_keras")


class _StaticLength(keras.layers.Layer):
    """Adds the (static) length of its second input, as TF Mistral's ``kv_seq_len``."""

    def call(self, inputs):
        x, past = inputs
        length = tf.shape(x)[1] + past.shape[1]
        return x * tf.cast(length, x.dtype)


def _model(past_length):
    x = keras.Input((None, 4), name="x")
    past = keras.Input((past_length, 4), name="past")
    return keras.Model([x, past], _StaticLength(name="lengths")([x, past]))


def test_a_static_shape_read_of_a_dynamic_dim_is_refused_naming_the_layer_and_dims():
    model = _model(3)
    signature = [
        tf.TensorSpec((None, None, 4), name="x"),
        tf.TensorSpec((None, None, 4), name="past"),
    ]
    with pytest.raises(InputError) as caught:
        fxsurgeon.export_onnx(model, signature)
    message = str(caught.value)
    assert "tracing the model on its input signature failed" in message
    assert "'lengths'" in message and "past (None, None, 4)" in message


def test_the_same_layer_with_the_dim_static_exports():
    model = _model(3)
    signature = [tf.TensorSpec((None, None, 4), name="x"), tf.TensorSpec((None, 3, 4), name="past")]
    proto = fxsurgeon.export_onnx(model, signature)
    rng = np.random.default_rng(0)
    x, past = rng.standard_normal((2, 5, 4), np.float32), rng.standard_normal((2, 3, 4), np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x, "past": past})[0]
    np.testing.assert_allclose(got, model([x, past]).numpy(), atol=1e-5, rtol=0)
