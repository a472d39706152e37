"""Layouts of a tensor's elements through layout ops: factors of a base node's axes.

A node reached from a base node B by permute, squeeze, unsqueeze and reshape holds B's
elements, moved. `Reader` says how: each axis of B is a *factor* (its size, static or
not; a size-1 axis has none), and each node a list of axes, each a tuple of factors in
row-major order. Two nodes whose axes hold the same factors in the same row-major order
are one reshape of each other, element for element (a reshape keeps that order).

* ``permute`` reorders the axes; ``unsqueeze`` inserts an axis of no factor, ``squeeze``
  removes one (it must have none);
* ``reshape``: the target's entries are matched to runs of consecutive factors, from the
  left up to a -1 and from the right back to it (the -1 takes what is left). An int
  entry takes static factors whose product it is (a factor is split in two where the
  entry divides it: 30 -> (6, 5)); from the right it may also split a dynamic factor f
  into (f / k, k), tf2onnx's [-1, H, ...] (where f is no multiple of k the model fails);
  an entry ``x.size(i)`` of a node already read takes exactly the factors of that axis;
  any other entry, and a match that does not use every factor, is not read;
* an elementwise op keeps the layout of its operand when it does not broadcast it to
  another shape.

Used by ``_attention_orient.py``; reads the graph, never changes it.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from fxsurgeon.patterns._attention_graph import _name, shape
from torch import fx

#: Elementwise ops that keep a layout (``where`` too).
ELEMENTWISE = (operator.add, operator.sub, operator.mul, operator.truediv, operator.neg)
LAYOUT = (torch.permute, torch.reshape, torch.squeeze, torch.unsqueeze)


class Decline(Exception):
    """Not a layout (or not a region) this reader can prove."""


class Factors:
    """The factors of B's elements: sizes (None: dynamic) and how split ones divide."""

    def __init__(self) -> None:
        self.size: dict[int, int | None] = {}
        self.parts: dict[int, tuple[int, ...]] = {}

    def new(self, size: int | None) -> int:
        self.size[len(self.size)] = size
        return len(self.size) - 1

    def flat(self, group: tuple) -> tuple:
        out: list = []
        for f in group:
            out.extend(self.flat(self.parts[f]) if f in self.parts else (f,))
        return tuple(out)

    def split(self, f: int, sizes: tuple) -> tuple[int, ...]:
        self.parts[f] = tuple(self.new(s) for s in sizes)
        return self.parts[f]


def dims(value: Any, rank: int) -> tuple[int, ...]:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(int(d) % rank for d in values)


class Reader:
    """Layouts of the region's nodes, relative to B's factors."""

    def __init__(self, base: fx.Node) -> None:
        self.factors = Factors()
        self.layouts: dict[fx.Node, list[tuple]] = {}
        s = shape(base)
        if s is None:
            raise Decline(f"{_name(base)} has no known shape")
        self.base = base
        self.layouts[base] = [() if d == 1 else (self.factors.new(d),) for d in s]

    def flat(self, group: tuple) -> tuple:
        return self.factors.flat(group)

    def group_of(self, entry: Any) -> tuple | None:
        """The factors an entry ``x.size(i)`` of a reshape stands for, if x is known."""
        if not (isinstance(entry, fx.Node) and entry.op == "call_method"):
            return None
        if entry.target != "size" or len(entry.args) != 2 or entry.args[0] not in self.layouts:
            return None
        layout = self.layouts[entry.args[0]]
        return self.flat(layout[entry.args[1] % len(layout)])

    def step(self, node: fx.Node, source: fx.Node) -> list[tuple] | None:
        """The layout of `node` from that of `source`, or None (not readable)."""
        layout = self.layouts[source]
        t, args = node.target, node.args
        if t is torch.permute:
            return [layout[d] for d in dims(args[1], len(layout))]
        if t is torch.unsqueeze:
            out = list(layout)
            out.insert(int(args[1]) % (len(layout) + 1), ())
            return out
        if t is torch.squeeze:
            drop = (
                dims(args[1], len(layout))
                if len(args) > 1
                else tuple(i for i, g in enumerate(layout) if not g)
            )
            if any(layout[d] for d in drop):
                return None
            return [g for i, g in enumerate(layout) if i not in drop]
        if t is torch.reshape:
            return self.reshape(layout, args[1])
        if node.target in ELEMENTWISE or node.target is torch.where:
            return layout if shape(node) == shape(source) else None
        return None

    def reshape(self, layout: list[tuple], target: Any) -> list[tuple] | None:
        if not isinstance(target, (tuple, list)):
            return None
        flat = [f for g in layout for f in self.flat(g)]
        entries = list(target)
        infer = [i for i, e in enumerate(entries) if isinstance(e, int) and e == -1]
        if len(infer) > 1:
            return None
        cut = infer[0] if infer else len(entries)
        groups: list = [None] * len(entries)
        lo = 0
        for i in range(cut):
            taken = self._take(flat, lo, entries[i], left=True)
            if taken is None:
                return None
            groups[i], lo = taken
        hi = len(flat)
        for i in range(len(entries) - 1, cut, -1):
            taken = self._take(flat, hi, entries[i], left=False, floor=lo)
            if taken is None:
                return None
            groups[i], hi = taken
        if infer:
            groups[cut] = tuple(flat[lo:hi])
        elif lo != len(flat):
            return None
        return groups

    def _take(self, flat: list, at: int, entry: Any, left: bool, floor: int = 0):
        """(group, new position) of `entry` taken from `flat` at `at` (from the left: `at`
        is the next index; from the right: the end, exclusive), splitting a factor in
        `flat` where the entry divides it; None if the entry is not such factors."""
        group = self.group_of(entry)
        if group is not None:
            n = len(group)
            part = flat[at : at + n] if left else flat[max(at - n, floor) : at]
            if tuple(part) != group:
                return None
            return group, at + n if left else at - n
        if isinstance(entry, bool) or not isinstance(entry, int) or entry < 1:
            return None
        start, product = at, 1
        while product < entry:
            i = at if left else at - 1
            if i >= len(flat) or i < floor:
                return None
            size, want = self.factors.size[flat[i]], entry // product
            if size is not None and want % size == 0:  # the whole factor
                product *= size
                at = at + 1 if left else at - 1
                continue
            if size is None and left or size is not None and size % want:
                return None
            # split: (want, rest) from the left; (rest, want) from the right, where a
            # dynamic factor may be split by a static one (tf2onnx's [-1, H, ...])
            rest = None if size is None else size // want
            parts = self.factors.split(flat[i], (want, rest) if left else (rest, want))
            flat[i : i + 1] = list(parts)
            product *= want
            if left:
                at = i + 1
            else:
                start, at = start + 1, i + 1
        if product != entry:
            return None
        return (tuple(flat[start:at]) if left else tuple(flat[at:start])), at
