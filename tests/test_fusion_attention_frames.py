"""Attention whose additive terms are added in frames of different batch dims (HF Swin).

Swin adds its relative-position bias [1, H, L, L] to the scores [B*nW, H, L, L], then
reshapes them to [B, nW, H, L, L] to add the window mask [nW, 1, L, L], and back.
SDPA runs in the mask's frame; the bias carries over when it is 1 along every batch
dim the reshapes regroup, and a term added to the contraction's scores is otherwise
regrouped with them. Compared with onnxruntime at two window batches.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_fusion_attention import (
    D,
    E,
    Graph,
    H,
    S,
    core,
    finish,
    optimized,
    rng,
    sdpa_calls,
    softmax_count,
)

NW = 3  # windows per image


def windowed_heads(g: Graph) -> tuple[str, str, str]:
    """q, k, v [B*nW, H, L, D] of images [B, nW*L, E] cut into nW windows of L tokens."""
    image = g.input("image", ["N", NW * S, E])
    x = g.op("Reshape", [image, g.const("cut", [-1, S, E], np.int64)], "windows_x")
    out = []
    for name in ("q", "k", "v"):
        w = g.const(f"{name}_w", rng.standard_normal((E, H * D)) * 0.5)
        y = g.op("MatMul", [x, w], f"{name}_proj")
        split = g.op("Reshape", [y, g.const(f"{name}_shape", [0, -1, H, D], np.int64)], name)
        out.append(g.op("Transpose", [split], f"{name}_heads", perm=[0, 2, 1, 3]))
    return out[0], out[1], out[2]


def swin_attention(bias_shape=(1, H, S, S), window_mask: bool = True):
    g = Graph()
    q, k, v = windowed_heads(g)
    scores = core(g, q, k)
    if bias_shape == "per window":  # [B*nW, 1, 1, 1], from each window's tokens
        mean = g.op("ReduceMean", ["windows_x"], "window_mean", axes=[1, 2], keepdims=1)
        bias = g.op("Unsqueeze", [mean, g.const("at_1", [1], np.int64)], "rel_bias")
    elif bias_shape is not None:
        bias = g.const("rel_bias", rng.standard_normal(bias_shape))
    biased = g.op("Add", [scores, bias], "biased") if bias_shape is not None else scores
    if not window_mask:
        return finish(g, biased, v)
    split = g.const("split", [-1, NW, H, S, S], np.int64)
    windows = g.op("Reshape", [biased, split], "windows")
    values = np.where(rng.random((NW, 1, S, S)) < 0.3, -100.0, 0.0)
    masked = g.op("Add", [windows, g.const("window_mask", values)], "masked")
    back = g.op("Reshape", [masked, g.const("merge", [-1, H, S, S], np.int64)], "back")
    return finish(g, back, v)


def _assert_matches_ort(module, model) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for images in (2, 1):
        inputs = {}
        for i in session.get_inputs():
            dims = [images if d == "N" else d for d in i.shape]
            inputs[i.name] = rng.standard_normal(dims).astype(np.float32)
        (expected,) = session.run(None, inputs)
        with torch.no_grad():
            got = module(*(torch.from_numpy(a) for a in inputs.values()))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias_shape", [(1, H, S, S), (H, S, S), (1, 1, S, S), None])
def test_a_bias_of_the_heads_carries_over_to_the_window_masks_frame(bias_shape):
    model = swin_attention(bias_shape)
    module = optimized(model)
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs and softmax_count(module) == 0
    _assert_matches_ort(module, model)


def test_a_bias_that_differs_per_window_is_regrouped_with_the_scores():
    """[B*nW, 1, 1, 1] varies along B*nW, a dim the reshape regroups: it cannot carry over
    by broadcasting, so it is broadcast to the contraction's batch dims [B*nW, H] and
    regrouped to [B, nW, H] as the scores are (block i stays block i)."""
    model = swin_attention("per window")
    module = optimized(model)
    (call,) = sdpa_calls(module)
    assert "attn_mask" in call.kwargs and softmax_count(module) == 0
    assert "expand" in module.code
    _assert_matches_ort(module, model)


def test_a_window_mask_does_not_move_into_the_frame_of_a_where():
    """The Where fill sits in [B*nW, H, L, L]: SDPA would run there, and the window mask
    [nW, 1, L, L] varies along nW, which that frame does not have."""
    g = Graph()
    q, k, v = windowed_heads(g)
    keep = g.const("keep", rng.random((1, 1, S, S)) < 0.8, np.bool_)
    filled = g.op("Where", [keep, core(g, q, k), g.const("fill", -1e9)], "filled")
    windows = g.op("Reshape", [filled, g.const("split", [-1, NW, H, S, S], np.int64)], "windows")
    values = np.where(rng.random((NW, 1, S, S)) < 0.3, -100.0, 0.0)
    masked = g.op("Add", [windows, g.const("window_mask", values)], "masked")
    back = g.op("Reshape", [masked, g.const("merge", [-1, H, S, S], np.int64)], "back")
    model = finish(g, back, v)
    module = optimized(model)
    assert not sdpa_calls(module) and softmax_count(module) == 1
    _assert_matches_ort(module, model)
