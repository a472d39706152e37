"""Recognising attention in the canonical graph: the analysis behind ``attention.py``.

`recognize(match)` starts from ``softmax(scores, -1) @ v`` (a MatMul or a
two-operand Einsum) and walks ``scores`` back to the contraction of Q with K,
reading each step as part of an affine form

    scores = scale * (Q . K) + sum(coef_i * term_i) + sum(where-fills) [* causal band]

It returns a `Plan` (how to read q, k, v in [..., L, D] form, the scale, the
additive terms, the boolean masks, whether the band is causal) or the reason it
declines. Nothing here mutates the graph; `attention.py` says why each absorbed
piece is exact.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from fxsurgeon.patterns._attention_frames import (
    LAYOUT_OPS,
    dynamic_lengths,
    frame,
    keeps_lengths,
    layout_run,
    length_of,
    step_down,
    target,
)
from fxsurgeon.patterns._attention_graph import (
    _name,
    band_condition,
    node_dtype,
    row_factor,
    scalar,
    shape,
    zero_one,
)
from fxsurgeon.patterns._attention_masks import (
    absorb_masks,
    absorb_zero,
    offset,
    strip_factors,
    zeroing,
)
from torch import fx

#: The largest finite float32: a fill scaled past it is -inf in the model (declined).
F32_MAX = float(torch.finfo(torch.float32).max)

_SHAPE_OPS = (torch.permute, torch.reshape, torch.transpose, torch.unsqueeze, torch.squeeze)


@dataclass
class Operand:
    """``base`` followed by ``ops`` ((target, args) pairs) reads the operand in [..., L, D]."""

    base: fx.Node
    ops: tuple = ()
    factor: float = 1.0  # a constant scale taken off the operand (q * c)
    sizes: tuple = ()  # (size node, node, dim): size()s of q * c, to read from q (same shape)


@dataclass
class Plan:
    q: Operand
    k: Operand
    v: Operand
    out_ops: tuple  # from SDPA's [..., Lq, Dv] to the anchor's layout
    scale: float = 1.0
    terms: list = field(default_factory=list)  # (coef, node): additive, summed into attn_mask
    fills: list = field(default_factory=list)  # (cond, when_true, when_false): boolean masks
    # (cond, on_true, pieces): + Where(cond, sum(coef * term), 0) (or its mirror, not on_true)
    gated: list = field(default_factory=list)
    causal: str = ""  # "top" (i >= j) or "bottom" (i + Lk - Lq >= j): `causal_alignment`
    sizes: list = field(default_factory=list)  # (size node, operand node, dim) to re-point
    chain: list = field(default_factory=list)  # the score nodes the rewrite replaces
    # (band node, cond, how many terms lie below it) of a multiplicative 0/1 band (`zero_one`)
    bands: list = field(default_factory=list)
    head_dim: int | None = None  # D, where static
    reshapes: list = field(default_factory=list)  # reshapes of the scores, core outwards
    # how many reshapes lie below each mask: one per term (in the order of `terms`, until
    # `absorb_masks` splits them), and those of the fills and bands
    term_levels: list = field(default_factory=list)
    regroup: dict = field(default_factory=dict)  # term index -> (core lead, SDPA's lead)
    mask_levels: set = field(default_factory=set)
    inner: list = field(default_factory=list)  # layout nodes inside a run (not its end)
    pending: list = field(default_factory=list)  # runs of dynamic lengths to prove
    values: list = field(default_factory=list)  # (size node, entry): a size read elsewhere
    zero: tuple | None = None  # (cond, whether True hides): rows with no visible key are 0
    factor: fx.Node | None = None  # stored values times q . k alone (`row_factor`): q * t


def ancestors(node: Any, limit: int = 5000) -> set[fx.Node]:
    """Every node `node` is computed from (itself included), not looking through size():
    a mask built from the scores' sizes does not read their values."""
    seen: set[fx.Node] = set()
    stack = [node] if isinstance(node, fx.Node) else []
    while stack and len(seen) < limit:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_method" and n.target == "size":
            continue
        stack.extend(n.all_input_nodes)
    return seen


