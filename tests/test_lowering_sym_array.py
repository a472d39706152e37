"""Shape arithmetic in a matrix (`SymArray`, lower/values.py): tf2onnx writes ``tf.pad`` by
computed amounts as ``Reshape(Transpose(Concat(Unsqueeze(sizes), ...)), [-1])``, a (rank, 2)
matrix of sizes made flat. The pads stay sizes: the Pad lowers, the padded dim stays dynamic
and no size becomes data; a matrix of sizes that reaches any other op is a tensor there and
still computes what onnxruntime does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_module_matches_ort, init, make_model, optimize_onnx, tensor_info

import fxsurgeon
from fxsurgeon.pipeline import count_onnx2torch_modules, report_of

F32, I32, I64 = np.float32, np.int32, np.int64
rng = np.random.default_rng(0)


def _pads_matrix(perm: list[int] | None = None) -> list:
    """pad = (4 - L % 4) % 4 (L = dim 1 of x), the paddings [[0, 0], [0, pad], [0, 0]] packed
    row by row as TF's ``tf.pad(x, [[0, 0], [0, pad], [0, 0]])`` is exported (int32), then
    cast and transposed to ONNX's [begins..., ends...] order."""
    transpose = (
        helper.make_node("Transpose", ["m64"], ["mt"])
        if perm is None
        else helper.make_node("Transpose", ["m64"], ["mt"], perm=perm)
    )
    return [
        helper.make_node("Shape", ["x"], ["s64"]),
        helper.make_node("Cast", ["s64"], ["s"], to=TensorProto.INT32),
        helper.make_node("Gather", ["s", "one"], ["l"], axis=0),
        helper.make_node("Mod", ["l", "four"], ["r"]),
        helper.make_node("Sub", ["four", "r"], ["q"]),
        helper.make_node("Mod", ["q", "four"], ["pad"]),
        helper.make_node("Unsqueeze", ["pad", "axes0"], ["pad1"]),
        helper.make_node("Concat", ["zero1", "pad1"], ["row"], axis=0),
        helper.make_node("Unsqueeze", ["row", "axes0"], ["row2"]),
        helper.make_node("Concat", ["zeros12", "row2", "zeros12"], ["m"], axis=0),
        helper.make_node("Cast", ["m"], ["m64"], to=TensorProto.INT64),
        transpose,
    ]


def _inits() -> list:
    return [
        init("one", np.array(1, I32)),
        init("four", np.array(4, I32)),
        init("axes0", np.array([0], I64)),
        init("zero1", np.array([0], I32)),
        init("zeros12", np.zeros((1, 2), I32)),
        init("flat", np.array([-1], I64)),
    ]


def tf_pad_to_a_multiple():
    nodes = _pads_matrix() + [
        helper.make_node("Reshape", ["mt", "flat"], ["pads"]),
        helper.make_node("Pad", ["x", "pads"], ["y"]),
    ]
    return make_model(
        nodes, [tensor_info("x", F32, ["N", "L", 3])], [tensor_info("y", F32, None)], _inits()
    )


def x_of(n: int) -> list[np.ndarray]:
    return [rng.standard_normal((2, n, 3)).astype(F32)]


def test_pads_computed_in_a_matrix_stay_sizes():
    model = tf_pad_to_a_multiple()
    optimized = optimize_onnx(model)
    assert count_onnx2torch_modules(optimized) == {}
    report = report_of(optimized)
    assert report.unconverted == {} and report.forced_dims == []
    code = optimized.code
    assert "torch.nn.functional.pad" in code
    for forbidden in ("torch.tensor", ".item()", ".tolist()"):
        assert forbidden not in code, code
    for n in (3, 4, 5, 9):  # pads 1, 0, 3, 3: never the analysis' example alone
        assert_module_matches_ort(optimized, model, x_of(n))


def test_padded_to_a_multiple_saves_and_compiles_without_a_graph_break(tmp_path):
    model = tf_pad_to_a_multiple()
    optimized = optimize_onnx(model)
    fxsurgeon.save(optimized, tmp_path)
    loaded = fxsurgeon.load(tmp_path)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(optimized, fullgraph=True, backend="eager", dynamic=True)
        for n in (3, 6, 9):
            assert_module_matches_ort(loaded, model, x_of(n))
            assert_module_matches_ort(compiled, model, x_of(n))
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("perm", [None, [1, 0]])
def test_a_matrix_of_sizes_read_by_another_op_is_a_tensor(perm):
    """The transposed matrix itself is an output and feeds an Add: both are tensors there,
    computed at run time from the size."""
    nodes = _pads_matrix(perm) + [helper.make_node("Add", ["mt", "ten"], ["z"])]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", "L", 3])],
        [tensor_info("mt", I64, None), tensor_info("z", I64, None)],
        _inits() + [init("ten", np.array(10, I64))],
    )
    optimized = optimize_onnx(model)
    assert count_onnx2torch_modules(optimized) == {}
    for n in (3, 6):
        assert_module_matches_ort(optimized, model, x_of(n))


def test_a_matrix_reshaped_to_two_dims_stays_a_matrix_until_a_tensor_is_needed():
    """Reshape of the (2, 3) matrix to (3, 2): still elements (no run-time reshape), a
    tensor only where it is an output."""
    nodes = _pads_matrix() + [helper.make_node("Reshape", ["mt", "shape32"], ["y"])]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", "L", 3])],
        [tensor_info("y", I64, None)],
        _inits() + [init("shape32", np.array([3, 2], I64))],
    )
    optimized = optimize_onnx(model)
    assert "torch.reshape" not in optimized.code
    for n in (2, 7):
        assert_module_matches_ort(optimized, model, x_of(n))
