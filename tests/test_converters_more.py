"""More of fxsurgeon's converters and lowerings against onnxruntime: Loop with a trip count
(static, and from a run-time size with tf2onnx's repeated bound as its condition), and the
Loops whose condition the proof does not cover, which run by the spec (`OnnxWhileLoop`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import (
    assert_lowered,
    assert_matches_ort,
    assert_module_matches_ort,
    init,
    make_model,
    run_ort,
    tensor_info,
)

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.lower.loop import run_loop
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(11)


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def bool_info(name):
    return helper.make_tensor_value_info(name, TensorProto.BOOL, [])


# -- Loop ------------------------------------------------------------------------------------


def rnn_loop_model(
    trip: str,
    cond_nodes=(),
    cond_out="c_in",
    cond_init="",
    extra_inits=(),
    outer_nodes=(),
    steps="T",
):
    """An RNN written as tf2onnx writes Keras's while loop: carried (time, h, T), scan output h.

    x: [T, N, 3]; h_{t+1} = tanh(x[time] @ W + h_t @ R); ``trip`` names the trip count M.
    """
    body_nodes = [
        helper.make_node("Add", ["time", "one"], ["time_next"]),
        helper.make_node("Gather", ["x", "time"], ["x_t"], axis=0),
        helper.make_node("MatMul", ["x_t", "W"], ["xw"]),
        helper.make_node("MatMul", ["h", "R"], ["hr"]),
        helper.make_node("Add", ["xw", "hr"], ["pre"]),
        # Split-13 (split sizes as an input): converted at the model's opset, not the newest.
        helper.make_node("Split", ["pre", "halves"], ["lo", "hi"], axis=1),
        helper.make_node("Concat", ["hi", "lo"], ["swapped"], axis=1),
        helper.make_node("Tanh", ["swapped"], ["h_next"]),
        helper.make_node("Identity", ["h_next"], ["h_scan"]),
        helper.make_node("Identity", ["T"], ["T_out"]),
        *cond_nodes,
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            tensor_info("i", I64, []),
            bool_info("c_in"),
            tensor_info("time", I64, []),
            tensor_info("h", F32, ["N", 4]),
            tensor_info("T", I64, []),
        ],
        [
            bool_info(cond_out),
            tensor_info("time_next", I64, []),
            tensor_info("h_next", F32, ["N", 4]),
            tensor_info("T_out", I64, []),
            tensor_info("h_scan", F32, ["N", 4]),
        ],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["steps"], axis=0),
        helper.make_node("Gather", ["shape", "one"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero1"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "four1"], ["h_shape"], axis=0),
        helper.make_node("Expand", ["zerof", "h_shape"], ["h0"]),
        *outer_nodes,
        helper.make_node(
            "Loop",
            [trip, cond_init, "zero", "h0", "steps"],
            ["time_end", "h_end", "T_end", "hs"],
            body=body,
        ),
        # Identity: onnx2torch returns a multi-output node whole when graph outputs are its outputs.
        helper.make_node("Identity", ["h_end"], ["h_last"]),
        helper.make_node("Identity", ["hs"], ["h_all"]),
    ]
    inits = [
        init("W", rnd(3, 4)),
        init("R", rnd(4, 4) * 0.5),
        init("zero", np.array(0, I64)),
        init("one", np.array(1, I64)),
        init("zero1", np.array([0], I64)),
        init("four1", np.array([4], I64)),
        init("zerof", np.array(0.0, F32)),
        init("halves", np.array([2, 2], I64)),
        *extra_inits,
    ]
    outputs = [tensor_info("h_last", F32, ["N", 4]), tensor_info("h_all", F32, None)]
    return make_model(nodes, [tensor_info("x", F32, [steps, "N", 3])], outputs, inits)


def name_loop(model, name):
    next(n for n in model.graph.node if n.op_type == "Loop").name = name


# tf2onnx's condition: counter < T and time + 1 < T (T carried through, M the same size).
TF_COND = [
    helper.make_node("Cast", ["i"], ["i_f"], to=TensorProto.FLOAT),
    helper.make_node("Cast", ["T"], ["T_f"], to=TensorProto.FLOAT),
    helper.make_node("Less", ["i_f", "T_f"], ["below_count"]),
    helper.make_node("Less", ["time_next", "T"], ["below_time"]),
    helper.make_node("And", ["below_count", "below_time"], ["c_out"]),
]


def tf_style_loop_model():
    go = helper.make_node("Less", ["zero", "steps"], ["go"])
    return rnn_loop_model("steps", TF_COND, "c_out", "go", outer_nodes=[go])


def test_loop_over_a_run_time_length_with_tf2onnx_condition_matches_onnxruntime():
    model = tf_style_loop_model()
    for steps, batch in ((5, 2), (3, 3), (1, 2)):
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    assert_lowered(optimized)
    assert run_loop in {n.target for n in optimized.graph.nodes}
    # The weights (Loop operands read by the body from outside) become parameters.
    assert sum(p.numel() for p in optimized.parameters()) == 3 * 4 + 4 * 4


def test_lowered_loop_compiles_in_one_graph_and_gives_gradients():
    optimized = fxsurgeon.optimize(from_onnx(tf_style_loop_model()))
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for steps, batch in ((4, 2), (6, 3)):
        x = torch.from_numpy(rnd(steps, batch, 3))
        for got, want in zip(compiled(x), optimized(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    x = torch.from_numpy(rnd(4, 2, 3))
    optimized(x)[0].sum().backward()
    grads = [p.grad for p in optimized.parameters()]
    assert grads and all(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_one_liner_onnx2torch_convert_converts_the_loop_body_at_the_model_opset():
    """``optimize(onnx2torch.convert(model))``: no fxsurgeon.from_onnx to record the opset."""
    from fxsurgeon._compat import import_onnx2torch

    model = tf_style_loop_model()
    x = rnd(3, 2, 3)
    gm = import_onnx2torch().convert(model)
    optimized = fxsurgeon.optimize(gm, example_inputs=(torch.from_numpy(x),))
    assert_lowered(optimized)
    got = optimized(torch.from_numpy(x))
    for g, e in zip(got, run_ort(model, [x]), strict=True):
        np.testing.assert_allclose(g.detach().numpy(), e, atol=1e-5, rtol=0)


def test_loop_with_a_static_trip_count_and_no_condition():
    model = rnn_loop_model("three", extra_inits=[init("three", np.array(3, I64))], steps=4)
    for batch in (2, 5):
        optimized = assert_matches_ort(model, [rnd(4, batch, 3)])
    assert_lowered(optimized)


def test_loop_whose_condition_passes_its_input_through_runs_all_steps():
    model = rnn_loop_model("steps", cond_nodes=[], cond_out="c_in")
    for steps, batch in ((4, 2), (2, 3)):
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    assert_lowered(optimized)


@pytest.mark.parametrize(
    "cond_nodes, inits, lowers",
    [
        # Stops after two steps whatever M is.
        (
            [helper.make_node("Less", ["time_next", "two"], ["c_out"])],
            [init("two", np.array(2, I64))],
            True,
        ),
        # Reads the data: a ReduceSum of the state (and a scan output, whose length it decides).
        (
            [
                helper.make_node("ReduceSum", ["h_next"], ["s"], keepdims=0),
                helper.make_node("Less", ["s", "big"], ["c_out"]),
            ],
            [init("big", np.array(1.0, F32))],
            False,
        ),
        # time + 2 < T is false after step M - 2.
        (
            [
                helper.make_node("Add", ["time_next", "one"], ["t2"]),
                helper.make_node("Less", ["t2", "T"], ["c_out"]),
            ],
            [],
            True,
        ),
    ],
    ids=["two", "data", "ahead"],
)
def test_loop_whose_condition_may_stop_it_early_runs_by_the_spec(cond_nodes, inits, lowers):
    """M and a condition that may stop the loop before M: `OnnxWhileLoop`, both bounds."""
    model = rnn_loop_model("steps", cond_nodes, "c_out", extra_inits=inits)
    name_loop(model, "my_loop")
    for steps, batch in ((5, 2), (3, 3)):
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    if lowers:
        assert_lowered(optimized)
    else:
        assert list(fxsurgeon.report_of(optimized).unconverted) == ["OnnxWhileLoop"]


def test_while_loop_without_trip_count_runs_by_the_spec():
    """tf2onnx's condition compares the step and T cast to float: not decided as a
    comparison of sizes (two rounded sizes), so the loop with its scan output is kept,
    saying why; the converted module computes the spec."""
    go = init("go", np.array(True))
    model = rnn_loop_model("", TF_COND, "c_out", cond_init="go", extra_inits=[go])
    for steps, batch in ((4, 2), (2, 3)):
        optimized = assert_matches_ort(model, [rnd(steps, batch, 3)])
    (why,) = fxsurgeon.report_of(optimized).unconverted["OnnxWhileLoop"]
    assert "scan outputs" in why and "the body's condition reads tensor data" in why


# -- GatherND / ScatterND -----------------------------------------------------------------


def model_at(nodes, inputs, outputs, inits=(), opset=17):
    """`make_model` at another opset (ScatterND's max/min need 18, Resize-10 needs 10)."""
    return make_model(nodes, inputs, outputs, inits, opset=opset)


def indices_into(sizes, lead, negative=True):
    """Random indices of shape lead + [len(sizes)], some negative (counting from the end)."""
    parts = [rng.integers(-s if negative else 0, s, size=lead) for s in sizes]
    return np.stack(parts, axis=-1).astype(I64)


@pytest.mark.parametrize(
    "batch_dims, data_shape, index_lead, depth",
    [
        (0, [5, 4, 3], [2, 3], 2),  # picks [3]-vectors
        (0, [5, 4], [6], 2),  # picks scalars
        (1, [2, 6, 3], [2, 4], 1),  # ViT-MAE: kept patches per batch row
        (1, [2, 5, 4, 3], [2, 3], 2),
        (2, [2, 3, 5, 2], [2, 3, 4], 1),
    ],
)
def test_gather_nd_with_batch_dims_matches_onnxruntime(batch_dims, data_shape, index_lead, depth):
    node = helper.make_node("GatherND", ["data", "idx"], ["y"], batch_dims=batch_dims)
    data_dims = ["N", *data_shape[1:]]
    index_dims = (["N"] if batch_dims else [index_lead[0]]) + [
        *index_lead[1:],
        depth,
    ]
    model = make_model(
        [node],
        [tensor_info("data", F32, data_dims), tensor_info("idx", I64, index_dims)],
        [tensor_info("y", F32, None)],
    )
    for n in (data_shape[0], data_shape[0] + 2):
        data = rnd(n, *data_shape[1:])
        lead = [n if batch_dims else index_lead[0], *index_lead[1:]]
        sizes = data.shape[batch_dims : batch_dims + depth]
        optimized = assert_matches_ort(model, [data, indices_into(sizes, lead)])
    assert_lowered(optimized)


def test_gather_nd_batch_dims_of_unrelated_symbols_lower_and_compile():
    """The spec makes data's and indices' batch dims equal, but the graph may name them by
    different symbols (TFGPT2DoubleHeadsModel: data [A, B, S, D] reshaped from the flat
    batch, indices [C, 3, 1] from the mc_token_ids input): the lowering counts the batch
    on the indices, so no equation between the symbols is needed; a batch the data lacks
    is an error, as in onnxruntime."""
    node = helper.make_node("GatherND", ["data", "idx"], ["y"], batch_dims=2)
    model = make_model(
        [node],
        [tensor_info("data", F32, ["A", "B", "S", 4]), tensor_info("idx", I64, ["C", 3, 1])],
        [tensor_info("y", F32, None)],
    )
    for n, s in ((1, 5), (2, 7)):
        idx = rng.integers(-s, s, size=(n, 3, 1)).astype(I64)
        optimized = assert_matches_ort(model, [rnd(n, 3, s, 4), idx])
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    data, idx = rnd(3, 3, 6, 4), rng.integers(0, 6, size=(3, 3, 1)).astype(I64)
    torch.testing.assert_close(
        compiled(torch.from_numpy(data), torch.from_numpy(idx)),
        torch.from_numpy(run_ort(model, [data, idx])[0]),
    )
    more = rng.integers(0, 6, size=(4, 3, 1)).astype(I64)  # 4 batch rows, data has 3
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        run_ort(model, [data, more])
    with pytest.raises(IndexError):
        optimized(torch.from_numpy(data), torch.from_numpy(more))


def test_gather_nd_without_batch_dims_is_one_index_and_refuses_out_of_range():
    """``batch_dims=0``: ``data[idx[..., 0], idx[..., 1]]``, one indexing op (the
    flattening path's modulo made an out-of-range index a silent wrap); an index out
    of range is an error, as in onnxruntime, not another row."""
    import operator

    node = helper.make_node("GatherND", ["data", "idx"], ["y"])
    model = make_model(
        [node],
        [tensor_info("data", F32, ["N", 4, 3]), tensor_info("idx", I64, ["Q", 2])],
        [tensor_info("y", F32, None)],
    )
    data = rnd(5, 4, 3)
    optimized = assert_matches_ort(model, [data, np.array([[0, -1], [-5, 3], [4, 0]], I64)])
    ops = [n.target for n in optimized.graph.nodes if n.op == "call_function"]
    assert ops.count(operator.getitem) == 3 and torch.remainder not in ops, ops
    outside = np.array([[5, 0]], I64)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        run_ort(model, [data, outside])
    with pytest.raises(IndexError):
        optimized(torch.from_numpy(data), torch.from_numpy(outside))


def scatter_model(reduction, depth, data_shape, lead):
    attrs = {} if reduction == "none" else {"reduction": reduction}
    node = helper.make_node("ScatterND", ["data", "idx", "upd"], ["y"], **attrs)
    updates_dims = [*lead, *data_shape[depth:]]
    return model_at(
        [node],
        [
            tensor_info("data", F32, ["N", *data_shape[1:]]),
            tensor_info("idx", I64, [*lead, depth]),
            tensor_info("upd", F32, updates_dims),
        ],
        [tensor_info("y", F32, None)],
        opset=18,
    )


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("depth, data_shape, lead", [(1, [6, 3], [4]), (2, [5, 4, 2], [3, 2])])
def test_scatter_nd_every_reduction_matches_onnxruntime(reduction, depth, data_shape, lead):
    model = scatter_model(reduction, depth, data_shape, lead)
    for n in (data_shape[0], data_shape[0] + 3):
        shape = [n, *data_shape[1:]]
        count = int(np.prod(lead))
        if reduction == "none":  # distinct targets: duplicates are undefined without a reduction
            flat = rng.permutation(int(np.prod(shape[:depth])))[:count]
            idx = np.stack(np.unravel_index(flat, shape[:depth]), -1).reshape(*lead, depth)
            idx = idx - np.array(shape[:depth]) * (rng.random(idx.shape) < 0.5)  # some negative
        else:  # repeated targets: the reduction combines them
            idx = indices_into(shape[:depth], lead)
            idx.reshape(-1, depth)[1] = idx.reshape(-1, depth)[0]
        updates = rnd(*lead, *shape[depth:])
        optimized = assert_matches_ort(model, [rnd(*shape), idx.astype(I64), updates])
    assert_lowered(optimized)


def test_gather_and_scatter_nd_compile_in_one_graph():
    """No index is read on the host: both run under torch.compile(fullgraph=True)."""
    gather = helper.make_node("GatherND", ["data", "idx"], ["g"], batch_dims=1)
    scatter = helper.make_node("ScatterND", ["data", "idx2", "upd"], ["s"], reduction="add")
    model = model_at(
        [gather, scatter],
        [
            tensor_info("data", F32, ["N", 6, 3]),
            tensor_info("idx", I64, ["N", 4, 1]),
            tensor_info("idx2", I64, [5, 2]),
            tensor_info("upd", F32, [5, 3]),
        ],
        [tensor_info("g", F32, None), tensor_info("s", F32, None)],
        opset=16,
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for n in (2, 3):
        inputs = [rnd(n, 6, 3), indices_into([6], [n, 4]), indices_into([n, 6], [5]), rnd(5, 3)]
        expected = run_ort(model, inputs)
        got = compiled(*(torch.from_numpy(i) for i in inputs))
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g.numpy(), e, atol=1e-5, rtol=0)


# -- Einsum ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("bij,bjk->bik", [["N", 3, 4], ["N", 4, 2]]),  # batched matmul
        ("ij,jk", [[3, 4], [4, "N"]]),  # implicit output: letters once, sorted
        ("ba,ca", [["N", 3], [2, 3]]),  # implicit output sorted (a summed): "bc"
        ("...ij,...jk->...ik", [["N", 2, 3, 4], [1, 2, 4, 5]]),  # ellipsis, broadcast batch
        ("...ii->...i", [["N", 3, 3]]),  # diagonal
        ("ii", [[4, 4]]),  # trace, implicit scalar output
        ("i i ->", [[4, 4]]),  # spaces
        ("bi,bi->b", [["N", 5], ["N", 5]]),  # row dot products
        ("i,j->ij", [["N"], [3]]),  # outer product
        ("bhqd,bhkd->bhqk", [["N", 2, 3, 4], ["N", 2, 5, 4]]),  # attention scores
        ("ij...,jk...->ik...", [[2, 3, "N"], [3, 4, 1]]),  # trailing ellipsis, size-1 broadcast
        ("Ab,bC->AC", [["N", 3], [3, 2]]),  # upper-case letters
        ("iij->j", [[3, 3, "N"]]),  # repeated index, summed diagonal
        ("...tf,fg->...tg", [["N", 3, 4], [4, 2]]),  # a matrix product: torch.matmul
        ("btf,fg->btg", [["N", 3, 4], [4, 2]]),
        ("...tf,gf->...tg", [["N", 3, 4], [2, 4]]),  # the weight transposed: stays einsum
        ("btf,fg->bgt", [["N", 3, 4], [4, 2]]),  # output reordered: stays einsum
    ],
)
def test_einsum_every_form_matches_onnxruntime(equation, shapes):
    names = [f"x{k}" for k in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation)
    model = make_model(
        [node],
        [tensor_info(n, F32, s) for n, s in zip(names, shapes, strict=True)],
        [tensor_info("y", F32, None)],
    )
    for size in (2, 4):
        inputs = [rnd(*[size if d == "N" else d for d in s]) for s in shapes]
        optimized = assert_matches_ort(model, inputs)
    assert_lowered(optimized)


