"""Frames of the attention scores: layout runs that only split or merge batch dims.

Between the contraction of Q with K and the softmax, and between the softmax and the
contraction with V, exporters move the scores through reshapes (HF Bart: [B*H, L, L]
<-> [B, H, L, L]) or, for an Einsum that tf2onnx decomposes (Keras MultiHeadAttention),
through ``Reshape [N*H, Lq, Lk] -> [N, H, Lq, Lk, 1]``, ``Squeeze``, then ``Unsqueeze``
and ``Reshape`` back to [N*H, Lq, Lk] before the MatMul with V.

A *run* of consecutive Reshape/Squeeze/Unsqueeze is one reshape of its input: none of
them reorders elements. When the run's output ends in the same (Lq, Lk) as its input,
every [Lq, Lk] block of scores stays one block, in the same order: only the batch dims
(the *frame*) change, and with them nothing about the attention but where masks are
added. SDPA then runs in one frame (the masks' one, else the contraction's), and q, k,
v and its output are reshaped between frames: a reshape that keeps each [L, D] block is
the same regrouping of blocks as the scores' one, so each query still meets its keys.

The lengths of a run: static ones must be equal on the shape meta. A dynamic one
(`dynamic_lengths`) is proven by tracing the run's last two axes down to an axis known
to be Lq or Lk (q's and k's sequence axes, the scores' last two): a Squeeze/Unsqueeze
maps an axis to its input's, a Reshape entry that is ``x.size(i)`` is axis i of x, and
its -1 is the one axis of x that the other entries do not cancel (each a size of x, a
product of them, or a number: `inferred_axis`). A single Reshape of dynamic lengths whose
target keeps the last two entries (HF Bart) is accepted as before.
"""

from __future__ import annotations

import functools
import math
import operator

import torch
from fxsurgeon.patterns._attention_graph import shape
from torch import fx

LAYOUT_OPS = (torch.reshape, torch.squeeze, torch.unsqueeze)


def layout_run(end: fx.Node) -> list[fx.Node]:
    """The consecutive layout ops that end at `end` (a layout op), first to last."""
    run = [end]
    while isinstance(run[0].args[0], fx.Node) and run[0].args[0].target in LAYOUT_OPS:
        if run[0].args[0].op != "call_function":
            break
        run.insert(0, run[0].args[0])
    return run


def keeps_lengths(run: list[fx.Node]) -> bool | None:
    """Whether the run only splits or merges batch dims: its output ends in the input's
    (Lq, Lk). Static lengths are compared; dynamic ones through a single reshape that
    keeps them; None: dynamic lengths to prove with `dynamic_lengths` once q, k are known."""
    before, after = shape(run[0].args[0]), shape(run[-1])
    if before is None or after is None or len(before) < 3 or len(after) < 3:
        return False
    if before[-2:] != after[-2:]:
        return False
    if all(isinstance(d, int) for d in after[-2:]):
        return target(run[-1]) is not None
    lead = run[0].args[1]
    single = len(run) == 1 and run[0].target is torch.reshape and isinstance(lead, tuple)
    if single and not any(isinstance(d, int) and d < 0 for d in lead[:-2]):
        return True
    return None


def dynamic_lengths(run: list[fx.Node], lengths: dict, rows: set) -> bool:
    """Whether the run's last two axes are proven Lq and Lk (`rows`: nodes whose last two
    axes are (Lq, Lk); `lengths`: (node, axis) -> "Lq"/"Lk")."""
    rank = len(shape(run[-1]))
    found = [length_of(run[-1], axis, lengths, rows) for axis in (rank - 2, rank - 1)]
    return found == ["Lq", "Lk"]


def length_of(node: fx.Node, axis: int, lengths: dict, rows: set) -> str | None:
    """Which sequence length `node`'s `axis` is, traced down through layout ops."""
    for _ in range(64):
        s = shape(node)
        if s is None:
            return None
        axis %= len(s)
        if (node, axis) in lengths:
            return lengths[(node, axis)]
        if node in rows:
            return {len(s) - 2: "Lq", len(s) - 1: "Lk"}.get(axis)
        step = step_down(node, axis)
        if step is None:
            return None
        node, axis = step
    return None


