"""docs/coverage.md is generated from onnx2torch's converter registry and is current."""

from pathlib import Path

import fxsurgeon  # noqa: F401
from fxsurgeon.lower import LOWERINGS, onnx2torch_classes
from fxsurgeon.lower.coverage import coverage_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"


def test_coverage_doc_is_current():
    assert DOC.read_text() == coverage_markdown(), "run python -m fxsurgeon.lower.coverage"


def test_registry_list_holds_the_torch_nn_modules_onnx2torch_emits():
    classes = onnx2torch_classes()
    assert {"ReLU6", "Conv2d", "OnnxReshape", "OnnxSlice"} <= set(classes)
    assert "Hardshrink" not in classes  # no ONNX op becomes it
    assert "ReLU6" in LOWERINGS
