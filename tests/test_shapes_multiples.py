"""A net defined only on sides that are multiples of 4 (two halvings, a doubling, a skip
added at half size: keras.io's MIRNet) keeps its sides dynamic: the shape analysis picks
hints that satisfy ``2 * (s // 4) == s // 2`` (`fxsurgeon.shapes.relations.scaled_hints`)
instead of failing on the broadcast, and at a side TF refuses the module refuses too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.examples import randomize_variables

tf = import_tensorflow()
keras = pytest.importorskip("keras")


def _model():
    image = keras.Input((None, None, 3), name="image")
    half = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down1")(image)
    quarter = keras.layers.MaxPooling2D(2, name="down2")(half)
    up = keras.layers.UpSampling2D(2, name="up")(quarter)
    out = keras.layers.Add(name="skip")([half, up])
    model = keras.Model(image, keras.layers.Conv2D(2, 1, name="head")(out))
    randomize_variables(model, 5)
    return model


def test_sides_defined_on_multiples_of_four_stay_dynamic_and_match_tf():
    model = _model()
    proto = fxsurgeon.export_onnx(model)
    doors = [
        fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model)),
        fxsurgeon.optimize(import_onnx2torch().convert(proto)),
    ]
    rng = np.random.default_rng(0)
    for module in doors:
        for h, w in ((8, 12), (16, 20), (4, 28)):
            x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
            want = np.asarray(model(tf.constant(x)))
            with torch.no_grad():
                got = module(torch.from_numpy(x)).numpy()
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-5
        with pytest.raises(Exception):  # noqa: B017, PT011 - TF refuses this side too
            model(tf.constant(rng.standard_normal((1, 10, 12, 3)).astype(np.float32)))
        odd = torch.from_numpy(rng.standard_normal((1, 10, 12, 3)).astype(np.float32))
        with pytest.raises(Exception), torch.no_grad():  # noqa: B017, PT011
            module(odd)


def test_an_equality_guard_with_a_floor_division_is_no_tie_and_no_crash():
    """LED pads the sequence to a multiple of its window and halves it: a guard like
    ``Eq(m, (m + pad(n)) // 2)`` holds the solved-for dim inside a floor division, which
    sympy cannot solve (it raised NotImplementedError out of the analysis): no linear tie
    comes of it."""
    import sympy
    from torch._dynamo.source import ConstantSource
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
    from torch.utils._sympy.functions import FloorDiv

    from fxsurgeon.shapes.relations import equation_ties

    env = ShapeEnv()
    m, n, p = (
        env.create_symbol(hint, ConstantSource(name), DimDynamic.DYNAMIC)
        for hint, name in ((6, "m"), (12, "n"), (18, "p"))
    )
    env.evaluate_expr(sympy.Eq(m, FloorDiv(m + n, 3)))
    assert any(isinstance(g.expr, sympy.Eq) for g in env.guards)  # kept as a guard
    assert equation_ties(env, {m: ("m", 0), n: ("n", 0), p: ("p", 0)}, set()) == []