def test_einsum_by_a_weight_matrix_is_a_linear():
    """tf.einsum("...tf,fg->...tg", h, kernel): a matrix product by a learned matrix, so
    one F.linear with the kernel as its (transposed) weight, the kernel a parameter."""
    node = helper.make_node("Einsum", ["x", "w"], ["y"], equation="...tf,fg->...tg")
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", "T", 4])],
        [tensor_info("y", F32, None)],
        [init("w", rnd(4, 3))],
    )
    for shape in ((2, 5, 4), (1, 3, 4)):
        optimized = assert_matches_ort(model, [rnd(*shape)])
    targets = {n.target for n in optimized.graph.nodes if n.op == "call_function"}
    assert torch.nn.functional.linear in targets and torch.einsum not in targets
    assert fxsurgeon.report_of(optimized).trainable_after == 12


@pytest.mark.parametrize(
    "equation, x_shape, w_shape, swap",
    [
        ("td,dnh->tnh", ["T", 4], [4, 2, 3], False),  # Funnel's r_kernel: N of two axes
        ("btnh,nhd->btd", ["N", "T", 2, 3], [2, 3, 4], False),  # heads merged: C of two axes
        ("...d,dnh->...nh", ["N", "T", 4], [4, 2, 3], False),  # ellipsis on x
        ("dnh,btd->btnh", ["N", "T", 4], [4, 2, 3], True),  # the kernel written first
    ],
)
def test_einsum_by_a_kernel_of_several_axes_is_a_linear(equation, x_shape, w_shape, swap):
    """A Dense product whose kernel has several contracted or output axes (x ends with the
    kernel's leading axes, the output is the rest of x then the kernel's other axes) is one
    F.linear with the kernel as a [prod(C), prod(N)] matrix, the kernel one parameter."""
    names = ["w", "x"] if swap else ["x", "w"]
    node = helper.make_node("Einsum", names, ["y"], equation=equation)
    w = rnd(*w_shape)
    model = make_model(
        [node], [tensor_info("x", F32, x_shape)], [tensor_info("y", F32, None)], [init("w", w)]
    )
    for sizes in ({"N": 2, "T": 5}, {"N": 1, "T": 3}):
        shape = [sizes.get(d, d) for d in x_shape]
        optimized = assert_matches_ort(model, [rnd(*shape)])
    targets = [n.target for n in optimized.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.nn.functional.linear) == 1 and torch.einsum not in targets
    assert fxsurgeon.report_of(optimized).trainable_after == w.size


