"""Inference BatchNorm fusion (patterns/batch_norm.py): the arithmetic Keras 3 exports is one
F.batch_norm on the channel axis, its gamma/beta parameters and its statistics buffers.

ONNX cases are written the way tf2onnx writes each form (onnx.helper) and
compared with onnxruntime; the Keras 3 models (the zoo CNN, a small model with
BatchNormalization(axis=1) and center/scale off) with TensorFlow, with and
without the TF model.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zoo
from fusion_cases import assert_matches_ort, calls, family_count, graph, matches, node, rng

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.fuse import PATTERNS_KEY
from fxsurgeon.nn import KerasBatchNorm
from fxsurgeon.params import TF_NAMES_KEY
from fxsurgeon.tensorflow import export_onnx, from_onnx

FORMS = ("tf", "tf0", "neg0", "k3", "centred", "centred0")
WITH_BETA = ("tf", "k3", "centred")


def optimized(model):
    """optimize with every rewrite checked against the graph it replaces (1e-5)."""
    return fxsurgeon.optimize(from_onnx(model), verify="per_rule")


def batch_norms(module) -> int:
    return calls(module, F.batch_norm, KerasBatchNorm)


def _inv_std(nodes: list, inv: str) -> None:
    """r = 1 / sqrt(var + eps) as tf2onnx writes Rsqrt (Sqrt + Reciprocal), or as Div / Pow."""
    nodes.append(node("Add", ["var", "eps"], "ve"))
    if inv == "pow":
        nodes.append(node("Pow", ["ve", "minus_half"], "r"))
        return
    nodes.append(node("Sqrt", ["ve"], "std"))
    if inv == "recip":
        nodes.append(node("Reciprocal", ["std"], "r"))
    else:
        nodes.append(node("Div", ["one", "std"], "r"))


def _combine(nodes: list, form: str, x: str = "x", shift_scale: str = "s") -> None:
    """y from x, s, mean (and beta) in one of FORMS."""
    if form.startswith("centred"):
        nodes += [
            node("Sub", [x, "mean"], "d"),
            node("Mul", ["d", "s"], "ds" if form == "centred" else "y"),
        ]
        if form == "centred":
            nodes.append(node("Add", ["ds", "beta"], "y"))
        return
    nodes.append(node("Mul", [x, "s"], "xs"))
    if form == "tf":
        nodes += [
            node("Mul", ["mean", shift_scale], "ms"),
            node("Sub", ["beta", "ms"], "shift"),
        ]
    elif form == "neg0":
        nodes += [node("Mul", ["mean", shift_scale], "ms"), node("Neg", ["ms"], "shift")]
    else:
        nodes += [
            node("Neg", ["mean"], "nm"),
            node("Mul", ["nm", shift_scale], "shift" if form == "tf0" else "ms"),
        ]
        if form == "k3":
            nodes.append(node("Add", ["ms", "beta"], "shift"))
    nodes.append(node("Add", ["xs", "shift"], "y"))


def statistics(shape, gamma: bool = True, beta: bool = True) -> dict:
    consts = {
        "mean": rng.standard_normal(shape) * 0.5,
        "var": rng.uniform(0.5, 2.0, shape),
        "eps": 1e-3,
        "one": 1.0,
        "minus_half": -0.5,
    }
    if gamma:
        consts["gamma"] = 1 + 0.2 * rng.standard_normal(shape)
    if beta:
        consts["beta"] = rng.standard_normal(shape) * 0.5
    return consts


def bn_onnx(
    form: str = "tf",
    inv: str = "recip",
    x_shape=("N", 5, 6, 4),
    stat_shape=(4,),
    gamma: bool = True,
    swap: bool = False,
    expose: str | None = None,
):
    """BatchNorm of x in `form`; the statistics of `stat_shape` pick the channel axis."""
    nodes: list = []
    _inv_std(nodes, inv)
    if gamma:
        nodes.append(node("Mul", ["gamma", "r"] if swap else ["r", "gamma"], "s"))
    else:
        nodes.append(node("Identity", ["r"], "s"))
    _combine(nodes, form)
    consts = statistics(stat_shape, gamma, form in WITH_BETA)
    outputs = ["y"] + ([expose] if expose else [])
    return graph(nodes, {"x": list(x_shape)}, outputs, consts)


def assert_one_batch_norm(module, model, trainable: int) -> None:
    assert family_count(module, "batch_norm") == 1, matches(module)
    assert batch_norms(module) == 1
    assert "sqrt" not in module.code and "reciprocal" not in module.code
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == trainable
    buffers = {n.rsplit(".", 1)[-1] for n, _ in module.named_buffers()}
    assert {"running_mean", "running_var"} <= buffers
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- every form


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("inv", ["recip", "div", "pow"])
@pytest.mark.parametrize("gamma", [True, False])
def test_every_batch_norm_form_is_one_batch_norm(form, inv, gamma):
    """Channels-last x [N, 5, 6, 4], statistics [4]: gamma and beta (if any) are the only
    trainable tensors, the mean and variance buffers."""
    model = bn_onnx(form, inv, gamma=gamma)
    module = optimized(model)
    assert_one_batch_norm(module, model, 4 * gamma + 4 * (form in WITH_BETA))


def test_gamma_on_either_side_of_the_product():
    model = bn_onnx("tf", swap=True)
    assert_one_batch_norm(optimized(model), model, 8)


@pytest.mark.parametrize(
    ("x_shape", "stat_shape"),
    [
        (("N", 4, 5, 6), (1, 4, 1, 1)),  # NCHW, as Keras writes axis=1
        (("N", 4, 5, 6), (4, 1, 1)),
        (("N", 5, 4), (4,)),  # channels last, 3-D
        (("N", 4, 5), (4, 1)),  # channels first, 3-D
        (("N", 4), (4,)),  # a Dense output
        (("N", 5, 4, 6), (4, 1)),  # a middle axis
    ],
)
def test_the_statistics_pick_the_channel_axis(x_shape, stat_shape):
    model = bn_onnx("tf", x_shape=x_shape, stat_shape=stat_shape)
    module = optimized(model)
    assert_one_batch_norm(module, model, 8)
    stored = {n: tuple(b.shape) for n, b in module.named_buffers() if "running" in n}
    assert set(stored.values()) == {(4,)}, stored


def test_channels_last_moves_the_channels_to_dim_1_and_back():
    module = optimized(bn_onnx("tf"))
    permutes = [n.args[1] for n in module.graph.nodes if n.target is torch.permute]
    assert permutes == [(0, 3, 1, 2), (0, 2, 3, 1)]


def test_nchw_needs_no_permute():
    module = optimized(bn_onnx("tf", x_shape=("N", 4, 5, 6), stat_shape=(1, 4, 1, 1)))
    assert not [n for n in module.graph.nodes if n.target is torch.permute]


# --------------------------------------------------------------------------- refusals


def _variance_not_under_the_sqrt():
    nodes = [
        node("Add", ["var", "eps"], "ve"),
        node("Reciprocal", ["ve"], "r"),
        node("Mul", ["r", "gamma"], "s"),
    ]
    _combine(nodes, "tf")
    return graph(nodes, {"x": ["N", 5, 6, 4]}, ["y"], statistics((4,)))


def _mean_and_variance_swapped_in_the_shift():
    """x * g/sqrt(v + eps) + (b - m * g/sqrt(m + eps)): the shift's scale is another one."""
    nodes: list = []
    _inv_std(nodes, "recip")
    nodes += [
        node("Mul", ["r", "gamma"], "s"),
        node("Add", ["mean", "eps"], "me"),
        node("Sqrt", ["me"], "mstd"),
        node("Reciprocal", ["mstd"], "mr"),
        node("Mul", ["mr", "gamma"], "s2"),
    ]
    _combine(nodes, "tf", shift_scale="s2")
    consts = statistics((4,))
    consts["mean"] = rng.uniform(0.5, 2.0, (4,))  # positive: sqrt(mean + eps) is defined
    return graph(nodes, {"x": ["N", 5, 6, 4]}, ["y"], consts)


