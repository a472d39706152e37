"""ONNX GlobalMaxPool, GlobalAveragePool, GlobalLpPool and Pad-18+ by the spec.

onnx2torch has no converter for GlobalMaxPool or GlobalLpPool, none for
GlobalAveragePool-22, and none for Pad from opset 18 on (the ``axes`` input,
the ``wrap`` mode). Keras's GlobalMaxPooling1D/2D export as GlobalMaxPool
(tf2onnx, opset 17: a text CNN). Each module here computes its op as the ONNX
spec says:

* `OnnxGlobalPoolSpec`: over every dim after the first two (batch, channel),
  kept as size 1: the max, the mean, or ``(sum |x|^p)^(1/p)``;
* `OnnxPadSpec`: ``pads`` holds ``[begin..., end...]`` for ``axes`` (all dims
  when absent; negative axes count from the end); a negative pad removes
  elements; ``constant_value`` (default 0) fills in ``constant`` mode,
  ``reflect`` mirrors without the edge, ``edge`` repeats it, ``wrap`` wraps
  around.

The lowering (``fxsurgeon/lower/nn_ops.py``) writes them as ``torch.amax`` /
``torch.mean`` / ``torch.norm``-free arithmetic and ``F.pad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ConverterError, add, mapping_of

#: ONNX Pad modes -> F.pad's
PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def global_pool(x: torch.Tensor, kind: str, p: int = 2) -> torch.Tensor:
    """The global pool of `x` over its dims after the first two, kept as size 1."""
    dims = tuple(range(2, x.dim()))
    if kind == "max":
        return torch.amax(x, dims, keepdim=True)
    if kind == "avg":
        return torch.mean(x, dims, keepdim=True)
    return torch.sum(torch.abs(x) ** p, dims, keepdim=True) ** (1.0 / p)


def torch_pads(pads: list, axes: list[int], rank: int) -> list:
    """ONNX ``[begin..., end...]`` over `axes` -> F.pad's pairs, last dim first,
    up to the first padded dim (the rest of the leading dims are not named)."""
    if len(pads) != 2 * len(axes):
        raise ValueError(f"Pad: {len(pads)} pads for {len(axes)} axes (the spec wants twice)")
    pairs: list = [[0, 0] for _ in range(rank)]
    for i, axis in enumerate(axes):
        pairs[axis % rank] = [pads[i], pads[len(axes) + i]]
    out: list = []
    for axis in reversed(range(rank)):
        out += pairs[axis]
    return out


class OnnxGlobalPoolSpec(nn.Module):
    """GlobalMaxPool / GlobalAveragePool / GlobalLpPool (`kind` max, avg, lp)."""

    def __init__(self, kind: str, p: int = 2):
        super().__init__()
        self.kind = kind
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(x, self.kind, self.p)


class OnnxPadSpec(nn.Module):
    """Pad-18 and later: ``pads`` and optional ``constant_value``, ``axes`` inputs."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode  # the ONNX name

    def forward(
        self,
        input_tensor: torch.Tensor,
        pads: torch.Tensor,
        constant_value: torch.Tensor | None = None,
        axes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rank = input_tensor.dim()
        named = list(range(rank)) if axes is None else [int(a) for a in axes.tolist()]
        pad = torch_pads([int(p) for p in pads.tolist()], named, rank)
        mode = PAD_MODES[self.mode]
        if mode != "constant":
            return F.pad(input_tensor, pad, mode)
        value = 0.0 if constant_value is None else constant_value.item()
        return F.pad(input_tensor, pad, "constant", value)


def _global_pool(kind: str):
    def convert(node, graph):
        p = int(node.attributes.get("p", 2))
        return OnnxGlobalPoolSpec(kind, p), mapping_of(node, tuple(node.input_values))

    return convert


def _pad(node, graph):
    mode = node.attributes.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in PAD_MODES:
        raise ConverterError(node, f"mode {mode!r} is not one of the spec's {sorted(PAD_MODES)}")
    # every input, empty names included: onnx2torch passes the ones after a skipped
    # input by keyword, by the names of OnnxPadSpec.forward
    return OnnxPadSpec(mode), mapping_of(node, tuple(node.input_values))


def register() -> None:
    for version in (1, 22):
        add("GlobalMaxPool", version, _global_pool("max"))
    add("GlobalAveragePool", 22, _global_pool("avg"))
    for version in (2, 22):
        add("GlobalLpPool", version, _global_pool("lp"))
    for version in (18, 19, 21, 23, 24, 25):
        add("Pad", version, _pad)
