"""ONNX Compress and Unique by the spec: ops whose output size is a size of the data, like
NonZero (``spec_ops``); onnx2torch has no converter for them.

What tf2onnx writes them for: Unique for ``tf.unique`` / ``unique_with_counts``
(``sorted=0``: TF's order of first occurrence) and inside Bincount and the sorted Segment
ops (``sorted=1``, ``axis=0`` over [n] or [n, 2] rows); Compress inside Bincount,
SparseFillEmptyRows and RaggedTensorToTensor (``axis=0`` or none).

* Compress (`OnnxCompressSpec`): the slices along ``axis`` (of the flattened input without
  one) where ``condition`` is true: ``index_select(x, axis, nonzero(condition))``; a
  condition shorter than the axis drops the slices past it, as the spec says (``nonzero``
  picks no index past its length).
* Unique (`OnnxUniqueSpec`): the distinct elements (of the flattened input, or the distinct
  slices along ``axis``) with, per the spec, the index of each one's first occurrence, each
  input element's (slice's) index among them, and their counts. ``torch.unique`` gives them
  sorted with the inverse and the counts; the first occurrences are the least position
  mapped to each (``scatter_reduce`` amin of the positions by the inverse); ``sorted=0``
  orders everything by first occurrence (``argsort`` of the first occurrences; the inverse
  through that permutation's inverse).

Both are written with ``call(fn, *args)`` (`eager` here; the lowering,
``fxsurgeon/lower/data_sized.py``, records the same calls as graph nodes, the output size an
unbacked symbol as NonZero's).
"""

from __future__ import annotations

import operator

import torch
from torch import nn

from .registry import ConverterError, add, mapping_of
from .resize_sample import Call, eager


def compress(call: Call, x, condition, axis: int | None):
    """Compress of `x` by the 1-D bool `condition` along `axis` (None: flattened)."""
    picks = call(torch.reshape, call(torch.nonzero, condition), (-1,))
    if axis is None:
        return call(torch.index_select, call(torch.reshape, x, (-1,)), 0, picks)
    return call(torch.index_select, x, axis, picks)


def unique(call: Call, x, axis: int | None, ordered: bool) -> tuple:
    """Unique's four outputs (values, first indices, inverse indices, counts) of `x` along
    `axis` (None: flattened), sorted or in order of first occurrence."""
    if axis is None:
        x = call(torch.reshape, x, (-1,))
    dim = 0 if axis is None else axis
    found = call(torch.unique, x, sorted=True, return_inverse=True, return_counts=True, dim=dim)
    values, inverse, counts = (call(operator.getitem, found, i) for i in range(3))
    positions = call(operator.sub, call(torch.cumsum, call(torch.ones_like, inverse), 0), 1)
    first = call(
        torch.scatter_reduce,
        call(torch.zeros_like, counts),
        0,
        inverse,
        positions,
        "amin",
        include_self=False,  # every value occurs: each slot is reduced over its positions
    )
    if ordered:
        return values, first, inverse, counts
    order = call(torch.argsort, first)  # first occurrences are distinct: a strict order
    rank = call(torch.argsort, order)
    values = call(torch.index_select, values, dim, order)
    pick = [call(torch.index_select, t, 0, order) for t in (first, counts)]
    return values, pick[0], call(torch.index_select, rank, 0, inverse), pick[1]


class OnnxCompressSpec(nn.Module):
    """Compress along ``axis`` (None: of the flattened input)."""

    def __init__(self, axis: int | None):
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        axis = None if self.axis is None else self.axis % x.dim()
        return compress(eager, x, condition, axis)


class OnnxUniqueSpec(nn.Module):
    """Unique along ``axis`` (None: flattened), ``ordered`` (the spec's ``sorted``) or in
    order of first occurrence; the first ``outputs`` of its four outputs."""

    def __init__(self, axis: int | None, ordered: bool, outputs: int):
        super().__init__()
        self.axis = axis
        self.ordered = ordered
        self.outputs = outputs

    def forward(self, x: torch.Tensor):
        axis = None if self.axis is None else self.axis % x.dim()
        found = unique(eager, x, axis, self.ordered)
        return found[0] if self.outputs == 1 else found[: self.outputs]


def _axis(node) -> int | None:
    axis = node.attributes.get("axis")
    return None if axis is None else int(axis)


def _compress(node, graph):
    return OnnxCompressSpec(_axis(node)), mapping_of(node)


def _unique(node, graph):
    outputs = node.output_values
    if not all(outputs):  # an output left out before a later one
        raise ConverterError(node, "an output named '' before a later one")
    ordered = bool(int(node.attributes.get("sorted", 1)))
    return OnnxUniqueSpec(_axis(node), ordered, len(outputs)), mapping_of(node)


def register() -> None:
    for version in (9, 11):
        add("Compress", version, _compress)
    add("Unique", 11, _unique)
