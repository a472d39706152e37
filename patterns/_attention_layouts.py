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
  a product of such sizes and ints (``x.size(0) * 2``, tf2onnx's batch-times-heads), or
  ``max(a, b)`` of two equal such products, takes a run of consecutive factors with the
  same dynamic factors and the same product of static ones (a static one split at the
  end where the rest divides it): equal values, whatever the order of the product;
  any other entry, and a match that does not use every factor, is not read;
* an elementwise op keeps the layout of its operand when it does not broadcast it to
  another shape;
* a MatMul of rank >= 3 is read from its operands (`Reader.of_matmul`): each is read back
  through layout ops to where they start, and the product's axes are the first operand's
  batch and rows, then the second's columns. Batch axes must hold the same factors, or
  factors proven equal: the same number of factors, static ones equal position by
  position, one dynamic factor each at the same position and a static factor > 1 in
  each (neither side is 1, so MatMul does not broadcast: the products are equal, so the
  dynamic factors are); those are then one factor (an alias). This reads tf2onnx's
  ``K @ Q^T`` of Keras 2 MultiHeadAttention, whose reshapes read K's and Q's sizes.

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
    """The factors of B's elements: sizes (None: dynamic), how split ones divide, and
    factors proven equal to another (``alias``: read as that one)."""

    def __init__(self) -> None:
        self.size: dict[int, int | None] = {}
        self.parts: dict[int, tuple[int, ...]] = {}
        self.alias: dict[int, int] = {}

    def resolve(self, f: int) -> int:
        while f in self.alias:
            f = self.alias[f]
        return f

    def new(self, size: int | None) -> int:
        self.size[len(self.size)] = size
        return len(self.size) - 1

    def flat(self, group: tuple) -> tuple:
        out: list = []
        for f in group:
            f = self.resolve(f)
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
        self.base = base
        self.layouts[base] = self.fresh(base)

    def fresh(self, node: fx.Node) -> list[tuple]:
        """`node`'s axes as new factors (size-1 axes have none)."""
        s = shape(node)
        if s is None:
            raise Decline(f"{_name(node)} has no known shape")
        return [() if d == 1 else (self.factors.new(d),) for d in s]

    @classmethod
    def of_matmul(cls, node: fx.Node) -> Reader:
        """A reader whose base is the MatMul `node`, its layout read from its operands'
        (module docstring); Decline where they cannot be read or related."""
        if not (node.op == "call_function" and node.target is torch.matmul):
            raise Decline(f"{_name(node)} is not a MatMul")
        reader = cls(node)
        a, b = (reader.operand(x) for x in node.args[:2])
        if len(a) != len(b) or len(a) < 3 or len(reader.layouts[node]) != len(a):
            raise Decline(f"{_name(node)}: operands of another rank")
        for ga, gb in zip(a[:-2], b[:-2], strict=True):
            reader.unify(reader.flat(ga), reader.flat(gb))
        reader.layouts[node] = [*(reader.flat(g) for g in a[:-1]), reader.flat(b[-1])]
        return reader

    def operand(self, x: Any) -> list[tuple]:
        """`x`'s layout, read from where the layout ops before it start."""
        if not isinstance(x, fx.Node):
            raise Decline("an operand is not a node")
        chain = [x]
        while len(chain) < 32 and chain[0].op == "call_function" and chain[0].target in LAYOUT:
            source = chain[0].args[0]
            if not isinstance(source, fx.Node):
                break
            chain.insert(0, source)
        self.layouts[chain[0]] = self.fresh(chain[0])
        for source, node in zip(chain, chain[1:], strict=False):
            layout = self.step(node, source)
            self.layouts[node] = self.fresh(node) if layout is None else layout
        return self.layouts[x]

    def unify(self, ga: tuple, gb: tuple) -> None:
        """Batch axes of a MatMul's operands: the same factors, or proven equal (module
        docstring); the second's factors become aliases of the first's."""
        if ga == gb:
            return
        size = self.factors.size
        if len(ga) != len(gb):
            raise Decline("a MatMul's batch axes hold different factors")
        dynamic = [i for i, f in enumerate(ga) if size[f] is None]
        if [i for i, f in enumerate(gb) if size[f] is None] != dynamic or len(dynamic) != 1:
            raise Decline("a MatMul's batch axes are not one dynamic factor each, aligned")
        if any(size[f] != size[g] for f, g in zip(ga, gb, strict=True) if size[f] is not None):
            raise Decline("a MatMul's batch axes hold different static factors")
        if not any((size[f] or 1) > 1 for f in ga):
            raise Decline("a MatMul's batch axes may broadcast (no static factor > 1)")
        for f, g in zip(ga, gb, strict=True):
            if f != g:
                self.factors.alias[g] = f

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

    def product_of(self, entry: Any) -> tuple[list, int] | None:
        """An entry as (its dynamic factors, the product of its static ones): an int >= 1,
        a size of a node already read, a product of those, or the max of two equal ones."""
        if isinstance(entry, int) and not isinstance(entry, bool):
            return ([], entry) if entry >= 1 else None
        group = self.group_of(entry)
        if group is not None:
            size = self.factors.size
            return [f for f in group if size[f] is None], _product(
                size[f] for f in group if size[f] is not None
            )
        if not (isinstance(entry, fx.Node) and entry.op == "call_function"):
            return None
        if entry.target in (operator.mul, torch.sym_max) and len(entry.args) == 2:
            x, y = (self.product_of(a) for a in entry.args)
            if x is None or y is None:
                return None
            if entry.target is operator.mul:
                return x[0] + y[0], x[1] * y[1]
            return x if (sorted(x[0]), x[1]) == (sorted(y[0]), y[1]) else None
        return None

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
        if isinstance(entry, fx.Node) and entry.op == "call_function":
            product = self.product_of(entry)
            return None if product is None else self._take_product(flat, at, product, left, floor)
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

    def _take_product(self, flat: list, at: int, product: tuple, left: bool, floor: int):
        """`_take` of a product entry: consecutive factors with its dynamic factors and
        the product of its static ones (the last static one split where it divides)."""
        dynamic, rest = list(product[0]), product[1]
        start = at
        while dynamic or rest > 1:
            i = at if left else at - 1
            if i >= len(flat) or i < floor:
                return None
            f = flat[i]
            size = self.factors.size[f]
            if size is None:
                if f not in dynamic:
                    return None
                dynamic.remove(f)
            elif rest % size == 0:
                rest //= size
            elif not dynamic and size % rest == 0:
                parts = self.factors.split(
                    f, (rest, size // rest) if left else (size // rest, rest)
                )
                flat[i : i + 1] = list(parts)
                rest = 1
                if not left:
                    start, at = start + 1, i + 1
                    continue
            else:
                return None
            at = at + 1 if left else at - 1
        return (tuple(flat[start:at]) if left else tuple(flat[at:start])), at


def regrouped(node: fx.Node, source: fx.Node, reader: Reader) -> Reader | None:
    """A reader whose base is `node`, a reshape of the MatMul `source` that is B, read
    with the MatMul's operands (Keras 2 MultiHeadAttention: ``K @ Q^T`` [N*H, Lk, Lq]
    reshaped to [N, H, Lk, Lq, 1] by sizes of K and Q); None where that does not read."""
    if (
        source is not reader.base
        or not (source.op == "call_function" and source.target is torch.matmul)
        or node.target is not torch.reshape
    ):
        return None
    try:
        deep = Reader.of_matmul(source)
    except Decline:
        return None
    layout = deep.step(node, source)
    if layout is None:
        return None
    deep.base = node
    deep.layouts[node] = layout
    return deep


def regrouped_matmul(reader: Reader, base: fx.Node, perm: list) -> tuple:
    """B a reshape of C = K @ Q^T ([..., Lk, Lq], its layout read from its operands): B
    holds C's elements in C's order, so where B's axes in (batch, Lq, Lk) order are C's
    batch factors in order, then C's last axis, then its second-to-last, B in that order
    is C^T = Q @ K^T ((a @ b)^T = b^T @ a^T) reshaped to those axes' sizes: static ones
    as numbers, Lq and Lk as the new product's, one dynamic batch axis as -1."""
    matmul = base.args[0]
    c = reader.layouts[matmul]
    rows, cols = reader.flat(c[-2]), reader.flat(c[-1])
    batch = sum((reader.flat(g) for g in c[:-2]), ())
    axes = [reader.flat(g) for g in reader.layouts[base] if reader.flat(g)]
    ordered = [axes[p] for p in perm]
    if len(ordered) < 3 or ordered[-1] != rows or ordered[-2] != cols:
        raise Decline(f"{_name(base)} in order is not Q @ K^T regrouped")
    if sum(ordered[:-2], ()) != batch:
        raise Decline(f"{_name(base)} regroups K @ Q^T's batch in another order")
    target: list = []
    for group in ordered[:-2]:
        sizes = [reader.factors.size[f] for f in group]
        target.append(-1 if None in sizes else _product(sizes))
    if target.count(-1) > 1:
        raise Decline(f"{_name(base)} has more than one dynamic batch axis")
    a, b = matmul.args[:2]
    # the shapes of the two new nodes (their meta inference samples each dynamic dim
    # alone, which a dim that is a product of others defeats): C's with its last two
    # swapped, and B's non-unit axes in order
    c_shape, b_shape = shape(matmul), shape(base)
    if c_shape is None or b_shape is None:
        raise Decline(f"{_name(base)} has no known shape")
    dims = [d for d in range(len(b_shape)) if reader.flat(reader.layouts[base][d])]
    shapes = ((*c_shape[:-2], c_shape[-1], c_shape[-2]), tuple(b_shape[dims[p]] for p in perm))
    target = (*target, ("size", -2), ("size", -1))
    return ("matmul_reshape", a, b, target, shapes, base.meta.get("fxs_dtype"))


def known(x, shape_: tuple, dtype) -> None:
    """Record a new node's shape where the region proved it (a traced proxy only)."""
    node = getattr(x, "node", None)
    if isinstance(node, fx.Node) and dtype is not None:
        node.meta["fxs_shape"], node.meta["fxs_dtype"] = tuple(shape_), dtype


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out
