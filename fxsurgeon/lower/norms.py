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
  ``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` (``F.local_response_norm`` over
  ``[c - size//2, c + (size-1)//2]``, mirrored for an even size, and through
  ``avg_pool3d``, which has no CPU kernel for bfloat16 and half). The lowering writes the
  spec: the squares zero-padded on the channel dim, ``unfold`` into windows of ``size``,
  summed, ``x / (bias + alpha / size * sum) ** beta``, in any dtype;
* BatchNormalization with its statistics as inputs (``OnnxBatchNorm``): constant
  statistics go to ``F.batch_norm``; statistics computed in the graph are activations,
  which ``F.batch_norm`` cannot take (its ``running_mean`` needs no gradient), so the
  spec's formula is written out per channel. tf2onnx writes a training-mode
  FusedBatchNormV3 so: tf_keras' ``LayerNormalization`` (epsilon >= 1.001e-5, its
  default 1e-3) normalises ``d`` as ``fused_batch_norm(reshape(d, (1, rows, n, 1)))``
  with scale 1 and offset 0, the batch statistics over every dim but the rows; that is
  the layer norm of ``d`` over its trailing dims of ``n`` elements, written on ``d``
  itself (`_rows_of_view`) so that the layer-norm rules see it with the gamma and beta
  that tf_keras applies after the reshape back.

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
from .pads import uniform_value
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
    size = int(mod.size)
    before, after = (size - 1) // 2, size // 2  # the spec's window around channel c
    squares = ctx.call(operator.mul, x, x)
    padded = ctx.call(F.pad, squares, (0, 0) * (rank - 2) + (before, after))
    window = ctx.method("unfold", padded, 1, size, 1)  # [N, C, ..., size]
    total = ctx.call(torch.sum, window, -1)
    scale = ctx.call(operator.mul, total, float(mod.alpha) / size)
    scale = ctx.call(operator.add, scale, float(mod.k))
    return ctx.call(operator.truediv, x, ctx.call(torch.pow, scale, float(mod.beta)))


@lowering("OnnxBatchNorm")
def _batch_norm_dynamic(ctx, mod, node, args):
    """BatchNormalization (the inference formula of the spec), its inputs tensors."""
    x, weight, bias, mean, var = (ctx.tensor(a) for a in args)
    eps = float(mod.epsilon)
    if isinstance(args[3], Const) and isinstance(args[4], Const):
        return ctx.call(F.batch_norm, x, mean, var, weight, bias, False, mod.momentum, eps)
    rank = rank_of(x)
    per_channel = (1, -1) + (1,) * (rank - 2)
    mean, var, weight, bias = (
        _channel_view(ctx, t, rank, per_channel) for t in (mean, var, weight, bias)
    )
    rows = _rows_of_view(ctx, x, mean, var, weight, bias, eps)
    if rows is not None:
        return rows
    centred = ctx.call(operator.sub, x, mean)
    inv_std = ctx.call(torch.reciprocal, ctx.call(torch.sqrt, ctx.call(operator.add, var, eps)))
    normed = ctx.call(operator.mul, centred, inv_std)
    return ctx.call(operator.add, ctx.call(operator.mul, normed, weight), bias)


def _channel_view(ctx, t, rank: int, per_channel: tuple):
    """`t` ([C]) as ``(1, C, 1, ...)``; a ``squeeze`` of a tensor already of that form
    (a mean kept with keepdim, then squeezed to [C]) is read before its squeeze."""
    if (
        t.op == "call_function"
        and t.target is torch.squeeze
        and isinstance(t.args[0], torch.fx.Node)
    ):
        source, dims = t.args[0], (t.args[1] if len(t.args) > 1 else None)
        dims = (dims,) if isinstance(dims, int) else dims
        if (
            dims is not None
            and rank_of(source) == rank
            and {d % rank for d in dims} == set(range(rank)) - {1}
        ):
            return source
    return ctx.call(torch.reshape, t, per_channel)


def _is_call(node, target) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target is target


def _reduced_dims(node, rank: int) -> set | None:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if not isinstance(dims, (tuple, list)):
        return None
    return {d % rank for d in dims}


def _is_batch_variance(var, x, mean, dims: set, count: int) -> bool:
    """`var` is the biased variance of `x` over `dims` about `mean`: ``sum((x - mean)^2) /
    count`` or ``mean((x - mean)^2)``, viewed as ``(1, C, 1, ...)``."""
    rank = rank_of(x)
    if _is_call(var, torch.reshape):
        var = var.args[0]
    if _is_call(var, operator.truediv) and var.args[1] == count:
        total = var.args[0]
        if not _is_call(total, torch.sum):
            return False
    elif _is_call(var, torch.mean):
        total = var
    else:
        return False
    square = total.args[0]
    if _reduced_dims(total, rank) != dims or not _is_call(square, operator.mul):
        return False
    a, b = square.args
    return a is b and _is_call(a, operator.sub) and a.args[0] is x and a.args[1] is mean


def _rows_of_view(ctx, x, mean, var, weight, bias, eps: float):
    """The layer norm of ``d`` over its trailing dims, when `x` is ``reshape(d, (1, rows,
    n, 1))``, `mean` and `var` are x's batch statistics over dims 0, 2, 3 and the scale
    and offset are 1 and 0; None otherwise. Written on ``d`` then viewed as `x`."""
    if rank_of(x) != 4 or not _is_call(x, torch.reshape):
        return None
    d, x_shape, d_shape = x.args[0], shape_of(x), shape_of(x.args[0])
    if x_shape is None or d_shape is None or x_shape[0] != 1 or x_shape[3] != 1:
        return None
    n = x_shape[2]
    if not isinstance(n, int) or n < 1:
        return None
    if (
        not _is_call(mean, torch.mean)
        or mean.args[0] is not x
        or _reduced_dims(mean, 4) != {0, 2, 3}
    ):
        return None
    if not (mean.args[2] if len(mean.args) > 2 else mean.kwargs.get("keepdim", False)):
        return None
    if not _is_batch_variance(var, x, mean, {0, 2, 3}, n):
        return None
    if uniform_value(ctx, weight) != 1.0 or uniform_value(ctx, bias) != 0.0:
        return None
    size, k = 1, 0
    while size < n and k < len(d_shape) and isinstance(d_shape[-1 - k], int):
        size *= d_shape[-1 - k]
        k += 1
    if size != n or k == 0:
        return None
    while _is_call(d, torch.unsqueeze) and d.args[1] % rank_of(d) < rank_of(d) - k:
        d = d.args[0]  # a unit dim in front of the rows: the layer norm is of what it views
    dims = tuple(range(-k, 0))
    row_mean = ctx.call(torch.mean, d, dims, keepdim=True)
    centred = ctx.call(operator.sub, d, row_mean)
    row_var = ctx.call(torch.mean, ctx.call(operator.mul, centred, centred), dims, keepdim=True)
    inv_std = ctx.call(torch.reciprocal, ctx.call(torch.sqrt, ctx.call(operator.add, row_var, eps)))
    normed = ctx.call(operator.mul, centred, inv_std)
    return ctx.call(torch.reshape, normed, x.args[1])
