"""ONNX elementwise math, bitwise ops, ThresholdedRelu, Det and LpNormalization by the spec;
onnx2torch has no converter for them.

What tf2onnx writes them for (opset 17 unless said):

* Acosh, Asinh, Atanh, Cosh, Sinh (`OnnxUnarySpec`): ``tf.math.acosh`` ... ``tf.math.sinh``;
* ThresholdedRelu (`OnnxThresholdedReluSpec`): ``x * cast(x > theta)`` with a constant
  theta (tf-keras' ``ThresholdedReLU`` layer), by tf2onnx's rewriter; ``y = x if x > alpha
  else 0``, which is ``F.threshold(x, alpha, 0)``;
* Det (`OnnxDetSpec`): ``tf.linalg.det`` (MatrixDeterminant), over the last two dims;
* BitShift (`OnnxBinarySpec`): ``tf.bitwise.left_shift``/``right_shift``; tf2onnx casts
  the operands to the unsigned type of their width (int8 -> uint8, int16 -> uint32, int32 ->
  uint64) and the result back. The spec shifts unsigned integers (a right shift is
  logical);
* BitwiseAnd/Or/Xor/Not (`OnnxBinarySpec`, `OnnxBitwiseNotSpec`): ``tf.bitwise.*`` and
  ``tf.bitwise.invert``, from opset 18 only (tf2onnx refuses them below); torch has no
  ``bitwise_not`` of uint16/32/64 (`bitwise_not` flips their bits in int64);
* LpNormalization (`OnnxLpNormalizationSpec`): TFLite's L2_NORMALIZATION (p = 2, the last
  axis). ``x / ||x||_p`` along ``axis``, p 1 or 2; a line whose norm is 0 gives 0s
  (onnxruntime's, where ``F.normalize`` would divide by its ``eps``).

torch has no shifts of uint16/32/64 (``lshift_cpu`` is not implemented for them):
`bit_shift` computes those in int64, the same bits (see its doc). onnx2torch's Cast refuses
those types as targets (tf2onnx's casts around BitShift): `_cast` gives its ``OnnxCast`` the
torch dtype (a C cast, as the spec's: -1 -> 2**64 - 1 and back) and leaves every other Cast
to onnx2torch. The lowerings are in ``fxsurgeon/lower/math_ops.py``.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import nn

from .registry import ConverterError, add, mapping_of
from .resize_sample import Call, eager

#: ONNX op -> the torch function of the same meaning, one operand.
UNARY = {
    "Acosh": "acosh",
    "Asinh": "asinh",
    "Atanh": "atanh",
    "Cosh": "cosh",
    "Sinh": "sinh",
}

#: ONNX op -> the torch function of the same meaning, two broadcast operands.
BINARY = {
    "BitwiseAnd": "bitwise_and",
    "BitwiseOr": "bitwise_or",
    "BitwiseXor": "bitwise_xor",
}

#: ONNX unsigned types onnx2torch's Cast refuses -> the torch dtype.
UNSIGNED_CASTS = {
    TensorProto.UINT16: torch.uint16,
    TensorProto.UINT32: torch.uint32,
    TensorProto.UINT64: torch.uint64,
}

#: unsigned dtypes torch cannot shift, and their widths in bits.
WIDE_UNSIGNED = {torch.uint16: 16, torch.uint32: 32, torch.uint64: 64}

INT64_MAX = (1 << 63) - 1


def logical_shift(call: Call, x, shift, left: bool, bits: int):
    """The unsigned `bits`-wide shift of `x` by `shift`, both int64 holding the unsigned bits
    (uint64 cast modulo 2**64: the same bits; narrower ones exact). A left shift keeps the
    low `bits`; a right shift of ``s >= 1`` is the arithmetic shift by 1 with the sign bit
    cleared, then by ``s - 1`` (the top bits come in as zeros); shifts of ``bits`` or more
    give 0. Written with ``call(fn, *args)``: the module runs it (`eager`), the lowering
    records the calls as graph nodes."""
    if left:
        out = call(torch.bitwise_left_shift, x, shift)
        if bits < 64:
            out = call(torch.bitwise_and, out, (1 << bits) - 1)
    else:
        halved = call(torch.bitwise_and, call(torch.bitwise_right_shift, x, 1), INT64_MAX)
        rest = call(
            torch.bitwise_right_shift,
            halved,
            call(torch.clamp, call(operator.sub, shift, 1), min=0),
        )
        out = call(torch.where, call(operator.eq, shift, 0), x, rest)
    # shift < 0: a uint64 shift from 2**63 on
    too_far = call(torch.logical_or, call(operator.ge, shift, bits), call(operator.lt, shift, 0))
    return call(torch.where, too_far, call(torch.zeros_like, out), out)


def bitwise_not(call: Call, to: Call, x, dtype: torch.dtype):
    """BitwiseNot of `x` of `dtype`; torch has none for uint16/32/64: there it is the int64
    ``bitwise_not`` of the same bits, masked to the width (``to(x, dtype)`` casts)."""
    bits = WIDE_UNSIGNED.get(dtype)
    if bits is None:
        return call(torch.bitwise_not, x)
    flipped = call(torch.bitwise_not, to(x, torch.int64))
    if bits < 64:
        flipped = call(torch.bitwise_and, flipped, (1 << bits) - 1)
    return to(flipped, dtype)


def bit_shift(x: torch.Tensor, shift: torch.Tensor, left: bool) -> torch.Tensor:
    """BitShift of unsigned `x` by `shift` (broadcast)."""
    bits = WIDE_UNSIGNED.get(x.dtype)
    if bits is None:  # uint8: torch shifts it
        fn = torch.bitwise_left_shift if left else torch.bitwise_right_shift
        return fn(x, shift)
    wide, amount = x.to(torch.int64), shift.to(torch.int64)  # uint64: the same bits
    return logical_shift(eager, wide, amount, left, bits).to(x.dtype)


def lp_normalize(call: Call, x, p: int, axis: int):
    """``x / ||x||_p`` along `axis`, 0 where the norm is 0; ``call`` as in `logical_shift`."""
    norm = call(torch.linalg.vector_norm, x, p, axis, True)
    nonzero = call(torch.where, call(operator.eq, norm, 0), 1.0, norm)
    return call(operator.truediv, x, nonzero)


class OnnxUnarySpec(nn.Module):
    """``torch.<function>(x)``."""

    def __init__(self, function: str):
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(torch, self.function)(x)


class OnnxBitwiseNotSpec(nn.Module):
    """BitwiseNot of any integer type, uint16/32/64 included."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bitwise_not(eager, lambda t, dtype: t.to(dtype), x, x.dtype)


