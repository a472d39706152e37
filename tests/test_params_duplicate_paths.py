"""TF variables that share a Keras 3 path (door A): each keeps its own parameter.

A layer made in another layer's ``__init__`` takes no scope from it, so two Swin blocks'
``attn`` sublayers both hold ``attn/relative_position_bias_table``; the front door named
both variables by that path, so the params phase compared one's initializer with the
other's value and refused the model (`fxsurgeon.source.variable_names`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.source import variable_names

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Bias(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = self.add_weight(shape=(4, 3), name="table")

    def call(self, x):
        return x + self.table


class _Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bias = _Bias(name="bias")  # path "bias/table" in every block
        self.dense = keras.layers.Dense(3, name="dense")

    def call(self, x):
        return self.dense(self.bias(x))


def test_variables_of_one_path_are_told_apart_and_match_tf():
    x = keras.Input((4, 3), name="x")
    model = keras.Model(x, _Block(name="b1")(_Block(name="b0")(x)))
    randomize_variables(model, seed=3)
    paths = [v.path for v in model.variables]
    assert paths.count("bias/table") == 2  # what Keras 3 does
    module = fxsurgeon.optimize(fxsurgeon.from_tensorflow(model))
    value = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    want = np.asarray(model(tf.constant(value)))
    got = module(torch.from_numpy(value)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    names = [n for n, _ in module.named_parameters()]
    assert len(names) == len(set(names)) == len(model.trainable_variables), names
    assert sum(p.numel() for p in module.parameters()) == sum(
        int(np.prod(v.shape)) for v in model.trainable_variables
    )


class _Named:
    def __init__(self, path):
        self.path = self.name = path


def test_variable_names_suffix_a_repeated_name_with_the_first_free_number():
    given = ["a/t", "a/t", "a/t_1", "a/t", "b/k:0", "b/k:0"]
    assert variable_names([_Named(p) for p in given]) == [
        "a/t",
        "a/t_2",
        "a/t_1",
        "a/t_3",
        "b/k:0",
        "b/k_1:0",
    ]