# --------------------------------------------------------------------------- contractions


def einsum_parts(node: fx.Node) -> tuple[str, str, str] | None:
    """(a, b, out) subscripts of a two-operand einsum without ellipsis or repeats."""
    if node.op != "call_function" or node.target is not torch.einsum or len(node.args) != 3:
        return None
    equation = node.args[0]
    if not isinstance(equation, str) or "." in equation or "->" not in equation:
        return None
    inputs, out = equation.replace(" ", "").split("->")
    parts = inputs.split(",")
    if len(parts) != 2 or any(len(set(p)) != len(p) for p in (*parts, out)):
        return None
    return parts[0], parts[1], out


def _permute_to(letters: str, order: str) -> tuple:
    perm = tuple(letters.index(c) for c in order)
    return () if perm == tuple(range(len(perm))) else ((torch.permute, (perm,)),)


def qk_contraction(node: Any) -> tuple[Operand, Operand, str] | str:
    """q, k in [..., L, D] form of a Q.K^T contraction, and the batch letters (einsum)."""
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return "the scores do not come from a contraction"
    if node.target is torch.matmul:
        a, b = node.args
        ranks = [len(shape(x) or ()) for x in (a, b)]
        if ranks[0] < 2 or ranks[0] != ranks[1]:
            return f"%{node.name}: q and k^T ranks {ranks} differ (or are unknown)"
        swap = (*range(ranks[0] - 2), ranks[0] - 1, ranks[0] - 2)
        return Operand(a), Operand(b, ((torch.permute, (swap,)),)), ""
    parts = einsum_parts(node)
    if parts is None:
        return (
            f"%{node.name} ({getattr(node.target, '__name__', node.target)}) is not a contraction"
        )
    a, b, out = parts
    if len(out) < 2:
        return f"%{node.name}: the einsum output {out!r} has no (Lq, Lk)"
    batch, lq, lk = out[:-2], out[-2], out[-1]
    q_letters, k_letters, q_node, k_node = (
        (a, b, *node.args[1:]) if lq in a else (b, a, *node.args[2:0:-1])
    )
    contracted = [c for c in q_letters if c in k_letters and c not in out]
    if (
        lq not in q_letters
        or lk not in k_letters
        or lk in q_letters
        or lq in k_letters
        or len(contracted) != 1
        or any(c not in q_letters or c not in k_letters for c in batch)
        or len(q_letters) != len(out)
        or len(k_letters) != len(q_letters)
    ):
        return f"%{node.name}: einsum {node.args[0]!r} is not q . k over one feature axis"
    d = contracted[0]
    q = Operand(q_node, _permute_to(q_letters, batch + lq + d))
    k = Operand(k_node, _permute_to(k_letters, batch + lk + d))
    return q, k, batch


def pv_contraction(anchor: fx.Node, probs: fx.Node, batch: str) -> tuple[Operand, tuple] | str:
    """v in [..., Lk, Dv] form and the ops from SDPA's output to the anchor's layout."""
    if anchor.target is torch.matmul:
        return Operand(anchor.args[1]), ()
    parts = einsum_parts(anchor)
    if parts is None or anchor.args[1] is not probs:
        return f"%{anchor.name} is not probs . v"
    p, v_letters, out = parts
    if len(p) < 2:
        return f"%{anchor.name}: the probabilities {p!r} have no (Lq, Lk)"
    p_batch, lq, lk = p[:-2], p[-2], p[-1]
    dv = [c for c in v_letters if c not in p]
    if (
        len(dv) != 1
        or lk not in v_letters
        or lk in out
        or sorted(out) != sorted(p_batch + lq + dv[0])
        or any(c not in v_letters for c in p_batch)
        or len(v_letters) != len(p_batch) + 2
    ):
        return f"%{anchor.name}: einsum {anchor.args[0]!r} is not probs . v over Lk"
    v = Operand(anchor.args[2], _permute_to(v_letters, p_batch + lk + dv[0]))
    return v, _permute_to(p_batch + lq + dv[0], out)


