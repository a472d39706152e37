"""An ONNX If on a size predicate whose branches give sizes no outcome makes agree
(fxsurgeon/lower/control_flow.py, `size_branch`; cond_shapes.py, the piecewise size).

Funnel pools a sequence only where it is longer than 2: ``x[:, ::2]`` (``(T + 1) // 2``
rows) where ``T > 2``, ``x`` (``T`` rows) where not; at ``T = 2`` the sizes differ, so no
torch.cond gives them. The If is a Python branch on the SymBool, the analysis after it
carries ``Piecewise(((T + 1) // 2, T > 2), (T, True))``, and the ops after it lower. Checked
against onnxruntime on both sides, in model.py in a clean process, and compiled fullgraph
with dynamic shapes. Refusals: the same branches under a predicate on data stay a
torch.cond (sizes the data decides), and branches of different ranks stay kept.
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import helper
from test_codegen_control_flow import check_everywhere

from fxsurgeon.lower.control_flow import is_cond, size_branch
from fxsurgeon.pipeline import report_of
from tests.onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    init,
    make_model,
    optimize_onnx,
    tensor_info,
)

F32, I64 = np.float32, np.int64
_node = helper.make_node
BIG = np.iinfo(np.int64).max


def _pool_model(pred: str, then_rank_differs: bool = False):
    """``y = x[:, ::2] if pred else x`` then ``z = reshape(y * 2, [B, -1, 1]).sum(-1) + 1``;
    outputs z and Shape(z). pred: "size" (T > 2) or "data" (sum(x) > 0)."""
    then_nodes = [_node("Slice", ["x", "zero_1", "big_1", "one_1", "two_1"], ["pooled"])]
    then_out = "pooled"
    if then_rank_differs:
        then_nodes.append(_node("Unsqueeze", ["pooled", "zero_1"], ["pooled_3d"]))
        then_out = "pooled_3d"
    branch = helper.make_graph(then_nodes, "pool", [], [tensor_info(then_out, F32, None)])
    other = helper.make_graph(
        [_node("Identity", ["x"], ["same"])], "keep", [], [tensor_info("same", F32, None)]
    )
    if pred == "size":
        head = [
            _node("Shape", ["x"], ["s"]),
            _node("Gather", ["s", "one"], ["T"], axis=0),
            _node("Greater", ["T", "two"], ["p"]),
        ]
    else:
        head = [
            _node("ReduceSum", ["x"], ["total"], keepdims=0),
            _node("Greater", ["total", "zero_f"], ["p"]),
        ]
    tail = [
        _node("If", ["p"], ["y"], then_branch=branch, else_branch=other),
        _node("Mul", ["y", "two_f"], ["y2"]),
        _node("Reshape", ["y2", "to_3d"], ["y3"]),
        _node("ReduceSum", ["y3", "minus_one"], ["r"], keepdims=0),
        _node("Add", ["r", "one_f"], ["z"]),
        _node("Shape", ["z"], ["zs"]),
    ]
    inits = [
        init("one", np.array(1, I64)),
        init("two", np.array(2, I64)),
        init("zero_1", np.array([0], I64)),
        init("one_1", np.array([1], I64)),
        init("two_1", np.array([2], I64)),
        init("big_1", np.array([BIG], I64)),
        init("minus_one", np.array([-1], I64)),
        init("to_3d", np.array([0, -1, 1], I64)),
        init("two_f", np.array(2.0, F32)),
        init("one_f", np.array(1.0, F32)),
        init("zero_f", np.array(0.0, F32)),
    ]
    return make_model(
        [*head, *tail],
        [tensor_info("x", F32, ["B", "T"])],
        [tensor_info("z", F32, None), tensor_info("zs", I64, None)],
        inits,
    )


def _inputs(*lengths):
    rng = np.random.default_rng(3)
    return [rng.standard_normal((2, t)).astype(F32) for t in lengths]


def test_a_size_if_with_sizes_that_differ_is_a_python_branch_and_lowers_after_it(tmp_path):
    model = _pool_model("size")
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    branches = [n for n in optimized.graph.nodes if n.target is size_branch]
    assert len(branches) == 1
    assert not any(n.target is not size_branch and is_cond(n) for n in optimized.graph.nodes)
    for x in _inputs(1, 2, 3, 4, 7, 8):  # T <= 2 takes the else branch, T > 2 pools
        assert_module_matches_ort(optimized, model, [x])
    compiled = torch.compile(optimized, fullgraph=True, dynamic=True, backend="eager")
    for x in _inputs(3, 7, 2, 9):  # both sides: the guard on T > 2 recompiles
        assert_module_matches_ort(compiled, model, [x])
    torch._dynamo.reset()
    cases = [(torch.from_numpy(x),) for x in _inputs(5, 2, 6)]
    source = check_everywhere(optimized, cases, tmp_path)
    assert "def size_branch(pred, true_fn, false_fn, operands):" in source


def test_the_same_branches_under_a_data_predicate_stay_a_torch_cond():
    model = _pool_model("data")
    optimized = optimize_onnx(model)
    assert not any(n.target is size_branch for n in optimized.graph.nodes)
    assert any(is_cond(n) for n in optimized.graph.nodes)
    rng = np.random.default_rng(4)
    for t in (2, 3, 6):
        x = np.abs(rng.standard_normal((2, t))).astype(F32)
        assert_module_matches_ort(optimized, model, [x])
        assert_module_matches_ort(optimized, model, [-x])


def test_branches_of_different_ranks_under_a_size_predicate_are_kept():
    model = _pool_model("size", then_rank_differs=True)
    optimized = optimize_onnx(model)
    assert not any(n.target is size_branch for n in optimized.graph.nodes)
    kept = report_of(optimized).unconverted
    assert any("If" in str(k) for k in kept), kept
