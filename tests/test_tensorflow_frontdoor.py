"""fxsurgeon.tensorflow: TF -> ONNX export, the variable map, from_onnx and import order."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import zoo
from onnx import helper, numpy_helper
from torch import nn

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.errors import InputError
from fxsurgeon.source import SOURCE_META_KEY, InitializerOrigin, TFVariable
from fxsurgeon.tensorflow import (
    export_onnx,
    from_onnx,
    from_tensorflow,
    map_initializers_to_variables,
    tf_variables_of,
)

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5
FULLY_MAPPED = zoo.TINY


def _cases(zoo_model: zoo.ZooModel) -> list[tuple[int, int | None]]:
    """(batch size, sequence length): three batch sizes, and two lengths for text models."""
    cases = [(1, None), (2, None), (5, None)]
    if zoo_model.text:
        cases += [(2, 13), (5, 3)]
    return cases


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _source(gm):
    return gm.meta[SOURCE_META_KEY]


def _tf_values(model) -> dict[str, np.ndarray]:
    return {variable.name: tf_var.numpy() for variable, tf_var in tf_variables_of(model)}


def _initializers(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", zoo.TINY)
def test_export_is_valid_onnx_that_matches_tensorflow(name, zoo_model, zoo_onnx):
    model, proto = zoo_model(name), zoo_onnx(name)
    onnx.checker.check_model(proto, full_check=True)

    assert [i.name for i in proto.graph.input] == [s.name for s in model.input_signature]
    assert tuple(o.name for o in proto.graph.output) == model.output_names
    for value, spec in zip(proto.graph.input, model.input_signature, strict=True):
        dims = value.type.tensor_type.shape.dim
        got = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        assert got == tuple(spec.shape), (value.name, got, spec.shape)

    session = _session(proto)
    for batch, seq_len in _cases(model):
        inputs = model.make_inputs(batch, seed=batch, seq_len=seq_len)
        for out_name, ref, got in zip(
            model.output_names, model.tf_outputs(inputs), session.run(None, inputs), strict=True
        ):
            assert _max_abs(got, ref) <= ATOL, (name, batch, seq_len, out_name)


@pytest.mark.parametrize("name", zoo.TINY)
def test_graph_module_matches_tensorflow(name, zoo_model):
    model, gm = zoo_model(name), zoo.convert(name)
    assert not gm.training
    specs = _source(gm).input_specs
    for batch, seq_len in _cases(model)[1:]:
        inputs = model.make_inputs(batch, seed=10 + batch, seq_len=seq_len)
        with torch.no_grad():
            out = gm(*[torch.from_numpy(inputs[s.name]) for s in specs])
        outs = out if isinstance(out, (tuple, list)) else [out]
        for out_name, ref, got in zip(
            model.output_names, model.tf_outputs(inputs), outs, strict=True
        ):
            assert _max_abs(got.numpy(), ref) <= ATOL, (name, batch, seq_len, out_name)


def test_exact_gelu_erfc_becomes_erf(zoo_onnx):
    ops = [n.op_type for n in zoo_onnx("bert_tiny_exact_gelu").graph.node]
    assert "Erfc" not in ops
    assert ops.count("Erf") == 2  # one per layer
    assert "Erf" not in [n.op_type for n in zoo_onnx("bert_tiny").graph.node]  # gelu_new is tanh


def test_keras_exact_gelu_activation_converts():
    import keras

    x = keras.Input((6,), name="x")
    y = keras.layers.Dense(5, activation=keras.activations.gelu, name="dense")(x)
    model = keras.Model(x, y)
    zoo.randomize(model, seed=3)
    gm = from_tensorflow(model)
    assert "Erfc" not in [n.op_type for n in _source(gm).onnx_model.graph.node]
    onnx.checker.check_model(_source(gm).onnx_model, full_check=True)
    inputs = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32) * 3
    with torch.no_grad():
        got = gm(torch.from_numpy(inputs)).numpy()
    assert _max_abs(got, np.asarray(model(inputs))) <= ATOL


def test_fixed_batch_in_a_given_signature_is_made_dynamic():
    tf = import_tensorflow()
    model = zoo.build("keras_mlp").model
    proto = export_onnx(model, [tf.TensorSpec((2, 12), tf.float32, name="features")])
    assert not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")
    inputs = np.random.default_rng(1).standard_normal((5, 12)).astype(np.float32)
    (got,) = _session(proto).run(None, {"features": inputs})
    assert _max_abs(got, np.asarray(model(inputs))) <= ATOL


def test_signature_errors_are_input_errors():
    import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(InputError, match="pass input_signature"):
        export_onnx(Subclassed())
    with pytest.raises(InputError, match="dynamic_axes"):
        export_onnx(zoo.build("keras_mlp").model, dynamic_axes={"nope": [1]})
    with pytest.raises(InputError, match="cannot export"):
        export_onnx(object())


@pytest.mark.parametrize("fmt", ["keras", "h5", "saved_model_keras", "saved_model_export"])
def test_export_from_a_path(fmt, tmp_path):
    tf = import_tensorflow()
    import keras
    import tf_keras

    lib = tf_keras if fmt in ("h5", "saved_model_keras") else keras
    x = lib.Input((5,), name="features")
    model = lib.Model(x, lib.layers.Dense(3, name="out")(lib.layers.Dense(4, activation="relu")(x)))
    zoo.randomize(model, seed=7)
    if fmt == "keras":
        path = tmp_path / "m.keras"
        model.save(path)
    elif fmt == "h5":
        path = tmp_path / "m.h5"
        model.save(path)
    elif fmt == "saved_model_keras":
        path = tmp_path / "saved"
        model.save(path, save_format="tf")
    else:
        path = tmp_path / "exported"
        model.export(path, verbose=False)
    gm = from_tensorflow(path)
    info = _source(gm)
    inputs = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    (got,) = _session(info.onnx_model).run(None, {info.input_specs[0].name: inputs})
    assert _max_abs(got, np.asarray(model(inputs))) <= ATOL
    trainable = {v.name for v in info.tf_variables if v.trainable}
    assert len(trainable) == 4
    assert all(len(info.initializers_of_variable()[n]) == 1 for n in trainable)
    del tf


def test_export_of_a_missing_path_names_it(tmp_path):
    with pytest.raises(InputError, match="nope.keras"):
        export_onnx(tmp_path / "nope.keras")


# --------------------------------------------------------------------------- weights


def test_equal_variables_stay_two_initializers():
    """tf2onnx's merge_duplication would merge them into one initializer."""
    import tf_keras

    x = tf_keras.Input((6,), name="x")
    a = tf_keras.layers.Dense(6, name="a")(x)
    b = tf_keras.layers.Dense(6, name="b")(tf_keras.layers.ReLU()(a))
    model = tf_keras.Model(x, b)
    zoo.randomize(model, seed=5)
    layer_a, layer_b = model.get_layer("a"), model.get_layer("b")
    layer_b.kernel.assign(layer_a.kernel)
    layer_b.bias.assign(layer_a.bias)

    proto = export_onnx(model)
    held = map_initializers_to_variables(proto, model)
    for leaf in ("kernel", "bias"):
        both = {f"a/{leaf}:0", f"b/{leaf}:0"}
        holding = [
            init for init, origins in held.items() if {o.variable.name for o in origins} == both
        ]
        assert len(holding) == 2, (leaf, held)


