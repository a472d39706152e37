"""ONNX Resize as `OnnxResizeSpec`: only the forms F.interpolate computes exactly.

onnx2torch's converter warns and goes on when a Resize's coordinate transform or
rounding differs from torch's (its nearest is always torch's floor/asymmetric),
so its output can differ from ONNX's. This converter maps each combination of
``mode``, ``coordinate_transformation_mode`` and ``nearest_mode`` to the
F.interpolate call with the same sampling points, and refuses the rest with an
error naming the node:

* nearest: asymmetric + floor is ``nearest``; half_pixel + round_prefer_ceil and
  tf_half_pixel_for_nn + floor are ``nearest-exact`` (``floor((x + 0.5) / s)``);
  half_pixel + round_prefer_floor is the same where no source coordinate falls
  exactly halfway between two pixels: the scale ``p/q`` in lowest terms has an
  odd ``q`` (always so for integer upscaling), checked on the scale (rule
  ``no_ties``);
* linear (1-3 spatial dims) and cubic (2, with ``cubic_coeff_a = -0.75`` and
  ``exclude_outside = 0``, torch's bicubic; any other cubic, TF's among them, is computed
  by ONNX's definition, ``resize_cubic.py``): half_pixel is
  ``align_corners=False``, align_corners is ``align_corners=True``;
  pytorch_half_pixel equals half_pixel where every output length is above 1
  (rule ``out_gt_1``);
* refused: asymmetric linear/cubic, align_corners nearest, tf_crop_and_resize,
  antialias, ``axes``, a keep_aspect_ratio_policy, resizing batch or channels.

Scales give the output size ``floor(in * scale)`` and the coordinate scale
itself (``scale_factor`` with ``recompute_scale_factor`` off); sizes give
``out / in`` (``size``), as in the spec. The product ``in * scale`` is taken in
the scale's float32, as onnxruntime does (`scaled_sizes`): tf2onnx writes a
Keras ``Resizing(7, 9)`` of a 12x12 input as the scales ``float32(7 / 12)`` and
``0.75``, whose float32 product with 12 is 7 where the exact one, and torch's
double, is 6.99999976. Where the two floors differ, the call is ATen's
``upsample_*`` with both the output size and the scales (`aten_resize`): the
size from float32, the coordinates from the scale, as the spec says.

Upsample-9 (tf2onnx's resize below opset 10) is Resize-10 by another name and converts
as it does.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import ConverterError, add, mapping_of
from .resize_cubic import TRANSFORMS as CUBIC_TRANSFORMS
from .resize_cubic import cubic_resize, eager, eager_method

_NEAREST = {
    ("asymmetric", "floor"): ("nearest", None),
    ("tf_half_pixel_for_nn", "floor"): ("nearest-exact", None),
    ("half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("half_pixel", "round_prefer_floor"): ("nearest-exact", "no_ties"),
    ("pytorch_half_pixel", "round_prefer_ceil"): ("nearest-exact", "out_gt_1"),
}
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


class ResizeError(ValueError):
    """A Resize whose scales make torch's result differ from ONNX's."""


def ties_possible(scale: float) -> bool:
    """Whether some half_pixel source coordinate ``(x + 0.5) / scale - 0.5`` is exactly halfway
    between two pixels: for ``scale = p/q`` in lowest terms, only when ``q`` is even."""
    return Fraction(scale).limit_denominator(1 << 20).denominator % 2 == 0


def plan(rule: str | None, ins: list, outs: list, scales: list | None) -> None:
    """Raises ResizeError when `rule` does not hold for these sizes (None: unknown now)."""
    if rule == "no_ties":
        if scales is None:
            if any(i is None or o is None for i, o in zip(ins, outs, strict=True)):
                raise ResizeError("round_prefer_floor: the scale is not known")
            scales = [o / i for i, o in zip(ins, outs, strict=True)]
        if any(ties_possible(s) for s in scales):
            raise ResizeError(
                f"round_prefer_floor at scales {scales}: some pixels fall halfway, where "
                "torch's nearest-exact rounds up"
            )
    if rule == "upsample" and (scales is None or any(s < 1 for s in scales)):
        raise ResizeError(
            "Resize-10 nearest rounds up when downsampling; torch's nearest rounds down"
        )
    if rule == "out_gt_1":
        if scales is not None and all(s >= 2 for s in scales):
            return
        if any(o is None or o <= 1 for o in outs):
            raise ResizeError("pytorch_half_pixel with an output length that may be 1")


class OnnxResizeSpec(nn.Module):
    """ONNX Resize computed by F.interpolate in one of the exact forms (see the module doc)."""

    def __init__(
        self,
        mode: str,
        align_corners: bool | None,
        rule: str | None,
        slots: tuple,
        cubic: tuple | None = None,
    ):
        super().__init__()
        #: ONNX's own cubic (``resize_cubic.py``): (cubic_coeff_a, exclude_outside, transform)
        self.cubic = cubic
        self.mode = mode  # "nearest", "nearest-exact", "linear" (any rank) or "cubic"
        self.align_corners = align_corners
        self.rule = rule
        self.slots = (
            slots  # which of "roi", "scales", "sizes" follow x (the node's non-empty inputs)
        )

    def torch_mode(self, spatial: int) -> str:
        if self.mode == "linear":
            return _LINEAR[spatial]
        if self.mode == "cubic":
            if spatial != 2:
                raise ResizeError(f"cubic over {spatial} dims: torch's bicubic is 2-D only")
            return "bicubic"
        return self.mode

    def cubic_form(self, device) -> dict:
        """`cubic_resize`'s ``how`` but the method caller (that of the module or the graph)."""
        if self.cubic is None:
            raise ResizeError("not a cubic Resize of ONNX's definition")
        a, exclude, transform = self.cubic
        return {"a": a, "exclude_outside": exclude, "transform": transform, "device": device}

    def forward(self, x, *args):
        given = dict(zip(self.slots, args, strict=True))
        scales, sizes = given.get("scales"), given.get("sizes")
        if self.cubic is not None:
            return self._cubic(x, scales, sizes)
        spatial = x.dim() - 2
        mode = self.torch_mode(spatial)
        ins = list(x.shape[2:])
        if sizes is not None and sizes.numel():
            sizes = [int(s) for s in sizes.tolist()]
            if sizes[:2] != list(x.shape[:2]):
                raise ResizeError("torch cannot resize the batch or channel dims")
            plan(self.rule, ins, sizes[2:], None)
            return F.interpolate(x, size=sizes[2:], mode=mode, align_corners=self.align_corners)
        scales = [float(s) for s in scales.tolist()]
        if scales[:2] != [1.0, 1.0]:
            raise ResizeError("torch cannot scale the batch or channel dims")
        outs, differ = scaled_sizes(ins, scales[2:])
        plan(self.rule, ins, outs, scales[2:])
        if differ:
            op, call_args = aten_resize(mode, x, outs, scales[2:], self.align_corners)
            return op(*call_args)
        return F.interpolate(
            x,
            scale_factor=scales[2:],
            mode=mode,
            align_corners=self.align_corners,
            recompute_scale_factor=False,
        )

    def _cubic(self, x, scales, sizes):
        ins = list(x.shape[2:])
        if sizes is not None and sizes.numel():
            outs = [int(s) for s in sizes.tolist()]
            if outs[:2] != list(x.shape[:2]):
                raise ResizeError("Resize of the batch or channel dims")
            outs = outs[2:]
            factors = [float(np.float32(o) / np.float32(i)) for i, o in zip(ins, outs, strict=True)]
        else:
            factors = [float(s) for s in scales.tolist()]
            if factors[:2] != [1.0, 1.0]:
                raise ResizeError("Resize of the batch or channel dims")
            factors = factors[2:]
            outs = scaled_sizes(ins, factors)[0]
        how = {**self.cubic_form(x.device), "method": eager_method}
        return cubic_resize(eager, x, list(zip(ins, outs, factors, strict=True)), how)


