"""EyeLike, ReverseSequence and Size (ops onnx2torch has no converter for) against onnxruntime:
converted by fxsurgeon's spec modules, lowered to plain torch with no converter module left,
run on shapes the optimize did not see, compiled in one graph; invalid attributes refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_lowered, init, make_model, run_ort, tensor_info

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.pipeline import count_onnx2torch_modules
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(13)


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def check_against_ort(model: onnx.ModelProto, cases: list[list[np.ndarray]]):
    """Convert and optimize `model` once, then compare both with onnxruntime on every case."""
    converted = from_onnx(model)
    optimized = fxsurgeon.optimize(converted)
    assert count_onnx2torch_modules(optimized) == {}
    assert_lowered(optimized)
    for inputs in cases:
        expected = run_ort(model, inputs)
        tensors = [torch.from_numpy(np.ascontiguousarray(i)) for i in inputs]
        with torch.no_grad():
            for module in (converted, optimized):
                got = module(*tensors)
                got = got if isinstance(got, (tuple, list)) else [got]
                for g, e in zip(got, expected, strict=True):
                    g = g.numpy()
                    assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, e.shape, g.dtype)
                    np.testing.assert_array_equal(g, e)
    return optimized


def compiles(optimized, inputs: list[np.ndarray]) -> None:
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    tensors = [torch.from_numpy(i) for i in inputs]
    with torch.no_grad():
        got, want = compiled(*tensors), optimized(*tensors)
    got = got if isinstance(got, (tuple, list)) else [got]
    want = want if isinstance(want, (tuple, list)) else [want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=0, rtol=0)


# -- EyeLike ---------------------------------------------------------------------------------


def eye_model(shape, k=None, dtype=None, opset=17):
    attrs = {} if k is None else {"k": k}
    if dtype is not None:
        attrs["dtype"] = dtype
    node = helper.make_node("EyeLike", ["x"], ["y"], **attrs)
    out_elem = TensorProto.FLOAT if dtype is None else dtype
    out = helper.make_tensor_value_info("y", out_elem, None)
    return make_model([node], [tensor_info("x", F32, shape)], [out], opset=opset)


@pytest.mark.parametrize("k", [None, 0, 1, 3, -1, -2, 7, -9])
@pytest.mark.parametrize("dtype", [None, TensorProto.INT64, TensorProto.INT32, TensorProto.DOUBLE])
def test_eye_like_on_dynamic_dims_matches_onnxruntime(k, dtype):
    model = eye_model(["R", "C"], k, dtype)
    cases = [[rnd(3, 5)], [rnd(5, 3)], [rnd(4, 4)], [rnd(1, 6)]]
    optimized = check_against_ort(model, cases)
    if k in (1, -2):
        compiles(optimized, [rnd(2, 7)])


@pytest.mark.parametrize("k", [0, 2, -3, 6])
def test_eye_like_to_bool_is_numpys_eye(k):
    """onnxruntime has no bool EyeLike kernel: the spec's own definition (np.eye) is the oracle."""
    optimized = fxsurgeon.optimize(from_onnx(eye_model(["R", "C"], k, TensorProto.BOOL)))
    assert_lowered(optimized)
    for rows, cols in ((3, 5), (5, 3), (4, 4)):
        got = optimized(torch.from_numpy(rnd(rows, cols))).numpy()
        np.testing.assert_array_equal(got, np.eye(rows, cols, k, dtype=np.bool_))


@pytest.mark.parametrize("k", [0, 2, -1, 5])
@pytest.mark.parametrize("opset", [9, 22])
def test_eye_like_on_static_dims_folds_to_a_constant(k, opset):
    model = eye_model([3, 4], k, TensorProto.INT32 if opset == 9 else None, opset=opset)
    optimized = check_against_ort(model, [[rnd(3, 4)]])
    calls = [n.target for n in optimized.graph.nodes if n.op == "call_function"]
    assert torch.arange not in calls  # a constant, not computed at run time


def test_eye_like_with_a_dtype_torch_lacks_is_refused_naming_the_node():
    node = helper.make_node("EyeLike", ["x"], ["y"], name="eye_u32", dtype=TensorProto.UINT32)
    model = eye_model([2, 2])
    model.graph.ClearField("node")
    model.graph.node.append(node)
    with pytest.raises(InputError, match="eye_u32.*EyeLike.*UINT32"):
        from_onnx(model)


