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

Names: ``gelu_tanh_1`` and ``gelu_erf_1``/``_2``/``_3`` are the (0.5 * x) * p forms
(Pow; x * 0.7071; x / sqrt2; erfc); the rest are numbered on, each note naming its form.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Rule

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
