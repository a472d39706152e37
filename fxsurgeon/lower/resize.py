"""Lowering of Resize (`OnnxResizeSpec`, fxsurgeon's converter) to F.interpolate.

The converter has picked the torch mode whose sampling points are ONNX's; what
depends on the scales (``no_ties``, ``out_gt_1``, ``upsample``, see
``frontdoor/converters/resize.py``) is checked here on the scales or sizes
known at optimize time. Sizes may hold run-time dims (``x.size(0)``) for the
batch and channels, which must be the input's own; scales must be constants.
The output size of a scale is ``floor(in * scale)`` in float32, as onnxruntime
computes it (``frontdoor/converters/resize.py``): where a static dim floors lower
in torch's double, ATen's ``upsample_*`` takes that size and the scales. A dynamic
dim is left to F.interpolate's double product: the two differ only where
``in * scale`` lies within half a float32 ulp below an integer.
"""

from __future__ import annotations

import operator

import torch.nn.functional as F

from ..errors import InputError, LoweringError
from ..frontdoor import ResizeError, aten_resize, cubic_resize, scaled_sizes
from ..frontdoor import resize_plan as plan
from ..shapes import shape_of
from .shape_ops import _arith
from .table import lowering
from .values import Const, as_sym


def _given(value) -> bool:
    if value is None:
        return False
    if isinstance(value, Const):
        return value.value.numel() > 0
    sym = as_sym(value)
    return sym is None or len(sym.items) > 0


@lowering("OnnxResizeSpec")
def _resize(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    if shape is None:
        raise LoweringError("no shape known for the Resize input")
    given = dict(zip(mod.slots, args[1:], strict=True))
    ins = list(shape[2:])
    if getattr(mod, "cubic", None) is not None:
        return _cubic(ctx, mod, x, given)
    try:
        mode = mod.torch_mode(len(ins))
        if _given(given.get("sizes")):
            return _by_sizes(ctx, mod, x, mode, ins, given["sizes"])
        return _by_scales(ctx, mod, x, mode, ins, given.get("scales"))
    except ResizeError as exc:  # exact nowhere: refused, never kept to fail at run time
        where = node.meta.get("fxsurgeon.onnx_node") or node.name
        raise InputError(
            f"ONNX node {where!r} (op Resize) cannot be computed by torch: {exc}"
        ) from exc


def _by_sizes(ctx, mod, x, mode, ins, sizes):
    sym = as_sym(sizes)
    if sym is None:
        raise LoweringError("Resize sizes computed from tensor data")
    items = list(sym.items)
    for dim in (0, 1):
        if items[dim] != ctx.size(x, dim):
            raise LoweringError("torch cannot resize the batch or channel dims")
    outs = items[2:]
    plan(mod.rule, ins, [o if isinstance(o, int) else None for o in outs], None)
    return ctx.call(F.interpolate, x, size=tuple(outs), mode=mode, align_corners=mod.align_corners)


def _by_scales(ctx, mod, x, mode, ins, scales):
    if not isinstance(scales, Const):
        raise LoweringError("Resize scales must be known at optimize time")
    values = [float(s) for s in scales.value.reshape(-1).tolist()]
    if values[:2] != [1.0, 1.0]:
        raise ResizeError("torch cannot scale the batch or channel dims")
    factors = values[2:]
    outs, differ = scaled_sizes(ins, factors)  # float32's product, as onnxruntime
    plan(mod.rule, ins, outs, factors)
    if differ:  # torch's double product floors lower: the size given, with the scales
        op, call_args = aten_resize(mode, x, outs, factors, mod.align_corners)
        return ctx.call(op, *call_args)
    return ctx.call(
        F.interpolate,
        x,
        scale_factor=tuple(factors),
        mode=mode,
        align_corners=mod.align_corners,
        recompute_scale_factor=False,
    )


def _cubic(ctx, mod, x, given):
    """ONNX's cubic (``frontdoor/converters/resize_cubic.py``) as graph nodes: sizes may be
    run-time dims (the coordinate scale ``out / in`` then one too); scales must be constants
    over static input dims."""
    rank = len(shape_of(x))
    ins = [ctx.size(x, d) for d in range(2, rank)]
    if _given(given.get("sizes")):
        sym = as_sym(given["sizes"])
        if sym is None:
            raise LoweringError("Resize sizes computed from tensor data")
        items = list(sym.items)
        if any(items[d] != ctx.size(x, d) for d in (0, 1)):
            raise LoweringError("Resize of the batch or channel dims")
        outs = items[2:]
        factors = [_arith(ctx, operator.truediv, o, i) for i, o in zip(ins, outs, strict=True)]
    else:
        scales = given.get("scales")
        if not isinstance(scales, Const) or any(not isinstance(i, int) for i in ins):
            raise LoweringError("cubic Resize by scales: the scales and input sizes must be known")
        factors = [float(s) for s in scales.value.reshape(-1).tolist()]
        if factors[:2] != [1.0, 1.0]:
            raise LoweringError("Resize of the batch or channel dims")
        factors = factors[2:]
        outs = scaled_sizes(ins, factors)[0]
    how = {**mod.cubic_form(ctx.device()), "method": ctx.method}
    return cubic_resize(ctx.call, x, list(zip(ins, outs, factors, strict=True)), how)
