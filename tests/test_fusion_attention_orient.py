"""Attention whose scores are permuted between the contraction and the softmax.

TF XLNet writes its scores in the einsum layout [i, j, b, n], adds its position term
there, permutes to [i, b, j, n] and takes the softmax over j (axis -2); Keras'
MultiHeadAttention over two axes contracts K with Q and takes the softmax over the key
axes of a permuted split. ``sdpa_orient_1`` (patterns/_attention_orient.py) writes the
region in [..., Lq, Lk] order (the terms permuted alike, K @ Q^T as Q @ K^T) for the
attention rules. Compared with onnxruntime at two batch sizes; the near misses (a
softmax over the queries, probabilities regrouped in another batch order) are refused,
and a rewrite the attention rules then refuse does not loop.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_fusion_attention import (
    D,
    Graph,
    H,
    S,
    _parity,
    assert_matches_ort,
    fused,
    heads,
    optimized,
    rng,
    sdpa_calls,
    softmax_count,
)

import fxsurgeon
from fxsurgeon.examples import randomize_variables
from fxsurgeon.tensorflow import export_onnx, from_onnx

SCALE = 1 / np.sqrt(D)


def xlnet_like(axis=2, term=True, mask=True, batch=(2, 4, 0, 1, 3), runtime=False, leak=False):
    """q, k, v [N, H, S, D]; scores q @ k^T permuted to [i, j, N, H] (+ a position term
    [S, S, 1, H]), then to [i, N, j, H], scaled (+ a mask [S, 1, S, 1]), Softmax over
    `axis`, Unsqueeze 0, Transpose `batch` to [N, H, 1, i, j], Reshape [N*H, S, S], @ v."""
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    kt = g.op("Transpose", [k], "kT", perm=[0, 1, 3, 2])
    ijbn = g.op("Transpose", [g.op("MatMul", [q, kt], "qk")], "ijbn", perm=[2, 3, 0, 1])
    if term:
        ijbn = g.op("Add", [ijbn, g.const("pos", rng.standard_normal((S, S, 1, H)))], "bd")
    if runtime:  # a scale read at run time: the attention rules refuse it
        ijbn = g.op("Mul", [ijbn, g.input("factor", [])], "runtime_scaled")
    scores = g.op("Transpose", [ijbn], "ibjn", perm=[0, 2, 1, 3])
    scores = g.op("Mul", [scores, g.const("scale", SCALE)], "scaled")
    if mask:
        scores = g.op("Add", [scores, g.input("mask", [S, 1, S, 1])], "masked")
    p = g.op("Softmax", [scores], "probs", axis=axis)
    p5 = g.op("Unsqueeze", [p, g.const("at0", [0], np.int64)], "p5")
    pb = g.op("Transpose", [p5], "pb", perm=list(batch))
    p3 = g.op("Reshape", [pb, g.const("p_flat", [-1, S, S], np.int64)], "p3")
    v3 = g.op("Reshape", [v, g.const("v_flat", [-1, S, D], np.int64)], "v3")
    o = g.op("MatMul", [p3, v3], "o")
    y = g.op("Reshape", [o, g.const("o_heads", [-1, H, S, D], np.int64)], "y")
    return g.model(y, scores) if leak else g.model(y)


def key_query(mask_shape=None, axis=2, einsum=False, leak=False):
    """Scores K @ Q^T [N, H, Lk, Lq] (MatMul, or an Einsum) (+ a mask), Softmax over the
    keys (axis 2), the probabilities transposed to [N, H, Lq, Lk], @ v. `leak`: the
    scaled scores are an output too."""
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    if einsum:
        kq = g.op("Einsum", [k, q], "kq", equation="nhkd,nhqd->nhkq")
    else:
        kq = g.op("MatMul", [k, g.op("Transpose", [q], "qT", perm=[0, 1, 3, 2])], "kq")
    scaled = g.op("Mul", [kq, g.const("scale", SCALE)], "scaled")
    scores = scaled
    if mask_shape is not None:
        scores = g.op("Add", [scores, g.input("mask", mask_shape)], "masked")
    p = g.op("Softmax", [scores], "probs", axis=axis)
    pt = g.op("Transpose", [p], "probs_qk", perm=[0, 1, 3, 2])
    o = g.op("MatMul", [pt, v], "o")
    return g.model(o, scaled) if leak else g.model(o)


def transposed_around_the_softmax():
    """Q @ K^T scaled, transposed to [N, H, Lk, Lq], a key mask [N, 1, Lk, 1] added there,
    Softmax over the keys (axis 2), transposed back, @ v."""
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    kt = g.op("Transpose", [k], "kT", perm=[0, 1, 3, 2])
    scores = g.op("Mul", [g.op("MatMul", [q, kt], "qk"), g.const("scale", SCALE)], "scaled")
    flipped = g.op("Transpose", [scores], "flipped", perm=[0, 1, 3, 2])
    masked = g.op("Add", [flipped, g.input("mask", ["N", 1, "S", 1])], "masked")
    p = g.op("Softmax", [masked], "probs", axis=2)
    pt = g.op("Transpose", [p], "probs_qk", perm=[0, 1, 3, 2])
    return g.model(g.op("MatMul", [pt, v], "o"))


def rules(module) -> dict:
    return fxsurgeon.report_of(module).matches


# --------------------------------------------------------------------------- must match


@pytest.mark.parametrize(("term", "mask"), [(True, True), (False, False), (True, False)])
def test_xlnet_scores_in_ijbn_layout_with_the_softmax_over_j(term, mask):
    module = fused(xlnet_like(term=term, mask=mask))
    assert rules(module).get("sdpa_orient_1") == 1
    (call,) = sdpa_calls(module)
    assert ("attn_mask" in call.kwargs) == (term or mask)


@pytest.mark.parametrize("mask_shape", [None, ["N", 1, "S", 1], ["N", 1, 1, "S"]])
def test_keys_contracted_with_queries_softmax_over_the_rows(mask_shape):
    """K @ Q^T is written Q @ K^T; a mask over the keys [N, 1, Lk, 1] moves with it."""
    module = fused(key_query(mask_shape))
    assert rules(module).get("sdpa_orient_1") == 1


def test_keys_contracted_with_queries_by_an_einsum():
    """The Einsum's output subscripts are reordered (nhkq -> nhqk)."""
    module = fused(key_query(["N", 1, "S", 1], einsum=True))
    assert rules(module).get("sdpa_orient_1") == 1


