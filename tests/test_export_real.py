"""The export keeps real models whole: captured constants, Keras 3 BatchNorm, grouped Conv2D.

Each model reproduces one failure of plain ``tf2onnx.convert.from_function``
(see `fxsurgeon.frontdoor.freeze`) and asserts ONNX Runtime matches TensorFlow
and every TF variable is an initializer of its own.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.frontdoor.freeze import _variable_dependent
from fxsurgeon.tensorflow import export_onnx, map_initializers_to_variables, tf_variables_of

tf = import_tensorflow()
keras = pytest.importorskip("keras")

ATOL = 1e-5


def _check(model, proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> None:
    """ORT matches TF within ATOL; every variable is held by exactly one initializer."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(inputs)
    got = session.run(None, inputs)[0]
    want = model(*[tf.constant(v) for v in inputs.values()], training=False).numpy()
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= ATOL
    held: dict[str, int] = {}
    for origins in map_initializers_to_variables(proto, model).values():
        for origin in origins:
            held[origin.variable.name] = held.get(origin.variable.name, 0) + 1
    variables = [v.name for v, _ in tf_variables_of(model)]
    assert variables
    assert {name: held.get(name, 0) for name in variables} == dict.fromkeys(variables, 1)


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_captured_eager_constants_are_frozen_not_inputs():
    """Normalization(mean=, variance=) and a captured sinusoid table: constants, not inputs."""
    table = tf.constant(np.sin(np.arange(24, dtype=np.float32)).reshape(4, 6))

    class AddTable(keras.layers.Layer):
        def call(self, x):
            return x + tf.reduce_sum(table, axis=0)

    x = keras.Input((6,), name="features")
    h = keras.layers.Normalization(mean=list(range(6)), variance=[1, 2, 3, 4, 5, 6])(x)
    y = keras.layers.Dense(3, name="head")(AddTable()(h))
    model = keras.Model(x, y)
    randomize_variables(model, 1)
    proto = export_onnx(model)
    assert [i.name for i in proto.graph.input] == ["features"]
    _check(model, proto, {"features": _image((3, 6))})


def test_keras3_conv_batchnorm_keeps_every_variable():
    """Grappler would fold BN into one scale/offset and scale the Conv kernel with it."""
    x = keras.Input((9, 9, 3), name="image")
    h = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    h = keras.layers.BatchNormalization(name="bn_dw", scale=False)(h)
    model = keras.Model(x, h)
    randomize_variables(model, 2)
    proto = export_onnx(model)
    _check(model, proto, {"image": _image((2, 9, 9, 3))})


def test_grouped_conv2d_is_inlined_and_converted():
    """Keras runs a grouped Conv2D on CPU as an XLA-compiled tf.function call."""
    x = keras.Input((8, 8, 4), name="image")
    h = keras.layers.Conv2D(6, 3, groups=2, name="grouped")(x)
    model = keras.Model(x, keras.layers.Conv2D(4, 1, name="pointwise")(h))
    randomize_variables(model, 3)
    proto = export_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    assert "PartitionedCall" not in ops and "StatefulPartitionedCall" not in ops
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    groups = sorted(a.i for n in convs for a in n.attribute if a.name == "group")
    assert 2 in groups
    _check(model, proto, {"image": _image((2, 8, 8, 4))})


def test_variable_dependence_stops_at_shape_ops_and_passes_layout_ops():
    """The dataflow that decides which TF-side folds are refused."""
    graph = tf.Graph()
    with graph.as_default():
        w = tf.constant(np.ones((2, 3), np.float32), name="w")
        c = tf.constant(np.ones((3, 2), np.float32), name="c")
        moved = tf.transpose(tf.identity(w))  # holds w's values
        mixed = moved * c  # computed from w
        shape = tf.shape(mixed)  # does not depend on the values
        plain = c + 1.0
    valued, computed = _variable_dependent(graph, {"w"})
    assert moved.name in valued and w.name in valued
    assert mixed.name in computed
    assert shape.name not in valued | computed
    assert plain.name not in valued | computed


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv_transpose_output_padding_is_valid_onnx(padding):
    """tf2onnx writes ``Conv2DTranspose(strides=2, output_padding=1)`` with end pads of -1,
    which onnxruntime refuses to load; the export makes them ONNX's ``output_padding``."""
    x = keras.Input((5, 6, 3), name="image")
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding=padding, output_padding=1)(x)
    model = keras.Model(x, y)
    randomize_variables(model, 0)
    proto = export_onnx(model)
    (node,) = [n for n in proto.graph.node if n.op_type == "ConvTranspose"]
    attrs = {a.name: list(a.ints) for a in node.attribute}
    assert min(attrs.get("pads", [0])) >= 0
    if padding == "valid":  # "same" crops by more than the output padding: pads [0, 0, 1, 1]
        assert attrs["output_padding"] == [1, 1]
    _check(model, proto, {"image": _image((2, 5, 6, 3))})
