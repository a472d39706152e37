"""Attention scores masked by a Where between the scores and the scores plus a term.

Keras 3 ``Attention`` writes ``where(~m, s - 1e9, s)``: that is ``s + where(~m, -1e9, 0)``
bit for bit (s + 0 is s), an additive mask, whatever the term (numbers, tensors, sums of
them) as long as it is independent of the scores and of v and broadcasts to the scores
(`patterns/_attention_scores.py`, ``_walk_gated``). Every case is compared with
onnxruntime; the near misses are refused.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_fusion_attention import (
    Graph,
    S,
    core,
    feeds,
    finish,
    fused,
    heads,
    optimized,
    plain,
    refused,
    sdpa_calls,
)


def keep_mask(g: Graph, shape=("N", 1, 1, "S")) -> str:
    return g.input("keep", list(shape), np.bool_)


@pytest.mark.parametrize("form", ["keras", "mirror", "term_first", "scaled_after"])
def test_where_of_scores_plus_a_number_is_an_additive_mask(form):
    g, scores, v = plain(None if form == "keras" else "mul")
    keep = keep_mask(g)
    big = g.const("big", 1e9)
    if form == "keras":  # where(~m, s - 1e9, s)
        hidden = g.op("Not", [keep], "hidden")
        low = g.op("Sub", [scores, big], "low")
        logits = g.op("Where", [hidden, low, scores], "logits")
    elif form == "mirror":  # where(m, s, s + (-1e9))
        low = g.op("Add", [scores, g.const("neg_big", -1e9)], "low")
        logits = g.op("Where", [keep, scores, low], "logits")
    elif form == "term_first":  # where(m, s, -1e4 + s)
        low = g.op("Add", [g.const("neg", -1e4), scores], "low")
        logits = g.op("Where", [keep, scores, low], "logits")
    else:  # the scale after the Where scales the term too
        hidden = g.op("Not", [keep], "hidden")
        low = g.op("Sub", [scores, big], "low")
        masked = g.op("Where", [hidden, low, scores], "masked")
        logits = g.op("Mul", [masked, g.const("half", 0.5)], "logits")
    module = fused(finish(g, logits, v))
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs


def test_where_of_scores_plus_tensor_terms_is_an_additive_mask():
    """(s + 2 * bias) - 3 under the mask: the pieces are summed under one Where."""
    g, scores, v = plain()
    keep = keep_mask(g)
    bias = g.input("bias", ["N", 1, "S", "S"])
    twice = g.op("Mul", [bias, g.const("two", 2.0)], "twice")
    plus = g.op("Add", [scores, twice], "plus")
    minus = g.op("Sub", [plus, g.const("three", 3.0)], "minus")
    fused(finish(g, g.op("Where", [keep, minus, scores], "logits"), v))


def test_fully_masked_rows_keep_the_models_values():
    """Every key hidden: s - 1e9 everywhere, the same sums before and after."""
    g, scores, v = plain()
    keep = keep_mask(g)
    low = g.op("Sub", [scores, g.const("big", 1e9)], "low")
    model = finish(g, g.op("Where", [keep, scores, low], "logits"), v)
    module = optimized(model)
    assert len(sdpa_calls(module)) == 1
    inputs = feeds(model, (2, S))
    inputs["keep"][:] = False
    expected = ort.InferenceSession(model.SerializeToString()).run(None, inputs)[0]
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- must refuse


@pytest.mark.parametrize("term", ["scores_twice", "relu_of_scores", "from_v"])
def test_a_term_from_the_scores_or_v_is_refused(term):
    g, scores, v = plain()
    keep = keep_mask(g)
    if term == "scores_twice":  # where(m, s + s, s)
        other = scores
    elif term == "relu_of_scores":
        other = g.op("Relu", [scores], "relu")
    else:  # sum over v's features, [N, H, 1, S]
        total = g.op("ReduceSum", [v, g.const("last", [-1], np.int64)], "v_sum", keepdims=1)
        other = g.op("Transpose", [total], "v_row", perm=[0, 1, 3, 2])
    plus = g.op("Add", [scores, other], "plus")
    refused(finish(g, g.op("Where", [keep, plus, scores], "logits"), v))


def test_branches_on_different_scores_are_refused():
    g = Graph()
    q, k, k2, v = (heads(g, n) for n in ("q", "k", "k2", "v"))
    scores = core(g, q, k)
    k2t = g.op("Transpose", [k2], "k2T", perm=[0, 1, 3, 2])
    other = g.op("MatMul", [q, k2t], "qk2")
    low = g.op("Sub", [other, g.const("big", 1e9)], "low")
    keep = keep_mask(g)
    refused(finish(g, g.op("Where", [keep, scores, low], "logits"), v))


def _rank5(g: Graph, logits: str, v: str):
    p = g.op("Softmax", [logits], "probs", axis=-1)
    return g.model(g.op("MatMul", [p, v], "o"), rank=5)


def test_a_mask_or_term_that_does_not_broadcast_is_refused():
    """A [2, 1, 1, 1, S] mask or term makes the scores 5-D: SDPA cannot take it."""
    for which in ("mask", "term"):
        g, scores, v = plain()
        wide = ["two", 1, 1, 1, "S"]
        if which == "mask":
            keep = keep_mask(g, wide)
            low = g.op("Sub", [scores, g.const("big", 1e9)], "low")
        else:
            keep = keep_mask(g)
            low = g.op("Add", [scores, g.input("wide", wide)], "low")
        model = _rank5(g, g.op("Where", [keep, scores, low], "logits"), v)
        module = optimized(model)
        assert not sdpa_calls(module), module.code
        inputs = feeds(model, (2, S))
        inputs = {k: a[:2] if a.shape[0] == 3 else a for k, a in inputs.items()}
        expected = ort.InferenceSession(model.SerializeToString()).run(None, inputs)[0]
        with torch.no_grad():
            got = module(*(torch.from_numpy(a) for a in inputs.values())).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
