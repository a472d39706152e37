"""Lowerings of EyeLike, OneHot, ReverseSequence and Size (``frontdoor/converters/tensor_ops.py``).

* Size: a `Sym` scalar, the product of the input's sizes (ints, or
  ``x.size(d)`` nodes for dynamic dims), so that it takes part in the shape
  arithmetic like Shape does;
* EyeLike: a constant when both dims are static, else
  ``(arange(cols) - arange(rows)[:, None] == k).to(dtype)`` over the symbolic sizes;
* OneHot: ``unsqueeze(index, axis) == arange(depth)`` (shaped to broadcast along the
  new axis), after ``where(index < 0, index + depth, index)`` from OneHot-11 on; then
  ``hit.to(dtype)`` for values ``[0, 1]``, else ``where(hit, on, off)`` (Python numbers
  where the default dtype holds them exactly, 0-d constants for float64). Its depth
  must be known when lowering (it is the output's size); a depth computed from data
  is refused;
* ReverseSequence: the spec module's gather, as graph nodes: a ``[T, B]``
  source index ``where(t < len, len - 1 - t, t)`` built from ``arange`` and the
  run-time lengths (no host read: it compiles in one graph), broadcast over the
  trailing dims and gathered along the time axis. The batch size stays the
  lengths' (equal to the input's by the spec). Where every length provably is the
  time axis' size (tf2onnx writes ``tf.reverse`` so: the length is ``Shape(x)[t]``
  expanded over the batch), it reverses whole rows: ``torch.flip`` along time.
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from ..errors import LoweringError
from ..frontdoor import eye_like, one_hot, reverse_sequence
from ..shapes import dtype_of
from .control_flow import _scalar
from .sym_math import _always
from .table import lowering
from .values import Const, Sym, rank_of


def _dims(ctx, x) -> list:
    """The sizes of `x`: ints where known, ``x.size(d)`` nodes where dynamic."""
    if isinstance(x, Const):
        return list(x.value.shape)
    if isinstance(x, Sym):
        return [] if x.scalar else [len(x.items)]
    return [ctx.size(x, d) for d in range(rank_of(x))]


@lowering("OnnxSizeSpec")
def _size(ctx, mod, node, args):
    dims = _dims(ctx, args[0])
    total = 1
    for dim in dims:
        if isinstance(dim, int):
            total *= dim
    for dim in (d for d in dims if not isinstance(d, int)):
        total = dim if isinstance(total, int) and total == 1 else ctx.call(operator.mul, total, dim)
    return Sym([total], scalar=True)


def _dtype(x) -> torch.dtype | None:
    if isinstance(x, Const):
        return x.value.dtype
    if isinstance(x, Sym):
        return x.dtype
    return dtype_of(x)


@lowering("OnnxEyeLikeSpec")
def _eye_like(ctx, mod, node, args):
    (x,) = args
    dims = _dims(ctx, x)
    if len(dims) != 2:
        raise LoweringError(f"EyeLike needs a 2-D input, got rank {len(dims)}")
    dtype = mod.dtype if mod.dtype is not None else _dtype(x)
    if dtype is None:
        raise LoweringError("EyeLike's input dtype is unknown")
    rows, cols = dims
    if isinstance(rows, int) and isinstance(cols, int):
        return Const(eye_like(rows, cols, mod.k, dtype, "cpu"))
    device = ctx.device()
    i = ctx.call(torch.unsqueeze, ctx.call(torch.arange, rows, device=device), 1)
    j = ctx.call(torch.arange, cols, device=device)
    diagonal = ctx.call(operator.eq, ctx.call(operator.sub, j, i), mod.k)
    return ctx.method("to", diagonal, dtype)


@lowering("OnnxOneHotSpec")
def _one_hot(ctx, mod, node, args):
    indices, depth, values = args
    depth = _scalar(ctx, depth)
    if isinstance(depth, float):  # the spec casts a floating-point depth to an integer
        depth = int(depth)
    if depth is None or isinstance(depth, bool):
        raise LoweringError("OneHot's depth is read from tensor data: it is the output's size")
    if not isinstance(values, Const) or values.value.numel() != 2:
        raise LoweringError("OneHot's values must be a constant [off, on] pair")
    if isinstance(indices, Const) and isinstance(depth, int):
        return Const(one_hot(indices.value, depth, values.value, mod.axis, mod.negative))
    index = ctx.method("to", ctx.tensor(indices), torch.int64)
    rank = rank_of(index)
    if not -rank - 1 <= mod.axis <= rank:
        raise LoweringError(f"OneHot axis {mod.axis} is out of range for indices of rank {rank}")
    axis = mod.axis + rank + 1 if mod.axis < 0 else mod.axis
    if mod.negative:
        wrapped = ctx.call(operator.add, index, depth)
        index = ctx.call(torch.where, ctx.call(operator.lt, index, 0), wrapped, index)
    classes = ctx.call(torch.arange, depth, device=ctx.device())
    if rank > axis:
        classes = ctx.call(torch.reshape, classes, (-1, *([1] * (rank - axis))))
    hit = ctx.call(operator.eq, ctx.call(torch.unsqueeze, index, axis), classes)
    off, on = values.value.reshape(-1)
    dtype = values.value.dtype
    if off.item() == 0 and on.item() == 1:
        return ctx.method("to", hit, dtype)
    if dtype == torch.float64:  # a Python number would go through the default float32
        return ctx.call(torch.where, hit, ctx.tensor(Const(on)), ctx.tensor(Const(off)))
    return ctx.method("to", ctx.call(torch.where, hit, on.item(), off.item()), dtype)


@lowering("OnnxReverseSequenceSpec")
def _reverse_sequence(ctx, mod, node, args):
    x, lens = (ctx.tensor(a) for a in args)
    rank, t = rank_of(x), mod.time_axis
    if rank < 2:
        raise LoweringError(f"ReverseSequence needs an input of rank 2 or more, got {rank}")
    if isinstance(args[0], Const) and isinstance(args[1], Const):
        return Const(reverse_sequence(args[0].value, args[1].value, t))
    if _same_size(ctx, _uniform_length(ctx, args[1]), ctx.size(x, t)):
        return ctx.call(torch.flip, x, (t,))
    steps = ctx.call(torch.arange, ctx.size(x, t), device=ctx.device())
    steps = ctx.call(torch.unsqueeze, steps, 1)  # [T, 1]
    lens = ctx.call(torch.unsqueeze, ctx.method("long", lens), 0)  # [1, B]
    back = ctx.call(operator.sub, ctx.call(operator.sub, lens, 1), steps)
    index = ctx.call(torch.where, ctx.call(operator.lt, steps, lens), back, steps)  # [T, B]
    if t == 1:
        index = ctx.call(torch.transpose, index, 0, 1)  # [B, T]
    for _ in range(rank - 2):
        index = ctx.call(torch.unsqueeze, index, -1)
    # -1 keeps the lengths' batch size: the analysis gives it a symbol of its own, equal to
    # the input's by the spec but not by anything it can see (gather only needs it <= x's)
    index = ctx.method("expand", index, *(-1 if d < 2 else ctx.size(x, d) for d in range(rank)))
    return ctx.call(torch.gather, x, t, index)


def _uniform_length(ctx, lens):
    """The one value every element of `lens` holds (an int, or a node of a SymInt), when
    it is a constant, a `Sym` or a one-element value expanded; else None."""
    if isinstance(lens, Const):
        values = lens.value.reshape(-1).unique()
        return int(values[0]) if values.numel() == 1 else None
    if isinstance(lens, Sym):
        items = set(lens.items)
        return lens.items[0] if len(items) == 1 else None
    if isinstance(lens, fx.Node) and lens.op == "call_method" and lens.target == "expand":
        return _scalar(ctx, lens.args[0])
    return None


def _same_size(ctx, a, b) -> bool:
    """Whether sizes `a` and `b` (ints, or nodes of SymInts) are equal for every input."""
    if a is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    values = [v.meta.get("val") if isinstance(v, fx.Node) else v for v in (a, b)]
    if not all(isinstance(v, (int, torch.SymInt)) for v in values):
        return False
    same = values[0] == values[1]
    # sym_math's test: true at sizes 0 and 1 too, which the analysis' hints never take
    return same if isinstance(same, bool) else _always(same)
