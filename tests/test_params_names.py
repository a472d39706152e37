"""Names without the TF model: what the one-liner (door B) calls each parameter.

The scopes in the ONNX names are the only source there. Keras 3 enters every
layer under its name plus a call suffix (``functional_1/sep_1``), and runs TF ops
under scopes of their own inside it (``sep_1/separable_conv2d/depthwise``); tf2onnx
names the nodes and folded constants it writes itself (``Conv__38`` reading
``const_fold_opt__41``); a recurrence's weights come out of one ONNX node.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fxsurgeon
from corpus.learned import bad_name
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.params.names import _keras_call_scopes
from fxsurgeon.tensorflow import export_onnx


def _door_b(model) -> torch.nn.Module:
    return fxsurgeon.optimize(import_onnx2torch().convert(export_onnx(model)))


def _layer_names(model) -> set[str]:
    return {layer.name for layer in model.layers}


def test_a_keras_3_separable_conv_is_named_by_its_layers():
    """The depthwise kernel tf2onnx folded (``const_fold_opt__N``, read by a ``Conv__N``)
    takes the scope of the bias the same node reads; no name keeps a call suffix."""
    import_tensorflow()
    import keras

    x = keras.Input((8, 8, 3), name="image")
    h = keras.layers.SeparableConv2D(8, 3, activation="relu", name="sep")(x)
    h = keras.layers.DepthwiseConv2D(3, name="depthwise")(h)
    y = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(h))
    model = keras.Model(x, y)
    randomize_variables(model, seed=5)
    module = _door_b(model)
    names = [n for n, _ in module.named_parameters()]
    assert all(bad_name(n) is None for n in names), names
    assert {n.split(".")[0] for n in names} == {"sep", "depthwise", "head"}
    assert {"depthwise.weight", "depthwise.bias", "head.weight", "head.bias"} <= set(names)
    assert sum(p.numel() for p in module.parameters()) == sum(
        int(np.prod(v.shape)) for v in model.trainable_variables
    )


def test_a_bidirectional_lstm_is_named_as_nn_lstm_names_its_weights():
    import_tensorflow()
    import tf_keras as keras

    x = keras.Input((5, 3), name="x")
    h = keras.layers.Bidirectional(keras.layers.LSTM(4, name="rnn"), name="bi")(x)
    model = keras.Model(x, keras.layers.Dense(2, name="head")(h))
    randomize_variables(model, seed=7)
    names = {n for n, _ in _door_b(model).named_parameters()}
    assert {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0"} <= names
    assert {"weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse"} <= names
    assert all(bad_name(n) is None for n in names), names


@pytest.mark.parametrize(
    ("scopes", "called"),
    [
        (["functional_1/sep_1/separable_conv2d/depthwise", "functional_1/head_1"], True),
        (["multi_io_1/score_1", "multi_io_1/trunk_1"], True),
        (["model/dense/MatMul", "model/dense_1/MatMul"], False),  # Keras 2: a first `dense`
        (["tf_bert_model/bert/encoder/layer_/_0"], False),
        (["_1/head_1"], False),
        ([], False),
    ],
)
def test_call_suffixes_are_keras_3s_only_when_every_layer_has_one(scopes, called):
    assert _keras_call_scopes(scopes) is called


def test_keras_3_attention_is_named_by_its_projections():
    """Keras's EinsumDense: a bias of two axes ``[heads, head_dim]`` added to a weighted
    product's output is a ``bias`` (a table added to activations is an embedding); its
    kernel, which tf2onnx folds and reads by an unscoped ``Gemm__N``, takes the scope of
    the next node that reads a constant (the bias add)."""
    import_tensorflow()
    import keras

    q = keras.Input((6, 8), name="q")
    kv = keras.Input((5, 8), name="kv")
    out = keras.layers.MultiHeadAttention(2, 4, name="mha")(q, kv)
    model = keras.Model([q, kv], keras.layers.Dense(3, name="head")(out))
    randomize_variables(model, seed=9)
    names = {n for n, _ in _door_b(model).named_parameters()}
    projections = ("query", "key", "value", "attention_output")
    assert {f"mha.{p}.{leaf}" for p in projections for leaf in ("weight", "bias")} <= names
    assert all(bad_name(n) is None for n in names), names


def test_keras_3_attention_without_biases_is_named_by_the_attention_it_feeds():
    """With ``use_bias=False`` no op under the projections' scopes remains: every
    projection is an unscoped ``Gemm__N`` whose result feeds the attention, which
    tf2onnx wrote as unscoped products around ``mha/Softmax``. The fused attention
    takes the scope of what it replaced (``mha``), so the value projection, whose
    nearest scoped reader was the next layer's, is named under ``mha`` too."""
    import_tensorflow()
    import keras

    ids = keras.Input((None,), dtype="int32", name="ids")
    h = keras.layers.Embedding(20, 12, mask_zero=True, name="embedding")(ids)
    h = keras.layers.MultiHeadAttention(3, 4, value_dim=6, use_bias=False, name="mha")(h, h)
    y = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling1D(name="pool")(h))
    model = keras.Model(ids, y)
    randomize_variables(model, seed=11)
    params = dict(_door_b(model).named_parameters())
    assert all(bad_name(n) is None for n in params), sorted(params)
    projections = [n for n, p in params.items() if n.startswith("mha.")]
    assert sorted(tuple(params[n].shape) for n in projections)[-3:] == [
        (12, 12),
        (12, 12),
        (18, 12),
    ]


