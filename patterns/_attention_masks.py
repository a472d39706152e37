"""The masks of an attention's scores: what `recognize` (``_attention_scores.py``) absorbs.

A causal 0/1 band ``s * band - c * (1 - band)`` with c >= -`BIG_FILL` becomes
``is_causal`` (aligned at the last key over a key/value cache: an explicit triangle); a
causal ``Where(tri, s, fill)`` with fill <= `BIG_FILL` too. Any other 0/1 band (1 - band
read by `zero_one` through casts, ``1 - x`` and layout ops: `_hides`, `hiding_coef`) is
``Where(band, s, -c)``, kept as the additive terms when -c <= `HUGE_FILL`; any other
``Where(m, s, fill)`` stays a boolean mask only when its fill is finite and at or below
`HUGE_FILL` (then ``s + fill`` rounds to ``fill`` in float32, as the additive mask does).
``Where(m, s + t, s)`` is read by `offset` (t, the masked term, is an additive mask).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from fxsurgeon.patterns._attention_causal import causal_alignment
from fxsurgeon.patterns._attention_graph import (
    _MOVES,
    band_condition,
    constant,
    node_dtype,
    scalar,
    zero_one,
    zero_one_constant,
)
from torch import fx

if TYPE_CHECKING:
    from fxsurgeon.patterns._attention_scores import Plan

#: A finite Where fill at or below this is absorbed by an additive mask with the same fill:
#: for |s| < 2**-25 * |fill| (1e22 here), s + fill rounds to fill in float32.
HUGE_FILL = -1e30
#: A hidden score at or below this (and a visible one in every row) weighs exactly 0:
#: exp(-1e3) underflows float32 (the smallest subnormal is 1.4e-45 = exp(-103)).
BIG_FILL = -1e3


def strip_factors(term: fx.Node, module: fx.GraphModule) -> tuple[float, fx.Node]:
    """`term` as (c, t) with term = c * t: constant factors and divisors peeled off."""
    coef = 1.0
    while term.op == "call_function" and term.target in (operator.mul, operator.truediv):
        a, b = term.args
        c = scalar(b, module)
        if c is None and term.target is operator.mul:
            a, c = b, scalar(a, module)
        if c is None or c == 0.0 or not isinstance(a, fx.Node):
            break
        coef *= c if term.target is operator.mul else 1.0 / c
        term = a
    return coef, term


def offset(
    branch: Any, base: fx.Node, module, on_chain: Callable, depth: int = 0
) -> tuple[list, list] | None:
    """`branch` as `base` plus terms independent of the scores, through ``+`` and ``-``:
    ([(coef, term)], the sums from `base` out), a term a node or a number; else None.
    A number is kept: under a Where it is no shift of every score. `on_chain`: whether a
    value is computed from the scores (such a term is no mask)."""
    if branch is base:
        return [], []
    if (
        not isinstance(branch, fx.Node)
        or branch.op != "call_function"
        or branch.target not in (operator.add, operator.sub)
        or depth > 16
    ):
        return None
    x, y = branch.args
    sides = [(x, y, 1.0 if branch.target is operator.add else -1.0)]
    if branch.target is operator.add:
        sides.append((y, x, 1.0))
    for inner, term, sign in sides:
        if on_chain(term) or isinstance(term, bool) or not isinstance(term, (fx.Node, int, float)):
            continue
        found = offset(inner, base, module, on_chain, depth + 1)
        if found is None:
            continue
        coef, term = strip_factors(term, module) if isinstance(term, fx.Node) else (1.0, term)
        return [*found[0], (sign * coef, term)], [*found[1], branch]
    return None


def _hides(node: fx.Node, band: fx.Node, module, moves: tuple = ()) -> bool:
    """Whether `node` (moved by the layout ops `moves`, outermost first) is 1 - band:
    ``1.0 - band``, the float of ``not cond`` in the band's dtype (the same 0/1 values,
    GPT-J's ``-1e9 * (~causal).float()``), or any two 0/1 values `zero_one` reads as one
    root, one flipped, moved alike (Transfo-XL: the band ``1 - float(m)``, the hiding term
    ``-1e30 * float(m)``, m an int 0/1 Where)."""
    if not moves and node.target is operator.sub and node.args == (1.0, band):
        return True
    if not moves and node.op == "call_method" and node.target == "to":
        inner = node.args[0]
        if (
            node.args[1:] == (node_dtype(band),)
            and isinstance(inner, fx.Node)
            and inner.target is torch.logical_not
            and inner.args[0] is band_condition(band, module)
        ):
            return True
    mine, theirs = zero_one(node, module), zero_one(band, module)
    if mine is None or theirs is None or not same_value((*moves, *mine[2]), theirs[2], module):
        return False
    if mine[1] != theirs[1] and same_value(mine[0], theirs[0], module):
        return True
    a, b = (zero_one_constant(x[0], module) for x in (mine, theirs))  # folded at static sizes
    if a is None or b is None or a.shape != b.shape:
        return False
    a, b = (1 - x if x_[1] else x for x, x_ in ((a, mine), (b, theirs)))
    return bool((a + b == 1).all())


def _complement(node: fx.Node, band: fx.Node, module, moves: tuple = ()) -> float | None:
    """k where `node` (moved by `moves`) is k * (1 - band): 1.0 where `_hides` says so, k
    for a constant equal to k * (1 - band) when the band is a constant too (both folded at
    a static length); else None."""
    if _hides(node, band, module, moves):
        return 1.0
    theirs = zero_one(band, module)
    if node.op != "get_attr" or theirs is None or not same_value(moves, theirs[2], module):
        return None
    value, ones = constant(node, module), zero_one_constant(theirs[0], module)
    if ones is None or not isinstance(value, torch.Tensor) or value.shape != ones.shape:
        return None
    hidden = ones if theirs[1] else 1 - ones  # 1 - band
    if not hidden.any() or not value.is_floating_point():
        return None
    k = value[hidden != 0].flatten()[0]
    return float(k) if torch.equal(value, k * hidden.to(value.dtype)) else None


def hiding_coef(term: Any, band: fx.Node, module, moves: tuple = (), depth: int = 0) -> float:
    """The coefficient of 1 - band in the sum `term`, through constant factors, ``+``, ``-``
    and layout ops that keep values (`_MOVES`), summed where it is met more than once;
    0.0 when it is not there."""
    if not isinstance(term, fx.Node) or depth > 16:
        return 0.0
    coef, node = strip_factors(term, module)
    k = _complement(node, band, module, moves)
    if k is not None:
        return coef * k
    t = node.target
    if t in _MOVES and node.op == "call_function":
        move = (t, node.args[1:], node.kwargs)
        return coef * hiding_coef(node.args[0], band, module, (*moves, move), depth + 1)
    if t not in (operator.add, operator.sub):
        return 0.0
    a, b = (hiding_coef(x, band, module, moves, depth + 1) for x in node.args)
    return coef * (a - b if t is operator.sub else a + b)


def _pieces(coef: float, node: fx.Node, band: fx.Node, module) -> list:
    """A term as a sum of (coef, node) pieces, split until the band's 1 - band (numbers drop)."""
    coef_, node = strip_factors(node, module)
    coef *= coef_
    if not _holds_hide(node, band, module):  # kept whole: splitting off its numbers would
        return [(coef, node)]  # move a large shift onto the kept scores (lost bits)
    k = _complement(node, band, module)
    if k is None and node.target in _MOVES:
        k = moved_hide(node, band, module)  # moved whole: its pieces are under the moves
    if k is not None:
        return [(coef * k, node)]
    out = []
    for i, x in enumerate(node.args):
        c = -coef if i == 1 and node.target is operator.sub else coef
        if scalar(x, module) is not None:
            continue  # the same number added to every score: dropped (shift invariance)
        if not isinstance(x, fx.Node):
            return [(coef, node)]
        out += _pieces(c, x, band, module)
    return out


