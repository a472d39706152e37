"""ONNX Range whose start is read from the data (Funnel's relative positions start at a
computed shift): the bound is a run-time int, the dtype that of the tensor it is read
from (`lower/shape_ops._range`). onnxruntime is the oracle; the refusal side, a run-time
delta (its sign decides the length), keeps the module and says why."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

import fxsurgeon
from fxsurgeon.pipeline import report_of


def _model(delta_from_data: bool) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [None])
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
        helper.make_node("Cast", ["top"], ["start"], to=TensorProto.INT64),
        helper.make_node("Constant", [], ["four"], value_int=4),
        helper.make_node("Constant", [], ["one"], value_int=1),
        helper.make_node("Add", ["start", "four"], ["limit"]),
        helper.make_node("Range", ["start", "limit", "start" if delta_from_data else "one"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_range_from_a_start_read_from_the_data_is_lowered():
    proto = _model(delta_from_data=False)
    example = torch.tensor([1.0, 5.0, 2.0])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto), [example])
    assert not report_of(module).unconverted
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for values in ([1.0, 5.0, 2.0], [-3.0, -7.0, -4.0], [0.0, 0.0, 0.0]):
        x = np.asarray(values, np.float32)
        want = session.run(None, {"x": x})[0]
        got = module(torch.from_numpy(x))
        assert got.dtype == torch.int64
        np.testing.assert_array_equal(got.numpy(), want)


def test_a_range_with_a_delta_read_from_the_data_is_kept_and_says_why():
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(_model(True)), [torch.ones(3)])
    kept = report_of(module).unconverted
    assert any("run-time delta" in why for reasons in kept.values() for why in reasons)


def _two_reads_model() -> onnx.ModelProto:
    """Funnel's relative positions: ``range(p[0] + n, p[0] - p[-1] - 1, -1)`` with ``p`` a
    Range over the length, its first and last elements read from the data; the output is
    the Range's length (Shape), then the Range itself."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S"])
    outs = [
        helper.make_tensor_value_info("n", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("r", TensorProto.INT64, [None]),
    ]
    ints = {"zero": [0], "one": [1], "two": [2], "last": [-1], "end": [2**62]}
    consts = [
        helper.make_node(
            "Constant", [], [k], value=helper.make_tensor(k, TensorProto.INT64, [1], v)
        )
        for k, v in ints.items()
    ]
    scalars = {"z": 0, "o": 1, "m": -1}
    consts += [helper.make_node("Constant", [], [k], value_int=v) for k, v in scalars.items()]
    nodes = [
        *consts,
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "one", "two", "zero"], ["len1"]),
        helper.make_node("Squeeze", ["len1", "zero"], ["len"]),
        helper.make_node("Range", ["z", "len", "o"], ["p"]),
        helper.make_node("Slice", ["p", "zero", "one", "zero"], ["first1"]),
        helper.make_node("Squeeze", ["first1", "zero"], ["first"]),
        helper.make_node("Slice", ["p", "last", "end", "zero"], ["last1"]),
        helper.make_node("Squeeze", ["last1", "zero"], ["lastv"]),
        helper.make_node("Add", ["first", "len"], ["start"]),
        helper.make_node("Sub", ["first", "lastv"], ["gap"]),
        helper.make_node("Sub", ["gap", "o"], ["limit"]),
        helper.make_node("Range", ["start", "limit", "m"], ["r"]),
        helper.make_node("Shape", ["r"], ["n"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_two_values_read_from_tensors_of_one_shape_are_two_sizes():
    """The shape analysis keeps an op's result for a call on the same sizes; a read of the
    data (``.item()``) must not reuse another tensor's read: the length ``2 * S`` is not 0."""
    proto = _two_reads_model()
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    assert not report_of(module).unconverted
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for length in (1, 3, 6):
        x = np.zeros((2, length), np.float32)
        want_n, want_r = session.run(None, {"x": x})
        got_n, got_r = module(torch.from_numpy(x))
        np.testing.assert_array_equal(got_n.numpy(), want_n)
        np.testing.assert_array_equal(got_r.numpy(), want_r)
