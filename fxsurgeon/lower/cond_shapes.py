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

Sizes on a size predicate that no outcome makes agree (Funnel's pooling: ``(L + 1) // 2``
where ``L > 2``, ``L`` where not; at ``L = 2`` they differ) cannot be a torch.cond's; the If
is then a Python branch on the predicate (control_flow.py, `size_branch`), and with
``piecewise`` each such size is the expression ``Piecewise((then, pred), (else, True))``,
the size the branch taken gives: the analysis after the If stays symbolic in both cases.

Branches that differ in dtype or rank are refused (no one fake value states them).
"""

from __future__ import annotations

from typing import Any

import sympy
import torch
from sympy.logic.boolalg import ITE
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


def cond_outputs(
    shapes, then_out: Any, else_out: Any, pred: fx.Node | None, piecewise: bool = False
) -> tuple:
    """The fake outputs of a torch.cond whose branches' outputs (`then_out`, `else_out`)
    differ in some size (see the module doc); `pred` is its size predicate (a node of a
    SymBool), None for a predicate on data. With `piecewise` (a `size_branch`, `pred` given),
    a size the outcomes do not make agree is the piecewise one. LoweringError where it
    cannot say."""
    pins = None
    expr = None
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
                if agreed is None and piecewise and isinstance(expr, sympy.Basic):
                    agreed = _piecewise(shapes.env, expr, x, y)
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


def _piecewise(env, claim, x, y) -> torch.SymInt:
    """The size `x` where `claim` holds, `y` where it does not, as one symbolic size."""
    then, other = sympy.sympify(_known(env, x)), sympy.sympify(_known(env, y))
    expr = sympy.Piecewise((then, _flat(claim)), (other, True))
    try:
        hint: int | None = int(env.size_hint(expr))
    except Exception:  # noqa: BLE001 - a size the data decides has no hint
        hint = None
    return env.create_symintnode(expr, hint=hint)


def _flat(claim):
    """`claim` with no Piecewise or ITE in it (sympy folds a Piecewise condition that holds
    one into an ITE, which torch's sympy interpreters do not read): a claim on a piecewise
    size is the claim on each piece under its condition."""
    folded = sympy.piecewise_fold(_no_ite(claim))
    if not isinstance(folded, sympy.Piecewise):
        return folded
    out, rest = sympy.false, sympy.true
    for value, cond in folded.args:
        out = sympy.Or(out, sympy.And(rest, cond, _flat(value)))
        rest = sympy.And(rest, sympy.Not(cond))
    return out


def _no_ite(claim):
    """`claim` with each ``ITE(c, a, b)`` (a SymBool's ``and``/``or``) spelt with And, Or and
    Not, which torch's sympy interpreters read."""
    if isinstance(claim, ITE):
        c, a, b = (_no_ite(arg) for arg in claim.args)
        return sympy.Or(sympy.And(c, a), sympy.And(sympy.Not(c), b))
    if isinstance(claim, sympy.logic.boolalg.BooleanFunction):
        return claim.func(*(_no_ite(arg) for arg in claim.args))
    return claim


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
