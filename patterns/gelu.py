"""GELU -> F.gelu.

    GELU(x)      = 0.5 x (1 + erf(x / sqrt(2)))                               F.gelu(x)
                 = 0.5 x erfc(-x / sqrt(2))
    GELU_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))            F.gelu(x, approximate="tanh")

The rules are generated from the parts, each written every way exporters write
it (add and mul match in either operand order):

    0.5 x p     (0.5 * x) * p  |  x * (0.5 * p)  |  (x * p) * 0.5
    x^3         x ** 3  |  x * x * x  (either grouping)
    erf arg     x * 0.70710678  |  x / 1.41421356
    1 + erf     1 + erf(arg)  |  1 - erf(-x * 0.70710678)  (Keras/TF exact GELU: erfc, Erfc as
                1 - Erf by the fxsurgeon front door)  |  1 - erf(-(x * 0.70710678))

Constants match within 1e-6 (relative): TF bakes float32 approximations
(0.044714998, 0.7978846, 0.70710677). A chain with other constants is not GELU
and is left alone, even one off by 1e-4 (the rewrite would change its numbers):
quick-GELU x * sigmoid(1.702 x) is its own function and no rule here takes it.
The two GELUs stay distinct: a tanh chain only ever becomes approximate="tanh".

The tanh argument is also recognised by analysis (``gelu_tanh_poly_<n>``, one rule per
0.5 x grouping): any chain of +, -, *, / by a number, negation and integer powers over x
and numbers is read as a polynomial in x, and it is GELU's when that polynomial is
sqrt(2/pi) x + sqrt(2/pi) 0.044715 x^3 (no other term, coefficients within 1e-6), however
it is grouped: HF ``gelu_fast`` writes x * 0.7978845608 * (1 + 0.044715 x x). Its nodes
must have no user outside the chain, as a pattern's (the rewrite would not remove them).

Names: ``gelu_tanh_1`` and ``gelu_erf_1``/``_2``/``_3`` are the (0.5 * x) * p forms
(Pow; x * 0.7071; x / sqrt2; erfc); the rest are numbered on, each note naming its form.
"""

from __future__ import annotations

import itertools
import math
import operator

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule
from fxsurgeon.patterns._attention_graph import constant, scalar
from torch import fx

from fxsurgeon.fuse import REL_TOL

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)  # 0.7978845608
SQRT_HALF = math.sqrt(0.5)  # 0.7071067812
SQRT_2 = math.sqrt(2)

HALF_X = {
    "half_x": lambda x, p: 0.5 * x * p,
    "half_p": lambda x, p: x * (0.5 * p),
    "x_p": lambda x, p: x * p * 0.5,
}

CUBES = {
    "pow": lambda x: x**3,
    "mul": lambda x: x * x * x,  # x * (x * x) too: the outer mul matches either order
}

ERF_TERMS = {
    "mul": lambda x: 1.0 + torch.erf(x * SQRT_HALF),
    "div": lambda x: 1.0 + torch.erf(x / SQRT_2),
    "erfc": lambda x: 1.0 - torch.erf(-x * SQRT_HALF),
    "erfc_neg": lambda x: 1.0 - torch.erf(-(x * SQRT_HALF)),
}


def gelu_tanh_replacement(x):
    return F.gelu(x, approximate="tanh")


def gelu_replacement(x):
    return F.gelu(x)


def _tanh_rule(name: str, outer: str, cube: str) -> Rule:
    half, cubed = HALF_X[outer], CUBES[cube]

    def pattern(x):
        return half(x, 1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * cubed(x))))

    return Rule(
        name,
        pattern,
        gelu_tanh_replacement,
        note=f"GELU tanh (HF gelu_new, tf.nn.gelu(approximate=True)): 0.5x as {outer}, "
        f"x^3 as {cube}",
    )


def _erf_rule(name: str, outer: str, term: str) -> Rule:
    half, inner = HALF_X[outer], ERF_TERMS[term]

    def pattern(x):
        return half(x, inner(x))

    return Rule(
        name,
        pattern,
        gelu_replacement,
        note=f"GELU erf (tf.nn.gelu, Keras gelu, HF TFBert): 0.5x as {outer}, erf term as {term}",
    )


def _numbered(first: list, combos, prefix: str, make) -> dict[str, Rule]:
    rest = [c for c in combos if c not in first]
    return {
        f"{prefix}_{i}": make(f"{prefix}_{i}", *combo)
        for i, combo in enumerate(first + rest, start=1)
    }


globals().update(
    _numbered([("half_x", "pow")], itertools.product(HALF_X, CUBES), "gelu_tanh", _tanh_rule)
)
globals().update(
    _numbered(
        [("half_x", "mul"), ("half_x", "div"), ("half_x", "erfc")],
        itertools.product(HALF_X, ERF_TERMS),
        "gelu_erf",
        _erf_rule,
    )
)


