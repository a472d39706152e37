"""Boolean and integer identities on constants: what tf2onnx writes for a branch of a formula
that the TF op's arguments switch off (``tf.linalg.band_part(x, 0, -1)``: ``num_lower < 0``
is the constant True, so ``True | (i - j <= num_lower)`` keeps nothing of its operand).

    logical_or(x, False)            -> x      (either operand order)
    logical_and(x, True)            -> x
    logical_and(y, logical_or(x, True)) -> y  the or is True wherever the and reads it
    x - 0                           -> x

Each is an identity of the values; it is applied only where the result has x's (y's)
shape and dtype, so broadcasting does not widen the tensor it stands for: a constant
of one element (or all equal elements) that broadcasts into x. ``x - 0`` keeps every
float bitwise (``-0.0 - 0 = -0.0``, NaN stays NaN) and every integer. Per-call mask
arithmetic of a causal mask built by ``band_part`` (HF TF CLIP) shrinks by these, and
the eager model runs fewer ops.
"""

from __future__ import annotations

import torch
from fxsurgeon.patterns import Match, Rule

BOTH_ENDS = ("prepare", "tidy")


def _all(match: Match, node, value: bool) -> bool:
    """`node` is a stored bool constant whose every element is `value`."""
    if not match.is_constant(node):
        return False
    tensor = match.tensor(node)
    return (
        tensor is not None
        and tensor.dtype == torch.bool
        and tensor.numel() > 0
        and bool((tensor == value).all())
    )


def _keeps(match: Match, name: str) -> str | None:
    """The match's result has the shape and dtype of the operand `name`."""
    shape, kept = match.shape(match.anchor), match.shape(name)
    if shape is None or kept is None or tuple(shape) != tuple(kept):
        return f"the result {shape} is not the shape of {name} {kept}: the constant broadcasts"
    if match.dtype(match.anchor) != match.dtype(name):
        return "the result has another dtype than the operand"
    return None


def _operand_check(value: bool):
    def check(match: Match) -> str | None:
        a, b = match.node("a"), match.node("b")
        for kept, other in ((a, b), (b, a)):
            if other is not None and _all(match, other, value) and kept is not None:
                match["kept_first"] = kept is a
                return _keeps(match, "a" if kept is a else "b")
        return f"neither operand is a constant all {value}"

    return check


def _other(a, b, kept_first: bool):
    return a if kept_first else b


# -- logical_or(x, False) -> x --------------------------------------------------------------


def or_false_pattern(a, b):
    return torch.logical_or(a, b)


def and_true_pattern(a, b):
    return torch.logical_and(a, b)


def operand_replacement(a, b, kept_first: bool):
    return _other(a, b, kept_first)


logical_or_false = Rule(
    "logical_or_false",
    or_false_pattern,
    operand_replacement,
    check=_operand_check(False),
    phase=BOTH_ENDS,
    note="x | False: a branch of a TF formula switched off by a constant argument",
)

logical_and_true = Rule(
    "logical_and_true",
    and_true_pattern,
    operand_replacement,
    check=_operand_check(True),
    phase=BOTH_ENDS,
    note="x & True: a branch of a TF formula switched on by a constant argument",
)


# -- logical_and(y, logical_or(x, True)) -> y -------------------------------------------------


def and_or_true_pattern(y, x, c):
    return torch.logical_and(y, torch.logical_or(x, c))


def and_or_true_replacement(y, x, c):
    return y


def and_or_true_check(match: Match) -> str | None:
    if not _all(match, match.node("c"), True):
        return "the or's second operand is not a constant all True"
    return _keeps(match, "y")


logical_and_or_true = Rule(
    "logical_and_or_true",
    and_or_true_pattern,
    and_or_true_replacement,
    check=and_or_true_check,
    phase=BOTH_ENDS,
    note="y & (x | True): band_part's num_lower < 0 (or num_upper < 0), keep every row",
)


def and_true_or_pattern(y, x, c):
    return torch.logical_and(torch.logical_or(x, c), y)


def true_or_and_pattern(y, x, c):
    return torch.logical_and(y, torch.logical_or(c, x))


def true_or_first_pattern(y, x, c):
    return torch.logical_and(torch.logical_or(c, x), y)


logical_and_or_true_2, logical_and_or_true_3, logical_and_or_true_4 = (
    Rule(
        f"logical_and_or_true_{i}",
        pattern,
        and_or_true_replacement,
        check=and_or_true_check,
        phase=BOTH_ENDS,
        note="y & (x | True) in another operand order",
    )
    for i, pattern in (
        (2, and_true_or_pattern),
        (3, true_or_and_pattern),
        (4, true_or_first_pattern),
    )
)


# -- x - 0 -> x ---------------------------------------------------------------------------------


def sub_zero_pattern(x, zero):
    return x - zero


def sub_zero_replacement(x, zero):
    return x


def sub_zero_check(match: Match) -> str | None:
    zero = match["zero"]
    if isinstance(zero, bool) or not isinstance(zero, (int, float)) or zero != 0:
        return f"{zero!r} is not the number 0"
    return _keeps(match, "x")


sub_zero = Rule(
    "sub_zero",
    sub_zero_pattern,
    sub_zero_replacement,
    check=sub_zero_check,
    phase=BOTH_ENDS,
    note="x - 0 (TF's range(0, n) - start with start 0)",
)
