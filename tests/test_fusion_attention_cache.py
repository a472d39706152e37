"""GPT-2's causal band over a key/value cache (patterns/attention.py): the keys are the
cached ones then the new ones (Lk = T + S for S queries), and the band ``i >= j - Lk + Lq``
is the triangle aligned at the last key, as is GPT-J's slice ``tril[Lk - Lq : Lk, :Lk]`` of
a constant triangle. SDPA's ``is_causal`` aligns at the first, so it
becomes the -inf mask ``j > i + Lk - Lq``, taken only where the lowering's sizes prove
Lk >= Lq (every row then sees key 0); keys of a length of their own (cross-attention over
a memory) are refused. Against onnxruntime (helpers of test_fusion_attention)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from tests.test_fusion_attention import (
    TRIL,
    D,
    E,
    Graph,
    H,
    core,
    finish,
    fused,
    gptj_band,
    heads,
    refused,
    sdpa_calls,
)


def band_over(g: Graph, scores: str) -> str:
    """rows Range(0, Lq)[:, None] >= cols Range(0, Lk) - Lk + Lq, as a 0/1 float band, and
    the scores ``s * band - 1e4 * (1 - band)`` (TF GPT-2's ``causal_attention_mask``)."""
    shape = g.op("Shape", [scores], "scores_shape")
    lq = g.op("Gather", [shape, g.const("axis_q", 2, np.int64)], "lq")
    lk = g.op("Gather", [shape, g.const("axis_k", 3, np.int64)], "lk")
    zero, one = g.const("zero", 0, np.int64), g.const("one", 1, np.int64)
    rows = g.op("Range", [zero, lq, one], "rows_1d")
    rows = g.op("Unsqueeze", [rows, g.const("ax1", [1], np.int64)], "rows")
    cols = g.op("Range", [zero, lk, one], "cols_1d")
    cols = g.op("Add", [g.op("Sub", [cols, lk], "cols_back"), lq], "cols")
    band = g.op("Cast", [g.op("GreaterOrEqual", [rows, cols], "tri")], "band", to=TensorProto.FLOAT)
    kept = g.op("Mul", [scores, band], "kept")
    hidden = g.op("Sub", [g.const("one_f", 1.0), band], "hidden")
    return g.op("Sub", [kept, g.op("Mul", [hidden, g.const("big", 1e4)], "big_hidden")], "masked")


def cached(name: str, g: Graph, past: str) -> str:
    """Concat(past [N, H, T, D], the new tokens' heads) on the sequence axis."""
    return g.op("Concat", [past, heads(g, name)], f"{name}_all", axis=2)


def test_the_band_over_a_cache_is_sdpa_with_a_mask_aligned_at_the_last_key():
    g = Graph()
    q, k, v = _cache_attention(g)
    module = fused(finish(g, band_over(g, core(g, q, k)), v))
    (call,) = sdpa_calls(module)
    assert "is_causal" not in call.kwargs and "attn_mask" in call.kwargs


def test_the_same_band_over_keys_of_their_own_length_is_refused():
    """Keys from a memory [N, T, E]: Lk >= Lq is not proven (T < S would empty rows)."""
    g = Graph()
    q = heads(g, "q")
    g.input("memory", ["N", "T", E])
    k, v = heads(g, "k", x="memory"), heads(g, "v", x="memory")
    refused(finish(g, band_over(g, core(g, q, k)), v))


def _cache_attention(g: Graph) -> tuple[str, str, str]:
    q = heads(g, "q")
    past_k, past_v = (g.input(n, ["N", H, "T", D]) for n in ("past_k", "past_v"))
    return q, cached("k", g, past_k), cached("v", g, past_v)


def test_gptj_s_sliced_triangle_over_a_cache_is_sdpa_with_a_mask_aligned_at_the_last_key():
    g = Graph()
    q, k, v = _cache_attention(g)
    (call,) = sdpa_calls(fused(finish(g, gptj_band(g, q, k, TRIL), v)))
    assert "is_causal" not in call.kwargs and "attn_mask" in call.kwargs


def test_gptj_s_slice_one_row_off_over_a_cache_is_refused():
    g = Graph()
    q, k, v = _cache_attention(g)
    refused(finish(g, gptj_band(g, q, k, TRIL, row_shift=-1), v))
