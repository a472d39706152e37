"""Lowerings of ONNX LayerNormalization, InstanceNormalization and LRN by the spec.

* LayerNormalization (`OnnxLayerNormSpec`; onnx2torch's ``nn.LayerNorm`` and
  ``OnnxLayerNorm``): ``F.layer_norm`` over the dims from ``axis`` on (sizes from
  the shape analysis, symbolic where dynamic), Scale and B as its weight and bias
  when they have the normalised shape, else multiplied and added after (the spec
  broadcasts them). When ``stash_type`` is not X's dtype, X is cast to it first
  and the normalised value cast back before the scale, as the spec's function body
  does;
* InstanceNormalization (onnx2torch's ``nn.InstanceNorm1d/2d/3d`` and
  ``OnnxInstanceNorm``): ``F.instance_norm`` with the input's statistics. A 2-D
  input [N, C] (no spatial dims) is refused: onnxruntime refuses it too, and
  onnx2torch's InstanceNorm1d reads it as one unbatched [C, L];
* LRN (``nn.LocalResponseNorm``): ONNX sums the squares over channels
  ``[c - floor((size-1)/2), c + ceil((size-1)/2)]``, ``F.local_response_norm`` over
  ``[c - size//2, c + (size-1)//2]``: the same window for an odd size, mirrored
  for an even one, so there the channels are flipped around it (exact). Both
  divide ``alpha`` by ``size``.

Learned scales and biases are weight constants, so the parameters pass makes them
``nn.Parameter``s.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ..errors import LoweringError
from ..shapes import shape_of
from .nn_ops import _param
from .table import lowering
from .values import Const, rank_of


def _static_shape(ctx, value) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, Const):
        return tuple(value.value.shape)
    shape = shape_of(ctx.tensor(value))
    return tuple(shape) if shape is not None else None


def layer_norm(ctx, x, scale, bias, axis: int, eps: float, stash: torch.dtype | None = None):
    """ONNX LayerNormalization of `x` (a node) with Scale/B values (Const or node, B may be None)."""
    rank = rank_of(x)
    if not -rank <= axis < rank:
        raise LoweringError(f"LayerNormalization axis {axis} out of range for a {rank}-D input")
    axis %= rank
    shape = tuple(ctx.size(x, d) for d in range(axis, rank))
    dtype = x.meta["val"].dtype
    static = tuple(shape_of(x)[axis:])  # type: ignore[index]
    fits = all(s is not None for s in static) and all(
        v is None or _static_shape(ctx, v) == static for v in (scale, bias)
    )
    if stash is None or stash == dtype:
        if fits:
            weight = ctx.tensor(scale) if scale is not None else None
            b = ctx.tensor(bias) if bias is not None else None
            return ctx.call(F.layer_norm, x, shape, weight, b, eps)
        out = ctx.call(F.layer_norm, x, shape, None, None, eps)
    else:
        stashed = ctx.method("to", x, stash)
        out = ctx.method("to", ctx.call(F.layer_norm, stashed, shape, None, None, eps), dtype)
    if scale is not None:
        out = ctx.call(operator.mul, out, ctx.tensor(scale))
    if bias is not None:
        out = ctx.call(operator.add, out, ctx.tensor(bias))
    return out


@lowering("OnnxLayerNormSpec")
def _layer_norm_spec(ctx, mod, node, args):
    bias = args[2] if len(args) > 2 else None
    return layer_norm(
        ctx, ctx.tensor(args[0]), args[1], bias, mod.axis, mod.epsilon, mod.stash_dtype
    )


@lowering("OnnxLayerNorm")
def _onnx2torch_layer_norm(ctx, mod, node, args):
    bias = args[2] if len(args) > 2 else None
    return layer_norm(ctx, ctx.tensor(args[0]), args[1], bias, mod.axis, mod.epsilon)


@lowering("LayerNorm")
def _nn_layer_norm(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    axis = -len(mod.normalized_shape)
    weight = _param(ctx, mod, "weight") if mod.weight is not None else None
    bias = _param(ctx, mod, "bias") if getattr(mod, "bias", None) is not None else None
    return layer_norm(ctx, x, weight, bias, axis, mod.eps)


def instance_norm(ctx, x, weight, bias, eps: float):
    rank = rank_of(x)
    if rank < 3:
        raise LoweringError(
            f"InstanceNormalization of a {rank}-D input: the spec normalises over spatial dims "
            "[N, C, D1, ...] and onnxruntime refuses fewer than 3 dims (onnx2torch's "
            "InstanceNorm1d would read [N, C] as one unbatched [C, L])"
        )
    w = ctx.tensor(weight) if weight is not None else None
    b = ctx.tensor(bias) if bias is not None else None
    return ctx.call(F.instance_norm, x, None, None, w, b, True, 0.1, eps)


@lowering("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
def _nn_instance_norm(ctx, mod, node, args):
    if mod.track_running_stats:
        raise LoweringError("InstanceNorm with running statistics (no ONNX op makes one)")
    weight = _param(ctx, mod, "weight") if mod.affine else None
    bias = _param(ctx, mod, "bias") if mod.affine else None
    return instance_norm(ctx, ctx.tensor(args[0]), weight, bias, mod.eps)


@lowering("OnnxInstanceNorm")
def _onnx_instance_norm(ctx, mod, node, args):
    return instance_norm(ctx, ctx.tensor(args[0]), args[1], args[2], mod.epsilon)


@lowering("LocalResponseNorm")
def _local_response_norm(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    if rank < 2:
        raise LoweringError(f"LRN of a {rank}-D input (the spec wants [N, C, ...])")
    if rank == 2:
        x = ctx.call(torch.unsqueeze, x, -1)
    size, even = int(mod.size), mod.size % 2 == 0
    if even:
        x = ctx.call(torch.flip, x, (1,))
    out = ctx.call(F.local_response_norm, x, size, float(mod.alpha), float(mod.beta), float(mod.k))
    if even:
        out = ctx.call(torch.flip, out, (1,))
    return ctx.call(torch.squeeze, out, -1) if rank == 2 else out
