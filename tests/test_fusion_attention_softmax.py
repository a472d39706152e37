"""Softmaxes written out (patterns/softmax.py), in attention and on their own.

CogView's PB-Relax (HF LayoutLMv3): ``softmax((s * 2^-5 - max(s * 2^-5)) * 2^5)`` is
bitwise ``softmax(s)`` (a power-of-two scale pair, the max shift); with a factor that is
not a power of two it is not, and is left alone. Keras 3's Softmax over several axes,
``exp(x - reduce_logsumexp(x, axes))`` with its finite-max guard, is a softmax over those
axes (flattened when they are several trailing ones). Every case is compared with
onnxruntime at two sizes; the max-shift rules are also compared bitwise with the graph
they replace.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fusion_attention import (
    Graph,
    S,
    assert_matches_ort,
    feeds,
    finish,
    fused,
    optimized,
    plain,
    refused,
    softmax_count,
)

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx


def count(module, target) -> int:
    return sum(1 for n in module.graph.nodes if n.target is target)


def cogview(c=1 / 32, e=32.0, keepdims=False, axis=-1):
    """Scores * c, minus their max over `axis` (ReduceMax, then Unsqueeze where
    `keepdims` is off, as tf2onnx writes tf.expand_dims), times e, Softmax, @ v."""
    g, scores, v = plain()
    y = g.op("Mul", [scores, g.const("c", c)], "scaled_down")
    m = g.op("ReduceMax", [y], "row_max", axes=[axis], keepdims=int(keepdims))
    if not keepdims:
        m = g.op("Unsqueeze", [m, g.const("at", [axis % 4], np.int64)], "row_max_kept")
    shifted = g.op("Sub", [y, m], "shifted")
    return finish(g, g.op("Mul", [shifted, g.const("e", e)], "scaled_up"), v)


# --------------------------------------------------------------------------- CogView


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize(("c", "e"), [(1 / 32, 32.0), (0.25, 4.0), (2.0, 0.5)])
def test_cogview_scale_pair_and_max_shift_are_plain_attention(c, e, keepdims):
    module = fused(cogview(c, e, keepdims))
    matches = fxsurgeon.report_of(module).matches
    assert matches.get("softmax_scale_1") == 1 and "sdpa_1" in matches


@pytest.mark.parametrize(
    ("c", "e", "why"),
    [
        (0.1, 10.0, "not a power of two: (s * 0.1 - m) * 10 rounds otherwise than s - m / 0.1"),
        (-1 / 32, -32.0, "a negative factor after the shift: the max becomes a min"),
    ],
)
def test_cogview_with_an_inexact_scale_pair_is_refused(c, e, why):
    module = refused(cogview(c, e))
    assert softmax_count(module) == 1, why


def test_a_max_over_another_axis_than_the_softmax_is_refused():
    model = cogview(axis=-2)
    module = optimized(model)
    assert not fxsurgeon.report_of(module).matches.get("softmax_shift_4")
    assert softmax_count(module) == 1
    assert_matches_ort(module, model)


@pytest.mark.parametrize("keepdims", [False, True])
def test_the_max_shift_alone_is_bitwise_the_softmax(keepdims):
    """softmax(x - max x) computes exp(x - max x) / sum, as softmax(x) does."""
    g = Graph()
    x = g.input("x", ["N", 3, S])
    m = g.op("ReduceMax", [x], "m", axes=[-1], keepdims=int(keepdims))
    if not keepdims:
        m = g.op("Unsqueeze", [m, g.const("at", [2], np.int64)], "m_kept")
    p = g.op("Softmax", [g.op("Sub", [x, m], "shifted")], "p", axis=-1)
    model = g.model(p, rank=3)
    module = optimized(model)
    kept = fxsurgeon.optimize(from_onnx(model), disable=["softmax_shift"])
    assert count(module, torch.amax) == 0 and count(kept, torch.amax) == 1
    inputs = feeds(model, (3, S))
    x = torch.from_numpy(inputs["x"]) * 30
    with torch.no_grad():
        assert torch.equal(module(x), kept(x))
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- logsumexp


def logsumexp_softmax(g: Graph, x: str, axes, guard: bool = True) -> str:
    """exp(x - logsumexp(x, axes)) as tf2onnx writes tf.reduce_logsumexp (Keras 3's
    Softmax): ReduceMax, its finite guard (IsInf, IsNaN, Or, Not, Where), Sub, Exp,
    ReduceSum, Log, Add, Sub, Exp."""
    m = g.op("ReduceMax", [x], "lse_max", axes=list(axes), keepdims=1)
    if guard:
        bad = g.op("Or", [g.op("IsInf", [m], "max_inf"), g.op("IsNaN", [m], "max_nan")], "bad")
        ok = g.op("Not", [bad], "finite")
        m = g.op("Where", [ok, m, g.const("zero", 0.0)], "lse_shift")
    e = g.op("Exp", [g.op("Sub", [x, m], "lse_sub")], "lse_exp")
    total = g.op("ReduceSum", [e, g.const("lse_axes", list(axes), np.int64)], "lse_sum", keepdims=1)
    lse = g.op("Add", [g.op("Log", [total], "lse_log"), m], "lse")
    return g.op("Exp", [g.op("Sub", [x, lse], "lse_out")], "probs_lse")


@pytest.mark.parametrize("guard", [True, False])
@pytest.mark.parametrize("axes", [(-1,), (-2, -1), (1, 2, 3)])
def test_logsumexp_softmax_over_trailing_axes_is_a_softmax(axes, guard):
    g = Graph()
    x = g.input("x", ["N", 3, 4, S])
    model = g.model(logsumexp_softmax(g, x, axes, guard))
    module = optimized(model)
    assert softmax_count(module) == 1 and count(module, torch.exp) == 0, module.code
    assert_matches_ort(module, model)
    with torch.no_grad():  # a softmax over the axes: they sum to one
        out = module(torch.randn(2, 3, 4, S))
    torch.testing.assert_close(out.sum(dim=axes), torch.ones(out.sum(dim=axes).shape))


@pytest.mark.parametrize("axes", [(1, 3), (0, -1)])
def test_logsumexp_over_axes_that_are_not_trailing_is_left_alone(axes):
    """A flatten of axes that are not adjacent and last would reorder elements."""
    g = Graph()
    x = g.input("x", ["N", 3, 4, S])
    model = g.model(logsumexp_softmax(g, x, axes))
    module = optimized(model)
    assert softmax_count(module) == 0 and count(module, torch.exp) == 2
    assert_matches_ort(module, model)


def test_logsumexp_softmax_in_attention_is_sdpa():
    g, scores, v = plain()
    probs = logsumexp_softmax(g, scores, (-1,))
    o = g.op("MatMul", [probs, v], "o")
    fused(g.model(o))


@pytest.mark.parametrize("fill", [-1e9, float(np.finfo(np.float32).min)])
def test_logsumexp_over_a_masked_fill_is_not_a_softmax(fill):
    """A fully masked row: every score the fill m, and m + log(n) rounds to m, so
    exp(x - logsumexp) gives 1s where softmax gives 1/n: left as written, still exact."""
    g = Graph()
    x = g.input("x", ["N", 3, 4, S])
    keep = g.input("keep", ["N", 3, 4, 1], np.bool_)
    masked = g.op("Where", [keep, x, g.const("fill", fill)], "masked")
    model = g.model(logsumexp_softmax(g, masked, (-1,)))
    module = optimized(model)
    assert softmax_count(module) == 0 and count(module, torch.exp) == 2, module.code
    assert_matches_ort(module, model)
    inputs = feeds(model, (2, S))
    inputs["keep"][...] = False  # every row masked: the model's own 1s
    with torch.no_grad():
        out = module(*(torch.from_numpy(a) for a in inputs.values()))
    assert torch.equal(out, torch.ones_like(out))