@pytest.mark.parametrize(
    "equation, x_shape, w_shape, why",
    [
        ("tde,edn->tn", ["T", 2, 3], [3, 2, 4], "contracted axes in another order"),
        ("td,ndh->tnh", ["T", 4], [2, 4, 3], "the contracted axis is not the kernel's first"),
        ("tdh,dnh->tn", ["T", 4, 3], [4, 2, 3], "h is contracted but not a leading kernel axis"),
        ("td,dnh->thn", ["T", 4], [4, 2, 3], "output axes reordered"),
        ("btd,dbn->btn", ["B", "T", 4], [4, 2, 3], "a batch letter shared with the kernel"),
    ],
)
def test_einsum_that_is_no_dense_product_stays_einsum(equation, x_shape, w_shape, why):
    """Refusal: an einsum by a kernel that is not x's trailing axes against the kernel's
    leading ones, in order, with the output in x-then-kernel order, stays torch.einsum
    (and still matches onnxruntime)."""
    node = helper.make_node("Einsum", ["x", "w"], ["y"], equation=equation)
    model = make_model(
        [node],
        [tensor_info("x", F32, x_shape)],
        [tensor_info("y", F32, None)],
        [init("w", rnd(*w_shape))],
    )
    shape = [{"T": 5, "B": 2}.get(d, d) for d in x_shape]
    optimized = assert_matches_ort(model, [rnd(*shape)])
    targets = [n.target for n in optimized.graph.nodes if n.op == "call_function"]
    assert torch.einsum in targets and torch.nn.functional.linear not in targets, why


