"""ONNX GlobalMaxPool, GlobalAveragePool, GlobalLpPool, AveragePool with uneven pads,
MaxPool with SAME auto_pad and Pad-18+ by the spec.

onnx2torch has no converter for GlobalMaxPool or GlobalLpPool, none for
GlobalAveragePool-22, none for an AveragePool whose pads differ at the two ends
(TF's ``padding="SAME"`` with an even input and an odd kernel) or with
``auto_pad=SAME_*``, none for AveragePool-19/22, and none for Pad from opset 18
on (the ``axes`` input, the ``wrap`` mode); its MaxPool refuses ``auto_pad=SAME_*``, which
tf2onnx writes for ``padding="same"`` on a dynamic size. Keras's GlobalMaxPooling1D/2D export as GlobalMaxPool
(tf2onnx, opset 17: a text CNN). Each module here computes its op as the ONNX
spec says:

* `OnnxGlobalPoolSpec`: over every dim after the first two (batch, channel),
  kept as size 1: the max, the mean, or ``(sum |x|^p)^(1/p)``;
* `OnnxAvgPoolSpec`: the mean over each window of the padded input; the divisor
  counts the window's input elements, plus its explicit pads where
  ``count_include_pad=1``, never the extra end positions of ``ceil_mode``
  (onnxruntime's rule): ``avg_pool(pad0(x)) / avg_pool(counted)``, ``counted``
  1 where an element counts and 0 elsewhere;
* `OnnxMaxPoolSpec`: SAME_UPPER / SAME_LOWER padding computed from the input size, by
  -inf (the spec ignores the padding), then the unpadded max pool;
* `OnnxMaxPoolIndices`: a MaxPool whose ``Indices`` output is read (onnx2torch refuses
  it): the max and its position in the flattened input, as the spec counts it;
* `OnnxPadSpec`: ``pads`` holds ``[begin..., end...]`` for ``axes`` (all dims
  when absent; negative axes count from the end); a negative pad removes
  elements; ``constant_value`` (default 0) fills in ``constant`` mode,
  ``reflect`` mirrors without the edge, ``edge`` repeats it, ``wrap`` wraps
  around.

The lowering (``fxsurgeon/lower/nn_ops.py``) writes them as ``torch.amax`` /
``torch.mean`` / ``torch.norm``-free arithmetic and ``F.pad``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conv import same_pads
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


def avg_pool_pads(sizes, kernel, strides, pads, ceil_mode: bool) -> list[int]:
    """The end padding ``ceil_mode`` adds to each spatial dim (0 without it): enough for
    the floor output size to be ONNX's ``ceil((size + pads - kernel) / stride) + 1``,
    without a window that starts in the end padding (onnxruntime's rule)."""
    if not ceil_mode:
        return [0] * len(kernel)
    extra = []
    for size, k, s, (begin, end) in zip(sizes, kernel, strides, pads, strict=True):
        total = size + begin + end
        out = -(-(total - k) // s) + 1
        if (out - 1) * s >= size + begin:  # the last window would start in the end pad
            out -= 1
        extra.append(max(0, (out - 1) * s + k - total))
    return extra


def avg_pool_spec(x, kernel, strides, pads, count_include_pad: bool, ceil_mode: bool):
    """ONNX AveragePool: ``pads`` a (begin, end) pair per spatial dim."""
    spatial = len(kernel)
    pool = AVG_POOLS[spatial]
    extra = avg_pool_pads(x.shape[2:], kernel, strides, pads, ceil_mode)
    explicit: list[int] = [p for pair in reversed(pads) for p in pair]  # F.pad: last dim first
    ends: list[int] = [p for e in reversed(extra) for p in (0, e)]
    summed = pool(F.pad(F.pad(x, explicit), ends), kernel, strides)
    if count_include_pad and not any(extra):
        return summed  # every window counts all its k elements
    ones = torch.ones_like(x[:1, :1])
    counted = F.pad(F.pad(ones, explicit, value=float(count_include_pad)), ends)
    return summed / pool(counted, kernel, strides)


#: spatial rank -> torch's average pool
AVG_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class OnnxAvgPoolSpec(nn.Module):
    """AveragePool with ``pads`` ((begin, end) per spatial dim) or ``auto_pad``
    SAME_UPPER / SAME_LOWER (``pads=None``, computed from the input size)."""

    def __init__(self, kernel, strides, pads, count_include_pad: bool, ceil_mode: bool, upper):
        super().__init__()
        self.kernel = tuple(kernel)
        self.strides = tuple(strides)
        self.pads = None if pads is None else tuple(tuple(p) for p in pads)
        self.count_include_pad = count_include_pad
        self.ceil_mode = ceil_mode
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: Any = self.pads
        if pads is None:
            ones = [1] * len(self.kernel)
            pads = same_pads(x.shape[2:], self.kernel, self.strides, ones, self.upper)
        return avg_pool_spec(
            x, self.kernel, self.strides, pads, self.count_include_pad, self.ceil_mode
        )


MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


class OnnxMaxPoolSpec(nn.Module):
    """MaxPool with ``auto_pad`` SAME_UPPER / SAME_LOWER (``upper``)."""

    def __init__(self, kernel, strides, dilations, upper: bool):
        super().__init__()
        self.kernel = tuple(kernel)
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(x.shape[2:], self.kernel, self.strides, self.dilations, self.upper)
        flat = [p for pair in reversed(pads) for p in pair]  # F.pad: last dim first
        padded = F.pad(x, flat, "constant", float("-inf"))
        return MAX_POOLS[len(self.kernel)](padded, self.kernel, self.strides, 0, self.dilations)


def input_positions(x: torch.Tensor, storage_order: int) -> torch.Tensor:
    """Each element's index in the flat input, as MaxPool's ``Indices`` counts it: row-major
    over every dim, or with ``storage_order=1`` column-major over the spatial dims."""
    positions = torch.arange(x.numel(), device=x.device)
    if storage_order == 0 or x.dim() < 4:
        return positions.reshape(x.shape)
    spatial = tuple(x.shape[2:])
    flipped = positions.reshape(tuple(x.shape[:2]) + spatial[::-1])
    return flipped.permute(0, 1, *range(x.dim() - 1, 1, -1))


class OnnxMaxPoolIndices(nn.Module):
    """MaxPool whose ``Indices`` output is read. Per the spec, each index is the max's
    position in the flattened input ``[N, C, D1..Dn]``, padding not counted (row-major,
    or column-major over the spatial dims where ``storage_order=1``). The input is
    padded by -inf (explicit ``pads``, or SAME computed from the size where ``pads`` is
    None), torch's pool gives each max's index in its padded plane, and that index reads
    the input position of the element (`input_positions`, padded alike)."""

    def __init__(self, kernel, strides, dilations, pads, *, upper, ceil_mode, storage_order):
        super().__init__()
        self.kernel = tuple(kernel)
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.pads = None if pads is None else [tuple(p) for p in pads]
        self.upper = upper
        self.ceil_mode = ceil_mode
        self.storage_order = storage_order

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pads = self.pads
        if pads is None:
            pads = same_pads(x.shape[2:], self.kernel, self.strides, self.dilations, self.upper)
        flat = [p for pair in reversed(pads) for p in pair]
        padded = F.pad(x, flat, "constant", float("-inf"))
        positions = F.pad(input_positions(x, self.storage_order), flat, "constant", -1)
        pool = MAX_POOLS[len(self.kernel)]
        values, planar = pool(
            padded, self.kernel, self.strides, 0, self.dilations, self.ceil_mode, True
        )
        indices = torch.gather(positions.flatten(2), 2, planar.flatten(2))
        return values, indices.reshape(planar.shape)


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


def _avg_pool(original):
    def convert(node, graph):
        attrs = node.attributes
        kernel = list(attrs["kernel_shape"])
        spatial = len(kernel)
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        flat = list(attrs.get("pads", [0] * 2 * spatial))
        even = flat[:spatial] == flat[spatial:]
        if original is not None and auto_pad in ("NOTSET", "VALID") and even:
            return tuple(original(node, graph))
        if any(d != 1 for d in attrs.get("dilations", [1] * spatial)):
            raise ConverterError(node, "dilated average pooling has no torch counterpart")
        if spatial not in AVG_POOLS:
            raise ConverterError(node, f"{spatial} spatial dims (torch pools 1 to 3)")
        module = OnnxAvgPoolSpec(
            kernel,
            attrs.get("strides", [1] * spatial),
            _explicit_pads(attrs, auto_pad, spatial),
            count_include_pad=bool(attrs.get("count_include_pad", 0)),
            ceil_mode=bool(attrs.get("ceil_mode", 0)),
            upper=auto_pad != "SAME_LOWER",
        )
        return module, mapping_of(node)

    return convert


def _max_pool(original):
    def convert(node, graph):
        attrs = node.attributes
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        if len(node.output_values) > 1 and node.output_values[1]:
            return _max_pool_indices(node, auto_pad)
        if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            if original is None:
                raise ConverterError(node, "no converter for this MaxPool version")
            return original(node, graph)
        kernel = list(attrs["kernel_shape"])
        spatial = len(kernel)
        if spatial not in MAX_POOLS:
            raise ConverterError(node, f"{spatial} spatial dims (torch pools 1 to 3)")
        if attrs.get("ceil_mode", 0) or attrs.get("storage_order", 0):
            raise ConverterError(node, "ceil_mode or storage_order with SAME auto_pad")
        module = OnnxMaxPoolSpec(
            kernel,
            attrs.get("strides", [1] * spatial),
            attrs.get("dilations", [1] * spatial),
            upper=auto_pad == "SAME_UPPER",
        )
        from onnx2torch.utils.common import OnnxMapping

        return module, OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values[:1])

    return convert


def _explicit_pads(attrs, auto_pad: str, spatial: int) -> list[tuple[int, int]] | None:
    """(begin, end) per spatial dim from ``pads`` (NOTSET) or zeros (VALID); None for
    SAME_*, which the module computes from the input size."""
    if auto_pad == "VALID":
        return [(0, 0)] * spatial
    if auto_pad != "NOTSET":
        return None
    flat = list(attrs.get("pads", [0] * 2 * spatial))
    return list(zip(flat[:spatial], flat[spatial:], strict=True))


def _max_pool_indices(node, auto_pad: str):
    attrs = node.attributes
    kernel = list(attrs["kernel_shape"])
    spatial = len(kernel)
    if spatial not in MAX_POOLS:
        raise ConverterError(node, f"{spatial} spatial dims (torch pools 1 to 3)")
    module = OnnxMaxPoolIndices(
        kernel,
        attrs.get("strides", [1] * spatial),
        attrs.get("dilations", [1] * spatial),
        _explicit_pads(attrs, auto_pad, spatial),
        upper=auto_pad != "SAME_LOWER",
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        storage_order=int(attrs.get("storage_order", 0)),
    )
    return module, mapping_of(node, (node.input_values[0],))


def _wrap(op: str, versions, make) -> None:
    """Register `make(original)` for `op` at each version, once, over onnx2torch's own."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    for version in versions:
        key = OperationDescription("", op, version)
        original = _CONVERTER_REGISTRY.get(key)
        if getattr(original, "fxsurgeon_wrapped", False):
            continue
        wrapped = None if original is None else (lambda n, g, o=original: tuple(o(n, g)))
        add(op, version, make(wrapped), replace=True)
        _CONVERTER_REGISTRY[key].fxsurgeon_wrapped = True


def register() -> None:
    _wrap("AveragePool", (7, 10, 11, 19, 22), _avg_pool)
    _wrap("MaxPool", (8, 10, 11, 12), _max_pool)
    for version in (1, 22):
        add("GlobalMaxPool", version, _global_pool("max"))
    add("GlobalAveragePool", 22, _global_pool("avg"))
    for version in (2, 22):
        add("GlobalLpPool", version, _global_pool("lp"))
    for version in (18, 19, 21, 23, 24, 25):
        add("Pad", version, _pad)
