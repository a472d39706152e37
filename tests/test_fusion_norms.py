"""LayerNorm / RMSNorm fusion (patterns/layer_norm.py): every form found, wrong ones left alone.

ONNX cases are written the way tf2onnx writes each form and compared with
onnxruntime; the model cases (tiny HF TFMistral, a Keras 3 model) with TensorFlow.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from fusion_cases import (
    assert_matches_ort,
    calls,
    family_count,
    fused,
    graph,
    keras_vs_tf,
    matches,
    node,
    optimized,
    rng,
)
from onnx_cases import tensor_info
from torch import nn

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch, import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.tensorflow import export_onnx


def layer_norms(module) -> list[tuple[tuple, bool]]:
    """(normalized shape, has beta) of each LayerNorm, functional or module."""
    found = []
    for item in fused(module, F.layer_norm, nn.LayerNorm):
        if isinstance(item, nn.LayerNorm):
            found.append((tuple(item.normalized_shape), item.bias is not None))
        else:
            beta = item.args[3] if len(item.args) > 3 else item.kwargs.get("bias")
            found.append((tuple(item.args[1]), beta is not None))
    return found


LN_FORMS = ("tf", "tf0", "k3", "k30", "direct", "direct0")


def _square(nodes: list, d: str, square: str) -> None:
    if square == "Mul":
        nodes.append(node("Mul", [d, d], "sq"))
    else:
        nodes.append(node("Pow", [d, "two"], "sq"))


def _over_std(nodes: list, a: str, out: str, inv: str, swap: bool = False) -> None:
    """out = a / std, as Reciprocal + Mul or as Div."""
    if inv == "recip":
        nodes.append(node("Reciprocal", ["std"], "r"))
        nodes.append(node("Mul", ["r", a] if swap else [a, "r"], out))
    else:
        nodes.append(node("Div", [a, "std"], out))


def layer_norm_onnx(
    form: str,
    square: str = "Mul",
    inv: str = "recip",
    axes=(-1,),
    affine_shape=(8,),
    swap: bool = False,
    expose: str | None = None,
    x_shape=("N", 5, 8),
    var_axes=None,
    mean_via=None,
):
    """LayerNorm over `axes` of x (default [N, 5, 8]) in one of LN_FORMS; `var_axes`
    (default `axes`) is where the variance is taken; `mean_via` (inner, outer) reshapes
    the mean twice before the Sub (tf2onnx's round trip)."""
    nodes = [node("ReduceMean", ["x"], "mean", axes=list(axes), keepdims=1)]
    centred = "mean"
    if mean_via is not None:
        nodes.append(node("Reshape", ["mean", "inner"], "mean_inner"))
        nodes.append(node("Reshape", ["mean_inner", "outer"], "mean_outer"))
        centred = "mean_outer"
    nodes.append(node("Sub", ["x", centred], "d"))
    _square(nodes, "d", square)
    nodes += [
        node("ReduceMean", ["sq"], "var", axes=list(var_axes or axes), keepdims=1),
        node("Add", ["var", "eps"], "ve"),
        node("Sqrt", ["ve"], "std"),
    ]
    with_beta = not form.endswith("0")
    if form.startswith("direct"):
        _over_std(nodes, "d", "n", inv)
        nodes.append(
            node("Mul", ["gamma", "n"] if swap else ["n", "gamma"], "y" if not with_beta else "ng")
        )
        if with_beta:
            nodes.append(node("Add", ["ng", "beta"], "y"))
    else:
        _over_std(nodes, "gamma", "s", inv, swap)
        nodes.append(node("Mul", ["x", "s"], "xs"))
        if form == "tf":
            nodes += [
                node("Mul", ["mean", "s"], "ms"),
                node("Sub", ["beta", "ms"], "shift"),
                node("Add", ["xs", "shift"], "y"),
            ]
        elif form == "tf0":
            nodes += [
                node("Mul", ["mean", "s"], "ms"),
                node("Neg", ["ms"], "shift"),
                node("Add", ["xs", "shift"], "y"),
            ]
        else:
            nodes += [node("Neg", ["mean"], "nm"), node("Mul", ["nm", "s"], "ms")]
            if form == "k3":
                nodes += [node("Add", ["ms", "beta"], "shift"), node("Add", ["xs", "shift"], "y")]
            else:
                nodes.append(node("Add", ["xs", "ms"], "y"))
    consts = {"eps": 1e-3, "gamma": 1 + 0.1 * rng.standard_normal(affine_shape)}
    if with_beta:
        consts["beta"] = rng.standard_normal(affine_shape) * 0.5
    if square == "Pow":
        consts["two"] = 2.0
    if mean_via is not None:
        consts["inner"], consts["outer"] = (np.array(s, dtype=np.int64) for s in mean_via)
    outputs = ["y"] + ([expose] if expose else [])
    return graph(nodes, {"x": list(x_shape)}, outputs, consts)


@pytest.mark.parametrize("form", LN_FORMS)
@pytest.mark.parametrize("square", ["Mul", "Pow"])
@pytest.mark.parametrize("inv", ["recip", "div"])
def test_every_layer_norm_form_is_one_layer_norm(form, square, inv):
    model = layer_norm_onnx(form, square, inv)
    module = optimized(model)
    assert family_count(module, "layer_norm") == 1, matches(module)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 1
    assert "sqrt" not in module.code and "mean" not in module.code
    ((shape, has_beta),) = layer_norms(module)
    assert shape == (8,) and has_beta != form.endswith("0")
    assert_matches_ort(module, model)


def test_layer_norm_of_a_constant_table_read_once_per_use():
    """DeBERTa's encoder normalises its relative-embedding table: x is an initializer, read
    by the mean, the centring and the product, each read its own get_attr node."""
    model = layer_norm_onnx("tf", x_shape=(5, 8))
    table = next(i for i in model.graph.input if i.name == "x")
    model.graph.input.remove(table)
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "x")
    )
    model.graph.input.append(tensor_info("z", np.float32, ["N", 5, 8]))
    model.graph.node.append(node("Add", ["y", "z"], "out"))
    model.graph.output[0].name = "out"
    module = optimized(model)
    assert family_count(module, "layer_norm") == 1, matches(module)
    assert "sqrt" not in module.code and "mean" not in module.code
    assert_matches_ort(module, model)


