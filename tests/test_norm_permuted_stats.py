"""A LayerNorm whose statistics read a permutation of x (``layer_norm_permuted_stats``).

Keras ``LayerNormalization(axis=[1, 2, 3])`` after a Conv2D (keras.io's WGAN-GP critic):
tf2onnx takes the mean and variance of the NCHW conv output y over (C, H, W) while
gamma / beta (H, W, C) and the scaled input read x = Transpose(y, [0, 2, 3, 1]). A keepdim
mean over D of y or of a permutation of y that moves only dims of D is the same tensor
(size 1 on D, every other dim in place), and so is the variance: the statistics are those
of x, the rule writes them so, and the layer norm rules fuse F.layer_norm over x's trailing
(H, W, C). The same when the statistics read the permutation and the rest reads y. A
permutation that moves a dim the statistics keep, or statistics over other dims than the
affine's, is no layer norm of x: left alone. Both doors, compared with onnxruntime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fusion_cases import assert_matches_ort, calls, fused, graph, matches, node, optimized
from torch import nn

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch

C, H, W = 4, 3, 5


def permuted_ln(
    in_shape=("N", C, H, W),
    perm=(0, 2, 3, 1),
    axes=(1, 2, 3),
    var_axes=None,
    affine_shape=(H, W, C),
    stats_on_permute: bool = False,
    permute_first: bool = False,
):
    """Keras 3's LayerNormalization written as tf2onnx does: the statistics over `axes` of
    y (of t = Transpose(y, perm) with `stats_on_permute`), gamma / beta of `affine_shape`
    and the scaled input reading t (y with `stats_on_permute`); plus that input (a residual)."""
    x, s_in = ("y", "t") if stats_on_permute else ("t", "y")
    transpose = node("Transpose", ["y"], "t", perm=list(perm))
    nodes = [
        *([transpose] if permute_first or stats_on_permute else []),
        node("ReduceMean", [s_in], "m", axes=list(axes), keepdims=1),
        node("Sub", [s_in, "m"], "d"),
        node("Mul", ["d", "d"], "sq"),
        node("ReduceMean", ["sq"], "var", axes=list(var_axes or axes), keepdims=1),
        node("Add", ["var", "eps"], "ve"),
        node("Sqrt", ["ve"], "sd"),
        node("Reciprocal", ["sd"], "inv"),
        node("Mul", ["inv", "gamma"], "s"),
        node("Neg", ["m"], "nm"),
        node("Mul", ["nm", "s"], "nms"),
        node("Add", ["nms", "beta"], "shift"),
        *([] if permute_first or stats_on_permute else [transpose]),
        node("Mul", [x, "s"], "xs"),
        node("Add", ["xs", "shift"], "ln"),
        node("Add", ["ln", x], "out"),
    ]
    rng = np.random.default_rng(1)
    consts = {
        "eps": 1e-3,
        "gamma": 1 + 0.1 * rng.standard_normal(affine_shape),
        "beta": 0.1 * rng.standard_normal(affine_shape),
    }
    return graph(nodes, {"y": list(in_shape)}, ["out"], consts)


def door_b(model):
    """optimize(onnx2torch.convert(model)): a lazy module is optimized on an example."""
    out = fxsurgeon.optimize(import_onnx2torch().convert(model))
    if isinstance(out, fxsurgeon.LazyOptimized):
        dims = model.graph.input[0].type.tensor_type.shape.dim
        out = out.materialize(torch.zeros([d.dim_value or 2 for d in dims]))
    return out


MATCHING = [
    dict(),  # the WGAN-GP critic's: statistics of NCHW y, the rest reads its NHWC transpose
    dict(permute_first=True),
    dict(axes=(-3, -2, -1)),
    # the statistics read the NCHW transpose of an NHWC y, the rest reads y
    dict(in_shape=("N", H, W, C), perm=(0, 3, 1, 2), stats_on_permute=True),
    # a permutation within the reduced dims only: (W, C) swapped, statistics over (W, C)
    dict(in_shape=("N", H, C, W), perm=(0, 1, 3, 2), axes=(2, 3), affine_shape=(W, C)),
]


@pytest.mark.parametrize("door", ["A", "B"])
@pytest.mark.parametrize("case", MATCHING)
def test_statistics_of_a_permutation_of_x_are_a_layer_norm_of_x(case, door):
    model = permuted_ln(**case)
    module = optimized(model) if door == "A" else door_b(model)
    assert matches(module).get("layer_norm_permuted_stats") == 1, matches(module)
    (norm,) = fused(module, F.layer_norm, nn.LayerNorm)
    shape = case.get("affine_shape", (H, W, C))
    got = norm.normalized_shape if isinstance(norm, nn.LayerNorm) else norm.args[1]
    assert tuple(got) == shape
    assert sum(p.numel() for p in module.parameters()) == 2 * int(np.prod(shape))
    assert "mean" not in module.code
    assert_matches_ort(module, model)


REFUSED = [
    # the permutation swaps H and W, which the statistics (over C alone) keep: the mean per
    # (h, w) of y is applied at (w, h) of x, no layer norm of x
    (dict(in_shape=("N", H, H, C), perm=(0, 2, 1, 3), axes=(3,), affine_shape=(C,)), 0),
    # the variance over (H, W) while the mean is over (C, H, W): not the statistics of x
    (dict(var_axes=(2, 3), in_shape=("N", H, H, H), affine_shape=(H, H, H)), 0),
    # statistics over (H, W, C) (those of x, so written), gamma / beta one per channel:
    # not F.layer_norm's affine over (H, W, C), which the layer norm rules decline
    (dict(affine_shape=(C,)), 1),
]


@pytest.mark.parametrize("door", ["A", "B"])
@pytest.mark.parametrize(("case", "moved"), REFUSED)
def test_statistics_that_are_not_those_of_x_are_not_fused(case, moved, door):
    model = permuted_ln(**case)
    module = optimized(model) if door == "A" else door_b(model)
    assert calls(module, F.layer_norm, nn.LayerNorm) == 0, module.code
    assert matches(module).get("layer_norm_permuted_stats", 0) == moved, matches(module)
    assert_matches_ort(module, model)
