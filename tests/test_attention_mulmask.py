"""Attention scores masked by a 0/1 factor: ``s * band - c * (1 - band)``.

Transfo-XL writes ``attn_score * (1.0 - attn_mask) - 1e30 * attn_mask``, its mask the float
of an int 0/1 band of ``tf.linalg.band_part`` (tf2onnx: ``Where(not(i - j > 0), 1, 0)``).
A factor proven to hold only 0s and 1s (`zero_one` in ``patterns/_attention_graph.py``:
casts, ``1 - x``, Not, layout ops, a boolean or ``Where(c, 1, 0)`` at the root) with a
term hiding its complement is ``Where(band, s, -c)``: causal at every length it is
``is_causal`` (c >= 1e3), else an additive mask when c >= 1e30 (``patterns/attention.py``).
Every case is compared with onnxruntime; the near misses are refused.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto
from test_fusion_attention import (
    Graph,
    S,
    causal_range,
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


def int_band(g: Graph, scores: str, form: str = "txl", shift: int = 0) -> str:
    """Transfo-XL's mask m, float [S, S], 1 where hidden: ``1 - Where(lower, 1, 0)`` in
    int32, cast to float. `form` "txl": lower is ``not(-(i - j) > shift)`` as tf2onnx writes
    band_part; "range": ``i >= j + shift`` (the causal test reads it)."""
    if form == "range":
        lower = causal_range(g, scores, shift=shift)
    else:
        causal_range(g, scores)  # rows [S, 1] and cols [S]
        diff = g.op("Sub", ["rows", "cols"], "diff")
        limit = g.const("limit", shift, np.int64)
        above = g.op("Greater", [g.op("Neg", [diff], "neg_diff"), limit], "above")
        lower = g.op("Not", [above], "lower")
    one_i, zero_i = g.const("one_i", 1, np.int32), g.const("zero_i", 0, np.int32)
    ones = g.op("Where", [lower, one_i, zero_i], "ones")
    hidden = g.op("Sub", [g.const("one_int", 1, np.int32), ones], "hidden_int")
    return g.op("Cast", [hidden], "m", to=TensorProto.FLOAT)


def mulmask(g: Graph, scores: str, m: str, big: float = 1e30, hide: str | None = None) -> str:
    """``s * (1 - m) + (1e-9 - big * hide)`` (hide: m unless given), as TF's graph has it."""
    keep = g.op("Sub", [g.const("one_f", 1.0), m], "keep")
    kept = g.op("Mul", [scores, keep], "kept")
    term = g.op("Mul", [g.const("big", big), hide or m], "big_m")
    fill = g.op("Sub", [g.const("tiny", 1e-9), term], "fill")
    return g.op("Add", [kept, fill], "masked")


# --------------------------------------------------------------------------- must match


@pytest.mark.parametrize(("shift", "expect"), [(0, "causal"), (-1, "mask"), (1, "mask")])
def test_transfo_xl_int_band(shift, expect):
    """tf2onnx's band_part ``not(-(i - j) > shift)`` read through its canonical form
    (``patterns/_attention_causal.py``): at shift 0 it is j <= i, is_causal; at -1 the
    strict triangle (row 0 hides every key) and at 1 a band one key wider stay a mask with
    1e30 (a uniform row, as the model's)."""
    g, scores, v = plain()
    module = fused(finish(g, mulmask(g, scores, int_band(g, scores, shift=shift)), v))
    kwargs = sdpa_calls(module)[0].kwargs
    assert kwargs == {"is_causal": True} if expect == "causal" else "attn_mask" in kwargs


@pytest.mark.parametrize("big", [1e4, 1e30])
def test_a_causal_int_band_is_is_causal(big):
    g, scores, v = plain()
    module = fused(finish(g, mulmask(g, scores, int_band(g, scores, "range"), big), v))
    assert sdpa_calls(module)[0].kwargs == {"is_causal": True}


