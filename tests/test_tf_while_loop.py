"""TensorFlow's data-dependent loops through the front door (door B): ``tf.while_loop`` whose
condition reads the data, and ``tf.signal.frame`` with a frame step derived from a run-time
size (its gcd of frame length and step is a while Loop over sizes, as in Longformer's
sliding-window chunks). Both must match TensorFlow, keep the sequence dim dynamic and
compile in one graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.lower import run_while, run_while_tensors

tf = import_tensorflow()
keras = pytest.importorskip("keras")


class _Halve(keras.layers.Layer):
    """x halved while its largest magnitude is above 1 (a condition on the data)."""

    def call(self, x):
        return tf.while_loop(lambda v: tf.reduce_max(tf.abs(v)) > 1.0, lambda v: [v * 0.5], [x])[0]


class _Frames(keras.layers.Layer):
    """tf.signal.frame of x [N, L] with frame_length 6 and step L // 4 (a size: tf.signal
    computes gcd(6, step) in a while loop at run time)."""

    def call(self, x):
        step = tf.shape(x)[1] // 4
        return tf.signal.frame(x, 6, step)


def _model(layer):
    x = keras.Input((None,), name="x")
    return keras.Model(x, layer(x))


@pytest.mark.parametrize("layer, helper", [(_Halve, run_while_tensors), (_Frames, run_while)])
def test_tf_while_loops_match_tf_and_compile(layer, helper):
    model = _model(layer())
    optimized = fxsurgeon.optimize(fxsurgeon.from_tensorflow(model))
    assert helper in {n.target for n in optimized.graph.nodes}
    assert fxsurgeon.report_of(optimized).unconverted == {}
    rng = np.random.default_rng(3)
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for n, length in ((2, 16), (3, 24), (1, 12)):
        x = (rng.standard_normal((n, length)) * 8).astype(np.float32)
        want = np.asarray(model(tf.constant(x)))
        got = optimized(torch.from_numpy(x)).detach().numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled(torch.from_numpy(x)), torch.from_numpy(got))
