"""ONNX GatherND and ScatterND by the spec; onnx2torch's modules fall short of it.

onnx2torch's ``OnnxGatherND`` raises for ``batch_dims > 0`` (ViT-MAE's random
masking gathers the kept patches per batch row with it), and its
``OnnxScatterND`` refuses every ``reduction`` but ``none`` and reads the
indices on the host (``.tolist()``). `OnnxGatherNDSpec` and
`OnnxScatterNDSpec` replace them for every version. Both turn the ``k``
indexed dims into one linear index (negative indices count from the end, as
the spec says), so that the op is one advanced-indexing gather or one
``index_copy`` / ``index_add`` / ``index_reduce`` along a flattened dim; the
lowering (``fxsurgeon/lower/nd_index.py``) writes the same steps as graph nodes.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ConverterError, add, mapping_of

# ScatterND reduction -> index_reduce's name ("none" and "add" have their own torch ops).
REDUCE = {"mul": "prod", "max": "amax", "min": "amin"}


def linear_index(indices: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The last dim of `indices` (one index per size in `sizes`) as one row-major index."""
    lin = torch.zeros_like(indices[..., 0])
    for j, size in enumerate(sizes):
        lin = lin * size + torch.remainder(indices[..., j], size)  # [-s, s - 1] -> [0, s - 1]
    return lin


def gather_nd(data: torch.Tensor, indices: torch.Tensor, batch_dims: int) -> torch.Tensor:
    k = indices.shape[-1]
    sizes = list(data.shape[batch_dims : batch_dims + k])
    lin = linear_index(indices.long(), sizes)  # [b..., q...]
    flat = data.unsqueeze(0) if batch_dims == 0 else data.flatten(0, batch_dims - 1)
    flat = flat.flatten(1, k)  # [B, K, rest...]
    rows = lin.reshape(1, -1) if batch_dims == 0 else lin.flatten(0, batch_dims - 1)
    rows = rows.reshape(rows.shape[0], -1)  # [B, Q], B counted on the indices (the lowering's)
    picked = flat[torch.arange(rows.shape[0], device=data.device).unsqueeze(1), rows]
    return picked.reshape(*indices.shape[:-1], *data.shape[batch_dims + k :])


def scatter_nd(data, indices, updates, reduction: str) -> torch.Tensor:
    k = indices.shape[-1]
    lin = linear_index(indices.long(), list(data.shape[:k])).reshape(-1)
    flat = data.flatten(0, k - 1)  # [K, rest...]
    upd = updates.reshape(-1, *data.shape[k:])
    if reduction == "none":
        out = flat.index_copy(0, lin, upd)
    elif reduction == "add":
        out = flat.index_add(0, lin, upd)
    else:
        out = flat.index_reduce(0, lin, upd, REDUCE[reduction], include_self=True)
    return out.reshape(data.shape)


class OnnxGatherNDSpec(nn.Module):
    """GatherND with ``batch_dims`` leading dims shared by data and indices."""

    def __init__(self, batch_dims: int):
        super().__init__()
        self.batch_dims = batch_dims

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return gather_nd(data, indices, self.batch_dims)


class OnnxScatterNDSpec(nn.Module):
    """ScatterND: a copy of data with the indexed slices replaced (or reduced into)."""

    def __init__(self, reduction: str):
        super().__init__()
        self.reduction = reduction

    def forward(self, data, indices, updates) -> torch.Tensor:
        return scatter_nd(data, indices, updates, self.reduction)


def _gather_nd(node, graph):
    batch_dims = int(node.attributes.get("batch_dims", 0))
    if batch_dims < 0:
        raise ConverterError(
            node,
            f"batch_dims {batch_dims}: ONNX counts batch dims, never from the end (tf2onnx "
            "copies TF's negative batch_dims; export with fxsurgeon.export_onnx, which "
            "corrects it)",
        )
    return OnnxGatherNDSpec(batch_dims), mapping_of(node)


def _scatter_nd(node, graph):
    reduction = node.attributes.get("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction not in ("none", "add", *REDUCE):
        raise ConverterError(node, f"unknown reduction {reduction!r}")
    return OnnxScatterNDSpec(reduction), mapping_of(node)


def register() -> None:
    for version in (11, 12, 13):
        add("GatherND", version, _gather_nd, replace=True)
    for version in (11, 13, 16, 18):
        add("ScatterND", version, _scatter_nd, replace=True)
