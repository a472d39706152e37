"""Lowerings of ArgMax/ArgMin, GatherElements, DepthToSpace, SpaceToDepth, IsInf and PReLU by
the ONNX spec.

* ArgMax/ArgMin (``OnnxArgExtremum``, ``OnnxArgExtremumOld``): ``torch.argmax``/``argmin``
  return the first index of the extremum, which is ONNX's default; for
  ``select_last_index`` the axis is flipped, and the first index ``j`` there is
  the last one, ``n - 1 - j``, of the input (exact: no tie is broken by values);
* GatherElements: ``torch.gather`` with negative indices counted from the end
  (``i + n`` where ``i < 0``; onnx2torch passes them through, which torch refuses);
* DepthToSpace (`OnnxDepthToSpaceSpec`): CRD is ``pixel_shuffle``; DCR splits the
  depth as (bs, bs, C'), moves the blocks beside H and W, and flattens them in;
* SpaceToDepth (`OnnxSpaceToDepthSpec`): the inverse of DCR: H and W split as (H', bs)
  and (W', bs) (``-1`` for H' and W', so dynamic sides stay symbolic), the blocks moved
  before C and flattened into the depth as (bs, bs, C); a known side that is not a
  multiple of bs is refused, the hints of dynamic ones are made multiples
  (`SymbolicShapes.admit_multiple`: the model is only defined there);
* IsInf (`OnnxIsInfSpec`): ``isinf``/``isposinf``/``isneginf`` by
  ``detect_positive``/``detect_negative`` (neither: all False);
* NonZero (`OnnxNonZeroSpec`): ``nonzero(x)`` permuted to [rank, N];
* PReLU: the slope is broadcast to X from the trailing dims (ONNX's unidirectional
  broadcast). A slope that is one value, or one per channel (dim 1), is
  ``F.prelu``'s weight; any other is ``where(x < 0, x * slope, x)``. onnx2torch
  takes a slope of shape [C] as per-channel whenever C equals X's dim 1, where
  the spec broadcasts it over the last dim.

Sizes come from the shape analysis (``ctx.size``): dynamic dims stay symbolic.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from ..errors import LoweringError
from ..shapes import shape_of
from .shape_ops import _arith
from .table import lowering
from .values import Const, rank_of


def _axis(axis: int, rank: int, op: str) -> int:
    if not -rank <= axis < rank:
        raise LoweringError(f"{op} axis {axis} out of range for a {rank}-D input")
    return axis % rank


@lowering("OnnxArgExtremum", "OnnxArgExtremumOld")
def _arg_extremum(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    if rank == 0:
        raise LoweringError("ArgMax/ArgMin of a 0-d tensor")
    fn = mod.extremum_function  # torch.argmax or torch.argmin
    dim = _axis(mod.axis, rank, fn.__name__)
    if not getattr(mod, "select_last_index", False):
        return ctx.call(fn, x, dim, keepdim=mod.keepdims)
    flipped = ctx.call(torch.flip, x, (dim,))
    index = ctx.call(fn, flipped, dim, keepdim=mod.keepdims)
    last = _arith(ctx, operator.sub, ctx.size(x, dim), 1)
    return ctx.call(operator.sub, last, index)


@lowering("OnnxGatherElements")
def _gather_elements(ctx, mod, node, args):
    data = ctx.tensor(args[0])
    dim = _axis(mod._axis, rank_of(data), "GatherElements")
    size = ctx.size(data, dim)
    if isinstance(args[1], Const) and isinstance(size, int):  # indices known: normalised now
        index = args[1].value.long()
        index = ctx.tensor(Const(torch.where(index < 0, index + size, index)))
        return ctx.call(torch.gather, data, dim, index)
    index = ctx.method("long", ctx.tensor(args[1]))
    negative = ctx.call(operator.lt, index, 0)
    index = ctx.call(torch.where, negative, ctx.call(operator.add, index, size), index)
    return ctx.call(torch.gather, data, dim, index)


@lowering("OnnxDepthToSpaceSpec")
def _depth_to_space(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    if shape is None or len(shape) != 4:
        raise LoweringError("DepthToSpace needs a 4-D input")
    b = mod.blocksize
    if shape[1] is not None and shape[1] % (b * b):
        raise LoweringError(f"DepthToSpace: {shape[1]} channels for blocksize {b}")
    if mod.mode == "CRD":
        return ctx.call(F.pixel_shuffle, x, b)
    y = ctx.call(torch.unflatten, x, 1, (b, b, -1))  # [N, b, b, C', H, W]
    y = ctx.call(torch.permute, y, (0, 3, 4, 1, 5, 2))  # [N, C', H, b, W, b]
    return ctx.call(torch.flatten, ctx.call(torch.flatten, y, 4, 5), 2, 3)


@lowering("OnnxNonZeroSpec")
def _non_zero(ctx, mod, node, args):
    """``nonzero(x)`` transposed to the spec's [rank, N]: N is a size of the data (an
    unbacked symbol of the analysis; torch.compile captures it the same way)."""
    nonzero = ctx.call(torch.nonzero, ctx.tensor(args[0]))
    return ctx.call(torch.permute, nonzero, (1, 0))


@lowering("OnnxSpaceToDepthSpec")
def _space_to_depth(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    if shape is None or len(shape) != 4:
        raise LoweringError("SpaceToDepth needs a 4-D input")
    b = mod.blocksize
    fake = x.meta.get("val")
    for k, side in enumerate(shape[2:]):
        if isinstance(side, int) and side % b:
            raise LoweringError(f"SpaceToDepth: a side of {side} for blocksize {b}")
        if isinstance(fake, torch.Tensor):  # dynamic sides: hints that admit the blocks
            where = f"{ctx.graph.where}: SpaceToDepth blocks of {b}"
            ctx.graph.shapes.admit_multiple(fake.shape[2 + k], b, where)
    y = ctx.call(torch.unflatten, x, 3, (-1, b))
    y = ctx.call(torch.unflatten, y, 2, (-1, b))  # [N, C, H', b, W', b]
    y = ctx.call(torch.permute, y, (0, 3, 5, 1, 2, 4))  # [N, b, b, C, H', W']
    return ctx.call(torch.flatten, y, 1, 3)


@lowering("OnnxIsInfSpec")
def _is_inf(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    if mod.detect_positive and mod.detect_negative:
        return ctx.call(torch.isinf, x)
    if mod.detect_positive:
        return ctx.call(torch.isposinf, x)
    if mod.detect_negative:
        return ctx.call(torch.isneginf, x)
    return ctx.call(torch.zeros_like, x, dtype=torch.bool)


@lowering("OnnxPReLU")
def _prelu(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    slope = ctx.tensor(args[1])
    x_shape, s_shape = shape_of(x), shape_of(slope)
    if x_shape is None or s_shape is None:
        raise LoweringError("PReLU needs the shapes of X and the slope")
    if len(s_shape) > len(x_shape):
        raise LoweringError(f"a slope of shape {s_shape} for X of rank {len(x_shape)}")
    padded = (1,) * (len(x_shape) - len(s_shape)) + tuple(s_shape)
    numel = math.prod(s if s is not None else 2 for s in padded)
    per_channel = (
        len(x_shape) >= 2
        and all(s == 1 for i, s in enumerate(padded) if i != 1)
        and padded[1] is not None
        and padded[1] == x_shape[1]
    )
    if len(x_shape) >= 1 and (numel == 1 or per_channel):
        return ctx.call(F.prelu, x, ctx.call(torch.reshape, slope, (-1,)))
    scaled = ctx.call(operator.mul, x, slope)
    return ctx.call(torch.where, ctx.call(operator.lt, x, 0), scaled, x)
