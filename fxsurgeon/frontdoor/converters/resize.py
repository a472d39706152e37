"""ONNX Resize as `OnnxResizeSpec`: F.interpolate where it is exact, else the spec.

onnx2torch's converter warns and goes on when a Resize's coordinate transform or
rounding differs from torch's (its nearest is always torch's floor/asymmetric),
so its output can differ from ONNX's. This converter maps each combination of
``mode``, ``coordinate_transformation_mode`` and ``nearest_mode`` to the
F.interpolate call with the same sampling points where there is one (below); every
other form, and a fast form at scales where its rule fails, is computed by the
spec's definition with gathers and arithmetic (``resize_sample.py``): asymmetric
or half_pixel_symmetric linear/cubic, any nearest rounding, tf_crop_and_resize,
antialias, ``axes``, keep_aspect_ratio_policy, any number of resized dims, batch and
channels among them. The fast forms:

* nearest: asymmetric + floor is ``nearest``; half_pixel + round_prefer_ceil and
  tf_half_pixel_for_nn + floor are ``nearest-exact`` (``floor((x + 0.5) / s)``);
  half_pixel + round_prefer_floor and pytorch_half_pixel + round_prefer_ceil are the same
  where no source coordinate falls exactly halfway, and Resize-10's rounding is ``nearest``
  where it upsamples. torch computes its source index by its own arithmetic (the scale's
  reciprocal in float), which can fall on the other side of an integer than onnxruntime's
  ``(x + 0.5) / s``: so a nearest form is used where both index maps are computed at
  optimize time, over the static sizes, and agree (`same_pixels`), or where the scale is a
  whole number (`repeat_factors`, below, at any size); else the spec's;
* linear (1-3 spatial dims) and cubic (2, with ``cubic_coeff_a = -0.75`` and
  ``exclude_outside = 0``, torch's bicubic; any other cubic, TF's among them, is computed
  by ONNX's definition, ``resize_sample.py``): half_pixel is
  ``align_corners=False``, align_corners is ``align_corners=True``;
  pytorch_half_pixel equals half_pixel where every output length is above 1
  (rule ``out_gt_1``);
* anything else: ``resize_sample.py``. Refused at conversion, naming the node and the
  attribute: a mode, transform, rounding or policy the spec does not define, and
  tf_crop_and_resize without a roi.

Scales give the output size ``floor(in * scale)`` and the coordinate scale
itself (``scale_factor`` with ``recompute_scale_factor`` off); sizes give
``out / in`` (``size``), as in the spec. The product ``in * scale`` is taken in
the scale's float32, as onnxruntime does (`scaled_sizes`): tf2onnx writes a
Keras ``Resizing(7, 9)`` of a 12x12 input as the scales ``float32(7 / 12)`` and
``0.75``, whose float32 product with 12 is 7 where the exact one, and torch's
double, is 6.99999976. Where the two floors differ, the call is ATen's
``upsample_*`` with both the output size and the scales (`aten_resize`): the
size from float32, the coordinates from the scale, as the spec says.

Whole-number upscales (`repeat_factors`): where each resized dim's output length is
``s * in`` for a whole ``s >= 1`` (scales that are whole numbers; sizes the shape analysis
shows to be ``s`` times the input's length at every size, as tf2onnx's ``Shape(x)[2:] * 2``
of an UpSampling2D), output position ``p = s k + r`` (``0 <= r < s``) reads, by the spec:

* asymmetric: ``c = p / s = k + r / s``, floor: pixel ``k`` (Resize-10 upsamples: floor);
* tf_half_pixel_for_nn: ``c = k + (r + 1/2) / s``, floor: ``k``;
* half_pixel and pytorch_half_pixel (its output is longer than 1 unless ``s = in = 1``,
  where both read pixel 0): ``c = k + (2r + 1 - s) / (2s)``, strictly inside
  ``(k - 1/2, k + 1/2)``: both round_prefer modes give ``k`` (never a tie);

and torch's nearest-exact reads ``floor((p + 1/2) in / out) = floor(k + (r + 1/2) / s) = k``:
every output pixel is its input pixel repeated. The other roundings of these transforms
(ceil; floor of half_pixel; rounding of asymmetric) read ``k + 1`` or ``k - 1`` at some
``r``, align_corners's ``c`` depends on ``in``: those keep `same_pixels` or the spec's.
In float32: ``p + 1/2`` is exact (``p < 2**23``); onnxruntime rounds at most twice after
it, torch (ATen's kernels, and the decomposition torch.compile uses) at most three times,
each within ``2**-24`` relative, so each ``c`` is within ``3 (k + 1) 2**-24`` (and a hair)
of its exact value, while the exact values stay ``1 / (2s)`` or more from where the
roundings change pixel (``r / s <= 1 - 1/s``; ``k + 1/2 +- 1/(2s)``; ``k`` itself is exact
in ``p / s``). So both pick ``k`` wherever ``s (k + 1) <= out < 2**21`` (`EXACT_BELOW`):
a static length is checked; a length known only at run time is taken to be below 2**21
(2,097,152 positions along one axis).

Resize-10 (and Upsample-9, tf2onnx's resize below opset 10, the same op) samples at
asymmetric coordinates; onnxruntime's nearest there takes the pixel below when
upsampling and the one above when downsampling ("simple" rounding).
"""

