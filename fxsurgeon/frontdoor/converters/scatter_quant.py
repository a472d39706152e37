"""ONNX ScatterElements, QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and
MatMulInteger by the spec; onnx2torch has no converter for them.

* ScatterElements (`OnnxScatterElementsSpec`): tf2onnx writes ``tf.dynamic_stitch`` as one
  (zeros of the data's shape, the indices expanded over it, the data), and uses it inside
  its Bincount, Segment*, RaggedTensorToTensor and SparseFillEmptyRows (those also hold
  Unique or Compress, refused). ``updates`` go to ``data`` at ``indices`` along ``axis``,
  negative indices counted from the end; ``reduction`` none is ``torch.scatter``, add /
  mul / max / min are ``scatter_reduce`` sum / prod / amax / amin with the data itself
  included (the spec's ``data[idx] = f(data[idx], update)``). The deprecated Scatter
  (opset 9-10) is ScatterElements without a reduction.
* QuantizeLinear / DequantizeLinear (`OnnxQuantizeLinearSpec`, `OnnxDequantizeLinearSpec`):
  ``tf.quantization.fake_quant_with_min_max_args``/``_vars`` become Q then DQ (uint8, one
  scale). Per tensor (a scalar scale) or per axis (a 1-D scale along ``axis``):
  Q is ``saturate(round_half_even(x / scale) + zero_point)`` in the zero point's type
  (uint8 without one); DQ is ``(x - zero_point) * scale`` in the scale's type. Only 8-bit
  and int32 (DQ) integers: the float8 and 4-bit types of opset 19+ are not converted.
* DynamicQuantizeLinear (`OnnxDynamicQuantizeLinearSpec`; tf2onnx writes it for TFLite's
  dynamic-range quantization): uint8 with the scale ``(max(0, max x) - min(0, min x)) /
  255`` and the zero point ``saturate(round(-min(0, min x) / scale))``, then Q as above
  (`dynamic_quantize`, written with ``call`` as ``logical_shift`` is).
* MatMulInteger (`OnnxMatMulIntegerSpec`): ``tf.linalg.matmul`` of int8/uint8 operands
  with ``output_type=tf.int32`` (tf2onnx adds zero points of 0). ``(a - a_zero_point) @
  (b - b_zero_point)`` in int32; a 1-D ``a_zero_point`` is per row of A (one per M), a 1-D
  ``b_zero_point`` per column of B (one per N), N-D ones broadcast as they are. torch has
  no integer matmul on CUDA: the product is taken in float64, exact (each term is below
  2**16 in magnitude, so every partial sum of fewer than 2**37 terms is an exact double),
  then cast to int32.

The lowerings are in ``fxsurgeon/lower/math_ops.py``.
"""

from __future__ import annotations

import operator

import torch
from torch import nn

from .registry import ConverterError, add, mapping_of
from .resize_sample import Call, eager

#: ScatterElements' reduction -> scatter_reduce's (None: plain scatter).
SCATTER_REDUCE = {"none": None, "add": "sum", "mul": "prod", "max": "amax", "min": "amin"}

#: the integer types Q/DQ convert: dtype -> (lowest, highest).
QUANT_RANGE = {torch.uint8: (0, 255), torch.int8: (-128, 127)}


def scatter_elements(data, indices, updates, axis: int, reduce: str | None) -> torch.Tensor:
    axis %= data.dim()
    indices = torch.where(indices < 0, indices + data.shape[axis], indices).long()
    if reduce is None:
        return torch.scatter(data, axis, indices, updates)
    return torch.scatter_reduce(data, axis, indices, updates, reduce, include_self=True)


class OnnxScatterElementsSpec(nn.Module):
    """ScatterElements along ``axis``, ``reduce`` a scatter_reduce mode or None."""

    def __init__(self, axis: int, reduce: str | None):
        super().__init__()
        self.axis = axis
        self.reduce = reduce

    def forward(self, data, indices, updates) -> torch.Tensor:
        return scatter_elements(data, indices, updates, self.axis, self.reduce)


def along(param: torch.Tensor, axis: int, rank: int) -> torch.Tensor:
    """A per-axis 1-D parameter shaped to broadcast along `axis` of a rank-`rank` tensor (a
    scalar one as it is)."""
    if param.dim() == 0 or rank == 0:
        return param
    return param.reshape((-1,) + (1,) * (rank - 1 - axis % rank))


