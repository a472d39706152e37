"""Keras 2 (tf-keras) MultiHeadAttention on sequences of any length, as tf2onnx exports it.

tf-keras writes its scores as ``einsum("aecd,abcd->acbe", key, query)``; tf2onnx computes
``K @ Q^T`` ([N*H, Lk, Lq], each side regrouped by ``Reshape(x, [x.size(0) * H, -1, D])``),
reshapes it to [N, H, Lk, Lq, 1] by sizes read from K and Q (``max(Nk, Nq)``, ``H``,
``k.size(2)``, ``q.size(3)``, 1), takes the softmax over the keys (axis 2) and brings the
probabilities to [N*H, Lq, Lk] by a ``[p.size(0) * H, -1, p.size(4)]`` reshape. The layout
reader (``patterns/_attention_layouts.py``) reads the MatMul from its operands and the
product entries, so ``sdpa_orient_1`` writes ``Q @ K^T`` reshaped and the attention rules
fuse it. Compared with onnxruntime at two batch sizes and lengths; the near misses (a batch
regrouped as (H, N), a contraction with a weight instead of the queries, one head whose
batches may broadcast) are refused and still compute the model's values.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_fusion_attention import D, E, Graph, H, fused, refused, rng

import fxsurgeon

I64 = np.int64


def _size(g: Graph, x: str, axis: int, name: str) -> str:
    """``x.size(axis)`` as tf2onnx writes it: Shape, then Gather of a 1-element index."""
    shape = g.op("Shape", [x], f"{name}_shape")
    return g.op("Gather", [shape, g.const(f"{name}_at", [axis], I64)], name)


def _times(g: Graph, size: str, factor: int, name: str) -> str:
    return g.op("Mul", [size, g.const(f"{name}_by", [factor], I64)], name)


def _heads(g: Graph, name: str, x: str, at: int, perm: list, heads: int, scale=None) -> str:
    """A projection of `x` split into heads: [N, L, heads, D], an Unsqueeze at `at`, the
    Transpose `perm` (tf2onnx's decomposed Einsum)."""
    w = g.const(f"{name}_w", rng.standard_normal((E, heads * D)) * 0.5)
    y = g.op("MatMul", [x, w], f"{name}_proj")
    y = g.op("Reshape", [y, g.const(f"{name}_split", [0, 0, heads, D], I64)], f"{name}_split4")
    if scale is not None:
        y = g.op("Mul", [y, g.const(f"{name}_scale", scale)], f"{name}_scaled")
    y = g.op("Unsqueeze", [y, g.const(f"{name}_axis", [at], I64)], f"{name}_5d")
    return g.op("Transpose", [y], f"{name}_t", perm=perm)


def tfk_mha(cross=False, mask=False, swapped=False, weight=False, heads=H, out_rank=4, leak=False):
    """Keras 2 MHA as tf2onnx writes it (module docstring). `cross`: keys from another
    input (length T); `mask`: a key mask [N, 1, Lk, 1] added before the softmax; `swapped`:
    the scores regrouped as [H, N, ...] (and the mask [1, N, Lk, 1]); `weight`: the scores
    contract K with a weight [D, S0] instead of Q^T."""
    g = Graph()
    x = g.input("x", ["N", "S", E])
    ctx = g.input("ctx", ["N", "T", E]) if cross else x
    q = _heads(g, "q", x, 1, [0, 3, 1, 2, 4], heads, scale=1 / np.sqrt(D))  # [N, H, 1, S, D]
    k = _heads(g, "k", ctx, 2, [0, 3, 1, 2, 4], heads)  # [N, H, Lk, 1, D]
    v = _heads(g, "v", ctx, 2, [0, 3, 2, 4, 1], heads)  # [N, H, 1, D, Lk]
    flat = g.const("flat_tail", [-1, D], I64)
    nq, nk, nv = (_size(g, t, 0, f"{t}_n") for t in (q, k, v))
    q3 = g.op(
        "Reshape", [q, g.op("Concat", [_times(g, nq, heads, "qnh"), flat], "qs", axis=0)], "q3"
    )
    k3 = g.op(
        "Reshape", [k, g.op("Concat", [_times(g, nk, heads, "knh"), flat], "ks", axis=0)], "k3"
    )
    if weight:
        qt = g.const("w_scores", rng.standard_normal((D, 5)))
    else:
        qt = g.op("Transpose", [q3], "qT", perm=[0, 2, 1])
    kq = g.op("MatMul", [k3, qt], "kq")  # [N*H, Lk, Lq]
    lq = g.const("lq5", [5], I64) if weight else _size(g, q, 3, "lq")
    batch = g.op("Max", [nk, nq], "n_max")
    entries = (
        [g.const("h", [heads], I64), batch] if swapped else [batch, g.const("h", [heads], I64)]
    )
    entries += [_size(g, k, 2, "lk"), lq, g.const("one", [1], I64)]
    s5 = g.op("Reshape", [kq, g.op("Concat", entries, "frame", axis=0)], "s5")
    scores = g.op("Squeeze", [s5, g.const("at4", [4], I64)], "s4")
    if mask:
        shape = (
            [1, "N", "T" if cross else "S", 1] if swapped else ["N", 1, "T" if cross else "S", 1]
        )
        scores = g.op("Add", [scores, g.input("mask", shape)], "masked")
    p = g.op("Softmax", [scores], "probs", axis=2)  # over the keys
    p5 = g.op("Unsqueeze", [p, g.const("at2", [2], I64)], "p5")
    pt = g.op("Transpose", [p5], "pt", perm=[0, 1, 4, 2, 3])  # [N, H, Lq, 1, Lk]
    if swapped:  # the batch regrouped back as it came: [H*N] in flat order
        p_entries = [g.const("pb", [-1], I64), _size(g, pt, 2, "plq"), _size(g, pt, 4, "plk")]
    else:
        pn = _times(g, _size(g, pt, 0, "pn"), heads, "pnh")
        p_entries = [pn, g.const("pm1", [-1], I64), _size(g, pt, 4, "plk")]
    p3 = g.op("Reshape", [pt, g.op("Concat", p_entries, "ps", axis=0)], "p3")
    vd = g.const("vd", [D], I64)
    v3 = g.op(
        "Reshape",
        [v, g.op("Concat", [_times(g, nv, heads, "vnh"), vd, _size(g, v, 4, "vlk")], "vs", axis=0)],
        "v3",
    )
    v3 = g.op("Transpose", [v3], "v3t", perm=[0, 2, 1])  # [N*H, Lk, D]
    o = g.op("MatMul", [p3, v3], "o")  # [N*H, Lq, D]
    lq_out = g.const("lq_out", [5], I64) if weight else _size(g, q, 3, "lq_out")
    o4 = g.op(
        "Reshape",
        [o, g.op("Concat", [nq, g.const("h_out", [heads], I64), lq_out, vd], "os", axis=0)],
        "o4",
    )
    return g.model(o4, scores) if leak else g.model(o4, rank=out_rank)


def rules(module) -> dict:
    return fxsurgeon.report_of(module).matches


# --------------------------------------------------------------------------- must match


@pytest.mark.parametrize(
    ("cross", "mask"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_keras2_mha_on_dynamic_lengths(cross, mask):
    """Self- and cross-attention, with and without a key mask: the scores' 5-D reshape and
    the probabilities' reshape are read from K's and Q's sizes (``size * H``, ``max``)."""
    module = fused(tfk_mha(cross=cross, mask=mask))
    assert rules(module).get("sdpa_orient_1") == 1
    (call,) = [n for n in module.graph.nodes if "scaled_dot_product" in str(n.target)]
    assert ("attn_mask" in call.kwargs) == mask


def test_more_heads():
    fused(tfk_mha(cross=True, mask=True, heads=3))


# --------------------------------------------------------------------------- near misses


def test_a_batch_regrouped_as_heads_by_batch_is_refused():
    """[N*H, ...] reshaped to [H, N, ...]: the entry H meets N's factor first, so the
    reshape is not the head split (the mask [1, N, Lk, 1] would meet other rows)."""
    module = refused(tfk_mha(mask=True, swapped=True))
    assert not rules(module).get("sdpa_orient_1")


def test_keys_against_a_weight_are_refused():
    """K @ W (a [D, 5] weight, no Q^T): the MatMul is not read from two operands' heads."""
    refused(tfk_mha(weight=True))


def test_one_head_whose_batches_may_broadcast_is_refused():
    """One head: K's and Q's batch are one dynamic factor each, with no static factor > 1
    to prove that MatMul does not broadcast one of them, so they are not one factor."""
    refused(tfk_mha(cross=True, heads=1))
