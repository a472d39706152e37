"""Float32 that an ONNX graph pins follows the activations under ``.half()`` / bfloat16.

The rule lives in fxsurgeon/lower/dtypes.py: a Cast to float32 of a mask (int or bool) is
converted to the dtype of the activation it meets, saturating to that dtype's range; a fill
that float16 cannot hold (float32's min) never becomes -inf. Each small graph here is checked
against onnxruntime in float32, bitwise against itself without the conversions (float32
unchanged), and in bfloat16 / float16 with `fxsurgeon.verify`'s fp64 rule, eager and under
``torch.compile(fullgraph=True)``; model.py (codegen) carries the helper.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_matches_ort, init, make_model, tensor_info

from fxsurgeon.codegen import generate
from fxsurgeon.lower.dtypes import follow_dtype
from fxsurgeon.verify import verify

B, S, V, D = 2, 5, 11, 8
FLOAT32_MIN = float(np.finfo(np.float32).min)
LOW = {"bfloat16": torch.bfloat16, "half": torch.float16}


def _weights(seed: int = 0):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(V, D)).astype(np.float32)
    dense = (rng.normal(size=(D, D)) / np.sqrt(D)).astype(np.float32)
    score = rng.normal(size=(D, 1)).astype(np.float32)
    return table, dense, score


def masked_mean_model():
    """ids, mask -> mean over the unmasked tokens of a dense layer of the embeddings; the
    mask is Cast to float (a pin) and multiplies the embeddings."""
    table, dense, _ = _weights()
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask_3"]),
        helper.make_node("Mul", ["emb", "mask_3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "one"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_3", "one"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["mean"]),
        helper.make_node("MatMul", ["mean", "dense"], ["out"]),
    ]
    return make_model(
        nodes,
        [tensor_info("ids", np.int64, ["b", "s"]), tensor_info("mask", np.int64, ["b", "s"])],
        [tensor_info("out", np.float32, None)],
        [init("table", table), init("dense", dense), init("last", [-1]), init("one", [1])],
    )


def masked_softmax_model(fill_shape=(), expanded=False):
    """Attention pooling with a float32-min fill: scores + (1 - mask) * finfo(float32).min,
    a softmax over the sequence, the weighted sum of the embeddings. ``expanded``: the fill
    is first expanded to the mask's shape (tf.fill's form), so it stays a tensor."""
    table, _, score = _weights(1)
    fill = []
    if expanded:
        fill = [
            helper.make_node("Shape", ["dropped"], ["dropped_shape"]),
            helper.make_node("Expand", ["fill", "dropped_shape"], ["fill_full"]),
        ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "score"], ["logits"]),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask_3"]),
        helper.make_node("Sub", ["one_f", "mask_3"], ["dropped"]),
        *(fill if expanded else []),
        helper.make_node("Mul", ["dropped", "fill_full" if expanded else "fill"], ["bias"]),
        helper.make_node("Add", ["logits", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["weights"], axis=1),
        helper.make_node("Mul", ["weights", "emb"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "one"], ["out"], keepdims=0),
    ]
    return make_model(
        nodes,
        [tensor_info("ids", np.int64, ["b", "s"]), tensor_info("mask", np.int64, ["b", "s"])],
        [tensor_info("out", np.float32, None)],
        [
            init("table", table),
            init("score", score),
            init("last", [-1]),
            init("one", [1]),
            init("one_f", np.float32(1.0)),
            init("fill", np.full(fill_shape, FLOAT32_MIN, np.float32)),
        ],
    )


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=(B, S)).astype(np.int64)
    mask = (rng.random((B, S)) < 0.6).astype(np.int64)
    mask[:, 0] = 1  # every row keeps a token
    mask[0, -2:] = 0  # and one row has padding
    return [ids, mask]


def _follows(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.target is follow_dtype]


def _without_follow(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The graph with each follow_dtype call replaced by its operand: float32 as lowered."""
    plain = copy.deepcopy(gm)
    for node in _follows(plain):
        node.replace_all_uses_with(node.args[0])
        plain.graph.erase_node(node)
    plain.recompile()
    return plain