def test_learned_scalars_are_parameters_without_the_tf_model():
    """tf_keras ``Attention(use_scale=True, score_mode="concat")`` holds two scalar
    variables; tf2onnx names their reads ``attention/ReadVariableOp/resource:0``, which
    no formula constant is: door B counts TF's trainable elements exactly, and a
    gradient reaches both. A model whose only scalars are a formula's (``x * 0.5 + 1``)
    gets no one-element parameter."""
    import_tensorflow()
    import tf_keras as keras

    q = keras.Input((None, 6), name="q")
    v = keras.Input((None, 6), name="v")
    h = keras.layers.Attention(use_scale=True, score_mode="concat", name="attention")([q, v])
    model = keras.Model([q, v], keras.layers.Dense(2, name="logits")(h))
    randomize_variables(model, seed=12)
    module = _door_b(model)
    assert sum(p.numel() for p in module.parameters()) == sum(
        int(np.prod(w.shape)) for w in model.trainable_variables
    )
    scalars = [p for p in module.parameters() if p.numel() == 1]
    assert len(scalars) == 2
    rng = np.random.default_rng(0)
    inputs = [torch.from_numpy(rng.standard_normal((2, 3, 6)).astype(np.float32)) for _ in "qv"]
    module(*inputs).square().sum().backward()
    assert all(float(p.grad.abs()) > 0 for p in scalars)

    x = keras.Input((4,), name="x")
    y = keras.layers.Dense(3, name="dense")(keras.layers.Lambda(lambda t: t * 0.5 + 1.0)(x))
    plain = _door_b(keras.Model(x, y))
    assert [p.numel() for p in plain.parameters()] == [12, 3]


def test_a_lookup_table_is_named_after_what_indexes_it():
    """Tables read under one scope (HF's ``embeddings/Gather``, ``Gather_1``...) are told
    apart by their index: positions (an arange, a masked cumsum plus an offset), a graph
    input by its name; an input onnx2torch renamed (``input_1``) says nothing."""
    from torch import fx

    from fxsurgeon.params.names import _index_part

    graph = fx.Graph()
    types, made_up = graph.placeholder("token_type_ids"), graph.placeholder("input_1")
    tables = [graph.get_attr(f"t{i}") for i in range(4)]
    positions = graph.call_function(torch.unsqueeze, (graph.call_function(torch.arange, (5,)), 0))
    mask = graph.call_function(torch.ne, (made_up, 1))
    counted = graph.call_function(torch.cumsum, (mask, 1))
    roberta = graph.call_function(torch.add, (graph.call_function(torch.mul, (counted, mask)), 1))
    reads = [
        graph.call_function(torch.nn.functional.embedding, (index, table))
        for index, table in zip((types, positions, roberta, made_up), tables, strict=True)
    ]
    graph.output(tuple(reads))
    got = [_index_part(table) for table in tables]
    assert got == ["token_type_embeddings", "position_embeddings", "position_embeddings", None]


