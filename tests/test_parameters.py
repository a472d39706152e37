"""Every TF variable comes back as one named parameter (or buffer) of the optimized model.

`fxsurgeon.parameter_origins` links each parameter/buffer name to its TF
variable and layout: ``torch_value == tf_value.permute(perm)``. These tests
read the TF values from the Keras / Hugging Face models of ``tests/zoo.py``
and hold the optimized model to them: one parameter per trainable variable,
equal values, moving statistics as buffers, structural constants out of the
``state_dict``; equal variables that tf2onnx merged into one initializer come
back apart; a shared layer stays one; the ``state_dict`` round-trips through
safetensors.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

import numpy as np
import pytest
import safetensors.torch
import torch
import zoo

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.nn import KerasBatchNorm
from fxsurgeon.pipeline import report_of
from fxsurgeon.source import SOURCE_META_KEY

#: Models whose every TF variable reaches the ONNX graph (keras3_cnn's BatchNorm does not).
MAPPED = (
    "vit_tiny",
    "bert_tiny",
    "bert_tiny_exact_gelu",
    "gpt2_tiny",
    "resnet50",
    "keras_mlp",
    "keras_cnn",
)


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def tf_name(variable) -> str:
    """The name `fxsurgeon.tensorflow` records: ``.path`` in Keras 3, else ``.name``."""
    return str(getattr(variable, "path", None) or variable.name)


def tf_value(variable) -> torch.Tensor:
    return torch.from_numpy(np.array(variable.numpy()))


def torch_inputs(name: str, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
    specs = zoo.convert(name).meta[SOURCE_META_KEY].input_specs
    return [torch.from_numpy(inputs[spec.name]) for spec in specs]


def persistent_names(module: torch.nn.Module) -> set[str]:
    return set(module.state_dict())


# --------------------------------------------------------------------------- name mapping


@pytest.mark.parametrize("name", MAPPED)
def test_every_trainable_variable_is_exactly_one_parameter_with_its_value(name):
    module = optimized(name)
    origins = fxsurgeon.parameter_origins(module)
    variables = {tf_name(v): v for v in zoo.build(name).model.trainable_variables}
    params = dict(module.named_parameters())

    held = Counter(origins[p].tf_name for p in params)
    assert set(held) == set(variables)
    assert all(count == 1 for count in held.values()), held.most_common(3)
    for pname, param in params.items():
        origin = origins[pname]
        assert param.requires_grad and origin.trainable
        assert origin.perm is not None, pname
        expected = tf_value(variables[origin.tf_name]).permute(origin.perm)
        assert param.shape == expected.shape, pname
        assert torch.equal(param.detach(), expected), pname
    assert sum(p.numel() for p in params.values()) == zoo.build(name).trainable_params


@pytest.mark.parametrize("name", MAPPED)
def test_non_trainable_variables_are_buffers_and_constants_stay_out_of_the_state_dict(name):
    module = optimized(name)
    origins = fxsurgeon.parameter_origins(module)
    frozen = {tf_name(v): v for v in zoo.build(name).model.non_trainable_variables}
    buffers = dict(module.named_buffers())
    state = persistent_names(module)

    mapped = {origins[b].tf_name: b for b in buffers if b in origins}
    assert set(mapped) == set(frozen)
    for variable_name, bname in mapped.items():
        origin = origins[bname]
        assert not origin.trainable and bname in state
        expected = tf_value(frozen[variable_name]).permute(origin.perm)
        assert torch.equal(buffers[bname], expected), bname
    # Everything else persistent is a TF variable too (torch's BatchNorm step
    # counter aside); constants are non-persistent buffers with no TF name.
    assert {k for k in state if k not in origins} <= {
        k for k in state if k.endswith("num_batches_tracked")
    }
    for bname in set(buffers) - state:
        assert bname not in origins


def test_keras3_batch_norm_comes_back_as_parameters_and_statistics_buffers():
    """fxsurgeon's export keeps Keras 3's BatchNormalization unfolded (frontdoor/freeze.py):
    gamma and beta are parameters, the moving statistics persistent buffers, each with
    its TF variable; constants that remain are non-persistent and have no origin."""
    module = optimized("keras3_cnn")
    origins = fxsurgeon.parameter_origins(module)
    params_of = {
        o.tf_name for name, o in origins.items() if name in dict(module.named_parameters())
    }
    for layer in ("bn_1", "bn_2"):
        for leaf in ("gamma", "beta"):
            assert f"{layer}/{leaf}" in params_of, (layer, leaf, sorted(params_of))
    persistent = persistent_names(module)
    params = {n for n, _ in module.named_parameters()}
    stats = {n for n, o in origins.items() if "moving_" in o.tf_name}
    assert len(stats) == 4 and stats <= persistent and not stats & params
    constants = {n for n, _ in module.named_buffers()} - persistent
    assert all(c not in origins for c in constants)
    variables = {tf_name(v) for v in zoo.build("keras3_cnn").model.trainable_variables}
    assert all(origins[p].tf_name in variables for p, _ in module.named_parameters())


def test_state_dict_keys_follow_the_tf_scopes_of_vit():
    origins = fxsurgeon.parameter_origins(optimized("vit_tiny"))
    model_scope = zoo.build("vit_tiny").model.name  # Keras numbers it per process: ..._2
    scope = f"{model_scope}/vit"
    expected = {
        "vit.encoder.layer_0.attention.attention.query.weight": (
            f"{scope}/encoder/layer_._0/attention/attention/query/kernel:0",
            (1, 0),
        ),
        "vit.encoder.layer_1.attention.attention.key.bias": (
            f"{scope}/encoder/layer_._1/attention/attention/key/bias:0",
            (0,),
        ),
        "vit.encoder.layer_1.layernorm_after.weight": (
            f"{scope}/encoder/layer_._1/layernorm_after/gamma:0",
            (0,),
        ),
        "vit.embeddings.patch_embeddings.projection.weight": (
            f"{scope}/embeddings/patch_embeddings/projection/kernel:0",
            (3, 2, 0, 1),  # HWIO -> OIHW
        ),
        "vit.embeddings.cls_token": (f"{scope}/embeddings/cls_token:0", (0, 1, 2)),
        "vit.layernorm.bias": (f"{scope}/layernorm/beta:0", (0,)),
        "classifier.weight": (f"{model_scope}/classifier/kernel:0", (1, 0)),
    }
    for key, (variable, perm) in expected.items():
        assert (origins[key].tf_name, origins[key].perm) == (variable, perm), key


def test_state_dict_keys_follow_the_tf_scopes_of_bert():
    origins = fxsurgeon.parameter_origins(optimized("bert_tiny"))
    scope = f"{zoo.build('bert_tiny').model.name}/bert"
    expected = {
        "bert.embeddings.word_embeddings.weight": f"{scope}/embeddings/word_embeddings/weight:0",
        "bert.embeddings.position_embeddings.weight": (
            f"{scope}/embeddings/position_embeddings/embeddings:0"
        ),
        "bert.embeddings.LayerNorm.bias": f"{scope}/embeddings/LayerNorm/beta:0",
        "bert.encoder.layer_0.attention.self.query.weight": (
            f"{scope}/encoder/layer_._0/attention/self/query/kernel:0"
        ),
        "bert.encoder.layer_1.output.LayerNorm.weight": (
            f"{scope}/encoder/layer_._1/output/LayerNorm/gamma:0"
        ),
        "bert.pooler.dense.bias": f"{scope}/pooler/dense/bias:0",
    }
    for key, variable in expected.items():
        assert origins[key].tf_name == variable, key
    assert origins["bert.encoder.layer_0.attention.self.query.weight"].perm == (1, 0)


def test_printed_model_shows_the_tf_layer_tree():
    text = repr(optimized("vit_tiny"))
    for line in ("(vit): ", "(encoder): ", "(layer_0): ", "(attention): ", "(query): "):
        assert line in text
    assert "(projection): Conv2d(3, 32, kernel_size=(8, 8), stride=(8, 8))" in text
    cnn = optimized("keras_cnn")
    assert "(conv_1): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in repr(cnn)


def test_batchnorm_becomes_keras_batchnorm_with_keras_momentum_and_epsilon():
    module = optimized("keras_cnn")
    origins = fxsurgeon.parameter_origins(module)
    for layer in ("bn_1", "bn_2"):
        bn = module.get_submodule(layer)
        keras_layer = zoo.build("keras_cnn").model.get_layer(layer)
        assert isinstance(bn, KerasBatchNorm)
        assert bn.momentum == pytest.approx(1.0 - keras_layer.momentum, rel=1e-12)
        assert bn.eps == pytest.approx(keras_layer.epsilon, rel=1e-6)  # the ONNX attribute: float32
        assert origins[f"{layer}.running_var"].tf_name == f"{layer}/moving_variance:0"
        assert not bn.running_mean.requires_grad


# --------------------------------------------------------------------------- merged and shared


def _twin_dense_model():
    """dense_a and dense_b: two different layers whose kernels (and biases) are equal."""
    tf_keras = _tf_keras()
    x = tf_keras.Input((6,), name="features")
    h = tf_keras.layers.Dense(6, activation="relu", name="dense_a")(x)
    h = tf_keras.layers.Dense(6, activation="tanh", name="dense_b")(h)
    y = tf_keras.layers.Dense(3, name="head")(h)
    model = tf_keras.Model(x, y, name="twin")
    rng = np.random.default_rng(0)
    kernel = (rng.standard_normal((6, 6)) / 3).astype(np.float32)
    bias = (0.1 * rng.standard_normal(6)).astype(np.float32)
    for layer in ("dense_a", "dense_b"):
        model.get_layer(layer).kernel.assign(kernel)
        model.get_layer(layer).bias.assign(bias)
    model.get_layer("head").kernel.assign(rng.standard_normal((6, 3)).astype(np.float32))
    model.get_layer("head").bias.assign(rng.standard_normal(3).astype(np.float32))
    return model


def _shared_dense_model():
    """One Dense layer applied twice: one kernel, one bias."""
    tf_keras = _tf_keras()
    x = tf_keras.Input((6,), name="features")
    shared = tf_keras.layers.Dense(6, activation="tanh", name="shared")
    model = tf_keras.Model(x, shared(shared(x)), name="sharing")
    rng = np.random.default_rng(1)
    for variable in model.variables:
        variable.assign((rng.standard_normal(variable.shape) / 2).astype(np.float32))
    return model


def _tf_keras():
    zoo.import_tensorflow()
    import tf_keras

    return tf_keras


def _plain_tf2onnx(model):
    """tf2onnx as people call it: default optimizers, merge_duplication included."""
    import tf2onnx

    tf = zoo.import_tensorflow()
    spec = (tf.TensorSpec((None, 6), tf.float32, name="features"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec)
    return proto


@functools.cache
def _twin_export():
    model = _twin_dense_model()
    return model, _plain_tf2onnx(model)


def _max_diff_vs_keras(module, model) -> float:
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    return float(np.abs(got - model(x, training=False).numpy()).max())


def test_equal_variables_merged_by_tf2onnx_come_back_as_separate_parameters():
    from fxsurgeon.tensorflow import from_onnx

    model, proto = _twin_export()
    variable_map = from_onnx(proto, tf_model=model).meta[SOURCE_META_KEY].variable_map
    merged = [i for i, origins in variable_map.items() if len(origins) == 2]
    assert len(merged) == 2 and len(proto.graph.initializer) == 4  # kernel and bias, each merged

    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    origins = fxsurgeon.parameter_origins(module)
    expected = {
        "dense_a.weight": "dense_a/kernel:0",
        "dense_a.bias": "dense_a/bias:0",
        "dense_b.weight": "dense_b/kernel:0",
        "dense_b.bias": "dense_b/bias:0",
        "head.weight": "head/kernel:0",
        "head.bias": "head/bias:0",
    }
    params = dict(module.named_parameters())
    assert {n: origins[n].tf_name for n in params} == expected
    assert params["dense_a.weight"] is not params["dense_b.weight"]
    assert report_of(module).trainable_after == sum(
        int(np.prod(v.shape)) for v in model.trainable_variables
    )
    assert not report_of(module).notes
    assert _max_diff_vs_keras(module, model) <= 1e-6

    # Apart, they train apart: their gradients differ.
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((4, 6)).astype(np.float32))
    module(x).square().sum().backward()
    assert not torch.allclose(params["dense_a.weight"].grad, params["dense_b.weight"].grad)


def test_without_the_tf_model_a_merged_initializer_is_split_with_a_note():
    from fxsurgeon.tensorflow import from_onnx

    model, proto = _twin_export()
    module = fxsurgeon.optimize(from_onnx(proto))
    report = report_of(module)
    merged_kernel = next(n.input[1] for n in proto.graph.node if n.name == "twin/dense_b/MatMul")
    assert any(merged_kernel in note and "no TF model" in note for note in report.notes)
    assert report.trainable_after == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert _max_diff_vs_keras(module, model) <= 1e-6


@pytest.mark.parametrize("export", ["plain_tf2onnx", "fxsurgeon_export"])
def test_a_shared_layer_stays_one_parameter(export):
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    model = _shared_dense_model()
    proto = _plain_tf2onnx(model) if export == "plain_tf2onnx" else export_onnx(model)
    # one initializer per variable, read twice (fxsurgeon's export folds nothing into copies)
    assert len(proto.graph.initializer) == 2
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    origins = fxsurgeon.parameter_origins(module)
    params = dict(module.named_parameters())
    assert {n: origins[n].tf_name for n in params} == {
        "shared.weight": "shared/kernel:0",
        "shared.bias": "shared/bias:0",
    }
    calls = [n for n in module.graph.nodes if n.op == "call_module" and n.target == "shared"]
    assert len(calls) == 2
    assert report_of(module).trainable_after == 42
    assert _max_diff_vs_keras(module, model) <= 1e-6


def _embedding_called_from_two_parents():
    """One Embedding layer called inside two parent layers (an encoder and a decoder
    sharing their token table, as Marian and BART do): its lookups are scoped
    ``encoder/shared`` and ``decoder/shared``."""
    tf_keras = _tf_keras()
    shared = tf_keras.layers.Embedding(11, 4, name="shared")

    class Side(tf_keras.layers.Layer):
        def __init__(self, table, **kwargs):
            super().__init__(**kwargs)
            self.table = table
            self.dense = tf_keras.layers.Dense(4, name="dense")

        def call(self, ids):
            return self.dense(self.table(ids))

    ids_a = tf_keras.Input((None,), dtype="int32", name="ids_a")
    ids_b = tf_keras.Input((None,), dtype="int32", name="ids_b")
    encoder, decoder = Side(shared, name="encoder"), Side(shared, name="decoder")
    model = tf_keras.Model([ids_a, ids_b], encoder(ids_a) + decoder(ids_b), name="tied")
    model([np.zeros((1, 3), np.int32), np.zeros((1, 3), np.int32)])
    rng = np.random.default_rng(2)
    for variable in model.variables:
        variable.assign((rng.standard_normal(variable.shape) / 2).astype(np.float32))
    return model


def test_an_embedding_called_from_two_parent_scopes_is_one_parameter_without_tf():
    """The lookups' scopes differ in their parents only: the layer that owns the table
    is one (``shared``), so without the TF model its reads are one parameter, as TF has."""
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    model = _embedding_called_from_two_parents()
    proto = export_onnx(model)
    tables = [t.name for t in proto.graph.initializer if list(t.dims) == [11, 4]]
    assert len(tables) == 1  # one variable, one initializer, read by both lookups
    readers = sorted(n.name for n in proto.graph.node if tables[0] in n.input)
    assert readers == [
        "tied/decoder/shared/embedding_lookup",
        "tied/encoder/shared/embedding_lookup",
    ]
    module = fxsurgeon.optimize(from_onnx(proto))
    tables = [p for p in module.parameters() if tuple(p.shape) == (11, 4)]
    assert len(tables) == 1
    tf_count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert report_of(module).trainable_after == tf_count
    ids = [np.array([[1, 4, 9]], np.int32), np.array([[2, 3, 10]], np.int32)]
    with torch.no_grad():
        got = module(*(torch.from_numpy(i) for i in ids)).numpy()
    assert np.abs(got - model(ids, training=False).numpy()).max() <= 1e-6


# --------------------------------------------------------------------------- report


def test_keras3_batch_norm_variables_are_all_held_after_export():
    """Keras 3's BatchNormalization used to reach ONNX folded by TF's grappler (one Mul,
    one Add, and gamma multiplied into the conv kernel); the export now keeps every
    variable an initializer of its own, so none is missing and the count equals TF's."""
    module = optimized("keras3_cnn")
    report = report_of(module)
    model = zoo.build("keras3_cnn").model
    held = {o.tf_name for o in fxsurgeon.parameter_origins(module).values()}
    missing = {tf_name(v) for v in model.variables} - held
    assert missing == set()
    assert report.trainable_after == zoo.build("keras3_cnn").trainable_params


