"""An If on two input lengths whose branches differ in shape, decided by an equality that
only a later op establishes (HF BLIP's text decoder: ``if len(ids) < len(mask)`` prepends
ones to the causal mask for a cache; the attention scores, later, broadcast the mask's
length with the ids'). The shape analysis learns the tie (`SymbolicShapes.learned_ties`,
a learning pass in which the If gives fresh sizes) and lowers again with the lengths tied
from the start: the predicate is then known and its branch is written inline. Nothing
later tying the lengths: the If is kept, as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from fxsurgeon.lower.control_flow import is_cond
from fxsurgeon.pipeline import report_of
from fxsurgeon.shapes.symbolic import InputSignature, SymbolicShapes
from tests.onnx_cases import assert_lowered, init, make_model, optimize_onnx, run_ort, tensor_info

F32, I64 = np.float32, np.int64


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def _branch(name: str, value: str, last: str):
    """Expand(value, [B, T, last]): the then branch ends in the mask's length, the else
    branch in the ids' (the shapes differ unless the two lengths are equal)."""
    nodes = [
        _node("Unsqueeze", ["B", "ax0"], [f"{name}_b"]),
        _node("Unsqueeze", ["T", "ax0"], [f"{name}_t"]),
        _node("Unsqueeze", [last, "ax0"], [f"{name}_l"]),
        _node("Concat", [f"{name}_b", f"{name}_t", f"{name}_l"], [f"{name}_shape"], axis=0),
        _node("Expand", [value, f"{name}_shape"], [f"{name}_out"]),
    ]
    return helper.make_graph(nodes, name, [], [tensor_info(f"{name}_out", F32, None)])


def length_if_model(tied_later: bool):
    """y = If(T < M, ones[B, T, M], twos[B, T, T]) * mask[:, None, :] (+ x[:, None, :] when
    `tied_later`: only that Add says M == T)."""
    nodes = [
        _node("Shape", ["x"], ["sx"]),
        _node("Shape", ["mask"], ["sm"]),
        _node("Gather", ["sx", "zero_i"], ["B"], axis=0),
        _node("Gather", ["sx", "one_i"], ["T"], axis=0),
        _node("Gather", ["sm", "one_i"], ["M"], axis=0),
        _node("Less", ["T", "M"], ["p"]),
        _node(
            "If",
            ["p"],
            ["causal"],
            then_branch=_branch("then", "one_f", "M"),
            else_branch=_branch("else", "two_f", "T"),
        ),
        _node("Unsqueeze", ["mask", "ax1"], ["mask3"]),
        _node("Mul", ["causal", "mask3"], ["masked"] if tied_later else ["y"]),
    ]
    if tied_later:
        nodes += [_node("Unsqueeze", ["x", "ax1"], ["x3"]), _node("Add", ["masked", "x3"], ["y"])]
    inits = [
        init("ax0", np.array([0], I64)),
        init("ax1", np.array([1], I64)),
        init("zero_i", np.array(0, I64)),
        init("one_i", np.array(1, I64)),
        init("one_f", np.array(1.0, F32)),
        init("two_f", np.array(2.0, F32)),
    ]
    return make_model(
        nodes,
        [tensor_info("x", F32, ["B", "T"]), tensor_info("mask", F32, ["B", "M"])],
        [tensor_info("y", F32, ["B", "T", "L"])],
        inits,
    )


def _run(module, model, b: int, t: int, m: int):
    rng = np.random.default_rng(b * 100 + t * 10 + m)
    x, mask = (rng.standard_normal(s).astype(F32) for s in ((b, t), (b, m)))
    expected = run_ort(model, [x, mask])[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x), torch.from_numpy(mask))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


def test_an_if_decided_by_a_later_broadcast_is_written_inline():
    model = length_if_model(tied_later=True)
    module = optimize_onnx(model)
    assert_lowered(module)
    assert not any(is_cond(n) for n in module.graph.nodes)  # the predicate is known: T == M
    for b, t in ((2, 3), (3, 6), (1, 9)):  # sizes the optimize run never saw
        _run(module, model, b, t, t)
    assert "x[1]" in report_of(module).dynamic_dims  # the length stays dynamic


def test_without_a_later_tie_the_if_is_a_python_branch():
    """No tie decides it: the last pass writes the If as `size_branch` (its branches' sizes
    never agree), right on both sides."""
    from fxsurgeon.lower.control_flow import size_branch

    model = length_if_model(tied_later=False)
    module = optimize_onnx(model)
    assert_lowered(module)
    assert sum(n.target is size_branch for n in module.graph.nodes) == 1
    _run(module, model, 2, 3, 3)
    _run(module, model, 2, 3, 5)  # the then branch


def test_learned_ties_pair_input_dims_that_reduce_to_one_symbol():
    sigs = [InputSignature(name, torch.float32, (None, None), (2, 5)) for name in ("a", "b", "c")]
    shapes = SymbolicShapes(sigs)
    a, b, c = shapes.fake_inputs
    with shapes.mode:
        torch._check(a.shape[1] == b.shape[1])
    assert shapes.learned_ties() == ((("b", 1), ((1, ("a", 1)),), 0),)  # b[1] == 1 * a[1]
    shapes.restart({("c", 1): 7}, ties=shapes.learned_ties())
    a, b, c = shapes.fake_inputs
    assert shapes.env.replace(a.shape[1].node.expr) == shapes.env.replace(b.shape[1].node.expr)
    assert shapes.static(c.shape[1]) is None  # untied dims stay free symbols


@pytest.mark.parametrize("learning", [False, True])
def test_a_kept_if_gives_fresh_sizes_only_in_a_learning_pass(learning):
    """Outside a learning pass the If is refused as before (the graph must compute it)."""
    sigs = [InputSignature("x", torch.float32, (None, None), (2, 5))]
    shapes = SymbolicShapes(sigs)
    shapes.restart({}, learning=learning)
    fresh = shapes.unknown_like(shapes.fake_inputs[0])
    assert all(isinstance(d, torch.SymInt) for d in fresh.shape)
    assert shapes.learning is learning