# -- ReverseSequence -------------------------------------------------------------------------


def reverse_model(time_axis: int, rank: int):
    batch_axis = 1 - time_axis
    shape = ["T", "B"] if time_axis == 0 else ["B", "T"]
    shape += [f"D{i}" for i in range(rank - 2)]
    node = helper.make_node(
        "ReverseSequence", ["x", "lens"], ["y"], batch_axis=batch_axis, time_axis=time_axis
    )
    inputs = [tensor_info("x", F32, shape), tensor_info("lens", I64, ["B"])]
    return make_model([node], inputs, [tensor_info("y", F32, None)], opset=10)


def reverse_cases(time_axis: int, rank: int):
    """(x, lens) with full, partial and length-1 sequences, on several (T, B) shapes."""
    cases = []
    for steps, batch in ((4, 3), (6, 5), (1, 2)):
        lead = (steps, batch) if time_axis == 0 else (batch, steps)
        x = rnd(*lead, *[2 + i for i in range(rank - 2)])
        lens = rng.integers(1, steps + 1, size=batch).astype(I64)
        lens[0], lens[-1] = steps, 1
        cases.append([x, lens])
    return cases


@pytest.mark.parametrize("time_axis", [0, 1])
@pytest.mark.parametrize("rank", [2, 3, 4])
def test_reverse_sequence_matches_onnxruntime(time_axis, rank):
    model = reverse_model(time_axis, rank)
    optimized = check_against_ort(model, reverse_cases(time_axis, rank))
    compiles(optimized, reverse_cases(time_axis, rank)[1])


@pytest.mark.parametrize("batch_axis, time_axis", [(0, 0), (1, 1), (2, 0), (0, 2)])
def test_reverse_sequence_with_invalid_axes_is_refused_naming_the_node(batch_axis, time_axis):
    node = helper.make_node(
        "ReverseSequence", ["x", "lens"], ["y"], "rev", batch_axis=batch_axis, time_axis=time_axis
    )
    graph = helper.make_graph(
        [node],
        "case",
        [tensor_info("x", F32, [3, 3, 3]), tensor_info("lens", I64, [3])],
        [tensor_info("y", F32, [3, 3, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    with pytest.raises(InputError, match="'rev'.*ReverseSequence.*batch_axis"):
        from_onnx(model)


# -- Size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [1, 13, 19, 21])
def test_size_of_a_dynamic_tensor_matches_onnxruntime(opset):
    # Size feeds shape arithmetic: a product, and (from opset 11) a Range over the elements.
    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Mul", ["n", "n"], ["sq"])]
    outputs = [tensor_info("n", I64, []), tensor_info("sq", I64, [])]
    inits = []
    if opset >= 11:
        nodes.append(helper.make_node("Range", ["zero", "n", "one"], ["ids"]))
        outputs.append(tensor_info("ids", I64, ["K"]))
        inits = [init("zero", np.array(0, dtype=I64)), init("one", np.array(1, dtype=I64))]
    x = tensor_info("x", F32, ["N", 3, "M"])
    model = make_model(nodes, [x], outputs, inits, opset=max(opset, 7))
    cases = [[rnd(2, 3, 4)], [rnd(5, 3, 1)], [rnd(1, 3, 7)]]
    optimized = check_against_ort(model, cases)
    compiles(optimized, [rnd(3, 3, 2)])
    kinds = {n.target for n in optimized.graph.nodes if n.op == "call_method"}
    assert "size" in kinds and "numel" not in kinds  # a product of symbolic sizes


def test_size_of_a_static_tensor_is_a_constant():
    nodes = [helper.make_node("Size", ["x"], ["n"], name="size_node")]
    model = make_model(nodes, [tensor_info("x", F32, [2, 3, 4])], [tensor_info("n", I64, [])])
    optimized = check_against_ort(model, [[rnd(2, 3, 4)]])
    assert [n.op for n in optimized.graph.nodes if n.op == "call_function"] == []


def test_reverse_sequence_with_constant_lengths_on_a_dynamic_time_axis():
    node = helper.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=0, time_axis=1)
    lens = init("lens", np.array([3, 1, 2], dtype=I64))
    inputs = [tensor_info("x", F32, [3, "T", 2])]
    model = make_model([node], inputs, [tensor_info("y", F32, None)], [lens], opset=10)
    optimized = check_against_ort(model, [[rnd(3, 3, 2)], [rnd(3, 5, 2)], [rnd(3, 4, 2)]])
    assert torch.gather in {n.target for n in optimized.graph.nodes}


def full_length_reverse_model(time_axis: int, lens_from: str):
    """tf.reverse as tf2onnx writes it: ReverseSequence whose lengths are Shape(x)[time]
    expanded over the batch (``lens_from="time"``); ``"batch"`` takes Shape(x)[batch]
    instead: equal to the time axis' size only when the input is square."""
    batch_axis = 1 - time_axis
    axis = time_axis if lens_from == "time" else batch_axis
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "axis"], ["length"], axis=0),
        helper.make_node("Gather", ["shape", "batch_axis"], ["batch"], axis=0),
        helper.make_node("Expand", ["length", "batch"], ["lens"]),
        helper.make_node(
            "ReverseSequence", ["x", "lens"], ["y"], batch_axis=batch_axis, time_axis=time_axis
        ),
    ]
    inits = [
        init("axis", np.array([axis], dtype=I64)),
        init("batch_axis", np.array([batch_axis], dtype=I64)),
    ]
    shape = ["T", "B", 2] if time_axis == 0 else ["B", "T", 2]
    inputs = [tensor_info("x", F32, shape)]
    return make_model(nodes, inputs, [tensor_info("y", F32, None)], inits, opset=13)


