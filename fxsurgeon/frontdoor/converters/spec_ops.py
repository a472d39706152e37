"""ONNX DepthToSpace, SpaceToDepth, IsInf and LayerNormalization by the spec; onnx2torch's
converters fall short.

* DepthToSpace: onnx2torch refuses mode ``DCR``, the spec's default (the one
  TensorFlow's ``depth_to_space`` exports as), and converts only ``CRD`` (as
  ``pixel_shuffle``). `OnnxDepthToSpaceSpec` does both modes, for DepthToSpace-1
  (DCR only), -11 and -13.
* SpaceToDepth (TensorFlow's ``space_to_depth``): onnx2torch has no converter.
  `OnnxSpaceToDepthSpec` is the spec's reshape [N, C, H/bs, bs, W/bs, bs], transpose
  (0, 3, 5, 1, 2, 4), reshape [N, bs·bs·C, H/bs, W/bs] (the depth ordered (bs, bs, C),
  not ``pixel_unshuffle``'s (C, bs, bs)), for SpaceToDepth-1 and -13.
* IsInf: onnx2torch's ``OnnxIsInf`` drops ``detect_positive``/``detect_negative``
  (``torch.isinf`` whatever they say). `OnnxIsInfSpec` keeps them (IsInf-10, -20).
* LayerNormalization: onnx2torch drops ``stash_type`` (the precision of the
  mean and variance) and needs the input's shape in the model's value_info.
  `OnnxLayerNormSpec` computes the spec's function body: X cast to the stash
  type, normalised over the dims from ``axis`` on, cast back, then ``* Scale + B``.
  The optional Mean and InvStdDev outputs are refused (a node that asks for
  them cannot be converted).
* NonZero: onnx2torch's ``OnnxNonZero`` returns ``torch.nonzero(x)``, [N, rank], the
  transpose of the spec's [rank, N]; a Squeeze or Gather after it that does not look
  at the shape hides it (``torch.squeeze`` skips an axis that is not 1, so TF's
  ``boolean_mask`` happened to compute the right values). `OnnxNonZeroSpec` returns the
  spec's layout (NonZero-9, -13). Its output size depends on the data.

The lowerings are in ``fxsurgeon/lower/more_ops.py`` and ``fxsurgeon/lower/norms.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import nn

from .registry import ConverterError, add, mapping_of

#: LayerNormalization's stash_type -> the dtype its mean and variance are computed in.
STASH_DTYPES = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def depth_to_space(x: torch.Tensor, blocksize: int, mode: str) -> torch.Tensor:
    """[N, C, H, W] -> [N, C / bs², H·bs, W·bs]; DCR takes the depth as (bs, bs, C'), CRD as
    (C', bs, bs)."""
    b = blocksize
    if mode == "CRD":
        return F.pixel_shuffle(x, b)
    y = x.unflatten(1, (b, b, -1)).permute(0, 3, 4, 1, 5, 2)  # [N, C', H, b, W, b]
    return y.flatten(4, 5).flatten(2, 3)


def space_to_depth(x: torch.Tensor, blocksize: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, bs²·C, H / bs, W / bs], the depth ordered (bs, bs, C)."""
    b = blocksize
    y = x.unflatten(3, (-1, b)).unflatten(2, (-1, b))  # [N, C, H', b, W', b]
    return y.permute(0, 3, 5, 1, 2, 4).flatten(1, 3)


class OnnxSpaceToDepthSpec(nn.Module):
    """SpaceToDepth of a 4-D input whose H and W are multiples of ``blocksize``."""

    def __init__(self, blocksize: int):
        super().__init__()
        self.blocksize = blocksize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x, self.blocksize)


class OnnxDepthToSpaceSpec(nn.Module):
    """DepthToSpace of a 4-D input in ``mode`` DCR or CRD."""

    def __init__(self, blocksize: int, mode: str):
        super().__init__()
        self.blocksize = blocksize
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(x, self.blocksize, self.mode)


class OnnxIsInfSpec(nn.Module):
    """IsInf: True where x is +inf (if ``detect_positive``) or -inf (if ``detect_negative``)."""

    def __init__(self, detect_positive: bool, detect_negative: bool):
        super().__init__()
        self.detect_positive = detect_positive
        self.detect_negative = detect_negative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.detect_positive and self.detect_negative:
            return torch.isinf(x)
        if self.detect_positive:
            return torch.isposinf(x)
        if self.detect_negative:
            return torch.isneginf(x)
        return torch.zeros_like(x, dtype=torch.bool)


def layer_norm(x, scale, bias, axis: int, epsilon: float, stash: torch.dtype) -> torch.Tensor:
    """The spec's function body (see module doc)."""
    axis %= x.dim()
    stashed = x.to(stash)
    normalized = F.layer_norm(stashed, stashed.shape[axis:], eps=epsilon).to(x.dtype)
    out = normalized * scale
    return out if bias is None else out + bias


class OnnxLayerNormSpec(nn.Module):
    """LayerNormalization over the dims from ``axis`` on, its statistics in ``stash_dtype``."""

    def __init__(self, axis: int, epsilon: float, stash_dtype: torch.dtype):
        super().__init__()
        self.axis = axis
        self.epsilon = epsilon
        self.stash_dtype = stash_dtype

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return layer_norm(x, scale, bias, self.axis, self.epsilon, self.stash_dtype)


def _depth_to_space(node, graph):
    blocksize = int(node.attributes["blocksize"])
    mode = _text(node.attributes.get("mode", "DCR"))
    if mode not in ("DCR", "CRD"):
        raise ConverterError(node, f"mode {mode!r}; the spec has DCR and CRD")
    if blocksize < 1:
        raise ConverterError(node, f"blocksize {blocksize}")
    return OnnxDepthToSpaceSpec(blocksize, mode), mapping_of(node)


class OnnxNonZeroSpec(nn.Module):
    """NonZero: the indices of the non-zero elements, one column each, [rank, N] int64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(torch.nonzero(x), (1, 0))


def _non_zero(node, graph):
    return OnnxNonZeroSpec(), mapping_of(node)


def _space_to_depth(node, graph):
    blocksize = int(node.attributes["blocksize"])
    if blocksize < 1:
        raise ConverterError(node, f"blocksize {blocksize}")
    return OnnxSpaceToDepthSpec(blocksize), mapping_of(node)


def _is_inf(node, graph):
    positive = bool(node.attributes.get("detect_positive", 1))
    negative = bool(node.attributes.get("detect_negative", 1))
    return OnnxIsInfSpec(positive, negative), mapping_of(node)


def _layer_norm(node, graph):
    if any(node.output_values[1:]):
        raise ConverterError(node, "its Mean/InvStdDev outputs are used (not converted)")
    stash = int(node.attributes.get("stash_type", TensorProto.FLOAT))
    dtype = STASH_DTYPES.get(stash)
    if dtype is None:
        raise ConverterError(node, f"stash_type {stash} is not a floating-point type")
    axis = int(node.attributes.get("axis", -1))
    epsilon = float(node.attributes.get("epsilon", 1e-5))
    from onnx2torch.utils.common import OnnxMapping

    inputs = tuple(n for n in node.input_values if n)
    mapping = OnnxMapping(inputs=inputs, outputs=node.output_values[:1])
    return OnnxLayerNormSpec(axis, epsilon, dtype), mapping


def register() -> None:
    for version in (1, 11, 13):
        add("DepthToSpace", version, _depth_to_space, replace=True)
    for version in (1, 13):
        add("SpaceToDepth", version, _space_to_depth)
    for version in (10, 20):
        add("IsInf", version, _is_inf, replace=True)
    add("LayerNormalization", 17, _layer_norm, replace=True)
    for version in (9, 13):
        add("NonZero", version, _non_zero, replace=True)
