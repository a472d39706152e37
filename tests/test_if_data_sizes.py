"""Sizes that the data decides: Longformer's global attention in small.

Longformer asks "is any token global?" (a ReduceMax of the mask) and, in the Ifs that
predicate gates, tiles its masks to ``2w + 1 + max global tokens`` columns (a shape vector
that is a Concat of constants and a number read from the data) and puts those global
columns before the band's scores; the other branch keeps the band (2w + 1 columns). So
the branches' outputs differ in one dim, which the data decides.

* a shape vector computed from data (Tile, Expand, Reshape, ConstantOfShape, Slice) is
  read as ints (unbacked sizes) where the graph does not show its elements;
* an If on a data predicate whose branches differ in a size is torch.cond with an unbacked
  size there (dims they agree on stay), eager and compiled == onnxruntime, with and without
  global tokens; branches that differ in rank are refused naming it;
* a Reshape's -1 over sizes from the data asserts their product nonzero instead of guarding;
* a weight only the branch not taken reads gets a zero gradient (torch.cond's), not None.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    init,
    make_model,
    optimize_onnx,
    tensor_info,
)

from fxsurgeon.lower.control_flow import is_cond
from fxsurgeon.pipeline import report_of

F32, I64 = np.float32, np.int64
HEADS, W = 2, 3
BAND = 2 * W + 1


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def _graph(name, nodes, out, elem=TensorProto.FLOAT):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, elem, None)])


def global_attention_model(else_rank: int = 4):
    """out = Where(tiled mask, 0, softmax(scores with `top` global columns before the band)),
    top = max over rows of the number of mask == 2 tokens; both Ifs on top > 0."""
    then_mask = _graph(
        "then_mask",
        [
            _node("Add", ["top", "band"], ["width"]),
            _node("Unsqueeze", ["width", "ax0"], ["width1"]),
            _node("Concat", ["ones2", "heads", "width1"], ["reps"], axis=0),
            _node("Tile", ["masked4", "reps"], ["tm"]),
        ],
        "tm",
        TensorProto.BOOL,
    )
    reps = "reps_local" if else_rank == 4 else "reps_rank3"
    else_nodes = [_node("Tile", ["masked4", reps], ["em"])]
    if else_rank != 4:
        else_nodes = [
            _node("Squeeze", ["masked4", "ax3"], ["m3"]),
            _node("Tile", ["m3", reps], ["em"]),
        ]
    else_mask = _graph("else_mask", else_nodes, "em", TensorProto.BOOL)
    zeros = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])
    then_scores = _graph(
        "then_scores",
        [
            _node("Shape", ["scores"], ["ss"]),
            _node("Slice", ["ss", "zero_1d", "three_1d"], ["ss3"]),
            _node("Unsqueeze", ["top", "ax0"], ["top1"]),
            _node("Concat", ["ss3", "top1"], ["zshape"], axis=0),
            _node("ConstantOfShape", ["zshape"], ["z"], value=zeros),
            _node("Concat", ["z", "scores"], ["ts"], axis=3),
        ],
        "ts",
    )
    else_scores = _graph("else_scores", [_node("Identity", ["scores"], ["es"])], "es")
    nodes = [
        _node("Greater", ["mask", "one"], ["glob"]),
        _node("Less", ["mask", "zero"], ["masked"]),
        _node("Cast", ["glob"], ["glob_i"], to=TensorProto.INT64),
        _node("ReduceSum", ["glob_i", "ax1"], ["count"], keepdims=0),
        _node("ReduceMax", ["count"], ["top"], keepdims=0),
        _node("Greater", ["top", "zero"], ["pred"]),
        _node("Unsqueeze", ["masked", "ax23"], ["masked4"]),
        _node("If", ["pred"], ["mk"], then_branch=then_mask, else_branch=else_mask),
        _node("If", ["pred"], ["sc"], then_branch=then_scores, else_branch=else_scores),
        _node("Softmax", ["sc"], ["p"], axis=-1),
        _node("Where", ["mk", "zero_f", "p"], ["out"]),
    ]
    inits = [
        init("one", np.array(1, I64)),
        init("zero", np.array(0, I64)),
        init("ax0", np.array([0], I64)),
        init("ax1", np.array([1], I64)),
        init("ax3", np.array([3], I64)),
        init("ax23", np.array([2, 3], I64)),
        init("band", np.array(BAND, I64)),
        init("ones2", np.array([1, 1], I64)),
        init("heads", np.array([HEADS], I64)),
        init("reps_local", np.array([1, 1, HEADS, BAND], I64)),
        init("reps_rank3", np.array([1, 1, HEADS], I64)),
        init("zero_1d", np.array([0], I64)),
        init("three_1d", np.array([3], I64)),
        init("zero_f", np.array(0.0, F32)),
    ]
    inputs = [
        tensor_info("mask", I64, ["B", "S"]),
        tensor_info("scores", F32, ["B", "S", HEADS, BAND]),
    ]
    return make_model(nodes, inputs, [tensor_info("out", F32, ["B", "S", HEADS, "K"])], inits)


def _case(batch: int, length: int, global_tokens: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    mask = rng.integers(-1, 2, size=(batch, length)).astype(I64)
    if global_tokens:
        mask[0, 1] = mask[-1, 0] = mask[-1, 2] = 2  # the last row has 2 (more if -1 -> 2)
    scores = rng.standard_normal((batch, length, HEADS, BAND)).astype(F32)
    return [mask, scores]


CASES = [(2, 5, False), (3, 4, True), (1, 6, True), (2, 9, False)]


def test_ifs_whose_branches_differ_in_a_data_size_match_onnxruntime_eager_and_compiled():
    model = global_attention_model()
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    conds = [n for n in optimized.graph.nodes if is_cond(n)]
    assert len(conds) == 2
    for k, spec in enumerate(CASES):
        assert_module_matches_ort(optimized, model, _case(*spec, seed=k))
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for k, spec in enumerate(CASES):
        assert_module_matches_ort(compiled, model, _case(*spec, seed=10 + k))
    torch._dynamo.reset()


def test_branches_of_different_ranks_are_refused_naming_the_if():
    model = global_attention_model(else_rank=3)
    optimized = optimize_onnx(model)
    kept = report_of(optimized).unconverted["OnnxIf"]
    assert any("different dtypes or ranks" in why for why in kept), kept


def sliced_reshape_model():
    """y = Reshape(x[:, :top + 1], [B, top + 1, -1]) * 2 (top = max(k)): a Slice end and a
    Reshape shape read from the data; the -1 is divided by sizes the data decides."""
    nodes = [
        _node("ReduceMax", ["k"], ["top"], keepdims=1),
        _node("Add", ["top", "one_1d"], ["end"]),
        _node("Slice", ["x", "zero_1d", "end", "one_1d"], ["xs"]),
        _node("Shape", ["x"], ["s"]),
        _node("Slice", ["s", "zero_1d", "one_1d"], ["b"]),
        _node("Concat", ["b", "end", "minus_1d"], ["target"], axis=0),
        _node("Reshape", ["xs", "target"], ["r"]),
        _node("Expand", ["r", "target_e"], ["y"]),
    ]
    inits = [
        init("zero_1d", np.array([0], I64)),
        init("one_1d", np.array([1], I64)),
        init("minus_1d", np.array([-1], I64)),
        init("target_e", np.array([1, 1, 1], I64)),
    ]
    inputs = [tensor_info("x", F32, ["B", "T", 2, 3]), tensor_info("k", I64, ["N"])]
    return make_model(nodes, inputs, [tensor_info("y", F32, ["B", "L", 6])], inits)


def test_shape_vectors_read_from_the_data_match_onnxruntime():
    model = sliced_reshape_model()
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    rng = np.random.default_rng(3)
    cases = [
        [rng.standard_normal((2, 7, 2, 3)).astype(F32), np.array([1, 4, 2], I64)],
        [rng.standard_normal((3, 5, 2, 3)).astype(F32), np.array([0], I64)],
        [rng.standard_normal((1, 4, 2, 3)).astype(F32), np.array([2, 1], I64)],
    ]
    for case in cases:
        assert_module_matches_ort(optimized, model, case)
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for case in cases:
        assert_module_matches_ort(compiled, model, case)
    torch._dynamo.reset()


def test_a_shape_vector_of_a_length_the_data_decides_is_refused():
    """Reshape to NonZero's count of indices: its rank would be the data's, no shape vector."""
    nodes = [
        _node("NonZero", ["k"], ["nz"]),
        _node("Reshape", ["nz", "minus_1d"], ["idx"]),
        _node("Reshape", ["x", "idx"], ["y"]),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, [6]), tensor_info("k", I64, [3])],
        [tensor_info("y", F32, ["R"])],
        [init("minus_1d", np.array([-1], I64))],
    )
    optimized = optimize_onnx(model)
    kept = report_of(optimized).unconverted
    assert "Reshape" in str(kept.get("OnnxReshape", "")), kept
    assert "a length known now" in str(kept["OnnxReshape"])


def test_a_weight_only_the_branch_not_taken_reads_gets_a_zero_gradient():
    """then: x @ w1, else: x @ w2 on sum(x) > 0: the eager run (run_cond) gives both weights a
    gradient, zero for the branch not taken, as torch.cond does; the values are the branch's."""
    then = _graph("then", [_node("MatMul", ["x", "w1"], ["t"])], "t")
    other = _graph("else", [_node("MatMul", ["x", "w2"], ["e"])], "e")
    nodes = [
        _node("ReduceSum", ["x"], ["total"], keepdims=0),
        _node("Greater", ["total", "zero_f"], ["p"]),
        _node("If", ["p"], ["y"], then_branch=then, else_branch=other),
    ]
    rng = np.random.default_rng(0)
    inits = [
        init("w1", rng.standard_normal((3, 4)).astype(F32)),
        init("w2", rng.standard_normal((3, 4)).astype(F32)),
        init("zero_f", np.array(0.0, F32)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 3])], [tensor_info("y", F32, ["N", 4])], inits
    )
    optimized = optimize_onnx(model)
    params = dict(optimized.named_parameters())
    assert len(params) == 2
    x = np.abs(rng.standard_normal((2, 3))).astype(F32)
    assert_module_matches_ort(optimized, model, [x])
    out = optimized(torch.from_numpy(x))
    out.square().sum().backward()
    grads = {name: p.grad for name, p in params.items()}
    assert all(g is not None for g in grads.values()), grads
    assert sorted(bool(g.any()) for g in grads.values()) == [False, True]
    with torch.no_grad():
        assert torch.equal(out, optimized(torch.from_numpy(x)))