CASES = {
    "masked_mean": masked_mean_model,
    "masked_softmax": masked_softmax_model,
    "expanded_fill": lambda: masked_softmax_model(expanded=True),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model = CASES[request.param]()
    inputs = _inputs()
    return request.param, assert_matches_ort(model, inputs), inputs


def test_float32_is_bitwise_unchanged(case):
    _, optimized, inputs = case
    assert _follows(optimized), "the pinned mask meets the activations: a follow_dtype call"
    x = [torch.from_numpy(i) for i in inputs]
    with torch.no_grad():
        got, plain = optimized(*x), _without_follow(optimized)(*x)
    assert got.dtype == torch.float32
    assert torch.equal(got, plain)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "fullgraph"])
@pytest.mark.parametrize("how", list(LOW))
def test_low_precision_follows_the_parameters(case, how, compiled):
    _, optimized, inputs = case
    low = copy.deepcopy(optimized).to(LOW[how])
    if compiled:
        torch._dynamo.reset()
        low = torch.compile(low, backend="eager", fullgraph=True)
    report = verify(low, optimized, inputs=[inputs, _inputs(1)])
    assert report.passed, report
    assert {str(r.dtype) for r in report.results} == {str(LOW[how]).removeprefix("torch.")}
    assert {r.rule for r in report.results} != {"allclose"}, "judged by the fp64 rule"


@pytest.mark.parametrize(
    "fill_shape, expanded",
    [((), False), ((1,), False), ((), True)],
    ids=["scalar", "one", "expanded"],
)
def test_fill_is_a_float32_literal_not_a_buffer(fill_shape, expanded):
    """The float32-min initializer is no buffer that ``.half()`` rounds to -inf: a Python
    literal (a scalar folds into the Mul) or ``torch.full`` (one element, lower/dtypes.py)."""
    optimized = assert_matches_ort(masked_softmax_model(fill_shape, expanded), _inputs())
    buffers = [b for b in optimized.buffers() if b.is_floating_point() and b.numel() == 1]
    assert not any(b.abs().item() > torch.finfo(torch.float16).max for b in buffers)
    literals = [a for n in optimized.graph.nodes for a in n.args if a == FLOAT32_MIN]
    assert len(literals) == 1
    fills = [n for n in optimized.graph.nodes if n.target is torch.full]
    assert len(fills) == int(expanded)
    half = copy.deepcopy(optimized).half()
    with torch.no_grad():
        out = half(*(torch.from_numpy(i) for i in _inputs()))
    assert torch.isfinite(out).all()


def test_model_py_carries_the_helper(case):
    _, optimized, inputs = case
    source = generate(optimized).source
    assert "def follow_dtype(" in source and "import fxsurgeon" not in source
    namespace: dict = {"__name__": "generated"}
    exec(compile(source, "<model.py>", "exec"), namespace)
    model = namespace["Model"]()
    model.load_state_dict(optimized.state_dict())
    x = [torch.from_numpy(i) for i in inputs]
    with torch.no_grad():
        assert torch.equal(model(*x), optimized(*x))
        assert torch.equal(model.half()(*x), copy.deepcopy(optimized).half()(*x))


def test_a_float32_cast_of_a_float64_input_stays_a_cast():
    """Refusal side: Cast(float64 -> float32) of an input is no pin (the input is an
    activation): it stays ``.to(torch.float32)`` and nothing follows."""
    _, dense, _ = _weights(2)
    nodes = [
        helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x32", "dense"], ["out"]),
    ]
    x64 = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["b", D])
    model = make_model(nodes, [x64], [tensor_info("out", np.float32, None)], [init("dense", dense)])
    x = np.random.default_rng(3).normal(size=(B, D))
    optimized = assert_matches_ort(model, [x])
    assert not _follows(optimized)
    casts = [n for n in optimized.graph.nodes if n.target == "to"]
    assert [n.args[1:] for n in casts] == [(torch.float32,)]


