"""tf2onnx's wiring of If branches, corrected (fxsurgeon/frontdoor/tf_control.py).

onnxruntime and the GraphModule run the export and must give what TensorFlow gives on
both sides of the If (sequence lengths 1, 2 and 5 around the predicate ``length > 2``).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.frontdoor import freeze
from fxsurgeon.frontdoor.tf_control import refine_branch_shapes

tf = import_tensorflow()
keras = pytest.importorskip("tf_keras")


class _PoolWhenLong(keras.layers.Layer):
    """Funnel's ``if pooling_flag:``: the taken side pools, the other returns its input as
    two of the cond's outputs."""

    def build(self, shape):
        self.w = self.add_weight("w", shape=(shape[-1],), initializer="random_normal")

    def call(self, x):
        h = x * self.w
        pooled, shifted = h, h
        if tf.shape(h)[1] > 2:
            pooled = tf.nn.avg_pool1d(h, 2, 2, "SAME")
            shifted = h + 1.0
        return tf.reduce_sum(pooled, 1) + tf.reduce_sum(shifted, 1)


def _model():
    keras.utils.set_random_seed(0)
    x = keras.Input((None, 4), name="x")
    return keras.Model(x, _PoolWhenLong()(x))


def _check_against_tf(model) -> None:
    proto = fxsurgeon.export_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.from_onnx(proto)
    rng = np.random.default_rng(0)
    for length in (1, 2, 5):
        x = rng.standard_normal((2, length, 4)).astype(np.float32)
        want = model(x).numpy()
        np.testing.assert_allclose(session.run(None, {"x": x})[0], want, atol=1e-5, rtol=0)
        got = module(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_a_branch_returning_one_tensor_twice_converts():
    """tf2onnx renamed only the first of the repeated outputs: 'cannot find node by output id'."""
    _check_against_tf(_model())


def _forget_branch_shapes(graph_def) -> None:
    """Declare every branch argument of unknown rank, as grappler's region-specialised
    branches do (Funnel's)."""
    for function in graph_def.library.function:
        for attrs in function.arg_attr.values():
            if "_output_shapes" in attrs.attr:
                shape = attrs.attr["_output_shapes"].list.shape[0]
                shape.Clear()
                shape.unknown_rank = True


def test_branch_arguments_of_unknown_rank_take_the_if_inputs_shapes(monkeypatch):
    """Without the refinement tf2onnx cannot pad the branch's AvgPool (unknown rank)."""
    optimize = freeze._optimize_with_opaque

    def forgetting(*args):
        graph_def = optimize(*args)
        _forget_branch_shapes(graph_def)
        return graph_def

    monkeypatch.setattr(freeze, "_optimize_with_opaque", forgetting)
    _check_against_tf(_model())


def _branch_graph_def():
    @tf.function(input_signature=[tf.TensorSpec((None, None, 4), tf.float32)])
    def f(x):
        return tf.cond(tf.shape(x)[1] > 2, lambda: x[:, ::2], lambda: x)

    return f.get_concrete_function().graph.as_graph_def()


def _arg_shapes(graph_def) -> list:
    return [
        tf.TensorShape(attrs.attr["_output_shapes"].list.shape[0])
        for function in graph_def.library.function
        for attrs in function.arg_attr.values()
        if "_output_shapes" in attrs.attr
    ]


def test_refined_shapes_are_the_callers_and_conflicting_ones_stay():
    graph_def = _branch_graph_def()
    _forget_branch_shapes(graph_def)
    refine_branch_shapes(graph_def)
    shapes = _arg_shapes(graph_def)
    assert shapes and all(s.as_list() == [None, None, 4] for s in shapes)
    # a declared shape that contradicts the caller's is not the caller's to change
    for function in graph_def.library.function:
        for attrs in function.arg_attr.values():
            if "_output_shapes" in attrs.attr:
                proto = tf.TensorShape([None, None, 5]).as_proto()
                attrs.attr["_output_shapes"].list.shape[0].CopyFrom(proto)
    refine_branch_shapes(graph_def)
    assert all(s.as_list() == [None, None, 5] for s in _arg_shapes(graph_def))
