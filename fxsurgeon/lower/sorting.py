"""Lowering of ONNX TopK (onnx2torch's `OnnxTopK`) by the spec's order.

ONNX TopK puts equal elements in index order (the lower index first);
torch.topk promises no order among ties. A stable sort (descending for
``largest``) keeps ties in index order, so ``sort(stable=True)`` then the first
``k`` along the axis is TopK exactly (ViT-MAE's argsort of its noise is a TopK
over the whole axis). ``k`` may be a run-time size (`Sym` item). A constant ``k``
is a precondition on the axis: the shape analysis' hints are raised to admit it
(`SymbolicShapes.admit`), as for a sliding window (a 1-D input's only dim is hinted as a
batch of 2, below a TopK of 3).
"""

from __future__ import annotations

import operator

import torch

from ..errors import LoweringError
from .table import lowering
from .values import Const, as_sym, rank_of


def _k(value):
    if isinstance(value, Const) and value.value.numel() == 1:
        return int(value.value.reshape(-1)[0])
    sym = as_sym(value)
    if sym is not None and len(sym.items) == 1:
        return sym.items[0]
    raise LoweringError("TopK's k is computed from tensor data")


@lowering("OnnxTopK")
def _top_k(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    k = _k(args[1])
    dim = mod.dim % rank_of(x)
    fake = x.meta.get("val")
    if isinstance(k, int) and isinstance(fake, torch.Tensor):  # hints that admit k elements
        ctx.graph.shapes.admit(fake.shape[dim], k, f"{ctx.graph.where}: TopK of {k}")
    ordered = ctx.call(torch.sort, x, dim=dim, descending=mod.largest, stable=True)
    values, indices = (ctx.call(operator.getitem, ordered, i) for i in (0, 1))
    return [ctx.call(torch.narrow, t, dim, 0, k) for t in (values, indices)]
