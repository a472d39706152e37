"""Lowerings of Compress and Unique (``frontdoor/converters/data_sized.py``): the converter's
`compress`/`unique` with ``ctx.call``, the same torch calls as graph nodes. Their output
sizes are sizes of the data: unbacked symbols of the shape analysis, as NonZero's
(``more_ops.py``), which torch.compile captures the same way. Also Split-18 by
``num_outputs`` (``frontdoor/converters/opset18.py``), whose sizes come from a static dim.
"""

from __future__ import annotations

import operator

import torch

from ..errors import LoweringError
from ..frontdoor import compress, split_sizes, unique
from ..shapes import shape_of
from .indexing import one_or_all
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


@lowering("OnnxSplitSpec")
def _split(ctx, mod, node, args):
    """Split-18 by ``num_outputs``: the sizes from the dim's length, which must be known."""
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    if shape is None or not -len(shape) <= mod.axis < len(shape):
        raise LoweringError(f"Split axis {mod.axis} of an input of unknown rank or out of range")
    if mod.parts == 1:  # one part, the whole input, whatever its length
        return x
    length = shape[mod.axis % len(shape)]
    if not isinstance(length, int):
        raise LoweringError("Split by num_outputs of a dynamic dim")
    try:
        sizes = split_sizes(length, mod.parts)
    except ValueError as error:
        raise LoweringError(str(error)) from None
    parts = ctx.call(torch.split, x, sizes, mod.axis % len(shape))
    return one_or_all([ctx.call(operator.getitem, parts, i) for i in range(len(sizes))])