def moved_hide(node: Any, band: fx.Node, module, moves: tuple = (), depth: int = 0) -> float | None:
    """k where `node` (moved by `moves`) is a number plus k * (1 - band), read through
    constant factors, ``+``, ``-`` and layout ops (`_MOVES`), else None: Transfo-XL's term
    ``1e-9 - 1e30 * m`` permuted whole with its band by ``sdpa_orient_1``. The number adds
    the same to every score (dropped); the rest is what the band hides."""
    if depth > 16:
        return None
    if not isinstance(node, fx.Node):
        return 0.0 if scalar(node, module) is not None else None
    if scalar(node, module) is not None:
        return 0.0
    coef, node = strip_factors(node, module)
    k = _complement(node, band, module, moves)
    if k is not None:
        return coef * k
    t = node.target
    if t in _MOVES and node.op == "call_function":
        inner = moved_hide(node.args[0], band, module, (*moves, (t, node.args[1:], node.kwargs)))
        return None if inner is None else coef * inner
    if t not in (operator.add, operator.sub) or len(node.args) != 2:
        return None
    a, b = (moved_hide(x, band, module, moves, depth + 1) for x in node.args)
    if a is None or b is None:
        return None
    return coef * (a - b if t is operator.sub else a + b)


def _holds_hide(node: Any, band: fx.Node, module, depth: int = 0) -> bool:
    """Whether the sum `node` has 1 - band among its pieces (through factors)."""
    if not isinstance(node, fx.Node) or depth > 16:
        return False
    node = strip_factors(node, module)[1]
    if _complement(node, band, module) is not None:
        return True
    if node.target in _MOVES and moved_hide(node, band, module) not in (None, 0.0):
        return True
    if node.target not in (operator.add, operator.sub):
        return False
    return any(_holds_hide(x, band, module, depth + 1) for x in node.args)