def test_a_transpose_there_and_back_around_the_softmax():
    """The region is the contraction's own order: the transposes go, the mask moves."""
    module = fused(transposed_around_the_softmax())
    assert rules(module).get("sdpa_orient_1") == 1
    assert "attn_mask" in sdpa_calls(module)[0].kwargs


def test_keras_multi_head_attention_over_two_axes():
    """Keras 3 MultiHeadAttention(attention_axes=(1, 2)): its Softmax over the two key axes
    is exp(x - logsumexp(x, (-2, -1))) (softmax.py), the scores K @ Q^T split and permuted
    (this rule): one SDPA over the 6 x 5 flattened keys, within 1e-5 of TensorFlow."""
    keras = pytest.importorskip("keras")
    tf = fxsurgeon._compat.import_tensorflow()
    x = keras.Input((6, 5, 16), name="x")
    y = keras.layers.MultiHeadAttention(2, 8, attention_axes=(1, 2))(x, x)
    model = keras.Model(x, y)
    randomize_variables(model, 0)
    module = fxsurgeon.optimize(from_onnx(export_onnx(model), tf_model=model))
    assert len(sdpa_calls(module)) == 1 and softmax_count(module) == 0, module.code
    inputs = {"x": rng.standard_normal((3, 6, 5, 16)).astype(np.float32)}
    assert _parity(module, inputs, [np.asarray(model(tf.constant(inputs["x"])))]) < 1e-5


# --------------------------------------------------------------------------- must not match


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ({"axis": 0}, "the softmax over the queries i"),
        ({"axis": 1}, "the softmax over the batch"),
        ({"batch": (4, 2, 0, 1, 3)}, "the probabilities regroup [H, N]: not v's [N, H] order"),
        ({"leak": True}, "the permuted scores are an output too"),
    ],
)
def test_xlnet_like_near_misses_are_refused(case, why):
    model = xlnet_like(**case)
    module = optimized(model)
    assert not sdpa_calls(module), why
    assert "sdpa_orient_1" not in rules(module), why
    assert_matches_ort(module, model)


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ({"axis": 3}, "the softmax over the queries"),
        (
            {"leak": True},
            "the scaled scores are read elsewhere: the region starts after them, "
            "and they are no contraction that could be written transposed",
        ),
    ],
)
def test_keys_against_queries_near_misses_are_refused(case, why):
    model = key_query(**case)
    module = optimized(model)
    assert not sdpa_calls(module) and "sdpa_orient_1" not in rules(module), why
    assert_matches_ort(module, model)


