"""``fxsurgeon.freeze``: BatchNorm folded into the conv before it, same outputs within 1e-5."""

from __future__ import annotations

import functools

import torch
import zoo

import fxsurgeon
from fxsurgeon.nn import KerasBatchNorm
from fxsurgeon.verify import verify


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def _count(gm: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in gm.modules())


def test_freeze_folds_batchnorm_and_keeps_outputs() -> None:
    model = optimized("keras_cnn")
    before = _count(model, KerasBatchNorm)
    assert before == 2
    frozen = fxsurgeon.freeze(model)
    assert _count(frozen, KerasBatchNorm) == 0
    assert frozen.meta["fxsurgeon.frozen"]["bn_folded"] == before
    assert _count(model, KerasBatchNorm) == before  # the input is not mutated
    assert model.training == optimized("keras_cnn").training
    report = verify(frozen, model, batch_sizes=(1, 2), atol=1e-5)
    assert report.passed, report


def test_freeze_leaves_a_model_without_batchnorm_alone() -> None:
    model = optimized("bert_tiny")
    frozen = fxsurgeon.freeze(model)
    assert frozen.meta["fxsurgeon.frozen"]["bn_folded"] == 0
    assert len(frozen.graph.nodes) == len(model.graph.nodes)
    assert verify(frozen, model, batch_sizes=(2,), atol=1e-5).passed