class OnnxBinarySpec(nn.Module):
    """``torch.<function>(a, b)`` with numpy broadcasting."""

    def __init__(self, function: str):
        super().__init__()
        self.function = function

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return getattr(torch, self.function)(a, b)


class OnnxBitShiftSpec(nn.Module):
    """BitShift of unsigned integers, ``direction`` LEFT or RIGHT."""

    def __init__(self, left: bool):
        super().__init__()
        self.left = left

    def forward(self, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return bit_shift(x, shift, self.left)


class OnnxThresholdedReluSpec(nn.Module):
    """``x`` where ``x > alpha``, else 0."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.threshold(x, self.alpha, 0.0)


class OnnxDetSpec(nn.Module):
    """The determinant of each square matrix in the last two dims."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(x)


class OnnxLpNormalizationSpec(nn.Module):
    """``x`` divided by its ``p``-norm along ``axis``."""

    def __init__(self, p: int, axis: int):
        super().__init__()
        self.p = p
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lp_normalize(eager, x, self.p, self.axis)


def _unary(node, graph):
    return OnnxUnarySpec(UNARY[node.operation_type]), mapping_of(node)


def _bitwise_not(node, graph):
    return OnnxBitwiseNotSpec(), mapping_of(node)


def _binary(node, graph):
    return OnnxBinarySpec(BINARY[node.operation_type]), mapping_of(node)


def _bit_shift(node, graph):
    direction = node.attributes.get("direction")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("LEFT", "RIGHT"):
        raise ConverterError(node, f"direction {direction!r}; the spec has LEFT and RIGHT")
    return OnnxBitShiftSpec(direction == "LEFT"), mapping_of(node)


def _thresholded_relu(node, graph):
    return OnnxThresholdedReluSpec(float(node.attributes.get("alpha", 1.0))), mapping_of(node)


def _lp_normalization(node, graph):
    p = int(node.attributes.get("p", 2))
    if p not in (1, 2):
        raise ConverterError(node, f"p = {p}; the spec has 1 and 2")
    return OnnxLpNormalizationSpec(p, int(node.attributes.get("axis", -1))), mapping_of(node)


def _det(node, graph):
    return OnnxDetSpec(), mapping_of(node)


def _unsigned_cast(onnx2torch_cast):
    """A Cast converter: onnx2torch's, and an ``OnnxCast`` to `UNSIGNED_CASTS` as well."""
    from onnx2torch.node_converters.cast import OnnxCast

    def convert(node, graph):
        target = node.attributes.get("to")
        if target not in UNSIGNED_CASTS:
            return onnx2torch_cast(node, graph)
        module = OnnxCast(TensorProto.INT64)
        module.torch_dtype = UNSIGNED_CASTS[target]
        return module, mapping_of(node)

    return convert


def register() -> None:
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    for version in (9, 13):
        key = OperationDescription("", "Cast", version)
        original = _CONVERTER_REGISTRY[key]
        if getattr(original, "fxsurgeon_wrapped", False):
            continue
        cast = _unsigned_cast(lambda node, graph, original=original: tuple(original(node, graph)))
        add("Cast", version, cast, replace=True)
        _CONVERTER_REGISTRY[key].fxsurgeon_wrapped = True
    for op in ("Acosh", "Asinh", "Atanh", "Cosh", "Sinh"):
        add(op, 9, _unary)
        add(op, 22, _unary)
    for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        add(op, 18, _binary)
    add("BitwiseNot", 18, _bitwise_not)
    add("BitShift", 11, _bit_shift)
    add("ThresholdedRelu", 10, _thresholded_relu)
    add("ThresholdedRelu", 22, _thresholded_relu)
    add("Det", 11, _det)
    add("Det", 22, _det)
    for version in (1, 22):
        add("LpNormalization", version, _lp_normalization)
