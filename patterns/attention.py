"""Scaled dot-product attention -> F.scaled_dot_product_attention.

    Attention(q, k, v) = softmax(q @ k^T * scale + mask) @ v      q, k, v: [B, H, S, D]

tf2onnx keeps the head split around it (reshape to [B, S, H, D], transpose to
[B, H, S, D]) and hands the score MatMul k already transposed: kT = [B, H, D, S]
(Transpose (0, 2, 3, 1) of the split, or (0, 2, 1, 3) then (0, 1, 3, 2)). The
rules match the core on the head-split tensors q, kT, v and give SDPA
k = kT.permute(0, 1, 3, 2); the tidy phase's ``permute_permute`` folds that into
the head split, so the code reads

    q = reshape(linear(x), (B, -1, H, D)).permute(0, 2, 1, 3)   # k, v alike
    o = scaled_dot_product_attention(q, k, v, ...)              # [B, H, S, D]
    reshape(o.permute(0, 2, 1, 3), (B, -1, H * D))

What is absorbed, and why it is exact:

* Softmax is shift-invariant, softmax(s + c) = softmax(s) for a scalar c: HF's
  ``stable_softmax`` adds 1e-9 to the scores (sdpa_1; in sdpa_3 it sits in the
  mask term, where it stays; in sdpa_4 it is absorbed).
* ``scale`` is passed through, or left to SDPA's default when it is
  1/sqrt(D) within the engine's 1e-6 (float32 rounding; 1e-4 would change
  the scores by up to 1e-4 relative).
* GPT-2's causal mask s * band - 10000 * (1 - band) (band[i, j] = i >= j - Sk + Sq)
  becomes ``is_causal=True`` (sdpa_4): exp(-10000 - max) is 0 in float32, and
  bottom-right alignment equals SDPA's top-left one because self-attention
  without a KV cache has Sq == Sk (the rule checks the query and key lengths
  are the same static size or both follow the input). With a padding mask too
  (sdpa_5), SDPA cannot take both: the band becomes -inf in the mask,
  ``mask.masked_fill(~tril(ones(Sq, Sk)), -inf)``; a causally hidden score was
  -10000 below the visible ones before and is -inf now, both weigh 0.
* The mask goes in as ``mask.type_as(q)``: the identity under ONNX semantics
  (Add takes one type: mask, scores and q share it), and in a module cast later
  (``.to(torch.float64)``, with the mask still made by a float32 Cast) the
  promotion that the replaced add did. SDPA's contract is a float mask of the
  query's dtype; torch 2.14's CPU kernel takes a float32 mask with float64
  queries and silently returns wrong outputs and gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule

from fxsurgeon.fuse import REL_TOL


def _attention(q, kT, v, scale, mask=None, is_causal=False):
    """The replacement every variant shares: SDPA with k in [B, H, S, D]."""
    rank = q.dim()
    k = torch.permute(kT, tuple(range(rank - 2)) + (rank - 1, rank - 2))
    options = {}  # only what differs from SDPA's defaults, for readable code
    if mask is not None:
        # SDPA wants a float mask of the query's dtype (see the module docstring)
        options["attn_mask"] = mask.type_as(q)
    if is_causal:
        options["is_causal"] = True
    if not math.isclose(scale, 1 / math.sqrt(q.shape[-1]), rel_tol=REL_TOL):
        options["scale"] = scale
    return F.scaled_dot_product_attention(q, k, v, **options)


def _heads_check(match: Match) -> str | None:
    q, kT, v = (match.shape(n) for n in ("q", "kT", "v"))
    if q is None or kT is None or v is None:
        return "the shapes of q, k, v are not known"
    if not (len(q) == len(kT) == len(v) == 4):
        return f"q {q}, k^T {kT}, v {v} are not [B, H, S, D]"
    if q[-1] is None or q[-1] != kT[-2]:
        return f"head dims differ: q {q}, k^T {kT}"
    if not isinstance(match["scale"], float):
        return f"scale {match['scale']!r} is not a constant"
    return None


# -- no mask ------------------------------------------------------------------------------------------


def sdpa_shifted_pattern(q, kT, v, scale: float, shift: float):
    return torch.matmul(torch.softmax(torch.matmul(q, kT) * scale + shift, -1), v)


def sdpa_shifted_replacement(q, kT, v, scale, shift):
    return _attention(q, kT, v, scale)


sdpa_1 = Rule(
    "sdpa_1",
    sdpa_shifted_pattern,
    sdpa_shifted_replacement,
    check=_heads_check,
    phase="attention",
    note="tf2onnx, HF TFViT: scores * scale + 1e-9 (stable_softmax), no mask",
)


def sdpa_plain_pattern(q, kT, v, scale: float):
    return torch.matmul(torch.softmax(torch.matmul(q, kT) * scale, -1), v)


def sdpa_plain_replacement(q, kT, v, scale):
    return _attention(q, kT, v, scale)


sdpa_2 = Rule(
    "sdpa_2",
    sdpa_plain_pattern,
    sdpa_plain_replacement,
    check=_heads_check,
    phase="attention",
    note="tf2onnx, Keras-style attention: softmax(q @ k^T * scale) @ v",
)


# -- additive mask ---------------------------------------------------------------------------------------


def sdpa_masked_pattern(q, kT, v, scale: float, mask: torch.Tensor):
    return torch.matmul(torch.softmax(torch.matmul(q, kT) * scale + mask, -1), v)


def sdpa_masked_replacement(q, kT, v, scale, mask):
    return _attention(q, kT, v, scale, mask=mask)


def sdpa_masked_check(match: Match) -> str | None:
    reason = _heads_check(match)
    if reason is not None:
        return reason
    mask, dtype = match.shape("mask"), match.dtype("mask")
    if mask is None or dtype is None or not dtype.is_floating_point:
        return f"the mask is not a floating tensor of known shape ({dtype}, {mask})"
    q, kT = match.shape("q"), match.shape("kT")
    scores = q[:-1] + kT[-1:]
    if len(mask) > len(scores):
        return f"the mask {mask} has more dims than the scores {scores}"
    for m, s in zip(reversed(mask), reversed(scores), strict=False):
        if m != 1 and m != s:
            return f"the mask {mask} does not broadcast to the scores {scores}"
    return None


sdpa_3 = Rule(
    "sdpa_3",
    sdpa_masked_pattern,
    sdpa_masked_replacement,
    check=sdpa_masked_check,
    phase="attention",
    note="tf2onnx, HF TFBert: scores * scale + (1e-9 + (1 - mask) * -10000), mask [B, 1, 1, S]",
)


# -- causal ------------------------------------------------------------------------------------------------


def _causal_band(w, index_dtype, device_a, device_b, stop):
    """HF TFGPT2's causal_attention_mask: band[i, j] = i >= j - Sk + Sq, as [1, 1, Sq, Sk] floats."""
    q_len, k_len = w.size(2), w.size(3)
    rows = torch.unsqueeze(torch.arange(0, q_len, 1, dtype=index_dtype, device=device_a), 1)[:stop]
    cols = torch.arange(0, k_len, 1, dtype=index_dtype, device=device_b) - k_len + q_len
    return torch.reshape(torch.greater_equal(rows, cols).to(torch.float32), (1, 1, q_len, k_len))


