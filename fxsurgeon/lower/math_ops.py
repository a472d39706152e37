"""Lowerings of the elementwise math, bitwise, ThresholdedRelu, Det, LpNormalization,
ScatterElements, Quantize/DequantizeLinear and MatMulInteger converters
(``frontdoor/converters/math_ops.py``, ``scatter_quant.py``).

* `OnnxUnarySpec`/`OnnxBinarySpec`: the torch function they name (``torch.sinh``,
  ``torch.bitwise_and``...); BitwiseNot: the converter's `bitwise_not` (uint16/32/64 in
  int64);
* ThresholdedRelu: ``F.threshold(x, alpha, 0.0)``; Det: ``torch.linalg.det``;
* LpNormalization: the converter's `lp_normalize` (``vector_norm``, 0 where it is 0);
* BitShift: ``bitwise_left_shift``/``right_shift`` for uint8; uint16/32/64, which torch
  cannot shift, in int64 by the converter's `logical_shift` (uint64 cast modulo 2**64),
  its calls written as graph nodes;
* ScatterElements: indices normalised like GatherElements' (``i + n`` where ``i < 0``),
  then ``torch.scatter`` or ``scatter_reduce(..., include_self=True)``; torch wants the
  indices no larger than the data off the axis (the spec's valid models have that), so the
  hints of dynamic data dims are made to admit them;
* QuantizeLinear: ``clamp(round(x / scale) + zero_point, lo, hi).to(qtype)`` (``round`` is
  half to even, as the spec's); DequantizeLinear: ``(x.int() - zero_point).to(float) *
  scale``. A per-axis scale or zero point is reshaped to broadcast along the axis;
  DynamicQuantizeLinear: the converter's `dynamic_quantize`;
* MatMulInteger: ``matmul`` of the operands less their zero points in float64 (exact, see
  the converter), cast to int32; tf2onnx's zero points of 0 are left out.
"""

from __future__ import annotations

import operator
from functools import partial

import torch
import torch.nn.functional as F

from ..errors import LoweringError
from ..frontdoor import (
    QUANT_RANGE,
    WIDE_UNSIGNED,
    bitwise_not,
    dynamic_quantize,
    logical_shift,
    lp_normalize,
)
from ..shapes import dtype_of
from .table import lowering
from .values import Const, rank_of


def _dtype(value) -> torch.dtype | None:
    return value.value.dtype if isinstance(value, Const) else dtype_of(value)


@lowering("OnnxUnarySpec")
def _unary(ctx, mod, node, args):
    return ctx.call(getattr(torch, mod.function), ctx.tensor(args[0]))


@lowering("OnnxBitwiseNotSpec")
def _bitwise_not(ctx, mod, node, args):
    dtype = _dtype(args[0])
    if dtype is None:
        raise LoweringError("BitwiseNot of an input of unknown type")
    return bitwise_not(ctx.call, partial(ctx.method, "to"), ctx.tensor(args[0]), dtype)


@lowering("OnnxBinarySpec")
def _binary(ctx, mod, node, args):
    return ctx.call(getattr(torch, mod.function), ctx.tensor(args[0]), ctx.tensor(args[1]))


@lowering("OnnxThresholdedReluSpec")
def _thresholded_relu(ctx, mod, node, args):
    return ctx.call(F.threshold, ctx.tensor(args[0]), mod.alpha, 0.0)


@lowering("OnnxDetSpec")
def _det(ctx, mod, node, args):
    return ctx.call(torch.linalg.det, ctx.tensor(args[0]))