def _shift_without_the_std():
    """x * s + (b - m * gamma): the mean is not divided by the std."""
    nodes: list = []
    _inv_std(nodes, "recip")
    nodes.append(node("Mul", ["r", "gamma"], "s"))
    _combine(nodes, "tf", shift_scale="gamma")
    return graph(nodes, {"x": ["N", 5, 6, 4]}, ["y"], statistics((4,)))


def _computed_gamma():
    """gamma is an input of the graph, not a stored constant."""
    nodes: list = []
    _inv_std(nodes, "recip")
    nodes.append(node("Mul", ["r", "g"], "s"))
    _combine(nodes, "tf")
    consts = statistics((4,), gamma=False)
    return graph(nodes, {"x": ["N", 5, 6, 4], "g": [4]}, ["y"], consts)


def _computed_mean():
    """The mean of x itself (ReduceMean): a normalization over data, not stored statistics."""
    nodes = [node("ReduceMean", ["x"], "mean", axes=[0, 1, 2], keepdims=1)]
    _inv_std(nodes, "recip")
    nodes.append(node("Mul", ["r", "gamma"], "s"))
    _combine(nodes, "tf")
    consts = statistics((4,))
    del consts["mean"]
    return graph(nodes, {"x": ["N", 5, 6, 4]}, ["y"], consts)