def unscale(operand: Operand, module: fx.GraphModule) -> Operand:
    """Take a constant factor off q or k: q = shape_ops(x * c) reads as shape_ops(x), c."""
    ops: list = []
    node = operand.base
    while isinstance(node, fx.Node) and node.op == "call_function":
        if node.target in _SHAPE_OPS:
            ops.insert(0, (node.target, tuple(node.args[1:])))
            node = node.args[0]
            continue
        if node.target in (operator.mul, operator.truediv):
            a, b = node.args
            c = scalar(b, module)
            if c is None and node.target is operator.mul:
                a, c = b, scalar(a, module)
            if c is None or c == 0.0 or not isinstance(a, fx.Node) or shape(a) != shape(node):
                break
            factor = c if node.target is operator.mul else 1.0 / c
            sizes = tuple(
                (u, a, u.args[1])
                for u in node.users
                if u.op == "call_method" and u.target == "size" and len(u.args) == 2
            )
            return Operand(a, tuple(ops) + operand.ops, operand.factor * factor, sizes)
        break
    return operand


# --------------------------------------------------------------------------- the scores


class Decline(Exception):
    """The scores are not attention this recogniser can prove exact."""


def walk_scores(node: Any, plan: Plan, module: fx.GraphModule) -> fx.Node:
    """Read `node` as scale * core + terms (+ fills, bands) into `plan`; returns the core.

    Bottom-up: a constant factor met on the way out multiplies the terms found below it.
    """
    if not isinstance(node, fx.Node) or node.op != "call_function":
        raise Decline(f"{node!r} is not computed from a contraction")
    if node.target is torch.matmul or node.target is torch.einsum:
        plan.chain.append(node)
        return node
    target, args = node.target, node.args
    if target in (operator.add, operator.sub):
        return _walk_sum(node, plan, module)
    if target in (operator.mul, operator.truediv):
        return _walk_product(node, plan, module)
    if target is operator.neg:
        core = walk_scores(args[0], plan, module)
        _times(plan, -1.0)
        plan.chain.append(node)
        return core
    if target is torch.where:
        return _walk_where(node, plan, module)
    if target in LAYOUT_OPS and node.op == "call_function":
        run = layout_run(node)
        kept = keeps_lengths(run)
        if kept is False:
            raise Decline(f"%{node.name}: the layout ops {[n.name for n in run]} move (Lq, Lk)")
        if kept is None:  # dynamic lengths: proven once q and k are known
            plan.pending.append(run)
        core = walk_scores(run[0].args[0], plan, module)
        plan.reshapes.append(node)
        plan.inner += run[:-1]
        plan.chain += run
        return core
    raise Decline(f"%{node.name} ({getattr(target, '__name__', target)}) is not part of the scores")


def _on_chain(value: Any) -> bool:
    """Whether `value` is computed from a contraction through score arithmetic."""
    seen = 0
    stack = [value]
    while stack and seen < 200:
        n = stack.pop()
        seen += 1
        if not isinstance(n, fx.Node) or n.op != "call_function":
            continue
        if n.target is torch.matmul or n.target is torch.einsum:
            return True
        if n.target in (operator.add, operator.sub, operator.mul, operator.truediv, operator.neg):
            stack.extend(n.args)
        elif n.target in LAYOUT_OPS:
            stack.append(n.args[0])
        elif n.target is torch.where:
            stack.extend(n.args[1:])
    return False