def test_a_multi_output_op_s_values_are_activations():
    """Split's (TopK's) outputs are items of a tuple, with no dtype of their own: they were
    taken for pinned float32 values, so a MatMul of one with a ConstantOfShape(float32)
    fill mixed dtypes under bfloat16/half (as index_copy did for tf2onnx's
    tensor_scatter_nd_update into zeros_like(top_k values)). The fill follows them;
    float32 stays bitwise the same."""
    nodes = [
        helper.make_node("Split", ["x", "halves"], ["a", "b"], axis=1),
        helper.make_node("Shape", ["a"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["rows"]),
        helper.make_node("Concat", ["three", "rows"], ["ones_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["ones_shape"],
            ["ones"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("MatMul", ["a", "ones"], ["m"]),
        helper.make_node("Identity", ["m"], ["y"]),
    ]
    inits = [
        init("halves", np.array([3, 3], np.int64)),
        init("zero", np.array([0], np.int64)),
        init("one", np.array([1], np.int64)),
        init("three", np.array([3], np.int64)),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", np.float32, ["N", 6])],
        [tensor_info("y", np.float32, ["N", "N"])],
        inits,
    )
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    optimized = assert_matches_ort(model, [x])
    assert _follows(optimized)
    t = torch.from_numpy(x)
    with torch.no_grad():
        assert torch.equal(optimized(t), _without_follow(optimized)(t))
        for dtype in LOW.values():
            got = copy.deepcopy(optimized).to(dtype)(t.to(dtype))
            assert got.dtype == dtype
            want = (t[:, :3].to(dtype).double() @ torch.ones(3, 4, dtype=torch.float64)).to(dtype)
            torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)


def _branch_model(pinned_inside: bool):
    """An If on a data-dependent predicate (any token kept: a torch.cond). Outside it the
    mask is Cast to float32 (a pin); inside, the then-branch adds it to the embeddings
    before a MatMul by a parameter, as Longformer's global branch scatters its attention
    into a ConstantOfShape(float32) made before the If. ``pinned_inside`` False: the branch
    reads only the embeddings (refusal side: nothing to follow there)."""
    table, dense, _ = _weights(4)
    then_nodes = [helper.make_node("MatMul", ["emb", "dense"], ["then_out"])]
    if pinned_inside:
        then_nodes = [
            helper.make_node("Add", ["emb", "mask_3"], ["summed"]),
            helper.make_node("MatMul", ["summed", "dense"], ["then_out"]),
        ]
    then_graph = helper.make_graph(
        then_nodes, "then", [], [tensor_info("then_out", np.float32, None)]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["emb"], ["else_out"])],
        "else",
        [],
        [tensor_info("else_out", np.float32, None)],
    )
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask_3"]),
        helper.make_node("ReduceSum", ["mask", "none"], ["kept"], keepdims=0),
        helper.make_node("Greater", ["kept", "zero"], ["any_kept"]),
        helper.make_node(
            "If", ["any_kept"], ["out"], then_branch=then_graph, else_branch=else_graph
        ),
    ]
    return make_model(
        nodes,
        [tensor_info("ids", np.int64, ["b", "s"]), tensor_info("mask", np.int64, ["b", "s"])],
        [tensor_info("out", np.float32, None)],
        [
            init("table", table),
            init("dense", dense),
            init("last", [-1]),
            init("none", np.array([], np.int64)),
            init("zero", np.int64(0)),
        ],
    )


