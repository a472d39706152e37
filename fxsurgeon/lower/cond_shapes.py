"""The shapes a torch.cond gives (an ONNX If on a run-time predicate), for the analysis.

torch.cond runs one branch; under torch.compile the dims in which its branches' outputs
differ are unbacked sizes. The analysis states the same:

* outputs of the same shapes (as expressions of the symbolic sizes): those shapes;
* a predicate on tensor data (Longformer's "is any token global?", whose branch puts the
  global keys' columns before the band's scores): each dim in which the branches differ
  is a new unbacked size (`SymbolicShapes.data_size`), the dims they agree on stay;
* a predicate on sizes (Longformer's ``if padding_len > 0: out[:, :-padding_len]``, the
  other branch ``out``; LED's pad, the other way round): the branches agree where one
  branch's size expression also gives the other's where the other runs. An outcome pins
  a size expression when its comparison with a constant leaves a single value in that
  expression's range (``Mod(4 - Mod(L, 4), 4) > 0`` false: the Mod, in [0, 3], is 0,
  so the padded ``L + Mod(...)`` is ``L``, as the sliced branch gives). Sizes that do not
  agree so are refused: a later pass may still tie the input dims that make them equal
  (fxsurgeon/lower/graph.py, `_lower_tied`).

Branches that differ in dtype or rank are refused (torch.cond cannot express them).
"""

from __future__ import annotations

from typing import Any

import sympy
import torch
from torch import fx
from torch.utils._sympy.functions import ToFloat

from ..errors import LoweringError


def outputs_of(out: Any) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def same_outputs(then_out: Any, else_out: Any) -> None:
    """Both branches give outputs of the same dtypes and the same shapes, as
    expressions of the symbolic sizes (torch.cond's rule), else LoweringError."""

    def described(out):
        return [(tuple(_expr(d) for d in o.shape), o.dtype) for o in outputs_of(out)]

    a, b = described(then_out), described(else_out)
    if a != b:
        raise LoweringError(
            f"the branches give outputs of different shapes/dtypes ({a} vs {b}): "
            "torch.cond cannot express it"
        )


def cond_outputs(shapes, then_out: Any, else_out: Any, pred: fx.Node | None) -> tuple:
    """The fake outputs of a torch.cond whose branches' outputs (`then_out`, `else_out`)
    differ in some size (see the module doc); `pred` is its size predicate (a node of a
    SymBool), None for a predicate on data. LoweringError where it cannot say."""
    pins = None
    if pred is not None:
        claim = pred.meta.get("val")
        expr = shapes.env.replace(claim.node.expr) if isinstance(claim, torch.SymBool) else None
        pins = (_pins(shapes.env, expr, True), _pins(shapes.env, expr, False))
    outputs = []
    for a, b in zip(outputs_of(then_out), outputs_of(else_out), strict=True):
        if a.dtype != b.dtype or a.dim() != b.dim():
            raise LoweringError(
                f"the branches give outputs of different dtypes or ranks ({a.dtype} "
                f"{tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}): torch.cond cannot express it"
            )
        sizes = []
        for x, y in zip(a.shape, b.shape, strict=True):
            if _expr(x) == _expr(y):
                sizes.append(x)
            elif pins is None:
                sizes.append(shapes.data_size())
            else:
                agreed = _agreed(shapes.env, x, y, *pins)
                if agreed is None:
                    same_outputs(then_out, else_out)  # raises, naming both shapes
                sizes.append(agreed)
        outputs.append(shapes.run(torch.empty, (sizes,), {"dtype": a.dtype}, "If", "If"))
    return tuple(outputs)


def _agreed(env, x, y, when_true: dict | None, when_false: dict | None):
    """One size for both branches, `x` (then) and `y` (else): an expression that is `x`
    where the predicate holds and `y` where it does not, with the values each outcome pins
    (`x` itself when `y` is what `x` becomes where the predicate fails, or the other way
    round); None when neither is. Sizes are compared as the analysis knows them now (its
    replacements: input dims found equal)."""
    if when_true is None or when_false is None:
        return None
    x_expr, y_expr = _known(env, x), _known(env, y)
    if _under(x_expr, when_false) == _under(y_expr, when_false):
        return x
    if _under(y_expr, when_true) == _under(x_expr, when_true):
        return y
    return None


def _known(env, size):
    expr = _expr(size)
    return env.replace(expr) if isinstance(expr, sympy.Expr) else expr


def _under(expr, pins: dict):
    return expr.xreplace(pins) if isinstance(expr, sympy.Expr) else expr


_FLIP = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def _pins(env, claim, holds: bool) -> dict | None:
    """{expression: value} that `claim` (a comparison of a size expression with an
    integer constant; a size cast to float is compared as the integer it holds, exactly:
    the cast is ToFloat, sympy's float64) being `holds` leaves to one value in the
    expression's range; {} when it pins nothing, None for a claim of another form."""
    if not isinstance(claim, sympy.core.relational.Relational):
        return None
    lhs, rhs, op = claim.lhs, claim.rhs, claim.rel_op
    if lhs.is_number and not rhs.is_number:
        lhs, rhs, op = rhs, lhs, {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    if isinstance(lhs, ToFloat):  # a size cast to float, compared with a float (TF's Greater)
        lhs = lhs.args[0]
    if not rhs.is_number or lhs.is_number or float(rhs) != int(rhs):
        return None
    rhs = sympy.Integer(int(rhs))
    op = op if holds else _FLIP[op]
    bound = env.bound_sympy(lhs)
    low, high, c = sympy.sympify(bound.lower), sympy.sympify(bound.upper), sympy.Integer(rhs)
    if op == "==":
        low, high = max(low, c), min(high, c)
    elif op in (">", ">="):
        low = max(low, c + 1 if op == ">" else c)
    elif op in ("<", "<="):
        high = min(high, c - 1 if op == "<" else c)
    if low == high and low.is_Integer:
        return {lhs: low}
    return {}


def _expr(size):
    return size.node.expr if isinstance(size, torch.SymInt) else size