def step_down(node: fx.Node, axis: int) -> tuple[fx.Node, int] | None:
    """(input, axis) that `node`'s `axis` is: through a permute, a Squeeze, an Unsqueeze,
    or a Reshape entry (``x.size(i)``, or the -1 by `inferred_axis`); else None."""
    s = shape(node)
    if s is None or node.op != "call_function" or not isinstance(node.args[0], fx.Node):
        return None
    x, t = node.args[0], node.target
    if t is torch.permute:
        return x, node.args[1][axis] % len(s)
    if t is torch.unsqueeze and len(node.args) == 2:
        d = node.args[1] % len(s)
        return None if axis == d else (x, axis - (axis > d))
    if t is torch.squeeze and len(node.args) == 2 and shape(x) is not None:
        dims = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        dims = {d % len(shape(x)) for d in dims}
        return x, [i for i in range(len(shape(x))) if i not in dims][axis]
    if t is not torch.reshape or not isinstance(node.args[1], tuple):
        return None
    entry = node.args[1][axis]
    if isinstance(entry, int) and not isinstance(entry, bool) and entry == -1:
        j = inferred_axis(node)
        return None if j is None else (x, j)
    sized = isinstance(entry, fx.Node) and entry.op == "call_method" and entry.target == "size"
    if sized and len(entry.args) == 2 and isinstance(entry.args[0], fx.Node):
        return entry.args[0], entry.args[1]
    return None


def _factors(value, x: fx.Node) -> list | None:
    """A reshape entry as factors: numbers and ("axis", i) for a dynamic dim of `x`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value] if value >= 0 else None
    if not isinstance(value, fx.Node) or value.op not in ("call_method", "call_function"):
        return None
    if value.target == "size" and len(value.args) == 2 and value.args[0] is x:
        i = value.args[1] % len(shape(x))
        return [shape(x)[i] if isinstance(shape(x)[i], int) else ("axis", i)]
    if value.target is operator.mul and len(value.args) == 2:
        parts = [_factors(a, x) for a in value.args]
        return None if None in parts else parts[0] + parts[1]
    return None


def inferred_axis(node: fx.Node) -> int | None:
    """The axis of x that the -1 of ``reshape(x, t)`` stands for: the other entries
    must cancel every other dim of x exactly (as factors), leaving one dynamic dim."""
    x, t = node.args[0], node.args[1]
    s = shape(x)
    if s is None:
        return None
    left = [("axis", i) for i, d in enumerate(s) if d is None]
    numbers = math.prod(d for d in s if d is not None)
    for entry in t:
        if isinstance(entry, int) and not isinstance(entry, bool) and entry == -1:
            continue
        factors = _factors(entry, x)
        if factors is None:
            return None
        for f in factors:
            if isinstance(f, int):
                if f == 0 or numbers % f:
                    return None
                numbers //= f
            elif f in left:
                left.remove(f)
            else:
                return None
    return left[0][1] if len(left) == 1 and numbers == 1 else None


def target(node: fx.Node, known: dict | None = None) -> tuple | None:
    """`node`'s shape as reshape entries (ints, one -1 at most, size nodes), read from the
    run's Reshape and the Squeeze/Unsqueeze after it (`known`: entries of other nodes);
    None where it cannot be told."""
    s = shape(node)
    if s is None:
        return None
    if known and node in known:
        return known[node]
    if node.op != "call_function" or node.target not in LAYOUT_OPS:
        return tuple(s) if all(isinstance(d, int) for d in s) else None
    if node.target is torch.reshape:
        t = node.args[1]
        return tuple(t) if isinstance(t, tuple) and len(t) == len(s) else None
    inner = target(node.args[0], known) if isinstance(node.args[0], fx.Node) else None
    if inner is None or len(node.args) != 2:
        return None
    if node.target is torch.unsqueeze:
        d = node.args[1] % len(s)
        return (*inner[:d], 1, *inner[d:])
    dims = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    dims = {d % len(inner) for d in dims}
    if any(inner[d] != 1 for d in dims):
        return None
    return tuple(x for i, x in enumerate(inner) if i not in dims)


def _reshape_rows(x, lead: tuple, d: int):
    """`x` [..., L, d] regrouped to [*lead, L, d] (L read from x: `lead` holds a -1)."""
    return torch.reshape(x, (*lead, x.size(-2), d))


def _to_lead(lead: tuple, length, d: int) -> tuple:
    """The op that regroups an operand [..., length, d] to the batch dims `lead`."""
    if isinstance(length, int):
        return (torch.reshape, ((*lead, length, d),))
    if not any(isinstance(x, int) and x < 0 for x in lead):
        return (torch.reshape, ((*lead, -1, d),))
    return (_reshape_rows, (lead, d))


def _core_lead(core: fx.Node) -> tuple | None:
    """The contraction's batch dims as reshape entries (static, one dynamic as -1)."""
    lead = shape(core)[:-2]
    if sum(d is None for d in lead) > 1:
        return None
    return tuple(-1 if d is None else d for d in lead)


