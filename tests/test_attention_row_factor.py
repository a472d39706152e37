"""Attention scores times a tensor that is one number per score matrix (``row_factor``).

Swin v2's cosine attention multiplies ``q . k^T`` by a learned per-head temperature,
``exp(min(logit_scale, log 100))`` of shape (heads, 1, 1), before its bias is added. The
factor is 1 over (Lq, Lk), so ``(q . k) * t = (q * t) . k``: SDPA runs on q times t with
scale 1 (`patterns/_attention_scores.py`), when the factor is computed from stored values
only. Refused: a factor that varies over the keys (no q can carry it), one applied after a
term was added (it would scale the term), and a run-time one (an input:
test_fusion_attention.test_a_run_time_scale_is_refused).
Every case is compared with onnxruntime.
"""

from __future__ import annotations

import numpy as np
from test_fusion_attention import Graph, H, S, finish, fused, heads, refused, sdpa_calls


def _scores(factor_shape: tuple, after_term: bool = False):
    """q . k^T [N, H, S, S] times exp(min(t, log 100)) of `factor_shape`, plus a learned bias
    [H, S, S] (before the factor when `after_term`)."""
    g = Graph()
    q, k, v = (heads(g, n, length=S) for n in ("q", "k", "v"))
    kt = g.op("Transpose", [k], "kT", perm=[0, 1, 3, 2])
    qk = g.op("MatMul", [q, kt], "qk")
    rng = np.random.default_rng(5)
    bias = g.const("bias_table", rng.standard_normal((H, S, S)))
    if after_term:
        qk = g.op("Add", [qk, bias], "biased")
    logit_scale = g.const("logit_scale", rng.standard_normal(factor_shape) * 0.5)
    clipped = g.op("Min", [logit_scale, g.const("cap", np.log(100.0))], "clipped")
    temperature = g.op("Exp", [clipped], "temperature")
    scores = g.op("Mul", [qk, temperature], "scaled")
    if not after_term:
        scores = g.op("Add", [scores, bias], "scores")
    return finish(g, scores, v)


def test_a_per_head_temperature_multiplies_q():
    module = fused(_scores((H, 1, 1)))
    (call,) = sdpa_calls(module)
    assert call.kwargs.get("scale") == 1.0 and "attn_mask" in call.kwargs
    q = call.args[0]
    assert q.target.__name__ == "mul", module.code  # q * t, t the temperature
    params = {name for name, _ in module.named_parameters()}
    assert any("logit_scale" in n or n.endswith("weight") for n in params), params


def test_a_factor_over_the_keys_is_refused():
    refused(_scores((H, 1, S)))


def test_a_factor_after_a_term_is_refused():
    refused(_scores((H, 1, 1), after_term=True))