def _times(plan: Plan, c: float) -> None:
    """A constant factor on everything read so far: the scale, the terms and the fills.

    Where(m, s, fill) * c = Where(m, s * c, fill * c) (GPT-J divides by sqrt(D) after its
    causal Where): the fill is scaled too, and `absorb_masks` judges the scaled fill (a
    negative factor makes it positive: declined there). A 0/1 band commutes with the
    factor, (s * band) * c = (s * c) * band; its hiding term is among the terms.
    """
    plan.scale *= c
    plan.terms = [(coef * c, t) for coef, t in plan.terms]
    plan.gated = [(m, on, [(coef * c, t) for coef, t in parts]) for m, on, parts in plan.gated]
    fills = []
    for cond, when_true, when_false in plan.fills:
        scaled = (when_true * c, when_false * c)
        if any(abs(x) > F32_MAX for x in scaled):
            raise Decline(
                f"the fill of Where(%{cond.name}, ...) times {c} leaves the float32 range"
            )
        fills.append((cond, *scaled))
    plan.fills = fills


def _walk_sum(node: fx.Node, plan: Plan, module: fx.GraphModule) -> fx.Node:
    a, b = node.args
    sign = 1.0 if node.target is operator.add else -1.0
    if _on_chain(a) and not _on_chain(b):
        core = walk_scores(a, plan, module)
        term, coef = b, sign
    elif node.target is operator.add and _on_chain(b) and not _on_chain(a):
        core = walk_scores(b, plan, module)
        term, coef = a, 1.0
    else:
        raise Decline(f"%{node.name}: not scores plus a term independent of them")
    plan.chain.append(node)
    if scalar(term, module) is not None:
        return core  # the same number added to every score: softmax drops it
    if not isinstance(term, fx.Node):
        raise Decline(f"%{node.name}: the term {term!r} is not a tensor")
    coef_, term = strip_factors(term, module)
    plan.terms.append((coef * coef_, term))
    plan.term_levels.append(len(plan.reshapes))
    return core


def _walk_product(node: fx.Node, plan: Plan, module: fx.GraphModule) -> fx.Node:
    a, b = node.args
    if node.target is operator.mul and not _on_chain(a):
        a, b = b, a
    if not _on_chain(a) or _on_chain(b):
        raise Decline(f"%{node.name}: not scores times a factor independent of them")
    c = scalar(b, module)
    if c is not None and c != 0.0 and shape(a) == shape(node):
        core = walk_scores(a, plan, module)
        _times(plan, c if node.target is operator.mul else 1.0 / c)
        plan.chain.append(node)
        return core
    if node.target is operator.mul and zero_one(b, module) is not None:
        core = walk_scores(a, plan, module)
        if plan.fills or plan.bands or plan.gated:
            raise Decline(f"%{node.name}: a 0/1 band over masked scores")
        plan.bands.append((b, band_condition(b, module) or b, len(plan.terms)))
        plan.mask_levels.add(len(plan.reshapes))
        plan.chain.append(node)
        return core
    if node.target is operator.mul and row_factor(b, a, node):
        core = walk_scores(a, plan, module)
        if plan.terms or plan.fills or plan.bands or plan.gated or plan.reshapes or plan.factor:
            raise Decline(f"%{node.name}: the factor {_name(b)} multiplies more than q . k")
        plan.factor = b
        plan.chain.append(node)
        return core
    raise Decline(f"%{node.name}: the scale {_name(b)} is not a constant")


def _walk_where(node: fx.Node, plan: Plan, module: fx.GraphModule) -> fx.Node:
    cond, a, b = node.args
    if not isinstance(cond, fx.Node) or node_dtype(cond) is not torch.bool:
        raise Decline(f"%{node.name}: the condition is not a boolean tensor")
    if _on_chain(a) and _on_chain(b):
        return _walk_gated(node, plan, module)
    if _on_chain(a):
        inner, fill, keep = a, b, True
    elif _on_chain(b):
        inner, fill, keep = b, a, False
    else:
        raise Decline(f"%{node.name}: not Where(mask, scores, fill)")
    value = scalar(fill, module)
    if value is None:
        raise Decline(f"%{node.name}: the fill {_name(fill)} is not a constant")
    core = walk_scores(inner, plan, module)
    plan.fills.append((cond, 0.0 if keep else value, value if keep else 0.0))
    plan.mask_levels.add(len(plan.reshapes))
    plan.chain.append(node)
    return core


