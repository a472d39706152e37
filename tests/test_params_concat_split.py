"""TF variables that tf2onnx folded into one Concat constant come back as parameters.

SAM's mask decoder reads ``tf.concat([iou_token, mask_tokens], 0)``: two variables and
nothing else, which tf2onnx folds into one initializer. With the TF model in hand the
constant is split back along that axis, one parameter per variable (`fxsurgeon.params.
concat_split`); a Concat of a variable with a constant is not invertible and stays a
buffer, listed with its reason.
"""

from __future__ import annotations

import numpy as np
import torch

import fxsurgeon


def _tokens_model(with_constant: bool):
    fxsurgeon._compat.import_tensorflow()
    import keras
    import tensorflow as tf

    class Tokens(keras.layers.Layer):
        """Learned tokens put in front of the sequence, as SAM and DeiT do."""

        def build(self, shape):
            self.first = self.add_weight(name="first", shape=(1, 4), initializer="random_normal")
            self.rest = self.add_weight(name="rest", shape=(3, 4), initializer="random_normal")

        def call(self, x):
            parts = [self.first, self.rest]
            if with_constant:
                parts = [self.first, tf.fill((3, 4), 0.25)]
            tokens = tf.concat(parts, axis=0)[None]
            tokens = tf.tile(tokens, [tf.shape(x)[0], 1, 1])
            return tf.concat([tokens, x], axis=1)

    x = keras.Input((None, 4), name="x")
    h = Tokens(name="tokens")(x)
    y = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(x, y, name="toy")
    fxsurgeon.examples.randomize_variables(model, seed=11)
    return model


def _optimized(model):
    proto = fxsurgeon.export_onnx(model)
    return fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))


def test_a_folded_concat_of_variables_is_one_parameter_per_variable():
    model = _tokens_model(with_constant=False)
    optimized = _optimized(model)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert sum(p.numel() for p in optimized.parameters()) == trainable
    origins = fxsurgeon.parameter_origins(optimized)
    params = dict(optimized.named_parameters())
    by_tf = {o.tf_name: name for name, o in origins.items()}
    for variable in model.layers[1].weights:
        name = by_tf[variable.path if hasattr(variable, "path") else variable.name]
        np.testing.assert_array_equal(
            params[name].detach().numpy().reshape(variable.shape), np.asarray(variable)
        )
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    want = np.asarray(model(x))
    got = optimized(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    loss = optimized(torch.from_numpy(x)).square().sum()
    loss.backward()
    for name in (by_tf[n] for n in by_tf if "tokens" in n):
        assert params[name].grad is not None and bool(params[name].grad.any()), name


def test_a_concat_of_a_variable_and_a_constant_keeps_the_variable():
    """tf2onnx's TF-op folder once folded ``concat([first, fill(0.25)])`` into one constant
    (first lost); the export spares variables now (d347e06): first is read, a parameter
    equal to TF's with a gradient, and nothing is split."""
    model = _tokens_model(with_constant=True)
    optimized = _optimized(model)
    origins = fxsurgeon.parameter_origins(optimized)
    params = dict(optimized.named_parameters())
    (name,) = [n for n, o in origins.items() if o.tf_name.endswith("first") and o.read]
    first = next(v for v in model.layers[1].weights if "first" in (getattr(v, "path", v.name)))
    np.testing.assert_array_equal(params[name].detach().numpy(), np.asarray(first))
    assert sum(p.numel() for p in optimized.parameters()) == sum(
        int(np.prod(v.shape)) for v in model.trainable_variables
    )
    assert not any(isinstance(n.target, str) and "_part" in n.target for n in optimized.graph.nodes)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    got = optimized(torch.from_numpy(x))
    np.testing.assert_allclose(got.detach().numpy(), np.asarray(model(x)), atol=1e-6)
    got.square().sum().backward()
    assert params[name].grad is not None and bool(params[name].grad.any())
