"""Straight-through estimators (patterns/straight_through.py): tf2onnx drops the
``stop_gradient`` of ``y_hard - stop_gradient(y_soft) + y_soft``, so the graph says
``(h - s) + s`` and PyTorch's backward cancels s's gradient; the rule detaches the subtracted
s where h carries no gradient, and leaves the sum alone where it does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fusion_cases import assert_matches_ort, f32, graph, matches, node

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables
from fxsurgeon.tensorflow import export_onnx, from_onnx
from fxsurgeon.verify import verify

rng = np.random.default_rng(7)
W = f32(rng.standard_normal((5, 4)))
V = f32(rng.standard_normal((4, 3)))
U = f32(rng.standard_normal((5, 4)))

#: the ways to write h + s - s with two binary ops, as (ONNX nodes, rule)
FORMS = {
    "h - s + s": ([("Sub", ["h", "s"], "d"), ("Add", ["d", "s"], "y")], "straight_through_1"),
    "s + (h - s)": ([("Sub", ["h", "s"], "d"), ("Add", ["s", "d"], "y")], "straight_through_1"),
    "h + s - s": ([("Add", ["h", "s"], "d"), ("Sub", ["d", "s"], "y")], "straight_through_2"),
    "s - (s - h)": ([("Sub", ["s", "h"], "d"), ("Sub", ["s", "d"], "y")], "straight_through_3"),
}


def _hard_assignment(form: str, hard_from_weights: bool = False):
    """x (N, 6, 5) @ W -> softmax over axis 1 (s); h = one_hot(argmax(s, -1), 4) (or, as
    the refusal case, x @ U: a value that carries a gradient); y = the form; y @ V."""
    hard = (
        [node("MatMul", ["x", "U"], "h")]
        if hard_from_weights
        else [
            node("ArgMax", ["s"], "idx", axis=2, keepdims=0),
            node("OneHot", ["idx", "depth", "values"], "h", axis=-1),
        ]
    )
    sum_nodes = [node(op, ins, out) for op, ins, out in FORMS[form][0]]
    nodes = [
        node("MatMul", ["x", "W"], "logits"),
        node("Softmax", ["logits"], "s", axis=1),
        *hard,
        *sum_nodes,
        node("MatMul", ["y", "V"], "out"),
    ]
    consts = {"W": W, "V": V, "depth": np.array([4], np.int64), "values": f32([0.0, 1.0])}
    if hard_from_weights:
        consts["U"] = U
    return graph(nodes, {"x": ["N", 6, 5]}, ["out"], consts)


def _reference_grad(x: np.ndarray) -> np.ndarray:
    """d/dW of out.square().mean(), with s's gradient passed straight through h."""
    w = torch.tensor(W, requires_grad=True)
    s = torch.softmax(torch.from_numpy(x) @ w, 1)
    h = torch.nn.functional.one_hot(s.argmax(-1), 4).to(s.dtype)
    ((h - s.detach() + s) @ torch.from_numpy(V)).square().mean().backward()
    return w.grad.numpy()


def _grad_of(module, x: np.ndarray, shape: tuple) -> torch.Tensor:
    module.zero_grad(set_to_none=True)
    module(torch.from_numpy(x)).square().mean().backward()
    # x @ W becomes a Linear: its weight is W transposed
    (param,) = [p for p in module.parameters() if tuple(p.shape) in (shape, shape[::-1])]
    return param.grad if tuple(param.shape) == shape else param.grad.T


@pytest.mark.parametrize("form", list(FORMS))
def test_a_hard_assignment_passes_the_soft_gradient_through(form):
    model = _hard_assignment(form)
    module = fxsurgeon.optimize(from_onnx(model))
    assert matches(module).get(FORMS[form][1]) == 1
    assert_matches_ort(module, model)  # the value is the same
    assert module.code.count(".detach()") == 1  # only the subtracted s
    x = f32(rng.standard_normal((3, 6, 5)))
    grad = _grad_of(module, x, W.shape)
    assert grad.abs().max() > 1e-3
    np.testing.assert_allclose(grad.numpy(), _reference_grad(x), rtol=1e-5, atol=1e-7)