def dynamic_quantize(call: Call, to: Call, x) -> tuple:
    """DynamicQuantizeLinear's (y, y_scale, y_zero_point) of float `x` (``to`` casts)."""
    low = call(torch.clamp, call(torch.amin, x), max=0.0)
    high = call(torch.clamp, call(torch.amax, x), min=0.0)
    scale = call(operator.truediv, call(operator.sub, high, low), 255.0)
    zero = call(torch.round, call(operator.neg, call(operator.truediv, low, scale)))
    zero = call(torch.clamp, zero, 0, 255)
    scaled = call(operator.add, call(torch.round, call(operator.truediv, x, scale)), zero)
    y = call(torch.clamp, scaled, 0, 255)
    return to(y, torch.uint8), scale, to(zero, torch.uint8)


class OnnxDynamicQuantizeLinearSpec(nn.Module):
    """DynamicQuantizeLinear: x to uint8 with its scale and zero point from its range."""

    def forward(self, x: torch.Tensor):
        return dynamic_quantize(eager, lambda t, dtype: t.to(dtype), x)


class OnnxQuantizeLinearSpec(nn.Module):
    """QuantizeLinear to the zero point's type (uint8 without one), per tensor or along
    ``axis``."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x, scale, zero_point=None) -> torch.Tensor:
        scaled = torch.round(x / along(scale, self.axis, x.dim()))
        dtype = torch.uint8
        if zero_point is not None:
            dtype = zero_point.dtype
            scaled = scaled + along(zero_point, self.axis, x.dim()).to(scaled.dtype)
        low, high = QUANT_RANGE[dtype]
        return torch.clamp(scaled, low, high).to(dtype)


class OnnxDequantizeLinearSpec(nn.Module):
    """DequantizeLinear of an 8- or 32-bit integer x, per tensor or along ``axis``."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x, scale, zero_point=None) -> torch.Tensor:
        centered = x.to(torch.int32)
        if zero_point is not None:
            centered = centered - along(zero_point, self.axis, x.dim()).to(torch.int32)
        return centered.to(scale.dtype) * along(scale, self.axis, x.dim())


def centered(x: torch.Tensor, zero_point: torch.Tensor | None, per_row: bool) -> torch.Tensor:
    """`x` less its zero point in float64; a 1-D zero point ``per_row`` is one per row."""
    wide = x.to(torch.float64)
    if zero_point is None:
        return wide
    if per_row and zero_point.dim() == 1:
        zero_point = zero_point.reshape(-1, 1)
    return wide - zero_point.to(torch.float64)


class OnnxMatMulIntegerSpec(nn.Module):
    """``(a - a_zero_point) @ (b - b_zero_point)`` as int32, computed exactly in float64;
    ``slots`` names the zero points given (either may be absent)."""

    def __init__(self, slots: tuple[str, ...]):
        super().__init__()
        self.slots = slots

    def forward(self, a, b, *zero_points) -> torch.Tensor:
        given = dict(zip(self.slots, zero_points, strict=True))
        a_centered = centered(a, given.get("a_zero_point"), True)
        product = torch.matmul(a_centered, centered(b, given.get("b_zero_point"), False))
        return product.to(torch.int32)


def _scatter_elements(node, graph):
    reduction = node.attributes.get("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction not in SCATTER_REDUCE:
        raise ConverterError(node, f"reduction {reduction!r}")
    axis = int(node.attributes.get("axis", 0))
    return OnnxScatterElementsSpec(axis, SCATTER_REDUCE[reduction]), mapping_of(node)


def _quantize_linear(node, graph):
    return OnnxQuantizeLinearSpec(int(node.attributes.get("axis", 1))), mapping_of(node)


def _dequantize_linear(node, graph):
    return OnnxDequantizeLinearSpec(int(node.attributes.get("axis", 1))), mapping_of(node)


def _dynamic_quantize_linear(node, graph):
    return OnnxDynamicQuantizeLinearSpec(), mapping_of(node)


def _matmul_integer(node, graph):
    names = ("a_zero_point", "b_zero_point")
    slots = tuple(n for n, v in zip(names, node.input_values[2:], strict=False) if v)
    return OnnxMatMulIntegerSpec(slots), mapping_of(node)


def register() -> None:
    add("MatMulInteger", 10, _matmul_integer)
    add("DynamicQuantizeLinear", 11, _dynamic_quantize_linear)
    for version in (11, 13, 16, 18):
        add("ScatterElements", version, _scatter_elements)
    for version in (9, 11):
        add("Scatter", version, _scatter_elements)
    for version in (10, 13):
        add("QuantizeLinear", version, _quantize_linear)
        add("DequantizeLinear", version, _dequantize_linear)
