"""Two distinct TF variables with one name are two parameters.

TFEsmForMaskedLM's LM head creates its own ``esm/embeddings/word_embeddings/embeddings``
(tied to the embedding table by name, for checkpoints; a separate tensor in the graph).
Keyed by name, the second variable hid the first and door A refused the model ("does not
equal TF variable ..."). Rule (`fxsurgeon.source.variable_names`, shared with Keras 3's
repeated paths): a name another variable already has takes the first free ``_N`` suffix
(``table_1:0``); each variable is matched by value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon.frontdoor.variables import tf_variables_of
from fxsurgeon.tensorflow import export_onnx, from_onnx


def _same_name_model():
    fxsurgeon._compat.import_tensorflow()
    keras = pytest.importorskip("tf_keras")
    import tensorflow as tf

    class Tied(keras.layers.Layer):
        """An embedding table and an output table of one name, as TFEsmForMaskedLM has."""

        def build(self, shape):
            self.table = self.add_weight(name="table", shape=(11, 4))
            self.out = self.add_weight(name="table", shape=(11, 4))

        def call(self, ids):
            return tf.matmul(tf.gather(self.table, ids), self.out, transpose_b=True)

    ids = keras.Input((None,), dtype="int32", name="ids")
    model = keras.Model(ids, Tied(name="tied")(ids), name="same_name")
    fxsurgeon.examples.randomize_variables(model, seed=3)
    return model


def test_two_variables_of_one_name_are_two_parameters():
    model = _same_name_model()
    assert len({v.name for v in model.trainable_variables}) == 1  # the case under test
    names = [v.name for v, _ in tf_variables_of(model)]
    assert len(set(names)) == 2
    module = fxsurgeon.optimize(from_onnx(export_onnx(model), tf_model=model))
    assert sum(p.numel() for p in module.parameters()) == 2 * 11 * 4
    ids = np.array([[1, 4, 10], [0, 2, 2]], dtype=np.int32)
    want = np.asarray(model(ids))
    got = module(torch.from_numpy(ids)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    params = dict(module.named_parameters())
    origins = fxsurgeon.parameter_origins(module)
    values = {v.name: np.asarray(tf) for v, tf in tf_variables_of(model)}
    matched = set()
    for name, origin in origins.items():
        if name in params and origin.tf_name in values:
            value = values[origin.tf_name].transpose(origin.perm)
            np.testing.assert_array_equal(params[name].detach().numpy(), value)
            matched.add(origin.tf_name)
    assert matched == set(names)
