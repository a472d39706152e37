"""Lowerings of ONNX elementwise math: binary and unary operations, comparisons, Where, Min/Max,
Clip, Mod, variadic Sum/Mean.
"""

from __future__ import annotations

import functools
import operator

import torch
from torch import fx

from ..errors import LoweringError
from ..frontdoor import ordered
from ..shapes import dtype_of, shape_of
from . import sym_math
from .shape_ops import _arith
from .table import lowering
from .values import Const, Sym, as_sym

# -- elementwise math ------------------------------------------------------------------

_BINARY = {torch.add: operator.add, torch.sub: operator.sub, torch.mul: operator.mul}


@lowering("OnnxBinaryMathOperation", "OnnxPow")
def _binary(ctx, mod, node, args):
    a, b = args
    if getattr(mod, "broadcast", None) == 1 and getattr(mod, "axis", None) is not None:
        raise LoweringError("old-style (opset < 7) broadcasting is not lowered")
    if type(mod).__name__ == "OnnxPow":
        op = operator.pow
    else:
        fn = mod.math_op_function
        op = _BINARY.get(fn, operator.truediv)
    sa, sb = as_sym(a), as_sym(b)
    if _sym_ints(a, b, sa, sb):
        return _sym_binary(ctx, op, sa, sb)
    # a static float Sym (a size cast to float, known now) folds as the constant it is
    a, b = (v.to_const() if isinstance(v, Sym) and v.is_static else v for v in (a, b))
    if isinstance(a, Const) and isinstance(b, Const) and not (a.is_weight or b.is_weight):
        return Const(_eval_binary(op, a.value, b.value))
    a_node = a if isinstance(a, fx.Node) else None
    b_node = b if isinstance(b, fx.Node) else None
    integer = (dtype_of(a_node or b_node) or torch.float32) in (torch.int32, torch.int64)
    if op is operator.truediv and integer:
        return ctx.call(torch.div, ctx.tensor(a), ctx.tensor(b), rounding_mode="trunc")
    out_shape = ctx.out_shape(a, b)
    lhs = ctx.operand(a, out_shape if _same_shape(b, out_shape) else None)
    rhs = ctx.operand(b, out_shape if _same_shape(a, out_shape) else None)
    if not isinstance(lhs, fx.Node) and not isinstance(rhs, fx.Node):
        lhs = ctx.tensor(a)
    return ctx.call(op, lhs, rhs)


def _sym_ints(a, b, sa, sb) -> bool:
    """Integer shape arithmetic (a float `Sym`, from a Cast, divides as floats: a tensor)."""
    if sa is None or sb is None or not (isinstance(a, Sym) or isinstance(b, Sym)):
        return False
    return not (sym_math.is_float(sa) or sym_math.is_float(sb))


def _same_shape(value, out_shape) -> bool:
    """True if `value` alone already has the output's shape (so the other
    operand, if a one-element constant, may become a Python scalar)."""
    if out_shape is None:
        return False
    if isinstance(value, fx.Node):
        return shape_of(value) == out_shape
    if isinstance(value, Const):
        return tuple(value.value.shape) == tuple(out_shape)
    return False