@lowering("OnnxLpNormalizationSpec")
def _lp_normalization(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    if not -rank <= mod.axis < rank:
        raise LoweringError(f"LpNormalization axis {mod.axis} out of range for rank {rank}")
    return lp_normalize(ctx.call, x, mod.p, mod.axis)


@lowering("OnnxBitShiftSpec")
def _bit_shift(ctx, mod, node, args):
    x, shift = ctx.tensor(args[0]), ctx.tensor(args[1])
    dtype = _dtype(args[0])
    if dtype is None:
        raise LoweringError("BitShift of an input of unknown type")
    if dtype not in WIDE_UNSIGNED:
        fn = torch.bitwise_left_shift if mod.left else torch.bitwise_right_shift
        return ctx.call(fn, x, shift)
    bits = WIDE_UNSIGNED[dtype]
    wide, amount = ctx.method("to", x, torch.int64), ctx.method("to", shift, torch.int64)
    out = logical_shift(ctx.call, wide, amount, mod.left, bits)
    return ctx.method("to", out, dtype)


@lowering("OnnxScatterElementsSpec")
def _scatter_elements(ctx, mod, node, args):
    data = ctx.tensor(args[0])
    rank = rank_of(data)
    if not -rank <= mod.axis < rank:
        raise LoweringError(f"ScatterElements axis {mod.axis} out of range for rank {rank}")
    dim = mod.axis % rank
    size = ctx.size(data, dim)
    if isinstance(args[1], Const) and isinstance(size, int):  # indices known: normalised now
        index = args[1].value.long()
        index = ctx.tensor(Const(torch.where(index < 0, index + size, index)))
    else:
        index = ctx.method("long", ctx.tensor(args[1]))
        negative = ctx.call(operator.lt, index, 0)
        index = ctx.call(torch.where, negative, ctx.call(operator.add, index, size), index)
    updates = ctx.tensor(args[2])
    fake, fake_index = data.meta.get("val"), index.meta.get("val")
    if isinstance(fake, torch.Tensor) and isinstance(fake_index, torch.Tensor):
        for d, want in enumerate(fake_index.shape):  # torch's precondition off the axis
            if d != dim and isinstance(want, int):
                where = f"{ctx.graph.where}: ScatterElements indices of size {want}"
                ctx.graph.shapes.admit(fake.shape[d], want, where)
    if mod.reduce is None:
        return ctx.call(torch.scatter, data, dim, index, updates)
    return ctx.call(torch.scatter_reduce, data, dim, index, updates, mod.reduce, include_self=True)


def _along(ctx, param, axis: int, rank: int):
    """A per-axis 1-D parameter reshaped to broadcast along `axis` (a scalar as it is)."""
    node = ctx.tensor(param)
    if rank == 0 or rank_of(node) == 0:
        return node
    if not -rank <= axis < rank:
        raise LoweringError(f"quantization axis {axis} out of range for rank {rank}")
    return ctx.call(torch.reshape, node, (-1,) + (1,) * (rank - 1 - axis % rank))


@lowering("OnnxQuantizeLinearSpec")
def _quantize_linear(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    scaled = ctx.call(
        torch.round, ctx.call(operator.truediv, x, _along(ctx, args[1], mod.axis, rank))
    )
    dtype = torch.uint8
    if len(args) > 2 and args[2] is not None:
        dtype = _dtype(args[2])
        zero_point = ctx.method("to", _along(ctx, args[2], mod.axis, rank), _dtype(args[0]))
        scaled = ctx.call(operator.add, scaled, zero_point)
    if dtype not in QUANT_RANGE:
        raise LoweringError(f"QuantizeLinear to {dtype} (only uint8 and int8 are converted)")
    low, high = QUANT_RANGE[dtype]
    return ctx.method("to", ctx.call(torch.clamp, scaled, low, high), dtype)


@lowering("OnnxDynamicQuantizeLinearSpec")
def _dynamic_quantize_linear(ctx, mod, node, args):
    return list(dynamic_quantize(ctx.call, partial(ctx.method, "to"), ctx.tensor(args[0])))


@lowering("OnnxDequantizeLinearSpec")
def _dequantize_linear(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    centered = ctx.method("to", x, torch.int32)
    if len(args) > 2 and args[2] is not None:
        zero_point = ctx.method("to", _along(ctx, args[2], mod.axis, rank), torch.int32)
        centered = ctx.call(operator.sub, centered, zero_point)
    scale = _along(ctx, args[1], mod.axis, rank)
    return ctx.call(operator.mul, ctx.method("to", centered, _dtype(args[1])), scale)


def _less_zero_point(ctx, x, zero_point, per_row: bool):
    """`x` less its zero point, in float64 (a zero point known to be 0 is left out)."""
    wide = ctx.method("to", ctx.tensor(x), torch.float64)
    if zero_point is None or (isinstance(zero_point, Const) and not zero_point.value.any()):
        return wide
    point = ctx.tensor(zero_point)
    if per_row and rank_of(point) == 1:
        point = ctx.call(torch.reshape, point, (-1, 1))
    return ctx.call(operator.sub, wide, ctx.method("to", point, torch.float64))


@lowering("OnnxMatMulIntegerSpec")
def _matmul_integer(ctx, mod, node, args):
    given = dict(zip(mod.slots, args[2:], strict=True))
    a = _less_zero_point(ctx, args[0], given.get("a_zero_point"), per_row=True)
    b = _less_zero_point(ctx, args[1], given.get("b_zero_point"), per_row=False)
    return ctx.method("to", ctx.call(torch.matmul, a, b), torch.int32)