@pytest.mark.parametrize(("perm", "expect"), [([2, 3, 0, 1], "causal"), ([2, 3, 1, 0], "mask")])
def test_a_band_moved_by_layout_ops_with_its_term(perm, expect):
    """Transfo-XL after its [i, j, b, n] scores are oriented: the factor and the whole term
    are permuted [S, S, 1, 1] -> [1, 1, S, S], the term's pieces under the permute. The
    band is read through the permute and unsqueeze, its hiding term ``1e-9 - 1e30 * m``
    taken out whole from under the permute: is_causal. A permute that swaps the band's
    rows and columns makes it the upper triangle: an additive mask."""
    g, scores, v = plain()
    m = int_band(g, scores)
    m4 = g.op("Unsqueeze", [m, g.const("axes", [2, 3], np.int64)], "m4")
    keep = g.op("Transpose", [g.op("Sub", [g.const("one_f", 1.0), m4], "keep4")], "keep", perm=perm)
    kept = g.op("Mul", [scores, keep], "kept")
    fill4 = g.op(
        "Sub", [g.const("tiny", 1e-9), g.op("Mul", [g.const("big", 1e30), m4], "big_m")], "fill4"
    )
    fill = g.op("Transpose", [fill4], "fill", perm=perm)
    module = fused(finish(g, g.op("Add", [kept, fill], "masked"), v))
    kwargs = sdpa_calls(module)[0].kwargs
    assert kwargs == {"is_causal": True} if expect == "causal" else "attn_mask" in kwargs


def test_a_bool_padding_factor_and_terms_below_it():
    """``(s + bias) * float(keep) - 1e30 * float(not keep)``: a bias term under the factor
    is multiplied by it too, and still masked alike."""
    g, scores, v = plain()
    bias = g.op("Add", [scores, g.input("bias", ["N", 2, "S", "S"])], "biased")
    keep = g.input("keep", ["N", 1, 1, "S"], np.bool_)
    band = g.op("Cast", [keep], "band", to=TensorProto.FLOAT)
    hidden = g.op("Cast", [g.op("Not", [keep], "hide")], "hidden", to=TensorProto.FLOAT)
    kept = g.op("Mul", [bias, band], "kept")
    fill = g.op("Mul", [hidden, g.const("big", -1e30)], "fill")
    module = fused(finish(g, g.op("Add", [kept, fill], "masked"), v))
    assert "attn_mask" in sdpa_calls(module)[0].kwargs


