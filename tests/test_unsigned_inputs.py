"""ONNX graph inputs of uint16/uint32/uint64 (converters/unsigned.py).

Taken where every op reading them (through layout ops) is one torch computes exactly:
Cast, Equal, the order comparisons (in int64, order kept: uint64's sign bit flipped) and
Shape: the converter's module, the optimized graph and its compiled form == onnxruntime,
values across each type's whole range (uint64 above 2**63 included). Refused at import
where another op reads them, naming the input, its type and the node and op.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, run_ort
from onnx_cases import tensor_info as info

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.tensorflow import from_onnx

TYPES = {
    TensorProto.UINT16: np.uint16,
    TensorProto.UINT32: np.uint32,
    TensorProto.UINT64: np.uint64,
}


def _values(np_type, shape, seed):
    """Random values over the whole range, the extremes and 2**(bits-1) +- 1 among them."""
    top = np.iinfo(np_type).max
    rng = np.random.default_rng(seed)
    x = rng.integers(0, top, size=shape, dtype=np_type, endpoint=True)
    flat = x.reshape(-1)
    half = np_type(top // 2)
    flat[:6] = [0, top, half, half + np_type(1), np_type(1), top - np_type(1)][: flat.size]
    return x


def _model(elem_type):
    """ids (N, 6) of `elem_type` -> Reshape to (N, 2, 3) -> Cast to float * 0.5; Equal,
    Less, GreaterOrEqual with a second input and with a constant -> Cast int32;
    Shape(ids) -> Cast float; and ids -> Cast int64 -> Gather of a table (the indices
    come through a Cast, as the spec's Gather takes int32/int64 only)."""
    np_type = TYPES[elem_type]
    pivot = np.array([np.iinfo(np_type).max // 2 + 1], np_type)
    nodes = [
        helper.make_node("Reshape", ["ids", "shape"], ["grid"]),
        helper.make_node("Cast", ["grid"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["as_float", "half"], ["scaled"]),
        helper.make_node("Equal", ["ids", "other"], ["eq"]),
        helper.make_node("Less", ["ids", "other"], ["lt"]),
        helper.make_node("GreaterOrEqual", ["ids", "pivot"], ["ge"]),
        helper.make_node("Greater", ["other", "ids"], ["gt"]),
        helper.make_node("Concat", ["eq", "lt", "ge", "gt"], ["flags"], axis=1),
        helper.make_node("Cast", ["flags"], ["flags32"], to=TensorProto.INT32),
        helper.make_node("Shape", ["ids"], ["dims"]),
        helper.make_node("Cast", ["other"], ["wide"], to=TensorProto.INT64),
        helper.make_node("Mod", ["wide", "seven"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["rows"], axis=0),
    ]
    inits = [
        init("shape", np.array([-1, 2, 3], np.int64)),
        init("half", np.array(0.5, np.float32)),
        init("pivot", pivot),
        init("seven", np.array(7, np.int64)),
        init("table", np.arange(14, dtype=np.float32).reshape(7, 2)),
    ]
    inputs = [
        helper.make_tensor_value_info("ids", elem_type, ["N", 6]),
        helper.make_tensor_value_info("other", elem_type, ["N", 6]),
    ]
    outputs = [
        info("scaled", np.float32, None),
        helper.make_tensor_value_info("flags32", TensorProto.INT32, None),
        info("dims", np.int64, None),
        info("rows", np.float32, None),
    ]
    return make_model(nodes, inputs, outputs, inits)


@pytest.mark.parametrize("elem_type", list(TYPES), ids=lambda t: TensorProto.DataType.Name(t))
def test_wide_unsigned_input_read_by_exact_ops_matches_onnxruntime(elem_type):
    np_type = TYPES[elem_type]
    model = _model(elem_type)
    cases = [
        [_values(np_type, (n, 6), seed), _values(np_type, (n, 6), seed + 9)]
        for n, seed in ((2, 1), (5, 2))
    ]
    for ids, other in cases:  # equal elements too, for Equal and the non-strict ones
        other[0] = ids[0]
    converted = from_onnx(model)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="aot_eager", dynamic=True)
    for inputs in cases:
        want = run_ort(model, inputs)
        assert want[1].any() and not want[1].all()  # the flags differ
        for module in (converted, optimized, compiled):
            with torch.no_grad():
                got = module(*(torch.from_numpy(i) for i in inputs))
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g.numpy(), w)
        assert_module_matches_ort(optimized, model, inputs)


def test_uint64_order_keeps_the_top_half_above():
    model = _model(TensorProto.UINT64)
    ids = np.array([[0, 2**63, 2**64 - 1, 2**63 - 1, 5, 2**63 + 1]], np.uint64)
    other = np.array([[2**63, 2**63 - 1, 2**64 - 2, 2**63, 5, 2**63]], np.uint64)
    (_, want, *_) = run_ort(model, [ids, other])
    optimized = fxsurgeon.optimize(from_onnx(model))
    got = optimized(torch.from_numpy(ids), torch.from_numpy(other))[1].numpy()
    np.testing.assert_array_equal(got, want)
    lt = want[0, 6:12]
    np.testing.assert_array_equal(lt, [1, 0, 0, 1, 0, 0])  # unsigned order, not int64's


@pytest.mark.parametrize(
    "op, inputs",
    [
        ("Add", ["ids", "ids"]),  # torch has no uint32 add
        ("Max", ["ids", "ids"]),
        ("Neg", ["ids"]),
    ],
)
def test_wide_unsigned_input_read_by_another_op_is_refused_naming_it(op, inputs):
    nodes = [
        helper.make_node("Flatten", ["ids"], ["flat"]),
        helper.make_node(op, ["flat" if i == "ids" else i for i in inputs], ["y"], name="mixer"),
    ]
    if op == "Neg":  # Neg has no unsigned form in ONNX: through a Cast-free Identity
        nodes[1] = helper.make_node("Abs", ["flat"], ["y"], name="mixer")
        op = "Abs"
    ids = helper.make_tensor_value_info("ids", TensorProto.UINT32, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.UINT32, None)
    model = make_model(nodes, [ids], [y])
    with pytest.raises(InputError) as caught:
        from_onnx(model)
    message = str(caught.value)
    for part in ("'ids'", "UINT32", "'mixer'", f"op {op}"):
        assert part in message, message
