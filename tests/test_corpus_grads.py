"""The scoreboard's ``grads`` line (corpus/grads.py) judged against TF's tape: a zero gradient
passes where TF's gradient of the same variable is exactly zero too, through either door, and
fails (saying TF's magnitude) where TF's is not."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import fxsurgeon  # noqa: F401 - the safe import order, before TensorFlow
from corpus import grads, score
from corpus.registry import CorpusModel, float_inputs, keras_outputs, trainable_count
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.frontdoor.stop_gradients import STOP_GRADIENTS_KEY
from fxsurgeon.tensorflow import export_onnx

tf = import_tensorflow()


def _scorer(name: str, model, features: int = 5) -> score.Scorer:
    spec = [tf.TensorSpec((None, features), tf.float32, name="x")]
    scorer = score.Scorer(name)
    scorer.model = CorpusModel(
        name=name,
        family="keras",
        model=model,
        input_signature=spec,
        output_names=tuple(model.output_names),
        make_inputs=float_inputs("x", (features,)),
        tf_outputs=keras_outputs(model, ("x",)),
        trainable_params=trainable_count(model),
    )
    scorer.proto = export_onnx(model, spec)
    return scorer


def _dead_relu_model():
    """A ReLU layer dead for every input (bias -50 against |x @ kernel| < 5), beside a live
    one: TF's tape gives its kernel and bias exactly zero."""
    import keras

    x = keras.Input((5,), name="x")
    dead = keras.layers.Dense(4, activation="relu", name="dead")(x)
    live = keras.layers.Dense(4, activation="tanh", name="live")(x)
    y = keras.layers.Dense(3, name="head")(keras.layers.Concatenate()([dead, live]))
    model = keras.Model(x, y)
    randomize_variables(model, 0)
    layer = model.get_layer("dead")
    layer.kernel.assign(np.full((5, 4), 0.1, np.float32))
    layer.bias.assign(np.full((4,), -50.0, np.float32))
    return model


def _straight_through_model():
    """``h + stop_gradient(q - h)`` with q the nearest of six codes: h carries a gradient,
    so from the ONNX file alone which term TF stopped is ambiguous."""
    import keras

    class Quantiser(keras.layers.Layer):
        def build(self, shape):
            self.codes = self.add_weight(shape=(6, shape[-1]), name="codes")

        def call(self, h):
            distances = tf.reduce_sum(tf.square(h[:, None, :] - self.codes[None]), -1)
            q = tf.gather(self.codes, tf.argmin(distances, -1))
            return h + tf.stop_gradient(q - h)

    x = keras.Input((5,), name="x")
    h = keras.layers.Dense(4, name="enc")(x)
    y = keras.layers.Dense(3, name="head")(Quantiser(name="vq")(h))
    model = keras.Model(x, y)
    randomize_variables(model, 0)
    return model


@pytest.fixture(scope="module")
def dead():
    return _scorer("test_dead_relu", _dead_relu_model())


@pytest.fixture(scope="module")
def straight():
    return _scorer("test_straight_through", _straight_through_model())


def test_tf_gradients_are_zero_exactly_where_tf_learns_nothing(dead):
    magnitudes = grads.tf_gradients(dead, dead.ordered(dead.model.make_inputs(2, 2)))
    assert magnitudes["dead/kernel"] == magnitudes["dead/bias"] == 0.0
    for name in ("live/kernel", "live/bias", "head/kernel", "head/bias"):
        assert magnitudes[name] > 1e-4, (name, magnitudes)


@pytest.mark.parametrize("door", ["A", "B"])
def test_a_zero_gradient_passes_where_tfs_is_zero_too(dead, door):
    line = dead.grads(dead.optimized(door), door)
    assert line["ok"] is True, line
    assert sorted(line["zero_in_tf"]) == ["dead.bias", "dead.weight"], line
    assert line["value"] == line["total"] == 6


@pytest.mark.parametrize("door", ["A", "B"])
def test_without_tf_a_dead_bias_is_a_failure(dead, door, monkeypatch):
    """The rule is TF's tape, not the zero itself: with TF's side unknown (it fails), the
    bias of the dead layer (moving it by its scale wakes the ReLU: outputs move) fails."""

    def boom(*args):
        raise RuntimeError("no tape")

    monkeypatch.setattr(grads, "tf_gradients", boom)
    line = dead.grads(dead.optimized(door), door)
    assert line["ok"] is False and "dead.bias (zero)" in line["reason"], line
    assert line["tf_error"] == "RuntimeError: no tape"


def test_door_a_detaches_where_tf_stops_and_passes(straight):
    line = straight.grads(straight.optimized("A"), "A")
    assert line["ok"] is True, line
    assert line["zero_in_tf"] == ["vq.codes"], line  # only the argmin and the stop read it


def test_a_zero_where_tfs_gradient_is_not_fails_with_tfs_magnitude(straight):
    """Door B (the file alone): the stop is an Identity, ``h + (q - h)`` cancels the
    encoder's gradient to zero where TF's is not: a failure that says why."""
    line = straight.grads(straight.optimized("B"), "B")
    assert line["ok"] is False, line
    assert line["reason"].startswith("2 of 5: enc.weight (zero; TF's reaches "), line
    assert "the ONNX file carries no StopGradient" in line["reason"]
    assert "ambiguous" in line["reason"]


def test_door_a_without_the_export_record_fails_as_door_b(straight):
    """The same ONNX file without fxsurgeon's record of the stops: door A cannot detach, and
    the encoder's zero fails against TF's tape (door A's line gets no door B note)."""
    bare = score.Scorer("test_straight_through_bare")
    bare.model = straight.model
    bare.proto = onnx.ModelProto()
    bare.proto.CopyFrom(straight.proto)
    kept = [e for e in bare.proto.metadata_props if e.key != STOP_GRADIENTS_KEY]
    del bare.proto.metadata_props[:]
    bare.proto.metadata_props.extend(kept)
    line = bare.grads(bare.optimized("A"), "A")
    assert line["ok"] is False, line
    assert "enc.weight (zero; TF's reaches " in line["reason"]
    assert "StopGradient" not in line["reason"]
