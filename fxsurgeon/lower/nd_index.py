"""Lowerings of GatherND and ScatterND (`OnnxGatherNDSpec`, `OnnxScatterNDSpec`) to torch calls.

The same steps as the spec modules (``frontdoor/converters/nd_index.py``), as
graph nodes: the ``k`` indexed dims become one row-major index (each component
taken modulo its size, so negative indices count from the end), then

* GatherND: with ``batch_dims`` 0, ``data[idx[..., 0], ..., idx[..., k-1]]``: torch's
  advanced indexing is the spec's gather (output ``indices.shape[:-1] +
  data.shape[k:]``, a negative index counts from the end, one out of range is an
  error as in onnxruntime); with batch dims, data flattened to ``[batch, K, rest...]``,
  indices to ``[batch, Q]``, one advanced-indexing gather, reshaped to
  ``indices.shape[:-1] + data.shape[batch_dims + k:]``;
* ScatterND: data flattened to ``[K, rest...]``, then ``index_copy``
  (reduction none), ``index_add`` (add) or ``scatter_reduce`` with
  ``prod``/``amax``/``amin`` (mul/max/min, the data's own values included, as
  the spec's loop over the updates does; the row index expanded over the rest:
  torch's ``index_reduce`` "prod" fails in bfloat16 / half on one-element rows),
  reshaped back.

Sizes come from the shape meta (ints, or ``x.size(d)`` for dynamic dims); the
index depth ``k`` must be static (it fixes the output's rank).
"""

from __future__ import annotations

import operator

import torch

from ..errors import LoweringError
from ..frontdoor import SCATTER_REDUCTIONS as REDUCE
from ..shapes import dtype_of, shape_of
from .table import lowering


def _shape(ctx, x, what: str) -> list:
    shape = shape_of(x)
    if shape is None:
        raise LoweringError(f"no shape known for {what}")
    return [ctx.size(x, d) for d in range(len(shape))]


def _depth(ctx, indices) -> int:
    shape = shape_of(indices)
    if shape is None or shape[-1] is None:
        raise LoweringError("the index depth (the indices' last dim) must be static")
    return shape[-1]


def _linear(ctx, indices, sizes: list):
    """The last dim of `indices` as one row-major index into dims of `sizes`."""
    indices = ctx.method("long", indices)
    lin = None
    for j, size in enumerate(sizes):
        part = ctx.call(operator.getitem, indices, (Ellipsis, j))
        part = ctx.call(torch.remainder, part, size)
        lin = (
            part if lin is None else ctx.call(operator.add, ctx.call(operator.mul, lin, size), part)
        )
    return lin


@lowering("OnnxGatherNDSpec", "OnnxGatherND")
def _gather_nd(ctx, mod, node, args):
    """onnx2torch's own OnnxGatherND (batch_dims 0 only; fxsurgeon's converter replaces it)
    holds ``_batch_dims``: the same op."""
    data, indices = (ctx.tensor(a) for a in args)
    b = mod.batch_dims if hasattr(mod, "batch_dims") else mod._batch_dims
    dims, k = _shape(ctx, data, "GatherND's data"), _depth(ctx, indices)
    if b == 0 and k > 0:  # data[i0, i1, ...]: torch's indexing is the spec's, negatives included
        if dtype_of(indices) != torch.int64:
            indices = ctx.method("long", indices)
        parts = tuple(ctx.call(operator.getitem, indices, (Ellipsis, j)) for j in range(k))
        return ctx.call(operator.getitem, data, parts)
    index_dims = _shape(ctx, indices, "GatherND's indices")
    lin = _linear(ctx, indices, dims[b : b + k])
    if b == 0:
        flat = ctx.call(torch.unsqueeze, data, 0)
        rows = ctx.call(torch.reshape, lin, (1, -1))
    else:
        flat = ctx.call(torch.flatten, data, 0, b - 1)
        rows = ctx.call(torch.flatten, lin, 0, b - 1)  # [batch, q...]
        # [batch, Q]: the batch count is the indices' own, never the data's: the spec makes
        # them equal, but the analysis may hold them as different symbols (GPT-2's double
        # heads: data [s0, s1, ...] from a reshape, indices [s2, 3, 1] from an input)
        rows = (
            ctx.call(torch.flatten, rows, 1)
            if len(index_dims) - 1 > b
            else ctx.call(torch.unsqueeze, rows, 1)
        )
    flat = ctx.call(torch.flatten, flat, 1, k)  # [batch, K, rest...]
    batch = ctx.method("size", rows, 0)
    arange = ctx.call(torch.arange, batch, device=ctx.device())
    picked = ctx.call(operator.getitem, flat, (ctx.call(torch.unsqueeze, arange, 1), rows))
    return ctx.call(torch.reshape, picked, (*index_dims[:-1], *dims[b + k :]))


@lowering("OnnxScatterNDSpec")
def _scatter_nd(ctx, mod, node, args):
    data, indices, updates = (ctx.tensor(a) for a in args)
    dims, k = _shape(ctx, data, "ScatterND's data"), _depth(ctx, indices)
    lin = ctx.call(torch.reshape, _linear(ctx, indices, dims[:k]), (-1,))
    flat = ctx.call(torch.flatten, data, 0, k - 1) if k > 1 else data
    upd = ctx.call(torch.reshape, updates, (-1, *dims[k:]))
    if mod.reduction == "none":
        out = ctx.call(torch.index_copy, flat, 0, lin, upd)
    elif mod.reduction == "add":
        out = ctx.call(torch.index_add, flat, 0, lin, upd)
    else:  # scatter_reduce: torch's CPU index_reduce "prod" in bfloat16 / half fails an
        # internal assert on rows of one element (a segment product of [N, 1] values)
        reduce = REDUCE[mod.reduction]
        rows = ctx.call(torch.reshape, lin, (-1, *[1] * (len(dims) - k)))
        index = ctx.method("expand_as", rows, upd)
        out = ctx.call(torch.scatter_reduce, flat, 0, index, upd, reduce, include_self=True)
    return ctx.call(torch.reshape, out, tuple(dims)) if k > 1 else out
