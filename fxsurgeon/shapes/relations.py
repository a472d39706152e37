"""Relations between input dims that the symbolic analysis reads off its ShapeEnv: the
ties it learns (an input dim equal to a sum of others) and the hints that satisfy an
equality an op needs. `SymbolicShapes` (symbolic.py) calls these with its ShapeEnv and its
map of input symbols, symbol -> (input name, dim)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy
import torch
from torch.fx.experimental.symbolic_shapes import ShapeEnv

Key = tuple[str, int]
#: ``(input dim, ((coefficient, input dim), ...), constant)``: the dim equals the sum
Tie = tuple[Key, tuple[tuple[int, Key], ...], int]


def linear_tie(symbols: dict[Any, Key], key: Key, value: Any) -> Tie | None:
    """``key == value`` as a tie, when `value` is a sum of input dims with integer
    coefficients plus an integer; else None."""
    terms, constant = [], 0
    for part, coefficient in value.as_coefficients_dict().items():
        if not coefficient.is_Integer:
            return None
        if part == 1:
            constant = int(coefficient)
        elif part in symbols:
            terms.append((int(coefficient), symbols[part]))
        else:
            return None
    return (key, tuple(sorted(terms)), constant)


def equation_ties(env: ShapeEnv, symbols: dict[Any, Key], tied: set[Key]) -> list[Tie]:
    """Ties from the equality guards the ShapeEnv kept as guards, not replacements (a
    broadcast's ``Eq(m - p, n)``): each linear one solved for an input dim that it has
    with coefficient +-1 and that no tie in `tied` binds yet."""
    ties = []
    for guard in env.guards:
        if not isinstance(guard.expr, sympy.Eq):
            continue
        difference = sympy.expand(env.replace(guard.expr.lhs - guard.expr.rhs))
        for symbol in sorted(difference.free_symbols, key=str):
            key = symbols.get(symbol)
            if key is None or key in tied or abs(difference.coeff(symbol)) != 1:
                continue
            try:
                solutions = sympy.solve(difference, symbol)
            except NotImplementedError:  # floor divisions: no linear tie to read
                continue
            if len(solutions) != 1:
                continue
            tie = linear_tie(symbols, key, solutions[0])
            if tie is not None:
                ties.append(tie)
                tied.add(key)
                break
    return ties


def broadcast_hints(env: ShapeEnv, symbols: dict[Any, Key], values: Sequence) -> dict | None:
    """Hints (`equal_hints`) for the first pair of aligned (trailing) sizes of two of
    `values` (tensors or shapes) that broadcasting needs equal and whose hints differ:
    hints that make them differ put the example outside the model's domain. None if none."""
    known = [shape for shape in map(_sizes, values) if shape is not None]
    for k, a in enumerate(known):
        for b in known[k + 1 :]:
            for x, y in zip(reversed(a), reversed(b), strict=False):
                hints = equal_hints(env, symbols, x, y) or scaled_hints(env, symbols, x, y)
                if hints:
                    return hints
    return None


def needs_equal(fn: Any, args: Sequence, kwargs: dict) -> list:
    """The values (tensors or shapes) of a call whose trailing-aligned sizes the op needs
    equal, for `broadcast_hints`: its arguments, except that the tensors of a ``torch.cat``
    or ``torch.stack`` (a list, one argument) are values of their own, a ``torch.cat``'s
    each with its joined dim as 1 (the one size they may differ in; a 1 is never paired)."""
    if fn in (torch.cat, torch.concat, torch.concatenate, torch.stack) and args:
        tensors = args[0]
        if isinstance(tensors, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in tensors):
            if fn is torch.stack:
                return list(tensors)
            dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else 0))
            if not isinstance(dim, int):
                return []
            shapes = []
            for t in tensors:
                rank = t.dim()
                if rank and -rank <= dim < rank:
                    shapes.append(tuple(1 if d == dim % rank else s for d, s in enumerate(t.shape)))
            return shapes
    return [*args, *kwargs.values()]


