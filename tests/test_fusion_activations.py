"""GELU and activation fusions (patterns/gelu.py, patterns/activations.py) and the lowering of
ONNX activation ops: every form found, other constants left alone, outputs kept.

ONNX cases are written the way tf2onnx writes each form and compared with
onnxruntime; the Keras 3 model case with TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fusion_cases import (
    assert_matches_ort,
    calls,
    family_count,
    graph,
    keras_vs_tf,
    matches,
    node,
    optimized,
)
from torch import nn

from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables

SQRT_2_OVER_PI = 0.7978845834732056  # float32, as TF bakes it
SQRT_HALF = 0.7071067690849304
X = {"x": ["N", 8]}


def gelu_calls(module, approximate: str) -> int:
    found = 0
    for n in module.graph.nodes:
        if n.op == "call_function" and n.target is F.gelu:
            found += n.kwargs.get("approximate", "none") == approximate
        elif n.op == "call_module" and isinstance(module.get_submodule(n.target), nn.GELU):
            found += module.get_submodule(n.target).approximate == approximate
    return found


def _half_x(outer: str, p: str, half: float) -> tuple[list, dict]:
    """0.5 * x * p grouped three ways."""
    if outer == "half_x":
        nodes = [node("Mul", ["half", "x"], "hx"), node("Mul", ["hx", p], "y")]
    elif outer == "half_p":
        nodes = [node("Mul", [p, "half"], "hp"), node("Mul", ["x", "hp"], "y")]
    else:
        nodes = [node("Mul", ["x", p], "xp"), node("Mul", ["xp", "half"], "y")]
    return nodes, {"half": half}


def gelu_tanh_onnx(outer="half_x", cube="pow", cubic=0.044715, half=0.5, expose=None):
    if cube == "pow":
        cubed = [node("Pow", ["x", "three"], "x3")]
    elif cube == "mul":
        cubed = [node("Mul", ["x", "x"], "x2"), node("Mul", ["x2", "x"], "x3")]
    else:
        cubed = [node("Mul", ["x", "x"], "x2"), node("Mul", ["x", "x2"], "x3")]
    nodes = [
        *cubed,
        node("Mul", ["c", "x3"], "cx3"),
        node("Add", ["x", "cx3"], "inner"),
        node("Mul", ["k", "inner"], "arg"),
        node("Tanh", ["arg"], "t"),
        node("Add", ["one", "t"], "p"),
    ]
    outer_nodes, consts = _half_x(outer, "p", half)
    consts |= {"c": cubic, "k": SQRT_2_OVER_PI, "one": 1.0}
    if cube == "pow":
        consts["three"] = 3.0
    return graph(nodes + outer_nodes, X, ["y"] + ([expose] if expose else []), consts)


def gelu_erf_onnx(outer="half_x", term="mul", r=SQRT_HALF):
    if term == "mul":
        arg = [node("Mul", ["x", "r"], "arg")]
    elif term == "div":
        arg = [node("Div", ["x", "sqrt2"], "arg")]
    elif term == "erfc":
        arg = [node("Neg", ["x"], "nx"), node("Mul", ["nx", "r"], "arg")]
    else:
        arg = [node("Mul", ["x", "r"], "xr"), node("Neg", ["xr"], "arg")]
    combine = "Sub" if term.startswith("erfc") else "Add"
    nodes = [*arg, node("Erf", ["arg"], "e"), node(combine, ["one", "e"], "p")]
    outer_nodes, consts = _half_x(outer, "p", 0.5)
    consts |= {"one": 1.0}
    consts |= {"sqrt2": 1.4142135} if term == "div" else {"r": r}
    return graph(nodes + outer_nodes, X, ["y"], consts)


@pytest.mark.parametrize("outer", ["half_x", "half_p", "x_p"])
@pytest.mark.parametrize("cube", ["pow", "mul", "mul_r"])
def test_every_gelu_tanh_form_is_gelu_tanh(outer, cube):
    model = gelu_tanh_onnx(outer, cube)
    module = optimized(model)
    assert family_count(module, "gelu_tanh") == 1, matches(module)
    assert gelu_calls(module, "tanh") == 1 and gelu_calls(module, "none") == 0
    assert_matches_ort(module, model, scale=3.0)


@pytest.mark.parametrize("outer", ["half_x", "half_p", "x_p"])
@pytest.mark.parametrize("term", ["mul", "div", "erfc", "erfc_neg"])
def test_every_gelu_erf_form_is_exact_gelu(outer, term):
    model = gelu_erf_onnx(outer, term)
    module = optimized(model)
    assert family_count(module, "gelu_erf") == 1, matches(module)
    assert gelu_calls(module, "none") == 1 and gelu_calls(module, "tanh") == 0
    assert_matches_ort(module, model, scale=3.0)


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (lambda: gelu_tanh_onnx(cubic=0.0447), "cubic 0.0447"),
        (lambda: gelu_tanh_onnx(half=0.49), "half 0.49"),
        (lambda: gelu_erf_onnx(r=0.7), "erf scale 0.7"),
        (lambda: gelu_tanh_onnx(expose="t"), "tanh used outside"),
        (lambda: gelu_tanh_onnx(cube="mul", expose="x2"), "x*x used outside"),
    ],
)
def test_gelu_like_chains_that_are_not_gelu_are_left_alone(model, why):
    model = model()
    module = optimized(model)
    assert gelu_calls(module, "none") + gelu_calls(module, "tanh") == 0, why
    assert_matches_ort(module, model, scale=3.0)


# --------------------------------------------------------------------------- sigmoid family


def sigmoid_onnx(beta: float | None, sigmoid_first: bool = False):
    """x * sigmoid(beta * x); beta None: x * sigmoid(x)."""
    nodes, consts, arg = [], {}, "x"
    if beta is not None:
        nodes.append(node("Mul", ["beta", "x"], "bx"))
        consts["beta"] = beta
        arg = "bx"
    nodes.append(node("Sigmoid", [arg], "s"))
    nodes.append(node("Mul", ["s", "x"] if sigmoid_first else ["x", "s"], "y"))
    return graph(nodes, X, ["y"], consts)


@pytest.mark.parametrize(("beta", "first"), [(None, False), (None, True), (1.0, False)])
def test_swish_is_silu(beta, first):
    model = sigmoid_onnx(beta, first)
    module = optimized(model)
    assert calls(module, F.silu, nn.SiLU) == 1 and "sigmoid" not in module.code
    assert_matches_ort(module, model, scale=3.0)


@pytest.mark.parametrize("beta", [1.702, 1.701, 1.0001])
def test_quick_gelu_and_other_betas_stay_as_written(beta):
    """x * sigmoid(1.702 x) is quick-GELU: its own function, never GELU or SiLU."""
    model = sigmoid_onnx(beta)
    module = optimized(model)
    assert matches(module) == {}
    assert calls(module, F.silu, nn.SiLU) == 0 and gelu_calls(module, "none") == 0
    assert "torch.sigmoid" in module.code
    assert_matches_ort(module, model, scale=3.0)


def hard_onnx(kind: str, form: str = "mul", shift: float = 3.0, scale: float = 1 / 6):
    """Keras 3 hard_sigmoid / hard_swish: relu6(x + 3) * (1/6) (Clip(0, 6) for relu6)."""
    nodes = [node("Add", ["x", "three"], "a"), node("Clip", ["a", "lo", "hi"], "r6")]
    consts = {"three": shift, "lo": 0.0, "hi": 6.0}
    if form == "mul":
        nodes.append(node("Mul", ["r6", "sixth"], "hs"))
        consts["sixth"] = scale
    else:
        nodes.append(node("Div", ["r6", "six"], "hs"))
        consts["six"] = 1 / scale
    if kind == "swish":
        nodes.append(node("Mul", ["x", "hs"], "y"))
    return graph(nodes, X, ["y" if kind == "swish" else "hs"], consts)


@pytest.mark.parametrize("form", ["mul", "div"])
@pytest.mark.parametrize(
    ("kind", "target", "cls"),
    [("swish", F.hardswish, nn.Hardswish), ("sigmoid", F.hardsigmoid, nn.Hardsigmoid)],
)
def test_hard_swish_and_hard_sigmoid(kind, target, cls, form):
    model = hard_onnx(kind, form)
    module = optimized(model)
    assert calls(module, target, cls) == 1 and "relu6" not in module.code
    assert_matches_ort(module, model, scale=4.0)


@pytest.mark.parametrize(("shift", "scale"), [(2.5, 1 / 6), (3.0, 0.2)])
def test_hard_sigmoid_with_other_constants_is_left_alone(shift, scale):
    for kind in ("swish", "sigmoid"):
        model = hard_onnx(kind, shift=shift, scale=scale)
        module = optimized(model)
        assert calls(module, F.hardswish, nn.Hardswish) == 0
        assert calls(module, F.hardsigmoid, nn.Hardsigmoid) == 0
        assert_matches_ort(module, model, scale=4.0)


@pytest.mark.parametrize(("alpha", "beta", "torch_form"), [(1 / 6, 0.5, True), (0.2, 0.5, False)])
def test_onnx_hard_sigmoid_is_torch_s_only_with_torch_s_constants(alpha, beta, torch_form):
    model = graph([node("HardSigmoid", ["x"], "y", alpha=alpha, beta=beta)], X, ["y"], {})
    module = optimized(model)
    assert (calls(module, F.hardsigmoid, nn.Hardsigmoid) == 1) == torch_form
    assert ("clamp" in module.code) != torch_form
    assert_matches_ort(module, model, scale=4.0)


def test_mish_is_mish():
    model = graph(
        [
            node("Softplus", ["x"], "sp"),
            node("Tanh", ["sp"], "t"),
            node("Mul", ["x", "t"], "y"),
        ],
        X,
        ["y"],
        {},
    )
    module = optimized(model)
    assert calls(module, F.mish, nn.Mish) == 1
    assert_matches_ort(module, model, scale=3.0)


@pytest.mark.parametrize(
    ("op", "attrs", "target"),
    [
        ("Elu", {"alpha": 0.5}, F.elu),
        ("Elu", {}, F.elu),
        ("Selu", {}, F.selu),
        ("Softplus", {}, F.softplus),
        ("Softsign", {}, F.softsign),
        ("LeakyRelu", {"alpha": 0.1}, F.leaky_relu),
    ],
)
def test_onnx_activation_ops_lower_to_their_functions(op, attrs, target):
    model = graph([node(op, ["x"], "y", **attrs)], X, ["y"], {})
    module = optimized(model)
    assert calls(module, target) == 1
    assert all(n.op != "call_module" for n in module.graph.nodes)
    assert_matches_ort(module, model, scale=5.0)


@pytest.mark.parametrize(("lo", "hi", "relu6"), [(0.0, 6.0, True), (0.0, 5.0, False)])
def test_clip_is_relu6_only_between_0_and_6(lo, hi, relu6):
    model = graph([node("Clip", ["x", "lo", "hi"], "y")], X, ["y"], {"lo": lo, "hi": hi})
    module = optimized(model)
    assert (calls(module, F.relu6, nn.ReLU6) == 1) == relu6
    assert_matches_ort(module, model, scale=5.0)


# --------------------------------------------------------------------------- Keras 3 model


def test_keras3_activations():
    import_tensorflow()
    import keras

    inp = keras.Input((6, 8))
    h = keras.layers.Dense(8)(inp)
    names = ["swish", "hard_swish", "elu", "selu", "leaky_relu", "relu6", "softplus", "mish"]
    outs = [keras.layers.Activation(a)(h) for a in names]
    outs.append(keras.layers.Lambda(lambda t: keras.activations.gelu(t, approximate=True))(h))
    outs.append(keras.layers.Lambda(lambda t: keras.activations.gelu(t, approximate=False))(h))
    model = keras.Model(inp, outs)
    randomize_variables(model, 0)
    x = (np.random.default_rng(3).standard_normal((3, 6, 8)) * 3).astype(np.float32)
    module, diff = keras_vs_tf(model, [x])
    assert gelu_calls(module, "tanh") == 1 and gelu_calls(module, "none") == 1
    for target, cls in [
        (F.silu, nn.SiLU),
        (F.hardswish, nn.Hardswish),
        (F.elu, None),
        (F.selu, None),
        (F.leaky_relu, None),
        (F.relu6, nn.ReLU6),
        (F.mish, nn.Mish),
    ]:
        assert calls(module, target, cls) == 1, target
    assert calls(module, F.softplus) == 1  # the softplus activation; mish's went into F.mish
    modules = {
        type(module.get_submodule(n.target)) for n in module.graph.nodes if n.op == "call_module"
    }
    assert modules <= {nn.Linear, nn.SiLU, nn.Hardswish, nn.ReLU6, nn.Mish, nn.GELU}, modules
    assert math.isfinite(diff) and diff <= 1e-5


# --------------------------------------------------------------------------- tanh GELU by analysis


def gelu_fast_onnx(k=SQRT_2_OVER_PI, c=0.044714998, square=0.0, other=None, expose=None):
    """HF gelu_fast as TF exports it: 0.5 x (1 + tanh((x * k) * (1 + (c * x) * x)));
    ``square`` adds square * x * x to the tanh argument, ``other`` reads (c * other) * x."""
    nodes = [
        node("Mul", ["c", other or "x"], "cx"),
        node("Mul", ["cx", "x"], "cxx"),
        node("Add", ["one", "cxx"], "poly"),
    ]
    if square:
        nodes += [node("Mul", ["x", "x"], "xx"), node("Mul", ["sq", "xx"], "sqxx")]
        nodes += [node("Add", ["poly", "sqxx"], "poly2")]
    nodes += [
        node("Mul", ["x", "k"], "xk"),
        node("Mul", ["xk", "poly2" if square else "poly"], "arg"),
        node("Tanh", ["arg"], "t"),
        node("Add", ["one", "t"], "p"),
    ]
    outer_nodes, consts = _half_x("half_x", "p", 0.5)
    consts |= {"c": c, "k": k, "one": 1.0, "sq": square}
    inputs = {**X, "z": ["N", 8]} if other else X
    return graph(nodes + outer_nodes, inputs, ["y"] + ([expose] if expose else []), consts)


def test_gelu_fast_grouping_is_gelu_tanh():
    model = gelu_fast_onnx()
    module = optimized(model)
    assert family_count(module, "gelu_tanh_poly") == 1, matches(module)
    assert gelu_calls(module, "tanh") == 1 and calls(module, torch.tanh) == 0
    assert_matches_ort(module, model, scale=3.0)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        (dict(c=0.0447), "cubic coefficient 0.0447"),
        (dict(k=0.7978), "linear coefficient 0.7978"),
        (dict(square=1e-3), "an x^2 term"),
        (dict(other="z"), "another input in the argument"),
        (dict(expose="cxx"), "a node of the argument used outside"),
    ],
)
def test_tanh_chains_that_are_not_gelu_polynomials_are_left_alone(kwargs, why):
    model = gelu_fast_onnx(**kwargs)
    module = optimized(model)
    assert gelu_calls(module, "none") + gelu_calls(module, "tanh") == 0, why
    assert_matches_ort(module, model, scale=3.0)