from __future__ import annotations

import math

import numpy as np
import sympy
import torch
import torch.nn.functional as F
from torch import nn

from .registry import ConverterError, add, mapping_of
from .resize_sample import (
    NEAREST_MODES,
    POLICIES,
    TRANSFORMS,
    Axis,
    SampleError,
    Sampling,
    eager,
    eager_method,
    plan_axes,
    resample,
)

_NEAREST = {  # every one checked by `same_pixels`
    ("asymmetric", "floor"): "nearest",
    ("tf_half_pixel_for_nn", "floor"): "nearest-exact",
    ("half_pixel", "round_prefer_ceil"): "nearest-exact",
    ("half_pixel", "round_prefer_floor"): "nearest-exact",
    ("pytorch_half_pixel", "round_prefer_ceil"): "nearest-exact",
    ("pytorch_half_pixel", "round_prefer_floor"): "nearest-exact",
    ("asymmetric", "simple"): "nearest",  # Resize-10
}
#: the nearest forms whose pixel at a whole-number upscale s is p // s, torch's
#: nearest-exact's, at every size (module doc)
REPEATS = frozenset(
    {
        ("asymmetric", "floor"),
        ("asymmetric", "simple"),
        ("tf_half_pixel_for_nn", "floor"),
        ("half_pixel", "round_prefer_floor"),
        ("half_pixel", "round_prefer_ceil"),
        ("pytorch_half_pixel", "round_prefer_floor"),
        ("pytorch_half_pixel", "round_prefer_ceil"),
    }
)
#: output lengths below this keep float32's source coordinates within the proof's margin
EXACT_BELOW = 2**21
_SMOOTH = {  # coordinate_transformation_mode -> (align_corners, rule)
    "half_pixel": (False, None),
    "align_corners": (True, None),
    "pytorch_half_pixel": (False, "out_gt_1"),
}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


#: (torch mode, spatial dims) -> ATen's upsample taking both the output size and the scales
_ATEN = {
    ("nearest", 1): "upsample_nearest1d",
    ("nearest", 2): "upsample_nearest2d",
    ("nearest", 3): "upsample_nearest3d",
    ("nearest-exact", 1): "_upsample_nearest_exact1d",
    ("nearest-exact", 2): "_upsample_nearest_exact2d",
    ("nearest-exact", 3): "_upsample_nearest_exact3d",
    ("linear", 1): "upsample_linear1d",
    ("bilinear", 2): "upsample_bilinear2d",
    ("trilinear", 3): "upsample_trilinear3d",
    ("bicubic", 2): "upsample_bicubic2d",
}