# --------------------------------------------------------------------------- safetensors


@pytest.mark.parametrize("name", ["vit_tiny", "keras_cnn"])
def test_state_dict_round_trips_through_safetensors(name, tmp_path):
    source = optimized(name)
    path = tmp_path / f"{name}.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(path))

    fresh = fxsurgeon.optimize(zoo.convert(name))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in fresh.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    inputs = torch_inputs(name, zoo.build(name).make_inputs(2, seed=5))
    with torch.no_grad():
        expected = source(*inputs)
        assert not torch.allclose(fresh(*inputs), expected)  # the perturbation shows

    loaded = safetensors.torch.load_file(str(path))
    assert set(loaded) == set(source.state_dict())
    fresh.load_state_dict(loaded, strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(*inputs), expected)


# --------------------------------------------------------------------------- ViT-Base


@pytest.mark.slow
def test_vit_base_has_every_variable_as_a_parameter():
    module = optimized("vit_base")
    origins = fxsurgeon.parameter_origins(module)
    params = dict(module.named_parameters())
    assert sum(p.numel() for p in params.values()) == zoo.VIT_BASE_TRAINABLE == 85_800_194
    variables = {tf_name(v): v for v in zoo.build("vit_base").model.trainable_variables}
    assert Counter(origins[p].tf_name for p in params) == Counter(set(variables))
    for key in (
        "vit.encoder.layer_11.attention.attention.query.weight",
        "vit.embeddings.patch_embeddings.projection.weight",
        "classifier.bias",
    ):
        origin = origins[key]
        expected = tf_value(variables[origin.tf_name]).permute(origin.perm)
        assert torch.equal(params[key].detach(), expected)


