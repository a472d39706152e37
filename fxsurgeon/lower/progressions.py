"""The element of an integer tensor at a constant index, where the graph shows it without the
data: an element of a Range, of a Slice or a constant Pad of one, and integer arithmetic on
such elements.

Funnel's relative positions are ``range(p[0] + n, p[0] - p[-1] - 1, -1)`` with ``p`` a
``tf.range(0, L)`` (or a pooled ``[-1] + p[1:-1][::2]``): read with ``.item()`` the bounds are
unbacked symbols, and torch.compile fails where a later op guards on them. ONNX Range is
``start + i * delta``: its element ``i`` (``n + i`` from the end, ``n`` its length) is that
expression of sizes, so the bound stays a size expression. The index must name an element:
where the analysis cannot show the tensor long enough, a run-time check says so (a Slice
of an empty Range would give no element, and the data read would fail there too). Where
the element read depends on a length the analysis does not know (a Pad's value or its
input's element; a negative Slice start that may clamp) it is None.

Followed, for a 1-D tensor ``x`` and a constant index ``k`` (from the end where negative):

* ``torch.arange(start, limit, delta)``: ``start + k * delta``;
* ``y[a:b:c]`` with constant bounds, ``c > 0``: the element of ``y`` it picks (from the end
  only for ``c = 1``, where the slice's last element is ``y``'s at ``b``);
* ``F.pad(y, (p0, p1), value=v)``: ``v`` in the padding, else the element of ``y``;
* a cast between integer types, a reshape/squeeze of one element: the same element;
* ``+``, ``-``, ``*`` of one-element integer tensors: the same on their elements.

Anything else is None (the caller reads the data).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from . import sym_math

INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_SAME = (torch.reshape, torch.unsqueeze, torch.squeeze, torch.flatten)
_ARITHMETIC = {
    torch.add: operator.add,
    operator.add: operator.add,
    torch.sub: operator.sub,
    operator.sub: operator.sub,
    torch.mul: operator.mul,
    operator.mul: operator.mul,
}
#: a slice bound at least this is "to the end" (tf2onnx writes INT_MAX-like ends)
_HUGE = 2**30


def one_element(ctx, node: Any) -> Any:
    """The one element of the integer tensor `node` as an int or a node of a SymInt, where
    the graph shows it (module doc); None where only the data says."""
    if isinstance(node, bool):
        return None
    if isinstance(node, int):
        return node
    if isinstance(node, fx.Node) and isinstance(node.meta.get("val"), torch.SymInt):
        return node  # a size
    if not _integer(node):
        return None
    args: Any = node.args
    if node.op == "call_function" and node.target in _SAME and not node.kwargs:
        return one_element(ctx, args[0])
    if node.op == "call_method" and node.target == "to" and _integer(args[0]):
        dtype = args[1] if len(args) > 1 else node.kwargs.get("dtype")
        return one_element(ctx, args[0]) if dtype in INTEGER else None
    if node.op == "call_function" and node.target in _ARITHMETIC and not node.kwargs:
        if len(args) != 2:
            return None
        a, b = one_element(ctx, args[0]), one_element(ctx, args[1])
        if a is None or b is None:
            return None
        op = _ARITHMETIC[node.target]
        if isinstance(a, int) and isinstance(b, int):
            return op(a, b)
        return ctx.call(op, a, b)
    if node.op == "call_function" and node.target is operator.getitem:
        index = _picked(args[1])
        return None if index is None else element_at(ctx, args[0], index)
    return None


def element_at(ctx, x: Any, k: int) -> Any:
    """Element `k` (from the end where negative) of the 1-D integer tensor `x`, as
    `one_element`; None where the graph does not show it."""
    if not _integer(x, rank=1):
        return None
    args: Any = x.args
    if x.op == "call_method" and x.target == "to":
        dtype = args[1] if len(args) > 1 else x.kwargs.get("dtype")
        return element_at(ctx, args[0], k) if dtype in INTEGER else None
    if x.op != "call_function":
        return None
    if x.target is torch.arange:
        return _range_element(ctx, x, k)
    if x.target is operator.getitem:
        return _slice_element(ctx, x, k)
    if x.target is F.pad:
        return _pad_element(ctx, x, k)
    return None


def _range_element(ctx, x: fx.Node, k: int) -> Any:
    bounds = list(x.args)
    if len(bounds) == 1:
        bounds = [0, bounds[0], 1]
    elif len(bounds) == 2:
        bounds = [*bounds, 1]
    start, _, delta = bounds
    if not all(isinstance(b, (int, fx.Node)) and not isinstance(b, bool) for b in (start, delta)):
        return None
    position = _position(ctx, x, k)
    return _add(ctx, start, _mul(ctx, position, delta))


def _slice_element(ctx, x: fx.Node, k: int) -> Any:
    y: Any = x.args[0]
    key: Any = x.args[1]
    if isinstance(key, tuple) and len(key) == 1:
        key = key[0]
    if not isinstance(key, slice) or not _integer(y, rank=1):
        return None
    a, b, c = key.start, key.stop, 1 if key.step is None else key.step
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (a, b, c)):
        return None
    if c <= 0:
        return None
    b = None if b is not None and b >= _HUGE else b
    _position(ctx, x, k)  # x has element k
    if k >= 0:
        if a is None or a >= 0:
            return element_at(ctx, y, (a or 0) + k * c)
        if a + k * c < 0 and sym_math.decide(operator.ge, _length(ctx, y), -a) is True:
            return element_at(ctx, y, a + k * c)  # from y's end: y is -a long (no clamping)
        return None
    if c != 1:  # the last element of a strided slice depends on the length's parity
        return None
    if b is None:
        return element_at(ctx, y, k)
    if b < 0:
        return element_at(ctx, y, b + k)
    if b + k >= 0 and sym_math.decide(operator.ge, _length(ctx, y), b) is True:
        return element_at(ctx, y, b + k)  # x ends at b: y is at least b long
    return None


def _pad_element(ctx, x: fx.Node, k: int) -> Any:
    args: list[Any] = list(x.args)
    kwargs: dict[str, Any] = dict(x.kwargs)
    y, pad = args[0], args[1]
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else kwargs.get("value", 0)
    if mode != "constant" or not isinstance(pad, (tuple, list)) or len(pad) != 2:
        return None
    if not all(isinstance(p, int) and p >= 0 for p in pad):
        return None
    if value is None:
        value = 0
    if not isinstance(value, (int, float)) or float(value) != int(value):
        return None
    before, after = pad
    _position(ctx, x, k)
    length = _length(ctx, y)
    if k >= 0:
        if k < before:
            return int(value)
        if sym_math.decide(operator.gt, length, k - before) is not True:
            return None  # in y or in the padding after it, as y's length says
        return element_at(ctx, y, k - before)
    if -k <= after:
        return int(value)
    if sym_math.decide(operator.ge, length, -(k + after)) is not True:
        return None
    return element_at(ctx, y, k + after)


def _length(ctx, x: fx.Node) -> Any:
    n = x.meta["val"].shape[0]
    return n if isinstance(n, int) else ctx.method("size", x, 0)


def _position(ctx, x: fx.Node, k: int) -> Any:
    """The position of element `k` of `x` from its start (``n + k`` from the end), with a
    run-time check that `x` has it where the analysis does not show it (reading it would
    fail there too; the tensors a Slice reads from are at least as long as it)."""
    length = _length(ctx, x)
    _check(ctx, length, k + 1 if k >= 0 else -k)
    return k if k >= 0 else _add(ctx, length, k)


def _check(ctx, length: Any, least: int) -> None:
    """A run-time check ``length >= least`` unless the analysis shows it holds always."""
    known = sym_math.decide(operator.ge, length, least)
    if known is True:
        return
    where = ctx.node.target if ctx.node is not None else "?"
    ctx.call(
        torch.ops.aten._assert_scalar,
        ctx.call(operator.ge, length, least),
        f"an element read at a constant index of a tensor too short (ONNX node {where})",
    )


def _add(ctx, a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(b, int) and b == 0:
        return a
    return ctx.call(operator.add, a, b)


def _mul(ctx, a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if isinstance(b, int) and b == 1:
        return a
    return ctx.call(operator.mul, a, b)


def _picked(key: Any) -> int | None:
    """The constant index a 1-D slice of one element picks (``[:1]``, ``[k:k + 1]``,
    ``[-1:]``, ``[-k:-k + 1]``), else None."""
    if isinstance(key, tuple) and len(key) == 1:
        key = key[0]
    if not isinstance(key, slice) or key.step not in (None, 1):
        return None
    a, b = key.start, key.stop
    a = 0 if a is None else a
    if not isinstance(a, int) or isinstance(a, bool):
        return None
    if a >= 0:
        return a if b == a + 1 else None
    if (a == -1 and (b is None or (isinstance(b, int) and b >= _HUGE))) or b == a + 1:
        return a
    return None


def _integer(node: Any, rank: int | None = None) -> bool:
    fake = node.meta.get("val") if isinstance(node, fx.Node) else None
    if not isinstance(fake, torch.Tensor) or fake.dtype not in INTEGER:
        return False
    return rank is None or fake.dim() == rank