def test_einsum_of_several_axes_by_an_activation_stays_einsum():
    """Refusal: with both operands computed, a product over several axes is not a Dense
    layer (no kernel to store as a matrix): it stays torch.einsum."""
    node = helper.make_node("Einsum", ["x", "y"], ["z"], equation="btnh,nhd->btd")
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 3, 2, 3]), tensor_info("y", F32, [2, 3, 4])],
        [tensor_info("z", F32, None)],
    )
    optimized = assert_matches_ort(model, [rnd(2, 3, 2, 3), rnd(2, 3, 4)])
    targets = [n.target for n in optimized.graph.nodes if n.op == "call_function"]
    assert torch.einsum in targets and torch.nn.functional.linear not in targets


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("...qd,...kd->...qk", [["N", 2, 3, 4], ["N", 2, 5, 4]]),  # transformers' tf_utils SDPA
        ("bhqd,bhkd->bhqk", [["N", 2, 3, 4], ["N", 2, 5, 4]]),
    ],
)
def test_einsum_of_scores_is_a_matmul_by_the_transpose(equation, shapes):
    """Attention scores ``<P>qd,<P>kd-><P>qk`` are ``q @ k.transpose(-2, -1)``: the form the
    attention rules know."""
    node = helper.make_node("Einsum", ["q", "k"], ["y"], equation=equation)
    model = make_model(
        [node],
        [tensor_info(n, F32, s) for n, s in zip("qk", shapes, strict=True)],
        [tensor_info("y", F32, None)],
    )
    for size in (2, 3):
        inputs = [rnd(*[size if d == "N" else d for d in s]) for s in shapes]
        optimized = assert_matches_ort(model, inputs)
    targets = {n.target for n in optimized.graph.nodes if n.op == "call_function"}
    assert torch.matmul in targets and torch.einsum not in targets


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("bhqd,bhkd->bhkq", [[2, 2, 3, 4], [2, 2, 5, 4]]),  # output transposed
        ("bhqd,hkd->bhqk", [[2, 2, 3, 4], [2, 5, 4]]),  # batch letters differ
        ("bhqd,bhkd->bqk", [[2, 2, 3, 4], [2, 2, 5, 4]]),  # h summed too
        ("bhqd,bhdk->bhqk", [[2, 2, 3, 4], [2, 2, 4, 5]]),  # contracted axis not the last of k
    ],
)
def test_einsum_of_scores_near_misses_stay_einsum(equation, shapes):
    node = helper.make_node("Einsum", ["q", "k"], ["y"], equation=equation)
    model = make_model(
        [node],
        [tensor_info(n, F32, s) for n, s in zip("qk", shapes, strict=True)],
        [tensor_info("y", F32, None)],
    )
    optimized = assert_matches_ort(model, [rnd(*s) for s in shapes])
    targets = {n.target for n in optimized.graph.nodes if n.op == "call_function"}
    assert torch.einsum in targets