@pytest.mark.parametrize("name", FULLY_MAPPED)
def test_every_trainable_variable_is_exactly_one_initializer(name, zoo_model):
    info = _source(zoo.convert(name))
    trainable = [v for v in info.tf_variables if v.trainable]
    assert sum(int(np.prod(v.shape)) for v in trainable) == zoo_model(name).trainable_params
    found = info.initializers_of_variable()
    wrong = {v.name: found[v.name] for v in trainable if len(found[v.name]) != 1}
    assert not wrong, f"{name}: trainable variables not held by exactly one initializer: {wrong}"
    ambiguous = {
        k: [o.variable.name for o in v] for k, v in info.variable_map.items() if len(v) > 1
    }
    assert not ambiguous, f"{name}: initializers matching several variables: {ambiguous}"


@pytest.mark.parametrize("name", zoo.TINY)
def test_layouts_round_trip_to_the_tf_values(name, zoo_model, zoo_onnx):
    info = _source(zoo.convert(name))
    tf_values = _tf_values(zoo_model(name).model)
    initializers = _initializers(zoo_onnx(name))
    for init_name, origins in info.variable_map.items():
        value = initializers[init_name]
        for origin in origins:
            tf_value = tf_values[origin.variable.name]
            np.testing.assert_array_equal(origin.to_tf(value), tf_value)
            np.testing.assert_array_equal(origin.from_tf(tf_value, value.shape), value)