def test_without_the_rule_the_soft_gradient_cancels():
    module = fxsurgeon.optimize(
        from_onnx(_hard_assignment("h - s + s")), disable=["straight_through"]
    )
    grad = _grad_of(module, f32(rng.standard_normal((3, 6, 5))), W.shape)
    assert not grad.any()  # what the rule is for: exactly zero


def test_a_hard_term_that_carries_a_gradient_is_ambiguous_and_kept():
    model = _hard_assignment("h - s + s", hard_from_weights=True)
    module = fxsurgeon.optimize(from_onnx(model))
    assert not any(rule.startswith("straight_through") for rule in matches(module))
    assert not any(n.target == "detach" for n in module.graph.nodes)
    assert_matches_ort(module, model)


def test_quantisation_rounding_passes_the_gradient_of_its_input():
    """x + stop_gradient(round(x) - x): h = round(x) has a zero derivative."""
    nodes = [
        node("MatMul", ["x", "W"], "a"),
        node("Round", ["a"], "r"),
        node("Sub", ["r", "a"], "d"),
        node("Add", ["a", "d"], "y"),
        node("MatMul", ["y", "V"], "out"),
    ]
    model = graph(nodes, {"x": ["N", 6, 5]}, ["out"], {"W": W, "V": V})
    module = fxsurgeon.optimize(from_onnx(model))
    assert matches(module).get("straight_through_1") == 1
    assert_matches_ort(module, model)
    x = f32(rng.standard_normal((2, 6, 5)))
    w = torch.tensor(W, requires_grad=True)
    a = torch.from_numpy(x) @ w
    ((a + (torch.round(a) - a).detach()) @ torch.from_numpy(V)).square().mean().backward()
    np.testing.assert_allclose(_grad_of(module, x, W.shape).numpy(), w.grad.numpy(), rtol=1e-5)


def test_a_sum_of_two_different_tensors_is_not_a_straight_through():
    nodes = [
        node("MatMul", ["x", "W"], "s"),
        node("MatMul", ["x", "U"], "t"),
        node("Round", ["s"], "h"),
        node("Sub", ["h", "s"], "d"),
        node("Add", ["d", "t"], "out"),
    ]
    model = graph(nodes, {"x": ["N", 6, 5]}, ["out"], {"W": W, "U": U})
    module = fxsurgeon.optimize(from_onnx(model))
    assert not any(rule.startswith("straight_through") for rule in matches(module))


def test_keras_straight_through_gradients_match_tensorflow():
    """A real export: tf.stop_gradient is an Identity in the ONNX graph. Door A (the TF model
    in hand) detaches it from the export's record; door B (the file alone) reads the
    unambiguous form with the rule. Both give TF's gradients."""
    tf = import_tensorflow()
    import keras

    def hard_softmax(t):
        soft = tf.nn.softmax(t, axis=-2)
        hard = tf.one_hot(tf.argmax(soft, axis=-1), 4, dtype=soft.dtype)
        return hard - tf.stop_gradient(soft) + soft

    inp = keras.Input((6, 5))
    y = keras.layers.Lambda(hard_softmax)(keras.layers.Dense(4, name="logits")(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(y))
    randomize_variables(model, 0)
    proto = export_onnx(model)
    module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert not any(rule.startswith("straight_through") for rule in matches(module))
    assert module.code.count(".detach()") == 1  # the record's: no rule needed
    report = verify(module, model, gradients=True, gradient_dtype=torch.float32, batch_sizes=(3,))
    assert report.passed, report.table()
    first = next(g for g in report.gradients if g.parameter.endswith("logits.weight"))
    assert first.grad_max > 1e-3  # the first Dense learns through the hard assignment
    door_b = fxsurgeon.optimize(from_onnx(proto))
    assert matches(door_b).get("straight_through_1") == 1
    x = torch.from_numpy(f32(rng.standard_normal((3, 6, 5))))
    for m in (module, door_b):
        m.zero_grad(set_to_none=True)
        m(x).square().mean().backward()
    grads_a = [p.grad for p in module.parameters()]
    grads_b = [p.grad for p in door_b.parameters()]
    assert len(grads_a) == len(grads_b) == 4
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
