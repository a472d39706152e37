"""Reading the canonical graph for attention recognition: constants, shapes, dtypes,
index arithmetic over the sequence lengths, and the causal band test.

Split from ``_attention_scores.py`` (which walks the scores): these helpers only read
the graph, never mutate it.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

#: Slices of the row index with a stop at least this are no-ops (TF writes 10**9).
HUGE_STOP = 10**6

# --------------------------------------------------------------------------- constants


def scalar(value: Any, module: fx.GraphModule) -> float | None:
    """A Python number or a one-element constant tensor, as a float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, fx.Node) and value.op == "get_attr":
        tensor = constant(value, module)
        if isinstance(tensor, torch.Tensor) and tensor.numel() == 1 and not tensor.is_complex():
            return float(tensor.reshape(()).item())
    return None


def constant(node: fx.Node, module: fx.GraphModule) -> Any:
    value: Any = module
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value


def shape(node: Any) -> tuple | None:
    return node.meta.get("fxs_shape") if isinstance(node, fx.Node) else None


def node_dtype(node: Any) -> torch.dtype | None:
    return node.meta.get("fxs_dtype") if isinstance(node, fx.Node) else None


def band_condition(node: fx.Node, module: fx.GraphModule) -> fx.Node | None:
    """The boolean condition of a 0/1 band, else None: `zero_one`'s root, not flipped,
    reshaped or unsqueezed only (the causal test reads its rows and columns), a boolean
    or ``Where(c, 1, 0)`` of c's own shape (plain numbers, no broadcast: c's positions)."""
    found = zero_one(node, module)
    if found is None or found[1]:
        return None
    if any(t not in (torch.reshape, torch.unsqueeze) for t, *_ in found[2]):
        return None
    root = found[0]
    if root.target is not torch.where:
        return root
    cond, *ends = root.args
    if not isinstance(cond, fx.Node) or shape(cond) is None:
        return None
    for e in ends:  # a number, or a one-element constant of no higher rank than c
        value = constant(e, module) if isinstance(e, fx.Node) and e.op == "get_attr" else e
        rank = value.dim() if isinstance(value, torch.Tensor) else 0
        if scalar(e, module) is None or rank > len(shape(cond)):
            return None
    return cond


#: Ops that only move, regroup or select elements: a tensor of 0s and 1s stays one.
_MOVES = (
    torch.reshape,
    torch.unsqueeze,
    torch.squeeze,
    torch.permute,
    torch.transpose,
    operator.getitem,
)


def zero_one(node: Any, module: fx.GraphModule) -> tuple[fx.Node, bool, tuple] | None:
    """`node` proven to hold only 0s and 1s, as (root, flipped, moves): its values are those
    of `root` (1 - them when `flipped`) moved by the layout ops `moves` ((target, args),
    outermost first); else None. `root` is a boolean tensor (read as 0/1), a constant of
    0s and 1s or a ``Where(c, 1, 0)`` (Transfo-XL's int band of ``tf.linalg.band_part(ones)``). Read through
    casts and ``follow_dtype`` (0 and 1 are exact in every dtype), ``1 - x``, ``logical_not``
    and `_MOVES`."""
    flipped, moves = False, []
    for _ in range(64):
        if not isinstance(node, fx.Node):
            return None
        t, args = node.target, node.args
        if t is torch.logical_not:
            node, flipped = args[0], not flipped
        elif node_dtype(node) is torch.bool or zero_one_constant(node, module) is not None:
            return node, flipped, tuple(moves)
        elif node.op not in ("call_function", "call_method"):
            return None
        elif _is_cast(node):
            node = args[0]
        elif t is operator.sub and scalar(args[0], module) == 1.0:
            node, flipped = args[1], not flipped
        elif t in _MOVES and node.op == "call_function":
            moves.append((t, args[1:], node.kwargs))
            node = args[0]
        elif t is torch.where and len(args) == 3 and not node.kwargs:
            ends = (_number(args[1], module), _number(args[2], module))
            if ends not in ((1.0, 0.0), (0.0, 1.0)):
                return None
            return node, flipped != (ends == (0.0, 1.0)), tuple(moves)
        else:
            return None
    return None


def zero_one_constant(node: fx.Node, module: fx.GraphModule) -> torch.Tensor | None:
    """The value of a constant that holds only 0s and 1s (a band folded at a static
    length), else None."""
    if node.op != "get_attr":
        return None
    value = constant(node, module)
    if not isinstance(value, torch.Tensor) or value.is_complex() or value.dtype is torch.bool:
        return None
    return value if bool(((value == 0) | (value == 1)).all()) else None


def _is_cast(node: fx.Node) -> bool:
    """A cast to a dtype, or ``follow_dtype`` (a module optimized before: its pinned float32
    follows the activations, ``lower/dtypes.py``): 0 and 1 are exact in every dtype."""
    if getattr(node.target, "__name__", "") == "follow_dtype":
        return True
    args = node.args
    return node.target == "to" and len(args) == 2 and isinstance(args[1], torch.dtype)


def _number(value: Any, module: fx.GraphModule) -> float | None:
    """`scalar`, or a one-element constant expanded (the same number everywhere)."""
    if isinstance(value, fx.Node) and value.op == "call_method" and value.target == "expand":
        value = value.args[0]
    return scalar(value, module)


def _name(value: Any) -> str:
    return f"%{value.name}" if isinstance(value, fx.Node) else repr(value)


# --------------------------------------------------------------------------- causal triangles