def _hidden_piece(piece: tuple, band: fx.Node, module) -> bool:
    """Whether a piece (coef, node) of `_pieces` is -c * (1 - band) with c >= -`BIG_FILL`
    (`_pieces` multiplies a constant's or a moved term's k into coef)."""
    coef, node = piece
    if not isinstance(node, fx.Node) or coef > BIG_FILL:
        return False
    if _complement(node, band, module) is not None:
        return True
    return node.target in _MOVES and moved_hide(node, band, module) is not None


def _absorb_causal(plan: Plan, band: fx.Node, module, below: int) -> bool:
    """Take the causal band's hiding term -c * (1 - band) (c >= -`BIG_FILL`) out of the
    terms after the band (the `below` first ones are multiplied by it), the rest of its
    term kept; False (nothing changed) when there is none."""
    pieces = [_pieces(coef, t, band, module) for coef, t in plan.terms]
    found = [
        i
        for i, parts in enumerate(pieces)
        if i >= below and any(_hidden_piece(p, band, module) for p in parts)
    ]
    if not found:
        return False
    parts = pieces[found[0]]
    hidden = next(p for p in parts if _hidden_piece(p, band, module))
    rest = [p for p in parts if p is not hidden]
    terms = plan.terms[: found[0]] + rest + plan.terms[found[0] + 1 :]
    if not _dominates(hidden[0], terms, plan.fills, module):
        return False
    plan.terms = terms
    return True


def _spread(coef: float, node: Any, module, depth: int = 0) -> float:
    """How far the term ``coef * node`` can lower one key's score below another's (its
    largest value less its smallest): 0 for a number (the same shift on every key); a
    constant's range; through constant factors, ``+``, ``-`` and layout ops; a value with a
    factor at or beyond -`BIG_FILL` is a 0/1 mask (``(1 - m) * -1e4``: 1e4); any other a
    bias, as bounded as the scores it is added to (a relative-position term: 0)."""
    if scalar(node, module) is not None or not isinstance(node, fx.Node) or depth > 16:
        return 0.0
    factor, node = strip_factors(node, module)
    coef *= factor
    if node.op == "get_attr":
        value = constant(node, module)
        if isinstance(value, torch.Tensor) and value.numel() and value.is_floating_point():
            return abs(coef) * float(value.max() - value.min())
    if node.op == "call_function" and node.target in (operator.add, operator.sub):
        return sum(_spread(coef, a, module, depth + 1) for a in node.args)
    if node.op == "call_function" and node.target in _MOVES:
        return _spread(coef, node.args[0], module, depth + 1)
    return abs(coef) if abs(coef) >= -BIG_FILL else 0.0


