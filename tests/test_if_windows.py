"""The window code of vision transformers (Swin's pad/roll/partition, MobileViT's
unfolding): Ifs on sizes that fold, Range bounds against the step's sign, Roll as
Split + Mod + Slice + Concat, and the run-time If whose branches end in different
layouts. Each graph is optimized once and checked against onnxruntime at sizes the
optimize run never saw; the refusal sides keep their modules and stay right."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    init,
    make_model,
    optimize_onnx,
    tensor_info,
)

from fxsurgeon.lower.control_flow import compare_sizes, is_cond
from fxsurgeon.pipeline import count_onnx2torch_modules, report_of

F32, I64, I32 = np.float32, np.int64, np.int32
rng = np.random.default_rng(3)


def x_of(*shape):
    return rng.standard_normal(shape).astype(F32)


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def _transpose_branch() -> onnx.GraphProto:
    """An If branch returning the outer `x` with its last two axes swapped (a view)."""
    return helper.make_graph(
        [_node("Transpose", ["x"], ["ey"], perm=[0, 2, 1])],
        "else_y",
        [],
        [tensor_info("ey", F32, None)],
    )


def _conds(optimized):
    return [n for n in optimized.graph.nodes if is_cond(n)]


# --------------------------------------------------------------------------- folded Ifs


def if_on_a_folded_if(first: bool):
    """p = If(first) then Identity(first) else Not(8 == 8); y = If(p) then 2 * x^T else x^T.

    tf2onnx writes MobileViT's "resize unless the size divides the patch" this way:
    the first If's outputs are constants only once its branch is folded."""
    then_p = helper.make_graph(
        [_node("Identity", ["first"], ["tp"])], "then_p", [], [tensor_info("tp", np.bool_, [])]
    )
    else_p = helper.make_graph(
        [_node("Equal", ["eight", "eight_too"], ["eq"]), _node("Not", ["eq"], ["ep"])],
        "else_p",
        [],
        [tensor_info("ep", np.bool_, [])],
    )
    then_y = helper.make_graph(
        [_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]), _node("Mul", ["xt", "two"], ["ty"])],
        "then_y",
        [],
        [tensor_info("ty", F32, None)],
    )
    else_y = _transpose_branch()
    nodes = [
        _node("If", ["first"], ["p"], then_branch=then_p, else_branch=else_p),
        _node("If", ["p"], ["y"], then_branch=then_y, else_branch=else_y),
    ]
    inits = [
        init("first", np.array(first)),
        init("eight", np.array(8, I32)),
        init("eight_too", np.array(8, I32)),
        init("two", np.array(2.0, F32)),
    ]
    return make_model(
        nodes, [tensor_info("x", F32, ["N", "L", 3])], [tensor_info("y", F32, None)], inits
    )


@pytest.mark.parametrize("first", [True, False])
def test_an_if_on_the_output_of_a_folded_if_folds_too(first):
    model = if_on_a_folded_if(first)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    assert _conds(optimized) == []  # both Ifs decided at optimize time
    assert not any(name.startswith("if_") for name, _ in optimized.named_children())
    for n, length in [(1, 1), (2, 5), (4, 3)]:
        assert_module_matches_ort(optimized, model, [x_of(n, length, 3)], atol=1e-6)


# --------------------------------------------------------------------------- Range


def range_model(start: str, limit: str, delta: str, inits: list):
    """y = Range(start, limit, delta), L = x.shape[1] available as "L"."""
    nodes = [
        _node("Shape", ["x"], ["s"]),
        _node("Gather", ["s", "one"], ["L"], axis=0),
        _node("Range", [start, limit, delta], ["y"]),
    ]
    inits = [init("one", np.array(1, I64)), *inits]
    return make_model(
        nodes, [tensor_info("x", F32, ["N", "L"])], [tensor_info("y", I64, None)], inits
    )


@pytest.mark.parametrize(
    "start, limit, delta",
    [
        (5, "L", 1),  # empty while L <= 5
        ("L", 2, -1),  # counts down, empty while L <= 2
        (4, "L", 3),
        (7, 2, 1),  # static, against the step: empty
        (2, 7, -2),
    ],
)
def test_range_against_its_step_is_empty_as_in_onnx(start, limit, delta):
    inits = []
    names = []
    for k, v in (("start", start), ("limit", limit), ("delta", delta)):
        if v == "L":
            names.append("L")
        else:
            inits.append(init(k, np.array(v, I64)))
            names.append(k)
    model = range_model(*names, inits)
    optimized = optimize_onnx(model)
    assert count_onnx2torch_modules(optimized) == {}
    for length in (1, 2, 3, 5, 6, 11):
        assert_module_matches_ort(optimized, model, [x_of(2, length)], atol=1e-6)


def test_a_range_whose_delta_is_a_run_time_size_is_kept():
    """The sign of the step decides whether the Range is empty: not lowered on a guess."""
    model = range_model(
        "zero", "ten", "L", [init("zero", np.array(0, I64)), init("ten", np.array(10, I64))]
    )
    optimized = optimize_onnx(model)
    assert "OnnxRange" in report_of(optimized).unconverted
    for length in (3, 4):
        assert_module_matches_ort(optimized, model, [x_of(1, length)], atol=1e-6)


# --------------------------------------------------------------------------- Roll


