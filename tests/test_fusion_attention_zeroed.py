"""Attention whose probabilities are zeroed after the softmax where the mask hid the keys.

DeBERTa's XSoftmax writes ``Where(~m, -inf, scores)``, Softmax, ``Where(~m, 0, probs)``:
a query row with no visible key is 0, not NaN or uniform. SDPA takes the mask (the fill
as the float32 minimum) and its output is zeroed on rows with no visible key
(`patterns/_attention_masks.py`, ``absorb_zero``). DeBERTa also adds its position terms
to the scores [N*H, L, L] and masks them in [N, H, L, L]: the terms are regrouped with
the scores (`regroup_term`). Every case is compared with onnxruntime, with fully
masked rows in the inputs; the near misses are refused.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_fusion_attention import (
    F32_MIN,
    D,
    E,
    Graph,
    H,
    S,
    assert_matches_ort,
    feeds,
    heads,
    optimized,
    plain,
    refused,
    rng,
    sdpa_calls,
    softmax_count,
)

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx


def pair_mask(g: Graph, name: str = "attention_mask", length="S") -> str:
    """DeBERTa's [N, 1, S, S] mask: m[:, None, :, None] * m[:, None, None, :] > 0, so a
    padded query row hides every key."""
    m = g.input(name, ["N", length])
    rows = g.op("Unsqueeze", [m, g.const(f"{name}_r", [1, 3], np.int64)], f"{name}_rows")
    cols = g.op("Unsqueeze", [m, g.const(f"{name}_c", [1, 2], np.int64)], f"{name}_cols")
    both = g.op("Mul", [rows, cols], f"{name}_both")
    return g.op("Greater", [both, g.const(f"{name}_zero", 0.0)], f"{name}_keep")


def xsoftmax(g: Graph, scores: str, keep: str, v: str, fill=-np.inf, zero="not", shift=True):
    """Where(Not(keep), fill, s) [+ 1e-10], Softmax, the zeroing Where, MatMul v, merge.
    `zero`: "not" Where(Not(keep), 0, p); "keep" Where(keep, p, 0); "recast" a second
    Not of the same keep (tf2onnx may build a mask twice)."""
    hidden = g.op("Not", [keep], "hidden")
    filled = g.op("Where", [hidden, g.const("fill", fill), scores], "filled")
    if shift:
        filled = g.op("Add", [filled, g.const("tiny", 1e-10)], "shifted")
    probs = g.op("Softmax", [filled], "probs", axis=-1)
    zero_c = g.const("zero_f", 0.0)
    if zero == "keep":
        zeroed = g.op("Where", [keep, probs, zero_c], "zeroed")
    else:
        again = g.op("Not", [keep], "hidden_again") if zero == "recast" else hidden
        zeroed = g.op("Where", [again, zero_c, probs], "zeroed")
    o = g.op("MatMul", [zeroed, v], "o")
    merged = g.op("Transpose", [o], "merged", perm=[0, 2, 1, 3])
    return g.model(
        g.op("Reshape", [merged, g.const("out_shape", [0, -1, E], np.int64)], "y"), rank=3
    )


def padded_feeds(model, sizes=(3, S)) -> dict:
    """Random inputs whose mask pads the tail of each row, one row fully."""
    inputs = feeds(model, sizes)
    m = np.ones_like(inputs["attention_mask"])
    m[0, 2:] = 0.0
    m[-1, :] = 0.0  # every query of this sequence is padded: all its rows are empty
    inputs["attention_mask"] = m
    return inputs


def assert_padded_matches_ort(module, model) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for sizes in ((3, S), (2, 7)):
        inputs = padded_feeds(model, sizes)
        (expected,) = session.run(None, inputs)
        with torch.no_grad():
            got = module(*(torch.from_numpy(a) for a in inputs.values())).numpy()
        assert np.isfinite(expected).all() and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert_matches_ort(module, model)  # and on random masks


def fused_zeroed(model):
    module = optimized(model)
    (call,) = sdpa_calls(module)
    assert softmax_count(module) == 0 and "attn_mask" in call.kwargs, module.code
    assert_padded_matches_ort(module, model)
    return module


# --------------------------------------------------------------------------- must match


@pytest.mark.parametrize("zero", ["not", "keep", "recast"])
@pytest.mark.parametrize("fill", [-np.inf, F32_MIN, -1e4])
def test_xsoftmax_is_sdpa_with_empty_rows_zeroed(zero, fill):
    g, scores, v = plain()
    fused_zeroed(xsoftmax(g, scores, pair_mask(g), v, fill=fill, zero=zero))


def test_xsoftmax_gradients_are_finite_and_match_on_empty_rows():
    g, scores, v = plain()
    model = xsoftmax(g, scores, pair_mask(g), v)
    module = fused_zeroed(model)
    raw = optimized_without_attention(model)
    inputs = padded_feeds(model)
    grads = []
    for m in (module, raw):
        x = torch.from_numpy(inputs["x"]).requires_grad_()
        m(x, torch.from_numpy(inputs["attention_mask"])).square().sum().backward()
        grads.append(x.grad)
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)


def optimized_without_attention(model):
    """The same model with the attention rules left out (the softmax chain as written)."""
    return fxsurgeon.optimize(from_onnx(model), disable=("sdpa_1", "sdpa_3", "sdpa_4"))


def test_position_terms_on_the_merged_heads_regroup_into_the_masks_frame():
    """DeBERTa: scores and a term computed from q on [N*H, S, S]; Reshape to [N, H, S, S];
    the mask there. The term is regrouped like the scores."""
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    merge = g.const("to_nh", [-1, S, D], np.int64)
    q3, k3, v3 = (g.op("Reshape", [t, merge], f"{t}_3") for t in (q, k, v))
    scores = core3(g, q3, k3)
    pos = g.const("pos_key", rng.standard_normal((D, S)))
    c2p = g.op("MatMul", [q3, pos], "c2p")  # [N*H, S, S], from q: a term, not the scores
    biased = g.op("Add", [scores, g.op("Mul", [c2p, g.const("c2p_scale", 0.3)], "c2p_s")], "b")
    split = g.op("Reshape", [biased, g.const("to_n_h", [-1, H, S, S], np.int64)], "split")
    keep = pair_mask(g, length=S)
    v4 = g.op("Reshape", [v3, g.const("v_blocks", [-1, H, S, D], np.int64)], "v4")
    module = fused_zeroed(xsoftmax(g, split, keep, v4))
    assert "expand" in module.code  # the term, broadcast to the merged heads and regrouped


def core3(g: Graph, q: str, k: str) -> str:
    kt = g.op("Transpose", [k], "kT3", perm=[0, 2, 1])
    return g.op("Mul", [g.op("MatMul", [q, kt], "qk3"), g.const("scale3", 0.5)], "scores3")


def test_a_causal_fill_with_a_zeroing_where_is_is_causal():
    """A lower triangle keeps every row's diagonal: the zeroing empties nothing."""
    g, scores, v = plain()
    tri = g.const("tri", np.tril(np.ones((S, S), bool)), np.bool_)
    filled = g.op("Where", [tri, scores, g.const("fill", -np.inf)], "filled")
    probs = g.op("Softmax", [filled], "probs", axis=-1)
    zeroed = g.op("Where", [tri, probs, g.const("zero_f", 0.0)], "zeroed")
    o = g.op("MatMul", [zeroed, v], "o")
    merged = g.op("Transpose", [o], "merged", perm=[0, 2, 1, 3])
    model = g.model(g.op("Reshape", [merged, g.const("out", [0, -1, E], np.int64)], "y"), rank=3)
    module = optimized(model)
    (call,) = sdpa_calls(module)
    assert call.kwargs == {"is_causal": True} and "any" not in module.code
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = {"x": rng.standard_normal((2, S, E)).astype(np.float32)}
    with torch.no_grad():
        got = module(torch.from_numpy(inputs["x"])).numpy()
    np.testing.assert_allclose(got, session.run(None, inputs)[0], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- must not match


def test_zeroing_other_positions_than_the_mask_hid_is_refused():
    g, scores, v = plain()
    keep, other = pair_mask(g), pair_mask(g, "other_mask")
    hidden = g.op("Not", [keep], "hidden")
    filled = g.op("Where", [hidden, g.const("fill", -np.inf), scores], "filled")
    probs = g.op("Softmax", [filled], "probs", axis=-1)
    zeroed = g.op("Where", [other, probs, g.const("zero_f", 0.0)], "zeroed")
    model = finish_zeroed(g, zeroed, v)
    module = optimized(model)
    assert not sdpa_calls(module) and softmax_count(module) == 1


def test_zeroing_without_a_mask_before_the_softmax_is_refused():
    """Zeroing alone drops probability mass without renormalising: not SDPA."""
    g, scores, v = plain()
    keep = pair_mask(g)
    probs = g.op("Softmax", [scores], "probs", axis=-1)
    model = finish_zeroed(g, g.op("Where", [keep, probs, g.const("zero_f", 0.0)], "zeroed"), v)
    assert not sdpa_calls(optimized(model))


def test_zeroing_after_a_fill_that_leaves_weight_is_refused():
    """Fill -10: hidden keys keep a weight the zeroing then removes (no renormalising)."""
    g, scores, v = plain()
    refused_padded(xsoftmax(g, scores, pair_mask(g), v, fill=-10.0))


def test_zeroing_with_a_second_mask_is_refused():
    """Two masks: a row emptied by both but not by the zeroed one differs."""
    g, scores, v = plain()
    extra = g.op("Where", [pair_mask(g, "second"), scores, g.const("fill2", F32_MIN)], "masked2")
    refused_padded(xsoftmax(g, extra, pair_mask(g), v))


def test_a_zeroing_where_that_reads_the_probabilities_elsewhere_is_refused():
    g, scores, v = plain()
    keep = pair_mask(g)
    hidden = g.op("Not", [keep], "hidden")
    filled = g.op("Where", [hidden, g.const("fill", -np.inf), scores], "filled")
    probs = g.op("Softmax", [filled], "probs", axis=-1)
    zeroed = g.op("Where", [hidden, g.const("zero_f", 0.0), probs], "zeroed")
    o = g.op("MatMul", [zeroed, v], "o")
    weights = g.op("ReduceSum", [zeroed, g.const("last", [-1], np.int64)], "weights", keepdims=1)
    out = g.op("Add", [o, weights], "o_plus")
    model = finish_zeroed(g, out, None)
    assert not sdpa_calls(optimized(model))


def finish_zeroed(g: Graph, zeroed: str, v: str | None):
    o = g.op("MatMul", [zeroed, v], "o") if v is not None else zeroed
    merged = g.op("Transpose", [o], "merged", perm=[0, 2, 1, 3])
    return g.model(g.op("Reshape", [merged, g.const("out", [0, -1, E], np.int64)], "y"), rank=3)


def refused_padded(model):
    module = refused(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = padded_feeds(model)
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    np.testing.assert_allclose(got, session.run(None, inputs)[0], atol=1e-5, rtol=0)
