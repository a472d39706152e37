"""Straight-through estimators: the ``stop_gradient`` that the ONNX export drops, put back.

    (h - s) + s     -> (h - s.detach()) + s          straight_through_1
    (h + s) - s     -> (h + s) - s.detach()          straight_through_2
    s - (s - h)     -> s - (s.detach() - h)          straight_through_3

    h carries no gradient (an argmax's one-hot, a round/floor/sign of something, a
    comparison cast to float: `carries_gradient`); s is a float tensor that does.

TensorFlow writes a straight-through estimator as ``y_hard - tf.stop_gradient(y_soft) +
y_soft`` (HF GroupViT's hard assignment, Gumbel-softmax with ``hard=True``) or ``x +
tf.stop_gradient(tf.round(x) - x)`` (quantisation-aware rounding): the value is y_hard, the
gradient is y_soft's. tf2onnx writes ``StopGradient`` as an Identity and drops it (ONNX has
no gradients), so the graph says ``(h - s) + s``: in PyTorch the two s terms cancel in the
backward pass and everything that feeds s gets an exactly zero gradient, where TF's tape
gives it s's.

Why the rewrite is right: the value is bitwise the same (``detach`` is the identity on
values and the ops and their order are kept). The gradient: the forms above are every way
to write h + s - s with two binary ops (``+`` matches in either operand order), and the
only reason to write a sum that is h in value is the gradient it passes to s. Which of the
two s occurrences TF stopped is not in the graph, but when h carries no gradient both
readings that pass one (``h - stop(s) + s`` and ``s + stop(h - s)``) give s a gradient of
+1 and h none, so detaching the subtracted occurrence is TF's gradient either way. When h
does carry a gradient the readings differ (VQ-VAE's ``x + stop_gradient(q - x)`` passes x
the gradient and q none; ``q - stop(x) + x`` passes both): declined.

This is the ONNX file alone (door B). fxsurgeon's export keeps each ``tf.stop_gradient`` as
an Identity it lists in the model's metadata, and door A (the TF model in hand) detaches
exactly there (`fxsurgeon/frontdoor/stop_gradients.py`), VQ-VAE's form included: the graph
it optimizes no longer holds these forms.
"""

from __future__ import annotations

import torch
from fxsurgeon.patterns import Match, Rule
from torch import fx

#: ops whose derivative is zero wherever it exists: their result carries no gradient
_ZERO_DERIVATIVE = {
    torch.floor,
    torch.ceil,
    torch.round,
    torch.trunc,
    torch.sign,
    torch.sgn,
    torch.argmax,
    torch.argmin,
    torch.zeros_like,
    torch.ones_like,
    torch.empty_like,
}
_ZERO_DERIVATIVE_METHODS = {"floor", "ceil", "round", "trunc", "sign", "detach", "size", "argmax"}


def carries_gradient(node: fx.Node) -> bool:
    """Whether a gradient can reach `node` from a float graph input or a stored tensor.

    Walks the inputs back: a value that is not floating point (ints, bools: an argmax, a
    comparison, a one-hot before its cast), or made by an op whose derivative is zero
    (`_ZERO_DERIVATIVE`), passes none; a float placeholder or ``get_attr`` (a weight: it
    becomes a parameter later) does, and so does anything unknown (a module call, a value
    without a recorded dtype that the walk cannot rule out).
    """
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        dtype = n.meta.get("fxs_dtype")
        if isinstance(dtype, torch.dtype) and not (dtype.is_floating_point or dtype.is_complex):
            continue
        if n.op == "call_function" and n.target in _ZERO_DERIVATIVE:
            continue
        if n.op == "call_method" and n.target in _ZERO_DERIVATIVE_METHODS:
            continue
        if n.op in ("placeholder", "get_attr", "call_module"):
            return True
        if n.op == "call_function" and n.target is getattr:
            continue  # x.device, x.shape: no tensor value
        stack.extend(n.all_input_nodes)
    return False


def _check(match: Match) -> str | None:
    s, h = match["s"], match["h"]
    if not isinstance(s, fx.Node):
        return "s is a literal"
    dtype = match.dtype(s)
    if dtype is None or not dtype.is_floating_point:
        return f"s is {dtype}, not a float tensor"
    if not carries_gradient(s):
        return "s carries no gradient: nothing to pass through"
    if isinstance(h, fx.Node) and carries_gradient(h):
        return "h carries a gradient too: which term TF stopped is ambiguous"
    return None


# -- (h - s) + s -> (h - s.detach()) + s ----------------------------------------------------------


def sub_add_pattern(h, s: torch.Tensor):
    return (h - s) + s


def sub_add_replacement(h, s):
    return (h - s.detach()) + s


straight_through_1 = Rule(
    "straight_through_1",
    sub_add_pattern,
    sub_add_replacement,
    check=_check,
    phase="prepare",
    note="y_hard - stop_gradient(y_soft) + y_soft (HF GroupViT hard_softmax); "
    "x + stop_gradient(round(x) - x)",
)


# -- (h + s) - s -> (h + s) - s.detach() ----------------------------------------------------------


def add_sub_pattern(h, s: torch.Tensor):
    return (h + s) - s


def add_sub_replacement(h, s):
    return (h + s) - s.detach()


straight_through_2 = Rule(
    "straight_through_2",
    add_sub_pattern,
    add_sub_replacement,
    check=_check,
    phase="prepare",
    note="y_hard + y_soft - stop_gradient(y_soft)",
)


# -- s - (s - h) -> s - (s.detach() - h) ----------------------------------------------------------


def sub_sub_pattern(h, s: torch.Tensor):
    return s - (s - h)


def sub_sub_replacement(h, s):
    return s - (s.detach() - h)


straight_through_3 = Rule(
    "straight_through_3",
    sub_sub_pattern,
    sub_sub_replacement,
    check=_check,
    phase="prepare",
    note="y_soft - stop_gradient(y_soft - y_hard)",
)
