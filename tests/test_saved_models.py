"""Models as users hold them on disk: a SavedModel of a plain tf.Module, loaded back.

* the signature's outputs come out in TF's order for them (by key) whatever order the
  loaded dict has; a Keras model's own output order is kept;
* a variable the trace captures under a bare number (a loaded function's capture) names
  its initializer after itself, and door B names the parameter after its layer; a scoped
  capture name is kept, and an initializer that is no recorded variable keeps its scope;
* the variables of a loaded tf.Module (no ``.variables``) are its signature's.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.examples import model_variables, randomize_variables, weights_fingerprint
from fxsurgeon.params.names import _initializer_scope
from fxsurgeon.tensorflow import export_onnx

ATOL = 1e-5


def _dense_module(tf):
    class Dense(tf.Module):
        def __init__(self, fan_in, fan_out, name):
            super().__init__(name=name)
            with self.name_scope:
                self.kernel = tf.Variable(tf.zeros((fan_in, fan_out)), name="kernel")
                self.bias = tf.Variable(tf.zeros((fan_out,)), name="bias")

        def __call__(self, x):
            return tf.matmul(x, self.kernel) + self.bias

    return Dense


def _two_layer_module(tf):
    """A tf.Module whose ops run under no name scope; a keyword signature with a dict of
    outputs whose keys are not in sorted order where they are written."""
    dense = _dense_module(tf)

    class Net(tf.Module):
        def __init__(self):
            super().__init__(name="net")
            with self.name_scope:
                self.hidden = dense(6, 8, "hidden")
                self.head = dense(8, 3, "head")

        @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32, name="features")])
        def serve(self, features):
            h = tf.nn.relu(self.hidden(features))
            return {"zeta": self.head(h), "alpha": h}

    return Net()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    tf = import_tensorflow()
    net = _two_layer_module(tf)
    randomize_variables(net, 3)
    path = tmp_path_factory.mktemp("saved") / "net"
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.serve})
    return tf.saved_model.load(str(path)), path


def test_signature_outputs_in_key_order(loaded):
    model, _ = loaded
    proto = export_onnx(model)
    assert [o.name for o in proto.graph.output] == ["alpha", "zeta"]
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"features": x})
    want = model.signatures["serving_default"](features=x)
    for name, value in zip(["alpha", "zeta"], got, strict=True):
        assert np.abs(value - want[name].numpy()).max() <= ATOL


def test_keras_dict_outputs_keep_their_order():
    """Refusal: a Keras model's dict of outputs is in the model's own order, not sorted."""
    import_tensorflow()
    import keras

    x = keras.Input((4,), name="x")
    model = keras.Model(
        x, {"zeta": keras.layers.Dense(2, name="z")(x), "alpha": keras.layers.Dense(3, name="a")(x)}
    )
    proto = export_onnx(model)
    shapes = [o.type.tensor_type.shape.dim[1].dim_value for o in proto.graph.output]
    names = [o.name for o in proto.graph.output]
    assert dict(zip(names, shapes, strict=True)) == {"zeta": 2, "alpha": 3}


def test_scopeless_captures_are_named_after_their_variables(loaded):
    model, _ = loaded
    proto = export_onnx(model)
    names = {t.name for t in proto.graph.initializer}
    wanted = {
        f"net/{layer}/{leaf}:0" for layer in ("hidden", "head") for leaf in ("kernel", "bias")
    }
    assert wanted <= names
    module = fxsurgeon.optimize(import_onnx2torch().convert(proto))  # door B: the file alone
    params = {n for n, _ in module.named_parameters()}
    assert params == {"hidden.weight", "hidden.bias", "head.weight", "head.bias"}


def test_scoped_captures_keep_their_names():
    """Refusal: a Keras layer's capture is named after the scope that reads it: kept."""
    import_tensorflow()
    import keras

    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="proj")(x), name="m")
    randomize_variables(model, 1)
    proto = export_onnx(model)
    assert all(":0" not in t.name or "/" in t.name for t in proto.graph.initializer)
    assert not any(t.name in ("proj/kernel:0", "proj/kernel") for t in proto.graph.initializer)


def test_initializer_scope_of_a_recorded_variable():
    variables = frozenset({"net/hidden/kernel:0"})
    assert _initializer_scope("net/hidden/kernel:0", variables) == "net/hidden"
    # refusal: a name that is no recorded variable keeps its scope (a layer may be
    # called ``embeddings``), and so does a recorded name with no scope
    scope = "bert/embeddings/Gather/resource:0"
    assert _initializer_scope(scope, variables) == "bert/embeddings"
    assert _initializer_scope("net/hidden/kernel:0") == "net/hidden/kernel"
    assert _initializer_scope("904:0", frozenset({"904:0"})) == ""


def test_variables_of_a_loaded_module(loaded):
    model, _ = loaded
    assert not hasattr(model, "variables")
    variables = model_variables(model)
    assert sorted(v.name for v in variables) == sorted(
        f"net/{layer}/{leaf}:0" for layer in ("hidden", "head") for leaf in ("kernel", "bias")
    )
    assert len(weights_fingerprint(model)) == 32


def test_variables_of_something_else_is_an_error():
    with pytest.raises(TypeError, match="neither .variables nor a serving_default"):
        model_variables(object())


def test_from_tensorflow_on_the_path(loaded):
    model, path = loaded
    module = fxsurgeon.optimize(fxsurgeon.from_tensorflow(path))
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    import torch

    with torch.no_grad():
        alpha, zeta = module(torch.from_numpy(x))
    want = model.signatures["serving_default"](features=x)
    assert np.abs(alpha.numpy() - want["alpha"].numpy()).max() <= ATOL
    assert np.abs(zeta.numpy() - want["zeta"].numpy()).max() <= ATOL
    assert sum(p.numel() for p in module.parameters()) == 6 * 8 + 8 + 8 * 3 + 3


def test_sorted_outputs_whatever_the_dict_order():
    from fxsurgeon.frontdoor.export import _sorted_outputs

    assert list(_sorted_outputs({"zeta": 1, "alpha": 2, "mid": 3})) == ["alpha", "mid", "zeta"]