def _walk_gated(node: fx.Node, plan: Plan, module: fx.GraphModule) -> fx.Node:
    """``Where(c, s + t, s)`` (Keras 3 Attention: ``where(~m, s - 1e9, s)``) is
    ``s + Where(c, t, 0)`` bit for bit (where c is False, s + 0 is s): an additive mask,
    whatever t is, as long as it does not depend on the scores (`recognize` checks it
    broadcasts and does not read the scores or v). t: the terms `offset` reads."""
    cond, a, b = node.args
    pairs = ((b, a, True), (a, b, False))
    ways = [(offset(other, base, module, _on_chain), base, on) for base, other, on in pairs]
    found = [(way, base, on) for way, base, on in ways if way is not None and way[0]]
    if not found:
        raise Decline(f"%{node.name}: not Where(mask, scores, fill) nor Where(mask, s + t, s)")
    (pieces, steps), base, on_true = found[0]
    core = walk_scores(base, plan, module)
    plan.gated.append((cond, on_true, pieces))
    plan.mask_levels.add(len(plan.reshapes))
    plan.chain += [*steps, node]
    return core


def _std_shape(node: fx.Node, ops: tuple) -> tuple | None:
    """The shape of `node` after the permute/transpose `ops` of a contraction."""
    s = shape(node)
    if s is None:
        return None
    s = list(s)
    for _, (perm,) in ops:  # permutes only
        s = [s[i] for i in perm]
    return tuple(s)


def _axis(ops: tuple, j: int) -> int:
    """The axis of an operand that becomes axis `j` after its permute `ops`."""
    for _, (perm,) in reversed(ops):
        j = perm[j]
    return j


def _broadcasts(s: tuple | None, scores: tuple) -> bool:
    if s is None or len(s) > len(scores):
        return False
    return all(m == 1 or m == n for m, n in zip(reversed(s), reversed(scores), strict=False))


def _inputs(node: fx.Node) -> set:
    return {n for n in ancestors(node) if n.op == "placeholder"}