#: Names that say the tensor's TF scope was lost (onnx2torch's and the fallback's names).
NOT_A_SCOPE = re.compile(r"(^|\.)(weight\.weight|param(_\d+)?|const_\d+)($|\.)")


@pytest.mark.slow
def test_vit_base_through_the_plain_one_liner_has_every_variable_as_a_named_parameter():
    """``optimize(onnx2torch.convert(onnx))`` with no other argument and no TF model: the
    class token and position embeddings (the historical losses) are parameters too, and
    every name is a TF scope (``vit.encoder.layer_11...``, ``classifier.bias``)."""
    model = zoo.build("vit_base").model
    module = fxsurgeon.optimize(import_onnx2torch().convert(zoo.export("vit_base")))
    # without the input specs the optimize is lazy: the first call materializes it
    pixels = zoo.build("vit_base").make_inputs(1, seed=3)["pixel_values"]
    with torch.no_grad():
        module(torch.from_numpy(pixels))
    params = dict(module.named_parameters())
    assert sum(p.numel() for p in params.values()) == zoo.VIT_BASE_TRAINABLE == 85_800_194
    # one parameter per TF variable: the same multiset of sizes (layouts may be permuted)
    sizes = Counter(int(np.prod(tuple(v.shape))) for v in model.trainable_variables)
    assert Counter(p.numel() for p in params.values()) == sizes
    for key in params:
        assert not NOT_A_SCOPE.search(key), key
        assert key.split(".")[0] in {"vit", "classifier"}, key
        assert all(part.isidentifier() for part in key.split(".")), key
    assert report_of(module).trainable_after == 85_800_194
    print(f"\nViT-Base, plain one-liner: {len(params)} parameters, 85,800,194 trainable values")
