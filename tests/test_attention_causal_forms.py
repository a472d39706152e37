"""Causal triangles in their many spellings (``patterns/_attention_causal.py``): a condition
over Range rows i [S, 1] and columns j [S] is normalised to ``a*i + b*j + c >= 0`` (or > 0)
and is ``is_causal`` exactly when that is j <= i at every length; over a key/value cache,
i + Lk - Lq >= j, an explicit mask aligned at the last key. Near misses (a strict
triangle, a wider band, a shifted one, i against a constant, the upper triangle, a
narrow cast) stay a mask with dtype-min, and are refused with -1e9 (a fully hidden row
would change). Every case is compared with onnxruntime at two sizes (helpers of
test_fusion_attention)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from test_fusion_attention import (
    F32_MIN,
    Graph,
    assert_matches_ort,
    causal_range,
    core,
    finish,
    fused,
    heads,
    optimized,
    plain,
    refused,
    sdpa_calls,
)

FLOAT, INT32, FLOAT16 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.FLOAT16


def _i64(g: Graph, name: str, value: int) -> str:
    return g.const(name, value, np.int64)


def _cast(g: Graph, x: str, to: int, name: str) -> str:
    return g.op("Cast", [x], name, to=to)


def _spell(g: Graph, scores: str, form: str) -> str:
    """The condition `form` over rows i = "rows" [S, 1] and columns j = "cols" [S]."""
    causal_range(g, scores)  # defines "rows" and "cols"
    i, j = "rows", "cols"
    if form == "i >= j":
        return g.op("GreaterOrEqual", [i, j], "c")
    if form == "not(j > i)":
        return g.op("Not", [g.op("Greater", [j, i], "c_gt")], "c")
    if form == "-(i - j) <= 0":
        neg = g.op("Neg", [g.op("Sub", [i, j], "c_sub")], "c_neg")
        return g.op("LessOrEqual", [neg, _i64(g, "c_zero", 0)], "c")
    if form == "(j - i) < 1":
        return g.op("Less", [g.op("Sub", [j, i], "c_sub"), _i64(g, "c_one", 1)], "c")
    if form == "float(i) >= float(j)":
        return g.op("GreaterOrEqual", [_cast(g, i, FLOAT, "fi"), _cast(g, j, FLOAT, "fj")], "c")
    if form == "int32(j - i) <= 0":
        diff = _cast(g, g.op("Sub", [j, i], "c_sub"), INT32, "c_i32")
        return g.op("LessOrEqual", [diff, g.const("c_zero", 0, np.int32)], "c")
    if form == "float(i - j) > -0.5":
        diff = _cast(g, g.op("Sub", [i, j], "c_sub"), FLOAT, "c_f")
        return g.op("Greater", [diff, g.const("c_half", -0.5)], "c")
    if form == "2i + 3 > 2j + 1":
        two = _i64(g, "c_two", 2)
        left = g.op("Add", [g.op("Mul", [two, i], "c_2i"), _i64(g, "c_three", 3)], "c_l")
        right = g.op("Add", [g.op("Mul", [j, two], "c_2j"), _i64(g, "c_one", 1)], "c_r")
        return g.op("Greater", [left, right], "c")
    if form == "(i + 1) >= (j + 1)":
        one = _i64(g, "c_one", 1)
        return g.op(
            "GreaterOrEqual",
            [g.op("Add", [i, one], "c_i1"), g.op("Add", [one, j], "c_j1")],
            "c",
        )
    # near misses
    if form == "i > j":  # the strict triangle: row 0 sees no key
        return g.op("Greater", [i, j], "c")
    if form == "i >= j - 1":  # a band one key wider
        return g.op("GreaterOrEqual", [i, g.op("Sub", [j, _i64(g, "c_one", 1)], "c_j")], "c")
    if form == "i >= j + 1":
        return g.op("GreaterOrEqual", [i, g.op("Add", [j, _i64(g, "c_one", 1)], "c_j")], "c")
    if form == "i >= 2":  # rows against a constant
        return g.op("GreaterOrEqual", [i, _i64(g, "c_two", 2)], "c")
    if form == "j >= i":  # rows and columns swapped: the upper triangle
        return g.op("GreaterOrEqual", [j, i], "c")
    if form == "2i >= j":  # not a multiple of i - j
        return g.op("GreaterOrEqual", [g.op("Mul", [i, _i64(g, "c_two", 2)], "c_2i"), j], "c")
    if form == "half(i) >= half(j)":  # float16 holds integers only to 2048
        return g.op("GreaterOrEqual", [_cast(g, i, FLOAT16, "hi"), _cast(g, j, FLOAT16, "hj")], "c")
    raise ValueError(form)


CAUSAL = [
    "i >= j",
    "not(j > i)",
    "-(i - j) <= 0",
    "(j - i) < 1",
    "float(i) >= float(j)",
    "int32(j - i) <= 0",
    "float(i - j) > -0.5",
    "2i + 3 > 2j + 1",
    "(i + 1) >= (j + 1)",
]
NEAR = ["i > j", "i >= j - 1", "i >= j + 1", "i >= 2", "j >= i", "2i >= j", "half(i) >= half(j)"]


@pytest.mark.parametrize("form", CAUSAL)
@pytest.mark.parametrize("how", ["where", "band"])
def test_causal_spellings_are_is_causal(form, how):
    """As a ``Where(c, s, -1e9)`` fill, or as Transfo-XL's 0/1 band ``s * float(c) - 1e4 *
    float(not c)`` read through the cast and Not."""
    g, scores, v = plain()
    cond = _spell(g, scores, form)
    if how == "where":
        masked = g.op("Where", [cond, scores, g.const("fill", -1e9)], "masked")
    else:
        band = _cast(g, cond, FLOAT, "band")
        hidden = _cast(g, g.op("Not", [cond], "not_c"), FLOAT, "hidden")
        kept = g.op("Mul", [scores, band], "kept")
        masked = g.op("Sub", [kept, g.op("Mul", [hidden, g.const("big", 1e4)], "big_h")], "masked")
    module = fused(finish(g, masked, v))
    assert sdpa_calls(module)[0].kwargs == {"is_causal": True}


@pytest.mark.parametrize("form", NEAR)
def test_near_misses_stay_a_mask_or_are_refused(form):
    for fill in (-1e9, F32_MIN):
        g, scores, v = plain()
        cond = _spell(g, scores, form)
        model = finish(g, g.op("Where", [cond, scores, g.const("fill", fill)], "masked"), v)
        if fill == -1e9:
            refused(model)
            continue
        module = optimized(model)
        (call,) = sdpa_calls(module)
        assert "is_causal" not in call.kwargs and "attn_mask" in call.kwargs
        assert_matches_ort(module, model)


# --------------------------------------------------------------------------- over a cache


def _cache(g: Graph) -> tuple[str, str, str]:
    q = heads(g, "q")
    past = {n: g.input(n, ["N", 2, "T", 4]) for n in ("past_k", "past_v")}
    k = g.op("Concat", [past["past_k"], heads(g, "k")], "k_all", axis=2)
    v = g.op("Concat", [past["past_v"], heads(g, "v")], "v_all", axis=2)
    return q, k, v


def _cache_condition(g: Graph, scores: str, offset: int) -> str:
    """``not(j - i > Lk - Lq + offset)``: at offset 0, i + Lk - Lq >= j (the last key)."""
    shape = g.op("Shape", [scores], "s_shape")
    lq = g.op("Gather", [shape, _i64(g, "ax_q", 2)], "lq")
    lk = g.op("Gather", [shape, _i64(g, "ax_k", 3)], "lk")
    zero, one = _i64(g, "zero", 0), _i64(g, "one", 1)
    rows = g.op("Unsqueeze", [g.op("Range", [zero, lq, one], "r"), _i64(g, "ax1", [1])], "rows")
    cols = g.op("Range", [zero, lk, one], "cols")
    past = g.op("Add", [g.op("Sub", [lk, lq], "past_len"), _i64(g, "off", offset)], "limit")
    ahead = g.op("Greater", [g.op("Sub", [cols, rows], "ahead_by"), past], "ahead")
    return g.op("Not", [ahead], "c")


def test_a_causal_spelling_over_a_cache_is_aligned_at_the_last_key():
    g = Graph()
    q, k, v = _cache(g)
    scores = core(g, q, k)
    masked = g.op("Where", [_cache_condition(g, scores, 0), scores, g.const("fill", -1e9)], "m")
    (call,) = sdpa_calls(fused(finish(g, masked, v)))
    assert "is_causal" not in call.kwargs and "attn_mask" in call.kwargs


def test_a_spelling_one_key_off_over_a_cache_is_refused():
    g = Graph()
    q, k, v = _cache(g)
    scores = core(g, q, k)
    masked = g.op("Where", [_cache_condition(g, scores, 1), scores, g.const("fill", -1e9)], "m")
    refused(finish(g, masked, v))
