"""The dims a model's own Python forces static (fxsurgeon/frontdoor/static_dims.py): when the
trace on the export's dynamic specs fails, the export keeps static the fewest of the dims it
made dynamic (at their signature size) that let the model trace, and every other dim
dynamic; the ONNX metadata and ``report_of(...).forced_dims`` name each with the failure
and the Keras layer. A model that traces dynamically gets nothing forced.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.errors import InputError
from fxsurgeon.source import STATIC_DIMS_KEY, export_static_dims

tf = import_tensorflow()
keras = pytest.importorskip("tf_keras")


class _FlattenByStaticShape(keras.layers.Layer):
    """Folds dims 1 and 2 into one, the size computed from ``x.shape[1]`` as a Python int
    (None when dim 1 is dynamic: ``int(None)`` raises a TypeError); dim 2 read with ``tf.shape``."""

    def call(self, x):
        return tf.reshape(x, [tf.shape(x)[0], int(x.shape[1]) * tf.shape(x)[2], x.shape[3]])


class _FlattenByDynamicShape(keras.layers.Layer):
    """The same with ``tf.shape(x)[1]``: traces with every dim dynamic."""

    def call(self, x):
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1] * shape[2], x.shape[3]])


def _model(layer: keras.layers.Layer) -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((6, None, 4), name="x")
    y = keras.layers.Dense(3, name="dense")(layer(x))
    return keras.Model(x, y)


def _inputs(batch: int, dim2: int = 5) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 6, dim2, 4)).astype(np.float32)


def _input_dims(proto: onnx.ModelProto) -> list[int | None]:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def test_a_dim_read_as_a_python_int_is_kept_static_and_the_others_stay_dynamic():
    model = _model(_FlattenByStaticShape(name="flatten_by_shape"))
    proto = fxsurgeon.export_onnx(model, dynamic_axes={"x": [1]})
    assert _input_dims(proto) == [None, 6, None, 4]  # dim 1 forced, dims 0 and 2 dynamic
    (static,) = export_static_dims(proto)
    assert (static.input, static.dim, static.size) == ("x", 1, 6)
    assert "TypeError" in static.cause and "'flatten_by_shape'" in static.cause

    optimized = fxsurgeon.optimize(fxsurgeon.from_tensorflow(model, dynamic_axes={"x": [1]}))
    report = fxsurgeon.report_of(optimized)
    assert report.forced_dims[0].startswith("input x dim 1 is fixed to 6 by the model's Python")
    assert "'flatten_by_shape'" in report.forced_dims[0]
    assert report.forced_dims[0] in report.notes
    assert "x[0]" in report.dynamic_dims and "x[2]" in report.dynamic_dims
    assert "x[1]" not in report.dynamic_dims
    for batch, dim2 in ((1, 5), (2, 3), (5, 7)):  # several batches, and dim 2 varied
        x = _inputs(batch, dim2)
        with torch.no_grad():
            got = optimized(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5, rtol=0)


def test_door_b_reports_the_dim_the_export_kept_static():
    model = _model(_FlattenByStaticShape(name="flatten_by_shape"))
    proto = fxsurgeon.export_onnx(model, dynamic_axes={"x": [1]})
    assert _input_dims(proto) == [None, 6, None, 4]
    optimized = fxsurgeon.optimize(import_onnx2torch().convert(proto))
    (forced,) = fxsurgeon.report_of(optimized).forced_dims
    assert forced.startswith("input x dim 1 is fixed to 6 by the model's Python")


def test_a_model_that_traces_dynamically_has_nothing_forced():
    model = _model(_FlattenByDynamicShape(name="flatten"))
    proto = fxsurgeon.export_onnx(model, dynamic_axes={"x": [1]})
    assert _input_dims(proto) == [None, None, None, 4]
    assert export_static_dims(proto) == []
    assert STATIC_DIMS_KEY not in {p.key for p in proto.metadata_props}
    optimized = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    report = fxsurgeon.report_of(optimized)
    assert report.forced_dims == []
    assert {"x[0]", "x[1]", "x[2]"} <= set(report.dynamic_dims)
    x = np.random.default_rng(0).standard_normal((3, 2, 7, 4)).astype(np.float32)
    with torch.no_grad():
        got = optimized(torch.from_numpy(x)).numpy()
    # the Keras model checks its input's dim 1 (6): its layers are called directly
    want = model.get_layer("dense")(model.get_layer("flatten")(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


class _ReadsEveryDim(keras.layers.Layer):
    """Reads dims 1 and 2 of ``x`` and dim 1 of ``y`` as Python ints: only some of them
    are made dynamic by the export, and only those are forced."""

    def call(self, inputs):
        x, y = inputs
        scale = float(x.shape[1] * 100 + x.shape[2] * 10 + y.shape[1])
        return tf.reduce_sum(x, axis=[1, 2]) * scale + tf.reduce_sum(y, axis=1, keepdims=True)


def test_each_dim_read_is_found_one_at_a_time():
    x = keras.Input((6, 5, 4), name="x")
    y = keras.Input((3,), name="y")
    model = keras.Model([x, y], _ReadsEveryDim(name="reads")([x, y]))
    proto = fxsurgeon.export_onnx(model, dynamic_axes={"x": [1, 2], "y": [1]})
    shapes = {
        i.name: [
            d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim
        ]
        for i in proto.graph.input
    }
    assert shapes == {"x": [None, 6, 5, 4], "y": [None, 3]}
    assert [(s.input, s.dim, s.size) for s in export_static_dims(proto)] == [
        ("x", 1, 6),
        ("x", 2, 5),
        ("y", 1, 3),
    ]


def test_a_dim_without_a_size_in_the_signature_is_refused_as_before():
    """The signature leaves the read dim None: there is no size to keep it static at."""
    model = _model(_FlattenByStaticShape(name="flatten_by_shape"))
    with pytest.raises(InputError) as caught:
        fxsurgeon.export_onnx(model, [tf.TensorSpec((None, None, None, 4), name="x")])
    message = str(caught.value)
    assert "tracing the model on its input signature failed" in message
    assert "'flatten_by_shape'" in message and "x (None, None, None, 4)" in message
