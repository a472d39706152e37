"""ONNX If on a predicate of input sizes (the causal mask of every HF decoder: "decoder
length > 1"), whose branches build tensors from outer shape computations (Expand to a
shape of outer sizes, Range to an outer size).

The branches are lowered with what the outer graph knows of the values they read (a
shape computation on symbolic sizes, a constant), so no onnx2torch module is left;
the If becomes ``torch.cond`` with symbolic output shapes, and both branches are
checked against onnxruntime at sizes where the predicate is true and false,
including sizes the optimize run never saw. A predicate on tensor data stays a
run-time ``torch.cond`` and is still right.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from fxsurgeon.pipeline import report_of
from tests.onnx_cases import (
    assert_lowered,
    init,
    make_model,
    optimize_onnx,
    run_ort,
    tensor_info,
)

F32, I64 = np.float32, np.int64


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def _branch(name, nodes, out):
    return helper.make_graph(nodes, name, [], [tensor_info(out, F32, None)])


def causal_if_model(pred_from_data: bool = False):
    """y[b, i, j] = x[b, j] * (j <= i) if T > 1 else x[b, j] * 3 (shape [B, T, T] both ways).

    Both branches read the outer scalars B and T (shape computations) and x."""
    then_nodes = [
        _node("Unsqueeze", ["B", "ax0"], ["b1"]),
        _node("Unsqueeze", ["T", "ax0"], ["t1"]),
        _node("Concat", ["b1", "t1", "t1"], ["shape"], axis=0),
        _node("Expand", ["one_f", "shape"], ["ones"]),
        _node("Range", ["zero_i", "T", "one_i"], ["r"]),
        _node("Unsqueeze", ["r", "ax1"], ["rc"]),
        _node("Less", ["rc", "r"], ["upper"]),  # j > i
        _node("Not", ["upper"], ["keep"]),
        _node("Cast", ["keep"], ["keep_f"], to=1),
        _node("Mul", ["ones", "keep_f"], ["mask"]),
        _node("Unsqueeze", ["x", "ax1"], ["x3"]),
        _node("Mul", ["mask", "x3"], ["t_out"]),
    ]
    else_nodes = [
        _node("Add", ["T", "zero_i"], ["t_plus"]),  # a constant of the branch, as tf2onnx
        _node("Unsqueeze", ["B", "ax0"], ["b1e"]),
        _node("Unsqueeze", ["T", "ax0"], ["t1e"]),
        _node("Unsqueeze", ["t_plus", "ax0"], ["t2e"]),
        _node("Concat", ["b1e", "t1e", "t2e"], ["shape_e"], axis=0),
        _node("Expand", ["three_f", "shape_e"], ["threes"]),
        _node("Unsqueeze", ["x", "ax1"], ["x3e"]),
        _node("Mul", ["threes", "x3e"], ["e_out"]),
    ]
    nodes = [
        _node("Shape", ["x"], ["s"]),
        _node("Gather", ["s", "zero_i"], ["B"], axis=0),
        _node("Slice", ["s", "one_1d", "two_1d", "zero_1d"], ["t_1d"]),
        _node("Squeeze", ["t_1d", "zero_1d"], ["T"]),
    ]
    if pred_from_data:
        nodes += [
            _node("ReduceSum", ["x"], ["total"], keepdims=0),
            _node("Greater", ["total", "zero_f"], ["p"]),
        ]
    else:
        nodes += [
            _node("Cast", ["T"], ["t_i32"], to=6),  # tf2onnx casts the size to int32
            _node("Greater", ["t_i32", "one_i32"], ["p"]),
        ]
    nodes.append(
        _node(
            "If",
            ["p"],
            ["y"],
            then_branch=_branch("then", then_nodes, "t_out"),
            else_branch=_branch("else", else_nodes, "e_out"),
        )
    )
    inits = [
        init("ax0", np.array([0], I64)),
        init("ax1", np.array([1], I64)),
        init("zero_i", np.array(0, I64)),
        init("one_i", np.array(1, I64)),
        init("zero_1d", np.array([0], I64)),
        init("one_1d", np.array([1], I64)),
        init("two_1d", np.array([2], I64)),
        init("one_i32", np.array(1, np.int32)),
        init("one_f", np.array(1.0, F32)),
        init("three_f", np.array(3.0, F32)),
        init("zero_f", np.array(0.0, F32)),
    ]
    return make_model(
        nodes, [tensor_info("x", F32, ["B", "T"])], [tensor_info("y", F32, ["B", "T", "T"])], inits
    )


def _check(optimized, model, x):
    expected = run_ort(model, [x])[0]
    with torch.no_grad():
        got = optimized(torch.from_numpy(x))
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


def _rnd(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(F32)


def test_a_size_predicate_lowers_both_branches_with_outer_shapes():
    model = causal_if_model()
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    report = report_of(optimized)
    assert report.forced_dims == [], report.forced_dims
    targets = {n.target for n in optimized.graph.nodes}
    assert torch.cond in targets
    # neither branch keeps a module: both are plain torch
    conds = [m for name, m in optimized.named_children() if name.startswith("if_")]
    assert len(conds) == 2
    for branch in conds:
        assert all(n.op != "call_module" for n in branch.graph.nodes)
    # decoder length > 1 (then) and == 1 (else), batch and length never seen at optimize
    for batch, length in [(2, 3), (1, 1), (3, 1), (2, 7), (5, 2)]:
        _check(optimized, model, _rnd(batch, length))


def test_the_output_of_a_size_if_keeps_symbolic_dims_downstream():
    """The If's output shape is known (symbolic), so what follows it lowers too."""
    model = causal_if_model()
    optimized = optimize_onnx(model)
    cond_out = [n for n in optimized.graph.nodes if n.op == "output"][0].args[0]
    cond_out = cond_out[0] if isinstance(cond_out, (tuple, list)) else cond_out
    assert cond_out.meta.get("fxs_shape") == (None, None, None)


@pytest.mark.parametrize("positive", [True, False])
def test_a_data_predicate_stays_a_run_time_cond(positive):
    model = causal_if_model(pred_from_data=True)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    assert torch.cond in {n.target for n in optimized.graph.nodes}
    for batch, length in [(2, 3), (1, 1), (4, 5)]:
        x = np.abs(_rnd(batch, length)) * (1.0 if positive else -1.0)
        _check(optimized, model, x)