# -- Resize ---------------------------------------------------------------------------------


def resize_model(attrs, scales=None, sizes=None, dims=("N", 2, 4, 6), opset=17):
    inputs = ["x", "", "scales" if scales is not None else "", "sizes" if sizes is not None else ""]
    while inputs[-1] == "":
        inputs.pop()
    inits = [init("scales", np.array(scales, F32))] if scales is not None else []
    inits += [init("sizes", np.array(sizes, I64))] if sizes is not None else []
    node = helper.make_node("Resize", inputs, ["y"], name="my_resize", **attrs)
    return model_at(
        [node], [tensor_info("x", F32, list(dims))], [tensor_info("y", F32, None)], inits, opset
    )


NEAREST, LINEAR, CUBIC = ({"mode": m} for m in ("nearest", "linear", "cubic"))


def ctm(mode, transform, **more):
    return {**mode, "coordinate_transformation_mode": transform, **more}


EXACT_RESIZES = [
    (ctm(NEAREST, "asymmetric", nearest_mode="floor"), [1, 1, 2, 3]),
    (ctm(NEAREST, "asymmetric", nearest_mode="floor"), [1, 1, 0.5, 0.5]),
    (ctm(NEAREST, "tf_half_pixel_for_nn", nearest_mode="floor"), [1, 1, 1.5, 0.5]),
    (ctm(NEAREST, "half_pixel", nearest_mode="round_prefer_ceil"), [1, 1, 0.5, 1.5]),
    (ctm(NEAREST, "half_pixel"), [1, 1, 2, 3]),  # ONNX's default rounding: no ties here
    (ctm(NEAREST, "pytorch_half_pixel", nearest_mode="round_prefer_ceil"), [1, 1, 2, 2]),
    (ctm(LINEAR, "half_pixel"), [1, 1, 2, 0.5]),
    (ctm(LINEAR, "half_pixel"), [1, 1, 1.5, 2.5]),
    (ctm(LINEAR, "align_corners"), [1, 1, 2, 0.5]),
    (ctm(LINEAR, "pytorch_half_pixel"), [1, 1, 2, 3]),
    (ctm(CUBIC, "half_pixel"), [1, 1, 2, 0.5]),
    (ctm(CUBIC, "align_corners"), [1, 1, 1.5, 2]),
]