def recognize(
    anchor: fx.Node,
    probs: fx.Node,
    module: fx.GraphModule,
    pv_run: list | None = None,
    zeroed: fx.Node | None = None,
) -> Plan | str:
    """The `Plan` of ``softmax(scores, -1) . v`` at `anchor`, or why it is not attention.

    `pv_run`: the layout ops from the softmax to the anchor's probabilities, if any
    (they must keep (Lq, Lk): `_attention_frames`). `zeroed`: a ``Where(c, 0, softmax)``
    between the softmax and them (`absorb_zero`)."""
    plan = Plan(q=None, k=None, v=None, out_ops=())  # type: ignore[arg-type]
    ends = [probs, *([zeroed] if zeroed is not None else [])]  # (Lq, Lk) last, as the scores
    after = [*ends, *(pv_run or [])]
    if zeroed is not None and shape(zeroed) != shape(probs):
        return f"%{zeroed.name} broadcasts the probabilities to another shape"
    try:
        core = walk_scores(probs.args[0], plan, module)
    except Decline as exc:
        return str(exc)
    found = qk_contraction(core)
    if isinstance(found, str):
        return found
    q, k, batch = found
    pv = pv_contraction(anchor, after[-1], batch)
    if isinstance(pv, str):
        return pv
    v, plan.out_ops = pv
    qs, ks, vs = _std_shape(q.base, q.ops), _std_shape(k.base, k.ops), _std_shape(v.base, v.ops)
    scores, met = shape(core), shape(pv_run[-1] if pv_run else probs)
    if None in (qs, ks, vs, scores, met):
        return "the shapes of q, k, v are not known"
    if not (len(qs) == len(ks) == len(scores) >= 3 and len(vs) == len(met) >= 3):
        return f"q {qs}, k {ks}, v {vs} are not [..., L, D] of one rank (3 or more)"
    if pv_run and keeps_lengths(pv_run) is False:
        return f"the layout ops {[n.name for n in pv_run]} after the softmax move (Lq, Lk)"
    if qs[:-2] != ks[:-2] or vs[:-2] != met[:-2] or qs[-1] != ks[-1] or ks[-2] != vs[-2]:
        return f"q {qs}, k {ks}, v {vs} do not line up as [..., L, D] (batch dims, D, Lk)"
    # the score nodes are replaced: no one else may read them (a size() of them is re-pointed)
    rank = len(scores)
    inside = set(plan.chain) | {anchor} | set(after)
    lengths: dict = {}
    rows = {n for n in plan.chain if n.target not in LAYOUT_OPS} | set(ends)  # (Lq, Lk) last
    frames = [None] + [target(r) for r in plan.reshapes]
    known = {probs: frames[-1]} if frames[-1] else {}
    level = 0  # the chain runs from the contraction outwards: frames change at run ends
    for n in [*plan.chain, *after]:
        level += n in plan.reshapes
        for user in n.users:
            if user in inside:
                continue
            sized = user.op == "call_method" and user.target == "size" and len(user.args) == 2
            if not sized:
                return f"%{n.name} is also used outside the attention, by %{user.name}"
            axis = user.args[1] % len(shape(n))
            if n in plan.inner:  # inside a run: only a sequence length, traced down to one
                atom = length_of(n, axis, lengths, rows)
                if atom is None:
                    return f"%{n.name} is also used outside the attention, by %{user.name}"
                source = q if atom == "Lq" else k
                plan.sizes.append((user, source.base, _axis(source.ops, rank - 2)))
                lengths[(n, axis)] = atom
                continue
            if level and axis < len(shape(n)) - 2 or (pv_run and n in pv_run):
                entries = target(n, known) if pv_run and n in pv_run else frames[level]
                value = entries[axis] if entries else None
                if not _is_entry(value) or set(getattr(value, "all_input_nodes", ())) & inside:
                    return f"%{n.name} is also used outside the attention, by %{user.name}"
                plan.values.append((user, value))  # the batch dim, as its reshape gave it
                continue
            j = axis + rank - len(shape(n))
            source = k if j == rank - 1 else q
            jj = rank - 2 if j >= rank - 2 else j
            plan.sizes.append((user, source.base, _axis(source.ops, jj)))
            if j >= rank - 2:
                lengths[(n, user.args[1])] = "Lk" if j == rank - 1 else "Lq"
    for operand, atom in ((q, "Lq"), (k, "Lk")):
        lengths.update(_length_sizes(operand, rank, atom))
    dynamic = plan.pending + ([pv_run] if pv_run and keeps_lengths(pv_run) is None else [])
    for run in dynamic:
        if not dynamic_lengths(run, lengths, rows):
            return f"the layout ops {[n.name for n in run]} are not shown to keep (Lq, Lk)"
    q_ops = q.ops
    reason = frame(plan, q, k, v, qs, vs, pv_run[-1] if pv_run else None)
    if isinstance(reason, str):
        return reason
    scores = reason
    forbidden = inside | {v.base}
    t = plan.factor  # stored values (a learned temperature), in SDPA's frame (q's)
    if t is not None and (q.ops != q_ops or ancestors(t) & forbidden or _inputs(t)):
        return f"the factor %{t.name} is not stored values in SDPA's frame"
    for i, (_, t) in enumerate(plan.terms):
        if not _broadcasts(shape(t), shape(plan.chain[0]) if i in plan.regroup else scores):
            return f"the term %{t.name} {shape(t)} does not broadcast to the scores {scores}"
        if ancestors(t) & forbidden:
            return f"the term %{t.name} is computed from the scores or from v"
    gated = [t for _, _, parts in plan.gated for _, t in parts if isinstance(t, fx.Node)]
    for t in gated:
        if not _broadcasts(shape(t), scores):
            return f"the masked term %{t.name} {shape(t)} does not broadcast to the scores {scores}"
        if ancestors(t) & forbidden:
            return f"the masked term %{t.name} is computed from the scores or from v"
    conds = [c for c, *_ in plan.fills + plan.gated] + [c for _, c, _ in plan.bands]
    for cond in conds:
        if not _broadcasts(shape(cond), scores):
            return f"the mask %{cond.name} {shape(cond)} does not broadcast to the scores {scores}"
        if ancestors(cond) & forbidden:
            return f"the mask %{cond.name} is computed from the scores or from v"
    static = (scores[-2], scores[-1])
    same = (static[0] is not None and static[0] == static[1]) or (
        static == (None, None) and _inputs(q.base) == _inputs(k.base)
    )
    if zeroed is not None:
        reason = absorb_zero(plan, zeroing(zeroed, module), zeroed, module)
        if reason is not None:
            return reason
    reason = absorb_masks(plan, lengths, same, static, module, _longer(lengths))
    if reason is not None:
        return reason
    if plan.zero is not None and not plan.fills:  # the fill was causal: every row keeps
        plan.zero = None  # its diagonal, so no row is emptied and the zeroing does nothing
    q, k = unscale(q, module), unscale(k, module)
    plan.scale *= q.factor * k.factor
    if plan.factor is not None:  # in SDPA's frame (q's), 1 over (Lq, D): q * t
        q = Operand(q.base, (*q.ops, (operator.mul, (plan.factor,))), q.factor, q.sizes)
    plan.sizes += list(q.sizes) + list(k.sizes)
    plan.q, plan.k, plan.v = q, k, v
    plan.head_dim = qs[-1]
    if not (plan.scale == plan.scale and abs(plan.scale) < float("inf")):
        return f"the scale {plan.scale} is not finite"
    return plan


