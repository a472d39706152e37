"""Counting parameters like TF: value matching through any axis order, and the redundant LSTM bias.

`fxsurgeon/params/tf_match.py` matches a weight constant that the variable map
does not know to a TF variable by value, through any axis permutation and a
reshape (tf2onnx folds an Einsum's kernel transpose; the lowering names a
Conv's weight after its module). `fxsurgeon/params/dataflow.py` makes an
all-zero ``b_hh`` of an LSTM/RNN structural (it enters only summed with
``b_ih``), never a GRU's. Both sides of each rule are held here.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
from torch import fx

import fxsurgeon
from fxsurgeon.params.dataflow import structural_reason
from fxsurgeon.params.records import _Use
from fxsurgeon.params.tf_match import PermutedOrigin, _tf_values, complete_variable_map
from fxsurgeon.pipeline import report_of
from fxsurgeon.source import InitializerOrigin, TFVariable

# --------------------------------------------------------------------------- value matching


class _Source:
    """What `complete_variable_map` reads of a source: the TF model's variables and values."""

    def __init__(self, values: dict[str, torch.Tensor]):
        self.tf_variables = tuple(
            TFVariable(name, tuple(v.shape), True) for name, v in values.items()
        )
        self.tf_model = type("Model", (), {"variables": [_Var(n, v) for n, v in values.items()]})()


def _source(values: dict[str, torch.Tensor]) -> tuple:
    """(source, its TF values): `complete_variable_map`'s last two arguments."""
    source = _Source(values)
    return source, _tf_values(source)


class _Var:
    def __init__(self, name: str, value: torch.Tensor):
        self.name, self.path, self._value = name, name, value

    def numpy(self):
        return self._value.numpy()


def _use(initializer: str, value: torch.Tensor) -> _Use:
    graph = fx.Graph()
    node = graph.get_attr(initializer)
    return _Use(node, node, tuple(range(value.dim())), value, tuple(value.shape), initializer, "")


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_a_constant_the_map_misses_is_matched_through_any_axis_order_and_reshape():
    kernel = _random(12, 2, 6)  # a MultiHeadAttention query kernel [d, heads, k]
    folded = kernel.permute(1, 2, 0).reshape(12, 12).contiguous()  # tf2onnx's Gemm operand
    completed = complete_variable_map(
        [_use("const_fold_opt__1", folded)], {}, *_source({"mha/query/kernel": kernel})
    )
    (origin,) = completed["const_fold_opt__1"]
    assert isinstance(origin, PermutedOrigin) and origin.variable.name == "mha/query/kernel"
    assert origin.perm == (1, 2, 0)
    assert np.array_equal(origin.to_tf(folded.numpy()), kernel.numpy())
    assert np.array_equal(origin.from_tf(kernel.numpy(), (12, 12)), folded.numpy())


def test_unmatched_values_and_repeated_values_stay_unmatched():
    kernel = _random(3, 4)
    zeros = torch.zeros(3, 4)
    other = _random(4, 3, seed=1)
    shuffled = kernel.reshape(-1)[torch.randperm(12, generator=torch.Generator().manual_seed(2))]
    source = _source({"a/kernel": kernel, "a/bias": zeros})
    uses = [
        _use("zeros", torch.zeros(4, 3)),  # equal to a fresh bias in any order: says nothing
        _use("other", other),
        _use("shuffled", shuffled.reshape(4, 3)),  # same elements, in no axis order
    ]
    assert complete_variable_map(uses, {}, *source) == {}
    assert complete_variable_map(uses, None, *source) is None  # no TF model, no map


def test_a_variable_no_initializer_holds_is_preferred_and_known_initializers_are_kept():
    value = _random(2, 3)
    source = _source({"held/kernel": value, "free/kernel": value.clone()})
    known = {"init": [InitializerOrigin(source[0].tf_variables[0], "same")]}
    completed = complete_variable_map(
        [_use("init", value), _use("renamed.weight", value.t().contiguous())], known, *source
    )
    assert completed["init"] == known["init"]
    assert [o.variable.name for o in completed["renamed.weight"]] == ["free/kernel"]


def _keras():
    fxsurgeon._compat.import_tensorflow()
    import keras

    return keras


def _door_a(model):
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    return fxsurgeon.optimize(from_onnx(export_onnx(model), tf_model=model))


def _trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_a_conv_in_a_model_whose_name_holds_a_dot_keeps_its_kernel():
    """keras.applications names MobileNet ``mobilenet_1.00_224``: the dot splits onnx2torch's
    module path, so the lowered Conv weight carries no initializer name the map knows."""
    keras = _keras()
    x = keras.Input((6, 6, 3), name="image")
    h = keras.layers.Conv2D(4, 3, name="conv1")(x)
    y = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(x, y, name="net_1.00_6")
    fxsurgeon.examples.randomize_variables(model, seed=3)
    module = _door_a(model)
    assert report_of(module).trainable_after == _trainable(model)
    image = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(image)).numpy()
    assert np.abs(got - model(image).numpy()).max() <= 1e-5


