"""Padding: ONNX Pad's amounts in F.pad's order, and a Concat with constant fills as a Pad.

``Concat([fill_a, x, fill_b], axis)``, where every ``fill`` holds one value ``v`` in every
element and matches ``x`` in every dim but ``axis``, is ``Pad(x)`` by the fills' extents
along ``axis`` with the constant ``v``: the same elements at the same positions
(`pad_of_fills`). TF code pads this way by hand (``tf.concat([tf.zeros(...), x,
tf.zeros(...)], 1)``: HF's Speech2Text convolution subsampler), and tf2onnx keeps the
fills as ``Expand``s of a constant. One ``F.pad`` replaces the fills' expands, their
dtype casts and the concatenation, and a zero pad that feeds a convolution can go into
its own padding (``patterns/conv.py``). Declined: several non-constant operands, fills
of different values (``0.0`` and ``-0.0`` are different), a fill whose other dims are
not provably ``x``'s, bool tensors (``F.pad`` has no bool fill).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from ..errors import LoweringError
from ..shapes import dtype_of, shape_of
from .values import Const, rank_of


def emit_pad(ctx, x: fx.Node, pads: list[int], mode: str, value: float | None) -> fx.Node:
    """ONNX pads [b0, b1, ..., e0, e1, ...] -> F.pad's (last dim first) pairs."""
    rank = rank_of(x)
    begins, ends = pads[: len(pads) // 2], pads[len(pads) // 2 :]
    torch_pads: list[int] = []
    for axis in reversed(range(rank)):
        torch_pads += [begins[axis], ends[axis]]
    while torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    if not torch_pads:
        return x
    mode = {"edge": "replicate", "wrap": "circular"}.get(mode, mode)
    if mode != "constant":
        torch_pads = non_constant_pads(torch_pads, rank, mode)
    return ctx.call(F.pad, x, tuple(torch_pads), mode, value if mode == "constant" else None)


def non_constant_pads(torch_pads: list[int], rank: int, mode: str) -> list[int]:
    """F.pad's reflect/replicate take the last 1, 2 or 3 dims of a 2-3, 3-4 or 4-5-D
    tensor (rank - 1 or rank - 2 dims) and nothing else: pad the list with zero pairs
    up to such a length (zero padding of a dim changes nothing)."""
    padded = len(torch_pads) // 2
    dims = max(padded, rank - 2, 1)
    if dims > 3 or dims not in (rank - 1, rank - 2):
        raise LoweringError(
            f"{mode} padding of {padded} trailing dim(s) of a {rank}-D tensor: F.pad pads "
            "only the last 1-3 dims, never the first"
        )
    return torch_pads + [0, 0] * (dims - padded)


def uniform_value(ctx, value) -> Any:
    """The one value of a constant (a `Const`, a get_attr, or a reshape or ``expand`` of
    one) as a Python number, else None."""
    tensor: Any
    if isinstance(value, Const):
        tensor = value.value
    else:
        node = value
        if (
            isinstance(node, fx.Node)
            and node.op == "call_function"
            and node.target is torch.reshape
        ):
            node = node.args[0]
        if isinstance(node, fx.Node) and node.op == "call_method" and node.target == "expand":
            node = node.args[0]
        if not isinstance(node, fx.Node) or node.op != "get_attr":
            return None
        tensor = ctx.root
        for part in str(node.target).split("."):
            tensor = getattr(tensor, part, None)
    if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
        return None
    flat = tensor.reshape(-1)
    if not bool((flat == flat[0]).all()) or bool(
        torch.signbit(flat).any() != torch.signbit(flat[0])
    ):
        return None
    return flat[0].item()


def pad_of_fills(ctx, args: list, axis: int) -> fx.Node | None:
    """``Concat(args, axis)`` as one ``F.pad`` of its only non-constant operand, when every
    other operand is a fill of one value that matches it in every dim but ``axis``
    (the module docstring); None otherwise."""
    values = [uniform_value(ctx, a) for a in args]
    inner = [i for i, v in enumerate(values) if v is None]
    if len(args) < 2 or len(inner) != 1:
        return None
    k = inner[0]
    x = ctx.tensor(args[k])
    fills = [v for v in values if v is not None]
    if not _one_value(fills) or dtype_of(x) in (None, torch.bool):
        return None
    x_dims = _dims(x)
    rank = len(x_dims) if x_dims is not None else 0
    if x_dims is None or not -rank <= axis < rank:
        return None
    axis %= rank
    extents = [0, 0]
    for i, arg in enumerate(args):
        if i == k:
            continue
        dims = _dims(arg)
        dtype = arg.value.dtype if isinstance(arg, Const) else dtype_of(arg)
        if dims is None or len(dims) != rank or dtype != dtype_of(x):
            return None
        if not isinstance(dims[axis], int) or any(
            not _same_dim(dims[d], x_dims[d]) for d in range(rank) if d != axis
        ):
            return None
        extents[i > k] += dims[axis]
    pads = [0] * (2 * rank)
    pads[axis], pads[rank + axis] = extents
    return emit_pad(ctx, x, pads, "constant", fills[0])


def _one_value(fills: list) -> bool:
    """All fills hold the same number, NaN and the sign of zero included."""
    first = fills[0]
    if isinstance(first, float) and math.isnan(first):
        return False
    key = (first, math.copysign(1.0, first)) if isinstance(first, float) else (first, 1.0)
    return all((v, math.copysign(1.0, v) if isinstance(v, float) else 1.0) == key for v in fills)


def _dims(value) -> tuple | None:
    """A value's dims: ints, or the analysis' SymInts for dynamic ones; None if unknown."""
    if isinstance(value, Const):
        return tuple(value.value.shape)
    if not isinstance(value, fx.Node):
        return None
    fake = value.meta.get("val")
    if isinstance(fake, torch.Tensor):
        return tuple(fake.shape)
    shape = shape_of(value)
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(shape)


def _same_dim(a, b) -> bool:
    """Provably the same size: equal ints, or one symbol of the analysis."""
    if isinstance(a, torch.SymInt) or isinstance(b, torch.SymInt):
        if not (isinstance(a, torch.SymInt) and isinstance(b, torch.SymInt)):
            return False
        return a.node.expr == b.node.expr
    return isinstance(a, int) and a == b