def unpad_model(double_else: bool = False, pad_in_then: bool = False):
    """y = (xp[:, :-pad] if float(pad) > 0 else xp) + x, xp = (x + m) padded to a multiple of 4
    (Longformer's unpad; the pad is computed from the mask's length, which the Add ties to
    x's): the branches' lengths differ as expressions, L and L + pad, and agree under the
    predicate (pad is 0 when it is false). With `double_else` the else branch gives xp twice
    (Concat), which does not agree. With `pad_in_then` the If is LED's: xp if pad > 0 else
    x + m (L + pad and L), and y = that + 1."""
    then = _graph(
        "then",
        [
            _node("Neg", ["pad1"], ["negpad"]),
            _node("Slice", ["xp", "zero_1d", "negpad", "one_1d"], ["t"]),
        ],
        "t",
    )
    other = _graph("else", [_node("Identity", ["xp"], ["e"])], "e")
    if double_else:
        other = _graph("else", [_node("Concat", ["xp", "xp"], ["e"], axis=1)], "e")
    if pad_in_then:
        then = _graph("then", [_node("Identity", ["xp"], ["t"])], "t")
        other = _graph("else", [_node("Identity", ["xm"], ["e"])], "e")
    nodes = [
        _node("Add", ["x", "m"], ["xm"]),
        _node("Shape", ["m"], ["s"]),
        _node("Gather", ["s", "one"], ["L"], axis=0),
        _node("Mod", ["L", "four"], ["r"]),
        _node("Sub", ["four", "r"], ["q"]),
        _node("Mod", ["q", "four"], ["pad"]),
        _node("Unsqueeze", ["pad", "zero_1d"], ["pad1"]),
        _node("Concat", ["zeros3", "pad1"], ["pads"], axis=0),
        _node("Pad", ["xm", "pads"], ["xp"]),
        _node("Cast", ["pad"], ["pad_f"], to=TensorProto.FLOAT),
        _node("Greater", ["pad_f", "zero_f"], ["p"]),
        _node("If", ["p"], ["y0"], then_branch=then, else_branch=other),
        _node("Add", ["y0", "one_f" if pad_in_then else "x"], ["y"]),
    ]
    inits = [
        init("one_f", np.array(1.0, F32)),
        init("one", np.array(1, I64)),
        init("four", np.array(4, I64)),
        init("zero_f", np.array(0.0, F32)),
        init("zero_1d", np.array([0], I64)),
        init("one_1d", np.array([1], I64)),
        init("zeros3", np.array([0, 0, 0], I64)),
    ]
    inputs = [tensor_info("x", F32, ["B", "L"]), tensor_info("m", F32, ["B", "L2"])]
    return make_model(nodes, inputs, [tensor_info("y", F32, ["B", "P"])], inits)