def test_a_rewrite_the_attention_rules_refuse_is_made_once():
    """A scale read at run time: the region is put in order (exact), SDPA is refused, and
    the rule does not fire again on what it wrote (no ConvergenceError)."""
    model = xlnet_like(runtime=True)
    module = optimized(model)
    assert not sdpa_calls(module)
    assert rules(module).get("sdpa_orient_1") == 1
    assert softmax_count(module) == 1
    assert_matches_ort(module, model)


def keras_masked_key_query(zero_mask: str = "same", fill: float = -1e9):
    """Keras 3 MultiHeadAttention's own einsum path (what a subclass overriding
    _compute_attention runs: keras.io's Locality Self-Attention): K @ Q^T [N, H, Lk, Lq]
    transposed to [N, H, Lq, Lk], ``Where(mask, s, fill)``, Softmax, then the masked
    softmax's zeroing ``Where(mask, p, 0)``, @ v. `zero_mask`: "same" (the fill's mask),
    "other" (another mask: the zeroing hides what the fill did not)."""
    g = Graph()
    q, k, v = (heads(g, n) for n in ("q", "k", "v"))
    kq = g.op("MatMul", [k, g.op("Transpose", [q], "qT", perm=[0, 1, 3, 2])], "kq")
    scores = g.op("Transpose", [kq], "qk", perm=[0, 1, 3, 2])
    mask = g.input("mask", ["N", 1, "S", "S"], np.bool_)
    filled = g.op("Where", [mask, scores, g.const("fill", fill)], "filled")
    p = g.op("Softmax", [filled], "probs", axis=-1)
    other = mask if zero_mask == "same" else g.input("other", ["N", 1, "S", "S"], np.bool_)
    zeroed = g.op("Where", [other, p, g.const("zero", 0.0)], "zeroed")
    return g.model(g.op("MatMul", [zeroed, v], "o"))


def test_keras_masked_softmax_after_keys_contracted_with_queries():
    """The zeroing Where between the softmax and v is kept after the rewrite (sdpa_4 reads
    it): one SDPA, no softmax, onnxruntime's outputs (rows with no visible key too)."""
    module = fused(keras_masked_key_query())
    assert rules(module).get("sdpa_orient_1") == 1


def test_a_zeroing_where_of_another_mask_is_kept_and_not_fused():
    """Zeroing positions the fill did not hide: the region is put in order, SDPA refused,
    the zeroing stays where it was and the outputs stay onnxruntime's."""
    model = keras_masked_key_query(zero_mask="other")
    module = optimized(model)
    assert not sdpa_calls(module)
    assert softmax_count(module) == 1
    assert_matches_ort(module, model)


def single_query(term: bool = False):
    """A class token's attention pooling as Keras 3 MultiHeadAttention on a query of length 1
    is exported: K @ Q^T [N, H, S, 1] scaled, Softmax over the keys (axis 2), transposed to
    [N, H, 1, S], @ v. `term`: a key mask [N, 1, S, 1] added before the softmax."""
    g = Graph()
    q = heads(g, "q", length=1, x="cls")
    k, v = (heads(g, n) for n in ("k", "v"))
    kq = g.op("MatMul", [k, g.op("Transpose", [q], "qT", perm=[0, 1, 3, 2])], "kq")
    scores = g.op("Mul", [kq, g.const("scale", SCALE)], "scaled")
    if term:
        scores = g.op("Add", [scores, g.input("mask", ["N", 1, "S", 1])], "masked")
    p = g.op("Softmax", [scores], "probs", axis=2)
    pt = g.op("Transpose", [p], "probs_qk", perm=[0, 1, 3, 2])
    return g.model(g.op("MatMul", [pt, v], "o"))


def test_a_single_query_contracted_as_keys_by_queries():
    """Lq = 1: B's query axis is of size 1; K @ Q^T is written Q @ K^T, the softmax over -1."""
    module = fused(single_query())
    assert rules(module).get("sdpa_orient_1") == 1


def test_a_single_query_with_a_tensor_term_is_refused():
    """A term that is a tensor would have to move to the new layout: declined, as before."""
    model = single_query(term=True)
    module = optimized(model)
    assert not sdpa_calls(module) and "sdpa_orient_1" not in rules(module)
    assert_matches_ort(module, model)