def test_multi_head_attention_kernels_folded_by_tf2onnx_come_back_with_their_values():
    keras = _keras()
    query = keras.Input((5, 12), name="query")
    context = keras.Input((4, 10), name="context")
    h = keras.layers.MultiHeadAttention(2, key_dim=6, value_dim=4, name="mha")(query, context)
    model = keras.Model([query, context], h, name="cross")
    fxsurgeon.examples.randomize_variables(model, seed=5)
    module = _door_a(model)
    origins = fxsurgeon.params.parameter_origins(module)
    by_tf = {o.tf_name: (name, o) for name, o in origins.items()}
    tf_values = {v.path: v.numpy() for v in model.variables}
    for projection in ("query", "key", "value"):
        name, origin = by_tf[f"mha/{projection}/kernel"]
        assert origin.trainable, name
        kernel = torch.from_numpy(tf_values[origin.tf_name])  # [d, heads, k]
        stored = module.get_parameter(name).detach()  # a Linear weight [heads * k, d]
        assert torch.equal(stored.reshape(-1), kernel.permute(1, 2, 0).reshape(-1)), name
    assert report_of(module).trainable_after == _trainable(model)


# --------------------------------------------------------------------------- the LSTM's b_hh


def _recurrence(target, position: int, hx) -> fx.Node:
    """A get_attr read at `position` of the params list of ``target(x, hx, params, True, ...)``."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    weights = [graph.get_attr(f"w{i}") for i in range(4)]
    state = graph.placeholder("h") if hx == "tensor" else (graph.placeholder("h"),) * 2
    graph.output(graph.call_function(target, (x, state, weights, True, 1, 0.0, False, False, True)))
    return weights[position]


@pytest.mark.parametrize("target", [torch.lstm, torch.rnn_tanh])
def test_the_zero_hidden_bias_of_an_lstm_or_rnn_is_structural(target):
    hx = "tuple" if target is torch.lstm else "tensor"
    reason = structural_reason(torch.zeros(8), _recurrence(target, 3, hx))
    assert reason is not None and "b_hh" in reason
    # must count: a learned b_hh (a PyTorch-born LSTM), a zero b_ih (a fresh Keras layer)
    assert structural_reason(_random(8), _recurrence(target, 3, hx)) is None
    assert structural_reason(torch.zeros(8), _recurrence(target, 2, hx)) is None


def test_the_zero_hidden_bias_of_a_gru_counts():
    """A GRU's b_hn is multiplied by the reset gate: not a redundant addend."""
    assert structural_reason(torch.zeros(8), _recurrence(torch.gru, 3, "tensor")) is None


@pytest.mark.parametrize(
    ("kind", "bidirectional"), [("LSTM", True), ("SimpleRNN", False), ("GRU", False)]
)
def test_a_recurrence_without_the_tf_model_counts_like_tf(kind, bidirectional):
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    keras = _keras()
    ids = keras.Input((5, 3), name="x")
    layer = getattr(keras.layers, kind)(4, name="rnn")
    if bidirectional:
        layer = keras.layers.Bidirectional(layer, name="bi")
    y = keras.layers.Dense(2, name="head")(layer(ids))
    model = keras.Model(ids, y, name=f"bi_{kind.lower()}")
    fxsurgeon.examples.randomize_variables(model, seed=7)
    module = fxsurgeon.optimize(from_onnx(export_onnx(model)))
    assert report_of(module).trainable_after == _trainable(model)
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - model(x).numpy()).max() <= 1e-5


# --------------------------------------------------------------------------- sinusoid tables, bounds


