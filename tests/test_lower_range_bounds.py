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
