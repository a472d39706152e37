"""Variables assigned inside the exported call (fxsurgeon/frontdoor/assigns.py).

A read that follows an assignment of the same variable reads the assigned value; the
variable itself stays a weight of the export. onnxruntime runs the export and must give
what TensorFlow gives on the same variable values (the export runs first: a TF call
assigns the variable).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.errors import InputError
from fxsurgeon.tensorflow import map_initializers_to_variables

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _MaskedDense(keras.layers.Layer):
    """keras.io PixelCNN's masked kernel: ``kernel.assign(kernel * mask)``, then use it."""

    def build(self, shape):
        self.kernel = self.add_weight(
            shape=(shape[-1], 4), initializer="random_normal", name="kernel"
        )
        self.mask = np.tril(np.ones((shape[-1], 4), np.float32))

    def call(self, x):
        self.kernel.assign(self.kernel * self.mask)
        return tf.matmul(x, self.kernel)


class _Accumulate(keras.layers.Layer):
    """A read before, ``assign_add`` of an input-dependent value, ``assign_sub``, a read after."""

    def build(self, shape):
        self.total = self.add_weight(shape=(shape[-1],), initializer="random_normal", name="total")

    def call(self, x):
        before = x * self.total
        self.total.assign_add(tf.reduce_mean(x, axis=0))
        self.total.assign_sub(0.5 * self.total)
        return before + self.total


class _LoopAssign(keras.layers.Layer):
    """``assign_add`` in a while-loop body: each iteration reads the previous one's value
    (a ``tf.Variable``: Keras 3's own cannot be assigned in a loop body)."""

    def build(self, shape):
        self.total = tf.Variable(np.ones(shape[-1], np.float32), name="total")

    def call(self, x):
        def body(i):
            self.total.assign_add(self.total * 0.5)
            return [i + 1]

        tf.while_loop(lambda i: i < tf.shape(x)[0], body, [tf.constant(0)])
        return x + self.total


def _model(layer, features: int = 3):
    x = keras.Input((features,), name="x")
    return keras.Model(x, layer(x))


def _check_against_tf(model, x: np.ndarray) -> list[str]:
    """The export matches TF (onnxruntime and the GraphModule); the names of the variables
    its initializers hold (before the call: the values the export froze)."""
    proto = fxsurgeon.export_onnx(model)
    assert not any("Assign" in n.op_type for n in proto.graph.node)
    origins = map_initializers_to_variables(proto, model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    module = fxsurgeon.from_onnx(proto)
    torch_got = module(torch.from_numpy(x)).detach().numpy()
    want = np.asarray(model(x))  # assigns the variables: after the export
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(torch_got, want, atol=1e-5, rtol=0)
    return sorted(o.variable.name for found in origins.values() for o in found)


def test_a_read_after_an_assign_reads_the_assigned_value():
    keras.utils.set_random_seed(0)
    model = _model(_MaskedDense(name="masked"))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    # the kernel is still a weight, unmasked (tf2onnx's TF-op folder would fold kernel * mask)
    assert _check_against_tf(model, x) == ["masked/kernel"]


def test_assign_add_and_assign_sub_accumulate_on_the_previous_value():
    keras.utils.set_random_seed(1)
    model = _model(_Accumulate(name="accumulate"))
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    assert _check_against_tf(model, x) == ["accumulate/total"]


def test_an_assign_in_a_loop_body_is_refused_naming_it():
    keras.utils.set_random_seed(2)
    model = _model(_LoopAssign())
    with pytest.raises(InputError, match="AssignAddVariableOp .* inside a loop body"):
        fxsurgeon.export_onnx(model)
