"""ONNX Conv with ``auto_pad=SAME_UPPER``/``SAME_LOWER``, or a weight computed in the graph,
and ConvTranspose with uneven pads (TF's ``Conv2DTranspose(strides=2, padding="same")``),
``auto_pad=SAME_*`` or ``output_shape``, which onnx2torch refuses.

SAME padding depends on the input size when a stride is above 1, so
`OnnxConvSpec` computes the pads from the input at run time as the ONNX spec
says (output size ``ceil(in / stride)``, the odd pad at the end for SAME_UPPER
and at the start for SAME_LOWER). The weight and bias stay node inputs (ONNX
initializers), so they become parameters like any other weight. Conv nodes
without SAME padding go to onnx2torch's own converter.

`OnnxConvTransposeSpec` is ConvTranspose as the spec defines its output: the full
transposed convolution (no padding, ``output_padding`` at the end) with ``pads[begin]``
elements removed at the start of each spatial dim and ``pads[end]`` at its end. SAME
auto_pad removes ``output_padding + (k - 1) * d + 1 - stride`` in all (output size
``in * stride``; the odd one at the end for SAME_UPPER), whatever the input size.
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
        pads: tuple | list | None = self.pads
        if pads is None:
            kernel = self.kernel or tuple(weight.shape[2:])
            pads = same_pads(x.shape[2:], kernel, self.strides, self.dilations, self.upper)
        flat = [p for begin_end in reversed(pads) for p in begin_end]  # F.pad: last dim first
        x = F.pad(x, flat)
        conv = _CONV[len(self.strides)]
        return conv(x, weight, bias, self.strides, 0, self.dilations, self.groups)


_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv_transpose_crop(x, pads) -> torch.Tensor:
    """`x` without ``begin`` elements at the start and ``end`` at the end of each spatial
    dim (``pads``: a (begin, end) pair per spatial dim)."""
    index = (slice(None), slice(None)) + tuple(slice(b, -e if e else None) for b, e in pads)
    return x[index]


class OnnxConvTransposeSpec(nn.Module):
    """ConvTranspose(x, W[, B]) by the spec, W and B taken as inputs: the full transposed
    convolution, then ``pads`` ((begin, end) per spatial dim) removed; a negative pad
    widens the output instead (zeros, then the bias), as onnxruntime computes it."""

    def __init__(self, strides, dilations, groups: int, pads, output_padding):
        super().__init__()
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.groups = groups
        self.pads = tuple(tuple(p) for p in pads)
        self.output_padding = tuple(output_padding)

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
        conv = _CONV_TRANSPOSE[len(self.strides)]
        grows = any(b < 0 or e < 0 for b, e in self.pads)
        full = conv(
            x,
            weight,
            None if grows else bias,
            self.strides,
            0,
            self.output_padding,
            self.groups,
            self.dilations,
        )
        if not grows:
            return conv_transpose_crop(full, self.pads)
        # A negative pad (tf2onnx's Keras output_padding) widens the output past the full
        # transposed convolution: positions no input reaches, zero before the bias.
        out = F.pad(full, [-p for pair in reversed(self.pads) for p in pair])
        return out if bias is None else out + bias.reshape(-1, *[1] * len(self.pads))


def conv_transpose_pads(attrs, kernel, sizes) -> list[tuple[int, int]]:
    """ConvTranspose's (begin, end) pads per spatial dim: explicit, or from ``auto_pad``
    SAME_* / ``output_shape`` (ONNX's ``total_padding``; ``sizes`` the input's spatial
    sizes, needed only for ``output_shape``)."""
    spatial = len(kernel)
    strides = attrs.get("strides", [1] * spatial)
    dilations = attrs.get("dilations", [1] * spatial)
    output_padding = attrs.get("output_padding", [0] * spatial)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    shape = attrs.get("output_shape")
    if shape is None and auto_pad in ("NOTSET", "VALID"):
        flat = list(attrs.get("pads", [0] * 2 * spatial)) if auto_pad == "NOTSET" else []
        flat = flat or [0] * 2 * spatial
        return list(zip(flat[:spatial], flat[spatial:], strict=True))
    pads = []
    for i in range(spatial):
        full = strides[i] * ((sizes[i] if shape else 1) - 1) + output_padding[i]
        full += (kernel[i] - 1) * dilations[i] + 1
        total = full - (shape[-spatial + i] if shape else strides[i])
        if total < 0:
            raise ValueError(f"ConvTranspose would pad its output by {-total} in dim {i}")
        small = total // 2
        # the spec: the odd one at the end for SAME_UPPER, at the start otherwise (SAME_LOWER,
        # and NOTSET with output_shape)
        pads.append((small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small))
    return pads


def _transpose_converter(original):
    def convert(node, graph):
        attrs = node.attributes
        auto_pad = attrs.get("auto_pad", "NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        weight = graph.initializers.get(node.input_values[1])
        kernel = attrs.get("kernel_shape")
        if kernel is None and weight is not None:
            kernel = weight.to_numpy().shape[2:]
        flat = list(attrs.get("pads", []))
        even = flat[: len(flat) // 2] == flat[len(flat) // 2 :]
        computed = any(name and name not in graph.initializers for name in node.input_values[1:3])
        plain = auto_pad in ("NOTSET", "VALID") and "output_shape" not in attrs and even
        plain = plain and min(flat, default=0) >= 0
        if plain and not computed:
            return original(node, graph)
        from .registry import ConverterError

        if kernel is None:
            raise ConverterError(node, "the weight is computed and no kernel_shape is given")
        sizes = None
        if "output_shape" in attrs:
            from onnx2torch.utils.common import get_shape_from_value_info

            info = graph.value_info.get(node.input_values[0])
            shape = get_shape_from_value_info(info) if info is not None else None
            sizes = None if shape is None else list(shape[2:])
            if sizes is None or any(not isinstance(s, int) or s <= 0 for s in sizes):
                raise ConverterError(node, "output_shape with an input of unknown spatial size")
        try:
            pads = conv_transpose_pads(attrs, list(kernel), sizes)
        except ValueError as exc:
            raise ConverterError(node, str(exc)) from exc
        spatial = len(kernel)
        module = OnnxConvTransposeSpec(
            strides=attrs.get("strides", [1] * spatial),
            dilations=attrs.get("dilations", [1] * spatial),
            groups=int(attrs.get("group", 1)),
            pads=pads,
            output_padding=attrs.get("output_padding", [0] * spatial),
        )
        return module, mapping_of(node)

    return convert


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
    for version in (1, 11):
        key = OperationDescription("", "ConvTranspose", version)
        original = _CONVERTER_REGISTRY[key]
        if getattr(original, "fxsurgeon_wrapped", False):
            continue
        convert = _transpose_converter(
            lambda node, graph, original=original: tuple(original(node, graph))
        )
        add("ConvTranspose", version, convert, replace=True)
        _CONVERTER_REGISTRY[key].fxsurgeon_wrapped = True
