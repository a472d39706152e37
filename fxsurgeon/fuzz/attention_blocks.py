"""Attention in the forms recognition must cover, each drawn at random (the ``attention_forms``
block), beside the ``attention`` block's tf2onnx traces of HF BERT/GPT-2/DeBERTa:

* the scale on the scores (Mul or Div), on q, on k, split between q and k, or none;
* grouped KV heads as an explicit repeat (Unsqueeze, Tile, Reshape: ``tf.repeat`` of
  HF's ``repeat_kv``), and cross-attention (k, v from another sequence);
* a boolean padding mask as ``Where(keep, scores, fill)``, a causal ``Where`` on Range
  rows against Range columns spelt many ways (``_SPELLINGS``: Not, Neg, Sub, swapped
  operands, shifts, factors, float casts), an ALiBi-like bias (per-head slopes times key positions)
  or a constant relative-position bias; a masked term ``Where(c, scores + t, scores)``
  (Keras 3 ``Attention``'s ``where(~m, s - 1e9, s)``; t a number, a constant bias or a
  sum of both, on either branch, either operand order);
* Transfo-XL's multiplicative band ``s * (1 - m) - c * m``, m the float of a padding
  mask's Not or of an int ``1 - Where(causal, 1, 0)``;
* the softmax as the op, after a max shift (ReduceMax, Sub), or as Keras 3's logsumexp;
* the scores written K @ Q^T with the softmax over the rows and the probabilities
  transposed back (tf2onnx's einsum orientation).

Near misses (each must be declined or rewritten into something equal): a logsumexp over
masked scores (a fully masked row gives 1s, not a softmax), a softmax over another axis, a max shift over another axis, a masked fill too small to hide a key
(-10), an upper, strict, widened or shifted triangle or rows against a constant, a term computed from v, heads repeated interleaved rather
than grouped (``Tile`` on the head axis), the probabilities read outside the attention; a masked term computed from the scores
or from v, whose branches read two different score tensors, or whose scores are doubled
(2s + t) or subtracted (c - (s + t)) on the masked side; a multiplicative band that is
not 0/1 (0.5 * (1 - m)), whose term hides another mask, or whose fill is 1e9 on padding.
"""

from __future__ import annotations

import math

import numpy as np

from .fusion_blocks import _dense_core, _mask_input, merge_heads
from .graph import _F32, _T, _Graph, _Skip, _static
from .shape_blocks import _split

_FLOAT32_MIN = float(np.finfo(np.float32).min)
_BIG = 10**9


def _heads(g: _Graph, t: _T, heads: int, head_dim: int) -> str:
    """[N, L, H*D] -> [N, H, L, D]."""
    split = g.reshape(t, 1, [-1, heads, head_dim]) if g.coin() else _split(g, t, heads, head_dim)
    return g.op("Transpose", [split.name], perm=[0, 2, 1, 3])


def _scaled(g: _Graph, t: str, factor: float) -> str:
    return g.binary("Mul", t, g.scalar(factor))


def _repeat(g: _Graph, t: str, groups: int, heads: int, head_dim: int, interleave: bool) -> str:
    """[N, Hkv, L, D] -> [N, Hkv * groups, L, D]: each kv head `groups` times in a row
    (tf.repeat's Unsqueeze, Tile, Reshape), or, `interleave`, the whole set `groups` times."""
    if interleave:
        return g.op("Tile", [t, g.ints([1, groups, 1, 1])])
    wide = g.op("Tile", [g.op("Unsqueeze", [t, g.ints([2])]), g.ints([1, 1, groups, 1, 1])])
    return g.op("Reshape", [wide, g.ints([0, heads, -1, head_dim])])


def _length(g: _Graph, t: str, axis: int) -> str:
    """The 0-d int64 extent of `t` along `axis`, at run time."""
    dims = g.op("Slice", [g.op("Shape", [t]), g.ints([axis]), g.ints([axis + 1])])
    return g.op("Squeeze", [dims, g.ints([0])])


def _positions(g: _Graph, t: str, axis: int) -> str:
    """Range(0, t.shape[axis]) as int64."""
    return g.op("Range", [g.const(0, np.int64), _length(g, t, axis), g.const(1, np.int64)])


def _alibi(g: _Graph, kh: str, heads: int) -> str:
    """slopes[h] * j: [1, H, 1, Lk], from the key positions at run time."""
    columns = g.op("Cast", [_positions(g, kh, 2)], to=1)
    columns = g.op("Reshape", [columns, g.ints([1, 1, 1, -1])])
    slopes = (2.0 ** -np.arange(1, heads + 1, dtype=np.float64)).reshape(1, heads, 1, 1)
    return g.binary("Mul", columns, g.const(slopes.astype(_F32)))


