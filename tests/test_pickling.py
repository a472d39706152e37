"""``torch.save(model)`` / ``torch.load`` of an optimized model (fxsurgeon/pipeline.py's
`Retracer`): loading traces the pickled code again, and fxsurgeon's runtime helpers
(`follow_dtype`, `run_cond`) stay one call each, as in the graph; the loaded model gives
the same outputs bit for bit, with the same trainable parameters."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from onnx_cases import assert_matches_ort
from test_half_precision import _branch_model, _inputs
from zoo import convert

import fxsurgeon


def _round_trip(module: torch.nn.Module) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def _same(a: torch.nn.Module, b: torch.nn.Module, inputs) -> None:
    with torch.no_grad():
        got, want = b(*inputs), a(*inputs)
    got = got if isinstance(got, (tuple, list)) else [got]
    want = want if isinstance(want, (tuple, list)) else [want]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    assert [(n, p.shape, p.requires_grad) for n, p in a.named_parameters()] == [
        (n, p.shape, p.requires_grad) for n, p in b.named_parameters()
    ]


@pytest.fixture(scope="module")
def bert():
    return fxsurgeon.optimize(copy.deepcopy(convert("bert_tiny")))


def test_an_optimized_encoder_pickles(bert):
    ids = torch.randint(0, 50, (2, 7), dtype=torch.int32)
    mask = torch.ones(2, 7, dtype=torch.int32)
    mask[1, 5:] = 0
    inputs = [ids, mask, torch.zeros_like(ids)][: len(bert.meta["fxsurgeon.source"].input_specs)]
    _same(bert, _round_trip(bert), inputs)


def test_a_torch_cond_branch_pickles():
    module = assert_matches_ort(_branch_model(True), _inputs())
    inputs = [torch.from_numpy(i) for i in _inputs()]
    _same(module, _round_trip(module), inputs)


def test_without_the_retracer_the_helpers_are_traced_into(bert):
    """Refusal side: torch's own tracer follows `follow_dtype` into its dtype test."""
    plain = copy.deepcopy(bert)
    for module in plain.modules():
        if isinstance(module, torch.fx.GraphModule):
            module._tracer_cls = None
    with pytest.raises(torch.fx.proxy.TraceError):
        _round_trip(plain)
