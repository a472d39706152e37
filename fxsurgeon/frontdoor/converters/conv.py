"""ONNX Conv with ``auto_pad=SAME_UPPER``/``SAME_LOWER``, or a weight computed in the graph,
which onnx2torch refuses.

SAME padding depends on the input size when a stride is above 1, so
`OnnxConvSpec` computes the pads from the input at run time as the ONNX spec
says (output size ``ceil(in / stride)``, the odd pad at the end for SAME_UPPER
and at the start for SAME_LOWER). The weight and bias stay node inputs (ONNX
initializers), so they become parameters like any other weight. Conv nodes
without SAME padding go to onnx2torch's own converter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import add, mapping_of

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def same_pads(sizes, kernel, strides, dilations, upper: bool) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial dim for SAME auto_pad."""
    pads = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        pads.append((small, total - small) if upper else (total - small, small))
    return pads


class OnnxConvSpec(nn.Module):
    """Conv(x, W[, B]) as the ONNX spec says, W and B taken as inputs: SAME padding
    computed from the input size (``pads=None``), or the node's explicit ``pads``
    (``(begin, end)`` per spatial dim) where onnx2torch's converter cannot take the
    node (a weight computed in the graph, e.g. weight normalisation)."""

    def __init__(self, kernel, strides, dilations, groups: int, upper: bool = True, pads=None):
        super().__init__()
        self.kernel = None if kernel is None else tuple(kernel)  # None: the weight's, at run time
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.groups = groups
        self.upper = upper
        self.pads = None if pads is None else tuple(tuple(p) for p in pads)

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
        pads = self.pads
        if pads is None:
            kernel = self.kernel or tuple(weight.shape[2:])
            pads = same_pads(x.shape[2:], kernel, self.strides, self.dilations, self.upper)
        flat = [p for begin_end in reversed(pads) for p in begin_end]  # F.pad: last dim first
        x = F.pad(x, flat)
        conv = _CONV[len(self.strides)]
        return conv(x, weight, bias, self.strides, 0, self.dilations, self.groups)


def _converter(original):
    def convert(node, graph):
        auto_pad = node.attributes.get("auto_pad", "NOTSET")
        computed = any(name and name not in graph.initializers for name in node.input_values[1:3])
        if auto_pad not in ("SAME_UPPER", "SAME_LOWER") and not computed:
            return original(node, graph)
        attrs = node.attributes
        kernel = attrs.get("kernel_shape")
        weight = graph.initializers.get(node.input_values[1])
        if kernel is None and weight is not None:
            kernel = weight.to_numpy().shape[2:]
        given = [len(v) for k in ("strides", "dilations") if (v := attrs.get(k)) is not None]
        spatial = (
            len(kernel) if kernel is not None else (given or [len(attrs.get("pads", [])) // 2])[0]
        )
        if not spatial:
            from .registry import ConverterError

            raise ConverterError(node, "the weight is computed and no attribute gives its rank")
        pads = None
        if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            flat = list(attrs.get("pads", [0] * 2 * spatial))  # VALID and NOTSET: explicit
            pads = list(zip(flat[:spatial], flat[spatial:], strict=True))
        module = OnnxConvSpec(
            kernel=kernel,
            strides=attrs.get("strides", [1] * spatial),
            dilations=attrs.get("dilations", [1] * spatial),
            groups=int(attrs.get("group", 1)),
            upper=auto_pad != "SAME_LOWER",
            pads=pads,
        )
        return module, mapping_of(node)

    return convert


def register() -> None:
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    for version in (1, 11):
        original = _CONVERTER_REGISTRY[OperationDescription("", "Conv", version)]
        if getattr(original, "fxsurgeon_wrapped", False):
            continue
        convert = _converter(lambda node, graph, original=original: tuple(original(node, graph)))
        add("Conv", version, convert, replace=True)
        _CONVERTER_REGISTRY[OperationDescription("", "Conv", version)].fxsurgeon_wrapped = True
