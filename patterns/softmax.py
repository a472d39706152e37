"""Softmax written out: a max shift, a power-of-two scale pair, a logsumexp -> torch.softmax.

    softmax(x - amax(x, d), d)                 -> softmax(x, d)              (softmax_shift_1/2)
    softmax((y - amax(y, d)) * e, d)           -> softmax(y * e, d)          (softmax_shift_3/4)
    softmax((x * c) * e, d)                    -> softmax(x, d)              (softmax_scale_1)
    exp(x - logsumexp(x, dims))                -> softmax over dims          (softmax_logsumexp_1/2)

The shift and the scale pair are CogView's "PB-Relax" stabiliser (HF LayoutLMv3:
``softmax((s / 32 - max(s / 32)) * 32)``); the logsumexp form is Keras 3's ``Softmax``
over several axes. The attention rules look for ``torch.softmax`` on the scores: these
rules run in the ``fuse`` phase, before them.

Why each is exact:

* **The max shift** (``_1`` with ``amax(keepdim=True)``, ``_2`` with ``amax`` then
  ``unsqueeze`` at the reduced axis): softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)
  with m = max_j x_j is how torch computes it. For z = x - m (rounded), max z = 0
  exactly (the maximal element gives m - m), so softmax(z) computes exp(z_i - 0) = the
  same exp(x_i - m), and the same sum: the result is bitwise softmax(x). A row whose max
  is infinite gives NaN both ways. The amax must reduce exactly the softmax axis.
* **A positive power-of-two factor after the shift** (``_3``/``_4``): for e = 2^k > 0,
  multiplying by e is exact in float32 (barring overflow or underflow to subnormals) and
  commutes with rounding, so (y - m) * e = round(y e - m e) where m e = max(y e) (e > 0
  keeps the order): the shift of y e by its own max, i.e. softmax(y * e) as above. A
  factor that is not a power of two (or negative) rounds differently: declined.
* **A scale pair** (``softmax_scale_1``): (x * c) * e = x exactly when c * e == 1 and c
  is a power of two (barring overflow or underflow of x * c), so softmax((x * c) * e)
  is softmax(x). Any other pair is not the identity in float32: declined. CogView's
  ``((s * 2^-5) - max) * 2^5`` becomes ``softmax(s)`` by ``_3`` then this rule.
* **Logsumexp** (``_1``: tf.reduce_logsumexp's guard ``where(isfinite(m), m, 0)`` on
  the max m; ``_2``: m used as it is): exp(x - (log(sum exp(x - m)) + m)) = exp(x - m) /
  sum exp(x - m) = softmax(x) over the reduced axes in real arithmetic; in float32 the
  two differ by rounding (a few ulps: the log and the exp of the sum against one
  division). The guard only matters when m is infinite, where both give NaN or the same
  zeros. Over one axis it becomes ``softmax(x, d)``; over several trailing axes the
  axes are flattened into one, softmax(-1), and unflattened (a softmax over a set of
  axes is one over their elements, in any order). Other axis sets: declined. The two
  agree only while log(sum) is not lost in m's rounding: for |m| > 2^7 (ulp > 1e-5) they
  part, and a fully masked row (every score a fill of -1e9 or dtype-min) gives 1s, not
  1/n. So x made with a constant beyond 128 in magnitude (a mask fill, a -1e4 * (1 - m)
  term) is declined: its max can be that large.
"""

from __future__ import annotations

import math
import operator

import torch
from fxsurgeon.patterns import Match, Rule
from fxsurgeon.patterns._attention_graph import constant, scalar


def _axis(match: Match, value, name: str = "x") -> int | None:
    """`value` (an int or a one-element tuple of ints) as an axis of `name`, else None."""
    rank = match.rank(name)
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if rank is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return value % rank


def _power_of_two(value: float | None) -> bool:
    return value is not None and value > 0 and math.isfinite(value) and math.frexp(value)[0] == 0.5


def _shift_check(match: Match, name: str = "x") -> str | None:
    """The amax reduces exactly the softmax axis (and an unsqueeze puts it back there)."""
    dim = _axis(match, match["dim"], name)
    if dim is None or _axis(match, match["dims"], name) != dim:
        return f"the max over {match['dims']} is not over the softmax axis {match['dim']}"
    if "at" in match.bindings and _axis(match, match["at"], name) != dim:
        return f"the max is put back at axis {match['at']}, not at the softmax axis"
    return None


