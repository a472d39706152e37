"""Input dims related by a sum: a key/value cache step's mask is as long as the cached keys
and the new tokens (``M = T + S``), a relation of three input dims that the graph states
only by broadcasting them. The default hints (5, 5, 5) contradict it, so the broadcast
refused them: the analysis now solves the equation for an input dim and restarts with hints
that satisfy it (`SymbolicShapes.admit_broadcast`), and an If on the lengths before the
broadcast (OPT's causal mask) lowers once the sum is a tie from the start (`learned_ties`).
A relation no hint above 1 satisfies is left to the op's own error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from fxsurgeon.errors import LoweringError
from fxsurgeon.lower.control_flow import is_cond
from fxsurgeon.pipeline import report_of
from fxsurgeon.shapes.symbolic import InputSignature, SymbolicShapes
from tests.onnx_cases import assert_lowered, init, make_model, optimize_onnx, run_ort, tensor_info

F32, I64 = np.float32, np.int64
E = 3


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def _expand(name: str, value: str, last: str):
    """A branch: Expand(value, [N, last])."""
    nodes = [
        _node("Unsqueeze", ["N", "ax0"], [f"{name}_n"]),
        _node("Unsqueeze", [last, "ax0"], [f"{name}_l"]),
        _node("Concat", [f"{name}_n", f"{name}_l"], [f"{name}_shape"], axis=0),
        _node("Expand", [value, f"{name}_shape"], [f"{name}_out"]),
    ]
    return helper.make_graph(nodes, name, [], [tensor_info(f"{name}_out", F32, None)])


def cache_model(with_if: bool, mask_len="M"):
    """y = (Concat([past, x], 1) * mask[..., None]) [* If(T > 0, ones[N, M], twos[N, T +
    S])[..., None]]: past [N, T, E], x [N, S, E], mask [N, M], M = T + S by contract."""
    nodes = [
        _node("Concat", ["past", "x"], ["keys"], axis=1),
        _node("Unsqueeze", ["mask", "ax_last"], ["mask3"]),
        _node("Mul", ["keys", "mask3"], ["masked" if with_if else "y"]),
    ]
    if with_if:
        nodes += [
            _node("Shape", ["past"], ["sp"]),
            _node("Shape", ["x"], ["sx"]),
            _node("Shape", ["mask"], ["sm"]),
            _node("Gather", ["sp", "zero_i"], ["N"], axis=0),
            _node("Gather", ["sp", "one_i"], ["T"], axis=0),
            _node("Gather", ["sx", "one_i"], ["S"], axis=0),
            _node("Gather", ["sm", "one_i"], ["M"], axis=0),
            _node("Add", ["T", "S"], ["TS"]),
            _node("Greater", ["T", "zero_i"], ["p"]),
            _node(
                "If",
                ["p"],
                ["scale"],
                then_branch=_expand("then", "one_f", "M"),
                else_branch=_expand("else", "two_f", "TS"),
            ),
            _node("Unsqueeze", ["scale", "ax_last"], ["scale3"]),
            _node("Mul", ["masked", "scale3"], ["y"]),
        ]
    inits = [
        init("ax0", np.array([0], I64)),
        init("ax_last", np.array([-1], I64)),
        init("zero_i", np.array(0, I64)),
        init("one_i", np.array(1, I64)),
        init("one_f", np.array(1.0, F32)),
        init("two_f", np.array(2.0, F32)),
    ]
    inputs = [
        tensor_info("past", F32, ["N", "T", E]),
        tensor_info("x", F32, ["N", "S", E]),
        tensor_info("mask", F32, ["N", mask_len]),
    ]
    return make_model(nodes, inputs, [tensor_info("y", F32, ["N", "L", E])], inits)


def _check(module, model, n: int, t: int, s: int):
    rng = np.random.default_rng(n * 100 + t * 10 + s)
    arrays = [
        rng.standard_normal(shape).astype(F32) for shape in ((n, t, E), (n, s, E), (n, t + s))
    ]
    expected = run_ort(model, arrays)[0]
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in arrays))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("with_if", [False, True])
def test_a_mask_as_long_as_the_cache_and_the_new_tokens_lowers_with_every_length_dynamic(
    with_if,
):
    model = cache_model(with_if)
    module = optimize_onnx(model)
    assert_lowered(module)
    assert not any(is_cond(n) for n in module.graph.nodes)  # T > 0 is known: the hints' T
    assert report_of(module).forced_dims == []
    for n, t, s in ((2, 3, 1), (1, 6, 4), (3, 2, 7)):  # sizes the optimize run never saw
        _check(module, model, n, t, s)


def test_learned_ties_state_an_input_dim_as_a_sum_of_others():
    hints = {"m": 10, "t": 5, "s": 5}
    sigs = [InputSignature(n, torch.float32, (None, None), (2, h)) for n, h in hints.items()]
    shapes = SymbolicShapes(sigs)
    m, t, s = shapes.fake_inputs
    with shapes.mode:
        torch._check(m.shape[1] - t.shape[1] == s.shape[1])  # a guard, not a replacement
    ties = shapes.learned_ties()
    assert len(ties) == 1 and ties[0][0] in {("m", 1), ("t", 1), ("s", 1)}
    shapes.restart({("m", 1): 7}, ties=ties)  # a hint against the tie: the tie decides
    m, t, s = shapes.fake_inputs
    sizes = [shapes.env.size_hint(x.shape[1].node.expr) for x in (m, t, s)]
    assert sizes[0] == sizes[1] + sizes[2] and min(sizes) >= 2


def test_a_relation_no_hint_above_one_satisfies_is_left_to_the_op():
    """mask [N, 3] against T + S: T = 3 - S has no solution with both above 1."""
    with pytest.raises((LoweringError, RuntimeError), match="broadcast"):
        optimize_onnx(cache_model(False, mask_len=3))
