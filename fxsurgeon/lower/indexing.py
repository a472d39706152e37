"""Lowerings of ONNX tensor indexing: Gather, Slice, Split."""

from __future__ import annotations

import operator
from typing import Any

import torch

from ..errors import LoweringError
from ..shapes import shape_of
from .data_sizes import shape_items
from .table import lowering
from .values import Const, Sym, as_sym, const_ints, rank_of

# -- shape arithmetic and data movement ------------------------------------------


@lowering("OnnxGather")
def _gather(ctx, mod, node, args):
    data, indices = args
    axis = mod._axis
    sym, idx = as_sym(data), as_sym(indices)
    if isinstance(data, Sym) and idx is not None and idx.is_static and axis == 0:
        picked = [data.items[i] for i in idx.items]
        return Sym(picked, scalar=idx.scalar, dtype=data.dtype)
    if isinstance(data, Const) and isinstance(indices, Const) and not data.is_weight:
        # a weight gathered by constant indices (a relative-position bias table read
        # through its index map) stays a gather: the table is the parameter, the
        # gathered copy is not invertible to it
        return Const(_onnx_gather(data.value, indices.value, axis))
    if sym is not None and isinstance(data, Sym):
        data = ctx.tensor(data)
    x = ctx.tensor(data)
    rank = rank_of(x)
    axis = axis % rank
    if idx is not None and idx.is_static and idx.scalar:
        return ctx.call(torch.select, x, axis, idx.items[0])
    index = ctx.tensor(indices)
    if shape_of(index) == ():
        # A run-time 0-d index (a Loop's step): as a 1-element index, which indexing takes
        # without reading its value on the host (x[t] with a 0-d t is an item() to torch.compile).
        one = ctx.call(torch.reshape, index, (1,))
        picked = ctx.call(operator.getitem, x, (slice(None),) * axis + (one,))
        return ctx.call(torch.squeeze, picked, axis)
    if axis == 0:
        return ctx.call(operator.getitem, x, index)
    return ctx.call(operator.getitem, x, (slice(None),) * axis + (index,))


