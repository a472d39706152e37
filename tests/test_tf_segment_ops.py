"""tf.math.unsorted_segment_sum / _prod as the front door exports them: one ScatterND with a
reduction (fxsurgeon/frontdoor/tf_handlers.py), not tf2onnx's sort + Unique + table, so that
they convert, lower, compile in one graph and give gradients; ids of any rank, computed in
the graph, negative ones dropped as TF drops them; against TF and onnxruntime."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Segments(keras.layers.Layer):
    """Per row, 3 segments chosen by an argmax (2-D ids, offset by the row), one id dropped
    (negative); a flat sum with 1-D ids; a product over segments of 2-value rows."""

    def call(self, x):
        batch = tf.shape(x)[0]
        rows = tf.range(batch)[:, None]
        ids = tf.cast(tf.argmax(tf.reshape(x, (-1, 4, 3)), axis=-1), tf.int32)  # [B, 4]
        ids = tf.repeat(ids, 3, axis=-1) + 3 * rows  # [B, 12]
        ids = tf.where(tf.range(12)[None, :] == 5, -1, ids)  # TF drops a negative id
        pooled = tf.math.unsorted_segment_sum(x, ids, num_segments=3 * batch)
        flat = tf.math.unsorted_segment_sum(
            tf.reshape(x, (-1,)), tf.reshape(ids, (-1,)), num_segments=3 * batch
        )
        pairs = tf.reshape(x, (-1, 6, 2))  # segment values of shape [2]
        pair_ids = tf.math.floormod(tf.range(6), 2)[None, :] + 2 * rows  # [B, 6]
        prod = tf.math.unsorted_segment_prod(pairs, pair_ids, num_segments=2 * batch)
        return [tf.reshape(pooled, (batch, 3)), tf.reshape(flat, (batch, 3)), prod]


def _model():
    x = keras.Input((12,), name="x")
    return keras.Model(x, _Segments()(x))


def test_unsorted_segment_sum_and_prod_are_one_scatter_and_match_tf():
    model = _model()
    proto = fxsurgeon.export_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert "ScatterND" in ops and not ops & {"Unique", "TopK", "Loop"}, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    assert fxsurgeon.report_of(module).unconverted == {}
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        xv = rng.standard_normal((batch, 12)).astype(np.float32)
        want = [np.asarray(t) for t in model(tf.constant(xv))]
        with torch.no_grad():
            out, again = module(torch.from_numpy(xv)), compiled(torch.from_numpy(xv))
        for k, (g, o, c, w) in enumerate(
            zip(session.run(None, {"x": xv}), out, again, want, strict=True)
        ):
            np.testing.assert_allclose(g, w, atol=1e-6, rtol=0, err_msg=f"onnxruntime {k}")
            np.testing.assert_allclose(o.numpy(), w, atol=1e-6, rtol=0, err_msg=f"optimized {k}")
            np.testing.assert_allclose(c.numpy(), w, atol=1e-6, rtol=0, err_msg=f"compiled {k}")
    x = torch.from_numpy(rng.standard_normal((2, 12)).astype(np.float32)).requires_grad_()
    sum(o.sum() for o in module(x)).backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_segment_ops_keep_tf2onnx_s_handler_where_the_scatter_cannot_be_written():
    """Before opset 16 (no ScatterND reduction), or with a rank tf2onnx does not know."""
    from fxsurgeon.frontdoor.tf_handlers import CORRECTIONS

    calls = []
    handler = CORRECTIONS["UnsortedSegmentSum"](lambda ctx, node, **kw: calls.append(node))
    node = SimpleNamespace(input=["data", "ids", "n"])
    for opset, rank in ((15, 2), (17, None)):
        ctx = SimpleNamespace(opset=opset, get_rank=lambda name, r=rank: r)
        handler(ctx, node)
        assert calls[-1] is node
    assert len(calls) == 2


class _Counts(keras.layers.Layer):
    """bincount without and with weights, with minlength and binary_output, of values
    computed in the graph (an argmax) and one out of range (beyond maxlength: dropped)."""

    def call(self, x):
        values = tf.cast(tf.argmax(tf.reshape(x, (-1, 3)), axis=-1), tf.int32)  # [4B] in [0, 3)
        values = tf.concat([values, [7]], 0)  # 7 >= maxlength 5: not counted
        counts = tf.math.bincount(values, minlength=5, maxlength=5)
        weighted = tf.math.bincount(values[:-1], weights=tf.reduce_max(tf.reshape(x, (-1, 3)), -1))
        seen = tf.math.bincount(values, minlength=5, maxlength=5, binary_output=True)
        return [counts, weighted, seen]


def test_bincount_is_the_segment_scatter_and_matches_tf():
    """tf2onnx wrote bincount with Unique and Compress, which onnx2torch cannot convert
    (keras.io's graph attention network). The counts' length is computed from the values
    (``max + 1``, clipped by minlength/maxlength): the lowering reads that size from the
    data (it was an AttributeError, then a refusal with a reason)."""
    x = keras.Input((12,), name="x")
    model = keras.Model(x, _Counts()(x))
    proto = fxsurgeon.export_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert "ScatterND" in ops and not ops & {"Unique", "Compress"}, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        xv = rng.standard_normal((batch, 12)).astype(np.float32)
        want = [np.asarray(t) for t in model(tf.constant(xv))]
        for k, (g, w) in enumerate(zip(session.run(None, {"x": xv}), want, strict=True)):
            np.testing.assert_allclose(g, w, atol=1e-6, rtol=0, err_msg=f"onnxruntime {k}")
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    assert fxsurgeon.report_of(module).unconverted == {}
    for batch in (1, 3):  # the counts' length read from the data: every size
        xv = rng.standard_normal((batch, 12)).astype(np.float32)
        want = [np.asarray(t) for t in model(tf.constant(xv))]
        with torch.no_grad():
            got = module(torch.from_numpy(xv))
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_allclose(g.numpy(), w, atol=1e-6, rtol=0, err_msg=f"module {k}")


class _Sorted(keras.layers.Layer):
    """tf.math.segment_* over the batch-transposed rows: constant sorted ids with an empty
    segment (no id 2), and ids computed in the graph (a cumulative count of a threshold,
    sorted by construction) over values of shape [B]."""

    def call(self, x):
        rows = tf.transpose(x)  # [12, B]
        fixed = tf.constant([0, 0, 1, 1, 1, 3, 3, 4, 4, 4, 4, 5])  # segment 2 empty
        computed = tf.cast(tf.math.cumsum(tf.cast(x[0] > 0.0, tf.int32)), tf.int32)
        gate = tf.sigmoid(rows) + 0.5
        return [
            tf.math.segment_sum(rows, fixed),
            tf.math.segment_mean(rows, fixed),
            tf.math.segment_max(rows, fixed),
            tf.math.segment_min(rows, fixed),
            tf.math.segment_prod(gate, fixed),
            tf.math.segment_mean(rows, computed),
            tf.math.segment_max(rows, computed),
        ]


def test_sorted_segment_ops_are_scatters_and_masks_and_match_tf():
    """tf.math.segment_sum / _mean / _max / _min / _prod: tf2onnx's sort + Unique + table
    (onnx2torch has no Unique) became ScatterND and masked reductions
    (fxsurgeon/frontdoor/tf_segments.py), 0 in an empty segment as TF writes."""
    x = keras.Input((12,), name="x")
    model = keras.Model(x, _Sorted()(x))
    proto = fxsurgeon.export_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert "ScatterND" in ops and not ops & {"Unique", "TopK", "Loop"}, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    assert fxsurgeon.report_of(module).unconverted == {}
    rng = np.random.default_rng(2)
    for batch in (1, 3):
        xv = rng.standard_normal((batch, 12)).astype(np.float32)
        xv[0, :3] = (1.0, -1.0, 1.0)  # the computed ids: 1, 1, 2 first
        want = [np.asarray(t) for t in model(tf.constant(xv))]
        assert not want[2][2].any()  # TF's empty segment: 0
        with torch.no_grad():
            out = module(torch.from_numpy(xv))
        for k, (g, o, w) in enumerate(zip(session.run(None, {"x": xv}), out, want, strict=True)):
            np.testing.assert_allclose(g, w, atol=1e-6, rtol=0, err_msg=f"onnxruntime {k}")
            np.testing.assert_allclose(o.numpy(), w, atol=1e-6, rtol=0, err_msg=f"optimized {k}")
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    xv = torch.from_numpy(rng.standard_normal((2, 12)).astype(np.float32))
    with torch.no_grad():
        for o, c in zip(module(xv)[:5], compiled(xv)[:5], strict=True):
            torch.testing.assert_close(c, o, atol=0, rtol=0)
    xg = xv.clone().requires_grad_()
    sum(o.sum() for o in module(xg)[:5]).backward()
    assert bool(xg.grad.abs().sum() > 0)


def test_sorted_segment_ops_keep_tf2onnx_s_handler_where_the_scatter_cannot_be_written():
    """Before opset 16, ids not of rank 1 or data of unknown rank: tf2onnx's handler."""
    from fxsurgeon.frontdoor.tf_segments import REPLACED

    calls = []
    handler = REPLACED["SegmentMax"](lambda ctx, node, **kw: calls.append(node))
    node = SimpleNamespace(input=["data", "ids"])
    for opset, data_rank, ids_rank in ((15, 2, 1), (17, 2, 2), (17, None, 1)):
        ranks = {"data": data_rank, "ids": ids_rank}
        ctx = SimpleNamespace(opset=opset, get_rank=ranks.get)
        handler(ctx, node)
        assert calls[-1] is node
    assert len(calls) == 3