@pytest.mark.parametrize(
    ("tri", "big", "expect"), [(np.tril, 1e4, "causal"), (np.triu, 1e30, "mask")]
)
def test_a_band_and_its_term_folded_to_constants(tri, big, expect):
    """At a static length tf2onnx folds both: the factor a 0/1 constant, the term the
    constant -c * (1 - band). Lower triangle: is_causal; upper: an additive mask."""
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    scores = core(g, q, k)
    band = tri(np.ones((S, S), np.float32))
    kept = g.op("Mul", [g.const("band", band), scores], "kept")
    masked = g.op("Sub", [kept, g.const("term", big * (1 - band))], "masked")
    model = finish(g, masked, v)
    module = optimized(model)
    (call,) = sdpa_calls(module)
    assert call.kwargs == {"is_causal": True} if expect == "causal" else "attn_mask" in call.kwargs
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = feeds(model, (3, S))
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values()))
    np.testing.assert_allclose(got.numpy(), session.run(None, inputs)[0], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- must refuse


def test_a_factor_not_zero_one_is_refused():
    """0.5 * m is no band: the hidden scores keep half their value."""
    g, scores, v = plain()
    m = int_band(g, scores)
    half = g.op("Mul", [m, g.const("half", 0.5)], "half_m")
    refused(finish(g, mulmask(g, scores, half, hide=m), v))


def test_a_hiding_term_of_another_mask_is_refused():
    """The term hides float(i > j), not the factor's complement float(j > i)."""
    g, scores, v = plain()
    m = int_band(g, scores)
    strict = g.op("Greater", ["rows", "cols"], "strict")  # i > j: m hides j > i
    other = g.op("Cast", [strict], "other", to=TensorProto.FLOAT)
    refused(finish(g, mulmask(g, scores, m, hide=other), v))


@pytest.mark.parametrize("big", [1e9, -1e30])
def test_a_fill_too_small_or_positive_is_refused(big):
    """A band not causal (band_part one key wider than the triangle) with c = 1e9 (a fully
    hidden row would change) or c < 0."""
    g, scores, v = plain()
    refused(finish(g, mulmask(g, scores, int_band(g, scores, shift=1), big), v))


def test_a_folded_term_that_is_not_a_multiple_of_the_complement_is_refused():
    """The constant term hides one key less than the band does: no -c * (1 - band)."""
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    scores = core(g, q, k)
    band = np.triu(np.ones((S, S), np.float32))
    term = 1e30 * (1 - band)
    term[-1, 0] = 0.0
    kept = g.op("Mul", [g.const("band", band), scores], "kept")
    refused(finish(g, g.op("Sub", [kept, g.const("term", term)], "masked"), v))


def test_a_hiding_term_under_the_factor_is_refused():
    """(s - 1e30 * m) * (1 - m): the factor zeroes its own hiding term, nothing is hidden."""
    g, scores, v = plain()
    m = int_band(g, scores)
    low = g.op("Sub", [scores, g.op("Mul", [g.const("big", 1e30), m], "big_m")], "low")
    keep = g.op("Sub", [g.const("one_f", 1.0), m], "keep")
    refused(finish(g, g.op("Mul", [low, keep], "masked"), v))


def test_terms_below_a_causal_band_with_a_small_fill_are_refused():
    """(s + bias) * band - 1e4 * (1 - band): the bias may push visible scores below the
    hiding fill, so the band is no causal mask there, and 1e4 is no additive mask."""
    g, scores, v = plain()
    bias = g.op("Add", [scores, g.input("bias", ["N", 2, "S", "S"])], "biased")
    refused(finish(g, mulmask(g, bias, int_band(g, scores, "range"), 1e4), v))


@pytest.mark.parametrize(("shift", "expect"), [(0, "causal"), (1, "mask")])
def test_terms_below_a_causal_band_with_a_huge_fill(shift, expect):
    """Transfo-XL: ``(s + bd) * (1 - m) - 1e30 * m``, bd its relative-position term. With
    a fill <= -1e30 the visible scores stay far above it (the rounding the additive mask
    relies on), so the causal band is the triangle in the mask (-inf), bd kept; a band
    one key wider stays the additive mask."""
    g, scores, v = plain()
    bias = g.op("Add", [scores, g.input("bias", ["N", 2, "S", "S"])], "biased")
    module = fused(finish(g, mulmask(g, bias, int_band(g, scores, shift=shift)), v))
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs and "is_causal" not in call.kwargs
    assert ("tril" in module.code) == (expect == "causal")  # the triangle, as -inf


# ------------------------------------------- a padding mask as deep as the causal fill (GPT-2)


def _left_padded(model) -> None:
    """The module matches onnxruntime on a batch whose rows start with padding: the first
    queries of those rows see padded keys only (HF's left padding for generation)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = feeds(model, (3, S))
    keep = np.ones((3, 1, 1, S), np.bool_)
    keep[0, ..., :2] = keep[2, ..., :1] = False
    inputs["attn_keep"] = keep
    module = optimized(model)
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values()))
    np.testing.assert_allclose(got.numpy(), session.run(None, inputs)[0], atol=1e-5, rtol=0)


def gpt2_scores(g: Graph, scores: str, causal: float, pad: float, where: bool = False) -> str:
    """TF GPT-2: ``s * band - c * (1 - band)`` (or ``Where(band, s, -c)``), then the
    padding ``(1 - attn_keep) * pad`` added."""
    tri = causal_range(g, scores)
    if where:
        masked = g.op("Where", [tri, scores, g.const("c", -causal)], "causal_scores")
    else:
        band = g.op("Cast", [tri], "band", to=TensorProto.FLOAT)
        masked = mulmask(g, scores, g.op("Sub", [g.const("one_b", 1.0), band], "m"), causal)
    keep = g.op("Cast", [g.input("attn_keep", ["N", 1, 1, "S"], np.bool_)], "keep_f", to=1)
    hidden = g.op("Sub", [g.const("one_k", 1.0), keep], "hidden")
    return g.op("Add", [masked, g.op("Mul", [hidden, g.const("pad", pad)], "padding")], "logits")


@pytest.mark.parametrize("where", [False, True], ids=["band", "where"])
def test_a_causal_fill_no_deeper_than_the_padding_fill_is_refused(where):
    """GPT-2 fills both its causal band and its padding with -1e4: in a row whose visible
    keys are all padding, TF's hidden real keys score -1e4 as the visible padded ones
    (w - 1e4) do, and weigh as much; is_causal (-inf) would drop them. Not exact, so not
    fused (the outputs differed by up to 3.5 at the padded rows of hf_gpt2_prefill)."""
    g, scores, v = plain()
    model = finish(g, gpt2_scores(g, scores, 1e4, -1e4, where), v)
    refused(model)
    _left_padded(model)


@pytest.mark.parametrize("where", [False, True], ids=["band", "where"])
def test_a_causal_fill_far_below_the_padding_fill_is_is_causal(where):
    """The causal fill 1e9 stays far below a visible padded key's w - 1e4: the hidden keys
    weigh exactly 0 in every row, so the band is the causal mask, exact on left padding."""
    g, scores, v = plain()
    model = finish(g, gpt2_scores(g, scores, 1e9, -1e4, where), v)
    module = fused(model)
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs
    assert "tril" in module.code or call.kwargs.get("is_causal")
    _left_padded(model)