@pytest.mark.parametrize("pad_in_then", [False, True])
def test_branches_whose_sizes_agree_under_a_size_predicate_match_onnxruntime(pad_in_then):
    model = unpad_model(pad_in_then=pad_in_then)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    rng = np.random.default_rng(1)
    cases = [[rng.standard_normal((2, n)).astype(F32) for _ in "xm"] for n in (4, 5, 7, 8, 9)]
    for case in cases:
        assert_module_matches_ort(optimized, model, case)
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager", dynamic=True)
    for case in cases:
        assert_module_matches_ort(compiled, model, case)
    torch._dynamo.reset()


def test_branches_whose_sizes_disagree_under_a_size_predicate_are_a_python_branch():
    """The else branch doubles xp: 2 L under its outcome, L for the then branch. No
    torch.cond gives both (cond_outputs refuses them); the last pass writes the If as
    `size_branch`, exact on the sizes the model is defined at (pad > 0: the else branch's
    2 L does not broadcast with x)."""
    from fxsurgeon.lower.control_flow import size_branch

    model = unpad_model(double_else=True)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    assert sum(n.target is size_branch for n in optimized.graph.nodes) == 1
    rng = np.random.default_rng(2)
    for n in (5, 6, 7, 9):
        case = [rng.standard_normal((2, n)).astype(F32) for _ in "xm"]
        assert_module_matches_ort(optimized, model, case)


