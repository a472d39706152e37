"""ONNX graph inputs of uint16, uint32 and uint64: torch holds them, computes few ops of them.

torch has these dtypes with few kernels: ``Tensor.to`` (a C conversion, onnxruntime's),
``torch.eq``, views and copies run; ``lt``/``gt``, ``add``, ``where``, ``maximum``,
``index_select`` by them and most others do not. So such an input is taken where every op
that reads it is one torch computes exactly (`check_input`): following it through the
layout ops that only move its elements (Identity, Reshape, Squeeze, Unsqueeze, Flatten,
Transpose: their data input), each reader must be

* Cast (``Tensor.to``);
* Equal (``torch.eq``);
* Less, Greater, LessOrEqual, GreaterOrEqual: `OnnxOrderCompare` compares the operands
  mapped to int64 in the same order (`ordered`): uint16 and uint32 widened (exact), uint64's
  bits (its C cast to int64, modulo 2**64) with the sign bit flipped (``x ^ -2**63``: 0 -> -2**63,
  2**64 - 1 -> 2**63 - 1, order kept);
* Shape or Size (no element read), or a graph output.

Any other reader is refused at import, naming the input, its type and the node and op.
ONNX's Gather/GatherElements/GatherND take int32/int64 indices only: an index of these
types comes through a Cast (tf2onnx writes one), which is taken.
"""

from __future__ import annotations

import onnx
import torch
from onnx import TensorProto
from torch import nn

from .registry import add, mapping_of

#: ONNX input types torch holds with few kernels -> the torch dtype
WIDE_INPUTS: dict[int, torch.dtype] = {
    TensorProto.UINT16: torch.uint16,
    TensorProto.UINT32: torch.uint32,
    TensorProto.UINT64: torch.uint64,
}
#: ops that only move their data input's elements: their output is followed
LAYOUT = frozenset({"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose"})
#: ops torch computes exactly on these dtypes (order comparisons by `ordered`)
EXACT = frozenset(
    {"Cast", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Shape", "Size"}
)
ORDER_OPS = {
    "Less": (7, 9, 13),
    "Greater": (7, 9, 13),
    "LessOrEqual": (12, 16),  # 16: _compat.py aliases it to 12 (bfloat16 added)
    "GreaterOrEqual": (12, 16),
}
_SIGN = -(2**63)


def check_input(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    """The first node reading input `name` (through `LAYOUT` ops) that torch cannot compute
    on a uint16/32/64 tensor, or None when every reader is `EXACT`."""
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, value in enumerate(node.input):
            readers.setdefault(value, []).append((node, index))
    pending, seen = [name], {name}
    while pending:
        value = pending.pop()
        for node, index in readers.get(value, []):
            if node.op_type in LAYOUT and index == 0:
                fresh = [o for o in node.output if o and o not in seen]
                seen.update(fresh)
                pending.extend(fresh)
            elif node.op_type not in EXACT:
                return node
    return None


def ordered(x: torch.Tensor) -> torch.Tensor:
    """`x` as int64 in the same order (uint16/32/64; any other dtype as it is)."""
    if x.dtype in (torch.uint16, torch.uint32):
        return x.to(torch.int64)
    if x.dtype == torch.uint64:  # the C cast: modulo 2**64, the same bits
        return torch.bitwise_xor(x.to(torch.int64), _SIGN)
    return x


#: ONNX order comparison -> its torch function (onnx2torch's OnnxCompare table; onnx2torch is
#: not imported here: `import fxsurgeon` works where it cannot be imported)
COMPARE_FUNCTIONS = {
    "Less": torch.less,
    "Greater": torch.greater,
    "LessOrEqual": torch.less_equal,
    "GreaterOrEqual": torch.greater_equal,
}


class OnnxOrderCompare(nn.Module):
    """Less/Greater/LessOrEqual/GreaterOrEqual; uint16/32/64 operands compared `ordered`."""

    def __init__(self, operation_type: str) -> None:
        super().__init__()
        self.compare_function = COMPARE_FUNCTIONS[operation_type]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.compare_function(ordered(x), ordered(y))


def _order_compare(node, graph):
    return OnnxOrderCompare(node.operation_type), mapping_of(node)


def register() -> None:
    for op, versions in ORDER_OPS.items():
        for version in versions:
            add(op, version, _order_compare, replace=True)


__all__ = ["EXACT", "LAYOUT", "WIDE_INPUTS", "OnnxOrderCompare", "check_input", "ordered"]