def _frame_level(plan, leads: list) -> int | str:
    """The frame SDPA runs in (how many reshapes lie below it), or why there is none: the
    frame of the fills and bands, else of the outermost term. A term added in another
    frame carries over when it is 1 along every batch dim but a common suffix of the two
    frames' batch dims (HF Swin: the relative-position bias [1, H, L, L] on [B*nW, H, L, L],
    the window mask on [B, nW, H, L, L]): the reshapes between the frames regroup only
    the dims before that suffix, so the term broadcast in the new frame, right-aligned,
    adds the same number to every score."""
    if len(plan.mask_levels) > 1:
        return "masks are added to the scores in frames of different batch dims"
    levels = set(plan.term_levels) | plan.mask_levels
    if not levels:
        return 0
    to = next(iter(plan.mask_levels)) if plan.mask_levels else max(levels)
    for i, ((_, term), level) in enumerate(zip(plan.terms, plan.term_levels, strict=True)):
        if level == to or _carries(shape(term), leads[level], leads[to]):
            continue
        rank = len(shape(term) or ())
        if level or rank < 2 or leads[0] is None or leads[to] is None or plan.bands:
            return f"the term %{term.name} is added in a frame of other batch dims"
        plan.regroup[i] = (leads[0], leads[to])
    return to


def regroup_term(term, q, core_lead: tuple, to_lead: tuple):
    """A term added to the contraction's scores (batch dims `core_lead`, one -1 at most),
    in the frame `to_lead` that SDPA runs in (DeBERTa: its position terms on [B*H, L, L],
    its mask on [B, H, L, L]): broadcast to the contraction's batch dims, then regrouped
    like the scores, block i to block i. The blocks count the same in every frame, so
    the -1 is q's blocks (q is in the new frame) over the static entries."""
    tail = (term.size(-2), term.size(-1))
    if -1 in core_lead:
        static = math.prod(d for d in core_lead if d != -1)
        blocks = functools.reduce(operator.mul, (q.size(i) for i in range(len(to_lead))))
        blocks = blocks if static == 1 else blocks // static
        core_lead = tuple(blocks if d == -1 else d for d in core_lead)
    return term.expand(*core_lead, *tail).reshape(*to_lead, *tail)


def _carries(term: tuple | None, lead: tuple | None, to: tuple | None) -> bool:
    if term is None or lead is None or to is None:
        return False
    common = 0
    for a, b in zip(reversed(lead), reversed(to), strict=False):
        if a is not b and not (isinstance(a, int) and a >= 0 and a == b):
            break
        common += 1
    batch = term[:-2]
    return all(d == 1 for d in batch[: max(len(batch) - common, 0)])


def frame(plan, q, k, v, qs: tuple, vs: tuple, pv_end: fx.Node | None):
    """Run SDPA where the masks are: q, k, v regrouped to the batch dims of the frame
    the masks are added in (HF Bart: scores [B*H, L, L] -> [B, H, L, L] for the mask ->
    back), else of the contraction; the output to the frame of the probabilities that
    meet V (`pv_end`, the end of a layout run after the softmax, or the softmax's frame).
    Returns the scores' shape in SDPA's frame, or why not."""
    core = plan.chain[0]
    leads = [_core_lead(core)] + [target(r) and target(r)[:-2] for r in plan.reshapes]
    level = _frame_level(plan, leads)
    if isinstance(level, str):
        return level
    frames = [core, *plan.reshapes]
    out_frame = pv_end if pv_end is not None else frames[-1]
    out_lead = target(pv_end)[:-2] if pv_end is not None and target(pv_end) else None
    if pv_end is None:
        out_lead = leads[-1]
    if out_frame is frames[level] and not level:  # q, k, v and the output are in it
        return shape(frames[level])
    if not isinstance(qs[-1], int) or not isinstance(vs[-1], int):
        return "the head dims of q and v are not static"
    lead = leads[level]
    if lead is None or out_lead is None:
        return "the batch dims of a frame of the scores are not known"
    if level:
        for operand, d in ((q, qs[-1]), (k, qs[-1])):
            operand.ops = (*operand.ops, _to_lead(lead, qs[-2] if operand is q else None, d))
    if lead != out_lead and not len(lead) == len(out_lead) == 1:  # one dim: all the blocks
        v.ops = (*v.ops, _to_lead(lead, vs[-2], vs[-1]))
        plan.out_ops = (_to_lead(out_lead, qs[-2], vs[-1]), *plan.out_ops)
    return shape(frames[level])