def scaled_sizes(ins: list, scales: list[float]) -> tuple[list, bool]:
    """``floor(in * scale)`` with the product in float32 (onnxruntime's; None stays None),
    and whether F.interpolate's product in double floors any dim otherwise."""
    outs = [
        None if i is None else int(np.floor(np.float32(i) * np.float32(s)))
        for i, s in zip(ins, scales, strict=True)
    ]
    doubles = [None if i is None else math.floor(i * s) for i, s in zip(ins, scales, strict=True)]
    return outs, outs != doubles


def aten_resize(mode: str, x, sizes: list, scales: list, align_corners) -> tuple:
    """ATen's ``upsample_*`` for `mode` and its arguments, the output size and the scales
    both given: ``op(x, sizes, [align_corners,] *scales)`` (nearest takes no corners)."""
    op = getattr(torch.ops.aten, _ATEN[(mode, len(sizes))]).default
    if mode.startswith("nearest"):
        return op, (x, list(sizes), *scales)
    return op, (x, list(sizes), bool(align_corners), *scales)


def whole_factor(n_in, n_out) -> int | None:
    """The whole ``s >= 1`` with ``n_out == s * n_in`` at every size, else None. Lengths are
    ints or sympy expressions of the input dims' symbols (the shape analysis'); a static
    output at or above `EXACT_BELOW` has none."""
    if isinstance(n_in, int) and isinstance(n_out, int):
        if 0 < n_in <= n_out < EXACT_BELOW and n_out % n_in == 0:
            return n_out // n_in
        return None
    if not all(isinstance(n, (int, sympy.Expr)) for n in (n_in, n_out)):
        return None  # e.g. a SymInt of a trace: not shown
    ratio = sympy.simplify(sympy.sympify(n_out) / sympy.sympify(n_in))
    if ratio.is_Integer and int(ratio) >= 1:
        return int(ratio)
    return None


def repeat_factors(how: Sampling, ins: list, outs: list) -> list[int] | None:
    """Each dim's whole upscale where `how` is a `REPEATS` form and every dim has one (then
    torch's nearest-exact picks the spec's pixels at every size, module doc), else None."""
    if how.mode != "nearest" or (how.transform, how.nearest) not in REPEATS:
        return None
    factors = [whole_factor(i, o) for i, o in zip(ins, outs, strict=True)]
    return None if any(f is None for f in factors) else factors  # type: ignore[return-value]


class ResizeError(ValueError):
    """A Resize whose scales make torch's result differ from ONNX's."""


def plan(rule: str | None, ins: list, outs: list, scales: list | None) -> None:
    """Raises ResizeError when `rule` does not hold for these sizes (None: unknown now)."""
    if rule == "out_gt_1":
        if scales is not None and all(s >= 2 for s in scales):
            return
        if any(o is None or o <= 1 for o in outs):
            raise ResizeError("pytorch_half_pixel with an output length that may be 1")


def same_pixels(mode: str, how: Sampling, ins: list, outs: list, scales: list | None) -> None:
    """Raises ResizeError unless F.interpolate's nearest `mode` picks onnxruntime's pixel at
    every output position of every dim: both index maps computed on a ramp, per dim (the
    sampling is separable), with the call the fast path makes (the output size, and the
    scale where one is given). Sizes must be static."""
    for k, (n_in, n_out) in enumerate(zip(ins, outs, strict=True)):
        if not isinstance(n_in, int) or not isinstance(n_out, int):
            raise ResizeError("nearest at a size known only at run time")
        ramp = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, n_in)
        given = None if scales is None else scales[k]
        op, call_args = aten_resize(mode, ramp, [n_out], [given], None)
        scale = given if given is not None else float(np.float32(n_out) / np.float32(n_in))
        axis = Axis(2, n_in, n_out, float(np.float32(scale)))
        want = resample(eager, ramp, 3, [axis], how, ramp.device, eager_method)
        if not torch.equal(op(*call_args), want):
            raise ResizeError(f"torch's nearest picks other pixels at {n_in} -> {n_out}")


