"""What TF trains is what comes back trainable, and a frozen layer computes what TF does.

Transfer learning freezes layers (``layer.trainable = False``). Keras 3 then marks their
variables non-trainable; tf_keras (transformers' TF models: Whisper's position table)
leaves ``tf.Variable.trainable`` True and only drops them from ``trainable_variables``.
Either way they come back as buffers, read by a functional call: a rebuilt ``nn.Linear``
would read its own (uninitialised) parameter of that name, which gave outputs off by 2.7.
A 0-d variable (Keras Normalization's count) can be read by value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon.examples import randomize_variables
from fxsurgeon.frontdoor.variables import tf_variables_of
from fxsurgeon.params.tf_match import _TFValues


def _library(name: str):
    fxsurgeon._compat.import_tensorflow()
    if name == "tf_keras":
        return pytest.importorskip("tf_keras")
    import keras

    return keras


def _frozen_model(library: str):
    """A frozen base (Conv, BatchNorm, Dense) under a trainable head."""
    keras = _library(library)
    x = keras.Input((6, 6, 2), name="x")
    conv = keras.layers.Conv2D(4, 3, name="conv")
    norm = keras.layers.BatchNormalization(name="norm")
    dense = keras.layers.Dense(5, name="frozen")
    h = dense(keras.layers.Flatten()(keras.layers.Activation("relu")(norm(conv(x)))))
    y = keras.layers.Dense(3, name="head")(keras.layers.Activation("tanh")(h))
    model = keras.Model(x, y)
    for layer in (conv, norm, dense):
        layer.trainable = False
    randomize_variables(model, seed=0)
    return model, [conv, norm, dense]


@pytest.mark.parametrize("library", ["keras", "tf_keras"])
def test_a_frozen_layer_s_variables_are_not_trainable(library):
    model, frozen = _frozen_model(library)
    ids = {id(v) for layer in frozen for v in layer.weights}
    flags = [t.trainable for t, v in tf_variables_of(model) if id(v) in ids]
    assert len(flags) == len(ids) and not any(flags)
    head = [t.trainable for t, v in tf_variables_of(model) if id(v) not in ids]
    assert head == [True, True]


@pytest.mark.parametrize("library", ["keras", "tf_keras"])
def test_a_frozen_base_comes_back_as_buffers_computing_what_tf_computes(library):
    model, _ = _frozen_model(library)
    optimized = fxsurgeon.optimize(fxsurgeon.from_tensorflow(model))
    tf_count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    trainable = {n: p.numel() for n, p in optimized.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == tf_count == 5 * 3 + 3
    assert all(name.startswith("head.") for name in trainable)
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 2)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    got = optimized(torch.from_numpy(x))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-5)
    got.sum().backward()
    assert all(p.grad is not None for p in optimized.parameters() if p.requires_grad)


def test_a_zero_dimensional_variable_is_read_as_a_tensor():
    keras = _library("keras")
    x = keras.Input((3,), name="x")
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32))
    model = keras.Model(x, keras.layers.Dense(2)(norm(x)))
    values = _TFValues(model)
    scalars = [name for name, v in values._variables.items() if len(v.shape) == 0]
    assert scalars
    for name in scalars:
        assert isinstance(values[name], torch.Tensor) and values[name].dim() == 0
