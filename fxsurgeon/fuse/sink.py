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
left at its end. Exact: the same elements meet the same operations. A permute with
other users stays where it is (sinking it would add one).
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
    if node.op != "call_function" or node.target is not torch.permute or len(node.args) != 2:
        return None
    dims = node.args[1]
    return tuple(dims) if isinstance(dims, (tuple, list)) else None


def sink_permutes(gm: fx.GraphModule) -> int:
    """Move each permute of `gm` below the elementwise ops that only it feeds (module
    docstring); returns how many ops now run before their permute."""
    graph = gm.graph
    moved = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in ELEMENTWISE or node.kwargs:
            continue
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        numbers = [a for a in node.args if not isinstance(a, fx.Node)]
        if not tensors or not all(isinstance(a, (int, float, bool)) for a in numbers):
            continue
        dims = {_permutation(a) for a in tensors}
        p = dims.pop() if len(dims) == 1 else None
        if p is None or any(set(a.users) != {node} for a in tensors):
            continue
        with graph.inserting_before(node):
            args = tuple(a.args[0] if isinstance(a, fx.Node) else a for a in node.args)
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
        for permute in set(tensors):
            if not permute.users:
                graph.erase_node(permute)
        moved += 1
    if moved:
        graph.lint()
        gm.recompile()
    return moved
