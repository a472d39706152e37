"""Small ONNX graphs built with onnx.helper, and running them three ways.

Each case is one graph: fxsurgeon's lowering of it is checked against
onnxruntime (the oracle), not against onnx2torch's own module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx

OPSET = 17

_ELEM = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64, np.bool_: TensorProto.BOOL}


def tensor_info(name: str, dtype, shape: Sequence) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _ELEM[dtype], None if shape is None else list(shape))


def init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def make_model(nodes, inputs, outputs, initializers=(), opset=OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "case", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def run_ort(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs, strict=True)))


def optimize_onnx(model: onnx.ModelProto) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(from_onnx(model))


def assert_matches_ort(model: onnx.ModelProto, inputs: Sequence[np.ndarray], atol: float = 1e-5):
    """Optimize `model` and compare with onnxruntime on `inputs`; returns the module."""
    optimized = optimize_onnx(model)
    assert_module_matches_ort(optimized, model, inputs, atol)
    return optimized


def assert_module_matches_ort(
    module, model: onnx.ModelProto, inputs: Sequence[np.ndarray], atol: float = 1e-5
) -> None:
    """`module` (optimized once from `model`, possibly compiled) equals onnxruntime on
    `inputs`: shapes, dtypes and values within `atol`."""
    expected = run_ort(model, inputs)
    with torch.no_grad():
        got = module(*(torch.from_numpy(np.ascontiguousarray(i)) for i in inputs))
    got = got if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        g = g.numpy()
        assert g.shape == e.shape, (g.shape, e.shape)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        np.testing.assert_allclose(g, e, atol=atol, rtol=0)


def assert_lowered(optimized) -> None:
    """Nothing unconverted, and no module of fxsurgeon's converters left."""
    from fxsurgeon.pipeline import report_of

    report = report_of(optimized)
    assert report.unconverted == {}, report.unconverted
    kept = [type(m).__name__ for m in optimized.modules() if "converters" in type(m).__module__]
    assert kept == []