# --------------------------------------------------------------------------- by analysis

#: The polynomial of GELU's tanh argument: power -> coefficient.
TANH_ARG = {1: SQRT_2_OVER_PI, 3: SQRT_2_OVER_PI * 0.044715}
_MAX_DEGREE = 6
_MAX_NODES = 32


def _number(value, module, x: fx.Node) -> float | None:
    """A Python number, or a one-element constant of x's dtype and no higher rank (no
    broadcast, no promotion)."""
    if isinstance(value, fx.Node) and value.op == "get_attr":
        tensor, shape = constant(value, module), x.meta.get("fxs_shape")
        if not isinstance(tensor, torch.Tensor) or shape is None or tensor.dim() > len(shape):
            return None
        if tensor.dtype != x.meta.get("fxs_dtype"):
            return None
    return scalar(value, module)


def _times(p: dict, q: dict) -> dict | None:
    out: dict = {}
    for i, a in p.items():
        for j, b in q.items():
            if i + j > _MAX_DEGREE:
                return None
            out[i + j] = out.get(i + j, 0.0) + a * b
    return out


def polynomial(value, x: fx.Node, module, seen: list) -> dict | None:
    """`value` as a polynomial in `x` (power -> coefficient), else None; `seen` collects
    the computed nodes read."""
    if value is x:
        return {1: 1.0}
    number = _number(value, module, x)
    if number is not None:
        return {0: number}
    if not isinstance(value, fx.Node) or value.op != "call_function" or value.kwargs:
        return None
    if len(seen) >= _MAX_NODES:
        return None
    seen.append(value)
    target, args = value.target, value.args
    if target is operator.neg and len(args) == 1:
        p = polynomial(args[0], x, module, seen)
        return None if p is None else {k: -c for k, c in p.items()}
    if len(args) != 2:
        return None
    if target is operator.pow:
        n = _number(args[1], module, x)
        p = polynomial(args[0], x, module, seen)
        if p is None or n is None or n != int(n) or not 0 <= n <= _MAX_DEGREE:
            return None
        out: dict | None = {0: 1.0}
        for _ in range(int(n)):
            out = _times(out, p) if out is not None else None
        return out
    if target is operator.truediv:
        d = _number(args[1], module, x)
        p = polynomial(args[0], x, module, seen)
        return None if p is None or not d else {k: c / d for k, c in p.items()}
    if target not in (operator.add, operator.sub, operator.mul):
        return None
    p, q = (polynomial(a, x, module, seen) for a in args)
    if p is None or q is None:
        return None
    if target is operator.mul:
        return _times(p, q)
    sign = 1.0 if target is operator.add else -1.0
    out = dict(p)
    for k, c in q.items():
        out[k] = out.get(k, 0.0) + sign * c
    return out


def gelu_tanh_argument(match: Match) -> str | None:
    """Accept when ``arg`` is GELU's tanh argument in x (module docstring)."""
    x, arg = match.node("x"), match.node("arg")
    if x is None or arg is None:
        return "x or the tanh argument is no tensor"
    seen: list = []
    poly = polynomial(arg, x, match.module, seen)
    if poly is None:
        return "the tanh argument is no polynomial in x"
    terms = {k: c for k, c in poly.items() if c != 0.0}
    if set(terms) != set(TANH_ARG):
        return f"the tanh argument has the powers {sorted(terms)} of x, not 1 and 3"
    for k, want in TANH_ARG.items():
        if abs(terms[k] - want) > REL_TOL * abs(want):
            return f"coefficient {terms[k]:.9g} of x^{k}, GELU's is {want:.9g}"
    inside = set(seen) | set(match.nodes)
    for n in seen:
        if any(user not in inside for user in n.users):
            return f"%{n.name} of the tanh argument is used outside it"
    if match.shape(arg) is not None and match.shape(arg) != match.shape(x):
        return "the tanh argument broadcasts x"
    return None


def _tanh_poly_rule(name: str, outer: str) -> Rule:
    half = HALF_X[outer]

    def pattern(x: torch.Tensor, arg: torch.Tensor):
        return half(x, 1.0 + torch.tanh(arg))

    def replacement(x):
        return F.gelu(x, approximate="tanh")

    return Rule(
        name,
        pattern,
        replacement,
        check=gelu_tanh_argument,
        note=f"GELU tanh, its argument read as a polynomial in x (HF gelu_fast): 0.5x as {outer}",
    )


globals().update(
    {
        f"gelu_tanh_poly_{i}": _tanh_poly_rule(f"gelu_tanh_poly_{i}", o)
        for i, o in enumerate(HALF_X, 1)
    }
)
