"""An ONNX reference that onnxruntime has no kernel for runs on onnx's reference evaluator.

Keras 3's ``MultiHeadAttention(use_causal_mask=True)`` builds its mask with
``tril(ones(..., bool))``: tf2onnx writes MatrixBandPart as a ``Where`` on booleans,
which onnxruntime 1.x cannot load (NOT_IMPLEMENTED). `fxsurgeon.verify` (and
``fxsurgeon convert``) then run the ONNX spec's reference implementation instead;
a model onnxruntime rejects for any other reason is still refused.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_cases import tensor_info

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.errors import InputError

F32 = np.float32


def bool_where_model() -> onnx.ModelProto:
    """y = where(x > 0 and lower-triangle, x, -x): the mask a boolean Where."""
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["positive"]),
        helper.make_node("Where", ["lower", "positive", "false"], ["keep"]),
        helper.make_node("Neg", ["x"], ["negated"]),
        helper.make_node("Where", ["keep", "x", "negated"], ["y"]),
    ]
    inits = [
        onnx.numpy_helper.from_array(np.zeros((), F32), "zero"),
        onnx.numpy_helper.from_array(np.tril(np.ones((4, 4), bool)), "lower"),
        onnx.numpy_helper.from_array(np.zeros((4, 4), bool), "false"),
    ]
    graph = helper.make_graph(
        nodes,
        "bool_where",
        [tensor_info("x", F32, ["N", 4, 4])],
        [tensor_info("y", F32, ["N", 4, 4])],
    )
    graph.initializer.extend(inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_onnxruntime_has_no_kernel_for_it():
    import onnxruntime as ort

    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        ort.InferenceSession(bool_where_model().SerializeToString())


def test_a_correct_model_passes_against_the_reference_evaluator(tmp_path):
    proto = bool_where_model()
    path = tmp_path / "model.onnx"
    onnx.save(proto, path)
    model = fxsurgeon.optimize(import_onnx2torch().convert(proto))
    report = fxsurgeon.verify(model, str(path))
    assert report.passed, report.table()
    assert "reference evaluator" in report.table()


def test_a_wrong_model_fails_against_the_reference_evaluator(tmp_path):
    proto = bool_where_model()
    path = tmp_path / "model.onnx"
    onnx.save(proto, path)

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return x.abs()  # ignores the triangle

    assert not fxsurgeon.verify(Wrong(), str(path), inputs=[np.ones((2, 4, 4), F32)]).passed


def test_a_model_onnxruntime_rejects_otherwise_is_still_refused(tmp_path):
    proto = bool_where_model()
    proto.graph.node[0].input[1] = "missing"  # an input nothing produces
    path = tmp_path / "broken.onnx"
    onnx.save(proto, path)
    with pytest.raises(InputError, match="onnxruntime cannot load"):
        fxsurgeon.verify(torch.nn.Identity(), str(path))
