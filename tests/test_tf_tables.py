"""Lookups in captured hash tables (fxsurgeon/frontdoor/tf_tables.py): a numeric table's lookup
is plain ONNX ops that give what TensorFlow gives (hits, misses to the default, negative and
out-of-vocabulary ids); a string table keeps tf2onnx's CategoryMapper."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _FloatTable(keras.layers.Layer):
    """A ``tf.lookup.StaticHashTable`` of int64 -> float32, default -1.5."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        keys = tf.constant([7, -3, 40, 2], tf.int64)
        values = tf.constant([0.25, 1.5, -2.0, 3.0], tf.float32)
        init = tf.lookup.KeyValueTensorInitializer(keys, values)
        self.table = tf.lookup.StaticHashTable(init, default_value=-1.5)

    def call(self, ids):
        return self.table.lookup(tf.cast(ids, tf.int64))


def _model() -> keras.Model:
    ids = keras.Input((3,), dtype="int32", name="ids")
    index = keras.layers.IntegerLookup(vocabulary=[4, 9, 1, 30], name="index")(ids)
    embedded = keras.layers.Embedding(5, 2, name="embed")(index)
    one_hot = keras.layers.IntegerLookup(vocabulary=[9, 1], output_mode="one_hot")(ids[:, 0])
    scores = _FloatTable(name="scores")(ids)
    return keras.Model(ids, [embedded, one_hot, scores])


def test_numeric_table_lookups_match_tf_with_misses_and_negative_ids():
    model = _model()
    ids = np.array([[4, 9, 1], [30, 7, -3], [40, 2, 5], [-1, 0, 31]], np.int32)
    want = [np.asarray(t) for t in model(tf.constant(ids))]
    proto = fxsurgeon.export_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"LookupTableFindV2", "CategoryMapper", "HashTableV2"}, ops
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"ids": ids})
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    out = module(torch.from_numpy(ids))
    for g, t, w in zip(got, out, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6)
        np.testing.assert_allclose(t.detach().numpy(), w, atol=1e-6)
    # the embedding stays trainable: its gradient reaches the rows the looked-up ids pick
    out[0].sum().backward()
    (weight,) = [p for n, p in module.named_parameters() if "embed" in n]
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_a_string_table_keeps_tf2onnx_category_mapper():
    words = keras.Input((2,), dtype="string", name="words")
    index = keras.layers.StringLookup(vocabulary=["a", "b", "c"], name="lookup")(words)
    model = keras.Model(words, keras.layers.Embedding(4, 2, name="embed")(index))
    proto = fxsurgeon.export_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    assert "CategoryMapper" in ops
    assert "ArgMax" not in ops  # not the numeric lowering