@pytest.mark.parametrize("pinned_inside", [True, False], ids=["pinned", "activations_only"])
def test_a_value_pinned_outside_a_cond_is_pinned_in_its_branch(pinned_inside):
    """A branch's operand keeps the kind it has in the graph that calls the branch: the
    Cast mask is pinned inside the then-branch too, so it follows the bfloat16 / half
    embeddings it meets there (it was taken for an activation, and the float32 sum met the
    low-precision MatMul weight: mixed dtypes). Float32 is bitwise unchanged."""
    optimized = assert_matches_ort(_branch_model(pinned_inside), _inputs())
    conds = [n for n in optimized.graph.nodes if "cond" in str(n.target)]
    assert conds, "a data-dependent If is a torch.cond"
    branches = [m for m in optimized.modules() if isinstance(m, torch.fx.GraphModule)][1:]
    inside = [n for b in branches for n in _follows(b)]
    assert len(inside) == int(pinned_inside)
    x = [torch.from_numpy(i) for i in _inputs()]
    plain = copy.deepcopy(optimized)
    for branch in [m for m in plain.modules() if isinstance(m, torch.fx.GraphModule)]:
        for node in _follows(branch):
            node.replace_all_uses_with(node.args[0])
            branch.graph.erase_node(node)
        branch.recompile()
    with torch.no_grad():
        assert torch.equal(optimized(*x), plain(*x))
    for how in LOW:
        low = copy.deepcopy(optimized).to(LOW[how])
        report = verify(low, optimized, inputs=[_inputs(), _inputs(1)])
        assert report.passed, report


def _data_sized_branch_model():
    """The then-branch fills ``ConstantOfShape([count, D])`` (float32, a pin) with a size
    read from the data (how many tokens the mask keeps), adds the first `count` embedding
    rows and projects them: fake tensors cannot run it (the size is data), so its dtypes
    come from the example run, as Longformer's global branch's do."""
    table, dense, _ = _weights(5)
    then_nodes = [
        helper.make_node("ReduceSum", ["mask", "none"], ["count"], keepdims=0),
        helper.make_node("Reshape", ["count", "one"], ["count_1"]),
        helper.make_node("Concat", ["count_1", "width"], ["fill_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["fill_shape"],
            ["fill"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]),
        ),
        helper.make_node("Slice", ["rows", "zero_1", "count_1"], ["first"]),
        helper.make_node("Add", ["fill", "first"], ["summed"]),
        helper.make_node("MatMul", ["summed", "dense"], ["projected"]),
        helper.make_node("ReduceSum", ["projected", "zero_1"], ["then_out"], keepdims=1),
    ]
    else_nodes = [
        helper.make_node("MatMul", ["rows", "dense"], ["all_projected"]),
        helper.make_node("ReduceSum", ["all_projected", "zero_1"], ["else_out"], keepdims=1),
    ]
    branches = {
        f"{name}_branch": helper.make_graph(
            nodes, name, [], [tensor_info(f"{name}_out", np.float32, [1, D])]
        )
        for name, nodes in (("then", then_nodes), ("else", else_nodes))
    }
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Reshape", ["emb", "rows_shape"], ["rows"]),
        helper.make_node("ReduceSum", ["mask", "none"], ["kept"], keepdims=0),
        helper.make_node("Greater", ["kept", "zero"], ["any_kept"]),
        helper.make_node("If", ["any_kept"], ["out"], **branches),
    ]
    return make_model(
        nodes,
        [tensor_info("ids", np.int64, ["b", "s"]), tensor_info("mask", np.int64, ["b", "s"])],
        [tensor_info("out", np.float32, [1, D])],
        [
            init("table", table),
            init("dense", dense),
            init("rows_shape", np.array([-1, D], np.int64)),
            init("none", np.array([], np.int64)),
            init("zero", np.int64(0)),
            init("zero_1", np.array([0], np.int64)),
            init("one", np.array([1], np.int64)),
            init("width", np.array([D], np.int64)),
        ],
    )


def test_a_branch_sized_by_the_data_follows_too():
    optimized = assert_matches_ort(_data_sized_branch_model(), _inputs())
    branches = [m for m in optimized.modules() if isinstance(m, torch.fx.GraphModule)][1:]
    assert branches and any(_follows(b) for b in branches)
    for how in LOW:
        low = copy.deepcopy(optimized).to(LOW[how])
        report = verify(low, optimized, inputs=[_inputs(), _inputs(1)])
        assert report.passed, report