def _linear(value: Any, lengths: dict) -> dict | None:
    """`value` as {atom: coef} ("1" for the constant), atoms the lengths Lq/Lk; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return {"1": value}
    if not isinstance(value, fx.Node):
        return None
    if value.op == "call_method" and value.target == "size" and len(value.args) == 2:
        atom = lengths.get((value.args[0], value.args[1]))
        return {atom: 1} if atom is not None else None
    if value.op == "call_function" and value.target in (operator.add, operator.sub):
        a, b = (_linear(x, lengths) for x in value.args)
        if a is None or b is None:
            return None
        sign = 1 if value.target is operator.add else -1
        return _plus(a, {k: sign * c for k, c in b.items()})
    return None


def _plus(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0) + c
    return {k: c for k, c in out.items() if c != 0}


def _norm(form: dict, static: tuple) -> dict:
    """A linear form with Lk read as Lq (proven equal) and a static length as its number."""
    out: dict = {}
    for k, c in form.items():
        k = "Lq" if k == "Lk" else k
        if k == "Lq" and static[0] is not None:
            k, c = "1", c * static[0]
        out = _plus(out, {k: c})
    return out


def _sliced_constant(node: fx.Node, module) -> tuple[torch.Tensor, tuple | None] | None:
    """(constant, slices) of a constant, ``constant[slices]``, or either cast to bool (a
    cast commutes with slicing; to bool is "nonzero"); else None."""
    if node.op == "call_method" and node.target == "to" and node.args[1:] == (torch.bool,):
        if node.kwargs or not isinstance(node.args[0], fx.Node):
            return None
        node = node.args[0]
    slices = None
    if node.op == "call_function" and node.target is operator.getitem:
        node, slices = node.args
        if not isinstance(node, fx.Node) or not isinstance(slices, tuple):
            return None
    if node.op != "get_attr":
        return None
    value = constant(node, module)
    return (value, slices) if isinstance(value, torch.Tensor) else None


def _constant_alignment(
    value: torch.Tensor, slices, lengths: dict, static: tuple, same: bool, longer: bool
) -> str | None:
    """The alignment (`causal_alignment`) of ``value[slices]`` (nonzero) as a lower
    triangle of the scores' lengths, or None.

    Static lengths: the slice is taken and compared. Dynamic (GPT-J's ``bias[:, :,
    Lk - Lq : Lk, :Lk]`` of a [1, 1, M, M] lower triangle): with Lq == Lk, rows and
    columns both start at 0 and run Lq, so the slice is the triangle of that length
    wherever it is in range ("top"). Over a key/value cache (Lk >= Lq proven: `longer`)
    rows Lk - Lq + i of the triangle against columns j < Lk are the triangle aligned at
    the last key ("bottom"). Out of range (L > M) the slice clips to [M, M], which only
    broadcasts to [L, L] if M is 1: M >= 2 is required, so every length the model runs
    at sees the triangle (SDPA then also runs at the lengths the model refused).
    """
    if value.dim() < 2 or value.is_complex() or any(d != 1 for d in value.shape[:-2]):
        return None
    rows, cols = value.shape[-2:]
    matrix = value.reshape(rows, cols) != 0
    if not torch.equal(matrix, torch.ones(rows, cols, dtype=torch.bool).tril()):
        return None
    if slices is None:
        return "top" if same and (rows, cols) == static else None
    if len(slices) != value.dim() or not all(isinstance(s, slice) for s in slices):
        return None
    if any(s.step not in (None, 1) for s in slices):
        return None
    if any(s.start not in (None, 0) or not _reaches(s.stop, 1) for s in slices[:-2]):
        return None
    bounds = []
    for s, size in zip(slices[-2:], (rows, cols), strict=True):
        start = _linear(0 if s.start is None else s.start, lengths)
        stop = _linear(size if s.stop is None else s.stop, lengths)
        if start is None or stop is None:
            return None
        tidy = (lambda form: _plus({}, form)) if not same else (lambda form: _norm(form, static))
        bounds.append((tidy(start), tidy(stop)))  # (zero coefficients dropped)
    (r0, r1), (c0, c1) = bounds
    if min(rows, cols) < 2:
        return None
    if not same:
        lk = {"Lk": 1}
        bottom = longer and r0 == {"Lk": 1, "Lq": -1} and r1 == lk and c0 == {} and c1 == lk
        return "bottom" if bottom else None
    if all(set(form) <= {"1"} for pair in bounds for form in pair):  # static: take the slice
        if None in static:
            return None
        i0, i1, j0, j1 = (form.get("1", 0) for form in (r0, r1, c0, c1))
        part = matrix[i0:i1, j0:j1]
        triangle = torch.ones(static, dtype=torch.bool).tril()
        same_part = tuple(part.shape) == static and bool(torch.equal(part, triangle))
        return "top" if same_part else None
    length = _norm({"Lq": 1}, static)
    return "top" if r0 == {} and c0 == {} and r1 == length and c1 == length else None


def _reaches(stop: Any, n: int) -> bool:
    """Whether a slice stop keeps a whole axis of length `n` (None, or an int >= n)."""
    return stop is None or (isinstance(stop, int) and not isinstance(stop, bool) and stop >= n)


# --------------------------------------------------------------------------- the whole


def row_factor(b: Any, a: fx.Node, node: fx.Node) -> bool:
    """A float tensor of size 1 in the last two dims (Lq, Lk) that does not broadcast the
    scores: one number per score matrix (Swin v2's ``exp(min(logit_scale, log 100))`` of
    shape (heads, 1, 1)), which q can carry."""
    s, scores = shape(b), shape(a)
    if not isinstance(b, fx.Node) or s is None or scores is None or shape(node) != scores:
        return False
    if len(s) > len(scores) or any(d != 1 for d in s[-2:]):
        return False
    dtype = node_dtype(b)
    return dtype is not None and dtype.is_floating_point
