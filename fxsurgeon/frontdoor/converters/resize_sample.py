"""ONNX Resize by its definition, one axis at a time, with gathers and arithmetic.

`resample` computes every form of Resize-10..19 that F.interpolate does not: each
resized axis maps its output positions ``p`` to source coordinates ``c`` by the
``coordinate_transformation_mode`` (the spec's formulas, in float32 and in
onnxruntime's order of operations), then

* nearest: the pixel ``floor(c)``, ``ceil(c)`` or the rounded one (halfway cases down
  for ``round_prefer_floor``, up for ``round_prefer_ceil``; Resize-10's "simple" rounding
  is ``ceil`` when the scale is below 1, else ``floor``), clamped into the input;
* linear: ``c`` clamped into ``[0, in - 1]``, the two pixels around it weighed by distance;
* cubic: Keys' kernel with ``cubic_coeff_a`` on the four pixels ``floor(c) - 1 ..
  floor(c) + 2`` (onnxruntime's ``GetCubicCoeffs``); with ``exclude_outside`` the taps
  outside the input weigh 0 and the rest are renormalised, else they read the edge pixel;
* antialias (linear and cubic): the kernel stretched by ``1 / min(scale, 1)``: every
  pixel ``j`` with ``|j - c| < support`` weighs ``k((j - c) min(scale, 1))``, the weights
  normalised by their sum, taps outside the input dropped (``exclude_outside``) or
  reading the edge pixel;
* tf_crop_and_resize: a position whose ``c`` falls outside ``[0, in - 1]`` is
  ``extrapolation_value``.

Axes are independent (the spec's N-linear/N-cubic is the product of 1-D kernels), so
any number of axes, batch and channels among them, resize in turn. Every step is written
``call(fn, *args)``: the converter's module runs the functions (`eager`), the lowering
records them as graph nodes, so sizes may be run-time ints there (``x.size(2)``); a
scale must be a number. `plan_axes` turns the node's inputs and attributes (``axes``,
``keep_aspect_ratio_policy``, scales or sizes, roi) into the axes to resize.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Call = Callable[..., Any]

TRANSFORMS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
POLICIES = ("stretch", "not_larger", "not_smaller")


class SampleError(ValueError):
    """A Resize this module cannot compute (named by the caller with its node)."""


@dataclass(frozen=True)
class Sampling:
    """The node's attributes that decide the sampling of one axis."""

    mode: str  # nearest, linear, cubic
    transform: str
    nearest: str = "round_prefer_floor"
    a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0


@dataclass
class Axis:
    """One axis to resize: its input and output lengths (ints or run-time ints), the
    coordinate scale, and the roi's start and end (numbers or 0-d tensors)."""

    dim: int
    n_in: Any
    n_out: Any
    scale: Any
    start: Any = 0.0
    end: Any = 1.0


