"""The opset-18 forms of ops onnx2torch converts only up to opset 17: tf2onnx's ``--opset 18``
writes them for every ``tf.reduce_*`` and ``tf.split``, and onnx2torch finds no converter
for the version in force (its lookup takes the op's latest version at or below the model's
opset: ReduceMean-18, not ReduceMean-13).

* ReduceL1/L2/LogSum/LogSumExp/Max/Mean/Min/Prod/SumSquare-18: ``axes`` moved from an
  attribute to an optional input (as ReduceSum's at 13), with ``noop_with_empty_axes``.
  Constant axes (tf2onnx's) give onnx2torch's own `OnnxReduceStaticAxes`, as the
  attribute did; no axes reduce over every dim, or, with ``noop_with_empty_axes``, are the
  identity (`OnnxCopyIdentity`). Axes computed at run time are refused naming the node.
* Split-18: the ``split`` input as at 13 (onnx2torch's `OnnxSplit13`), or a
  ``num_outputs`` attribute: parts of ``ceil(n / num_outputs)``, the last one smaller
  (`OnnxSplitSpec`, `split_sizes`), where Split-13 cut ``n / outputs`` each.

The existing lowerings take the onnx2torch modules; `OnnxSplitSpec`'s is in
``fxsurgeon/lower/data_sized.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ConverterError, add, mapping_of

#: the reductions whose axes became an input at opset 18 (ReduceSum's did at 13)
REDUCTIONS_18 = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
)


def split_sizes(length: int, parts: int) -> list[int]:
    """Split-18's sizes for ``num_outputs = parts`` of a dim of `length`: ``ceil(length /
    parts)`` each, the last one what is left (refused where nothing is)."""
    size = -(-length // parts)
    last = length - size * (parts - 1)
    if last <= 0:
        raise ValueError(f"{length} cannot be split into {parts} parts of {size}")
    return [size] * (parts - 1) + [last]


class OnnxSplitSpec(nn.Module):
    """Split-18 along ``axis`` into ``parts`` (its ``num_outputs``)."""

    def __init__(self, axis: int, parts: int):
        super().__init__()
        self.axis = axis
        self.parts = parts

    def forward(self, x: torch.Tensor):
        sizes = split_sizes(x.shape[self.axis], self.parts)
        return torch.split(x, sizes, self.axis)


def _reduce(node, graph):
    from onnx2torch.node_converters.identity import OnnxCopyIdentity
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.utils.common import get_const_value

    names = node.input_values
    axes: list[int] = []
    if len(names) > 1 and names[1]:
        try:
            value = get_const_value(names[1], graph)
        except KeyError:
            raise ConverterError(node, "axes computed at run time") from None
        axes = [int(a) for a in torch.as_tensor(value).reshape(-1).tolist()]
    mapping = mapping_of(node, (names[0],))
    if not axes and int(node.attributes.get("noop_with_empty_axes", 0)):
        return OnnxCopyIdentity(), mapping
    keepdims = int(node.attributes.get("keepdims", 1))
    return OnnxReduceStaticAxes(node.operation_type, axes or None, keepdims), mapping


def _split(node, graph):
    from onnx2torch.node_converters.split import OnnxSplit13

    axis = int(node.attributes.get("axis", 0))
    names = node.input_values
    if len(names) > 1 and names[1]:  # sizes given: Split-13's
        return OnnxSplit13(len(node.output_values), axis), mapping_of(node)
    parts = node.attributes.get("num_outputs")
    if parts is None:
        raise ConverterError(node, "neither split nor num_outputs")
    if int(parts) != len(node.output_values):
        raise ConverterError(node, f"num_outputs {parts} but {len(node.output_values)} outputs")
    return OnnxSplitSpec(axis, int(parts)), mapping_of(node)


def register() -> None:
    for op in REDUCTIONS_18:
        add(op, 18, _reduce)
    add("Split", 18, _split)
