"""Everything the README's first examples use is an attribute of the package."""

from __future__ import annotations

import fxsurgeon

README_NAMES = (
    "optimize",
    "from_tensorflow",
    "from_onnx",
    "export_onnx",
    "verify",
    "save",
    "load",
    "bisect",
    "report_of",
    "parameter_origins",
)


def test_every_name_the_readme_uses_is_public():
    missing = [n for n in README_NAMES if n not in fxsurgeon.__all__ or not hasattr(fxsurgeon, n)]
    assert not missing


def test_verify_is_the_function_and_the_subpackage(zoo_onnx):
    model = fxsurgeon.optimize(fxsurgeon.from_onnx(zoo_onnx("keras_mlp")))
    report = fxsurgeon.verify(model, zoo_onnx("keras_mlp"), batch_sizes=(1, 3))
    assert isinstance(report, fxsurgeon.verify.VerifyReport)
    assert report.passed, report.table()
    assert len(report.results) == 2