@pytest.mark.parametrize("attrs, scales", EXACT_RESIZES)
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_resize_in_every_exact_form_matches_onnxruntime(attrs, scales, by):
    if by == "scales":
        model = resize_model(attrs, scales=scales)
    else:  # the same output sizes, given as sizes (scale out/in), batch dynamic through Shape
        sizes = [2, 2, int(4 * scales[2]), int(6 * scales[3])]
        model = resize_model(attrs, sizes=sizes, dims=(2, 2, 4, 6))
    for batch in (2, 3) if by == "scales" else (2,):
        optimized = assert_matches_ort(model, [rnd(batch, 2, 4, 6)])
    assert_lowered(optimized)
    calls = {n.target for n in optimized.graph.nodes}
    assert torch.nn.functional.interpolate in calls


@pytest.mark.parametrize(
    "attrs",
    [
        ctm(LINEAR, "half_pixel"),
        ctm(NEAREST, "tf_half_pixel_for_nn", nearest_mode="floor"),
        ctm(CUBIC, "half_pixel"),
        ctm(NEAREST, "asymmetric", nearest_mode="floor"),
    ],
)
def test_resize_sizes_of_float32_scales_are_onnxruntimes(attrs):
    """Keras ``Resizing(7, 9)`` of a 12x12 image, as tf2onnx writes it: the scales
    ``float32(7/12)`` and ``0.75``. Their float32 product with 12 is 7 (onnxruntime's
    size, and TF's); in double it is 6.99999976, which F.interpolate floors to 6. Both
    the converter's module and the lowering give 7x9 and onnxruntime's values; a scale
    whose products agree (0.5) stays F.interpolate."""
    scales = [1, 1, float(np.float32(7 / 12)), 0.75]
    model = resize_model(attrs, scales=scales, dims=("N", 2, 12, 12))
    x = rnd(2, 2, 12, 12)
    (want,) = run_ort(model, [x])
    assert want.shape == (2, 2, 7, 9)
    unlowered = from_onnx(model)(torch.from_numpy(x))
    np.testing.assert_allclose(unlowered.numpy(), want, atol=1e-5, rtol=0)
    optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)
    calls = {n.target for n in optimized.graph.nodes}
    assert torch.nn.functional.interpolate not in calls
    model = resize_model(attrs, scales=[1, 1, 0.5, 0.75], dims=("N", 2, 12, 12))
    calls = {n.target for n in assert_matches_ort(model, [x]).graph.nodes}
    assert torch.nn.functional.interpolate in calls


ONNX_CUBICS = [  # cubics torch's bicubic is not: computed by ONNX's definition
    ctm(CUBIC, "half_pixel", cubic_coeff_a=-0.5, exclude_outside=1),  # TF's bicubic
    ctm(CUBIC, "half_pixel", cubic_coeff_a=-0.5),
    ctm(CUBIC, "align_corners", exclude_outside=1),
    ctm(CUBIC, "asymmetric", cubic_coeff_a=-0.6),
]


