"""A one-feature layer's bias is its learned parameter, through both front doors.

Keras ``Dense(1)`` computes ``x @ W + b`` with ``b`` of shape ``[1]``. The lowering
writes a one-element constant added without widening as a Python number
(``score + -0.0025``), and without the TF model a one-element constant alone is a
constant of a formula; the layer's role tells it apart: a bias-free linear or
convolution with one output feature whose only reader adds a number takes that
number as its bias (`fxsurgeon.params.literals.absorb_one_feature_biases`). The
refusal side: a number added to a layer of several features (a broadcast formula
constant), or to an output read elsewhere too, stays a number.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.tensorflow import export_onnx


def _model():
    import_tensorflow()
    import keras

    x = keras.Input((5,), name="x")
    h = keras.layers.Dense(4, activation="relu", name="trunk")(x)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(h)
    conv_in = keras.Input((6, 6, 2), name="image")
    conv = keras.layers.Conv2D(1, 3, name="one_map")(conv_in)
    # several features plus one number: a broadcast constant, not a bias
    shifted = keras.layers.Lambda(lambda t: t + 0.5, name="shift")(
        keras.layers.Dense(3, use_bias=False, name="wide")(x)
    )
    # one feature, but its output is read twice: the add is not the layer's own
    lone = keras.layers.Dense(1, use_bias=False, name="lone")(x)
    twice = keras.layers.Lambda(lambda t: t * (t + 0.25), name="twice")(lone)
    # a transposed convolution to one map (VQ-VAE's and the DCGANs' decoders end so)
    up = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="one_up")(conv_in)
    model = keras.Model([x, conv_in], [score, conv, shifted, twice, up])
    randomize_variables(model, seed=3)
    return model


def _inputs(batch: int):
    rng = np.random.default_rng(batch)
    return [
        rng.standard_normal((batch, 5)).astype(np.float32),
        rng.standard_normal((batch, 6, 6, 2)).astype(np.float32),
    ]


@pytest.fixture(scope="module")
def doors():
    model = _model()
    proto = export_onnx(model)
    return model, {
        "A": fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model)),
        "B": fxsurgeon.optimize(import_onnx2torch().convert(proto)),
    }


def test_without_the_tf_model_the_names_are_the_layers_own(doors):
    """Door B names from scopes: Keras 3's call suffixes (``functional_1/score_1``)
    dropped, and the conv that tf2onnx named ``Conv__17`` named by its kernel's scope."""
    _, optimized = doors
    names = {
        door: sorted(n for n, _ in m.named_parameters() if not n.startswith("one_up"))
        for door, m in optimized.items()
    }
    assert names["B"] == names["A"]
    assert {"score.bias", "one_map.weight", "one_map.bias"} <= set(names["B"])


@pytest.mark.parametrize("door", ["A", "B"])
def test_a_dense_1_and_a_one_map_conv_keep_their_bias(doors, door):
    model, optimized = doors[0], doors[1][door]
    tf_count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    params = dict(optimized.named_parameters())
    assert sum(p.numel() for p in params.values()) == tf_count
    linears = {n: m for n, m in optimized.named_modules() if isinstance(m, torch.nn.Linear)}
    convs = [m for m in optimized.modules() if isinstance(m, torch.nn.Conv2d)]
    score = next(m for n, m in linears.items() if n.split(".")[-1].startswith("score"))
    assert score.out_features == 1 and isinstance(score.bias, torch.nn.Parameter)
    assert len(convs) == 1 and isinstance(convs[0].bias, torch.nn.Parameter)
    ups = [m for m in optimized.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 1 and isinstance(ups[0].bias, torch.nn.Parameter)
    tf_up = model.get_layer("one_up").bias.numpy()
    assert torch.equal(ups[0].bias.detach(), torch.from_numpy(tf_up))
    tf_bias = model.get_layer("score").bias.numpy()
    assert torch.equal(score.bias.detach(), torch.from_numpy(tf_bias))
    # the refusal side: the wide layer's + 0.5 and the lone layer's + 0.25 stay numbers
    for n, m in linears.items():
        if n.split(".")[-1].startswith(("wide", "lone")):
            assert m.bias is None, n
    numbers = {a for node in optimized.graph.nodes for a in node.args if type(a) is float}
    assert {0.5, 0.25} <= numbers
    for batch in (1, 3):
        inputs = _inputs(batch)
        want = [np.asarray(t) for t in model(inputs, training=False)]
        got = optimized(*[torch.from_numpy(a) for a in inputs])
        for g, w in zip(got, want, strict=True):
            assert float(np.abs(g.detach().numpy() - w).max()) <= 1e-5
    got = optimized(*[torch.from_numpy(a) for a in _inputs(2)])
    sum(g.square().mean() for g in got).backward()
    for name, param in params.items():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
    origins = fxsurgeon.parameter_origins(optimized)
    assert set(params) <= set(origins)
