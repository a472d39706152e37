"""ONNX If on a predicate of input sizes (the causal mask of every HF decoder: "decoder
length > 1"), whose branches build tensors from outer shape computations (Expand to a
shape of outer sizes, Range to an outer size).

The branches are lowered with what the outer graph knows of the values they read (a
shape computation on symbolic sizes, a constant), so no onnx2torch module is left;
the If becomes ``torch.cond`` (``run_cond``) with symbolic output shapes, and both branches are
checked against onnxruntime at sizes where the predicate is true and false,
including sizes the optimize run never saw. A predicate on tensor data stays a
run-time ``torch.cond`` and is still right.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from fxsurgeon.lower.control_flow import compare_sizes, is_cond
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


def causal_if_model(pred: str = "size"):
    """y[b, i, j] = x[b, j] * (j <= i) * T if T > 1 else x[b, j] * 3 (shape [B, T, T] both ways).

    Both branches read the outer scalars B and T (shape computations) and x. The
    predicate: "size" (int32 T > 1, as tf2onnx), "float" (float(T) > 1.0, as in
    hf_marian), "float_sizes" (float(T) > float(B): rounding may tie two large
    sizes, so not a comparison of sizes), "data" (sum(x) > 0)."""
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
        _node("Mul", ["mask", "x3"], ["masked"]),
        _node("Cast", ["T"], ["t_scale"], to=1),  # a size as data: must not pin T
        _node("Mul", ["masked", "t_scale"], ["t_out"]),
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
    nodes += {
        "size": [
            _node("Cast", ["T"], ["t_i32"], to=6),  # tf2onnx casts the size to int32
            _node("Greater", ["t_i32", "one_i32"], ["p"]),
        ],
        "float": [
            _node("Cast", ["T"], ["t_f"], to=1),
            _node("Greater", ["t_f", "one_f"], ["p"]),
        ],
        "float_sizes": [
            _node("Cast", ["T"], ["t_f"], to=1),
            _node("Cast", ["B"], ["b_f"], to=1),
            _node("Greater", ["t_f", "b_f"], ["p"]),
        ],
        "data": [
            _node("ReduceSum", ["x"], ["total"], keepdims=0),
            _node("Greater", ["total", "zero_f"], ["p"]),
        ],
    }[pred]
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


@pytest.mark.parametrize("pred", ["size", "float"])
def test_a_size_predicate_lowers_both_branches_with_outer_shapes(pred):
    model = causal_if_model(pred)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    report = report_of(optimized)
    assert report.forced_dims == [], report.forced_dims
    (cond,) = [n for n in optimized.graph.nodes if is_cond(n)]
    assert cond.args[0].target is compare_sizes  # a SymBool on the length, not a tensor
    # neither branch keeps a module: both are plain torch
    branches = [m for name, m in optimized.named_children() if name.startswith("if_")]
    assert len(branches) == 2
    for branch in branches:
        assert all(n.op != "call_module" for n in branch.graph.nodes)
    # decoder length > 1 (then) and == 1 (else), batch and length never seen at optimize
    for batch, length in [(2, 3), (1, 1), (3, 1), (2, 7), (5, 2)]:
        _check(optimized, model, _rnd(batch, length))


def test_the_output_of_a_size_if_keeps_symbolic_dims_downstream():
    """The If's output shape is known (symbolic), so what follows it lowers too."""
    optimized = optimize_onnx(causal_if_model())
    out = [n for n in optimized.graph.nodes if n.op == "output"][0].args[0]
    out = out[0] if isinstance(out, (tuple, list)) else out
    assert out.meta.get("fxs_shape") == (None, None, None)


def test_a_size_if_compiles_with_dynamic_shapes():
    model = causal_if_model()
    optimized = optimize_onnx(model)
    compiled = torch.compile(optimized, backend="eager", dynamic=True, fullgraph=True)
    try:
        for batch, length in [(2, 3), (3, 5), (2, 1)]:
            _check(compiled, model, _rnd(batch, length))
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("pred", ["data", "float_sizes"])
def test_a_predicate_not_on_sizes_alone_stays_a_run_time_tensor(pred):
    model = causal_if_model(pred)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    (cond,) = [n for n in optimized.graph.nodes if is_cond(n)]
    assert cond.args[0].target is not compare_sizes
    for batch, length in [(2, 3), (1, 1), (4, 5), (3, 2), (2, 2)]:
        for sign in (1.0, -1.0):
            _check(optimized, model, np.abs(_rnd(batch, length)) * sign)
