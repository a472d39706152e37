"""Lowerings of fxsurgeon's own converters for ops onnx2torch gets wrong or refuses:
CumSum (`OnnxCumSumSpec`), Conv with SAME auto_pad or a computed weight (`OnnxConvSpec`),
AveragePool with uneven pads, SAME auto_pad or ceil_mode (`OnnxAvgPoolSpec`), MaxPool with
SAME auto_pad (`OnnxMaxPoolSpec`) or its Indices read (`OnnxMaxPoolIndices`), ConvTranspose
with uneven pads, SAME auto_pad or output_shape (`OnnxConvTransposeSpec`).

SAME padding (tf2onnx writes ``auto_pad=SAME_UPPER`` where a spatial size is dynamic) is
``total = max(0, (ceil(n / s) - 1) * s + (k - 1) * d + 1 - n)``, the odd element at the
end (SAME_UPPER) or the start: with a stride of 1 it is ``(k - 1) * d`` whatever ``n``;
otherwise it depends on ``n``, and for a dynamic ``n`` it is written as int arithmetic on
``x.size(d)`` (`same_pads_of`), so every size stays symbolic and torch.compile keeps one
graph (the max only where ``(k - 1) * d + 1 < s``, a strided 1x1 kernel)."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ..errors import LoweringError
from ..frontdoor import AVG_POOLS, avg_pool_pads
from ..shapes import shape_of
from .nn_ops import admit_windows, avg_pool3d
from .shape_ops import _arith, _product
from .table import lowering
from .values import Const, const_ints, rank_of

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@lowering("OnnxCumSumSpec")
def _cumsum(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    (axis,) = const_ints(args[1], "CumSum's axis")
    axis %= rank
    if mod.reverse:
        x = ctx.call(torch.flip, x, (axis,))
    if mod.exclusive:  # [0, x0, x0 + x1, ...]: the sum of the elements before each one
        head = (slice(None),) * axis + (slice(0, 1),)
        body = (slice(None),) * axis + (slice(None, -1),)
        zeros = ctx.call(torch.zeros_like, ctx.call(operator.getitem, x, head))
        x = ctx.call(torch.cat, [zeros, ctx.call(operator.getitem, x, body)], axis)
    y = ctx.call(torch.cumsum, x, axis)
    return ctx.call(torch.flip, y, (axis,)) if mod.reverse else y


@lowering("OnnxConvSpec")
def _conv_spec(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    pads = mod.pads
    if pads is None:  # SAME
        weight_shape = shape_of(ctx.tensor(args[1]))
        kernel = mod.kernel or (tuple(weight_shape[2:]) if weight_shape else None)
        if kernel is None or any(k is None for k in kernel):
            raise LoweringError("SAME padding with a computed weight of unknown kernel size")
        pads = same_pads_of(ctx, x, kernel, mod.strides, mod.dilations, mod.upper)
    kernel = _kernel_of(mod, args[1])
    if mod.pads is not None and kernel is not None:  # SAME never runs out of input
        totals = [begin + end for begin, end in pads]
        admit_windows(ctx, x, kernel, mod.strides, mod.dilations, totals)
    if all(isinstance(b, int) and b == e for b, e in pads):  # symmetric: the conv pads itself
        weight = ctx.tensor(args[1])
        bias = ctx.tensor(args[2]) if len(args) > 2 and args[2] is not None else None
        conv = _CONV[len(mod.strides)]
        padding = tuple(begin for begin, _ in pads)
        return ctx.call(conv, x, weight, bias, mod.strides, padding, mod.dilations, mod.groups)
    flat = [p for pair in reversed(pads) for p in pair]
    if any(not isinstance(p, int) or p for p in flat):
        x = ctx.call(F.pad, x, flat)
    weight = ctx.tensor(args[1])
    bias = ctx.tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    conv = _CONV[len(mod.strides)]
    return ctx.call(conv, x, weight, bias, mod.strides, 0, mod.dilations, mod.groups)


def _kernel_of(mod, weight) -> tuple[int, ...] | None:
    """The kernel size: the module's, or the weight's static spatial dims."""
    if mod.kernel:
        return tuple(mod.kernel)
    shape = tuple(weight.value.shape) if isinstance(weight, Const) else shape_of(weight)
    if shape is None or any(k is None for k in shape[2:]):
        return None
    return tuple(shape[2:])


def same_pads_of(ctx, x, kernel, strides, dilations, upper: bool) -> list[tuple]:
    """SAME (begin, end) per spatial dim of `x`: ints where the size is known (or the
    stride is 1), else int arithmetic on the run-time size (module docstring)."""
    rank, spatial = rank_of(x), len(kernel)
    pads = []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilations, strict=True)):
        size = ctx.size(x, rank - spatial + i)
        if isinstance(size, int) or s == 1:
            static = size if isinstance(size, int) else 1  # stride 1: any size stands in
            pads += _same_pads([static], [k], [s], [d], upper)
            continue
        reach = (k - 1) * d + 1
        out = _arith(ctx, operator.floordiv, _arith(ctx, operator.add, size, s - 1), s)
        span = _arith(ctx, operator.add, _arith(ctx, operator.mul, out, s), reach - s)
        total = _arith(ctx, operator.sub, span, size)
        if reach < s:  # a window shorter than the stride: the formula may go negative
            total = ctx.call(torch.sym_max, total, 0)
        small = _arith(ctx, operator.floordiv, total, 2)
        big = _arith(ctx, operator.sub, total, small)
        pads.append((small, big) if upper else (big, small))
    return pads


def _same_pads(sizes, kernel, strides, dilations, upper: bool) -> list[tuple[int, int]]:
    """(begin, end) per spatial dim for SAME auto_pad: output size ceil(in / stride), the
    odd pad at the end (SAME_UPPER) or the start (SAME_LOWER)."""
    pads = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        pads.append((small, total - small) if upper else (total - small, small))
    return pads


@lowering("OnnxAvgPoolSpec")
def _avg_pool_spec(ctx, mod, node, args):
    """``avg_pool(pad0(x)) / avg_pool(counted)`` (`OnnxAvgPoolSpec`): the divisor of each
    window is its number of counted elements; ``counted`` (1 where an element counts) is
    built from ``ones_like(x[:1, :1])``, so every size stays symbolic."""
    x = ctx.tensor(args[0])
    spatial = len(mod.kernel)
    pads = mod.pads
    sizes = (shape_of(x) or (None,) * (spatial + 2))[2:]
    if mod.ceil_mode:
        if any(s is None for s, stride in zip(sizes, mod.strides, strict=True) if stride != 1):
            raise LoweringError(
                "AveragePool's ceil_mode padding with a stride > 1 on a dynamic dim "
                "depends on its size"
            )
        sizes = [s if s is not None else 1 for s in sizes]  # stride 1: any size stands in
    if pads is None:
        pads = same_pads_of(ctx, x, mod.kernel, mod.strides, [1] * spatial, mod.upper)
    extra = avg_pool_pads(sizes, mod.kernel, mod.strides, pads, mod.ceil_mode)

    def pool(t):
        if spatial == 3:  # torch's avg_pool3d has no CPU bfloat16 / half kernel
            return avg_pool3d(ctx, t, mod.kernel, mod.strides)
        return ctx.call(AVG_POOLS[spatial], t, mod.kernel, mod.strides)

    explicit = [p for pair in reversed(pads) for p in pair]  # F.pad: last dim first
    ends = [p for e in reversed(extra) for p in (0, e)]
    padded = ctx.call(F.pad, x, explicit) if _any_pad(explicit) else x
    padded = ctx.call(F.pad, padded, ends) if any(ends) else padded
    summed = pool(padded)
    if (mod.count_include_pad or not _any_pad(explicit)) and not any(extra):
        return summed  # every window counts all its elements
    corner = (slice(None, 1), slice(None, 1))
    counted = ctx.call(torch.ones_like, ctx.call(operator.getitem, x, corner))
    if _any_pad(explicit):
        counted = ctx.call(F.pad, counted, explicit, "constant", float(mod.count_include_pad))
    if any(ends):
        counted = ctx.call(F.pad, counted, ends)
    return ctx.call(operator.truediv, summed, pool(counted))


def _any_pad(flat) -> bool:
    """Whether F.pad's list pads anything: a run-time size (a node) may."""
    return any(not isinstance(p, int) or p for p in flat)


_MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@lowering("OnnxMaxPoolSpec")
def _max_pool_spec(ctx, mod, node, args):
    """SAME padding by -inf (a window's padding never wins), then the unpadded pool."""
    x = ctx.tensor(args[0])
    pads = same_pads_of(ctx, x, mod.kernel, mod.strides, mod.dilations, mod.upper)
    flat = [p for pair in reversed(pads) for p in pair]
    if _any_pad(flat):
        x = ctx.call(F.pad, x, flat, "constant", float("-inf"))
    pool = _MAX_POOLS[len(mod.kernel)]
    return ctx.call(pool, x, mod.kernel, mod.strides, 0, mod.dilations)


@lowering("OnnxMaxPoolIndices")
def _max_pool_indices(ctx, mod, node, args):
    """The max and the flat input position of each (`OnnxMaxPoolIndices`): positions
    ``arange(numel)`` in the input's shape (spatial dims reversed then permuted back for
    ``storage_order=1``), padded like the input, read at torch's in-plane indices."""
    x = ctx.tensor(args[0])
    pads = mod.pads
    if pads is None:
        pads = same_pads_of(ctx, x, mod.kernel, mod.strides, mod.dilations, mod.upper)
    flat = [p for pair in reversed(pads) for p in pair]
    rank = rank_of(x)
    sizes = [ctx.size(x, i) for i in range(rank)]
    positions = ctx.call(torch.arange, _product(ctx, sizes), device=ctx.device())
    if mod.storage_order == 0 or rank < 4:
        positions = ctx.call(torch.reshape, positions, tuple(sizes))
    else:
        flipped = ctx.call(torch.reshape, positions, tuple(sizes[:2] + sizes[:1:-1]))
        positions = ctx.call(torch.permute, flipped, (0, 1, *range(rank - 1, 1, -1)))
    if _any_pad(flat):
        x = ctx.call(F.pad, x, flat, "constant", float("-inf"))
        positions = ctx.call(F.pad, positions, flat, "constant", -1)
    pool = _MAX_POOLS[len(mod.kernel)]
    pooled = ctx.call(pool, x, mod.kernel, mod.strides, 0, mod.dilations, mod.ceil_mode, True)
    values, planar = (ctx.call(operator.getitem, pooled, i) for i in (0, 1))
    read = ctx.call(
        torch.gather, ctx.call(torch.flatten, positions, 2), 2, ctx.call(torch.flatten, planar, 2)
    )
    out_sizes = tuple(ctx.size(values, i) for i in range(rank))
    return [values, ctx.call(torch.reshape, read, out_sizes)]


