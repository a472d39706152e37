"""Shape arithmetic beyond + - * /: comparisons, Where, Min/Max and float casts of `Sym` values.

tf2onnx writes TF's strided_slice masks, tf.slice sizes of -1 and einsum's broadcast of batch
dims as Equal/Less/And/Where/Max over shape vectors, some of it through float (Max of older
opsets takes no ints). Kept as `Sym`s this stays Python arithmetic on the sizes, so the
indices and shapes it feeds stay SymInts (torch.compile traces them without a data-dependent
branch); as tensors they would be data read back on the host.

Every rule here is exact or refuses (returns None, and the caller keeps its tensor form):

* a comparison involving a run-time size folds only when the shape analysis proves its
  outcome for every size (``statically_known_true``: a size is never negative, and a bound
  asserted below holds) and it also holds with any of its sizes at 0 or 1, which the
  analysis itself assumes away (`_always`);
* an int -> float Cast keeps the int values only where the float type holds them exactly:
  a static value is checked now, a run-time one gets an assert (``aten._assert_scalar``)
  that it is within the type's exact integer range (2**24 for float32), so a larger size
  stops with a clear error instead of silently differing from ONNX's rounded value;
* a float constant takes part only when its values are integers.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import sympy
import torch
from torch import fx
from torch.fx.experimental.symbolic_shapes import statically_known_true

from .values import Const, Sym, as_sym

#: the largest integer each float type holds exactly together with every smaller one
FLOAT_EXACT = {
    torch.float16: 2**11,
    torch.bfloat16: 2**8,
    torch.float32: 2**24,
    torch.float64: 2**53,
}

COMPARISONS = {
    torch.eq: operator.eq,
    torch.less: operator.lt,
    torch.lt: operator.lt,
    torch.less_equal: operator.le,
    torch.le: operator.le,
    torch.greater: operator.gt,
    torch.gt: operator.gt,
    torch.greater_equal: operator.ge,
    torch.ge: operator.ge,
}


def sym_operand(value: Any) -> Sym | None:
    """`as_sym`, plus a small float constant whose values are all integers (tf2onnx's
    +-1e9 "to the end" bounds) as a float `Sym`."""
    sym = as_sym(value)
    if sym is not None or not isinstance(value, Const):
        return sym
    v = value.value
    if not v.is_floating_point() or v.dim() > 1 or v.numel() > 16:
        return None
    if not bool(torch.isfinite(v).all()) or not bool((v == v.round()).all()):
        return None
    return Sym([int(i) for i in v.reshape(-1).tolist()], scalar=v.dim() == 0, dtype=v.dtype)


def condition(value: Any) -> Sym | None:
    """A Where condition known now (a bool constant or a decided comparison) as a `Sym`."""
    if isinstance(value, Sym):
        return value if value.is_static else None
    if not isinstance(value, Const) or value.value.dim() > 1 or value.value.numel() > 16:
        return None
    items = [int(bool(v)) for v in value.value.reshape(-1).tolist()]
    return Sym(items, scalar=value.value.dim() == 0, dtype=torch.bool)


def is_float(sym: Sym) -> bool:
    return sym.dtype.is_floating_point


def _fake(item: Any) -> Any:
    """An item as the analysis sees it: an int, or the SymInt of a size node."""
    if isinstance(item, fx.Node):
        return item.meta.get("val")
    return item


def decide(op, x: Any, y: Any) -> bool | None:
    """``op(x, y)`` for two Sym items when it holds or fails for every size; else None."""
    if isinstance(x, int) and isinstance(y, int):
        return bool(op(x, y))
    fx_, fy = _fake(x), _fake(y)
    if not isinstance(fx_, (int, torch.SymInt)) or not isinstance(fy, (int, torch.SymInt)):
        return None
    result = op(fx_, fy)
    if isinstance(result, bool):
        return result
    if _always(result):
        return True
    if _always(torch.sym_not(result)):
        return False
    return None


def _always(claim: torch.SymBool) -> bool:
    """`claim` holds for every size, 0 and 1 included.

    The shape analysis takes every symbolic dim to be at least 2 (torch
    specialises 0 and 1), so ``statically_known_true`` alone would decide
    ``length > 1`` for a decoder that runs at length 1. The claim must also
    hold with any of its sizes set to 0 or 1 (the rest still at least 2)."""
    if not statically_known_true(claim):
        return False
    expr, env = claim.node.expr, claim.node.shape_env
    symbols = sorted(expr.free_symbols, key=str)
    if env is None or len(symbols) > 6:
        return False
    for values in itertools.product((0, 1, None), repeat=len(symbols)):
        small = {s: v for s, v in zip(symbols, values, strict=True) if v is not None}
        if not small:
            continue
        try:
            case = expr.xreplace(small)
        except (AssertionError, ZeroDivisionError):  # e.g. Mod of a negative: no such sizes
            return False  # (torch's sympy functions assert their domain): not shown
        if case is sympy.true:
            continue
        if case is sympy.false or case.is_Boolean is not True and not case.free_symbols:
            return False
        if env._maybe_evaluate_static(case) is not sympy.true:
            return False
    return True


def _broadcast(*syms: Sym) -> int | None:
    n = max(len(s.items) for s in syms)
    if any(len(s.items) not in (1, n) for s in syms):
        return None
    return n


def _at(sym: Sym, i: int) -> Any:
    return sym.items[i if len(sym.items) > 1 else 0]


def compare(fn, a: Sym, b: Sym) -> Sym | None:
    """An ONNX comparison of two shape values, when every element is decided."""
    op = COMPARISONS.get(fn)
    n = _broadcast(a, b)
    if op is None or n is None:
        return None
    items = []
    for i in range(n):
        outcome = decide(op, _at(a, i), _at(b, i))
        if outcome is None:
            return None
        items.append(int(outcome))
    return Sym(items, scalar=a.scalar and b.scalar, dtype=torch.bool)


def where(cond: Sym, a: Sym, b: Sym) -> Sym | None:
    """ONNX Where of shape values under a condition known now."""
    n = _broadcast(cond, a, b)
    if not cond.is_static or n is None or a.dtype != b.dtype:
        return None
    items = [_at(a, i) if _at(cond, i) else _at(b, i) for i in range(n)]
    return Sym(items, scalar=cond.scalar and a.scalar and b.scalar, dtype=a.dtype)


def min_max(ctx, maximum: bool, syms: list[Sym]) -> Sym | None:
    """Elementwise Min/Max of shape values: decided where the analysis can, else a
    ``torch.sym_max``/``sym_min`` of the two sizes (a SymInt, never a tensor)."""
    n = _broadcast(*syms)
    if n is None or len({s.dtype for s in syms}) != 1:
        return None
    items = []
    for i in range(n):
        best = _at(syms[0], i)
        for other in syms[1:]:
            best = _pick(ctx, maximum, best, _at(other, i))
        items.append(best)
    return Sym(items, scalar=all(s.scalar for s in syms), dtype=syms[0].dtype)


def _pick(ctx, maximum: bool, x: Any, y: Any) -> Any:
    x_first = decide(operator.ge if maximum else operator.le, x, y)
    if x_first is not None:
        return x if x_first else y
    return ctx.call(torch.sym_max if maximum else torch.sym_min, x, y)


def mod(ctx, a: Sym, b: Sym, fmod: bool) -> Sym | None:
    """ONNX Mod of integer shape values: fmod=0 takes the divisor's sign (Python's
    ``%``, also on SymInts), fmod=1 the dividend's (C fmod), the same where the
    analysis shows the dividend >= 0 and the divisor > 0. A divisor known to be 0 is
    refused; one the analysis cannot show nonzero (a while loop's gcd) is Python's ``%``,
    which raises ZeroDivisionError at 0 as the tensor form (torch.remainder) does."""
    n = _broadcast(a, b)
    if n is None or is_float(a) or is_float(b) or a.dtype != b.dtype:
        return None
    items = []
    for i in range(n):
        x, y = _at(a, i), _at(b, i)
        if isinstance(x, int) and isinstance(y, int):
            if y == 0:
                return None
            items.append(int(torch.fmod(torch.tensor(x), y)) if fmod else x % y)
            continue
        if decide(operator.ne, y, 0) is False:
            return None
        if fmod and not (decide(operator.ge, x, 0) and decide(operator.gt, y, 0)):
            return None
        items.append(ctx.call(operator.mod, x, y))
    return Sym(items, scalar=a.scalar and b.scalar, dtype=a.dtype)


def cast(ctx, sym: Sym, dtype: torch.dtype) -> Sym | None:
    """ONNX Cast of a shape value between integer and float types, exactly (see module doc)."""
    if dtype == torch.bool:  # x != 0, where decided
        truth = [decide(operator.ne, item, 0) for item in sym.items]
        if any(t is None for t in truth):
            return None
        return Sym([int(bool(t)) for t in truth], sym.scalar, dtype)
    if not dtype.is_floating_point or sym.dtype == torch.bool:
        return Sym(list(sym.items), sym.scalar, dtype)  # the items are integers already
    bound = FLOAT_EXACT.get(dtype)
    if bound is None:
        return None
    items = []
    for item in sym.items:
        if isinstance(item, int):
            item = int(torch.tensor(item, dtype=torch.float64).to(dtype).item())
        else:
            _assert_exact(ctx, item, bound, dtype)
        items.append(item)
    return Sym(items, sym.scalar, dtype)


def _assert_exact(ctx, item: fx.Node, bound: int, dtype: torch.dtype) -> None:
    """Write ``assert |item| <= bound`` (run time) and tell the analysis the same bound."""
    fake = _fake(item)
    if isinstance(fake, torch.SymInt):
        if statically_known_true(abs(fake) <= bound):
            return
        # the analysis learns the bound as a range of the size (the == form below is
        # opaque to it), so that later comparisons with larger constants are decided
        ctx.graph.shapes.run(torch._check, (abs(fake) <= bound,), {}, ctx.graph.where, "Cast")
    # |item| <= bound written as max(|item|, bound) == bound: the canonical form turns
    # operator.le into torch.less_equal, a tensor op (fuse/canon.py)
    within = ctx.call(operator.eq, ctx.call(torch.sym_max, ctx.call(abs, item), bound), bound)
    # aten._assert_scalar, not torch._assert: on a size read from the data, torch._assert
    # asks the analysis and torch.compile to guard on its value; this one stays a run-time
    # assert (as Squeeze's, shape_ops._assert_unit)
    ctx.call(
        torch.ops.aten._assert_scalar,
        within,
        f"a size cast to {dtype} exceeds {bound}, the range it holds exactly "
        f"(rule sym_math.cast, ONNX node {ctx.node.target if ctx.node is not None else '?'})",
    )
