"""Converted models follow their parameters' dtype, like a native PyTorch module.

``model.to(torch.bfloat16)``, ``.half()`` and ``.double()`` must give a model that
runs in that dtype: a float Cast that tf2onnx wrote only to restate the model's
float type (float32 -> float32) is dropped at lowering (exactly equivalent in
float32), and the attention rule casts a float mask to the query's dtype
(``patterns/attention.py``), so no float32 constant pins the computation.
Integer and bool casts stay as they are.

Low-precision outputs are judged with ``fxsurgeon.verify``'s fp64 rule (that of
torch._dynamo's accuracy checker) against the float32 optimized model; float64
outputs against it with float32's tolerance. Each runs eager and under
``torch.compile(backend="eager")`` (Dynamo traces, no Inductor code generation).
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import zoo

import fxsurgeon
from fxsurgeon.verify import verify

MODELS = ("vit_tiny", "bert_tiny", "gpt2_tiny", "keras_cnn")
DTYPES = {
    "bfloat16": (torch.bfloat16, "bfloat16"),
    "half": (torch.float16, "float16"),
    "double": (torch.float64, "float64"),
}


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def _cast(model: torch.nn.Module, how: str) -> torch.nn.Module:
    model = copy.deepcopy(model)
    if how == "bfloat16":
        return model.to(torch.bfloat16)
    return getattr(model, how)()


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("how", list(DTYPES))
@pytest.mark.parametrize("name", MODELS)
def test_model_follows_its_dtype(name: str, how: str, compiled: bool) -> None:
    reference = optimized(name)
    model = _cast(reference, how)
    dtype, dtype_name = DTYPES[how]
    assert {p.dtype for p in model.parameters() if p.is_floating_point()} == {dtype}
    if compiled:
        torch._dynamo.reset()
        model = torch.compile(model, backend="eager")
    report = verify(model, reference, batch_sizes=(2,))
    assert report.passed, report
    floats = [r for r in report.results if r.ref_dtype and "float" in r.ref_dtype]
    assert floats, "no floating output compared"
    assert {r.dtype for r in floats} == {dtype_name}
    if dtype != torch.float64:
        assert {r.rule for r in floats} != {"allclose"}, "low precision not judged by fp64 rule"


def test_float32_model_is_untouched_by_a_cast_copy() -> None:
    reference = optimized("bert_tiny")
    before = {k: v.dtype for k, v in reference.state_dict().items()}
    _cast(reference, "half")
    assert {k: v.dtype for k, v in reference.state_dict().items()} == before