def _static(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _arith(call: Call, fn: Callable, a: Any, b: Any) -> Any:
    """`fn(a, b)` now when both are numbers, else a call."""
    return fn(a, b) if _static(a, b) else call(fn, a, b)


def _f32(value: float) -> float:
    return float(np.float32(value))


# --------------------------------------------------------------------------- the axes


def plan_axes(
    call: Call,
    shape: list,
    axes: list[int] | None,
    scales: list[float] | None,
    sizes: list | None,
    roi: Any,
    policy: str,
    transform: str,
) -> list[Axis]:
    """The axes to resize. `shape`: the input's lengths; `scales` (numbers) or `sizes`
    (ints or run-time ints), one per entry of `axes` (all dims when None); `roi`: None, a
    list of numbers or a 1-D tensor ``[starts..., ends...]`` over the same axes."""
    rank = len(shape)
    dims = list(range(rank)) if axes is None else [a % rank for a in axes]
    if len(set(dims)) != len(dims):
        raise SampleError(f"axes {axes} repeat an axis")
    count = len(dims)
    for name, given in (("scales", scales), ("sizes", sizes)):
        if given is not None and len(given) != count:
            raise SampleError(f"{name} has {len(given)} entries for {count} axes")
    crop = transform == "tf_crop_and_resize"
    bounds = [_roi(call, roi, k, count) if crop else (0.0, 1.0) for k in range(count)]
    ins = [shape[d] for d in dims]
    if scales is not None:
        if any(not _static(s) or s <= 0 for s in scales):
            raise SampleError(f"scales {scales}: each must be a number above 0")
        factors = [_f32(s) for s in scales]
        outs = [_scaled(call, i, s) for i, s in zip(ins, factors, strict=True)]
    else:
        assert sizes is not None
        outs, factors = _sized(call, ins, list(sizes), policy)
    planned = []
    for k, d in enumerate(dims):
        n_in, n_out, scale = ins[k], outs[k], factors[k]
        identity = scale == 1.0 and (n_in is n_out or (_static(n_in, n_out) and n_in == n_out))
        if identity and (not crop or bounds[k] == (0.0, 1.0)):  # the roi's whole axis
            continue
        planned.append(Axis(d, n_in, n_out, scale, *bounds[k]))
    return planned


def _roi(call: Call, roi: Any, k: int, count: int) -> tuple[Any, Any]:
    if roi is None:
        raise SampleError("tf_crop_and_resize without a roi")
    if isinstance(roi, (list, tuple)):
        if len(roi) != 2 * count:
            raise SampleError(f"roi has {len(roi)} entries for {count} axes")
        return _f32(roi[k]), _f32(roi[count + k])
    return call(operator.getitem, roi, k), call(operator.getitem, roi, count + k)


def _scaled(call: Call, n_in: Any, scale: float) -> Any:
    """``floor(in * scale)``, in float32 as onnxruntime for a static length."""
    if scale == 1.0:
        return n_in
    if _static(n_in):
        return int(np.floor(np.float32(n_in) * np.float32(scale)))
    return call(math.floor, call(operator.mul, n_in, scale))


def _sized(call: Call, ins: list, outs: list, policy: str) -> tuple[list, list]:
    """Output lengths and coordinate scales ``out / in`` (float32) of `sizes`, adjusted by
    `policy` (one scale, the least or the largest; lengths ``round(scale * in)``)."""
    factors = [_ratio(call, o, i) for i, o in zip(ins, outs, strict=True)]
    if policy == "stretch":
        return outs, factors
    if policy not in POLICIES:
        raise SampleError(f"keep_aspect_ratio_policy {policy!r}")
    pick = min if policy == "not_larger" else max
    if _static(*factors):
        scale = _f32(pick(factors))
        outs = [int(np.floor(np.float32(scale) * np.float32(i) + np.float32(0.5))) for i in ins]
        return outs, [scale] * len(ins)
    sym_pick = torch.sym_min if policy == "not_larger" else torch.sym_max
    scale = factors[0]
    for f in factors[1:]:
        scale = call(sym_pick, scale, f)
    outs = [call(math.floor, call(operator.add, call(operator.mul, scale, i), 0.5)) for i in ins]
    return outs, [scale] * len(ins)


def _ratio(call: Call, out: Any, n_in: Any) -> Any:
    if out is n_in:  # the same run-time length: scale 1, the axis is left as it is
        return 1.0
    if _static(out, n_in):
        return float(np.float32(out) / np.float32(n_in))
    return call(operator.truediv, call(torch.sym_float, out), n_in)


# --------------------------------------------------------------------------- one axis


def _coordinates(call: Call, axis: Axis, transform: str, device: Any, method: Call) -> Any:
    """Source coordinates of the output positions (float32), onnxruntime's formulas."""
    n_in, n_out, scale = axis.n_in, axis.n_out, axis.scale
    p = call(torch.arange, n_out, dtype=torch.float32, device=device)
    if transform == "asymmetric":
        return call(operator.truediv, p, scale)
    if transform == "tf_half_pixel_for_nn":
        return call(operator.truediv, call(operator.add, p, 0.5), scale)
    if transform in ("align_corners", "tf_crop_and_resize"):
        last_in = _arith(call, operator.sub, n_in, 1)
        span = _arith(call, torch.sym_max, _arith(call, operator.sub, n_out, 1), 1)
        if transform == "align_corners":  # 0 where out is 1 (p is 0 there)
            return call(operator.truediv, call(operator.mul, p, last_in), span)
        if not _static(n_out):
            raise SampleError("tf_crop_and_resize to a length known only at run time")
        begin = _arith(call, operator.mul, axis.start, last_in)
        if n_out == 1:  # the roi's centre
            centre = _arith(call, operator.add, axis.start, axis.end)
            centre = _arith(call, operator.mul, _arith(call, operator.mul, centre, 0.5), last_in)
            return call(operator.add, call(operator.mul, p, 0.0), centre)
        width = _arith(call, operator.sub, axis.end, axis.start)
        spread = call(operator.mul, call(operator.mul, p, width), last_in)
        return call(operator.add, call(operator.truediv, spread, span), begin)
    centred = call(operator.sub, call(operator.truediv, call(operator.add, p, 0.5), scale), 0.5)
    if transform == "half_pixel":
        return centred
    if transform == "pytorch_half_pixel":  # 0 where out is 1
        keep = _arith(call, torch.sym_min, _arith(call, operator.sub, n_out, 1), 1)
        return call(operator.mul, centred, keep)
    if transform == "half_pixel_symmetric":  # onnxruntime: the offset in float32, the rest
        offset: Any  # in double (its 0.5 is a double), the result float32
        if _static(n_in, n_out, scale):
            width = np.float32(scale) * np.float32(n_in)
            offset = float(np.float32(n_in) / 2 * (1 - np.float32(n_out) / width))
        else:
            width = _arith(call, operator.mul, scale, n_in)
            adjust = _arith(call, operator.sub, 1.0, _arith(call, operator.truediv, n_out, width))
            offset = _arith(call, operator.mul, _arith(call, operator.truediv, n_in, 2), adjust)
        p64 = call(torch.arange, n_out, dtype=torch.float64, device=device)
        wide = call(operator.truediv, call(operator.add, p64, 0.5), scale)
        wide = call(operator.sub, call(operator.add, wide, offset), 0.5)
        return method("float", wide)
    raise SampleError(f"coordinate_transformation_mode {transform!r}")


def _kernel(call: Call, d: Any, a: float, mode: str) -> Any:
    """The linear (tent) or cubic (Keys) kernel at the distances `d`, 0 from the support on."""
    d = call(torch.abs, d)
    if mode == "linear":
        return call(torch.clamp, call(operator.sub, 1.0, d), 0.0)
    near = call(operator.sub, call(operator.mul, d, a + 2), a + 3)
    near = call(operator.add, call(operator.mul, call(operator.mul, near, d), d), 1.0)
    far = call(operator.sub, call(operator.mul, d, a), 5 * a)
    far = call(operator.add, call(operator.mul, far, d), 8 * a)
    far = call(operator.sub, call(operator.mul, far, d), 4 * a)
    far = call(torch.where, call(operator.lt, d, 2.0), far, 0.0)
    return call(torch.where, call(operator.le, d, 1.0), near, far)


def _taps(call: Call, coords: Any, axis: Axis, how: Sampling, method: Call) -> tuple[list, list]:
    """(indices, weights) of the linear or cubic taps of each output position."""
    n_in = axis.n_in
    last = _arith(call, operator.sub, n_in, 1)
    if how.mode == "linear" and not how.antialias:
        c = call(torch.clamp, coords, 0.0, last)
        low = call(torch.floor, c)
        high_w = call(operator.sub, c, low)
        low_w = call(operator.sub, call(operator.add, low, 1.0), c)
        low = method("long", low)
        high = call(torch.clamp, call(operator.add, low, 1), 0, last)
        return [low, high], [low_w, high_w]
    low = call(torch.floor, coords)
    if how.antialias:
        if not _static(axis.scale):
            raise SampleError("antialias with a scale known only at run time")
        shrink = min(float(axis.scale), 1.0)
        support = (1.0 if how.mode == "linear" else 2.0) / shrink
        reach = math.ceil(support)
        offsets = range(-reach, reach + 2)
        dists = [
            call(operator.mul, call(operator.sub, call(operator.add, low, k), coords), shrink)
            for k in offsets
        ]
        weights = [_kernel(call, d, how.a, how.mode) for d in dists]
    else:  # ONNX's cubic: W(1 + t), W(t), W(1 - t), W(2 - t)
        offsets = range(-1, 3)
        t = call(operator.sub, coords, low)
        dists = [
            call(operator.add, t, 1.0),
            t,
            call(operator.sub, 1.0, t),
            call(operator.sub, 2.0, t),
        ]
        weights = [_cubic_coeff(call, d, how.a, k in (1, 2)) for k, d in enumerate(dists)]
    low = method("long", low)
    taps = [call(operator.add, low, k) for k in offsets]
    if how.exclude_outside:
        weights = [
            call(
                torch.where,
                call(operator.and_, call(operator.ge, i, 0), call(operator.lt, i, n_in)),
                w,
                0.0,
            )
            for i, w in zip(taps, weights, strict=True)
        ]
    if how.exclude_outside or how.antialias:
        total = weights[0]
        for w in weights[1:]:
            total = call(operator.add, total, w)
        weights = [call(operator.truediv, w, total) for w in weights]
    return [call(torch.clamp, i, 0, last) for i in taps], weights


def _cubic_coeff(call: Call, d: Any, a: float, near: bool) -> Any:
    if near:  # ((a + 2) d - (a + 3)) d d + 1
        inner = call(operator.sub, call(operator.mul, d, a + 2), a + 3)
        return call(operator.add, call(operator.mul, call(operator.mul, inner, d), d), 1.0)
    inner = call(operator.sub, call(operator.mul, d, a), 5 * a)  # ((a d - 5a) d + 8a) d - 4a
    inner = call(operator.add, call(operator.mul, inner, d), 8 * a)
    return call(operator.sub, call(operator.mul, inner, d), 4 * a)


def _nearest(call: Call, coords: Any, axis: Axis, how: Sampling, method: Call) -> Any:
    rounding = how.nearest
    if rounding == "simple":  # Resize-10: up when downsampling
        if not _static(axis.scale):
            raise SampleError("Resize-10 nearest with a scale known only at run time")
        rounding = "ceil" if axis.scale < 1 else "floor"
    if rounding in ("floor", "ceil"):
        index = call(torch.floor if rounding == "floor" else torch.ceil, coords)
    elif rounding in ("round_prefer_floor", "round_prefer_ceil"):
        low = call(torch.floor, coords)
        frac = call(operator.sub, coords, low)
        above = call(operator.gt if rounding == "round_prefer_floor" else operator.ge, frac, 0.5)
        index = call(operator.add, low, method("float", above))
    else:
        raise SampleError(f"nearest_mode {rounding!r}")
    return call(torch.clamp, method("long", index), 0, _arith(call, operator.sub, axis.n_in, 1))


def resample_axis(
    call: Call, x: Any, rank: int, axis: Axis, how: Sampling, device: Any, method: Call
) -> Any:
    """`x` (of `rank` dims) resized along `axis`."""
    coords = _coordinates(call, axis, how.transform, device, method)
    view = (-1,) + (1,) * (rank - axis.dim - 1)  # per-position values along the axis
    if how.mode == "nearest":
        out = call(torch.index_select, x, axis.dim, _nearest(call, coords, axis, how, method))
    else:
        indices, weights = _taps(call, coords, axis, how, method)
        out = None
        for index, weight in zip(indices, weights, strict=True):
            picked = call(torch.index_select, x, axis.dim, index)
            term = call(operator.mul, picked, call(torch.reshape, weight, view))
            out = term if out is None else call(operator.add, out, term)
    if how.transform == "tf_crop_and_resize":
        last = _arith(call, operator.sub, axis.n_in, 1)
        outside = call(
            operator.or_, call(operator.lt, coords, 0.0), call(operator.gt, coords, last)
        )
        out = call(torch.where, call(torch.reshape, outside, view), how.extrapolation, out)
    return out


def resample(
    call: Call, x: Any, rank: int, axes: list[Axis], how: Sampling, device: Any, method: Call
) -> Any:
    """`x` (of `rank` dims) resized along each planned axis in turn."""
    if how.mode not in ("nearest", "linear", "cubic"):
        raise SampleError(f"mode {how.mode!r}")
    if how.transform not in TRANSFORMS:
        raise SampleError(f"coordinate_transformation_mode {how.transform!r}")
    for axis in axes:
        x = resample_axis(call, x, rank, axis, how, device, method)
    return x


def eager(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The `call` of the converter's module: run it."""
    return fn(*args, **kwargs)


def eager_method(name: str, tensor: torch.Tensor, *args: Any) -> Any:
    return getattr(tensor, name)(*args)