def _onnx_gather(data: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    axis = axis % data.dim()
    return data[(slice(None),) * axis + (indices.long(),)]


@lowering("OnnxSlice", "OnnxSliceV9")
def _slice(ctx, mod, node, args):
    if type(mod).__name__ == "OnnxSliceV9":
        raise LoweringError("Slice-1..9 (attributes form) is not lowered yet")
    data, starts, ends = args[:3]
    axes = args[3] if len(args) > 3 else None
    steps = args[4] if len(args) > 4 else None
    axes = const_ints(axes, "Slice axes") if axes is not None else None
    steps = const_ints(steps, "Slice steps") if steps is not None else None
    symbolic = _symbolic_bounds(ctx, starts, ends)
    if symbolic is not None and not isinstance(data, Sym):
        return _slice_symbolic(ctx, ctx.tensor(data), *symbolic, axes, steps)
    starts = const_ints(starts, "Slice starts")
    ends = const_ints(ends, "Slice ends")
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    if isinstance(data, Sym) and not data.scalar:
        (start, end, step) = _onnx_slice_bounds(len(data.items), starts[0], ends[0], steps[0])
        return Sym(
            data.items[start:end:step] if step > 0 else _neg_step(data.items, start, end, step),
            dtype=data.dtype,
        )
    if isinstance(data, Const) and not data.is_weight:
        return Const(_slice_tensor(data.value, starts, ends, axes, steps))
    x = ctx.tensor(data)
    shape = shape_of(x)
    index: list = [slice(None)] * len(shape)
    flips, reversed_ = [], []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= len(shape)
        dim = shape[axis]
        if step < 0 and dim is None:
            reversed_.append((axis, _reversed_slice(start, end, step)))
            continue
        if step < 0:
            s, e, st = _onnx_slice_bounds(dim, start, end, step)
            kept = list(range(s, e, st))
            flips.append((axis, kept))
            continue
        index[axis] = _python_slice(dim, start, end, step)
    out = x
    if any(s != slice(None) for s in index):
        while index and index[-1] == slice(None):
            index.pop()
        out = ctx.call(operator.getitem, out, tuple(index))
    for axis, kept in flips:
        out = ctx.call(torch.index_select, out, axis, ctx.tensor(Const(torch.tensor(kept))))
    for axis, taken in reversed_:
        out = ctx.call(torch.flip, out, (axis,))
        if taken != slice(None):
            out = ctx.call(operator.getitem, out, (slice(None),) * axis + (taken,))
    return out


def _reversed_slice(start: int, end: int, step: int) -> slice:
    """ONNX's Slice with step < 0 on a dim of run-time length n, as a slice of the flipped
    dim (index i there is n - 1 - i): ONNX clamps start to [0, n - 1] and end to [-1, n - 1]
    (each + n first when negative). In flipped indices the start is n - 1 - start, which
    is Python's index -(start + 1) for start >= 0 (Python clamps it at 0 as ONNX clamps
    start at n - 1), and 0 for start = -1; the end is -(end + 1) for end >= 0 and -1 - end
    for end < 0 (Python clamps it at n as ONNX clamps end at -1). A start below -1 would
    need min(-1 - start, n - 1), which a slice cannot say: refused."""
    if start < -1:
        raise LoweringError(
            f"Slice with step {step} from start {start} on a dynamic dim (clamping it needs "
            "the dim's length)"
        )
    begin = None if start == -1 else -(start + 1)
    stop = -(end + 1) if end >= 0 else -1 - end
    return slice(begin, None if stop >= 2**31 - 1 else stop, None if step == -1 else -step)


def _symbolic_bounds(ctx, starts, ends) -> tuple[list, list] | None:
    """Starts and ends as ints and int-valued nodes (sizes computed at run time, or ints
    read from the data: `shape_items`), when at least one is not static; None when both
    are static (or not shape values at all)."""
    s, e = shape_items(ctx, starts), shape_items(ctx, ends)
    if s is None or e is None or (s.is_static and e.is_static):
        return None
    return list(s.items), list(e.items)


def _slice_symbolic(ctx, x, starts, ends, axes, steps):
    """Slice with run-time starts/ends: for step > 0 Python's slice clamps and wraps negative
    indices exactly as ONNX does, so the run-time values go straight into the index."""
    rank = rank_of(x)
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index: list = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step <= 0:
            raise LoweringError("Slice with run-time bounds and a negative step")
        index[axis % rank] = slice(start, end, None if step == 1 else step)
    return ctx.call(operator.getitem, x, tuple(index))


def _onnx_slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """ONNX Slice semantics for one axis of known length (start, end clamped)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
    return start, end, step


def _neg_step(items: list, start: int, end: int, step: int) -> list:
    return [items[i] for i in range(start, end, step)]


def _python_slice(dim: int | None, start: int, end: int, step: int) -> slice:
    """A Python slice with the meaning of ONNX's start/end for step > 0.

    For step > 0 Python's slice clamps exactly like ONNX, negative indices
    included, so dynamic dims need no size at all.
    """
    s = None if start == 0 or start <= -(2**31) else start
    e = None if end >= 2**31 - 1 else end  # INT32/INT64 max: "to the end"
    if dim is not None:
        s0, e0, _ = _onnx_slice_bounds(dim, start, end, step)
        s = None if s0 == 0 else s0
        e = None if e0 == dim else e0
    return slice(s, e, None if step == 1 else step)


def _slice_tensor(value, starts, ends, axes, steps):
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= value.dim()
        s, e, st = _onnx_slice_bounds(value.shape[axis], start, end, step)
        value = value.index_select(axis, torch.tensor(list(range(s, e, st)), dtype=torch.long))
    return value


@lowering("OnnxSplit", "OnnxSplit13")
def _split(ctx, mod, node, args):
    """The parts, one value per ONNX output; a Split into one part (TF's ``tf.unstack`` of
    a length-1 shape, in ``gather_nd(batch_dims=1)``) has one output, which its readers
    read directly (no getitem): that part alone (`one_or_all`)."""
    if isinstance(args[0], Const) and not args[0].is_weight:  # folds, as any constant
        value = args[0].value
        axis = mod.axis % value.dim()
        sizes = _split_sizes(mod, args, value.shape[axis])
        return one_or_all([Const(p.clone()) for p in torch.split(value, sizes, axis)])
    if isinstance(args[0], Sym) and not args[0].scalar:  # shape values stay shape values
        return one_or_all(_split_sym(mod, args))
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    axis = mod.axis % len(shape)
    sizes = _split_sizes(mod, args, shape[axis])
    parts = ctx.call(torch.split, x, sizes, axis)
    return one_or_all([ctx.call(operator.getitem, parts, i) for i in range(len(sizes))])


def one_or_all(parts: list) -> Any:
    """A multi-output node's values as a list (its readers getitem them); the only value of
    a node with one output (its readers take the node itself)."""
    return parts[0] if len(parts) == 1 else parts


def _split_sizes(mod, args, length: int | None) -> list[int]:
    if len(args) > 1 and args[1] is not None:
        return const_ints(args[1], "Split sizes")
    if getattr(mod, "split", None):
        return list(mod.split)
    if length is None:
        raise LoweringError("even Split of a dynamic dim")
    return [length // mod.num_splits] * mod.num_splits


def _split_sym(mod, args) -> list[Sym]:
    """Split of a 1-D shape value (its only axis): consecutive runs of its items."""
    sym = args[0]
    if mod.axis not in (0, -1):
        raise LoweringError(f"Split of a 1-D shape value along axis {mod.axis}")
    sizes = _split_sizes(mod, args, len(sym.items))
    if sum(sizes) != len(sym.items) or min(sizes, default=0) < 0:
        raise LoweringError(f"Split sizes {sizes} do not add up to {len(sym.items)}")
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [Sym(sym.items[a : a + n], dtype=sym.dtype) for a, n in zip(starts, sizes, strict=True)]