@pytest.mark.parametrize("time_axis", [0, 1])
def test_reverse_sequence_over_whole_rows_is_a_flip(time_axis):
    """Lengths that provably equal the time axis' size, at every size: torch.flip."""
    model = full_length_reverse_model(time_axis, "time")
    cases = [[rnd(4, 3, 2)], [rnd(6, 5, 2)], [rnd(1, 2, 2)]]
    optimized = check_against_ort(model, cases)
    targets = {n.target for n in optimized.graph.nodes}
    assert torch.flip in targets and torch.gather not in targets
    compiles(optimized, cases[1])


def test_reverse_sequence_whose_lengths_are_another_dim_stays_a_gather():
    """The batch size as every length equals the time size on a square input only: no
    flip, and the non-square cases (lengths past T are the spec's error, so B < T) match."""
    model = full_length_reverse_model(0, "batch")
    optimized = check_against_ort(model, [[rnd(4, 3, 2)], [rnd(6, 2, 2)], [rnd(3, 3, 2)]])
    targets = {n.target for n in optimized.graph.nodes}
    assert torch.gather in targets and torch.flip not in targets


# -- OneHot ----------------------------------------------------------------------------------


def one_hot_model(
    axis, values, depth=5, opset=17, index_dtype=I64, shape=("B", "T"), depth_dtype=I64
):
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node("OneHot", ["i", "depth", "values"], ["y"], **attrs)
    values = np.asarray(values)
    initializers = [init("depth", np.asarray(depth, depth_dtype)), init("values", values)]
    elem = helper.np_dtype_to_tensor_dtype
    inputs = [helper.make_tensor_value_info("i", elem(np.dtype(index_dtype)), list(shape))]
    out = [helper.make_tensor_value_info("y", elem(values.dtype), None)]
    return make_model([node], inputs, out, initializers, opset=opset)


def indices(*shape, low=-7, high=7, dtype=I64):
    return rng.integers(low, high, size=shape).astype(dtype)


@pytest.mark.parametrize("axis", [None, -1, 0, 1, 2, -2, -3])
@pytest.mark.parametrize("values", [[0.0, 1.0], [-2.5, 3.0]])
def test_one_hot_matches_onnxruntime_with_negative_and_out_of_range_indices(axis, values):
    """Indices -7..6 with depth 5: in range, negative from the end (>= -5), and out of range
    both ways (a row of off values); on sizes optimize never saw."""
    model = one_hot_model(axis, np.asarray(values, F32))
    cases = [[indices(2, 3)], [indices(4, 1)], [indices(1, 6)]]
    optimized = check_against_ort(model, cases)
    if axis in (None, 0):
        compiles(optimized, [indices(3, 4)])