def _longer(lengths: dict) -> bool:
    """Whether the shape analysis proves Lk >= Lq (a key/value cache's keys are the cached
    ones and the new ones): the lowering's size expressions (``fxs_dims``) of the nodes
    whose axes `lengths` names as Lq and Lk, never an example."""
    sizes: dict[str, list] = {"Lq": [], "Lk": []}
    for (node, axis), atom in lengths.items():
        dims = node.meta.get("fxs_dims") if isinstance(node, fx.Node) else None
        if dims is not None and -len(dims) <= axis < len(dims):
            sizes[atom].append(dims[axis])
    return any(bool(sympy.sympify(k - q).is_nonnegative) for q in sizes["Lq"] for k in sizes["Lk"])


def _length_sizes(operand: Operand, rank: int, atom: str) -> dict:
    """{(node, dim): atom} for the sequence axis of q or k and of the permutes and layout
    ops it comes through (GPT-J slices its causal constant at ``k.size(2) - q.size(2)``)."""
    out: dict = {}
    step = (operand.base, _axis(operand.ops, rank - 2))
    while step is not None and len(out) < 64:
        node, axis = step
        n = len(shape(node) or ())
        if not n:
            break
        out[(node, axis % n)] = out[(node, axis % n - n)] = atom
        step = step_down(node, axis % n)
    return out


def _is_entry(value: Any) -> bool:
    """A reshape entry that names a dim: a node (a size) or a number, not -1."""
    if isinstance(value, bool):
        return False
    return isinstance(value, fx.Node) or (isinstance(value, int) and value >= 0)