def _gamma_of_another_shape():
    """gamma [1, 1, 1, 4], the rest [4]: the same broadcast, but not one shape."""
    nodes: list = []
    _inv_std(nodes, "recip")
    nodes.append(node("Mul", ["r", "gamma"], "s"))
    _combine(nodes, "tf")
    consts = statistics((4,))
    consts["gamma"] = consts["gamma"].reshape(1, 1, 1, 4)
    return graph(nodes, {"x": ["N", 5, 6, 4]}, ["y"], consts)


REFUSED = {
    # case: (model, why a rule declined it: the check's reason, or None where no pattern fits)
    "variance not under the sqrt": (_variance_not_under_the_sqrt, None),
    "mean and variance swapped in the shift's scale": (
        _mean_and_variance_swapped_in_the_shift,
        None,
    ),
    "the shift's mean not divided by the std": (_shift_without_the_std, None),
    "a non-constant gamma": (_computed_gamma, "gamma is not a stored constant"),
    "a computed mean": (_computed_mean, "mean is not a stored constant"),
    "statistics over two axes": (
        functools.partial(bn_onnx, stat_shape=(6, 4)),
        "broadcast onto 2 axes",
    ),
    "statistics over two axes, one of them the batch": (
        functools.partial(bn_onnx, x_shape=(3, 5, 6, 4), stat_shape=(3, 1, 1, 4)),
        "broadcast onto 2 axes",
    ),
    "statistics that widen x": (
        functools.partial(bn_onnx, x_shape=("N", 5, 6, 1), stat_shape=(4,)),
        "hold 4 channels, x (None, 5, 6, 1) has 1 on axis 3",
    ),
    "statistics of more dims than x": (
        functools.partial(bn_onnx, x_shape=("N", 4), stat_shape=(1, 1, 4)),
        "have more dims than x",
    ),
    "statistics of different shapes": (_gamma_of_another_shape, "the statistics differ in shape"),
    # one-element initializers are lowered to Python numbers: no constant to bind
    "one channel": (functools.partial(bn_onnx, x_shape=("N", 5, 6, 1), stat_shape=(1,)), None),
    "the scale used outside": (functools.partial(bn_onnx, expose="s"), None),
    "the shift used outside": (functools.partial(bn_onnx, expose="shift"), None),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_is_not_inference_batch_norm_is_left_alone(case):
    build, reason = REFUSED[case]
    model = build()
    module = fxsurgeon.optimize(from_onnx(model), debug_patterns=reason is not None)
    assert batch_norms(module) == 0, (case, matches(module))
    assert family_count(module, "batch_norm") == 0
    if reason is not None:
        assert reason in "\n".join(module.meta[PATTERNS_KEY].debug)
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- Keras 3 models


def _tf_diff(module, zoo_model, batch: int) -> float:
    inputs = zoo_model.make_inputs(batch, seed=batch)
    expected = zoo_model.tf_outputs(inputs)[0]
    with torch.no_grad():
        got = module(*(torch.from_numpy(v) for v in inputs.values()))
    return float(np.abs(got.numpy() - expected).max())


@functools.cache
def keras3_cnn_without_the_tf_model():
    return fxsurgeon.optimize(from_onnx(zoo.export("keras3_cnn")), verify="per_rule")


def test_keras3_cnn_without_the_tf_model_has_tfs_parameters_and_statistics_buffers():
    module = keras3_cnn_without_the_tf_model()
    zoo_model = zoo.build("keras3_cnn")
    assert matches(module).get("batch_norm_1") == 2, matches(module)
    assert batch_norms(module) == 2
    assert "sqrt" not in module.code
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == (
        zoo_model.trainable_params
    )
    stats = {n: tuple(b.shape) for n, b in module.named_buffers() if "running" in n}
    assert sorted(stats.values()) == [(8,), (8,), (12,), (12,)], stats
    for name, p in module.named_parameters():
        assert "running" not in name and p.requires_grad, name
    for batch in (1, 3):
        assert _tf_diff(module, zoo_model, batch) <= 1e-5


def test_keras3_cnn_with_the_tf_model_names_them_after_the_tf_variables():
    module = fxsurgeon.optimize(zoo.convert("keras3_cnn"))
    zoo_model = zoo.build("keras3_cnn")
    assert batch_norms(module) == 2
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == (
        zoo_model.trainable_params
    )
    origins = module.meta[TF_NAMES_KEY]
    expected = {"weight": "gamma", "bias": "beta"}
    expected |= {"running_mean": "moving_mean", "running_var": "moving_variance"}
    for layer in ("bn_1", "bn_2"):
        for attr, variable in expected.items():
            name = f"{layer}.{attr}"
            assert origins[name].tf_name.endswith(f"{layer}/{variable}"), origins[name]
            assert origins[name].trainable == (attr in ("weight", "bias"))
        assert isinstance(module.get_submodule(layer), KerasBatchNorm)
    for batch in (1, 3):
        assert _tf_diff(module, zoo_model, batch) <= 1e-5


def test_keras3_cnn_compiles_in_one_graph():
    module = keras3_cnn_without_the_tf_model()
    x = torch.from_numpy(zoo.build("keras3_cnn").make_inputs(2, seed=5)["image"])
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), rtol=0, atol=0)