@pytest.mark.parametrize(
    ("values", "index_dtype", "depth_dtype"),
    [  # the type triples onnxruntime has OneHot kernels for
        (np.asarray([0, 1], I64), I64, I64),
        (np.asarray([3, -1], I64), F32, I64),  # float indices: truncated to int64
        (np.asarray([0.5, 2.0], F32), np.int32, np.int32),
        (np.asarray([7, -2], np.int32), I64, F32),  # a floating-point depth
    ],
)
def test_one_hot_keeps_the_values_dtype(values, index_dtype, depth_dtype):
    model = one_hot_model(-1, values, index_dtype=index_dtype, depth_dtype=depth_dtype)
    cases = [[indices(2, 3).astype(index_dtype)], [indices(3, 2).astype(index_dtype)]]
    if index_dtype == F32:
        cases.append([rng.uniform(-6, 6, size=(2, 4)).astype(F32)])
    check_against_ort(model, cases)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int8, np.bool_])
def test_one_hot_in_dtypes_onnxruntime_lacks_is_the_specs_definition(dtype):
    """The spec's own definition (values[1] where the class is the index) as the oracle."""
    values = np.asarray([1, 0] if dtype == np.bool_ else [0.1, -3], dtype)
    model = one_hot_model(0, values)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    i = indices(2, 3)
    wrapped = np.where((i < 0) & (i >= -5), i + 5, i)
    want = np.where(wrapped[None] == np.arange(5)[:, None, None], values[1], values[0])
    got = optimized(torch.from_numpy(i)).numpy()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_one_hot_9_gives_negative_indices_a_row_of_off_values():
    """OneHot-9 (before negative indices were allowed) as the spec of that version says:
    onnxruntime runs every OneHot as version 11, so numpy is the oracle here."""
    optimized = fxsurgeon.optimize(
        from_onnx(one_hot_model(-1, np.asarray([0.0, 1.0], F32), opset=9))
    )
    assert_lowered(optimized)
    i = np.asarray([[-1, 0, 4], [5, 2, -5]], I64)
    want = (i[..., None] == np.arange(5)).astype(F32)
    np.testing.assert_array_equal(optimized(torch.from_numpy(i)).numpy(), want)


def test_one_hot_through_the_one_liner():
    """``optimize(onnx2torch.convert(model))``: onnx2torch has no OneHot; fxsurgeon's
    converter is used once fxsurgeon is imported."""
    from fxsurgeon._compat import import_onnx2torch

    model = one_hot_model(1, np.asarray([0.0, 1.0], F32))
    optimized = fxsurgeon.optimize(import_onnx2torch().convert(model))
    assert_lowered(optimized)
    i = indices(3, 4)
    (want,) = run_ort(model, [i])
    np.testing.assert_array_equal(optimized(torch.from_numpy(i)).numpy(), want)


def test_one_hot_with_a_depth_read_from_data_is_kept_and_reported():
    """The depth is the output's size: read from data, it cannot be lowered to a static
    graph; the spec module stays (it runs) and the report says why."""
    from fxsurgeon.pipeline import report_of

    node = helper.make_node("OneHot", ["i", "depth", "values"], ["y"], name="hot")
    inputs = [tensor_info("i", I64, ["B"]), tensor_info("depth", I64, [1])]
    values = init("values", np.asarray([0.0, 1.0], F32))
    model = make_model([node], inputs, [tensor_info("y", F32, None)], [values])
    optimized = fxsurgeon.optimize(from_onnx(model))
    (reason,) = report_of(optimized).unconverted["OnnxOneHotSpec"]
    assert "hot" in reason and "depth is read from tensor data" in reason
    i, depth = np.asarray([0, 3, -1], I64), np.asarray([4], I64)
    (want,) = run_ort(model, [i, depth])
    got = optimized(torch.from_numpy(i), torch.from_numpy(depth)).detach().numpy()
    np.testing.assert_array_equal(got, want)


def test_gather_nd_with_negative_batch_dims_is_refused_by_name():
    """What tf2onnx wrote for tf.gather(batch_dims=-1) before the front door corrected it:
    no ONNX runtime takes it, and the converter names the node instead of guessing."""
    node = helper.make_node(
        "GatherND", ["x", "i"], ["y"], name="pixel_shuffle/GatherV2", batch_dims=-1
    )
    graph = helper.make_graph(
        [node],
        "case",
        [tensor_info("x", F32, [2, 6]), tensor_info("i", I64, [2, 6, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(Exception, match=r"pixel_shuffle/GatherV2.*GatherND.*batch_dims -1"):
        from_onnx(model)