def _text(value, default):
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else value


def _slots(node) -> tuple:
    names = ("roi", "scales", "sizes") if len(node.proto.input) > 2 else ("scales",)
    return tuple(n for n, v in zip(names, node.proto.input[1:], strict=False) if v)


def _convert(node, graph):
    attrs = node.attributes
    mode = _text(attrs.get("mode"), "nearest")
    ctm = _text(attrs.get("coordinate_transformation_mode"), "half_pixel")
    nearest = _text(attrs.get("nearest_mode"), "round_prefer_floor")
    refuse = _unsupported(attrs, mode)
    if refuse:
        raise ConverterError(node, refuse)
    a, exclude = float(attrs.get("cubic_coeff_a", -0.75)), int(attrs.get("exclude_outside", 0))
    if mode == "cubic" and (a != -0.75 or exclude):  # not torch's bicubic: ONNX's definition
        if ctm not in CUBIC_TRANSFORMS:
            raise ConverterError(node, f"cubic with {ctm}: not computed")
        return OnnxResizeSpec("cubic", None, None, _slots(node), (a, exclude, ctm)), mapping_of(
            node
        )
    table = _NEAREST if mode == "nearest" else _SMOOTH
    form = table.get((ctm, nearest) if mode == "nearest" else ctm)
    if form is None:
        how = f"{ctm} and {nearest}" if mode == "nearest" else ctm
        raise ConverterError(node, f"{mode} with {how}: no torch interpolation samples the same")
    if mode == "nearest":
        return OnnxResizeSpec(form[0], None, form[1], _slots(node)), mapping_of(node)
    return OnnxResizeSpec(mode, form[0], form[1], _slots(node)), mapping_of(node)


def _unsupported(attrs, mode: str) -> str | None:
    if int(attrs.get("antialias", 0)):
        return "antialias: torch's antialiased interpolation is not ONNX's"
    if attrs.get("axes") is not None:
        return "axes: only the full-rank scales/sizes form is converted"
    if _text(attrs.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        return "keep_aspect_ratio_policy other than stretch"
    if mode not in ("nearest", "linear", "cubic"):
        return f"unknown mode {mode!r}"
    return None


def _convert10(node, graph):
    """Resize-10 and Upsample-9 (the same op): (x, scales) with asymmetric coordinates; its
    nearest takes the pixel below when upsampling (torch's nearest) but the one above when
    downsampling (rule ``upsample``)."""
    mode = _text(node.attributes.get("mode"), "nearest")
    if mode != "nearest":
        raise ConverterError(
            node, f"{mode} with asymmetric coordinates: no torch interpolation matches"
        )
    return OnnxResizeSpec("nearest", None, "upsample", ("scales",)), mapping_of(node)


def register() -> None:
    add("Resize", 10, _convert10, replace=True)
    add("Upsample", 9, _convert10)
    for version in (11, 13, 18, 19):
        add("Resize", version, _convert, replace=True)


__all__ = ["OnnxResizeSpec", "ResizeError", "plan"]