class OnnxResizeSpec(nn.Module):
    """ONNX Resize: F.interpolate in one of the exact forms (`fast`), else the spec's
    definition (``resize_sample.py``)."""

    def __init__(
        self,
        sampling: Sampling,
        slots: tuple,
        axes: list[int] | None = None,
        policy: str = "stretch",
        fast: tuple | None = None,
    ):
        super().__init__()
        self.sampling = sampling
        self.slots = slots  # which of "roi", "scales", "sizes" follow x (non-empty inputs)
        self.axes = axes
        self.policy = policy
        #: (torch mode, align_corners, rule) of F.interpolate's exact form, or None
        self.fast = fast

    def torch_mode(self, spatial: int) -> str:
        """F.interpolate's mode of the fast form over `spatial` dims (ResizeError: none)."""
        if self.fast is None:
            raise ResizeError("no F.interpolate form")
        mode = self.fast[0]
        if spatial not in (1, 2, 3) or (mode == "cubic" and spatial != 2):
            raise ResizeError(f"{mode} over {spatial} dims")
        if mode == "linear":
            return _LINEAR[spatial]
        return "bicubic" if mode == "cubic" else mode

    def forward(self, x, *args):
        given = dict(zip(self.slots, args, strict=True))
        scales, sizes, roi = given.get("scales"), given.get("sizes"), given.get("roi")
        if sizes is not None and not sizes.numel():
            sizes = None
        if self.fast is not None:
            try:
                return self._interpolate(x, scales, sizes)
            except ResizeError:
                pass  # not exact at these sizes: the spec's definition
        if self.sampling.mode != "nearest" and not x.is_floating_point():
            raise ResizeError(f"{self.sampling.mode} Resize of a {x.dtype} tensor")
        axes = plan_axes(
            eager,
            list(x.shape),
            self.axes,
            None if sizes is not None else [float(s) for s in scales.tolist()],
            None if sizes is None else [int(s) for s in sizes.tolist()],
            roi if roi is not None and roi.numel() else None,
            self.policy,
            self.sampling.transform,
        )
        return resample(eager, x, x.dim(), axes, self.sampling, x.device, eager_method)

    def _interpolate(self, x, scales, sizes):
        mode = self.torch_mode(x.dim() - 2)
        _, align_corners, rule = self.fast  # type: ignore[misc]
        ins = list(x.shape[2:])
        if sizes is not None:
            sizes = [int(s) for s in sizes.tolist()]
            if sizes[:2] != list(x.shape[:2]):
                raise ResizeError("torch cannot resize the batch or channel dims")
            if repeat_factors(self.sampling, ins, sizes[2:]) is not None:
                return F.interpolate(x, size=sizes[2:], mode="nearest-exact")
            plan(rule, ins, sizes[2:], None)
            if mode.startswith("nearest"):
                same_pixels(mode, self.sampling, ins, sizes[2:], None)
            return F.interpolate(x, size=sizes[2:], mode=mode, align_corners=align_corners)
        scales = [float(s) for s in scales.tolist()]
        if scales[:2] != [1.0, 1.0]:
            raise ResizeError("torch cannot scale the batch or channel dims")
        outs, differ = scaled_sizes(ins, scales[2:])
        if repeat_factors(self.sampling, ins, outs) is not None:
            return F.interpolate(x, size=outs, mode="nearest-exact")
        plan(rule, ins, outs, scales[2:])
        if mode.startswith("nearest"):
            same_pixels(mode, self.sampling, ins, outs, scales[2:])
        if differ:
            op, call_args = aten_resize(mode, x, outs, scales[2:], align_corners)
            return op(*call_args)
        return F.interpolate(
            x,
            scale_factor=scales[2:],
            mode=mode,
            align_corners=align_corners,
            recompute_scale_factor=False,
        )