def _sizes(value: Any) -> tuple | None:
    """The sizes of a tensor, or a shape (a tuple of ints and SymInts), else None."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and all(isinstance(d, (int, torch.SymInt)) for d in value):
        return tuple(value)
    return None


def equal_hints(env: ShapeEnv, symbols: dict[Any, Key], x: Any, y: Any) -> dict | None:
    """{input symbol: hint} that make sizes `x` and `y` equal, when their hints differ and
    neither is 1: the equation solved for one input dim of either side (a mask's length
    ``m`` against a cache's ``p`` plus the new tokens' ``n``: ``m = p + n``, or ``n = m - p``
    when positions are cut from the mask), the others at their hints. Of the solutions that
    are sizes above 1, one that raises a hint is taken first; None when there is none."""
    sides = _differing(env, x, y)
    if sides is None:
        return None
    difference = sides[0] - sides[1]
    hints = env.backed_var_to_val
    found = []
    for symbol in sorted(difference.free_symbols & symbols.keys(), key=str):
        if any(s not in hints for s in difference.free_symbols - {symbol}):
            continue
        try:
            solutions = sympy.solve(difference, symbol)
        except NotImplementedError:  # floor divisions: `scaled_hints`
            continue
        if len(solutions) != 1:
            continue
        value = solutions[0].xreplace({s: hints[s] for s in solutions[0].free_symbols})
        if value.is_Integer and int(value) > 1:
            found.append((int(value) < int(hints[symbol]), str(symbol), symbol, int(value)))
    if not found:
        return None
    _, _, symbol, value = min(found)
    return {symbol: value}


def scaled_hints(env: ShapeEnv, symbols: dict[Any, Key], x: Any, y: Any) -> dict | None:
    """{input symbol: hint} that make sizes `x` and `y` equal where no linear solution does
    (floor divisions: a net that halves a side twice and doubles it back, ``2 * (s // 4)``
    against ``s // 2``, is defined on multiples of 4): the hints of their input dims
    multiplied together by the smallest ``m`` up to 16 that makes the two equal. None when
    their hints agree, either is 1, or no ``m`` does."""
    sides = _differing(env, x, y)
    if sides is None:
        return None
    free = sides[0].free_symbols | sides[1].free_symbols
    hints = env.backed_var_to_val
    if not free or not free <= symbols.keys() or any(s not in hints for s in free):
        return None
    for m in range(2, 17):
        scaled = {s: m * int(hints[s]) for s in free}
        if sides[0].xreplace(scaled) == sides[1].xreplace(scaled):
            return scaled
    return None


def _differing(env: ShapeEnv, x: Any, y: Any) -> list | None:
    """Sizes `x` and `y` as expressions of the ShapeEnv's symbols, when both have hints, the
    hints differ and neither is 1 (a broadcast that needs them equal); else None."""
    values = [_hint(env, v) for v in (x, y)]
    if None in values or values[0] == values[1] or 1 in values:
        return None
    return [
        env.replace(v.node.expr) if isinstance(v, torch.SymInt) else sympy.Integer(v)
        for v in (x, y)
    ]


def _hint(env: ShapeEnv, size: Any) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, torch.SymInt) and env.has_guarding_hint(size.node.expr):
        return int(env.guarding_hint_or_throw(size.node.expr))
    return None  # a size of data (unbacked): no hint


def bound_hints(expr: Any, hints: dict, bound: int) -> dict | None:
    """`hints` (input symbol -> hint) doubled together until `expr` is at least `bound`;
    None past 2**24 times (beyond any real size)."""
    for _ in range(24):
        if expr.xreplace(hints) >= bound:
            return hints
        hints = {s: 2 * v for s, v in hints.items()}
    return None


def multiple_hints(expr: Any, hints: dict, factor: int) -> dict | None:
    """`hints` times the smallest ``m`` up to ``4 * factor`` that makes `expr` a positive
    multiple of `factor`; None if there is none."""
    for m in range(1, 4 * factor + 1):
        scaled = {s: m * v for s, v in hints.items()}
        value = int(expr.xreplace(scaled))
        if value % factor == 0 and value > 0:
            return scaled
    return None
