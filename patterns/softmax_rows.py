"""A softmax whose rows were regrouped on the way to it: the regrouping moved after it.

    softmax(reshape(chain(base), S), -1)  ->  reshape(softmax(chain'(base), -1), S)

``chain`` is Reshape/Squeeze/Unsqueeze and constant factors (``* c``, ``/ c``), each read
only by the next; ``chain'`` is its factors alone, in the same order. keras.io's DDPM
attention writes its scores ``einsum("bhwc,bHWc->bhwHW")`` [B, h, w, H, W], reshapes them
to [B, h, w, H*W] for the softmax and back to [B, h, w, H, W] for the einsum with v:
tf2onnx's einsums are [B, h*w, H*W] matmuls, so the softmax sees (w, H*W), not the
contraction's (h*w, H*W), and no attention rule could read the scores. After this rule
the softmax runs on the contraction's [B, h*w, H*W], and the reshapes after it end where
they started (``sdpa_3``).

Why it is exact: Reshape, Squeeze and Unsqueeze keep the elements' flat (row-major)
order, and a constant factor is applied element by element, so it commutes with them
(the same products, in the same order). When ``base`` and the softmax's input have the
same last length L (static), row i of each is flat elements [i L, (i + 1) L): the softmax
over the last axis computes the same rows, and the reshape to S puts them back where
they were. Declined: a permute or anything else in the chain (it stops the walk there),
a last length that differs (rows would be merged or split) or is dynamic, a chain node
read elsewhere, a softmax over another axis, and a chain that keeps the last two lengths
(nothing regrouped: the attention rules read such runs themselves).
"""

from __future__ import annotations

import operator

import torch
from fxsurgeon.patterns import Match, Rule
from fxsurgeon.patterns._attention_frames import LAYOUT_OPS
from fxsurgeon.patterns._attention_graph import scalar, shape
from torch import fx


def rows_pattern(x: torch.Tensor, size: tuple, dim: int):
    return torch.softmax(torch.reshape(x, size), dim)


def _factor(node: fx.Node, module) -> tuple[fx.Node, tuple] | None:
    """(operand, (op, c)) of ``x * c``, ``c * x`` or ``x / c`` with a constant c, else None."""
    a, b = (node.args + (None, None))[:2]
    if node.target is operator.mul:
        for x, c in ((a, b), (b, a)):
            value = scalar(c, module)
            if isinstance(x, fx.Node) and value is not None and shape(x) == shape(node):
                return x, (operator.mul, value)
    if node.target is operator.truediv and isinstance(a, fx.Node) and shape(a) == shape(node):
        value = scalar(b, module)
        if value is not None and value != 0.0:
            return a, (operator.truediv, value)
    return None


def rows_check(match: Match) -> str | None:
    softmax = match.anchor
    regrouped = softmax.args[0]
    out = shape(regrouped)
    if not out or match["dim"] % len(out) != len(out) - 1:
        return "the softmax is not over the last axis"
    node, factors = regrouped.args[0], []
    while isinstance(node, fx.Node) and node.op == "call_function" and len(node.users) == 1:
        if node.target in LAYOUT_OPS:
            node = node.args[0]
            continue
        found = _factor(node, match.module)
        if found is None:
            break
        node, step = found
        factors.insert(0, step)
    base = shape(node)
    if not base or len(base) < 2 or not isinstance(out[-1], int) or base[-1] != out[-1]:
        return f"the rows of the softmax ({out}) are not those of {base}"
    if not isinstance(out[-2], int) or not isinstance(base[-2], int) or base[-2] == out[-2]:
        return "nothing is regrouped before the last axis (or it is dynamic)"
    match["base"] = node
    match["factors"] = tuple(factors)
    return None


def rows_replacement(x, size, dim, base, factors):
    for op, c in factors:
        base = op(base, c)
    return torch.reshape(torch.softmax(base, -1), size)


softmax_rows_1 = Rule(
    "softmax_rows_1",
    rows_pattern,
    rows_replacement,
    check=rows_check,
    note="a softmax over rows regrouped by reshapes (keras.io DDPM's einsum attention): "
    "the reshapes moved after it",
)