@pytest.mark.parametrize("form", ["tf", "direct"])
def test_gamma_on_either_side_of_the_product(form):
    model = layer_norm_onnx(form, swap=True)
    module = optimized(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 1
    assert_matches_ort(module, model)


@pytest.mark.parametrize("affine_shape", [(5, 8), (1, 5, 8)])
@pytest.mark.parametrize("form", ["tf", "k3"])
def test_layer_norm_over_the_last_two_axes(form, affine_shape):
    """Keras LayerNormalization(axis=[-2, -1]): F.layer_norm(x, (5, 8), ...)."""
    model = layer_norm_onnx(form, axes=(1, 2), affine_shape=affine_shape)
    module = optimized(model)
    assert [shape for shape, _ in layer_norms(module)] == [(5, 8)]
    assert_matches_ort(module, model)


@pytest.mark.parametrize(
    ("axes", "affine_shape", "why"),
    [
        ((1,), (8,), "reduces axis 1, gamma/beta along the last axis"),
        ((1, 2), (8,), "gamma/beta broadcast per channel, not as (5, 8)"),
        ((-1,), (5, 1), "gamma/beta per row"),
    ],
)
def test_layer_norm_that_does_not_broadcast_as_its_axes_is_left_alone(axes, affine_shape, why):
    model = layer_norm_onnx("tf", axes=axes, affine_shape=affine_shape)
    module = optimized(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 0, why
    assert_matches_ort(module, model)


@pytest.mark.parametrize("expose", ["mean", "ve", "s"])
def test_layer_norm_with_an_intermediate_used_outside_is_left_alone(expose):
    model = layer_norm_onnx("k3", expose=expose)
    module = optimized(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 0
    assert_matches_ort(module, model)


# ------------------------------------------------------- over the channel axis (NCHW, ConvNeXt)

NCHW = ("N", 4, 3, 5)


@pytest.mark.parametrize("form", LN_FORMS)
@pytest.mark.parametrize("axes", [(1,), (-3,)])
def test_layer_norm_over_the_channel_axis_is_a_layer_norm_of_the_channels_last_view(form, axes):
    """ConvNeXt's LayerNorm over C of NCHW (tf2onnx moves the NHWC one there, gamma [C, 1, 1]):
    permute C last, F.layer_norm over (C,), permute back; the permutes fold where a
    channels-last op follows."""
    model = layer_norm_onnx(form, axes=axes, affine_shape=(4, 1, 1), x_shape=NCHW)
    module = optimized(model)
    assert family_count(module, "layer_norm") == 1, matches(module)
    ((shape, has_beta),) = layer_norms(module)
    assert shape == (4,) and has_beta != form.endswith("0")
    assert "sqrt" not in module.code and "mean" not in module.code
    assert_matches_ort(module, model)


@pytest.mark.parametrize("affine_shape", [(4, 1, 5), (1, 4, 1, 5)])
def test_layer_norm_over_two_axes_that_are_not_adjacent(affine_shape):
    model = layer_norm_onnx("k3", axes=(1, 3), affine_shape=affine_shape, x_shape=NCHW)
    module = optimized(model)
    assert [shape for shape, _ in layer_norms(module)] == [(4, 5)]
    assert_matches_ort(module, model)


@pytest.mark.parametrize(
    ("affine_shape", "var_axes", "why"),
    [
        ((5,), None, "gamma/beta per position of W, the reduction over C"),
        ((3, 1), None, "gamma/beta per row H"),
        ((4, 3, 1), None, "gamma/beta per (C, H): more than one value per channel"),
        ((4, 1, 1), (2,), "the mean over C, the variance over H"),
        ((4, 1, 1), (1, 2), "the variance over more axes than the mean"),
    ],
)
def test_channel_norm_that_is_not_a_layer_norm_is_left_alone(affine_shape, var_axes, why):
    model = layer_norm_onnx(
        "tf", axes=(1,), affine_shape=affine_shape, x_shape=NCHW, var_axes=var_axes
    )
    module = optimized(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 0, why
    assert_matches_ort(module, model)


@pytest.mark.parametrize(("outer", "expect"), [((-1, 1, 3, 5), 1), ((1, 2, 1, 3, 5), 0)])
def test_mean_reshaped_to_another_rank_and_back(outer, expect):
    """tf2onnx reshapes a ConvNeXt norm's mean [N, 1, H, W] to [1, -1, H, W, 1] and back:
    a round trip to its own shape is the mean (cleanup.reshape_round_trip); back to
    another shape (one more dim) it is not, and the norm is left alone."""
    model = layer_norm_onnx(
        "k3",
        axes=(1,),
        affine_shape=(4, 1, 1),
        x_shape=(2, 4, 3, 5),
        mean_via=((1, -1, 3, 5, 1), outer),
    )
    module = optimized(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == expect
    assert_matches_ort(module, model)


@pytest.mark.parametrize("expose", ["mean", "ve", "s"])
def test_channel_norm_with_an_intermediate_used_outside_is_left_alone(expose):
    model = layer_norm_onnx("tf", axes=(1,), affine_shape=(4, 1, 1), x_shape=NCHW, expose=expose)
    module = optimized(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 0
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- RMS norm


def rms_norm_onnx(
    form: str,
    square: str,
    inv: str,
    other: bool = False,
    gamma_shape=(8,),
    axes=(-1,),
    x_shape=("N", 5, 8),
):
    """RMSNorm of x over `axes`: 'after' = (x / std) * gamma, 'scale' = x * (gamma / std)."""
    nodes = [node("Mul", ["z", "z"] if other else ["x", "x"], "sq")] if square == "Mul" else []
    if square == "Pow":
        nodes.append(node("Pow", ["x", "two"], "sq"))
    nodes += [
        node("ReduceMean", ["sq"], "ms", axes=list(axes), keepdims=1),
        node("Add", ["ms", "eps"], "a"),
        node("Sqrt", ["a"], "std"),
    ]
    if form == "after":
        _over_std(nodes, "x", "h", inv)
        nodes.append(node("Mul", ["gamma", "h"], "y"))
    else:
        _over_std(nodes, "gamma", "s", inv)
        nodes.append(node("Mul", ["x", "s"], "y"))
    consts = {"eps": 1e-6, "two": 2.0, "gamma": 1 + 0.1 * rng.standard_normal(gamma_shape)}
    if square == "Mul":
        del consts["two"]
    inputs = {"x": list(x_shape)} | ({"z": list(x_shape)} if other else {})
    return graph(nodes, inputs, ["y"], consts)


@pytest.mark.parametrize("form", ["after", "scale"])
@pytest.mark.parametrize("square", ["Mul", "Pow"])
@pytest.mark.parametrize("inv", ["recip", "div"])
def test_every_rms_norm_form_is_one_rms_norm(form, square, inv):
    model = rms_norm_onnx(form, square, inv)
    module = optimized(model)
    assert family_count(module, "rms_norm") == 1, matches(module)
    assert calls(module, F.rms_norm, nn.RMSNorm) == 1 and "sqrt" not in module.code
    assert_matches_ort(module, model)


def test_x_over_the_rms_of_another_tensor_is_not_rms_norm():
    model = rms_norm_onnx("after", "Mul", "div", other=True)
    module = optimized(model)
    assert calls(module, F.rms_norm, nn.RMSNorm) == 0
    assert_matches_ort(module, model)


def test_rms_norm_with_a_per_row_gamma_is_left_alone():
    model = rms_norm_onnx("after", "Mul", "recip", gamma_shape=(5, 1))
    module = optimized(model)
    assert calls(module, F.rms_norm, nn.RMSNorm) == 0
    assert_matches_ort(module, model)


@pytest.mark.parametrize("form", ["after", "scale"])
def test_rms_norm_over_the_channel_axis(form):
    model = rms_norm_onnx(form, "Pow", "div", gamma_shape=(4, 1, 1), axes=(1,), x_shape=NCHW)
    module = optimized(model)
    assert family_count(module, "rms_norm") == 1, matches(module)
    (norm,) = fused(module, F.rms_norm, nn.RMSNorm)
    shape = norm.normalized_shape if isinstance(norm, nn.RMSNorm) else norm.args[1]
    assert tuple(shape) == (4,)
    assert_matches_ort(module, model)


def test_rms_norm_over_the_channel_axis_with_gamma_per_width_is_left_alone():
    model = rms_norm_onnx("after", "Mul", "recip", gamma_shape=(5,), axes=(1,), x_shape=NCHW)
    module = optimized(model)
    assert calls(module, F.rms_norm, nn.RMSNorm) == 0
    assert_matches_ort(module, model)


def scaled_rms_norm_onnx(square: str, inv: str, c_shape=()):
    """x * (c / std) * gamma: T5's tied-head scale moved onto 1/std by tf2onnx."""
    nodes = (
        [node("Mul", ["x", "x"], "sq")] if square == "Mul" else [node("Pow", ["x", "two"], "sq")]
    )
    nodes += [
        node("ReduceMean", ["sq"], "ms", axes=[-1], keepdims=1),
        node("Add", ["ms", "eps"], "a"),
        node("Sqrt", ["a"], "std"),
    ]
    _over_std(nodes, "c", "s", inv)
    nodes += [node("Mul", ["x", "s"], "xs"), node("Mul", ["xs", "gamma"], "y")]
    consts = {"eps": 1e-6, "two": 2.0, "c": np.full(c_shape, 8**-0.5) + 0.01 * rng.random(c_shape)}
    consts["gamma"] = 1 + 0.1 * rng.standard_normal((8,))
    if square == "Mul":
        del consts["two"]
    return graph(nodes, {"x": ["N", 5, 8]}, ["y"], consts)


@pytest.mark.parametrize("square", ["Mul", "Pow"])
@pytest.mark.parametrize("inv", ["recip", "div"])
@pytest.mark.parametrize("c_shape", [(), (1, 1)])
def test_rms_norm_times_a_scalar_moved_onto_the_inverse_std(square, inv, c_shape):
    """hf_t5_lm's final decoder norm: rms_norm(x, gamma) * c, the scale kept outside."""
    model = scaled_rms_norm_onnx(square, inv, c_shape)
    module = optimized(model)
    assert family_count(module, "rms_norm") == 1, matches(module)
    assert calls(module, F.rms_norm, nn.RMSNorm) == 1 and "sqrt" not in module.code
    assert_matches_ort(module, model)


def test_rms_norm_with_a_per_row_scale_on_the_inverse_std_is_left_alone():
    """c per row (not one value, not per feature): neither the scaled rule nor gamma's."""
    model = scaled_rms_norm_onnx("Mul", "recip", (5, 1))
    module = optimized(model)
    assert calls(module, F.rms_norm, nn.RMSNorm) == 0
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- models


@functools.cache
def tiny_mistral():
    tf = import_tensorflow()
    from transformers import MistralConfig, TFMistralModel

    config = MistralConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        sliding_window=None,
    )
    model = TFMistralModel(config)
    model(tf.constant([[1, 2, 3]]))
    randomize_variables(model, 0)
    proto = export_onnx(model, {"input_ids": tf.TensorSpec((None, None), tf.int32)})
    return model, proto


def test_tiny_mistral_has_two_rms_norms_per_layer_and_a_final_one():
    tf = import_tensorflow()
    model, proto = tiny_mistral()
    module = optimized(proto)
    layers = model.config.num_hidden_layers
    assert calls(module, F.rms_norm, nn.RMSNorm) == 2 * layers + 1
    assert "sqrt" not in module.code
    ids = np.random.default_rng(1).integers(0, 50, (2, 7)).astype(np.int32)
    expected = model(tf.constant(ids)).last_hidden_state.numpy()
    # the export keeps captured constants (the rotary inv_freq) as constants: one input
    assert len([n for n in module.graph.nodes if n.op == "placeholder"]) == 1
    with torch.no_grad():
        got = module(torch.from_numpy(ids))
    assert float(np.abs(got.numpy() - expected).max()) <= 1e-5


def test_keras3_layer_norms_over_one_and_two_axes():
    import_tensorflow()
    import keras

    inp = keras.Input((6, 8))
    outs = [
        keras.layers.LayerNormalization()(inp),
        keras.layers.LayerNormalization(axis=[-2, -1])(inp),
        keras.layers.LayerNormalization(center=False)(inp),
        keras.layers.LayerNormalization(rms_scaling=True)(inp),  # neither LN nor RMS: stays
        keras.layers.GroupNormalization(groups=4)(inp),
    ]
    model = keras.Model(inp, outs)
    randomize_variables(model, 0)
    x = np.random.default_rng(2).standard_normal((3, 6, 8)).astype(np.float32)
    module, diff = keras_vs_tf(model, [x])
    shapes = sorted(shape for shape, _ in layer_norms(module))
    assert shapes == [(6, 8), (8,), (8,)]
    assert calls(module, F.rms_norm, nn.RMSNorm) == 0
    assert diff <= 1e-5


@pytest.mark.parametrize("form", LN_FORMS)
def test_layer_norm_over_one_feature_keeps_its_gamma_and_beta_as_weights(form):
    """Over one feature (Keras's LayerNormalization on a one-feature series) gamma and beta
    have one element, which the lowering writes as numbers: the rule takes them as
    ``layer_norm(x) * gamma + beta`` and the params phase puts them back into the layer,
    an ``nn.LayerNorm((1,))`` whose weight and bias are parameters (were two numbers)."""
    model = layer_norm_onnx(form, x_shape=("N", 5, 1), affine_shape=(1,))
    module = optimized(model)
    assert family_count(module, "layer_norm") == 1, matches(module)
    (norm,) = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    assert tuple(norm.normalized_shape) == (1,)
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert torch.equal(norm.weight.detach(), torch.from_numpy(consts["gamma"]))
    if form.endswith("0"):
        assert norm.bias is None
    else:
        assert torch.equal(norm.bias.detach(), torch.from_numpy(consts["beta"]))
    assert sum(p.numel() for p in module.parameters()) == (1 if form.endswith("0") else 2)
    assert "sqrt" not in module.code and "mean" not in module.code
    assert_matches_ort(module, model)


def test_a_number_scaling_a_layer_norm_over_several_features_stays_a_number():
    """One number for gamma and beta over 8 features is a formula's constant, not the
    layer's (a learned gamma has one value per feature): still one exact layer norm,
    the numbers applied after it, no parameter made of them."""
    model = layer_norm_onnx("k3", affine_shape=(1,))
    module = optimized(model)
    assert family_count(module, "layer_norm") == 1, matches(module)
    assert not list(module.parameters())
    assert [m for m in module.modules() if isinstance(m, nn.LayerNorm)] == []
    assert_matches_ort(module, model)


def test_keras_layer_norm_over_a_one_feature_series_through_both_doors():
    """keras.io's timeseries Transformer normalises a one-feature series: both doors fuse
    the LayerNormalization and count its gamma and beta as TF does, named after it."""
    tf = import_tensorflow()
    import keras

    inp = keras.Input((6, 1), name="series")
    h = keras.layers.Dense(1, name="proj")(inp)
    y = keras.layers.LayerNormalization(epsilon=1e-6, name="ln")(h) + inp
    model = keras.Model(inp, y)
    randomize_variables(model, 4)
    proto = export_onnx(model)
    x = np.random.default_rng(3).standard_normal((3, 6, 1)).astype(np.float32)
    want = np.asarray(model(tf.constant(x)))
    door_a = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    door_b = fxsurgeon.optimize(import_onnx2torch().convert(proto))
    for module in (door_a, door_b):
        assert calls(module, F.layer_norm, nn.LayerNorm) == 1
        names = {n for n, _ in module.named_parameters()}
        assert {"ln.weight", "ln.bias"} <= names
        assert sum(p.numel() for p in module.parameters()) == 4
        got = module(torch.from_numpy(x)).detach().numpy()
        assert np.abs(got - want).max() <= 1e-5