@pytest.mark.parametrize("layer", ["GRU", "SimpleRNN"])
def test_a_recurrence_kept_as_a_loop_is_named_by_its_cell(layer):
    """Keras 3's GRU and SimpleRNN export as an ONNX ``Loop`` that takes the weights as
    operands: they are named where TF read them (``rnn/<cell>``) and by how the body reads
    them (a product's operand, a bias added, also when cut by a ``split``), not after the
    loop (``rnn.while_loop.while_loop.weight_1``)."""
    import_tensorflow()
    import keras

    x = keras.Input((None, 6), name="sequence")
    h = getattr(keras.layers, layer)(8, name="rnn")(x)
    model = keras.Model(x, keras.layers.Dense(3, name="head")(h))
    randomize_variables(model, seed=11)
    module = _door_b(model)
    assert any(n.op == "call_function" and "run_loop" in str(n.target) for n in module.graph.nodes)
    names = {n for n, _ in module.named_parameters()}
    cell = f"{layer.lower()}_cell" if layer == "GRU" else "simple_rnn_cell"
    assert f"rnn.{cell}.bias" in names
    assert len([n for n in names if n.startswith(f"rnn.{cell}.") and n.endswith(".weight")]) == 2
    assert not any("while" in n or "loop" in n for n in names), names
    assert all(bad_name(n) is None for n in names), names
    sequence = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    got = module(torch.from_numpy(sequence)).detach().numpy()
    np.testing.assert_allclose(got, model(sequence).numpy(), atol=1e-5, rtol=0)


def _einsum_heads_model():
    """A layer that projects to heads by ``tf.einsum`` with its own variables ``q`` and ``k``
    (XLNet's ``rel_attn``): tf2onnx writes each einsum as Gemm/Reshape/Transpose nodes it
    names itself, reading folded constants (``const_fold_opt__N``)."""
    tf = import_tensorflow()
    import tf_keras as keras

    class Heads(keras.layers.Layer):
        def build(self, shape):
            self.q = self.add_weight(name="q", shape=(8, 2, 4))
            self.k = self.add_weight(name="k", shape=(8, 2, 4))
            self.q_bias = self.add_weight(name="q_bias", shape=(2, 4))

        def call(self, x):
            q = tf.einsum("bih,hnd->bind", x, self.q) + self.q_bias
            k = tf.einsum("bih,hnd->bind", x, self.k)
            return tf.einsum("bind,bjnd->bnij", q, k)

    x = keras.Input((5, 8), name="x")
    model = keras.Model(x, Heads(name="heads")(x))
    randomize_variables(model, seed=3)
    return model


def test_a_variable_named_after_a_layer_keeps_its_name_under_the_role():
    """With the TF model (door A): a projection variable whose leaf names a layer
    (``heads/q``) is ``heads.q.weight``, not ``heads.weight`` and ``heads.weight_1``;
    a leaf that names a tensor (``kernel``) still gives way to the role."""
    model = _einsum_heads_model()
    names = {n for n, _ in fxsurgeon.optimize(fxsurgeon.from_tensorflow(model)).named_parameters()}
    assert {"heads.q.weight", "heads.k.weight", "heads.q_bias"} == names


def test_a_read_by_nodes_tf2onnx_named_takes_the_nearest_scope_downstream():
    """Door B: the einsum's Gemm and the constant it reads are tf2onnx's names; the
    nearest node downstream with a TF scope (the bias add, ``heads/add``) names the
    kernel. Never a component after an op tf2onnx named (``gemm_671``), and the model's
    own scope is dropped even where a read has no scope at all."""
    names = [n for n, _ in _door_b(_einsum_heads_model()).named_parameters()]
    assert "heads.weight" in names and "heads.bias" in names
    assert not any("gemm" in n or "matmul" in n or n.startswith("model.") for n in names), names


def test_a_fused_node_takes_the_scope_of_what_it_replaced_not_of_its_inputs():
    """`fuse.rewrite._origin`: an anchor tf2onnx named itself (``MatMul__9``) gives the
    replacement the scope of the nearest scoped node it replaces (``m/mha/Softmax``);
    never that of a value the replacement reads (the projection ``m/proj``), and a
    scoped anchor keeps its own."""
    from torch import fx

    from fxsurgeon.fuse.rewrite import _origin

    def node(graph, fn, *args, scope):
        made = graph.call_function(fn, args)
        made.meta["fxsurgeon.onnx_node"] = scope
        return made

    graph = fx.Graph()
    q = node(graph, torch.relu, graph.placeholder("x"), scope="m/proj/Relu")
    scores = node(graph, torch.softmax, q, -1, scope="m/mha/Softmax")
    anchor = node(graph, torch.matmul, scores, q, scope="MatMul__9")
    fused = graph.call_function(torch.nn.functional.scaled_dot_product_attention, (q, q, q))
    assert _origin(anchor, [fused]) == "m/mha/Softmax"
    bare = node(graph, torch.matmul, q, q, scope="MatMul__10")
    assert _origin(bare, [graph.call_function(torch.mul, (q, q))]) == "MatMul__10"
    scoped = node(graph, torch.matmul, scores, q, scope="m/other/MatMul")
    assert _origin(scoped, [fused]) == "m/other/MatMul"


