"""Permutes sunk below elementwise ops, so that an activation reads as one chain.

tf2onnx runs a Keras Conv1D/Conv2D channels-first and its transpose optimiser pushes the
Transpose back to channels-last *into* what follows: Whisper's encoder writes
``gelu(conv(x))`` as ``permute(0.5 * c) * (1 - erf(permute(-c * 0.7071)))``, one permute
per branch, and no GELU rule sees one tensor flowing through one chain.

An elementwise op commutes with a permutation of its operands' dims:
``f(permute(a, p), permute(b, p), s) == permute(f(a, b, s), p)`` when every tensor
operand is permuted by the same ``p`` (same rank, so broadcasting pairs the same dims
before and after) and the rest are Python numbers. `sink_permutes` rewrites each such
op, in graph order, so that the permute moves below it and can move on below the next:
the chain above computes the same values in the original layout, and one permute is
left at its end. Exact: the same elements meet the same operations.

A sink never adds a permute: at least one permuted operand must be read by this op
alone (its permute goes away as the new one comes); a permuted operand read elsewhere
too keeps its permute for the other readers. So tf2onnx's LayerNormalization in a
transposed layout (keras.io's MLP-Mixer: ``permute(x) * permute(s) + (beta - m' *
permute(s))``, the moments taken on ``x``, ``m'`` the mean with its unit dim moved by
a reshape) sinks to ``permute(x * s + (beta' - m * s))``, one chain the layer-norm
rules read. Two more forms count as permuted operands:

* a reshape that only moves unit dims (``[B, 1, T] -> [B, T, 1]``: the non-unit dims
  keep their order, at most one of them dynamic) is the permute that moves them; a
  chain of such reshapes and permutes that comes back to its source's layout is that
  source (`fold_unit_round_trips`);
* a constant (``get_attr``) with at most one dim above 1, which broadcasting aligns to
  the right (a LayerNorm beta ``[C]``), goes in reshaped to the inner layout
  (``[C, 1]``).

It runs before the rule phases and again before the tidy phase (`phases.apply_rules`):
rules write permutes of their own (Keras 3's BatchNormalization, arithmetic in
channels-last, becomes ``permute(batch_norm(x))``), and the ReLU after it then sinks
too, leaving ``permute(permute(...))`` pairs that the tidy rules cancel
(keras_resnet50v2: 99 permutes -> 12, bitwise the same outputs).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

#: elementwise in every tensor operand, in the canonical form (fuse/canon.py)
ELEMENTWISE = frozenset(
    {
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.neg,
        operator.pow,
        torch.neg,
        torch.erf,
        torch.erfc,
        torch.exp,
        torch.log,
        torch.tanh,
        torch.sigmoid,
        torch.sqrt,
        torch.rsqrt,
        torch.reciprocal,
        torch.abs,
        torch.relu,
        torch.sin,
        torch.cos,
        torch.pow,
        torch.maximum,
        torch.minimum,
        F.gelu,
        F.silu,
        F.relu,
        F.softplus,
        F.hardswish,
        F.hardsigmoid,
    }
)


def _permutation(node: fx.Node) -> tuple[int, ...] | None:
    """The permutation `node` applies to its input: a permute, or a reshape that only moves
    unit dims; None for anything else."""
    if node.op != "call_function" or len(node.args) != 2:
        return None
    if node.target is torch.permute:
        dims = node.args[1]
        return tuple(dims) if isinstance(dims, (tuple, list)) else None
    if node.target is torch.reshape and isinstance(node.args[0], fx.Node):
        return _unit_move(node.args[0].meta.get("fxs_shape"), node.meta.get("fxs_shape"))
    return None


def _unit_move(before, after) -> tuple[int, ...] | None:
    """The permutation p with ``permute(t, p).shape == after`` for ``t.shape == before``
    when a reshape from `before` to `after` only moves dims of size 1 (then it is that
    permute, whatever the dynamic sizes are); None otherwise. None in a shape is dynamic."""
    if not isinstance(before, tuple) or not isinstance(after, tuple) or len(before) != len(after):
        return None
    moved = [i for i, d in enumerate(before) if d != 1]
    if [before[i] for i in moved] != [d for d in after if d != 1] or before == after:
        return None
    if sum(before[i] is None for i in moved) > 1:
        return None  # two dynamic dims could be swapped: not a permute
    units = iter(i for i, d in enumerate(before) if d == 1)
    rest = iter(moved)
    return tuple(next(units) if d == 1 else next(rest) for d in after)


def _source(node: fx.Node) -> tuple[fx.Node, tuple[int, ...]] | None:
    p = _permutation(node)
    if p is None or not isinstance(node.args[0], fx.Node):
        return None
    return node.args[0], p


def fold_unit_round_trips(gm: fx.GraphModule) -> int:
    """Replace each unit-moving reshape whose chain of such reshapes and permutes (back to
    its source) composes to the identity with that source; returns how many. (Chains of
    permutes alone are the ``permute_permute`` rule's.)"""
    graph = gm.graph
    folded = 0
    for node in list(graph.nodes):
        step = _source(node)
        if step is None or not isinstance(node.meta.get("fxs_shape"), tuple):
            continue
        current, perm = step
        reshaped = node.target is torch.reshape
        while True:
            identity = perm == tuple(range(len(perm)))
            if identity and reshaped and current.meta.get("fxs_shape") == node.meta["fxs_shape"]:
                node.replace_all_uses_with(current)
                graph.erase_node(node)
                folded += 1
                break
            inner = _source(current) if isinstance(current, fx.Node) else None
            if inner is None or len(inner[1]) != len(perm):
                break
            reshaped = reshaped or current.target is torch.reshape
            current, perm = inner[0], tuple(inner[1][i] for i in perm)
    if folded:
        for node in reversed(list(graph.nodes)):  # the chains left unread
            if _source(node) is not None and not node.users:
                graph.erase_node(node)
        gm.recompile()
    return folded


def _constant_operand(node: fx.Node, rank: int) -> bool:
    """A get_attr whose shape has at most one dim above 1 and no more than `rank` dims."""
    shape = node.meta.get("fxs_shape")
    return (
        node.op == "get_attr"
        and isinstance(shape, tuple)
        and len(shape) <= rank
        and all(isinstance(d, int) for d in shape)
        and sum(d != 1 for d in shape) <= 1
    )


def _inner_constant(graph: fx.Graph, const: fx.Node, p: tuple[int, ...]) -> fx.Node:
    """`const` as read in the layout before ``permute(., p)``: its right-aligned shape
    permuted back (one dim above 1 at most, so a reshape keeps its elements in order)."""
    shape = const.meta["fxs_shape"]
    padded = (1,) * (len(p) - len(shape)) + tuple(shape)
    inner_shape = tuple(padded[p.index(i)] for i in range(len(p)))
    node = graph.call_function(torch.reshape, (const, inner_shape))
    node.meta["fxs_shape"] = inner_shape
    if "fxs_dtype" in const.meta:
        node.meta["fxs_dtype"] = const.meta["fxs_dtype"]
    return node


def sink_permutes(gm: fx.GraphModule) -> int:
    """Move each permute of `gm` below the elementwise ops it feeds, where that adds no
    permute (module docstring); returns how many ops now run before their permute."""
    fold_unit_round_trips(gm)
    moved = 0
    while True:
        sunk = _sink_sweep(gm)
        moved += sunk
        if not sunk:
            break
    if moved:
        gm.graph.lint()
        gm.recompile()
    return moved


def _sink_sweep(gm: fx.GraphModule) -> int:
    graph = gm.graph
    moved = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in ELEMENTWISE or node.kwargs:
            continue
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        numbers = [a for a in node.args if not isinstance(a, fx.Node)]
        if not tensors or not all(isinstance(a, (int, float, bool)) for a in numbers):
            continue
        permuted = [a for a in tensors if _permutation(a) is not None]
        dims = {_permutation(a) for a in permuted}
        p = dims.pop() if len(dims) == 1 else None
        if p is None or not any(set(a.users) == {node} for a in permuted):
            continue
        constants = [a for a in tensors if a not in permuted]
        if any(not _constant_operand(a, len(p)) for a in constants):
            continue
        with graph.inserting_before(node):
            args = tuple(
                a.args[0]
                if isinstance(a, fx.Node) and a in permuted
                else _inner_constant(graph, a, p)
                if isinstance(a, fx.Node)
                else a
                for a in node.args
            )
            inner = graph.call_function(node.target, args)
            outer = graph.call_function(torch.permute, (inner, p))
        inner.meta.update(node.meta)
        outer.meta.update(node.meta)
        shape = node.meta.get("fxs_shape")
        if isinstance(shape, tuple) and len(shape) == len(p):
            inverse = sorted(range(len(p)), key=p.__getitem__)
            inner.meta["fxs_shape"] = tuple(shape[i] for i in inverse)
        else:
            inner.meta.pop("fxs_shape", None)
        node.replace_all_uses_with(outer)
        graph.erase_node(node)
        for permute in set(permuted):
            if not permute.users:
                graph.erase_node(permute)
        moved += 1
    return moved
