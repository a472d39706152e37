"""XLA's DynamicSlice (``tf.compiler.tf2xla.python.xla.dynamic_slice``, TF T5's cached
relative position bias) as the front door exports it (fxsurgeon/frontdoor/tf_handlers.py;
tf2onnx has no handler for it): starts clamped into ``[0, dim - size]`` as XLA clamps them,
a Slice on the axes of constant starts and a Gather of ``start + Range(size)`` on each axis
of a computed one, so the window's shape is its size, never the data's. Against TF and
onnxruntime, with starts past the end and below zero, compiled in one graph."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Windows(keras.layers.Layer):
    """Three windows of 2 rows of a (batch, length, 3) input, length dynamic: from a
    computed row (the argmax of the first column), from past the end, from below zero."""

    def call(self, x):
        from tensorflow.compiler.tf2xla.python.xla import dynamic_slice

        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        sizes = tf.stack([batch, 2, 3])
        row = tf.cast(tf.reduce_max(tf.argmax(x[:, :, 0], axis=1)), tf.int32)
        return [
            dynamic_slice(x, tf.stack([0, row, 0]), sizes),
            dynamic_slice(x, tf.stack([0, length + 1, 0]), sizes),
            dynamic_slice(x, tf.stack([0, row - length - 5, 1]), sizes),
        ]


def test_xla_dynamic_slice_is_a_clamped_slice_and_matches_tf():
    x = keras.Input((None, 3), name="x")
    model = keras.Model(x, _Windows()(x))
    proto = fxsurgeon.export_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    assert "XlaDynamicSlice" not in ops and ops.count("Gather") >= 3, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    assert fxsurgeon.report_of(module).unconverted == {}
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    rng = np.random.default_rng(0)
    for batch, length in ((1, 4), (3, 7)):
        xv = rng.standard_normal((batch, length, 3)).astype(np.float32)
        want = [np.asarray(t) for t in model(tf.constant(xv))]
        assert want[1].shape == (batch, 2, 3)  # clamped, not shortened
        with torch.no_grad():
            out, again = module(torch.from_numpy(xv)), compiled(torch.from_numpy(xv))
        for k, (g, o, c, w) in enumerate(
            zip(session.run(None, {"x": xv}), out, again, want, strict=True)
        ):
            np.testing.assert_array_equal(g, w, err_msg=f"onnxruntime {k}")
            np.testing.assert_array_equal(o.numpy(), w, err_msg=f"optimized {k}")
            np.testing.assert_array_equal(c.numpy(), w, err_msg=f"compiled {k}")


def test_added_handlers_are_registered_only_while_exporting_and_never_replace_tf2onnx_s():
    from tf2onnx import constants
    from tf2onnx.handler import tf_op

    from fxsurgeon.frontdoor.tf_handlers import corrected_handlers
    from fxsurgeon.frontdoor.tf_xla import ADDED

    def registered(name):
        return [h[name][0] for h in tf_op.get_opsets()[constants.ONNX_DOMAIN] if name in h]

    with corrected_handlers():
        assert registered("XlaDynamicSlice") == [ADDED["XlaDynamicSlice"]]
    assert registered("XlaDynamicSlice") == []
    # a tf2onnx that handles the op itself keeps its handler
    own = lambda ctx, node, **kw: None  # noqa: E731
    opsets = tf_op.get_opsets()[constants.ONNX_DOMAIN]
    opsets[1]["XlaDynamicSlice"] = (own, {})
    try:
        with corrected_handlers():
            assert registered("XlaDynamicSlice") == [own]
    finally:
        del opsets[1]["XlaDynamicSlice"]
