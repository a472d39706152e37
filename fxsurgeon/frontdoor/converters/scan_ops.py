"""ONNX CumSum by the spec: onnx2torch's converter reads ``reverse`` with a default of 1.

The ONNX default is ``reverse=0``; onnx2torch's ``OnnxCumSum`` converter uses 1,
so every CumSum without the attribute (a causal mask's position ids, say)
summed from the wrong end. `OnnxCumSumSpec` replaces it for CumSum-11 and -14.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import add, mapping_of


class OnnxCumSumSpec(nn.Module):
    """Cumulative sum along ``axis``; ``exclusive`` leaves out the element itself,
    ``reverse`` sums from the end."""

    def __init__(self, exclusive: bool, reverse: bool):
        super().__init__()
        self.exclusive = exclusive
        self.reverse = reverse

    def forward(self, x: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        dim = int(axis.reshape(-1)[0])
        if self.reverse:
            x = x.flip(dim)
        if self.exclusive:
            head = torch.zeros_like(x.narrow(dim, 0, 1))
            x = torch.cat([head, x.narrow(dim, 0, x.shape[dim] - 1)], dim)
        y = torch.cumsum(x, dim)
        return y.flip(dim) if self.reverse else y


def _convert(node, graph):
    attrs = node.attributes
    module = OnnxCumSumSpec(bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0)))
    return module, mapping_of(node)


def register() -> None:
    for version in (11, 14):
        add("CumSum", version, _convert, replace=True)