def roll_model(shifts: list[int], fmod: int = 0):
    """tf.roll(x, shifts, axes=[1, 2]) as tf2onnx writes it: the shifts split, each taken
    Mod the dim's size, then Slice + Concat on the dim at size - shift."""
    nodes = [
        _node("Shape", ["x"], ["s"]),
        _node("Split", ["shifts"], ["sh1", "sh2"], axis=0),
    ]
    value = "x"
    for k, axis in ((1, 1), (2, 2)):
        nodes += [
            _node("Slice", ["s", f"a{axis}", f"b{axis}"], [f"d{k}"]),
            _node("Mod", [f"sh{k}", f"d{k}"], [f"m{k}"], fmod=fmod),
            _node("Sub", [f"d{k}", f"m{k}"], [f"cut{k}"]),
            _node("Slice", [value, f"cut{k}", f"d{k}", f"ax{axis}"], [f"tail{k}"]),
            _node("Slice", [value, "zero1", f"cut{k}", f"ax{axis}"], [f"head{k}"]),
            _node("Concat", [f"tail{k}", f"head{k}"], [f"r{k}"], axis=axis),
        ]
        value = f"r{k}"
    inits = [
        init("shifts", np.array(shifts, I64)),
        init("zero1", np.array([0], I64)),
        init("a1", np.array([1], I64)),
        init("b1", np.array([2], I64)),
        init("a2", np.array([2], I64)),
        init("b2", np.array([3], I64)),
        init("ax1", np.array([1], I64)),
        init("ax2", np.array([2], I64)),
    ]
    nodes.append(_node("Identity", [value], ["y"]))
    return make_model(
        nodes, [tensor_info("x", F32, ["N", "H", "W", 2])], [tensor_info("y", F32, None)], inits
    )


@pytest.mark.parametrize("shifts", [[-2, -2], [1, 3]])
def test_a_roll_of_constant_shifts_is_lowered_on_the_sizes(shifts):
    model = roll_model(shifts)
    optimized = optimize_onnx(model)
    assert count_onnx2torch_modules(optimized) == {}
    assert report_of(optimized).forced_dims == []
    for h, w in [(4, 4), (5, 3), (8, 7)]:
        assert_module_matches_ort(optimized, model, [x_of(2, h, w, 2)], atol=1e-6)


def test_a_c_fmod_of_a_negative_shift_is_not_taken_as_python_mod():
    """fmod=1 keeps the dividend's sign: -2 fmod 4 is -2, not 2; the Slice bounds it
    gives are still onnxruntime's."""
    model = roll_model([-2, 1], fmod=1)
    optimized = optimize_onnx(model)
    for h, w in [(4, 4), (5, 3)]:
        assert_module_matches_ort(optimized, model, [x_of(2, h, w, 2)], atol=1e-6)


# --------------------------------------------------------------------------- run-time If


def layouts_if_model(pred: str):
    """y = (reshape(x^T) * w if p else x^T): one branch ends in a view, the other in a
    new tensor, so their strides differ; w is a learned weight read by one branch.
    p: "size" (L > 3, a SymBool) or "data" (sum(x) > 0, a tensor: torch.cond traces
    both branches at every call)."""
    then_y = helper.make_graph(
        [
            _node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
            _node("Reshape", ["xt", "keep"], ["xc"]),  # a copy: contiguous
            _node("Mul", ["xc", "w"], ["ty"]),
        ],
        "then_y",
        [],
        [tensor_info("ty", F32, None)],
    )
    else_y = _transpose_branch()
    if pred == "size":
        nodes = [
            _node("Shape", ["x"], ["s"]),
            _node("Gather", ["s", "one"], ["L"], axis=0),
            _node("Greater", ["L", "three"], ["p"]),
        ]
    else:
        nodes = [
            _node("ReduceSum", ["x"], ["total"], keepdims=0),
            _node("Greater", ["total", "zero_f"], ["p"]),
        ]
    nodes.append(_node("If", ["p"], ["y"], then_branch=then_y, else_branch=else_y))
    inits = [
        init("one", np.array(1, I64)),
        init("three", np.array(3, I64)),
        init("zero_f", np.array(0.0, F32)),
        init("w", x_of(4, 1)),
        init("keep", np.array([0, 4, -1], I64)),
    ]
    return make_model(
        nodes, [tensor_info("x", F32, ["N", "L", 4])], [tensor_info("y", F32, None)], inits
    )


def _layout_input(pred: str, length: int, then: bool) -> np.ndarray:
    x = x_of(2, length, 4)
    return x if pred == "size" else np.abs(x) * (1.0 if then else -1.0)


@pytest.mark.parametrize("pred", ["size", "data"])
def test_a_run_time_if_whose_branches_differ_in_layout_runs_and_trains(pred):
    model = layouts_if_model(pred)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    (cond,) = _conds(optimized)
    assert (cond.args[0].target is compare_sizes) == (pred == "size")
    cases = [(6, True), (2, False), (4, True), (1, False)]
    for length, then in cases:
        assert_module_matches_ort(optimized, model, [_layout_input(pred, length, then)], atol=1e-6)
    (w,) = [p for p in optimized.parameters() if p.requires_grad]
    for length, then in cases[:2]:
        optimized.zero_grad(set_to_none=True)
        x = torch.from_numpy(_layout_input(pred, length, then)).requires_grad_()
        optimized(x).square().sum().backward()
        assert x.grad is not None and bool(x.grad.abs().sum() > 0)
        if then:
            assert w.grad is not None and bool(w.grad.abs().sum() > 0)
        else:
            assert w.grad is None or not bool(w.grad.any())
