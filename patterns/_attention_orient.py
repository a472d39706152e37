"""Attention scores permuted between the contraction and the softmax: put in [..., Lq, Lk].

The recognizer (``_attention_scores.py``) reads scores whose last two axes are (Lq, Lk)
from the contraction of Q with K to a softmax over the last axis. Some exports move the
axes on the way: TF XLNet computes its scores in the einsum layout [i, j, b, n]
(tf2onnx permutes them to [i, b, j, n], adding its position and segment terms there)
and takes the softmax over the keys j, axis -2; Keras' MultiHeadAttention over two
axes contracts K with Q ([N*H, Lk, Lq]), splits both lengths in two, permutes the
queries before the keys and takes the softmax over the two key axes (flattened by
``softmax.py``). `orient` reads such a *region*, the nodes from a base node B to the
softmax and on to the contraction with V, as layouts of B's elements
(``_attention_layouts.py``); ``sdpa_orient_1`` (``attention.py``) writes the same
computation in [..., Lq, Lk] order, for ``sdpa_1..5`` to read.

What it reads. Walking back from the softmax through layout ops and elementwise ops
(``+ - * /``, neg, ``where``) with one operand computed from a contraction, to B (a
reshape it cannot read ends the walk there). Then:

* Lk = the factors of the softmax axis; the probabilities that meet V must end in that
  axis, and their second-to-last axis is Lq; each must be one whole axis of B; the
  batch is B's other axes, and the probabilities must hold them in B's order;
* every other operand of an elementwise op is a *term*: a number, or a tensor not
  computed from the region, broadcast to the node's shape (the op must not change it).

Why the rewrite is exact. Layout ops only move elements: two nodes whose axes hold the
same factors in the same row-major order are one reshape of each other. An elementwise
op commutes with moving the elements when its terms move alike: a term is given the
node's rank (leading size-1 axes, as broadcasting does), its axes where the node has
size 1 are squeezed (size 1 there too) and it is permuted as the node's axes are to
(batch, Lq, Lk): each element meets the same term values as before. A softmax over an
axis is one over the same elements wherever the axis is moved. So the region is B in
(batch, Lq, Lk) order, the elementwise ops with their terms moved, ``softmax(-1)`` and
an unsqueeze (or a reshape) to the probabilities' shape, the same elements in the same
order. B in that order must be B itself (its size-1 axes squeezed) or a contraction
that writes it: the transpose of a MatMul of K with Q is the MatMul of Q with K
(``(a @ b)^T = b^T @ a^T``, the same products summed; SDPA computes its own anyway), an
Einsum with its output subscripts reordered, or a reshape of ``K @ Q^T`` read from the
MatMul's operands (Keras 2 MultiHeadAttention: [N*H, Lk, Lq] to [N, H, Lk, Lq, 1] by sizes
of K and Q, tried where B alone declines): ``Q @ K^T`` reshaped, ``regrouped_matmul`` in
``_attention_layouts.py`` says when that is exact. Anything else declines.

The lengths. A ``size()`` of a region node that is read elsewhere is read from B's axis
with the same factors (the reshape entry that made it, where B is a reshape), or is a
number where static; the layout ops after the region (a reshape it cannot read) are
written again on what replaces the probabilities, reading its own sizes, so that the
attention rules see a reshape of its input's sizes as before.

A region already in order (no permute, softmax over the last axis) is left to the
attention rules; when the scores are a sum of two contractions (XLNet: content plus
position scores), every reading is tried and none rewritten if one is in order, so the
rewrite never undoes itself.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from fxsurgeon.patterns._attention_graph import _name, scalar, shape
from fxsurgeon.patterns._attention_layouts import (
    ELEMENTWISE,
    LAYOUT,
    Decline,
    Reader,
    known,
    regrouped,
    regrouped_matmul,
)
from fxsurgeon.patterns._attention_masks import zeroing
from fxsurgeon.patterns._attention_scores import ancestors, einsum_parts
from torch import fx

CONTRACTIONS = (torch.matmul, torch.einsum)
_MAX_PATHS = 16


@dataclass
class Region:
    """What `orient` found: B, the ops to replay, the ends, and how sizes are read."""

    base: fx.Node
    ops: list  # (node, chain argument index | None): the elementwise ops, in order
    softmax: fx.Node
    probs: fx.Node  # the region's last node on the probabilities' side
    tail: list  # layout ops (a zeroing Where) after it, up to the contraction with V (replayed)
    order: list  # B's non-unit axes in (batch, Lq, Lk) order
    unit: tuple  # B's size-1 axes
    contraction: tuple | None  # B permuted, written as a contraction (`_permuted_contraction`)
    # to the probabilities' shape: ("unsqueeze", axes in ascending order) or ("reshape",
    # entries: int, ("size", i) of the softmax or -1)
    probs_shape: tuple
    # (op node, argument index) of a term -> (leading axes to add, axes to squeeze, perm)
    terms: dict = field(default_factory=dict)
    sizes: list = field(default_factory=list)  # (size node, value): B's size or a number


def _users(node: fx.Node) -> list[fx.Node]:
    """The users of `node` other than ``size()`` calls."""
    return [u for u in node.users if not (u.op == "call_method" and u.target == "size")]


def _is(node: Any, targets: tuple) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target in targets


def _reaches_contraction(value: Any, budget: int = 200) -> bool:
    stack, seen = [value], 0
    while stack and seen < budget:
        n = stack.pop()
        seen += 1
        if _is(n, CONTRACTIONS):
            return True
        if _is(n, LAYOUT):
            stack.append(n.args[0])
        elif _is(n, ELEMENTWISE):
            stack.extend(a for a in n.args if isinstance(a, fx.Node))
        elif _is(n, (torch.where,)):
            stack.extend(a for a in n.args[1:] if isinstance(a, fx.Node))
    return False


def _chain_args(node: fx.Node) -> list[int]:
    """The argument positions of `node` that may carry the scores."""
    if _is(node, ELEMENTWISE):
        return [i for i, a in enumerate(node.args) if _reaches_contraction(a)]
    if _is(node, (torch.where,)):
        return [i for i in (1, 2) if _reaches_contraction(node.args[i])]
    return []


def score_paths(node: fx.Node, depth: int = 0):
    """Candidate (B, [(node, chain index)]) walks from `node` back to a base B."""
    if depth > 64:
        return
    if _is(node, LAYOUT):
        source = node.args[0]
        if isinstance(source, fx.Node) and _users(source) == [node]:
            for base, ops in score_paths(source, depth + 1):
                yield base, [*ops, (node, 0)]
        else:
            yield node, []
        return
    found = False
    for i in _chain_args(node):
        source = node.args[i]
        if _users(source) == [node]:
            for base, ops in score_paths(source, depth + 1):
                found = True
                yield base, [*ops, (node, i)]
    if not found:
        yield node, []


# --------------------------------------------------------------------------- the region


def orient(anchor: fx.Node, module: fx.GraphModule) -> Region | str:
    """The `Region` of ``matmul(probs, v)`` at `anchor`, or why it is not one to rewrite."""
    probs_path = _probs_side(anchor, module)
    if isinstance(probs_path, str):
        return probs_path
    softmax, after = probs_path
    # Every way back to a contraction is read (scores plus a term that is a contraction
    # too: XLNet's position and segment terms): if one is in order already, nothing is
    # rewritten, so that a rewrite is never undone by the next (the terms it permuted).
    found: list = []
    reasons = []
    scores = softmax.args[0]
    paths = score_paths(scores) if _users(scores) == [softmax] else iter([(scores, [])])
    for n, (base, ops) in enumerate(paths):
        if n >= _MAX_PATHS:
            break
        try:
            found.append(_read(base, ops, softmax, after, module))
        except Standard as exc:
            return str(exc)
        except Decline as exc:
            reasons.append(str(exc))
    if found:
        return found[0]
    return reasons[0] if reasons else "no scores to read"


def _probs_side(anchor: fx.Node, module) -> tuple[fx.Node, list[fx.Node]] | str:
    """The softmax the contraction with V reads through layout ops (and a zeroing Where
    right after the softmax: Keras' masked softmax, DeBERTa's), and those ops."""
    node, after = anchor.args[0], []
    while True:
        if _is(node, LAYOUT):
            after.insert(0, node)
            node = node.args[0]
            continue
        found = zeroing(node, module)
        if found is not None and _is(found[2], (torch.softmax,)):
            after.insert(0, node)
            node = found[2]
        break
    if not _is(node, (torch.softmax,)) or len(node.args) != 2 or node.kwargs:
        return f"{_name(node)} is not a softmax (through layout ops)"
    ends = [node, *after]
    for a, b in zip(ends, [*after, anchor], strict=True):
        if _users(a) != [b]:
            return f"%{a.name} is also used outside the attention"
    return node, after


def _read(base, ops, softmax, after, module, reader=None) -> Region:
    reader = reader or Reader(base)
    chain = [n for n, _ in ops]
    source = base
    for i, node in enumerate(chain):
        layout = reader.step(node, source)
        if layout is None:  # (a reshape of other sizes, a broadcast): the region starts here
            try:
                return _read(node, ops[i + 1 :], softmax, after, module)
            except Standard:
                raise
            except Decline:
                deep = regrouped(node, source, reader)
                if deep is None:
                    raise
                return _read(node, ops[i + 1 :], softmax, after, module, deep)
        reader.layouts[node] = layout
        source = node
    scores = chain[-1] if chain else base
    reader.layouts[softmax] = reader.layouts[scores]
    probs, tail, source = softmax, [], softmax
    for i, node in enumerate(after):
        # a zeroing Where is replayed as it is after the probabilities (sdpa_4 reads it)
        layout = None if _is(node, (torch.where,)) else reader.step(node, source)
        if layout is None:
            tail = after[i:]
            break
        reader.layouts[node] = layout
        probs = source = node
    for node in tail:
        if any(u.op == "call_method" and u.target == "size" for u in node.users):
            raise Decline(f"a length of %{node.name} is read elsewhere")
    return _plan(reader, ops, softmax, probs, tail, module)


def _axes_of(factors: tuple, axes: list[tuple]) -> list[int] | None:
    """The B axes whose factors, in this order, are `factors`."""
    out, rest = [], factors
    while rest:
        hit = [a for a, g in enumerate(axes) if g and rest[: len(g)] == g and a not in out]
        if not hit:
            return None
        out.append(hit[0])
        rest = rest[len(axes[hit[0]]) :]
    return out


class Standard(Decline):
    """The region is in [..., Lq, Lk] order already: the attention rules read it."""


def _plan(reader, ops, softmax, probs, tail, module) -> Region:
    base = reader.base
    if not _reaches_contraction(base):
        raise Decline(f"{_name(base)} is not computed from a contraction")
    layout = reader.layouts[softmax]
    keys = reader.flat(layout[int(softmax.args[1]) % len(layout)])
    axes = [reader.flat(g) for g in reader.layouts[base]]
    end = reader.layouts[probs]
    real = [reader.flat(g) for g in end if reader.flat(g)]
    if len(end) >= 2 and reader.flat(end[-1]) == keys and not reader.flat(end[-2]):
        return _single_query(reader, ops, softmax, probs, tail, module, axes, end)
    if len(end) < 2 or reader.flat(end[-1]) != keys or not reader.flat(end[-2]):
        raise Decline("the probabilities that meet V do not end in (queries, softmax's axis)")
    lk, lq = _axes_of(keys, axes), _axes_of(reader.flat(end[-2]), axes)
    if lk is None or lq is None or len(lq) != 1 or len(lk) != 1:
        raise Decline("the softmax's axis or the queries are not whole axes of the scores")
    batch = [a for a, g in enumerate(axes) if g and a not in lk + lq]
    order = batch + lq + lk
    if sum(real, ()) != sum((axes[a] for a in order), ()):
        raise Decline("the probabilities that meet V hold the batch in another order")
    unit = tuple(a for a, g in enumerate(axes) if not g)
    ranks = {a: i for i, a in enumerate(a for a in range(len(axes)) if axes[a])}
    perm = [ranks[a] for a in order]
    nodes = [n for n, _ in ops] + [softmax] + _between(softmax, probs)
    last = int(softmax.args[1]) % len(layout) == len(layout) - 1
    if last and perm == sorted(perm) and all(n.target is not torch.permute for n in nodes):
        raise Standard("the scores are in [..., Lq, Lk] order already (sdpa_1..5 read them)")
    contraction = None
    if perm != sorted(perm):  # B must take the permute: a contraction that writes it
        contraction = _permuted_contraction(base, perm, unit, reader)
    region = Region(
        base=base,
        ops=[(n, i) for n, i in ops if _is(n, ELEMENTWISE) or _is(n, (torch.where,))],
        softmax=softmax,
        probs=probs,
        tail=list(tail),
        order=perm,
        unit=unit,
        contraction=contraction,
        probs_shape=_probs_shape(reader, end, [axes[a] for a in order]),
    )
    inside = set(nodes)
    for node, i in region.ops:
        for j, arg in enumerate(node.args):
            if j != i and isinstance(arg, fx.Node):
                _term(region, reader, (node, j), inside, axes, module)
    _sizes(region, reader, nodes, axes)
    return region


def _single_query(reader, ops, softmax, probs, tail, module, axes, end) -> Region:
    """One query (Lq = 1: a class token's attention pooling). Keras' MultiHeadAttention on a
    query of length 1 is exported as ``K @ Q^T`` ([..., Lk, 1]), its softmax over the keys
    (axis -2) and permuted to [..., 1, Lk]: B's last axis is the query's, of size 1, and
    its second-to-last the keys. B transposed is ``Q @ K^T`` ([..., 1, Lk], the
    probabilities' own layout, ``(a @ b)^T = b^T @ a^T``), and the softmax over its last
    axis is over the same elements. Elementwise ops on the way take numbers only (a term
    would have to be moved to the new layout); B's other axes must be the probabilities'
    leading axes in order, none of size 1."""
    base = reader.base
    rank = len(axes)
    flat = [reader.flat(g) for g in end]
    if not _is(base, (torch.matmul,)) or rank < 3 or axes[-1] or not axes[-2]:
        raise Decline("a single query's scores are not K @ Q^T ([..., Lk, 1])")
    if flat != [*axes[:-2], (), axes[-2]] or not all(axes[:-2]):
        raise Decline("a single query's probabilities are not B's batch, 1, then the keys")
    if any(len(shape(x) or ()) < 2 for x in base.args):
        raise Decline(f"{_name(base)} is not a product of matrices")
    region = Region(
        base=base,
        ops=[(n, i) for n, i in ops if _is(n, ELEMENTWISE)],
        softmax=softmax,
        probs=probs,
        tail=list(tail),
        order=[*range(rank - 2), rank - 1, rank - 2],
        unit=(),
        contraction=("matmul", *base.args),
        probs_shape=("unsqueeze", ()),
    )
    if len(region.ops) != len(ops):
        raise Decline("a single query's scores pass a where")
    for node, i in region.ops:
        for j, arg in enumerate(node.args):
            if j != i and isinstance(arg, fx.Node) and scalar(arg, module) is None:
                raise Decline(f"the term %{arg.name} of a single query's scores is no number")
    nodes = [n for n, _ in ops] + [softmax] + _between(softmax, probs)
    for node in nodes:
        if any(u.op == "call_method" and u.target == "size" for u in node.users):
            raise Decline(f"a length of %{node.name} is read elsewhere")
    return region


def _permuted_contraction(base: fx.Node, perm: list, unit: tuple, reader=None) -> tuple:
    """B permuted by `perm`, as a contraction: ("matmul", a, b) for the transpose of a
    MatMul (Q @ K^T for K @ Q^T), ("einsum", equation, a, b) with the output reordered,
    ("matmul_reshape", a, b, target) for a reshape of K @ Q^T read with its operands
    (``regrouped_matmul``, ``_attention_layouts.py``)."""
    rank = len(perm)
    if reader is not None and base.target is torch.reshape and base.args[0] in reader.layouts:
        return regrouped_matmul(reader, base, perm)
    if not unit and _is(base, (torch.matmul,)) and rank >= 3:
        a, b = base.args
        swap = [*range(rank - 2), rank - 1, rank - 2]
        if perm == swap and all(len(shape(x) or ()) >= 2 for x in (a, b)):
            return ("matmul", a, b)
    parts = einsum_parts(base) if _is(base, (torch.einsum,)) else None
    if not unit and parts is not None and len(parts[2]) == rank:
        x, y, out = parts
        return ("einsum", f"{x},{y}->{''.join(out[i] for i in perm)}", *base.args[1:])
    raise Decline(f"{_name(base)} would need a permute that no contraction takes")


def _between(softmax: fx.Node, probs: fx.Node) -> list[fx.Node]:
    out, node = [], probs
    while node is not softmax:
        out.insert(0, node)
        node = node.args[0]
    return out


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _probs_shape(reader: Reader, end: list, std: list) -> tuple:
    """How the softmax in (batch, Lq, Lk) order becomes the probabilities' shape."""
    flat = [reader.flat(g) for g in end]
    if [g for g in flat if g] == std:
        return ("unsqueeze", tuple(i for i, g in enumerate(flat) if not g))
    target: list = []
    for g in flat:
        sizes = [reader.factors.size[f] for f in g]
        if None not in sizes:
            target.append(_product(sizes))
        elif g in std:
            target.append(("size", std.index(g)))
        else:
            target.append(-1)
    if target.count(-1) > 1:
        raise Decline("the probabilities' shape cannot be written from the scores'")
    return ("reshape", tuple(target))


def _term(region, reader, at: tuple, inside, axes, module) -> None:
    """How argument `at` = (node, index), a term of an elementwise op, is moved to
    (batch, Lq, Lk)."""
    node, term = at[0], at[0].args[at[1]]
    if ancestors(term) & inside:
        raise Decline(f"the term %{term.name} is computed from the scores")
    if scalar(term, module) is not None and len(shape(term) or ()) <= 1:
        return  # one number: it broadcasts the same in any layout
    s, layout = shape(term), reader.layouts[node]
    if s is None or len(s) > len(layout):
        raise Decline(f"the term %{term.name} has no known shape or a higher rank")
    full = (1,) * (len(layout) - len(s)) + tuple(s)
    unit = tuple(i for i, g in enumerate(layout) if not reader.flat(g))
    if any(full[i] != 1 for i in unit):
        raise Decline(f"the term %{term.name} broadcasts the scores")
    kept = [reader.flat(g) for g in layout if reader.flat(g)]
    order = [a for a in range(len(axes)) if axes[a]]
    where = {}
    for a in order:
        if axes[a] not in kept:
            raise Decline(f"the term %{term.name} meets the scores in a regrouped layout")
        where[a] = kept.index(axes[a])
    perm = tuple(where[order[i]] for i in region.order)
    region.terms[at] = (len(layout) - len(s), unit, perm)


def _sizes(region, reader, nodes, axes) -> None:
    """Every ``size()`` of a node of the region, read where it stays valid."""
    dying = set(nodes) | {region.probs}
    for node in nodes:
        for user in list(node.users):
            if not (user.op == "call_method" and user.target == "size" and len(user.args) == 2):
                continue
            if all(u in dying for u in user.users):
                continue  # read only by the region, which goes
            layout = reader.layouts[node]
            group = reader.flat(layout[user.args[1] % len(layout)])
            sizes = [reader.factors.size[f] for f in group]
            if None not in sizes:
                region.sizes.append((user, _product(sizes)))
            elif group in axes:
                region.sizes.append((user, _base_size(region.base, axes.index(group))))
            else:
                raise Decline(f"%{user.name} reads a length of the scores that B has not")


def _base_size(base: fx.Node, axis: int):
    """B's `axis`: the reshape entry that made it where that is a size or a number (read
    before B), else ("size", axis) of B."""
    if base.target is torch.reshape and isinstance(base.args[1], (tuple, list)):
        entry = base.args[1][axis]
        if isinstance(entry, fx.Node) or (isinstance(entry, int) and entry >= 0):
            return entry
    return ("size", axis)


# --------------------------------------------------------------------------- the rewrite

#: a name tf2onnx makes up for a node it writes (``MatMul__754``): no TF scope
_GENERATED = re.compile(r"__\d+(:\d+)?$")


def scope(region: Region, anchor: fx.Node) -> str | None:
    """The TF op the rewritten contraction with V stands for (``fxsurgeon.onnx_node``, what
    parameter names and modules are read from): tf2onnx names the MatMul it writes for an
    Einsum itself, so the first op of the scores, from the softmax back, that TF named."""
    for node in [*(n for n, _ in reversed(region.ops)), anchor, region.softmax]:
        name = node.meta.get("fxsurgeon.onnx_node")
        if isinstance(name, str) and name and not _GENERATED.search(name):
            return name
    return anchor.meta.get("fxsurgeon.onnx_node")


def extras(region: Region) -> dict[str, Any]:
    """The replacement's values (graph nodes in tuples and lists, which become proxies)."""
    ops = []
    for node, i in region.ops:
        specs: list = []
        for j, arg in enumerate(node.args):
            if j == i:
                specs.append(("scores",))
            elif (node, j) in region.terms:
                specs.append(("term", arg, *region.terms[node, j]))
            else:
                specs.append(("value", arg))
        ops.append((node.target, specs))
    return {
        "base": region.base,
        "contraction": region.contraction,
        "unit": region.unit,
        "ops": ops,
        "probs_shape": region.probs_shape,
        "tail": [
            (n.target, _lengths(n.args[:i], region.probs), _lengths(n.args[i + 1 :], region.probs))
            for n, i in zip(region.tail, _chain_positions(region), strict=True)
        ],
        "sizes": list(region.sizes),
    }


def _chain_positions(region: Region) -> list[int]:
    """Which argument of each tail op is the chain (what replaces the probabilities)."""
    positions, source = [], region.probs
    for node in region.tail:
        positions.append(next(i for i, a in enumerate(node.args) if a is source))
        source = node
    return positions


_SIZE_ARITHMETIC = (operator.add, operator.sub, operator.mul, operator.floordiv)


def _lengths(value: Any, probs: fx.Node) -> Any:
    """`value` with each ``probs.size(i)`` (and arithmetic of them) as ("length", ...): the
    layout ops after the region read the lengths of what replaces `probs` (so that the
    attention rules see a reshape of its own sizes, as before)."""
    if isinstance(value, (tuple, list)):
        return type(value)(_lengths(v, probs) for v in value)
    if not isinstance(value, fx.Node):
        return value
    if value.op == "call_method" and value.target == "size" and value.args[0] is probs:
        return ("length", "size", value.args[1])
    if value.op == "call_function" and value.target in _SIZE_ARITHMETIC:
        args = [_lengths(a, probs) for a in value.args]
        if any(isinstance(a, tuple) and a[:1] == ("length",) for a in args):
            return ("length", value.target, *args)
    return value


def _length(value: Any, x) -> Any:
    """A ``_lengths`` entry computed on `x` (what replaces the probabilities)."""
    if isinstance(value, tuple) and value and isinstance(value[0], str) and value[0] == "length":
        if value[1] == "size":
            return x.size(value[2])
        return value[1](*(_length(a, x) for a in value[2:]))
    if isinstance(value, (tuple, list)):
        return type(value)(_length(v, x) for v in value)
    return value


def _moved(spec, scores):
    kind, *rest = spec
    if kind == "scores":
        return scores
    if kind == "value":
        return rest[0]
    term, lead, unit, perm = rest
    for _ in range(lead):
        term = torch.unsqueeze(term, 0)
    if unit:
        term = torch.squeeze(term, unit)
    return torch.permute(term, perm) if list(perm) != sorted(perm) else term


def rebuild(base, contraction, unit, ops, probs_shape, tail):
    """The region in (batch, Lq, Lk) order, from B to the probabilities that meet V, then
    the layout ops after them."""
    if contraction is None:
        x = torch.squeeze(base, unit) if unit else base
    elif contraction[0] == "matmul":  # K @ Q^T: write Q @ K^T
        _, a, b = contraction
        swap_a = (*range(a.dim() - 2), a.dim() - 1, a.dim() - 2)
        swap_b = (*range(b.dim() - 2), b.dim() - 1, b.dim() - 2)
        x = torch.matmul(torch.permute(b, swap_b), torch.permute(a, swap_a))
    elif contraction[0] == "matmul_reshape":  # a reshape of K @ Q^T: Q @ K^T reshaped
        _, a, b, target, shapes, dtype = contraction
        swap_a = (*range(a.dim() - 2), a.dim() - 1, a.dim() - 2)
        swap_b = (*range(b.dim() - 2), b.dim() - 1, b.dim() - 2)
        x = torch.matmul(torch.permute(b, swap_b), torch.permute(a, swap_a))
        known(x, shapes[0], dtype)
        x = torch.reshape(x, tuple(x.size(e[1]) if isinstance(e, tuple) else e for e in target))
        known(x, shapes[1], dtype)
    else:
        _, equation, a, b = contraction
        x = torch.einsum(equation, a, b)
    for target, specs in ops:
        x = target(*(_moved(s, x) for s in specs))
    x = torch.softmax(x, -1)
    how, spec = probs_shape
    if how == "unsqueeze":
        for axis in spec:
            x = torch.unsqueeze(x, axis)
    else:
        x = torch.reshape(x, tuple(x.size(e[1]) if isinstance(e, tuple) else e for e in spec))
    probs = x
    for target, before, after in tail:
        x = target(*_length(before, probs), x, *_length(after, probs))
    return x
