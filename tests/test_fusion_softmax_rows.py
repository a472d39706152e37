"""A softmax over rows regrouped by reshapes (patterns/softmax_rows.py).

keras.io's DDPM attention: scores [N, h, w, H, W] (tf2onnx: a [N, h*w, H*W] MatMul and
reshapes), a softmax over a [N, h, w, H*W] reshape, then back for the product with v.
The reshapes are moved after the softmax, and the attention is SDPA. Refused: a
Transpose among the reshapes, rows merged by the reshape (the softmax over two rows at
once is not attention). Every case is compared with onnxruntime at two batch sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_fusion_attention import Graph, fused, refused, rng, softmax_count

import fxsurgeon

HW, C = (2, 3), 4
L = HW[0] * HW[1]


def pixel_attention(scale="mul", transpose=False, merged=False):
    g = Graph()
    g.input("x", ["N", L, C])
    q, k, v = (
        g.op("MatMul", ["x", g.const(f"w{n}", rng.standard_normal((C, C)) * 0.5)], n) for n in "qkv"
    )
    kt = g.op("Transpose", [k], "kT", perm=[0, 2, 1])
    s = g.op("MatMul", [q, kt], "qk")  # [N, h*w, H*W]
    s = g.op("Reshape", [s, g.const("to5", [-1, *HW, *HW, 1], np.int64)], "s5")
    s = g.op("Squeeze", [s, g.const("ax5", [5], np.int64)], "s_hwHW")
    if scale == "mul":
        s = g.op("Mul", [s, g.const("c", 1 / np.sqrt(C))], "scaled")
    else:
        s = g.op("Div", [s, g.const("c", np.sqrt(C))], "scaled")
    if transpose:  # [N, w, h, H, W]: rows whole, but no longer in the flat order
        s = g.op("Transpose", [s], "swapped", perm=[0, 2, 1, 3, 4])
    rows = [-1, L // 2, 2 * L] if merged else [-1, *HW, L]
    s = g.op("Reshape", [s, g.const("row_shape", rows, np.int64)], "rows")
    p = g.op("Softmax", [s], "probs", axis=-1)
    p = g.op("Reshape", [p, g.const("back_shape", [-1, L, L], np.int64)], "back")
    return g.model(g.op("MatMul", [p, v], "y"), rank=3)


@pytest.mark.parametrize("scale", ["mul", "div"])
def test_pixel_attention_with_rows_regrouped_is_sdpa(scale):
    module = fused(pixel_attention(scale))
    assert fxsurgeon.report_of(module).matches.get("softmax_rows_1") == 1


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ({"transpose": True}, "a Transpose before the softmax: the walk stops there"),
        ({"merged": True}, "two rows in one softmax: not attention"),
    ],
)
def test_regroupings_that_do_not_keep_rows_are_refused(case, why):
    module = refused(pixel_attention(**case))
    assert softmax_count(module) == 1, why
    assert not fxsurgeon.report_of(module).matches.get("softmax_rows_1"), why