def _eval_binary(op, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if op is operator.truediv and not a.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return op(a, b)


def _sym_binary(ctx, op, a: Sym, b: Sym) -> Sym:
    if op is operator.truediv:
        op = operator.floordiv
    n = max(len(a.items), len(b.items))
    if len(a.items) not in (1, n) or len(b.items) not in (1, n):
        raise LoweringError("shape arithmetic with incompatible lengths")
    items = []
    for i in range(n):
        x = a.items[i if len(a.items) > 1 else 0]
        y = b.items[i if len(b.items) > 1 else 0]
        if op is operator.pow and not (isinstance(x, int) and isinstance(y, int)):
            raise LoweringError("run-time Pow in shape arithmetic")
        items.append(_arith(ctx, op, x, y))
    return Sym(items, scalar=a.scalar and b.scalar, dtype=a.dtype)


_UNARY_BY_CLASS = {
    "OnnxSqrt": torch.sqrt,
    "OnnxReciprocal": torch.reciprocal,
    "OnnxErf": torch.erf,
    "ReLU": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "OnnxNot": torch.logical_not,
    "OnnxIsNaN": torch.isnan,
}


@lowering(*_UNARY_BY_CLASS, "OnnxFunction", "OnnxNeg", "OnnxRound")
def _unary(ctx, mod, node, args):
    (x,) = args
    name = type(mod).__name__
    if name == "OnnxNeg":
        fn = operator.neg
    elif name == "OnnxFunction":
        fn = mod.function
    elif name == "OnnxRound":  # Ceil, Floor, Round (torch.round: half to even, as ONNX)
        fn = mod.round_function
    else:
        fn = _UNARY_BY_CLASS[name]
    if isinstance(x, Sym) and not x.is_static and name == "OnnxNeg":  # shape arithmetic
        return Sym([_arith(ctx, operator.sub, 0, i) for i in x.items], x.scalar, x.dtype)
    if isinstance(x, Sym) and x.is_static:  # a decided comparison of sizes (Not)
        x = x.to_const()
    if isinstance(x, Const) and not x.is_weight:
        return Const(fn(x.value))
    return ctx.call(fn, ctx.tensor(x))


@lowering("OnnxCompare", "OnnxOrderCompare", "OnnxLogical")
def _compare(ctx, mod, node, args):
    fn = getattr(mod, "compare_function", None) or mod.logic_op_function
    decided = _sym_compare(fn, *args)
    if decided is not None:
        return decided
    a, b = (v.to_const() if isinstance(v, Sym) and v.is_static else v for v in args)
    order = type(mod).__name__ == "OnnxOrderCompare"  # uint16/32/64 compared in int64
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(fn(*(ordered(v.value) if order else v.value for v in (a, b))))
    a, b = ctx.tensor(a), ctx.tensor(b)
    if order:
        a, b = _ordered(ctx, a), _ordered(ctx, b)
    return ctx.call(fn, a, b)


def _ordered(ctx, x):
    """`ordered` (converters/unsigned.py) as graph nodes: uint16/32 widened to int64, uint64's
    bits as int64 with the sign bit flipped; other dtypes as they are."""
    dtype = x.meta["val"].dtype
    if dtype in (torch.uint16, torch.uint32):
        return ctx.method("to", x, torch.int64)
    if dtype == torch.uint64:
        return ctx.call(torch.bitwise_xor, ctx.method("to", x, torch.int64), -(2**63))
    return x


def _sym_compare(fn, a, b) -> Sym | None:
    """A comparison of sizes the analysis decides, as a static bool `Sym` (see sym_math)."""
    if not (isinstance(a, Sym) or isinstance(b, Sym)):
        return None
    sa, sb = sym_math.sym_operand(a), sym_math.sym_operand(b)
    if sa is None or sb is None:
        return None
    return sym_math.compare(fn, sa, sb)


@lowering("OnnxWhere")
def _where(ctx, mod, node, args):
    if all(isinstance(a, Const) for a in args):
        return Const(torch.where(*(a.value for a in args)))
    cond, a, b = args
    syms = [sym_math.condition(cond), sym_math.sym_operand(a), sym_math.sym_operand(b)]
    if all(s is not None for s in syms) and (isinstance(a, Sym) or isinstance(b, Sym)):
        picked = sym_math.where(*syms)
        if picked is not None:
            return picked
    out_shape = ctx.out_shape(cond, a, b)
    return ctx.call(
        torch.where,
        ctx.tensor(cond),
        ctx.operand(a, out_shape) if isinstance(b, fx.Node) else ctx.tensor(a),
        ctx.operand(b, out_shape) if isinstance(a, fx.Node) else ctx.tensor(b),
    )


@lowering("OnnxMinMax")
def _min_max(ctx, mod, node, args):
    # onnx2torch keeps the reduction it stacks the operands for: torch.amin for Min, amax for Max.
    if mod._operator in (torch.amin, torch.min, torch.minimum):
        fn = torch.minimum
    elif mod._operator in (torch.amax, torch.max, torch.maximum):
        fn = torch.maximum
    else:
        raise LoweringError(f"OnnxMinMax with an unknown operator {mod._operator!r}")
    if all(isinstance(a, Const) and not a.is_weight for a in args):  # known now, not learned
        return Const(functools.reduce(fn, [a.value for a in args]))
    syms = [sym_math.sym_operand(a) for a in args]
    if all(s is not None for s in syms) and any(isinstance(a, Sym) for a in args):
        picked = sym_math.min_max(ctx, fn is torch.maximum, syms)
        if picked is not None:
            return picked
    out = ctx.tensor(args[0])
    for other in args[1:]:
        out = ctx.call(fn, out, ctx.tensor(other))
    return out


@lowering("OnnxClip")
def _clip(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    low, high = mod.min_val, mod.max_val
    low = low.item() if isinstance(low, torch.Tensor) else low
    high = high.item() if isinstance(high, torch.Tensor) else high
    return ctx.call(torch.clamp, x, low, high)


@lowering("OnnxMod")
def _mod(ctx, mod, node, args):
    """ONNX Mod: fmod=1 is C fmod (sign of the dividend), fmod=0 the sign of the divisor."""
    a, b = args
    if isinstance(a, Sym) or isinstance(b, Sym):  # shape arithmetic stays on the sizes
        sa, sb = as_sym(a), as_sym(b)
        folded = sym_math.mod(ctx, sa, sb, bool(mod.fmod)) if sa and sb else None
        if folded is not None:
            return folded
    if isinstance(a, Const) and isinstance(b, Const) and not (a.is_weight or b.is_weight):
        return Const((torch.fmod if mod.fmod else torch.remainder)(a.value, b.value))
    fn = torch.fmod if mod.fmod else torch.remainder
    return ctx.call(fn, ctx.tensor(a), ctx.tensor(b))


@lowering("OnnxSum", "OnnxMean")
def _sum_mean(ctx, mod, node, args):
    """Variadic Sum/Mean with broadcasting: a left fold of additions."""
    tensors = [ctx.tensor(a) for a in args]
    total = functools.reduce(lambda a, b: ctx.call(operator.add, a, b), tensors)
    if type(mod).__name__ == "OnnxMean" and len(tensors) > 1:
        total = ctx.call(operator.truediv, total, len(tensors))
    return total
