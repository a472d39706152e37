"""ONNX If outputs the branches show without a torch.cond (fxsurgeon/lower/cond_folds.py), and
Ifs whose size predicate holds or fails for every size (``s != s``).

TF's ``flag and c`` on a tensor flag (autograph: ``tf.cond(flag, lambda: c, lambda: flag)``)
is an If whose then-branch gives the constant c and whose else-branch gives the predicate,
which is false there: ``p and False`` is False and ``p and True`` is p. Funnel gates its
pooling so, and its attention picks a position table on ``q_len != k_len``, whose branches
differ in rank (a ``Fill([1])`` dummy against a table). onnxruntime is the oracle; the
refusals: a data predicate with different constants stays a torch.cond, and branches of
different ranks under a predicate the sizes decide at run time are kept, not merged.
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper

from fxsurgeon.lower.control_flow import is_cond
from fxsurgeon.pipeline import report_of
from tests.onnx_cases import assert_lowered, init, make_model, optimize_onnx, run_ort, tensor_info

F32, I64 = np.float32, np.int64
_node = helper.make_node


def _bool_info(name):
    return helper.make_tensor_value_info(name, TensorProto.BOOL, [])


def _branch(name, nodes, outputs, initializers=()):
    infos = [o if not isinstance(o, str) else tensor_info(o, F32, None) for o in outputs]
    return helper.make_graph(nodes, name, [], infos, list(initializers))


def _flag_model(constant: bool, pred: str):
    """``flag = pred and constant`` (autograph's If), then ``y = x * 2 if flag else x + 1``.

    pred: "size" (T > 2) or "data" (sum(x) > 0)."""
    const = helper.make_tensor("c", TensorProto.BOOL, [], [constant])
    gate = _node(
        "If",
        ["p"],
        ["flag"],
        then_branch=_branch("and_then", [], [_bool_info("c")], [const]),
        else_branch=_branch(
            "and_else", [_node("Identity", ["p"], ["p_out"])], [_bool_info("p_out")]
        ),
    )
    use = _node(
        "If",
        ["flag"],
        ["y"],
        then_branch=_branch("t", [_node("Mul", ["x", "two"], ["t_out"])], ["t_out"]),
        else_branch=_branch("e", [_node("Add", ["x", "one"], ["e_out"])], ["e_out"]),
    )
    if pred == "size":
        head = [
            _node("Shape", ["x"], ["s"]),
            _node("Gather", ["s", "one_i"], ["T"], axis=0),
            _node("Greater", ["T", "two_i"], ["p"]),
        ]
    else:
        head = [
            _node("ReduceSum", ["x"], ["total"], keepdims=0),
            _node("Greater", ["total", "zero"], ["p"]),
        ]
    inits = [
        init("one_i", np.array(1, I64)),
        init("two_i", np.array(2, I64)),
        init("two", np.array(2.0, F32)),
        init("one", np.array(1.0, F32)),
        init("zero", np.array(0.0, F32)),
    ]
    return make_model(
        [*head, gate, use],
        [tensor_info("x", F32, ["B", "T"])],
        [tensor_info("y", F32, None)],
        inits,
    )


def _check(optimized, model, x):
    expected = run_ort(model, [x])[0]
    with torch.no_grad():
        got = optimized(torch.from_numpy(x))
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


def _conds(optimized):
    return [n for n in optimized.graph.nodes if is_cond(n)]


def _cases():
    rng = np.random.default_rng(0)
    for batch, length in [(2, 1), (2, 2), (3, 3), (1, 7)]:
        for sign in (1.0, -1.0):
            yield np.abs(rng.standard_normal((batch, length))).astype(F32) * sign


def test_p_and_false_is_false_and_the_if_it_gates_is_its_else_branch():
    for pred in ("size", "data"):
        model = _flag_model(False, pred)
        optimized = optimize_onnx(model)
        assert_lowered(optimized)
        assert _conds(optimized) == []  # both Ifs gone: the flag is the constant False
        for x in _cases():
            _check(optimized, model, x)


def test_p_and_true_is_p_and_the_if_it_gates_branches_on_p():
    for pred in ("size", "data"):
        model = _flag_model(True, pred)
        optimized = optimize_onnx(model)
        assert_lowered(optimized)
        (cond,) = _conds(optimized)  # one torch.cond left: the gated If, on p itself
        assert not any(
            n.op == "get_attr" and "and_" in str(n.target) for n in optimized.graph.nodes
        )
        for x in _cases():
            _check(optimized, model, x)


def _constants_model():
    """A data predicate whose branches give different float constants: p ? 1.0 : 2.0."""
    one = helper.make_tensor("c1", TensorProto.FLOAT, [], [1.0])
    two = helper.make_tensor("c2", TensorProto.FLOAT, [], [2.0])
    nodes = [
        _node("ReduceSum", ["x"], ["total"], keepdims=0),
        _node("Greater", ["total", "zero"], ["p"]),
        _node(
            "If",
            ["p"],
            ["k"],
            then_branch=_branch("t", [], [tensor_info("c1", F32, [])], [one]),
            else_branch=_branch("e", [], [tensor_info("c2", F32, [])], [two]),
        ),
        _node("Mul", ["x", "k"], ["y"]),
    ]
    return make_model(
        nodes,
        [tensor_info("x", F32, ["B", "T"])],
        [tensor_info("y", F32, None)],
        [init("zero", np.array(0.0, F32))],
    )


def test_different_constants_under_a_data_predicate_stay_a_torch_cond():
    model = _constants_model()
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    assert len(_conds(optimized)) == 1
    for x in _cases():
        _check(optimized, model, x)


def _rank_model(same: bool):
    """``dummy if len(q) != len(k) else table``: the then-branch a ``Fill([1])`` dummy, the
    else-branch a rank-2 table of q. ``same``: k is q (the predicate is ``s != s``, false
    for every size); else k is another input (the sizes decide at run time)."""
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [-1.0])
    nodes = [
        _node("Shape", ["q"], ["sq"]),
        _node("Gather", ["sq", "one_i"], ["lq"], axis=0),
        _node("Shape", ["q" if same else "k"], ["sk"]),
        _node("Gather", ["sk", "one_i"], ["lk"], axis=0),
        _node("Equal", ["lq", "lk"], ["eq"]),
        _node("Not", ["eq"], ["p"]),
        _node(
            "If",
            ["p"],
            ["r"],
            then_branch=_branch(
                "dummy",
                [_node("ConstantOfShape", ["one_1d"], ["fill"], value=fill)],
                [tensor_info("fill", F32, [1])],
            ),
            else_branch=_branch(
                "table",
                [
                    _node("ReduceSum", ["q", "zero_1d"], ["col"], keepdims=0),
                    _node("Unsqueeze", ["col", "zero_1d"], ["tab"]),
                ],
                [tensor_info("tab", F32, [1, "L"])],
            ),
        ),
        _node("ReduceSum", ["r"], ["y"], keepdims=0),
    ]
    inputs = [tensor_info("q", F32, ["B", "L"])]
    if not same:
        inputs.append(tensor_info("k", F32, ["B", "M"]))
    inits = [
        init("one_i", np.array(1, I64)),
        init("one_1d", np.array([1], I64)),
        init("zero_1d", np.array([0], I64)),
    ]
    return make_model(nodes, inputs, [tensor_info("y", F32, [])], inits)


def test_a_size_predicate_false_for_every_size_takes_its_branch_whatever_the_ranks():
    model = _rank_model(same=True)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    assert _conds(optimized) == []
    for x in _cases():
        _check(optimized, model, x)


def test_branches_of_different_ranks_under_a_run_time_size_predicate_are_kept():
    model = _rank_model(same=False)
    optimized = optimize_onnx(model)
    kept = report_of(optimized).unconverted
    assert "OnnxIf" in kept and "ranks" in kept["OnnxIf"][0], kept
    rng = np.random.default_rng(1)
    for length, other in [(3, 3), (3, 4), (1, 2)]:
        q = rng.standard_normal((2, length)).astype(F32)
        k = rng.standard_normal((2, other)).astype(F32)
        expected = run_ort(model, [q, k])[0]
        got = optimized(torch.from_numpy(q), torch.from_numpy(k))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
