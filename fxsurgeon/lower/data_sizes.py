"""Sizes read from tensor data: a shape argument (Tile's repeats, Expand's and Reshape's
shape, ConstantOfShape's, a Range bound) that the graph computes from data rather than
from sizes.

Longformer tiles its masks to ``(1, 1, heads, 2w + 1 + max number of global tokens)``,
the last a ReduceMax of the attention mask: the shape vector is a Concat of constants and
a one-element tensor of the data. ONNX reads the vector's values, so does the lowering:
each element of such a vector becomes an int read from the tensor (``.item()``), an
unbacked symbol of the shape analysis, which torch.compile captures the same way
(fullgraph, no guard on its value). The elements the graph knows now (the constants it
concatenated, the sizes in a ``torch.tensor`` of a `Sym`) stay known: the vector is read
back through the nodes that built it, so only the data elements are read at run time; an
element of a Range at a constant index is its size expression (progressions.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from .progressions import one_element
from .values import Sym, as_sym

INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)

#: a shape vector has one element per dim: longer vectors are not read
_MAX_RANK = 16

#: calls that keep the elements of their first argument in order (a one-element tensor's
#: element): unsqueezed, squeezed, reshaped or flattened, it is the same vector
_SAME_ELEMENTS = (torch.reshape, torch.unsqueeze, torch.squeeze, torch.flatten)


def shape_items(ctx, value) -> Sym | None:
    """`value` as a shape vector: `as_sym`, or for a small integer tensor of the graph
    (rank 0 or 1, its length known now) its elements read back (see the module doc).
    None for anything else."""
    sym = as_sym(value)
    if sym is not None or not isinstance(value, fx.Node):
        return sym
    fake = value.meta.get("val")
    if not isinstance(fake, torch.Tensor) or fake.dtype not in INTEGER or fake.dim() > 1:
        return None
    if any(not isinstance(d, int) for d in fake.shape) or fake.numel() > _MAX_RANK:
        return None
    return Sym(_elements(ctx, value), scalar=fake.dim() == 0, dtype=fake.dtype)


def read_int(ctx, value) -> Sym | None:
    """A one-element integer tensor computed from data as a scalar `Sym` of the int read
    from it (a Range bound); None for anything else."""
    sym = shape_items(ctx, value) if isinstance(value, fx.Node) else None
    if sym is None or len(sym.items) != 1:
        return None
    return Sym(sym.items, scalar=True, dtype=sym.dtype)


def _elements(ctx, node: fx.Node) -> list:
    """The elements of the small integer tensor `node`, in order: ints where the graph
    shows them, else ints read from the tensor at run time."""
    count = node.meta["val"].numel()
    args: Any = node.args
    if node.op == "get_attr":
        value = _fetch(ctx.root, str(node.target))
        return [int(v) for v in value.reshape(-1).tolist()]
    if node.op == "call_function" and node.target is torch.cat and _dim0(node):
        parts = [_elements(ctx, a) for a in args[0]]
        return [item for part in parts for item in part]
    if node.op == "call_function" and node.target is torch.tensor and _items(args[0], count):
        return list(args[0]) if isinstance(args[0], (list, tuple)) else [args[0]]
    if node.op == "call_function" and node.target in _SAME_ELEMENTS and _small(args[0], count):
        return _elements(ctx, args[0])
    if node.op == "call_method" and node.target == "to" and _small(args[0], count):
        return _elements(ctx, args[0])  # between integer types: the same sizes
    if node.op == "call_function" and node.target is F.pad and _small(args[0], None):
        padded = _padded(ctx, node, count)  # a Concat of constants and data (pad_of_fills)
        if padded is not None:
            return padded
    if node.op == "call_function" and node.target is torch.where:
        picked = _where(ctx, args, count)  # tf2onnx's strided_slice: begin/end by masks
        if picked is not None:
            return picked
    if count == 1:
        known = one_element(ctx, node)  # an element of a Range at a constant index, ...
        if known is not None:
            return [known]
        return [ctx.method("item", ctx.call(torch.reshape, node, ()))]
    flat = ctx.call(torch.reshape, node, (-1,))
    return [ctx.method("item", ctx.call(torch.select, flat, 0, i)) for i in range(count)]


def _padded(ctx, node: fx.Node, count: int) -> list | None:
    """The elements of a constant ``F.pad`` of a vector: the fill value before and after its
    elements; None for another pad."""
    args: Any = node.args
    pads = args[1] if len(args) > 1 else node.kwargs.get("pad")
    mode = args[2] if len(args) > 2 else node.kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else node.kwargs.get("value", 0)
    if mode != "constant" or not isinstance(value, (int, float)) or float(value) != int(value):
        return None
    if not isinstance(pads, (tuple, list)) or len(pads) != 2:
        return None
    before, after = pads
    if not (isinstance(before, int) and isinstance(after, int) and min(before, after) >= 0):
        return None
    items = [int(value)] * before + _elements(ctx, args[0]) + [int(value)] * after
    return items if len(items) == count else None


def _where(ctx, args, count: int) -> list | None:
    """The elements of ``torch.where(cond, a, b)`` whose condition is a constant of the
    graph: each one `a`'s or `b`'s (a Python number, or a small tensor read back, one
    element broadcast); None for a condition computed at run time."""
    cond, *picks = args
    if not isinstance(cond, fx.Node) or cond.op != "get_attr":
        return None
    flags = [bool(v) for v in _fetch(ctx.root, str(cond.target)).reshape(-1).tolist()]
    if len(flags) not in (1, count):
        return None
    flags = flags * count if len(flags) == 1 else flags
    sides: list[list] = []
    for side, pick in zip((True, False), picks, strict=True):
        if side not in flags:  # never taken: not read
            sides.append([None] * count)
        elif isinstance(pick, (int, float)) and float(pick) == int(pick):
            sides.append([int(pick)] * count)
        elif _small(pick, count) or _small(pick, 1):
            items = _elements(ctx, pick)
            sides.append(items * count if len(items) == 1 else items)
        else:
            return None
    return [a if flag else b for flag, a, b in zip(flags, *sides, strict=True)]


def _dim0(node: fx.Node) -> bool:
    args: Any = node.args
    dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)
    return dim in (0, -1) and all(_small(a, None) for a in args[0])


def _small(value, count: int | None) -> bool:
    """`value` is an integer tensor node of rank <= 1 holding `count` elements (any count
    for None)."""
    fake = value.meta.get("val") if isinstance(value, fx.Node) else None
    if not isinstance(fake, torch.Tensor) or fake.dtype not in INTEGER or fake.dim() > 1:
        return False
    if any(not isinstance(d, int) for d in fake.shape):
        return False
    return count is None or fake.numel() == count


def _items(items, count: int) -> bool:
    """A ``torch.tensor`` argument of ints and size nodes, `count` of them."""
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    return len(items) == count and all(isinstance(i, (int, fx.Node)) for i in items)


def _fetch(root, target: str) -> torch.Tensor:
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
