"""Scaled dot-product attention -> F.scaled_dot_product_attention, by recognition.

    Attention(q, k, v) = softmax(q . k^T * scale + mask) . v      q, k, v: [..., L, D]

Five rules anchor where attention ends, on the contraction of the probabilities
with V: ``sdpa_1`` on ``softmax(scores, -1) @ v``, ``sdpa_2`` on a two-operand
``einsum(eq, softmax(scores, -1), v)`` (Keras MultiHeadAttention), ``sdpa_3`` on
``reshape(layout(softmax(scores, -1))) @ v`` (the same, as tf2onnx decomposes it),
``sdpa_4`` on any other ``p @ v`` whose p is the softmax through a zeroing Where
and/or layout ops ending in Squeeze/Unsqueeze (DeBERTa), ``sdpa_5`` on
``einsum(eq, Where(c, 0, softmax(scores, -1)), v)``. A sixth, ``sdpa_orient_1``, fuses
nothing itself: where the scores are permuted between the contraction and the softmax
(TF XLNet's [i, j, b, n] einsum layout, its softmax over j at axis -2; Keras
MultiHeadAttention over two axes, K @ Q^T split and permuted; Keras 2's on any length,
K @ Q^T reshaped by sizes read from K and Q, ``size * H``), it writes the same
computation in [..., Lq, Lk] order for the others (exact: layout ops only move
elements, the terms are moved alike; why, in ``_attention_orient.py``). Softmaxes
written out (a max shift, CogView's power-of-two scale pair, Keras' logsumexp over
several axes) are made ``torch.softmax`` before this phase (``softmax.py``).
Their check (`patterns/_attention_scores.py`, ``recognize``) walks the scores
back to the contraction of Q with K (a MatMul with k^T, or an einsum that
contracts one feature axis) and reads every step on the way as part of

    scores = scale * (q . k) + sum(coef_i * term_i)  [Where(mask, ., fill)]  [* band]

The replacement gives SDPA q, k, v in [..., L, D] (permutes of the einsum or
matmul operands; the tidy phase folds them into the head split) and permutes
its [..., Lq, Dv] result to the anchor's layout. Every score node from the
contraction to the softmax must be read only inside the attention (a
``size()`` of one is re-pointed to the same dim of q or k, which has the same
value); anything the scores depend on that is not absorbed declines the match.

What is absorbed, and why it is exact:

* A constant factor (Python number or one-element constant; multiply or
  divide) on the scores, on q or on k (looked for through the reshapes and
  permutes of the head split): (c q) . k = q . (c k) = c (q . k), so all of
  them multiply into ``scale=``; SDPA's default is used when the product is
  1/sqrt(D) within the engine's 1e-6 (float32 rounding). A factor applied
  after a Where scales its fill too (GPT-J: Where(causal, s, dtype-min) /
  sqrt(D)), Where(m, s, f) * c = Where(m, s * c, f * c), and the scaled fill
  is what the rules below judge (a negative factor makes it positive:
  declined; one past the float32 range: declined). A factor after a 0/1
  band commutes with it. A run-time factor: declined.
* Softmax is shift-invariant, softmax(s + c) = softmax(s) for one number c
  added to every score (HF's ``stable_softmax`` + 1e-9): dropped.
* Additive tensors that do not depend on the scores or on v (a float padding
  mask, HF's ``(1 - m) * -10000``, a relative-position or ALiBi bias) become
  ``attn_mask = sum(coef_i * term_i)``, SDPA adds it to the scaled scores:
  the same sum. Each must broadcast to the scores (shape meta, right-aligned,
  dims 1 or equal): a bigger one would change the output shape.
* ``Where(m, scores + t, scores)`` (Keras 3 ``Attention``: ``where(~m, s - 1e9, s)``),
  t anything independent of the scores and v (numbers, tensors, sums of them) on either
  branch, is ``scores + Where(m, t, 0)`` bit for bit (s + 0 is s): an additive mask,
  checked like the terms above (t and m broadcast to the scores).
* ``Where(m, scores, fill)`` (a masked fill) with a finite ``fill <= -1e30``
  (HF's dtype-min) becomes the additive ``where(m, 0, fill)``: s + fill
  rounds to fill in float32 for |s| < 2**-25 |fill|, so every masked score is
  the same fill as before, and a fully masked row stays uniform (a boolean
  ``attn_mask`` would give NaN there). A smaller fill (-1e9) is declined: it
  would not keep fully masked rows uniform.
* A causal triangle: a boolean condition that is i >= j at every length (a
  constant lower triangle of the static length, or any condition over ``Range``
  rows and columns whose canonical form ``a*i + b*j + c >= 0`` is it: read through
  +, -, negation, numeric factors, casts, Not, swapped operands, ``1 - x``,
  ``Where(c, 1, 0)`` and layout ops, sizes as the lowering's size expressions, and
  decided exactly, ``_attention_causal.py``; GPT-2's band i >= j - Lk + Lq and
  Transfo-XL's ``not(-(i - j) > 0)`` are two), in Lq == Lk self-attention
  (static and equal, or both dynamic and q, k read the same model inputs).
  It comes as ``Where(tri, scores, fill)`` with fill <= -1e3, or GPT-2's
  ``scores * band - c * (1 - band)`` with c >= 1e3. Every row keeps its
  diagonal, so the hidden scores weigh exp(fill - max) = 0 in float32
  (exp(-1e3) underflows) before, and 0 with SDPA's -inf: ``is_causal=True``;
  provided the other masks cannot hide a row's visible keys as deeply: a hidden
  key's score (the fill, plus the other masks at their highest) must stay 1e3
  below the visible keys' lowest (the other masks at their lowest; a term with a
  factor beyond 1e3 is a 0/1 mask, `_dominates` in ``_attention_masks.py``).
  GPT-2's band and its padding mask both fill -1e4: a left-padded row's first
  queries see padded keys only, at s - 1e4, and TF weighs the hidden keys (at
  -1e4) as much: declined. GPT-J's dtype-min band over the same padding: taken.
  Over a key/value cache (Lk = cached + new keys, so Lq == Lk is not proven) the band
  ``i + Lk - Lq >= j`` (GPT-2's i >= j - Lk + Lq) is the triangle aligned at the last
  key; SDPA's ``is_causal`` aligns at the first, so it is the -inf mask ``j > i + Lk -
  Lq`` instead, taken only where the shape analysis proves Lk >= Lq (every row then
  sees key 0: the same underflow argument).
  With additive terms too, SDPA cannot take both, so the triangle becomes
  -inf in the mask: ``mask.masked_fill(~tril(ones(Lq, Lk)), -inf)``. Any
  other triangle (upper, banded, offset) in a Where stays a mask when its fill
  is dtype-min; a multiplicative band that is not causal, below.
* A multiplicative 0/1 band: a factor proven to hold only 0s and 1s (``zero_one``,
  ``_attention_graph.py``: a boolean or ``Where(c, 1, 0)``, through casts, ``1 - x``,
  Not and layout ops, which keep values) with a term ``-c * m``, m its complement (the
  same root, one of the two flipped, moved by the same layout ops; Transfo-XL:
  ``s * (1 - float(m)) - 1e30 * float(m)``, m the int band of ``tf.linalg.band_part``,
  permuted by ``sdpa_orient_1`` with its term): ``s * band - c * m`` is
  ``Where(band, s, -c)`` exactly, for where band is 1, m is 0 (s * 1 - c * 0 = s) and where
  it is 0, m is 1 (s * 0 - c = -c). Its condition causal at every length (reshaped or
  unsqueezed only, so that rows and columns are read) with c >= 1e3: ``is_causal`` as
  above. Otherwise, as any Where fill, it is an additive mask when -c is finite and at
  most -1e30: the factor is dropped and the terms kept whole, so the visible scores get
  the same sum and the hidden ones s + ... - c, which rounds to the model's value. Terms
  below the factor ((s + t) * band: a relative-position term) are allowed there, as below
  a Where fill, and below a causal band only when -c <= -1e30 (Transfo-XL): a term may
  push the visible scores down, but not near -1e30 under the rounding the additive mask
  relies on, so the hidden weights are 0 as with -inf (with -1e4: declined); only the
  terms after the factor can hide (it zeroes those below it where it is 0).
  A factor not 0/1, a term that does not hide the complement, or a smaller fill: declined.
* A causal triangle can also be a slice of a constant lower triangle [1, 1, M, M]
  (GPT-J's ``bias[:, :, Lk - Lq : Lk, :Lk]``, cast to bool, and its hiding term
  ``-1e9 * float(~band)``, the same 0/1 values as 1 - band): with Lq == Lk the slice
  starts at row and column 0 and runs Lq, a principal block of a lower triangle, which
  is a lower triangle; M >= 2 so that a slice clipped at L > M cannot broadcast (the
  model would fail there). A static slice is taken and compared. Over a key/value cache
  (Lk >= Lq proven) its rows Lk - Lq + i against columns j < Lk are the triangle aligned
  at the last key, as GPT-2's band there.
* Layout runs: Reshape/Squeeze/Unsqueeze between the contraction and the softmax, or
  between the softmax and the contraction with V (``sdpa_3``: tf2onnx's decomposed
  Einsum of Keras MultiHeadAttention, [N*H, L, L] <-> [N, H, L, L(, 1)]), reorder no
  element; when a run ends in the (Lq, Lk) it started from (static: compared; dynamic:
  each axis traced to q's or k's sequence axis, ``_attention_frames.py``), every
  [Lq, Lk] block stays one block in the same order, so only the batch dims change.
  SDPA runs in the masks' frame and q, k, v and the output are regrouped by reshapes
  that keep each [L, D] block: the same regrouping, exact.
* Terms added in two frames (HF Swin: the relative-position bias [1, H, L, L] on
  [B*nW, H, L, L], then the window mask [nW, 1, L, L] on [B, nW, H, L, L]): SDPA runs
  in the frame of the fills and bands, else of the outermost term. A term from another
  frame comes along when it is 1 along every batch dim but a common suffix of the two
  frames' batch dims: the reshapes between the frames regroup only the dims before that
  suffix, so the term, broadcast right-aligned in the new frame, adds the same number
  to every score as before. Anything else is declined.
* Terms added to the contraction's scores, masked in another frame (DeBERTa: its
  position terms on [B*H, L, L], the mask on [B, H, L, L]): a term that does not carry
  over by broadcasting is broadcast to the contraction's batch dims (``expand``) and
  reshaped to SDPA's, ``regroup_term``: the run regroups the scores' [L, L] blocks in
  flat order, and so does this, so block i of the term still meets block i of the
  scores. A term added after a reshape, in another frame than the masks: declined.
* Probabilities zeroed after the softmax where the mask hid the keys (DeBERTa's
  XSoftmax: ``Where(~m, -inf, s)``, softmax, ``Where(~m, 0, p)``, a row with no visible
  key is 0): the zeroing must hide what the one Where fill hid (the same condition,
  Not peeled, or an equal computation of it; the fill <= -1e3, no other mask, nothing
  reshaped between the fill and the softmax, the zeroing right after the softmax). In
  a row with a visible key the hidden weights are exp(fill - max) = 0 already, so the
  zeroing changes nothing there; SDPA takes the mask with the fill as the float32
  minimum (the same zero weights, finite everywhere, forward and backward) and its
  output is zeroed on rows with no visible key: ``where(keep.any(-1), out, 0)``, the
  model's 0. A causal fill keeps every row's diagonal, so its zeroing does nothing and
  is dropped. Zeroing other positions, zeroing with no fill before it, or after a fill
  above -1e3 (the hidden keys keep a weight and the zeroing does not renormalise):
  declined.
* Grouped KV heads written as an explicit repeat are plain attention over the
  repeated k and v. Cross-attention (k, v from another sequence) is plain
  attention; it is never made causal unless Lq == Lk is proven.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule
from fxsurgeon.patterns._attention_frames import LAYOUT_OPS, layout_run, regroup_term
from fxsurgeon.patterns._attention_graph import _name
from fxsurgeon.patterns._attention_masks import zeroing
from fxsurgeon.patterns._attention_orient import extras as orient_extras
from fxsurgeon.patterns._attention_orient import orient, rebuild
from fxsurgeon.patterns._attention_orient import scope as orient_scope
from fxsurgeon.patterns._attention_scores import recognize
from torch import fx

from fxsurgeon.fuse import REL_TOL

_EXTRAS = (
    "q",
    "k",
    "v_in",
    "out_ops",
    "scale",
    "terms",
    "fills",
    "causal",
    "zero",
    "sizes",
    "values",
)


def _replay(operand):
    x, ops = operand
    for target, args in ops:
        x = target(x, *args)
    return x


def _attention(q, k, v, scale, terms, fills, causal, zero):
    """SDPA over q, k, v in [..., L, D] with the recognised scale and masks."""
    mask = None
    for coef, term, *leads in terms:
        term = regroup_term(term, q, *leads) if leads else term
        x = term if coef == 1.0 else term * coef
        mask = x if mask is None else mask + x
    for cond, when_true, when_false in fills:
        x = torch.where(cond, _total(when_true), _total(when_false))
        mask = x if mask is None else mask + x
    options = {}  # only what differs from SDPA's defaults, for readable code
    if causal == "top" and mask is None:
        options["is_causal"] = True
    elif causal == "top":  # SDPA takes attn_mask or is_causal, not both: the triangle in the mask
        keep = torch.ones((q.size(-2), k.size(-2)), dtype=torch.bool, device=q.device).tril()
        mask = mask.masked_fill(keep.logical_not(), float("-inf"))
    elif causal:  # aligned at the last key: SDPA's is_causal is aligned at the first
        rows = torch.arange(q.size(-2), device=q.device).unsqueeze(-1) + (k.size(-2) - q.size(-2))
        hidden = torch.arange(k.size(-2), device=q.device) > rows
        mask = torch.zeros(hidden.shape, dtype=q.dtype, device=q.device) if mask is None else mask
        mask = mask.masked_fill(hidden, float("-inf"))
    if mask is not None:
        # SDPA wants a float mask of the query's dtype: torch 2.14 silently computes
        # garbage for a float32 mask with float64 q/k/v. Under ONNX semantics the two
        # already share a dtype (no-op); in a module cast later it is the promotion the
        # replaced `scores + mask` did.
        options["attn_mask"] = mask.type_as(q)
    if scale is not None:  # None: SDPA's default 1/sqrt(D) (the check compared it)
        options["scale"] = scale
    out = F.scaled_dot_product_attention(q, k, v, **options)
    if zero is not None:  # a row with no visible key is 0, as the model's zeroing Where made it
        cond, hides = zero
        visible = (cond.logical_not() if hides else cond).any(-1, keepdim=True)
        out = torch.where(visible, out, 0.0)
    return out


def _total(fill):
    """A fill: a number, or the (coef, term) pieces of a masked term (``Plan.gated``)."""
    if not isinstance(fill, tuple):
        return fill
    number = sum(coef * t for coef, t in fill if isinstance(t, (int, float)))
    total = None
    for coef, t in fill:
        if not isinstance(t, (int, float)):
            x = t if coef == 1.0 else t * coef
            total = x if total is None else total + x
    if total is None:
        return number
    return total + number if number else total


def _substitute(old: fx.Node, new) -> None:
    """Every use of `old` reads `new` (a node or a number) instead."""
    for user in list(old.users):
        user.args = fx.node.map_aggregate(user.args, lambda a: new if a is old else a)
        user.kwargs = fx.node.map_aggregate(user.kwargs, lambda a: new if a is old else a)


def _replacement(q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values):
    for size, source, axis in sizes:  # the same length, read from q or k (defined earlier)
        size.node.args = (source.node, axis)
    for size, value in values:  # a batch dim of a frame, as its reshape gave it (earlier)
        _substitute(size.node, value.node if isinstance(value, fx.Proxy) else value)
    out = _attention(_replay(q), _replay(k), _replay(v_in), scale, terms, fills, causal, zero)
    return _replay((out, out_ops))


def _probs_path(node, module) -> tuple[fx.Node, fx.Node | None, list | None] | str:
    """What the contraction with V reads, walked back to the softmax: (softmax, a zeroing
    ``Where(c, 0, softmax)`` or None, the layout run after them or None)."""
    run = zeroed = None
    if isinstance(node, fx.Node) and node.op == "call_function" and node.target in LAYOUT_OPS:
        run = layout_run(node)
        node = run[0].args[0]
    found = zeroing(node, module)
    if found is not None:
        zeroed, node = node, found[2]
    if not _is_softmax(node):
        return f"{_name(node)} is not a softmax over the last axis"
    return node, zeroed, run


def _recognize_check(probs_index: int, form: str):
    """The check of an ``sdpa_*`` rule; `form` says which paths from the softmax to the
    contraction with V the rule owns (the others are another rule's): "softmax" (none),
    "reshape" (a layout run ending in a Reshape), "path" (a zeroing Where, or a run
    ending in Squeeze/Unsqueeze), "zeroed" (a zeroing Where, no run: einsum)."""

    def check(match: Match) -> str | None:
        anchor = match.anchor
        path = _probs_path(anchor.args[probs_index], match.module)
        if isinstance(path, str):
            return path
        probs, zeroed, run = path
        if form == "path" and zeroed is None and (not run or run[-1].target is torch.reshape):
            return "sdpa_1's or sdpa_3's form"
        if form == "zeroed" and (zeroed is None or run):
            return "sdpa_2's form" if zeroed is None else "layout ops before an einsum with v"
        plan = recognize(anchor, probs, match.module, run, zeroed)
        if isinstance(plan, str):
            return plan
        match["q"] = (plan.q.base, plan.q.ops)
        match["k"] = (plan.k.base, plan.k.ops)
        match["v_in"] = (plan.v.base, plan.v.ops)
        match["out_ops"] = plan.out_ops
        d = plan.head_dim
        default = isinstance(d, int) and math.isclose(plan.scale, 1 / math.sqrt(d), rel_tol=REL_TOL)
        match["scale"] = None if default else plan.scale
        match["terms"] = [(*t, *plan.regroup.get(i, ())) for i, t in enumerate(plan.terms)]
        gated = [(c, tuple(p), 0.0) if on else (c, 0.0, tuple(p)) for c, on, p in plan.gated]
        match["fills"] = [*plan.fills, *gated]
        match["causal"] = plan.causal
        match["zero"] = plan.zero
        match["sizes"] = list(plan.sizes)
        match["values"] = list(plan.values)
        return None

    return check


def _is_softmax(node) -> bool:
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return False
    if node.target is not torch.softmax or len(node.args) != 2 or node.kwargs:
        return False
    rank = len(node.meta.get("fxs_shape") or ())
    return rank > 0 and node.args[1] % rank == rank - 1


# -- softmax(scores) @ v ------------------------------------------------------------------------


def sdpa_matmul_pattern(scores: torch.Tensor, v: torch.Tensor):
    return torch.matmul(torch.softmax(scores, -1), v)


def sdpa_matmul_replacement(
    scores, v, q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values
):
    return _replacement(q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values)


sdpa_1 = Rule(
    "sdpa_1",
    sdpa_matmul_pattern,
    sdpa_matmul_replacement,
    check=_recognize_check(0, "softmax"),
    phase="attention",
    note="recogniser: softmax(scores, -1) @ v, scores walked back to q @ k^T (HF ViT/BERT/GPT-2)",
)


# -- einsum(eq, softmax(scores), v) ------------------------------------------------------------------


def sdpa_einsum_pattern(equation, scores: torch.Tensor, v: torch.Tensor):
    return torch.einsum(equation, torch.softmax(scores, -1), v)


def sdpa_einsum_replacement(
    equation, scores, v, q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values
):
    return _replacement(q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values)


sdpa_2 = Rule(
    "sdpa_2",
    sdpa_einsum_pattern,
    sdpa_einsum_replacement,
    check=_recognize_check(1, "softmax"),
    phase="attention",
    note="recogniser: einsum(softmax(scores, -1), v) (Keras MultiHeadAttention)",
)


# -- layout(softmax(scores)) @ v -------------------------------------------------------------


def sdpa_layout_pattern(probs: torch.Tensor, shape: tuple, v: torch.Tensor):
    return torch.matmul(torch.reshape(probs, shape), v)


def sdpa_layout_replacement(
    probs, shape, v, q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values
):
    return _replacement(q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values)


sdpa_3 = Rule(
    "sdpa_3",
    sdpa_layout_pattern,
    sdpa_layout_replacement,
    check=_recognize_check(0, "reshape"),
    phase="attention",
    note="recogniser: softmax, then Unsqueeze/Squeeze/Reshape that keep (Lq, Lk), @ v "
    "(tf2onnx's decomposed Einsum of Keras MultiHeadAttention)",
)


# -- the other paths: a zeroing Where after the softmax, a run ending in (Un)squeeze -----------


def sdpa_path_pattern(probs: torch.Tensor, v: torch.Tensor):
    return torch.matmul(probs, v)


def sdpa_path_replacement(
    probs, v, q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values
):
    return _replacement(q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values)


sdpa_4 = Rule(
    "sdpa_4",
    sdpa_path_pattern,
    sdpa_path_replacement,
    check=_recognize_check(0, "path"),
    phase="attention",
    note="recogniser: softmax, then Where(c, 0, p) zeroing what the mask hid (DeBERTa's "
    "XSoftmax) and/or layout ops ending in Squeeze/Unsqueeze, @ v",
)


def sdpa_zeroed_einsum_pattern(equation, probs: torch.Tensor, v: torch.Tensor):
    return torch.einsum(equation, probs, v)


def sdpa_zeroed_einsum_replacement(
    equation, probs, v, q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values
):
    return _replacement(q, k, v_in, out_ops, scale, terms, fills, causal, zero, sizes, values)


sdpa_5 = Rule(
    "sdpa_5",
    sdpa_zeroed_einsum_pattern,
    sdpa_zeroed_einsum_replacement,
    check=_recognize_check(1, "zeroed"),
    phase="attention",
    note="recogniser: einsum(Where(c, 0, softmax(scores, -1)), v), the zeroing as in sdpa_4",
)


# -- scores permuted on the way to the softmax: written in [..., Lq, Lk] order first -------------


def sdpa_orient_pattern(probs: torch.Tensor, v: torch.Tensor):
    return torch.matmul(probs, v)


def sdpa_orient_check(match: Match) -> str | None:
    region = orient(match.anchor, match.module)
    if isinstance(region, str):
        return region
    for name, value in orient_extras(region).items():
        match[name] = value
    match["scope"] = orient_scope(region, match.anchor)
    return None


def sdpa_orient_replacement(
    probs, v, base, contraction, unit, ops, probs_shape, tail, sizes, scope
):
    swap = {}
    for size, value in sizes:  # lengths of the region's nodes, read from B (defined earlier)
        if isinstance(value, tuple):
            size.node.args = (base.node, value[1])
            continue
        swap[size.node] = value.node if isinstance(value, fx.Proxy) else value
        _substitute(size.node, swap[size.node])
    tail = [  # the layout ops after the region are written again: with the lengths read anew
        (target, *(fx.node.map_aggregate(args, lambda a: _read_anew(a, swap)) for args in sides))
        for target, *sides in tail
    ]
    out = torch.matmul(rebuild(base, contraction, unit, ops, probs_shape, tail), v)
    if scope is not None:
        out.node.meta["fxsurgeon.onnx_node"] = scope
    return out


def _read_anew(value, swap: dict):
    node = value.node if isinstance(value, fx.Proxy) else value
    if isinstance(node, fx.Node) and node in swap:
        new = swap[node]
        return value.tracer.proxy(new) if isinstance(new, fx.Node) else new
    return value


sdpa_orient_1 = Rule(
    "sdpa_orient_1",
    sdpa_orient_pattern,
    sdpa_orient_replacement,
    check=sdpa_orient_check,
    phase="attention",
    note="scores permuted between the contraction and the softmax (XLNet's ijbn einsums, Keras "
    "MultiHeadAttention over two axes): rewritten in [..., Lq, Lk] order for sdpa_1..5",
)