def test_layouts_of_dense_and_conv_kernels():
    info = _source(zoo.convert("resnet50"))
    layouts = {o.variable.name: o.layout for origins in info.variable_map.values() for o in origins}
    kernels = {n: layout for n, layout in layouts.items() if n.endswith("kernel:0")}
    assert kernels.pop("predictions/kernel:0") == "same"  # MatMul keeps [in, out]
    assert len(kernels) == 53 and set(kernels.values()) == {"HWIO->OIHW"}


@pytest.mark.parametrize("name", ["keras_cnn", "resnet50"])
def test_batchnorm_is_not_folded_into_conv(name, zoo_model, zoo_onnx):
    import tf_keras

    model, proto = zoo_model(name).model, zoo_onnx(name)
    info = _source(zoo.convert(name))
    bn_layers = [
        layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)
    ]
    bn_nodes = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert len(bn_nodes) == len(bn_layers) > 0
    for node in bn_nodes:
        held = [info.variable_map[i] for i in node.input[1:5]]
        assert all(len(origins) == 1 for origins in held)
        names = [origins[0].variable.name for origins in held]
        layer = names[0].split("/")[0]
        assert names == [
            f"{layer}/{leaf}:0" for leaf in ("gamma", "beta", "moving_mean", "moving_variance")
        ]

    gm = zoo.convert(name)
    bn_modules = [
        n for n, m in gm.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert len(bn_modules) == len(bn_layers)
    for module_name in bn_modules:
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            assert f"{module_name}.{tensor}" in info.parameter_to_initializer


def test_keras3_batchnorm_keeps_its_variables_and_the_conv_kernel(zoo_model):
    """TF's constant folding would fold gamma/beta/moving stats and scale the Conv kernel."""
    model = zoo_model("keras3_cnn").model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proto = export_onnx(model)
        gm = from_onnx(proto, tf_model=model)
    assert not [w for w in caught if "initializer" in str(w.message)]
    found = _source(gm).initializers_of_variable()
    for i in (1, 2):
        for leaf in ("gamma", "beta", "moving_mean", "moving_variance"):
            assert len(found[f"bn_{i}/{leaf}"]) == 1, (i, leaf, found)
    kernels = [name for name in found if name.endswith("/kernel")]
    assert kernels and all(len(found[name]) == 1 for name in kernels), found


# --------------------------------------------------------------------------- from_onnx


def test_source_info_links_buffers_parameters_and_initializers(zoo_model, zoo_onnx):
    gm, proto = zoo.convert("keras_cnn"), zoo_onnx("keras_cnn")
    info = _source(gm)
    model = zoo_model("keras_cnn")
    assert info.onnx_model is proto or info.onnx_model == proto
    assert [(s.name, s.shape, s.dtype) for s in info.input_specs] == [
        ("image", (None, 16, 16, 3), torch.float32)
    ]
    assert info.output_names == ("logits",)
    assert info.tf_model is model.model

    initializers = _initializers(proto)
    buffers = dict(gm.named_buffers())
    onnx_buffers = {n for n in buffers if n.startswith("initializers.")}
    assert set(info.buffer_to_initializer) == onnx_buffers
    for buffer, init in info.buffer_to_initializer.items():
        np.testing.assert_array_equal(buffers[buffer].numpy(), initializers[init])
    state = gm.state_dict()
    for tensor, source in info.parameter_to_initializer.items():
        value = initializers[source.initializer]
        np.testing.assert_array_equal(
            state[tensor].numpy(), value if source.layout == "same" else value.T
        )
    # Conv kernels are inside nn.Conv2d modules: reachable from the TF name.
    conv = [
        t
        for t, s in info.parameter_to_initializer.items()
        if t.endswith(".weight") and state[t].dim() == 4
    ]
    assert len(conv) == 2
    for tensor in conv:
        (origin,) = info.variable_map[info.initializer_of(tensor)]
        assert origin.layout == "HWIO->OIHW" and origin.variable.trainable


def test_one_initializer_used_twice_gets_two_buffers():
    """onnx2torch makes a buffer per use; both must map back to the one initializer."""
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"]), helper.make_node("Mul", ["y", "w"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight],
    )
    gm = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    info = _source(gm)
    assert len(info.buffer_to_initializer) == 2
    assert set(info.buffer_to_initializer.values()) == {"w"}
    assert info.input_specs[0].shape == (None, 3) and info.variable_map is None


