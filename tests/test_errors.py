"""Bad input gets a clear error or a report line, never a silently different model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import init, make_model, run_ort, tensor_info

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.pipeline import SOURCE_KEY, report_of
from fxsurgeon.tensorflow import from_onnx


def test_a_plain_module_is_refused_by_name():
    with pytest.raises(InputError, match="torch.nn.modules.linear.Linear"):
        fxsurgeon.optimize(torch.nn.Linear(2, 3))


class _Handwritten(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2


def test_a_graph_module_not_from_onnx2torch_is_refused_naming_the_node():
    traced = torch.fx.symbolic_trace(_Handwritten())
    with pytest.raises(InputError, match=r"not made by onnx2torch \(node %relu "):
        fxsurgeon.optimize(traced)


def test_a_lazy_module_called_with_the_wrong_inputs_names_them():
    """Without a SourceInfo and example inputs, optimize gives a LazyOptimized;
    its first call with another number of inputs than the graph takes says so."""
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [tensor_info("x", np.float32, ["N", 3])],
        [tensor_info("y", np.float32, ["N", 3])],
    )
    converted = from_onnx(model)
    converted.meta.pop(SOURCE_KEY)
    lazy = fxsurgeon.optimize(converted)
    assert isinstance(lazy, fxsurgeon.LazyOptimized)
    with pytest.raises(InputError, match=r"takes 1 inputs \(\w+\), got 2"):
        lazy(torch.ones(2, 3), torch.ones(2, 3))


def test_wrong_number_of_example_inputs_names_the_inputs():
    onnx2torch = fxsurgeon._compat.import_onnx2torch()
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [tensor_info("x", np.float32, ["N", 3])],
        [tensor_info("y", np.float32, ["N", 3])],
    )
    with pytest.raises(InputError, match="takes 1 inputs"):
        fxsurgeon.optimize(
            onnx2torch.convert(model), example_inputs=(torch.ones(2, 3), torch.ones(2, 3))
        )


def test_a_module_without_lowering_is_kept_and_reported():
    """NonMaxSuppression has a data-dependent output shape and no torch form (torchvision's
    nms is not torch): it stays an onnx2torch module, the report names the node, the op
    and why (coverage's reason, not a generic "no lowering"), and the model still
    computes the right thing."""
    nodes = [
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("NonMaxSuppression", ["boxes", "r", "k"], ["sel"], name="nms"),
    ]
    model = make_model(
        nodes,
        [tensor_info("boxes", np.float32, [1, 6, 4]), tensor_info("s", np.float32, [1, 1, 6])],
        [tensor_info("sel", np.int64, None)],
        [init("k", np.array([3], np.int64))],
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    report = report_of(optimized)
    assert list(report.unconverted) == ["OnnxNonMaxSuppression"]
    (why,) = report.unconverted["OnnxNonMaxSuppression"]
    assert why == "nms: output shape depends on the data", why
    assert "left as is: OnnxNonMaxSuppression" in report.table()
    rng = np.random.default_rng(0)
    corners = np.sort(rng.random((1, 6, 2, 2)), axis=2).reshape(1, 6, 4).astype(np.float32)
    scores = rng.random((1, 1, 6)).astype(np.float32)
    got = optimized(torch.from_numpy(corners), torch.from_numpy(scores))
    np.testing.assert_array_equal(got.numpy(), run_ort(model, [corners, scores])[0])


def test_a_corrupt_onnx_file_names_the_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(InputError, match="broken.onnx"):
        from_onnx(path)


def test_an_op_onnx2torch_cannot_convert_is_an_input_error():
    model = make_model(
        [helper.make_node("Hardmax", ["x"], ["y"])],
        [tensor_info("x", np.float32, [3, 3])],
        [tensor_info("y", np.float32, [3, 3])],
    )
    with pytest.raises(InputError, match="Hardmax"):
        from_onnx(model)


def test_a_valid_model_with_an_unused_initializer_loses_the_buffer():
    model = make_model(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        [tensor_info("x", np.float32, ["N", 3])],
        [tensor_info("y", np.float32, ["N", 3])],
        [init("b", np.arange(3, dtype=np.float32)), init("unused", np.ones(5, np.float32))],
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert (
        sum(t.numel() for t in optimized.buffers()) + sum(p.numel() for p in optimized.parameters())
        == 3
    )


def test_flatten_onnx2torch_crashes_on_is_lowered_by_the_spec():
    """onnx2torch's Flatten(axis=0) raises when run; optimize never runs the
    model (shapes come from the analysis) and lowers it by the ONNX spec:
    the output is [1, N * 6] and matches onnxruntime at two batch sizes."""
    model = make_model(
        [helper.make_node("Flatten", ["x"], ["y"], axis=0)],
        [tensor_info("x", np.float32, ["N", 2, 3])],
        [tensor_info("y", np.float32, [1, None])],
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert report_of(optimized).unconverted == {}
    for batch in (1, 4):
        x = np.random.default_rng(batch).standard_normal((batch, 2, 3)).astype(np.float32)
        expected = run_ort(model, [x])[0]
        got = optimized(torch.from_numpy(x)).numpy()
        assert got.shape == expected.shape == (1, batch * 6)
        np.testing.assert_array_equal(got, expected)