# -- softmax(x - amax(x, d), d) -> softmax(x, d) -----------------------------------------------


def shift_pattern(x: torch.Tensor, dims: tuple, dim: int):
    return torch.softmax(x - torch.amax(x, dims, keepdim=True), dim)


def shift_replacement(x, dims, dim):
    return torch.softmax(x, dim)


softmax_shift_1 = Rule(
    "softmax_shift_1",
    shift_pattern,
    shift_replacement,
    check=_shift_check,
    note="a softmax stabilised by hand: the row max subtracted first (bitwise the same)",
)


def shift_unsqueezed_pattern(x: torch.Tensor, dims: tuple, at: int, dim: int):
    return torch.softmax(x - torch.unsqueeze(torch.amax(x, dims, keepdim=False), at), dim)


def shift_unsqueezed_replacement(x, dims, at, dim):
    return torch.softmax(x, dim)


softmax_shift_2 = Rule(
    "softmax_shift_2",
    shift_unsqueezed_pattern,
    shift_unsqueezed_replacement,
    check=_shift_check,
    note="tf.expand_dims(tf.reduce_max(x, -1), -1) subtracted before the softmax",
)


# -- softmax((y - amax(y, d)) * e, d) -> softmax(y * e, d), e a positive power of two ------------


def scaled_shift_check(match: Match) -> str | None:
    e = scalar(match["e"], match.module)
    if not _power_of_two(e):
        return f"the factor {e} after the shift is not a positive power of two"
    if match.shape("y") != match.shape(match.anchor):  # y * e must keep y's shape
        return "the factor broadcasts the scores to another shape"
    return _shift_check(match, "y")


def scaled_shift_pattern(y: torch.Tensor, e, dims: tuple, dim: int):
    return torch.softmax((y - torch.amax(y, dims, keepdim=True)) * e, dim)


def scaled_shift_replacement(y, e, dims, dim):
    return torch.softmax(y * e, dim)


softmax_shift_3 = Rule(
    "softmax_shift_3",
    scaled_shift_pattern,
    scaled_shift_replacement,
    check=scaled_shift_check,
    note="CogView's PB-Relax (HF LayoutLMv3): (s / 32 - max(s / 32)) * 32 before the softmax",
)


def scaled_shift_unsqueezed_pattern(y: torch.Tensor, e, dims: tuple, at: int, dim: int):
    return torch.softmax((y - torch.unsqueeze(torch.amax(y, dims, keepdim=False), at)) * e, dim)


def scaled_shift_unsqueezed_replacement(y, e, dims, at, dim):
    return torch.softmax(y * e, dim)


softmax_shift_4 = Rule(
    "softmax_shift_4",
    scaled_shift_unsqueezed_pattern,
    scaled_shift_unsqueezed_replacement,
    check=scaled_shift_check,
    note="CogView's PB-Relax as tf2onnx writes it: the max by ReduceMax then Unsqueeze",
)


# -- softmax((x * c) * e, d) -> softmax(x, d), c * e == 1, c a power of two ---------------------


def scale_pair_pattern(x: torch.Tensor, c, e, dim: int):
    return torch.softmax((x * c) * e, dim)


def scale_pair_replacement(x, c, e, dim):
    return torch.softmax(x, dim)


def scale_pair_check(match: Match) -> str | None:
    c, e = (scalar(match[n], match.module) for n in ("c", "e"))
    if c is None or e is None:
        return "the factors are not constants"
    if not _power_of_two(abs(c)) or c * e != 1.0:
        return f"{c} * {e}: not a power of two and its inverse (the pair is not exact)"
    if match.shape("x") != match.shape(match.anchor):
        return "the factors broadcast the scores to another shape"
    return None


softmax_scale_1 = Rule(
    "softmax_scale_1",
    scale_pair_pattern,
    scale_pair_replacement,
    check=scale_pair_check,
    note="CogView's PB-Relax: the scores times 2^-k then times 2^k (exact) before the softmax",
)


# -- exp(x - logsumexp(x, dims)) -> softmax over dims -------------------------------------------