def test_source_info_is_shared_by_deepcopy_and_drops_the_tf_model_when_pickled():
    gm = zoo.convert("keras_mlp")
    info = _source(gm)
    copied = _source(copy.deepcopy(gm))
    assert copied.tf_model is info.tf_model and copied.onnx_model is info.onnx_model
    restored = pickle.loads(pickle.dumps(info))
    assert restored.tf_model is None
    assert restored.variable_map == info.variable_map and restored.input_specs == info.input_specs


def test_origin_layouts_convert_both_ways():
    kernel = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # H, W, I, O
    origin = InitializerOrigin(TFVariable("conv/kernel", (2, 3, 4, 5), True), "HWIO->OIHW")
    onnx_value = origin.from_tf(kernel, (5, 4, 2, 3))
    np.testing.assert_array_equal(onnx_value, kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(origin.to_tf(onnx_value), kernel)
    bias = InitializerOrigin(TFVariable("conv/bias", (5,), True), "same")
    np.testing.assert_array_equal(bias.to_tf(np.zeros((1, 5, 1, 1))), np.zeros(5))


def test_corrupt_onnx_file_is_an_input_error_naming_it(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf\xff\xff\xff")
    with pytest.raises(InputError, match="corrupt.onnx"):
        from_onnx(corrupt)
    with pytest.raises(InputError, match="missing.onnx"):
        from_onnx(tmp_path / "missing.onnx")

    invalid = tmp_path / "invalid.onnx"
    graph = helper.make_graph(
        [helper.make_node("Erfc", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(invalid))
    with pytest.raises(InputError, match="invalid.onnx"):
        from_onnx(invalid)


# --------------------------------------------------------------------------- import order

_CONVERT_MLP = """
import numpy as np, torch
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.tensorflow import from_tensorflow
import_tensorflow()
import keras
x = keras.Input((4,), name="x")
model = keras.Model(x, keras.layers.Dense(2)(keras.layers.Dense(3, activation="relu")(x)))
gm = from_tensorflow(model)
inputs = np.ones((2, 4), np.float32)
diff = np.abs(gm(torch.from_numpy(inputs)).detach().numpy() - np.asarray(model(inputs))).max()
assert diff < 1e-5, diff
print("converted")
"""


def test_tensorflow_and_fxsurgeon_import_in_either_order():
    """Importing triton after TensorFlow aborts the process; fxsurgeon makes both orders work."""
    scripts = {
        "tensorflow first": "import tensorflow\nimport fxsurgeon\n" + _CONVERT_MLP,
        "fxsurgeon first": "import fxsurgeon\nimport tensorflow\n" + _CONVERT_MLP,
    }
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    procs = {
        order: subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order, script in scripts.items()
    }
    for order, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "converted" in out, (
            f"{order}: rc={proc.returncode}\n{err[-3000:]}"
        )


# --------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_seed_vit_base_exports_and_matches_tensorflow():
    model = zoo.build("vit_base")
    assert model.trainable_params == zoo.VIT_BASE_TRAINABLE
    proto = zoo.export("vit_base")
    onnx.checker.check_model(proto, full_check=True)
    session = _session(proto)
    for batch in (1, 2):
        inputs = model.make_inputs(batch, seed=batch)
        (got,) = session.run(None, inputs)
        assert _max_abs(got, model.tf_outputs(inputs)[0]) <= ATOL
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every trainable variable must be found
        info = _source(from_onnx(proto, tf_model=model.model))
    found = info.initializers_of_variable()
    assert all(len(found[v.name]) == 1 for v in info.tf_variables if v.trainable)
