"""tf2onnx's wiring of If branches, corrected (fxsurgeon/frontdoor/tf_control.py).

onnxruntime and the GraphModule run the export and must give what TensorFlow gives on
both sides of the If (sequence lengths 1, 2 and 5 around the predicate ``length > 2``); an
If on a constant predicate is the branch it takes, so a Transpose perm computed from ranks
under it is static, and one computed from the data is refused.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.errors import InputError
from fxsurgeon.frontdoor import freeze
from fxsurgeon.frontdoor.tf_control import inline_constant_ifs, refine_branch_shapes

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


def _cumsum_along(x, axis: int):
    """DeBERTa's ``torch_gather``: the axis rolled last by a perm computed from ranks under
    ``if axis != rank - 1`` (a cond autograph makes on a constant), worked on, rolled back
    under ``if shift != 0`` (a cond on the first one's output)."""
    axis = tf.rank(x) + axis
    if axis != tf.rank(x) - 1:
        shift = tf.rank(x) - 1 - axis
        x = tf.transpose(x, perm=tf.roll(tf.range(tf.rank(x)), shift, axis=0))
    else:
        shift = 0
    x = tf.cumsum(x, axis=-1)
    if shift != 0:
        x = tf.transpose(x, perm=tf.roll(tf.range(tf.rank(x)), -shift, axis=0))
    return x


class _RolledCumsum(keras.layers.Layer):
    """The static-perm pattern at the top and inside a run-time If's branch."""

    def call(self, x):
        y = _cumsum_along(x, -2)
        if tf.shape(x)[1] > 2:
            y = _cumsum_along(y, -3) * 0.5
        return y


def test_transposes_by_a_perm_of_static_ranks_under_constant_conds_convert():
    """tf2onnx left each such Transpose with its perm as an input: an invalid model."""
    keras.utils.set_random_seed(0)
    x = keras.Input((None, 4), name="x")
    model = keras.Model(x, _RolledCumsum()(x))
    proto = fxsurgeon.export_onnx(model)
    assert all(len(n.input) == 1 for n in proto.graph.node if n.op_type == "Transpose")
    _check_against_tf(model)


class _DataPerm(keras.layers.Layer):
    def call(self, x):
        perm = tf.cond(tf.reduce_sum(x) > 0, lambda: tf.constant([0, 2, 1]), lambda: tf.range(3))
        return tf.transpose(x, perm)


def test_a_transpose_by_a_run_time_perm_is_refused_naming_it():
    x = keras.Input((4, 4), name="x")
    model = keras.Model(x, _DataPerm()(x))
    with pytest.raises(InputError, match=r"Transpose \S*transpose\S*: its perm is computed at run"):
        fxsurgeon.export_onnx(model)


def test_an_if_on_a_constant_without_a_computed_perm_stays_an_if():
    """Only where a branch transposes by a computed perm are constant Ifs inlined; the
    ONNX side picks the branch of the others (inlined, grappler folded Swin's window
    masks into constants door B took for weights)."""

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    def f(x):
        return tf.cond(tf.constant(True), lambda: x * 2.0, lambda: x)

    graph_def = f.get_concrete_function().graph.as_graph_def()
    assert not inline_constant_ifs(graph_def)
    assert any(n.op in ("If", "StatelessIf") for n in graph_def.node)