def _guarded(x, dims):
    m = torch.amax(x, dims, keepdim=True)
    return torch.where(torch.logical_not(torch.logical_or(torch.isinf(m), torch.isnan(m))), m, 0.0)


def logsumexp_guarded_pattern(x: torch.Tensor, dims: tuple):
    shift = _guarded(x, dims)
    return torch.exp(x - (torch.log(torch.sum(torch.exp(x - shift), dims, keepdim=True)) + shift))


def logsumexp_plain_pattern(x: torch.Tensor, dims: tuple):
    m = torch.amax(x, dims, keepdim=True)
    return torch.exp(x - (torch.log(torch.sum(torch.exp(x - m), dims, keepdim=True)) + m))


def logsumexp_replacement(x, dims):
    rank = x.dim()
    axes = sorted(d % rank for d in dims)
    if len(axes) == 1:
        return torch.softmax(x, axes[0])
    shape = x.shape
    flat = torch.reshape(x, (*shape[: axes[0]], -1))
    return torch.reshape(torch.softmax(flat, -1), shape)


def logsumexp_check(match: Match) -> str | None:
    rank, dims = match.rank("x"), match["dims"]
    if rank is None or not isinstance(dims, tuple) or not dims:
        return "the reduced axes or the rank are not known"
    if any(isinstance(d, bool) or not isinstance(d, int) for d in dims):
        return f"the reduced axes {dims} are not integers"
    axes = sorted({d % rank for d in dims})
    if len(axes) != len(dims):
        return f"the reduced axes {dims} repeat"
    if len(axes) > 1 and axes != list(range(rank - len(axes), rank)):
        return f"the axes {dims} are not the trailing axes (a flatten would reorder elements)"
    if match.shape(match.anchor) != match.shape("x"):
        return "the result has another shape than x"
    fill = _large_constant(match.node("x"), match.module)
    if fill is not None:
        return (
            f"x is made with the constant {fill:g}: where its max is that large, log(sum) is "
            "below the max's ulp and exp(x - logsumexp) is not the softmax (a masked row)"
        )
    return None


#: |constant| beyond which float32 rounding of m + log(sum) loses more than 1e-5 (ulp(2^7))
_LARGE = 128.0
_ARITHMETIC = (operator.add, operator.sub, operator.mul, operator.truediv, operator.neg)
_ARITHMETIC += (torch.where, torch.add, torch.sub, torch.mul, torch.neg, torch.masked_fill)
_LAYOUT = (torch.reshape, torch.permute, torch.unsqueeze, torch.squeeze)
_LAYOUT_METHODS = ("to", "expand", "float", "reshape", "view", "permute", "contiguous")


def _large_constant(x, module, limit: int = 64) -> float | None:
    """A constant of magnitude > `_LARGE` (a mask fill: -1e4, -1e9, dtype-min) that the
    arithmetic and layout ops making `x` combine into it, else None."""
    seen, todo = set(), [x]
    while todo and len(seen) < limit:
        node = todo.pop()
        if not isinstance(node, torch.fx.Node) or node in seen:
            continue
        seen.add(node)
        layout = node.op == "call_method" and node.target in _LAYOUT_METHODS
        if layout or node.op == "call_function" and node.target in _LAYOUT:
            todo.append(node.args[0])
            continue
        if node.op != "call_function" or node.target not in _ARITHMETIC:
            continue
        for arg in node.args:
            value = scalar(arg, module)
            if value is not None and not abs(value) <= _LARGE:
                return value
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                tensor = constant(arg, module)
                if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                    peak = float(tensor.abs().max()) if tensor.numel() else 0.0
                    if not peak <= _LARGE:
                        return peak
            else:
                todo.append(arg)
    return None


softmax_logsumexp_1 = Rule(
    "softmax_logsumexp_1",
    logsumexp_guarded_pattern,
    logsumexp_replacement,
    check=logsumexp_check,
    note="Keras 3 Softmax over several axes: exp(x - tf.reduce_logsumexp(x, axes)), with its "
    "finite-max guard",
)

softmax_logsumexp_2 = Rule(
    "softmax_logsumexp_2",
    logsumexp_plain_pattern,
    logsumexp_replacement,
    check=logsumexp_check,
    note="exp(x - logsumexp(x, axes)) with the max shift written without a guard",
)