_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@lowering("OnnxConvTransposeSpec")
def _conv_transpose_spec(ctx, mod, node, args):
    """The full ``F.conv_transposeNd`` (no padding), then a slice removes ``pads``: the
    slice's ends count from the end, so every size stays symbolic."""
    x = ctx.tensor(args[0])
    weight = ctx.tensor(args[1])
    bias = ctx.tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    conv = _CONV_TRANSPOSE[len(mod.strides)]
    if any(b < 0 or e < 0 for b, e in mod.pads):  # a widened output: zeros, then the bias
        full = ctx.call(
            conv, x, weight, None, mod.strides, 0, mod.output_padding, mod.groups, mod.dilations
        )
        out = ctx.call(F.pad, full, [-p for pair in reversed(mod.pads) for p in pair])
        if bias is None:
            return out
        shaped = ctx.call(torch.reshape, bias, (-1, *[1] * len(mod.pads)))
        return ctx.call(operator.add, out, shaped)
    full = ctx.call(
        conv, x, weight, bias, mod.strides, 0, mod.output_padding, mod.groups, mod.dilations
    )
    if not any(b or e for b, e in mod.pads):
        return full
    index = (slice(None), slice(None)) + tuple(
        slice(b or None, -e if e else None) for b, e in mod.pads
    )
    return ctx.call(operator.getitem, full, index)
