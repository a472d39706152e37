"""The masks of an attention's scores: what `recognize` (``_attention_scores.py``) absorbs.

A causal 0/1 band ``s * band - c * (1 - band)`` with c >= -`BIG_FILL` becomes
``is_causal`` (aligned at the last key over a key/value cache: an explicit triangle); a
causal ``Where(tri, s, fill)`` with fill <= `BIG_FILL` too; any other
``Where(m, s, fill)`` stays a boolean mask only when its fill is finite and at or below
`HUGE_FILL` (then ``s + fill`` rounds to ``fill`` in float32, as the additive mask does).
``Where(m, s + t, s)`` is read by `offset` (t, the masked term, is an additive mask).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from fxsurgeon.patterns._attention_graph import (
    band_condition,
    causal_alignment,
    constant,
    node_dtype,
    scalar,
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


def _hides(node: fx.Node, band: fx.Node) -> bool:
    """Whether `node` is 1 - band: ``1.0 - band``, or the float of ``not cond`` in the
    band's dtype (the same 0/1 values, GPT-J's ``-1e9 * (~causal).float()``)."""
    if node.target is operator.sub and node.args == (1.0, band):
        return True
    if node.op != "call_method" or node.target != "to" or node.args[1:] != (node_dtype(band),):
        return False
    inner = node.args[0]
    return (
        isinstance(inner, fx.Node)
        and inner.target is torch.logical_not
        and inner.args[0] is band_condition(band)
    )


def _pieces(coef: float, node: fx.Node, band: fx.Node, module) -> list:
    """A term as a sum of (coef, node) pieces, split until the band's 1 - band (numbers drop)."""
    coef_, node = strip_factors(node, module)
    coef *= coef_
    if not _holds_hide(node, band, module):  # kept whole: splitting off its numbers would
        return [(coef, node)]  # move a large shift onto the kept scores (lost bits)
    if _hides(node, band):
        return [(coef, node)]
    out = []
    for i, x in enumerate(node.args):
        c = -coef if i == 1 and node.target is operator.sub else coef
        if scalar(x, module) is not None:
            continue  # the same number added to every score: dropped (shift invariance)
        if not isinstance(x, fx.Node):
            return [(coef, node)]
        out += _pieces(c, x, band, module)
    return out


def _holds_hide(node: Any, band: fx.Node, module, depth: int = 0) -> bool:
    """Whether the sum `node` has 1 - band among its pieces (through factors)."""
    if not isinstance(node, fx.Node) or depth > 16:
        return False
    node = strip_factors(node, module)[1]
    if _hides(node, band):
        return True
    if node.target not in (operator.add, operator.sub):
        return False
    return any(_holds_hide(x, band, module, depth + 1) for x in node.args)


def absorb_masks(
    plan: Plan, lengths: dict, same: bool, static: tuple, module, longer: bool = False
) -> str | None:
    """The bands and causal fills of `plan` as its causal alignment (`causal_alignment`:
    `longer` says Lk >= Lq is proven), the other fills as masks, or why they cannot be."""
    for band, cond in plan.bands:
        aligned = causal_alignment(cond, lengths, same, static, module, longer)
        if aligned is None or plan.causal not in ("", aligned):
            return f"the 0/1 band %{band.name} is not a causal triangle at every length"
        pieces = [_pieces(coef, t, band, module) for coef, t in plan.terms]
        found = [
            i
            for i, parts in enumerate(pieces)
            if any(_hides(t, band) and coef <= BIG_FILL for coef, t in parts)
        ]
        if not found:
            return f"the band %{band.name} has no term -c * (1 - band) with c >= {-BIG_FILL}"
        parts = pieces[found[0]]
        hidden = next(p for p in parts if _hides(p[1], band) and p[0] <= BIG_FILL)
        rest = [p for p in parts if p is not hidden]
        plan.terms = plan.terms[: found[0]] + rest + plan.terms[found[0] + 1 :]
        plan.causal = aligned
    kept = []
    for cond, when_true, when_false in plan.fills:
        fill = when_false if when_true == 0.0 else when_true
        aligned = causal_alignment(cond, lengths, same, static, module, longer)
        if when_true == 0.0 and fill <= BIG_FILL and aligned and plan.causal in ("", aligned):
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