@pytest.mark.parametrize("attrs", ONNX_CUBICS)
@pytest.mark.parametrize("scales", [[1, 1, 2, 0.5], [1, 1, 1.5, 0.75]])
def test_resize_cubic_of_any_coefficient_matches_onnxruntime(attrs, scales):
    """Keys' kernel with any ``a``, taps outside dropped and renormalised or clamped,
    through both the converter's module and the lowering (no F.interpolate)."""
    model = resize_model(attrs, scales=scales, dims=("N", 2, 4, 6))
    x = rnd(2, 2, 4, 6)
    (want,) = run_ort(model, [x])
    np.testing.assert_allclose(from_onnx(model)(torch.from_numpy(x)).numpy(), want, atol=1e-5)
    optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)
    assert torch.nn.functional.interpolate not in {n.target for n in optimized.graph.nodes}


def test_resize_tf_bicubic_to_a_fixed_size_of_a_dynamic_image_matches_onnxruntime():
    """tf.image.resize(x, (5, 7), "bicubic") on an image of any size: the sizes are the
    input's batch and channels with the constant target; the scale out / in is a run-time
    value of the optimized graph, which compiles in one graph at two sizes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero1", "two1"], ["lead"]),
        helper.make_node("Concat", ["lead", "target"], ["sizes"], axis=0),
        helper.make_node(
            "Resize", ["x", "", "", "sizes"], ["y"], name="my_resize", **ONNX_CUBICS[0]
        ),
    ]
    inits = [
        init("zero1", np.array([0], I64)),
        init("two1", np.array([2], I64)),
        init("target", np.array([5, 7], I64)),
    ]
    model = model_at(
        nodes, [tensor_info("x", F32, ["N", 2, "H", "W"])], [tensor_info("y", F32, None)], inits, 17
    )
    for shape in ((2, 2, 4, 6), (1, 2, 9, 3)):
        optimized = assert_matches_ort(model, [rnd(*shape)])
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    for shape in ((2, 2, 4, 6), (1, 2, 9, 3)):
        x = torch.from_numpy(rnd(*shape))
        torch.testing.assert_close(compiled(x), optimized(x))


def test_resize_by_run_time_scales_is_kept_and_its_empty_roi_is_no_parameter():
    """Scales from an input: the Resize stays (reported), reading tf2onnx's empty float
    ``roi``, which the parameter pass took apart with an IndexError (an empty tensor's first
    element). Both doors == onnxruntime."""
    node = helper.make_node("Resize", ["x", "roi", "s"], ["y"], mode="linear")
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 2, 4, 6]), tensor_info("s", F32, [4])],
        [tensor_info("y", F32, None)],
        [init("roi", np.zeros((0,), F32))],
    )
    x, scales = rnd(2, 2, 4, 6), np.array([1, 1, 2, 1.5], F32)
    (want,) = run_ort(model, [x, scales])
    for converted in (from_onnx(model), import_onnx2torch().convert(model)):
        module = fxsurgeon.optimize(converted)
        got = module(torch.from_numpy(x), torch.from_numpy(scales))
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
        assert "OnnxResizeSpec" in fxsurgeon.report_of(module).unconverted
        assert fxsurgeon.report_of(module).trainable_after == 0


def test_resize_on_dynamic_spatial_dims_matches_onnxruntime():
    model = resize_model(ctm(LINEAR, "half_pixel"), scales=[1, 1, 2, 0.5], dims=("N", 2, "H", "W"))
    for shape in ((2, 2, 4, 6), (1, 2, 5, 8)):
        optimized = assert_matches_ort(model, [rnd(*shape)])
    assert_lowered(optimized)


def test_resize10_nearest_upsampling_matches_onnxruntime():
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode="nearest")
    model = model_at(
        [node],
        [tensor_info("x", F32, ["N", 2, 3, 4])],
        [tensor_info("y", F32, None)],
        [init("scales", np.array([1, 1, 2, 3], F32))],
        opset=10,
    )
    for batch in (1, 2):
        optimized = assert_matches_ort(model, [rnd(batch, 2, 3, 4)])
    assert_lowered(optimized)


@pytest.mark.parametrize(
    "attrs",
    [
        ctm(NEAREST, "asymmetric", nearest_mode="round_prefer_floor"),
        ctm(NEAREST, "align_corners", nearest_mode="floor"),
        ctm(LINEAR, "asymmetric"),  # TF1's resize_bilinear without half_pixel_centers
        ctm(CUBIC, "pytorch_half_pixel", exclude_outside=1),
        ctm(LINEAR, "half_pixel", antialias=1),
    ],
)
def test_resize_no_torch_interpolation_samples_is_the_spec(attrs):
    """Forms F.interpolate has no call for (once refused): the spec's gathers, both doors."""
    model = resize_model(attrs, scales=[1, 1, 2, 0.5], opset=18)
    x = rnd(2, 2, 4, 6)
    (want,) = run_ort(model, [x])
    np.testing.assert_allclose(from_onnx(model)(torch.from_numpy(x)).numpy(), want, atol=1e-5)
    optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)
    assert torch.nn.functional.interpolate not in {n.target for n in optimized.graph.nodes}