def _dominates(fill: float, terms: list, fills: list, module) -> bool:
    """Whether the causal fill hides as -inf does in every row, even in one whose visible
    keys the other masks all hide (a left-padded row's first queries): a hidden key's
    score (`fill`, plus the other masks at their highest) must stay `BIG_FILL` below the
    visible keys' lowest (the other masks at their lowest), so that it weighs exactly 0
    there too. GPT-2 fills both its causal band and its padding with -1e4: in a row that
    sees only padding, TF weighs the hidden real keys as much as the visible padded ones,
    and is_causal would not. Computed in float64 (``finfo(float32).min`` and a padding
    spread of the same size leave no margin)."""
    spread = sum(_spread(coef, node, module) for coef, node in terms)
    spread -= sum(min(0.0, when_true, when_false) for _, when_true, when_false in fills)
    return fill + spread <= BIG_FILL


def absorb_masks(
    plan: Plan, lengths: dict, same: bool, static: tuple, module, longer: bool = False
) -> str | None:
    """The bands and causal fills of `plan` as its causal alignment (`causal_alignment`:
    `longer` says Lk >= Lq is proven), the other fills as masks, or why they cannot be."""
    for band, cond, below in plan.bands:
        # Where(band, s, fill): the fill is what the terms after the band add where it is 0
        fill = sum(coef * hiding_coef(t, band, module) for coef, t in plan.terms[below:])
        # terms below a causal band (Transfo-XL's relative positions) may lower the visible
        # scores: only a fill <= HUGE_FILL hides as -inf does, under the rounding the
        # additive mask relies on too (|visible| < 2**-25 * |fill|, far above fill + 104)
        if not below or HUGE_FILL >= fill > float("-inf"):
            aligned = causal_alignment(cond, lengths, same, static, module, longer, band)
        else:
            aligned = None
        if (
            aligned is not None
            and plan.causal in ("", aligned)
            and _absorb_causal(plan, band, module, below)
        ):
            plan.causal = aligned
            continue
        if not HUGE_FILL >= fill > float("-inf"):
            why = (
                "is not a causal triangle at every length "
                if aligned is None
                else (f"has no term -c * (1 - band) with c >= {-BIG_FILL} ")
            )
            return (
                f"the 0/1 band %{band.name} {why}"
                f"{'over unmasked scores ' if not below else ''}and fills {fill}: only a "
                f"finite fill <= {HUGE_FILL} is the same as an additive mask"
            )
        # the factor goes, the terms stay whole: the additive mask
    kept = []
    for cond, when_true, when_false in plan.fills:
        fill = when_false if when_true == 0.0 else when_true
        aligned = causal_alignment(cond, lengths, same, static, module, longer)
        others = [f for f in plan.fills if f[0] is not cond]
        if (
            when_true == 0.0
            and fill <= BIG_FILL
            and aligned
            and plan.causal in ("", aligned)
            and _dominates(fill, plan.terms, others, module)
        ):
            plan.causal = aligned
            continue
        if not (HUGE_FILL >= fill > float("-inf")) or 0.0 not in (when_true, when_false):
            return (
                f"Where(%{cond.name}, ...) fills {fill}: only a finite fill <= {HUGE_FILL} "
                "is the same as an additive mask (fully masked rows stay uniform)"
            )
        kept.append((cond, when_true, when_false))
    plan.fills = kept
    return None


# --------------------------------------------------------------------------- zeroed rows