def _positions(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angles = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return angles.sin(), angles.cos()


def _gathered_table():
    graph = fx.Graph()
    ids = graph.placeholder("ids")
    table = graph.get_attr("table")
    graph.output(graph.call_function(torch.nn.functional.embedding, (ids, table)))
    return table


def test_sinusoid_tables_and_clamp_bounds_are_structural():
    sin, cos = _positions(64, 4)
    rotary = torch.cat([sin, cos], dim=-1)  # GPT-J's embed_positions
    interleaved = torch.stack([sin, cos], dim=-1).reshape(1, 64, 4)  # Transformer's PE
    bounds = torch.tensor([1e9, 1e9, -1e9, -1e9])  # tf2onnx's slice clamp
    for value, why in ((rotary, "sinusoid"), (interleaved, "sinusoid"), (bounds, "1e4")):
        reason = structural_reason(value, _gathered_table())
        assert reason is not None and why in reason, reason


def test_tables_that_only_look_like_sinusoids_are_weights():
    sin, cos = _positions(64, 4)
    noisy = torch.cat([sin, cos], dim=-1) + 1e-2 * _random(64, 4)  # a table trained from one
    noisy[0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    random = torch.rand(64, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    random[0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    ones = torch.ones(64, 4)  # a fresh layer's ones
    mixed = torch.tensor([1e9, 1e9, -1e9, 3.0])  # one ordinary value: no bound
    for value in (noisy, random, ones, mixed):
        assert structural_reason(value, _gathered_table()) is None


# --------------------------------------------------------------------------- one-element variables


def test_a_dense_1_bias_written_as_a_literal_comes_back_as_a_parameter():
    keras = _keras()
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(4, activation="relu", name="trunk")(x)
    y = keras.layers.Dense(1, activation="sigmoid", name="score")(h)
    model = keras.Model(x, y, name="scorer")
    fxsurgeon.examples.randomize_variables(model, seed=9)
    module = _door_a(model)
    assert report_of(module).trainable_after == _trainable(model)
    bias = model.get_layer("score").bias.numpy()
    (name,) = [
        n
        for n, o in fxsurgeon.params.parameter_origins(module).items()
        if o.tf_name == "score/bias"
    ]
    assert torch.equal(module.get_parameter(name).detach(), torch.from_numpy(bias))
    data = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    out = module(torch.from_numpy(data))
    assert np.abs(out.detach().numpy() - model(data).numpy()).max() <= 1e-5
    out.sum().backward()
    assert module.get_parameter(name).grad is not None


def _literal_graph(scope: str, number: float):
    """``x * number`` (an ONNX node in `scope`) and ``layer_norm(x, eps=number)``."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    mul = graph.call_function(operator.mul, (x, number))
    mul.meta["fxsurgeon.onnx_node"] = f"{scope}/Mul"
    norm = graph.call_function(torch.nn.functional.layer_norm, (mul, (4,), None, None, number))
    norm.meta["fxsurgeon.onnx_node"] = "head/LayerNorm"
    graph.output(norm)
    return fx.GraphModule(torch.nn.Module(), graph)


def _literal_source(value: torch.Tensor, trainable: bool = True):
    source = _Source({"head/scale": value})
    source.tf_variables = (TFVariable("head/scale", tuple(value.shape), trainable),)
    return source


@pytest.mark.parametrize(
    ("scope", "trainable", "restored"),
    [("head", True, True), ("body", True, False), ("head", False, False)],
)
def test_a_literal_is_restored_only_in_its_layer_for_a_trainable_variable(
    scope, trainable, restored
):
    from fxsurgeon.params.literals import restore_literals
    from fxsurgeon.params.records import ParameterReport
    from fxsurgeon.params.tf_match import _tf_values

    value = torch.tensor([0.37])
    gm = _literal_graph(scope, float(value))
    source = _literal_source(value, trainable)
    report = ParameterReport()
    restore_literals(gm, source, report, _tf_values(source))
    gm.recompile()
    numbers = [a for n in gm.graph.nodes for a in n.args if type(a) is float]
    assert len(numbers) == (1 if restored else 2)  # the layer_norm eps is never a variable
    assert bool(report.origins) is restored
    x = torch.randn(2, 4)
    want = torch.nn.functional.layer_norm(x * float(value), (4,), eps=float(value))
    assert torch.equal(gm(x), want)


def _read_in(scope: str, value: torch.Tensor, initializer: str = "gamma") -> _Use:
    """A read of `initializer` by a layer_norm (as its weight) in `scope`."""
    graph = fx.Graph()
    node = graph.get_attr(initializer)
    x = graph.placeholder("x")
    graph.call_function(torch.nn.functional.layer_norm, (x, (4,), node))
    shape = tuple(value.shape)
    return _Use(node, node, tuple(range(value.dim())), value, shape, initializer, scope)


def test_reads_in_a_layer_and_in_a_scope_nested_in_it_are_one_parameter():
    """ALBERT applies its one LayerNorm twice: tf2onnx's fused reads are scoped
    ``LayerNorm`` and ``LayerNorm/batchnorm_1``, one layer; ``dense_a`` and ``dense_b``
    reading equal values with the same role are two (tf2onnx merged equal variables)."""
    from fxsurgeon.params.ties import _tie_groups

    gamma = _random(4)
    nested = [
        _read_in("m/layer/LayerNorm", gamma),
        _read_in("m/layer/LayerNorm/batchnorm_1", gamma),
    ]
    keys = _tie_groups(nested)
    assert len({keys[id(u)] for u in nested}) == 1
    apart = [_read_in("m/dense_a", gamma), _read_in("m/dense_b", gamma)]
    keys = _tie_groups(apart)
    assert len({keys[id(u)] for u in apart}) == 2
    three = [*apart, _read_in("m/dense_a/inner", gamma)]
    keys = _tie_groups(three)
    assert keys[id(three[0])] == keys[id(three[2])] != keys[id(three[1])]
