"""``tf.stop_gradient`` through the export (fxsurgeon/frontdoor/stop_gradients.py): kept as an
ONNX Identity and listed in the metadata, detached by door A where TF stops the gradient, so
every parameter's gradient is TF's tape's; the ONNX file still runs as before."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.frontdoor.stop_gradients import STOP_GRADIENTS_KEY, stop_gradient_outputs
from fxsurgeon.tensorflow import export_onnx, from_onnx
from fxsurgeon.verify import verify

tf = import_tensorflow()


def _stopped_model():
    """A conv encoder, a VQ-VAE quantiser (``x + stop_gradient(q - x)``: x carries a
    gradient, so the arithmetic alone cannot tell which term is stopped), a stopped
    branch (``0.1 * stop_gradient(x) * x``), a kernel read once stopped and once not."""
    import keras

    class Quantiser(keras.layers.Layer):
        def build(self, shape):
            self.codes = self.add_weight(shape=(shape[-1], 6), name="codes")
            self.mix = self.add_weight(shape=(shape[-1], shape[-1]), name="mix")

        def call(self, x):
            flat = tf.reshape(x, [-1, x.shape[-1]])
            distances = (
                tf.reduce_sum(flat**2, 1, keepdims=True)
                + tf.reduce_sum(self.codes**2, 0)
                - 2 * tf.matmul(flat, self.codes)
            )
            q = tf.matmul(tf.one_hot(tf.argmin(distances, 1), 6), self.codes, transpose_b=True)
            q = tf.reshape(q, tf.shape(x))
            st = x + tf.stop_gradient(q - x)
            mixed = tf.matmul(st, tf.stop_gradient(self.mix)) + 0.5 * tf.matmul(st, self.mix)
            return mixed + 0.1 * tf.stop_gradient(x) * x

    image = keras.Input((8, 8, 2), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="enc")(image)
    h = Quantiser(name="vq")(h)
    y = keras.layers.Conv2D(3, 3, padding="same", name="dec")(h)
    model = keras.Model(image, y)
    randomize_variables(model, 0)
    return model


def _plain_model():
    """No tf.stop_gradient of a value that carries a gradient: one of a shape (integers)
    and one of a constant, which tf2onnx handles as before."""
    import keras

    def body(x):
        width = tf.cast(tf.stop_gradient(tf.shape(x))[1], x.dtype)
        return x * width + tf.stop_gradient(tf.constant([0.5, -1.0, 2.0, 0.25]))

    image = keras.Input((8, 8, 2), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="enc")(image)
    y = keras.layers.Conv2D(3, 3, padding="same", name="dec")(keras.layers.Lambda(body)(h))
    model = keras.Model(image, y)
    randomize_variables(model, 0)
    return model


@pytest.fixture(scope="module")
def stopped():
    model = _stopped_model()
    return model, export_onnx(model)


def _without(proto: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """`proto` with the named Identity nodes removed, their readers reading the input (what
    tf2onnx's identity optimizer made of them)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    rename = {n.output[0]: n.input[0] for n in out.graph.node if n.name in names}
    kept = [n for n in out.graph.node if n.name not in names]
    for node in kept:
        node.input[:] = [rename.get(i, i) for i in node.input]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out


def _ort(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def _x(batch: int = 3) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((batch, 8, 8, 2)).astype(np.float32)


def test_every_stop_gradient_is_an_identity_listed_in_the_metadata(stopped):
    model, proto = stopped
    onnx.checker.check_model(proto)
    listed = set(
        json.loads(dict((e.key, e.value) for e in proto.metadata_props)[STOP_GRADIENTS_KEY])
    )
    identities = {n.name for n in proto.graph.node if n.op_type == "Identity"}
    assert len(listed) == 3 and listed <= identities  # q - x, the mix kernel, the branch
    outputs = stop_gradient_outputs(proto)
    assert outputs is not None and len(outputs) == 3
    # standard ONNX that onnxruntime runs bitwise as the graph without the Identities
    x = _x()
    np.testing.assert_array_equal(_ort(proto, x), _ort(_without(proto, listed), x))
    np.testing.assert_allclose(_ort(proto, x), model(x, training=False).numpy(), atol=1e-5)


def test_door_a_detaches_where_tf_stops_and_its_gradients_are_tfs(stopped):
    model, proto = stopped
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert sum(n.op == "call_method" and n.target == "detach" for n in module.graph.nodes) == 3
    report = verify(module, model, gradients=True, gradient_dtype=torch.float32, batch_sizes=(3,))
    assert report.passed, report.table()
    by_name = {g.parameter: g for g in report.gradients}
    assert set(by_name) == {"enc.weight", "enc.bias", "dec.weight", "dec.bias"} | {
        p for p in by_name if p.startswith("vq.")
    }
    # the encoder learns through the straight-through estimator, and only through it
    assert by_name["enc.weight"].grad_max > 1e-3 and by_name["enc.bias"].grad_max > 1e-3
    # the kernel read once stopped gets half of what an unstopped double read would
    mix = next(g for p, g in by_name.items() if "mix" in p)
    assert mix.grad_max > 1e-3


def _encoder_grad(module) -> torch.Tensor:
    module.zero_grad(set_to_none=True)
    module(torch.from_numpy(_x())).square().mean().backward()
    return dict(module.named_parameters())["enc.weight"].grad


def test_door_b_reads_identities_as_identities(stopped):
    """The ONNX file alone: no detach, so the encoder's gradient is not TF's (door A's):
    ``x + (q - x)`` passes it none, the unstopped branch twice its share."""
    model, proto = stopped
    module = fxsurgeon.optimize(from_onnx(proto))
    assert not any(n.op == "call_method" and n.target == "detach" for n in module.graph.nodes)
    door_a = _encoder_grad(fxsurgeon.optimize(from_onnx(proto, tf_model=model)))
    door_b = _encoder_grad(module)
    assert float((door_a - door_b).abs().max()) > 0.1 * float(door_a.abs().max())


def test_a_model_without_stops_keeps_its_gradients():
    model = _plain_model()
    proto = export_onnx(model)
    assert (
        json.loads(dict((e.key, e.value) for e in proto.metadata_props)[STOP_GRADIENTS_KEY]) == []
    )
    assert stop_gradient_outputs(proto) == frozenset()
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert not any(n.op == "call_method" and n.target == "detach" for n in module.graph.nodes)
    report = verify(module, model, gradients=True, gradient_dtype=torch.float32, batch_sizes=(3,))
    assert report.passed, report.table()
    assert all(g.grad_max > 1e-4 for g in report.gradients)  # every parameter learns


def test_a_file_without_the_record_has_no_stop_gradients(stopped):
    _, proto = stopped
    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.metadata_props[:]
    assert stop_gradient_outputs(bare) is None


def _normalised_model(centre_only: bool, axis=-1):
    """Keras LayerNormalization with an epsilon its fused kernel refuses, so it runs
    ``tf.nn.moments``: ``variance = mean((x - stop_gradient(mean))^2)``. With
    `centre_only`, a layer that also reads a stopped mean otherwise: ``x - stop(mean)``."""
    import keras

    def centred(x):
        mean = tf.reduce_mean(x, -1, keepdims=True)
        return x - tf.stop_gradient(mean)

    tokens = keras.Input((5, 8), name="image")
    h = keras.layers.Dense(8, name="proj")(tokens)
    h = keras.layers.LayerNormalization(axis=axis, epsilon=1e-6, name="norm")(h)
    if centre_only:
        h = keras.layers.Lambda(centred)(h)
    y = keras.layers.Dense(3, name="head")(h)
    model = keras.Model(tokens, y)
    randomize_variables(model, 0)
    return model


def _listed(proto: onnx.ModelProto) -> list[str]:
    return json.loads(dict((e.key, e.value) for e in proto.metadata_props)[STOP_GRADIENTS_KEY])


def _gradients_match_tf(module, model) -> None:
    report = verify(module, model, gradients=True, gradient_dtype=torch.float32, batch_sizes=(3,))
    assert report.passed, report.table()


@pytest.mark.parametrize("axis", [-1, (1, 2)])
def test_the_centring_mean_of_a_variance_is_not_a_stop(axis):
    """tf.nn.moments' stop changes no gradient (d var / d m = -2/n sum(x - m) = 0 at the
    mean), so it is not listed: door A has no detach and fuses the LayerNorm, and its
    gradients are TF's. Over the last axis tf2onnx writes the means as GlobalAveragePool,
    over two as ReduceMean."""
    model = _normalised_model(centre_only=False, axis=axis)
    proto = export_onnx(model)
    means = {n.op_type for n in proto.graph.node} & {"ReduceMean", "GlobalAveragePool"}
    assert means == ({"GlobalAveragePool"} if axis == -1 else {"ReduceMean"})
    assert _listed(proto) == []
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert not any(n.op == "call_method" and n.target == "detach" for n in module.graph.nodes)
    if axis == -1:
        matches = fxsurgeon.report_of(module).matches
        assert sum(v for k, v in matches.items() if k.startswith("layer_norm")) == 1
    _gradients_match_tf(module, model)


def test_a_stopped_mean_read_otherwise_stays_a_stop():
    """The same mean stopped for a centring that is not squared into a variance: its
    gradient is not zero, so it stays listed and detached."""
    model = _normalised_model(centre_only=True)
    proto = export_onnx(model)
    assert len(_listed(proto)) == 1
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert sum(n.op == "call_method" and n.target == "detach" for n in module.graph.nodes) == 1
    _gradients_match_tf(module, model)


def _logsumexp_model(shift_only: bool):
    """``tf.math.reduce_logsumexp`` (its max shift is stopped), or with `shift_only` a
    max-shifted exp whose shift is stopped and not added back: that stop changes the
    gradient."""
    import keras

    def body(x):
        if shift_only:
            return tf.exp(x - tf.stop_gradient(tf.reduce_max(x, axis=(1, 2), keepdims=True)))
        return x - tf.math.reduce_logsumexp(x, axis=(1, 2), keepdims=True)

    tokens = keras.Input((5, 8), name="image")
    h = keras.layers.Dense(8, name="proj")(tokens)
    y = keras.layers.Dense(3, name="head")(keras.layers.Lambda(body)(h))
    model = keras.Model(tokens, y)
    randomize_variables(model, 0)
    return model


@pytest.mark.parametrize("shift_only", [False, True])
def test_the_shift_of_a_logsumexp_is_not_a_stop(shift_only):
    """log(sum(exp(x - stop(c)))) + stop(c) is the same for every c: not listed, no detach.
    A stopped shift that is not added back stays a stop. Gradients are TF's either way."""
    model = _logsumexp_model(shift_only)
    proto = export_onnx(model)
    assert len(_listed(proto)) == int(shift_only)
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    detaches = sum(n.op == "call_method" and n.target == "detach" for n in module.graph.nodes)
    assert detaches == int(shift_only)
    _gradients_match_tf(module, model)