def zeroing(node: Any, module) -> tuple[fx.Node, bool, fx.Node] | None:
    """``Where(c, 0, p)`` or ``Where(c, p, 0)`` as (c, whether c True hides, p), else None."""
    if (
        not isinstance(node, fx.Node)
        or node.op != "call_function"
        or node.target is not torch.where
    ):
        return None
    if len(node.args) != 3 or node.kwargs:
        return None
    cond, a, b = node.args
    if not isinstance(cond, fx.Node) or node_dtype(cond) is not torch.bool:
        return None
    if isinstance(b, fx.Node) and scalar(a, module) == 0.0 and scalar(b, module) is None:
        return cond, True, b
    if isinstance(a, fx.Node) and scalar(b, module) == 0.0 and scalar(a, module) is None:
        return cond, False, a
    return None


def same_value(a: Any, b: Any, module, depth: int = 0) -> bool:
    """Whether `a` and `b` are one value: the same node, two constants equal in dtype,
    shape and every element (onnx2torch copies an initializer per use), or the same pure
    op on such arguments (tf2onnx may cast one mask twice)."""
    if a is b:
        return True
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or depth > 12:
        return not isinstance(a, fx.Node) and not isinstance(b, fx.Node) and _equal(a, b, module)
    if a.op == b.op == "get_attr":
        x, y = constant(a, module), constant(b, module)
        same = isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        return same and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
    if a.op != b.op or a.op not in ("call_function", "call_method") or a.target != b.target:
        return False
    if len(a.args) != len(b.args) or a.kwargs.keys() != b.kwargs.keys():
        return False
    pairs = [*zip(a.args, b.args, strict=True), *((a.kwargs[k], b.kwargs[k]) for k in a.kwargs)]
    return all(same_value(x, y, module, depth + 1) for x, y in pairs)


def _equal(a: Any, b: Any, module) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        pairs = zip(a, b, strict=True) if len(a) == len(b) else None
        return pairs is not None and all(same_value(x, y, module) for x, y in pairs)
    return type(a) is type(b) and a == b


def _hidden(cond: fx.Node, hides_when_true: bool) -> tuple[fx.Node, bool]:
    """The positions a Where hides, as (base condition, whether True hides): Not peeled."""
    while cond.op == "call_function" and cond.target is torch.logical_not:
        cond, hides_when_true = cond.args[0], not hides_when_true
    return cond, hides_when_true


def absorb_zero(
    plan: Plan, zero: tuple[fx.Node, bool, fx.Node], node: fx.Node, module
) -> str | None:
    """A Where that zeroes, after the softmax, exactly what the one masked fill hid before it
    (DeBERTa's XSoftmax: ``where(~m, -inf, s)``, softmax, ``where(~m, 0, p)``).

    In a row with a visible key the hidden scores weigh exp(fill - max) = 0 already (the
    fill is at or below `BIG_FILL`), so zeroing them changes nothing; a row with no visible
    key is 0 in the model. So the fill becomes the finite float32 minimum (the same zero
    weights, and no NaN in a fully hidden row, forward or backward) and SDPA's output is
    zeroed where its row has no visible key: ``plan.zero``.
    """
    cond, hides_when_true, _ = zero
    if plan.bands or plan.gated or len(plan.fills) != 1:
        return (
            f"%{node.name} zeroes probabilities after the softmax: only one masked fill "
            f"before it, and no band or masked term, can say which rows it empties "
            f"({len(plan.fills)} fills)"
        )
    fill_cond, when_true, when_false = plan.fills[0]
    fill_on_true = when_true != 0.0
    fill = when_true if fill_on_true else when_false
    mine, theirs = _hidden(cond, hides_when_true), _hidden(fill_cond, fill_on_true)
    if mine[1] != theirs[1] or not same_value(mine[0], theirs[0], module):
        return f"%{node.name} zeroes other positions than Where(%{fill_cond.name}, ...) hides"
    if plan.mask_levels != {len(plan.reshapes)}:
        return f"a reshape lies between Where(%{fill_cond.name}, ...) and the softmax"
    if not fill <= BIG_FILL:
        return f"Where(%{fill_cond.name}, ...) fills {fill}: hidden scores keep a weight"
    low = -float(torch.finfo(torch.float32).max)
    plan.fills = [(fill_cond, low if fill_on_true else 0.0, 0.0 if fill_on_true else low)]
    plan.zero = theirs  # Not peeled: SDPA's output keeps the rows where it is not all hiding
    return None