def test_a_transposed_convolution_is_an_nn_conv_transpose_named_by_its_layer():
    """Keras ``Conv2DTranspose`` (tf2onnx: a ConvTranspose named ``ct_1/BiasAdd``, its bias
    folded in): the call is ``nn.ConvTranspose2d`` with ``weight`` and ``bias`` in the
    layer's scope through both doors (was ``ct.biasadd.weight`` and a bias called
    ``weight_1``), with TF's outputs; ``padding="same"`` (uneven pads) keeps its crop."""
    tf = import_tensorflow()
    import keras

    x = keras.Input((6, 6, 3), name="image")
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="ct")(x)
    y = keras.layers.Conv2DTranspose(2, 2, strides=2, name="ct2")(h)
    model = keras.Model(x, y)
    randomize_variables(model, seed=13)
    image = np.random.default_rng(1).standard_normal((2, 6, 6, 3)).astype(np.float32)
    want = np.asarray(model(tf.constant(image)))
    door_a = fxsurgeon.optimize(fxsurgeon.from_onnx(export_onnx(model), tf_model=model))
    for module in (_door_b(model), door_a):
        names = {n for n, _ in module.named_parameters()}
        assert names == {
            f"{layer}.{leaf}" for layer in ("ct", "ct2") for leaf in ("weight", "bias")
        }
        convs = [m for m in module.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
        assert len(convs) == 2
        got = module(torch.from_numpy(image)).detach().numpy()
        assert np.abs(got - want).max() <= 1e-5


def test_a_last_layer_tf2onnx_named_itself_takes_the_output_name():
    """A final ``EinsumDense`` without bias is all nodes tf2onnx named itself (a
    ``Gemm__N`` between reshapes), with no scoped node downstream: its kernel takes the
    name of the graph output it reaches (Keras names outputs after their layer), not
    a bare ``weight``, and the other layers keep theirs (no model prefix or call
    suffix leaks in). A generic output name (``output_0``) names nothing."""
    import_tensorflow()
    import keras
    from torch import fx

    from fxsurgeon.params.names import _nearest_scope

    x = keras.Input((None, 6), name="x")
    h = keras.layers.EinsumDense("abc,cde->abde", (None, 2, 4), bias_axes="de", name="ed")(x)
    y = keras.layers.EinsumDense("abde,de->ab", (None,), name="ed2")(h)
    model = keras.Model(x, y)
    randomize_variables(model, seed=14)
    names = {n for n, _ in _door_b(model).named_parameters()}
    assert names == {"ed.weight", "ed.bias", "ed2.weight"}

    graph = fx.Graph()
    w = graph.get_attr("w")
    graph.output(graph.call_function(torch.nn.functional.linear, (graph.placeholder("x"), w)))
    assert _nearest_scope(w, outputs=("logits",)) == "output:logits"
    assert _nearest_scope(w, outputs=("output_0",)) == ""
    assert _nearest_scope(w) == ""


def test_a_transposed_convolution_that_tf2onnx_leaves_unfused_is_named_by_its_layer():
    """A ``Conv2DTranspose`` whose ConvTranspose node keeps the name of Keras 3's op scope
    (``one_up_1/conv_transpose``: no bias folded into it, or a one-channel layer whose bias
    add the layer takes back): ``conv_transpose`` is ``tf.nn.conv_transpose``'s scope, not a
    layer, so both doors call the kernel ``one_up.weight`` (door B said
    ``one_up.conv_transpose.weight``); a layer a user named ``conv2d_transpose`` keeps it."""
    tf = import_tensorflow()
    import keras

    x = keras.Input((4, 4, 3), name="image")
    h = keras.layers.Conv2DTranspose(2, 2, strides=2, use_bias=False, name="plain")(x)
    h = keras.layers.Conv2DTranspose(2, 3, padding="same", name="conv2d_transpose")(h)
    y = keras.layers.Conv2DTranspose(1, 3, padding="same", name="one_up")(h)
    model = keras.Model(x, y)
    randomize_variables(model, seed=15)
    image = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32)
    want = np.asarray(model(tf.constant(image)))
    door_a = fxsurgeon.optimize(fxsurgeon.from_onnx(export_onnx(model), tf_model=model))
    for module in (_door_b(model), door_a):
        names = {n for n, _ in module.named_parameters()}
        assert names == {
            "plain.weight",
            "conv2d_transpose.weight",
            "conv2d_transpose.bias",
            "one_up.weight",
            "one_up.bias",
        }
        got = module(torch.from_numpy(image)).detach().numpy()
        assert np.abs(got - want).max() <= 1e-5