def _causal(g: _Graph, qh: str, kh: str, upper: bool) -> str:
    """rows >= columns (a lower triangle, [Lq, Lk]) from two Ranges; `upper`: rows <= columns."""
    rows = g.op("Unsqueeze", [_positions(g, qh, 2), g.ints([1])])
    columns = g.op("Unsqueeze", [_positions(g, kh, 2), g.ints([0])])
    return g.op("LessOrEqual" if upper else "GreaterOrEqual", [rows, columns])


#: Spellings of the lower triangle j <= i (each is it at every length) and near misses
#: (``upper`` j >= i, ``strict`` i > j, ``wide`` i + 1 >= j, ``shifted`` i >= j + 1,
#: ``row_const`` i >= 1): ``patterns/_attention_causal.py`` reads them all into one form.
_SPELLINGS = ("ge", "not_gt", "neg_sub_le", "sub_lt", "both_shifted", "band_part", "scaled")
_CAUSAL_MISSES = ("upper", "strict", "wide", "shifted", "row_const")


def _spelled_causal(g: _Graph, qh: str, kh: str, miss: str) -> str:
    """The causal triangle [Lq, Lk] spelt one of `_SPELLINGS` ways over Range rows i and
    columns j (int64, or both cast to float32), or the near miss `miss`."""
    i = g.op("Unsqueeze", [_positions(g, qh, 2), g.ints([1])])
    j = _positions(g, kh, 2)
    if g.coin():
        j = g.op("Unsqueeze", [j, g.ints([0])])
    as_float = g.coin(0.4)
    if as_float:
        i, j = (g.op("Cast", [x], to=1) for x in (i, j))

    def num(value: int) -> str:
        return g.const(float(value), _F32) if as_float else g.const(value, np.int64)

    if miss in _CAUSAL_MISSES:
        if miss == "upper":
            return g.op("GreaterOrEqual", [j, i])
        if miss == "strict":
            return g.op("Greater", [i, j])
        if miss == "wide":
            return g.op("GreaterOrEqual", [g.op("Add", [i, num(1)]), j])
        if miss == "shifted":
            return g.op("GreaterOrEqual", [i, g.op("Add", [j, num(1)])])
        return g.op("GreaterOrEqual", [i, num(1)])  # row_const
    form = g.pick(_SPELLINGS)
    if form == "ge":
        return g.op("GreaterOrEqual", [i, j])
    if form == "not_gt":
        return g.op("Not", [g.op("Greater", [j, i])])
    if form == "neg_sub_le":
        return g.op("LessOrEqual", [g.op("Neg", [g.op("Sub", [i, j])]), num(0)])
    if form == "sub_lt":
        return g.op("Less", [g.op("Sub", [j, i]), num(1)])
    if form == "both_shifted":
        c = g.integers(1, 4)
        return g.op("GreaterOrEqual", [g.op("Add", [i, num(c)]), g.op("Add", [num(c), j])])
    if form == "band_part":  # tf2onnx's tf.linalg.band_part(ones, -1, 0)
        return g.op("Not", [g.op("Greater", [g.op("Neg", [g.op("Sub", [i, j])]), num(0)])])
    two = num(2)  # scaled: 2i + 1 > 2j
    return g.op("Greater", [g.op("Add", [g.op("Mul", [two, i]), num(1)]), g.op("Mul", [j, two])])


def _masked_term(g: _Graph, x: _T, s: str, qh: str, kh: str, vh: str, miss: str) -> str:
    """``Where(c, s + t, s)`` or its mirror: c a padding mask (Not of it, as Keras 3) or a
    causal band, t a number and/or a [1, 1, 1, Lk]-broadcast bias. Near misses: t from the
    scores or from v, the plain branch a second contraction of q with k * 2, the scores
    doubled under the term (2s + t) or subtracted from it (t - s): no s + Where(c, t, 0)."""
    if g.coin():
        keep = g.op("Greater", [_mask_input(g, x).name, g.scalar(0.0)])
        keep = g.op("Unsqueeze", [keep, g.ints([1, 2])])
    else:
        keep = _causal(g, qh, kh, upper=False)
    plain = s
    if miss == "other_scores":
        kt = g.op("Transpose", [_scaled(g, kh, 2.0)], perm=[0, 1, 3, 2])
        plain = g.op("MatMul", [qh, kt])
    terms = []
    if g.coin(0.7):
        terms.append(g.scalar(float(g.pick((-1e9, -1e4, -30.0, 5.0)))))
    if not terms or g.coin(0.4):
        lk = g.op("Reshape", [g.op("Cast", [_positions(g, kh, 2)], to=1), g.ints([1, 1, 1, -1])])
        terms.append(_scaled(g, lk, float(g.pick((-0.5, 0.25)))))
    if miss == "term_from_scores":
        terms.append(g.op("Relu", [s]))
    elif miss == "term_from_v":
        total = g.op("ReduceSum", [vh, g.ints([-1])], keepdims=1)
        terms.append(g.op("Transpose", [total], perm=[0, 1, 3, 2]))
    moved = _scaled(g, s, 2.0) if miss == "scaled_scores" else s
    for t in terms:
        op = g.pick(("Add", "Sub"))
        moved = g.op(op, [t, moved] if op == "Add" and g.coin() else [moved, t])
    if miss == "term_minus_scores":
        moved = g.op("Sub", [g.scalar(float(g.pick((-1e9, -30.0, 5.0)))), moved])
    if g.coin():  # Keras 3: the term where the mask hides, on the True side of Not(keep)
        return g.op("Where", [g.op("Not", [keep]), moved, plain])
    return g.op("Where", [keep, plain, moved])