def sdpa_causal_pattern(
    q, kT, v, scale: float, shift: float, big: float, index_dtype, device_a, device_b, stop: int
):
    w = torch.matmul(q, kT) * scale
    band = _causal_band(w, index_dtype, device_a, device_b, stop)
    return torch.matmul(torch.softmax(w * band + (shift - big * (1.0 - band)), -1), v)


def sdpa_causal_replacement(q, kT, v, scale, shift, big, index_dtype, device_a, device_b, stop):
    return _attention(q, kT, v, scale, is_causal=True)


def sdpa_causal_check(match: Match) -> str | None:
    reason = _heads_check(match)
    if reason is not None:
        return reason
    if match["big"] < 1e3:
        return f"the mask fill -{match['big']} is too small to zero the masked weights"
    q_len, k_len = match.shape("q")[-2], match.shape("kT")[-1]
    if q_len != k_len:
        return f"query length {q_len} and key length {k_len} differ: not self-attention"
    if not isinstance(match["stop"], int) or match["stop"] < 10**6:
        return f"the row slice [:{match['stop']}] may cut rows (the rule takes stops >= 10**6)"
    return None


sdpa_4 = Rule(
    "sdpa_4",
    sdpa_causal_pattern,
    sdpa_causal_replacement,
    check=sdpa_causal_check,
    phase="attention",
    note="tf2onnx, HF TFGPT2: w * band - 10000 * (1 - band) + 1e-9, band from Range >= Range",
)


# -- causal and additive padding mask ----------------------------------------------------------------


def sdpa_causal_masked_pattern(
    q,
    kT,
    v,
    scale: float,
    big: float,
    mask: torch.Tensor,
    index_dtype,
    device_a,
    device_b,
    stop: int,
):
    w = torch.matmul(q, kT) * scale
    band = _causal_band(w, index_dtype, device_a, device_b, stop)
    return torch.matmul(torch.softmax(w * band - big * (1.0 - band) + mask, -1), v)


def sdpa_causal_masked_replacement(
    q, kT, v, scale, big, mask, index_dtype, device_a, device_b, stop
):
    # SDPA takes attn_mask or is_causal, not both: fold the causal band into the mask.
    causal = torch.ones((q.shape[-2], v.shape[-2]), dtype=torch.bool, device=q.device).tril()
    return _attention(q, kT, v, scale, mask=mask.masked_fill(causal.logical_not(), float("-inf")))


def sdpa_causal_masked_check(match: Match) -> str | None:
    return sdpa_masked_check(match) or sdpa_causal_check(match)


sdpa_5 = Rule(
    "sdpa_5",
    sdpa_causal_masked_pattern,
    sdpa_causal_masked_replacement,
    check=sdpa_causal_masked_check,
    phase="attention",
    note="tf2onnx, HF TFGPT2 with attention_mask: w * band - 10000 * (1 - band) + (1e-9 + (1 - m) * -10000)",
)