def test_a_strided_slice_begin_by_masks_keeps_its_constant_elements():
    """tf2onnx's strided_slice ``x[:, :, top:]`` in the branch of an If on top > 0: begin is
    Where(strides < 0 and begin_mask, max, Concat(0, 0, top)), a Where of a constant
    condition. Its constant elements stay ints (one int read from the data, not three: a
    slice whose every start the data decides made torch.cond's tracing fail), eager and
    compiled == onnxruntime."""
    then = _graph(
        "then",
        [
            _node("Less", ["strides", "zero_1d"], ["negative"]),
            _node("And", ["negative", "begin_mask"], ["masked"]),
            _node("Unsqueeze", ["top", "zero_1d"], ["top1"]),
            _node("Concat", ["zero_1d", "zero_1d", "top1"], ["begin"], axis=0),
            _node("Where", ["masked", "big", "begin"], ["starts"]),
            _node("Slice", ["x", "starts", "ends", "axes", "strides"], ["t"]),
        ],
        "t",
    )
    other = _graph("else", [_node("Mul", ["x", "three"], ["e"])], "e")
    nodes = [
        _node("ReduceMax", ["k"], ["top"], keepdims=0),
        _node("Greater", ["top", "zero"], ["p"]),
        _node("If", ["p"], ["y"], then_branch=then, else_branch=other),
    ]
    inits = [
        init("zero", np.array(0, I64)),
        init("zero_1d", np.array([0], I64)),
        init("strides", np.array([1, 1, 1], I64)),
        init("begin_mask", np.array([True, True, False])),
        init("big", np.array(10**9, I64)),
        init("ends", np.array([10**9] * 3, I64)),
        init("axes", np.array([0, 1, 2], I64)),
        init("three", np.array(3.0, F32)),
    ]
    inputs = [tensor_info("x", F32, ["B", 3, "T"]), tensor_info("k", I64, ["N"])]
    model = make_model(nodes, inputs, [tensor_info("y", F32, ["B", 3, "R"])], inits)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    then_gm = optimized.if_then_1
    assert sum(n.target == "item" for n in then_gm.graph.nodes) == 1, then_gm.code
    rng = np.random.default_rng(2)
    cases = [
        [rng.standard_normal((2, 3, 6)).astype(F32), np.array([2, 1], I64)],
        [rng.standard_normal((1, 3, 5)).astype(F32), np.array([0, -1], I64)],
        [rng.standard_normal((3, 3, 7)).astype(F32), np.array([4], I64)],
    ]
    for case in cases:
        assert_module_matches_ort(optimized, model, case)
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for case in cases:
        assert_module_matches_ort(compiled, model, case)
    torch._dynamo.reset()