@functools.cache
def keras3_variants():
    """BatchNormalization(axis=1) on an NCHW-like input, center=False, scale=False, neither."""
    import_tensorflow()
    import keras

    chw = keras.Input((4, 5, 6), name="chw")
    hwc = keras.Input((5, 6, 4), name="hwc")
    outs = [
        keras.layers.BatchNormalization(axis=1, name="bn_axis1")(chw),
        keras.layers.BatchNormalization(center=False, name="bn_no_beta")(hwc),
        keras.layers.BatchNormalization(scale=False, name="bn_no_gamma")(hwc),
        keras.layers.BatchNormalization(center=False, scale=False, name="bn_no_affine")(hwc),
    ]
    model = keras.Model([chw, hwc], outs)
    randomize_variables(model, 3)
    return model, export_onnx(model)


@pytest.mark.parametrize("with_tf_model", [True, False])
def test_keras3_batch_norm_variants(with_tf_model, tmp_path):
    """Each a KerasBatchNorm (center=False: bias=False; neither: affine=False) but scale=False,
    a beta without gamma, which no torch BatchNorm holds: that one stays F.batch_norm."""
    model, proto = keras3_variants()
    module = fxsurgeon.optimize(
        from_onnx(proto, tf_model=model if with_tf_model else None), verify="per_rule"
    )
    assert batch_norms(module) == 4, matches(module)
    assert calls(module, F.batch_norm) == 1
    assert "sqrt" not in module.code
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == trainable == 16
    stats = [n for n, _ in module.named_buffers() if "running" in n]
    assert len(stats) == 8, stats
    gen = np.random.default_rng(4)
    for batch in (1, 3):
        inputs = [
            gen.standard_normal((batch, 4, 5, 6)).astype(np.float32),
            gen.standard_normal((batch, 5, 6, 4)).astype(np.float32),
        ]
        expected = model(inputs, training=False)
        with torch.no_grad():
            got = module(*(torch.from_numpy(i) for i in inputs))
        for g, e in zip(got, expected, strict=True):
            assert float(np.abs(g.numpy() - np.asarray(e)).max()) <= 1e-5
    fxsurgeon.save(module, tmp_path)  # model.py rebuilds each module, checked against `module`
    assert fxsurgeon.load(tmp_path).state_dict().keys() == module.state_dict().keys()
