"""Lowering of Resize (`OnnxResizeSpec`, fxsurgeon's converter).

Where the converter found F.interpolate's exact form (``fast``), what depends on the
scales (``out_gt_1``; a nearest form's index map, `same_pixels`; see
``frontdoor/converters/resize.py``) is checked here on the scales or sizes known at
optimize time, and the call is F.interpolate; a nearest form at a whole-number upscale
(scales, or sizes the shape analysis shows are ``s`` times the input's lengths, run-time
ones too) is F.interpolate's nearest-exact, proven to pick the spec's pixel at every size
(`repeat_factors`). The output size of a scale is ``floor(in * scale)`` in float32, as
onnxruntime computes it: where a static dim floors lower in torch's double, ATen's
``upsample_*`` takes that size and the scales. Every other Resize, and a fast form whose
rule fails at these scales, is the spec's definition written as graph nodes
(``frontdoor/converters/resize_sample.py``): sizes may hold run-time dims, scales must
be constants (else the module stays, reported), a roi may be a tensor. A dynamic dim's
``floor(in * scale)`` is taken in double: it differs from float32's only where
``in * scale`` lies within half a float32 ulp below an integer.
"""

from __future__ import annotations

import operator

import sympy
import torch
import torch.nn.functional as F
from torch import fx

from ..errors import InputError, LoweringError
from ..frontdoor import (
    ResizeError,
    SampleError,
    aten_resize,
    repeat_factors,
    resample,
    resize_axes,
    same_pixels,
    scaled_sizes,
)
from ..frontdoor import resize_plan as plan
from ..shapes import shape_of
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
    try:
        if mod.fast is not None:
            try:
                return _interpolate(ctx, mod, x, len(shape), given)
            except ResizeError:
                pass  # not exact at these sizes: the spec's definition
        return _spec(ctx, mod, x, len(shape), given)
    except (ResizeError, SampleError) as exc:  # exact nowhere: refused, never kept to fail
        where = node.meta.get("fxsurgeon.onnx_node") or node.name
        raise InputError(
            f"ONNX node {where!r} (op Resize) cannot be computed by torch: {exc}"
        ) from exc


def _sizes(ctx, x, given) -> list | None:
    if not _given(given.get("sizes")):
        return None
    sym = as_sym(given["sizes"])
    if sym is None:
        raise LoweringError("Resize sizes computed from tensor data")
    return list(sym.items)


def _scales(given) -> list[float]:
    scales = given.get("scales")
    if not isinstance(scales, Const):
        raise LoweringError("Resize scales must be known at optimize time")
    return [float(s) for s in scales.value.reshape(-1).tolist()]


def _expr(ctx, size):
    """A length (an int or an int-valued node) as an int or a sympy expression of the input
    dims' symbols (None: not known)."""
    if isinstance(size, int):
        return size
    value = size.meta.get("val") if isinstance(size, fx.Node) else None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.SymInt):
        return ctx.graph.shapes.env.replace(value.node.expr)
    return None


def _same(ctx, a, b) -> bool:
    a, b = _expr(ctx, a), _expr(ctx, b)
    return a is not None and b is not None and sympy.simplify(sympy.sympify(a) - b) == 0


def _repeats(ctx, mod, x, ins, outs):
    """F.interpolate's nearest-exact where every resized dim is a whole upscale (rule
    `repeat_factors`: the spec's pixel at every size), else None. `outs`: the output
    lengths, or the whole scales (then the lengths are ``s * in``)."""
    in_exprs = [_expr(ctx, i) for i in ins]
    if isinstance(outs[0], float):
        out_exprs = [None if i is None else i * int(f) for i, f in zip(in_exprs, outs, strict=True)]
    else:
        out_exprs = [_expr(ctx, o) for o in outs]
    if None in in_exprs or None in out_exprs:
        return None
    factors = repeat_factors(mod.sampling, in_exprs, out_exprs)
    if factors is None:
        return None
    if isinstance(outs[0], float):
        outs = [
            i * f if isinstance(i, int) else ctx.call(operator.mul, i, f)
            for i, f in zip(ins, factors, strict=True)
        ]
    return ctx.call(F.interpolate, x, size=tuple(outs), mode="nearest-exact")


def _interpolate(ctx, mod, x, rank, given):
    mode = mod.torch_mode(rank - 2)
    _, align_corners, rule = mod.fast
    ins = [ctx.size(x, d) for d in range(2, rank)]
    static_ins = [i if isinstance(i, int) else None for i in ins]
    sizes = _sizes(ctx, x, given)
    if sizes is not None:
        if not all(_same(ctx, sizes[d], ctx.size(x, d)) for d in (0, 1)):
            raise ResizeError("torch cannot resize the batch or channel dims")
        outs = sizes[2:]
        repeated = _repeats(ctx, mod, x, ins, outs)
        if repeated is not None:
            return repeated
        plan(rule, static_ins, [o if isinstance(o, int) else None for o in outs], None)
        if mode.startswith("nearest"):
            same_pixels(mode, mod.sampling, ins, outs, None)
        return ctx.call(F.interpolate, x, size=tuple(outs), mode=mode, align_corners=align_corners)
    values = _scales(given)
    if values[:2] != [1.0, 1.0]:
        raise ResizeError("torch cannot scale the batch or channel dims")
    factors = values[2:]
    if all(f >= 1 and f.is_integer() for f in factors):  # floor(in * s) is s * in
        repeated = _repeats(ctx, mod, x, ins, factors)
        if repeated is not None:
            return repeated
    outs, differ = scaled_sizes(static_ins, factors)  # float32's product, as onnxruntime
    plan(rule, static_ins, outs, factors)
    if mode.startswith("nearest"):
        same_pixels(mode, mod.sampling, ins, outs, factors)
    if differ:  # torch's double product floors lower: the size given, with the scales
        op, call_args = aten_resize(mode, x, outs, factors, align_corners)
        return ctx.call(op, *call_args)
    return ctx.call(
        F.interpolate,
        x,
        scale_factor=tuple(factors),
        mode=mode,
        align_corners=align_corners,
        recompute_scale_factor=False,
    )


def _spec(ctx, mod, x, rank, given):
    """The spec's definition as graph nodes (``resize_sample.py``)."""
    how = mod.sampling
    if how.mode != "nearest" and not x.meta["val"].is_floating_point():
        raise ResizeError(f"{how.mode} Resize of a {x.meta['val'].dtype} tensor")
    sizes = _sizes(ctx, x, given)
    scales = None if sizes is not None else _scales(given)
    roi = given.get("roi")
    if how.transform != "tf_crop_and_resize" or not _given(roi):
        roi = None
    elif isinstance(roi, Const):
        roi = [float(r) for r in roi.value.reshape(-1).tolist()]
    else:
        roi = ctx.tensor(roi)
    shape = [ctx.size(x, d) for d in range(rank)]
    if sizes is not None:  # a length the analysis shows is the input's: that one (scale 1)
        sizes = [n if _same(ctx, s, n) else s for s, n in zip(sizes, shape, strict=False)]
    axes = resize_axes(ctx.call, shape, mod.axes, scales, sizes, roi, mod.policy, how.transform)
    return resample(ctx.call, x, rank, axes, how, ctx.device(), ctx.method)