def test_a_reshape_by_a_data_size_in_a_branch_compiles_when_the_other_runs():
    """If top > 0: the sum over top of Reshape(Tile(x, [1, top, 1, 1]), [B, top, -1]), else x
    flat; top read outside the If too (a Range over it, as Longformer's). The -1 is the
    element count over the sizes (T * 6, exact), not an assert that B * top is nonzero:
    torch.compile would check that where top is read, also when the else branch runs."""
    then = _graph(
        "then",
        [
            _node("Concat", ["one_1d", "top1", "one_1d", "one_1d"], ["reps"], axis=0),
            _node("Tile", ["x", "reps"], ["xs"]),
            _node("Shape", ["x"], ["s"]),
            _node("Slice", ["s", "zero_1d", "one_1d"], ["b"]),
            _node("Concat", ["b", "top1", "minus_1d"], ["target"], axis=0),
            _node("Reshape", ["xs", "target"], ["r"]),
            _node("ReduceSum", ["r", "one_1d"], ["t"], keepdims=0),
        ],
        "t",
    )
    other = _graph(
        "else",
        [
            _node("Reshape", ["x", "flat"], ["e"]),
        ],
        "e",
    )
    nodes = [
        _node("ReduceMax", ["k"], ["top"], keepdims=0),
        _node("Unsqueeze", ["top", "zero_1d"], ["top1"]),
        _node("Range", ["zero", "top", "one"], ["steps"]),
        _node("Cast", ["steps"], ["rf"], to=TensorProto.FLOAT),
        _node("Greater", ["top", "zero"], ["p"]),
        _node("If", ["p"], ["y"], then_branch=then, else_branch=other),
    ]
    inits = [
        init("zero", np.array(0, I64)),
        init("one", np.array(1, I64)),
        init("zero_1d", np.array([0], I64)),
        init("one_1d", np.array([1], I64)),
        init("minus_1d", np.array([-1], I64)),
        init("flat", np.array([0, -1], I64)),
    ]
    inputs = [tensor_info("x", F32, ["B", "T", 2, 3]), tensor_info("k", I64, ["N"])]
    outputs = [tensor_info("y", F32, ["B", "W"]), tensor_info("rf", F32, ["R"])]
    model = make_model(nodes, inputs, outputs, inits)
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    rng = np.random.default_rng(4)
    cases = [
        [rng.standard_normal((2, 5, 2, 3)).astype(F32), np.array([0, -2], I64)],
        [rng.standard_normal((3, 6, 2, 3)).astype(F32), np.array([2, 4], I64)],
        [rng.standard_normal((1, 4, 2, 3)).astype(F32), np.array([0], I64)],
    ]
    for case in cases:
        assert_module_matches_ort(optimized, model, case)
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for case in cases:
        assert_module_matches_ort(compiled, model, case)
    torch._dynamo.reset()
