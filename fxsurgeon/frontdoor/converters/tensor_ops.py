"""ONNX EyeLike, OneHot, ReverseSequence and Size by the spec.

onnx2torch has no converter for OneHot, ReverseSequence, Size, or EyeLike-22, and its
EyeLike-9 falls short of the spec (a ``k`` past the rows raises instead of
giving zeros, ``k < -rows`` fails, the output is made on the CPU whatever the
input's device), so `OnnxEyeLikeSpec` replaces it. The corpus meets them inside If branches (OPT's EyeLike, Speech2Text's
ReverseSequence, Swin's Size; tf2onnx writes ``tf.one_hot`` as OneHot: LayoutLMv3's
relative-position buckets, XLNet's segment matrix). Each module computes its op exactly
as the ONNX spec says:

* `OnnxEyeLikeSpec`: a 2-D tensor of the input's shape, ``out[i, i + k] = 1``
  and 0 elsewhere (a ``k`` past the matrix gives all zeros), of ``dtype`` or
  else the input's dtype;
* `OnnxReverseSequenceSpec`: per batch row ``b``, the first
  ``sequence_lens[b]`` steps along ``time_axis`` reversed and the rest copied;
  written as one gather over an index built from ``arange`` and the lengths,
  so that no length is read on the host;
* `OnnxSizeSpec`: the number of elements as a 0-d int64 tensor;
* `OnnxOneHotSpec`: a new axis of ``depth`` classes inserted at ``axis``, holding
  ``values[1]`` where the class equals the index (cast to int64) and ``values[0]``
  elsewhere, in the values' dtype. An index outside ``[0, depth)`` gives a row of
  ``values[0]``; from OneHot-11 on, a negative index ``i >= -depth`` counts from the
  end (``i + depth``). Written as a comparison with ``arange(depth)``, not
  ``F.one_hot`` (which raises on an index out of range and reads the data on the host).

The lowering (``fxsurgeon/lower/tensor_ops.py``) writes the same steps as graph
nodes; Size and EyeLike stay symbolic in dynamic dims there.
"""

from __future__ import annotations

import functools

import torch
from onnx import TensorProto
from torch import nn

from .registry import ConverterError, add, mapping_of

#: EyeLike's output types that torch has (ONNX's unsigned 16/32/64-bit ints it has not, fully).
EYE_DTYPES = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.UINT8: torch.uint8,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.BOOL: torch.bool,
}


def eye_like(rows, cols, k: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``out[i, j] = (j - i == k)``: ones on the k-th diagonal, zeros elsewhere."""
    i = torch.arange(rows, device=device).unsqueeze(1)
    j = torch.arange(cols, device=device)
    return (j - i == k).to(dtype)


def reverse_index(steps, lens: torch.Tensor) -> torch.Tensor:
    """``[steps, batch]`` source index: ``lens[b] - 1 - t`` for ``t < lens[b]``, else ``t``."""
    t = torch.arange(steps, device=lens.device).unsqueeze(1)
    lens = lens.long().unsqueeze(0)
    return torch.where(t < lens, lens - 1 - t, t)


def reverse_sequence(x: torch.Tensor, lens: torch.Tensor, time_axis: int) -> torch.Tensor:
    index = reverse_index(x.shape[time_axis], lens)  # [T, B]
    if time_axis == 1:
        index = index.transpose(0, 1)  # [B, T]
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, time_axis, index)


def one_hot(
    indices: torch.Tensor, depth, values: torch.Tensor, axis: int, negative: bool
) -> torch.Tensor:
    """ONNX OneHot: `values[1]` where ``arange(depth)`` equals the index along a new
    axis `axis`, `values[0]` elsewhere; `negative`: indices in [-depth, 0) count from
    the end (OneHot-11)."""
    index = indices.to(torch.int64)
    if negative:
        index = torch.where(index < 0, index + depth, index)
    axis = axis + index.dim() + 1 if axis < 0 else axis
    classes = torch.arange(depth, device=indices.device)
    hit = index.unsqueeze(axis) == classes.reshape(-1, *([1] * (index.dim() - axis)))
    flat = values.reshape(-1)
    return torch.where(hit, flat[1], flat[0])


class OnnxOneHotSpec(nn.Module):
    """OneHot with ``axis`` (in [-r-1, r] for indices of rank r)."""

    def __init__(self, axis: int, negative: bool):
        super().__init__()
        self.axis = axis
        self.negative = negative

    def forward(
        self, indices: torch.Tensor, depth: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        rank = indices.dim()
        if not -rank - 1 <= self.axis <= rank:
            raise ValueError(f"OneHot axis {self.axis} is out of range for indices of rank {rank}")
        return one_hot(indices, int(depth.reshape(-1)[0]), values, self.axis, self.negative)


class OnnxEyeLikeSpec(nn.Module):
    """EyeLike: ones on diagonal ``k`` of a matrix shaped like the input."""

    def __init__(self, k: int, dtype: torch.dtype | None):
        super().__init__()
        self.k = k
        self.dtype = dtype  # None: the input's dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"EyeLike needs a 2-D input, got shape {tuple(x.shape)}")
        dtype = x.dtype if self.dtype is None else self.dtype
        return eye_like(x.shape[0], x.shape[1], self.k, dtype, x.device)


class OnnxReverseSequenceSpec(nn.Module):
    """ReverseSequence with ``time_axis`` 0 (batch axis 1) or 1 (batch axis 0)."""

    def __init__(self, time_axis: int):
        super().__init__()
        self.time_axis = time_axis

    def forward(self, x: torch.Tensor, sequence_lens: torch.Tensor) -> torch.Tensor:
        return reverse_sequence(x, sequence_lens, self.time_axis)


class OnnxSizeSpec(nn.Module):
    """Size: the input's number of elements, a 0-d int64 tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


def _eye_like(node, graph):
    k = int(node.attributes.get("k", 0))
    code = node.attributes.get("dtype")
    if code is None:
        return OnnxEyeLikeSpec(k, None), mapping_of(node)
    dtype = EYE_DTYPES.get(int(code))
    if dtype is None:
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else code
        raise ConverterError(node, f"dtype {name} is not one torch can hold")
    return OnnxEyeLikeSpec(k, dtype), mapping_of(node)


def _reverse_sequence(node, graph):
    batch_axis = int(node.attributes.get("batch_axis", 1))
    time_axis = int(node.attributes.get("time_axis", 0))
    if {batch_axis, time_axis} != {0, 1}:
        why = f"batch_axis={batch_axis}, time_axis={time_axis}; the spec wants one 0 and one 1"
        raise ConverterError(node, why)
    return OnnxReverseSequenceSpec(time_axis), mapping_of(node)


def _size(node, graph):
    return OnnxSizeSpec(), mapping_of(node)


def _one_hot(node, graph, *, negative: bool):
    """OneHot-9 (``negative=False``): a negative index is out of range, a row of off
    values; OneHot-11: it counts from the end."""
    return OnnxOneHotSpec(int(node.attributes.get("axis", -1)), negative), mapping_of(node)


def register() -> None:
    for version in (9, 22):
        add("EyeLike", version, _eye_like, replace=True)
    add("ReverseSequence", 10, _reverse_sequence)
    add("OneHot", 9, functools.partial(_one_hot, negative=False))
    add("OneHot", 11, functools.partial(_one_hot, negative=True))
    for version in (1, 13, 19, 21, 23, 24, 25):
        add("Size", version, _size)