@pytest.mark.parametrize(
    "attrs, scales",
    [
        (ctm(NEAREST, "half_pixel"), [1, 1, 0.5, 0.5]),  # ties: torch's nearest-exact rounds up
        (ctm(NEAREST, "half_pixel", nearest_mode="round_prefer_ceil"), [1, 1, 1, 1.7]),
        (ctm(LINEAR, "pytorch_half_pixel"), [1, 1, 0.25, 1.5]),  # an output length of 1
    ],
)
def test_resize_whose_scales_torch_cannot_follow_is_the_spec(attrs, scales):
    """The fast form is exact in general but not at these scales (torch's nearest index
    from the scale's reciprocal lands on the other side of a tie than onnxruntime's
    ``(x + 0.5) / s``; pytorch_half_pixel's length 1): the spec's gathers instead."""
    model = resize_model(attrs, scales=scales, dims=("N", 2, 4, 7))
    optimized = assert_matches_ort(model, [rnd(2, 2, 4, 7)])
    assert_lowered(optimized)
    assert torch.nn.functional.interpolate not in {n.target for n in optimized.graph.nodes}


# -- TopK -----------------------------------------------------------------------------------


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("axis", [-1, 1])
def test_top_k_keeps_ties_in_index_order_like_onnxruntime(largest, axis):
    """ViT-MAE's argsort: TopK over a whole axis (k from Shape), with ties in the data."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "axis"], ["k0"], axis=0),
        helper.make_node("Unsqueeze", ["k0", "zero1"], ["k"]),
        helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest),
        helper.make_node("Identity", ["v"], ["values"]),
        helper.make_node("Identity", ["i"], ["indices"]),
    ]
    model = model_at(
        nodes,
        [tensor_info("x", F32, ["N", 6, 5])],
        [tensor_info("values", F32, None), tensor_info("indices", I64, None)],
        [init("axis", np.array(axis % 3, I64)), init("zero1", np.array([0], I64))],
    )
    for batch in (2, 3):
        x = np.round(rnd(batch, 6, 5)).astype(F32)  # few distinct values: many ties
        optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)


def test_top_k_of_a_constant_k_over_a_dynamic_dim_admits_k():
    """A TopK of 3 over a 1-D input's only dim (hinted as a batch of 2): the analysis failed,
    kept TopK and fixed the dim to 2, so a fill of Shape(x) came out 2 long at any size.
    The hints now admit k (a restart), and nothing is fixed."""
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=0),
        helper.make_node("Unsqueeze", ["indices", "last"], ["where"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
        helper.make_node("ScatterND", ["zeros", "where", "values"], ["y"]),
    ]
    inits = [init("k", np.array([3], I64)), init("last", np.array([-1], I64))]
    model = make_model(nodes, [tensor_info("x", F32, ["N"])], [tensor_info("y", F32, None)], inits)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for n in (6, 3, 9):
        assert_module_matches_ort(optimized, model, [rnd(n)], atol=0)


# -- Keras through tf2onnx, against TensorFlow ----------------------------------------------


def _keras_model(kind: str):
    import keras

    x = keras.Input((None, 3), name="x")
    if kind == "where":  # tf.where(x > 0, log(x), 0): the branch not taken is NaN at x <= 0
        safe_log = keras.layers.Lambda(
            lambda t: keras.ops.where(t > 0, keras.ops.log(t), keras.ops.zeros_like(t))
        )(x)
        y = keras.layers.Dense(2, name="head")(safe_log)
    else:
        layer = {"gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}[kind]
        y = keras.layers.Dense(2, name="head")(layer(4, name="rnn")(x))
    model = keras.Model(x, y)
    fxsurgeon.examples.randomize_variables(model, seed=5)
    return model


@pytest.mark.parametrize("kind", ["gru", "simple_rnn", "where"])
def test_keras_loop_and_where_models_match_tensorflow(kind):
    """GRU/SimpleRNN export as a Loop; tf.where exports as Where (mul/add spreads the NaN of
    the branch not taken)."""
    from fxsurgeon.tensorflow import export_onnx

    model = _keras_model(kind)
    proto = export_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    assert ("Loop" in ops) == (kind != "where")
    if kind == "where":
        assert "Where" in ops
    optimized = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert_lowered(optimized)
    trainable = sum(p.numel() for p in optimized.parameters() if p.requires_grad)
    assert trainable == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    for batch, steps in ((1, 4), (3, 9)):
        x = rnd(batch, steps, 3)
        expected = np.asarray(model(x))
        with torch.no_grad():
            got = optimized(torch.from_numpy(x)).numpy()
        assert not np.isnan(expected).any()
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_resize10_nearest_downsampling_matches_onnxruntime():
    """Resize-10's nearest takes the pixel above when downsampling (torch's the one below):
    the spec's gathers with onnxruntime's rounding."""
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode="nearest", name="my_resize")
    model = model_at(
        [node],
        [tensor_info("x", F32, ["N", 2, 4, 6])],
        [tensor_info("y", F32, None)],
        [init("scales", np.array([1, 1, 0.5, 0.6], F32))],
        opset=10,
    )
    optimized = assert_matches_ort(model, [rnd(2, 2, 4, 6)])
    assert_lowered(optimized)