def _mul_band(g: _Graph, x: _T, s: str, qh: str, kh: str, miss: str) -> str:
    """Transfo-XL's ``s * (1 - m) - c * m``: m the float of a 0/1 mask of the hidden keys
    (a padding mask's Not, or ``1 - Where(causal, 1, 0)`` in int32), c 1e30 (or 1e4 when
    causal). Near misses: the factor ``0.5 * (1 - m)`` (not 0/1), a term hiding another
    mask (the upper triangle), c = 1e9 under a padding mask (too small for a mask)."""
    causal = g.coin() and miss != "small_band_fill"
    if causal:
        one, zero = g.const(1, np.int32), g.const(0, np.int32)
        ones = g.op("Where", [_causal(g, qh, kh, upper=False), one, zero])
        m = g.op("Cast", [g.op("Sub", [g.const(1, np.int32), ones])], to=1)
    else:
        keep = g.op("Greater", [_mask_input(g, x).name, g.scalar(0.0)])
        m = g.op("Cast", [g.op("Not", [g.op("Unsqueeze", [keep, g.ints([1, 2])])])], to=1)
    band = g.op("Sub", [g.scalar(1.0), m])
    if miss == "half_band":
        band = _scaled(g, band, 0.5)
    hide = g.op("Cast", [_causal(g, qh, kh, upper=True)], to=1) if miss == "other_hide" else m
    c = 1e9 if miss == "small_band_fill" else float(g.pick((1e30, 1e4))) if causal else 1e30
    return g.op("Sub", [g.binary("Mul", s, band), g.binary("Mul", hide, g.scalar(c))])


def _softmax(g: _Graph, s: str, form: str, axis: int, shift_axis: int) -> str:
    if form == "shift":
        keep = g.coin()
        m = g.op("ReduceMax", [s], axes=[shift_axis], keepdims=int(keep))
        if not keep:
            m = g.op("Unsqueeze", [m, g.ints([shift_axis % 4])])
        return g.op("Softmax", [g.op("Sub", [s, m])], axis=axis)
    if form == "logsumexp":  # Keras 3's Softmax: exp(s - logsumexp(s)), max guarded
        m = g.op("ReduceMax", [s], axes=[axis], keepdims=1)
        if g.coin():
            bad = g.op("Or", [g.op("IsInf", [m]), g.op("IsNaN", [m])])
            m = g.op("Where", [g.op("Not", [bad]), m, g.scalar(0.0)])
        e = g.op("Exp", [g.op("Sub", [s, m])])
        total = g.op("ReduceSum", [e, g.ints([axis])], keepdims=1)
        return g.op("Exp", [g.op("Sub", [s, g.op("Add", [g.op("Log", [total]), m])])])
    return g.op("Softmax", [s], axis=axis)


