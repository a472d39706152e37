"""An element of a Range at a constant index is a size expression, not a data read
(fxsurgeon/lower/progressions.py). Funnel's relative positions are
``range(p[0] + n, p[0] - p[-1] - 1, -1)`` with ``p = range(0, S)``: ``p[0]`` is 0 and
``p[-1]`` is ``S - 1``, so the second Range's length is a size expression and the model
compiles fullgraph with dynamic shapes (a ``.item()`` would be an unbacked symbol).
onnxruntime is the oracle. The refusal: an element whose place depends on a length the
analysis does not know (the last of ``pad(p[1:-1][::2], (1, 0), -1)``, the pad value where
the slice is empty) stays a read of the data, and is right at every length.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from test_lower_range_bounds import _two_reads_model

import fxsurgeon
from fxsurgeon.pipeline import report_of


def _reads(module) -> int:
    return sum(n.op == "call_method" and n.target == "item" for n in module.graph.nodes)


def _check(module, proto, lengths) -> None:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for length in lengths:
        x = np.zeros((2, length), np.float32)
        want = session.run(None, {"x": x})
        got = module(torch.from_numpy(x))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g.numpy(), w)


def test_elements_of_a_range_at_constant_indices_are_sizes_and_compile():
    proto = _two_reads_model()
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    assert not report_of(module).unconverted
    assert _reads(module) == 0
    _check(module, proto, (1, 3, 6))
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="eager")
    _check(compiled, proto, (3, 7, 2))
    torch._dynamo.reset()


def _pooled_model():
    """``q = pad(p[1:-1][::2], (1, 0), value=-1)`` with ``p = range(0, S)``; output
    ``range(0, q[-1] + 2)``: q[-1] is -1 where S <= 2 (the slice is empty), else p's."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S"])
    out = helper.make_tensor_value_info("r", TensorProto.INT64, [None])
    ints = {"zero": [0], "one": [1], "two": [2], "last": [-1], "end": [2**62], "pads": [1, 0]}
    consts = [
        helper.make_node(
            "Constant", [], [k], value=helper.make_tensor(k, TensorProto.INT64, [len(v)], v)
        )
        for k, v in ints.items()
    ]
    scalars = {"z": 0, "o": 1, "m": -1, "t": 2}
    consts += [helper.make_node("Constant", [], [k], value_int=v) for k, v in scalars.items()]
    nodes = [
        *consts,
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "one", "two", "zero"], ["len1"]),
        helper.make_node("Squeeze", ["len1", "zero"], ["len"]),
        helper.make_node("Range", ["z", "len", "o"], ["p"]),
        helper.make_node("Slice", ["p", "one", "last", "zero"], ["inner"]),
        helper.make_node("Slice", ["inner", "zero", "end", "zero", "two"], ["strided"]),
        helper.make_node("Pad", ["strided", "pads", "m"], ["q"]),
        helper.make_node("Slice", ["q", "last", "end", "zero"], ["last1"]),
        helper.make_node("Squeeze", ["last1", "zero"], ["lastv"]),
        helper.make_node("Add", ["lastv", "t"], ["limit"]),
        helper.make_node("Range", ["z", "limit", "o"], ["r"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_element_whose_place_a_length_decides_stays_a_data_read():
    proto = _pooled_model()
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    assert not report_of(module).unconverted
    assert _reads(module) == 1
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for length in (1, 2, 3, 4, 7):
        x = np.zeros((2, length), np.float32)
        (want,) = session.run(None, {"x": x})
        np.testing.assert_array_equal(module(torch.from_numpy(x)).numpy(), want)
