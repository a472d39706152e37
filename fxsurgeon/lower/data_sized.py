"""Lowerings of Compress and Unique (``frontdoor/converters/data_sized.py``): the converter's
`compress`/`unique` with ``ctx.call``, the same torch calls as graph nodes. Their output
sizes are sizes of the data: unbacked symbols of the shape analysis, as NonZero's
(``more_ops.py``), which torch.compile captures the same way.
"""

from __future__ import annotations

from ..errors import LoweringError
from ..frontdoor import compress, unique
from .table import lowering
from .values import rank_of


def _axis(axis: int | None, rank: int, op: str) -> int | None:
    if axis is None:
        return None
    if not -rank <= axis < rank:
        raise LoweringError(f"{op} axis {axis} out of range for rank {rank}")
    return axis % rank


@lowering("OnnxCompressSpec")
def _compress(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    return compress(ctx.call, x, ctx.tensor(args[1]), _axis(mod.axis, rank_of(x), "Compress"))


@lowering("OnnxUniqueSpec")
def _unique(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    found = unique(ctx.call, x, _axis(mod.axis, rank_of(x), "Unique"), mod.ordered)
    return found[0] if mod.outputs == 1 else list(found[: mod.outputs])