def _text(value, default):
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else value


def _slots(node) -> tuple:
    names = ("roi", "scales", "sizes") if len(node.proto.input) > 2 else ("scales",)
    return tuple(n for n, v in zip(names, node.proto.input[1:], strict=False) if v)


def _fast(how: Sampling) -> tuple | None:
    """F.interpolate's exact form of these attributes: (mode, align_corners, rule)."""
    if how.antialias:
        return None
    if how.mode == "nearest":
        form = _NEAREST.get((how.transform, how.nearest))
        return None if form is None else (form, None, None)
    if how.mode == "cubic" and (how.a != -0.75 or how.exclude_outside):
        return None  # not torch's bicubic
    smooth = _SMOOTH.get(how.transform)
    return None if smooth is None else (how.mode, *smooth)


def _convert(node, graph):
    attrs = node.attributes
    how = Sampling(
        mode=_text(attrs.get("mode"), "nearest"),
        transform=_text(attrs.get("coordinate_transformation_mode"), "half_pixel"),
        nearest=_text(attrs.get("nearest_mode"), "round_prefer_floor"),
        a=float(attrs.get("cubic_coeff_a", -0.75)),
        exclude_outside=bool(int(attrs.get("exclude_outside", 0))),
        antialias=bool(int(attrs.get("antialias", 0))),
        extrapolation=float(attrs.get("extrapolation_value", 0.0)),
    )
    policy = _text(attrs.get("keep_aspect_ratio_policy"), "stretch")
    slots = _slots(node)
    refuse = _unsupported(how, policy, slots)
    if refuse:
        raise ConverterError(node, refuse)
    axes = attrs.get("axes")
    axes = None if axes is None else [int(a) for a in axes]
    fast = _fast(how) if axes is None and policy == "stretch" else None
    return OnnxResizeSpec(how, slots, axes, policy, fast), mapping_of(node)


def _unsupported(how: Sampling, policy: str, slots: tuple) -> str | None:
    """Why the spec does not define these attributes (None: it does)."""
    if how.mode not in ("nearest", "linear", "cubic"):
        return f"mode {how.mode!r} is not nearest, linear or cubic"
    if how.transform not in TRANSFORMS:
        return f"coordinate_transformation_mode {how.transform!r} is not defined"
    if how.mode == "nearest" and how.nearest not in NEAREST_MODES[:4]:
        return f"nearest_mode {how.nearest!r} is not defined"
    if policy not in POLICIES:
        return f"keep_aspect_ratio_policy {policy!r} is not defined"
    if how.transform == "tf_crop_and_resize" and "roi" not in slots:
        return "coordinate_transformation_mode tf_crop_and_resize without a roi input"
    return None


def _convert10(node, graph):
    """Resize-10 and Upsample-9 (the same op): (x, scales) with asymmetric coordinates; its
    nearest takes the pixel below when upsampling (torch's nearest) but the one above when
    downsampling (rule ``upsample``)."""
    mode = _text(node.attributes.get("mode"), "nearest")
    if mode not in ("nearest", "linear"):
        raise ConverterError(node, f"mode {mode!r} is not nearest or linear (Resize-10)")
    how = Sampling(mode=mode, transform="asymmetric", nearest="simple")
    return OnnxResizeSpec(how, ("scales",), fast=_fast(how)), mapping_of(node)


def register() -> None:
    add("Resize", 10, _convert10, replace=True)
    add("Upsample", 9, _convert10)
    for version in (11, 13, 18, 19):
        add("Resize", version, _convert, replace=True)


__all__ = [
    "OnnxResizeSpec",
    "ResizeError",
    "SampleError",
    "plan",
    "repeat_factors",
    "same_pixels",
    "whole_factor",
]