def _block_attention_forms(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank != 3 or not _static(x, -1):
        raise _Skip
    heads, head_dim = int(g.pick((2, 4))), int(g.pick((2, 3, 4)))
    groups = int(g.pick((1, 1, 2)))
    cross = g.coin(0.25)
    orient = "kq" if g.coin(0.2) else "qk"
    scale_at = g.pick(("scores", "scores_div", "q", "k", "qk", "none"))
    masks = ["none", "alibi"]
    if not cross:
        masks += ["padding_where", "causal_where", "masked_term", "mul_band"]
    if _static(x, 1) and not cross:
        masks.append("const_bias")
    mask = "none" if orient == "kq" else g.pick(masks)
    form = g.pick(("op", "shift", "logsumexp")) if orient == "qk" else "op"
    if form == "logsumexp" and mask.endswith(("_where", "_term", "_band")) and not near:
        form = "op"  # a masked row's max is the fill: exp(x - logsumexp) is then no softmax
    variant = f"{orient}.{scale_at}.{mask}.{form}" + (f".gqa{groups}" if groups > 1 else "")
    variant += ".cross" if cross else ""
    miss = ""
    if near:
        misses = ["softmax_axis", "extra_user", "bias_from_v"]
        if form == "shift":
            misses.append("shift_axis")
        if mask == "padding_where":
            misses.append("light_fill")
        if mask == "causal_where":
            misses += list(_CAUSAL_MISSES)
        if mask == "masked_term":
            misses += [
                "term_from_scores",
                "term_from_v",
                "other_scores",
                "scaled_scores",
                "term_minus_scores",
            ]
        if mask == "mul_band":
            misses += ["half_band", "other_hide", "small_band_fill"]
        if form == "logsumexp" and mask.endswith(("_where", "_band")):
            misses = ["masked_logsumexp"]
        if groups > 1:
            misses.append("interleaved_repeat")
        if orient == "kq":
            misses = ["softmax_axis", "extra_user"]
        miss = g.pick(misses)
        variant += f"~{miss}"

    width, kv_width = heads * head_dim, heads // groups * head_dim
    source = x
    if cross:  # k, v from x[:, 1:]
        sliced = g.op("Slice", [x.name, g.ints([1]), g.ints([_BIG]), g.ints([1])])
        length = x.shape[1] - 1 if _static(x, 1) else g.fresh("dyn")
        if length == 0:
            raise _Skip
        source = _T(sliced, (x.shape[0], length, x.shape[2]))
    q, _ = _dense_core(g, x, width, near=False)
    k, _ = _dense_core(g, source, kv_width, near=False)
    v, _ = _dense_core(g, source, kv_width, near=False)
    scale = 1 / math.sqrt(head_dim) if g.coin(0.7) else float(g.pick((0.3, 0.125, 2.0)))
    if scale_at == "none":
        scale = 1.0
    qh, kh, vh = (
        _heads(g, t, n, head_dim)
        for t, n in ((q, heads), (k, heads // groups), (v, heads // groups))
    )
    if scale_at in ("q", "qk"):
        qh = _scaled(g, qh, scale if scale_at == "q" else math.sqrt(scale))
    if scale_at in ("k", "qk"):
        kh = _scaled(g, kh, scale if scale_at == "k" else math.sqrt(scale))
    if groups > 1:
        interleave = miss == "interleaved_repeat"
        kh = _repeat(g, kh, groups, heads, head_dim, interleave)
        vh = _repeat(g, vh, groups, heads, head_dim, interleave)

    if orient == "kq":  # scores^T = k @ q^T, softmax over the rows, probabilities back
        scores = g.op("MatMul", [kh, g.op("Transpose", [qh], perm=[0, 1, 3, 2])])
    else:
        scores = g.op("MatMul", [qh, g.op("Transpose", [kh], perm=[0, 1, 3, 2])])
    if scale_at == "scores":
        scores = _scaled(g, scores, scale)
    elif scale_at == "scores_div":
        scores = g.op("Div", [scores, g.scalar(1 / scale)])

    if mask == "padding_where":
        keep = g.op("Greater", [_mask_input(g, x).name, g.scalar(0.0)])
        keep = g.op("Unsqueeze", [keep, g.ints([1, 2])])
        fill = -10.0 if miss == "light_fill" else g.pick((_FLOAT32_MIN, -1e38))
        scores = g.op("Where", [keep, scores, g.scalar(fill)])
    elif mask == "causal_where":
        band = _spelled_causal(g, qh, kh, miss)
        fill = g.pick((_FLOAT32_MIN, -1e4, -1e9))
        scores = g.op("Where", [band, scores, g.scalar(fill)])
    elif mask == "masked_term":
        scores = _masked_term(g, x, scores, qh, kh, vh, miss)
    elif mask == "mul_band":
        scores = _mul_band(g, x, scores, qh, kh, miss)
    elif mask == "alibi":
        scores = g.binary("Add", scores, _alibi(g, kh, heads))
    elif mask == "const_bias":
        s = x.shape[1]
        scores = g.binary("Add", scores, g.const(g.randn(1, heads, s, s, scale=2.0)))
    if miss == "bias_from_v":  # depends on v: not an attention mask
        term = g.op("ReduceSum", [vh, g.ints([-1])], keepdims=1)
        scores = g.binary("Add", scores, g.op("Transpose", [term], perm=[0, 1, 3, 2]))

    axis = -1 if orient == "qk" else 2
    if miss == "softmax_axis":
        axis = 2 if orient == "qk" else -1
    shift_axis = 2 if miss == "shift_axis" else axis
    probs = _softmax(g, scores, form, axis, shift_axis)
    if miss == "extra_user":
        g.extra_output(probs)
    if orient == "kq":
        probs = g.op("Transpose", [probs], perm=[0, 1, 3, 2])
    out = g.op("MatMul", [probs, vh])
    g.block(f"attention_forms{'~' if near else '.'}{variant}", "sdpa", near)
    return merge_heads(g, out, x, heads, head_dim)
