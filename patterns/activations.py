"""Activations written out op by op -> their torch functions.

    silu(x)        = x * sigmoid(x)                      F.silu(x)
    hardsigmoid(x) = relu6(x + 3) / 6                    F.hardsigmoid(x)
    hardswish(x)   = x * relu6(x + 3) / 6                F.hardswish(x)
    mish(x)        = x * tanh(softplus(x))               F.mish(x)
    relu6(x)       = clamp(x, 0, 6)                      F.relu6(x)

Forms (add and mul match in either operand order):

    silu         x * sigmoid(x)  |  x * sigmoid(1.0 * x)     Keras 3 swish keeps its beta = 1.0
    hardsigmoid  relu6(x + 3) * (1/6)  |  relu6(x + 3) / 6    Keras 3 (TF folds / 6 into * 0.16666667)
    hardswish    x * (relu6(x + 3) * (1/6))  |  x * relu6(x + 3) * (1/6)  |  x * (relu6(x + 3) / 6)
    mish         x * tanh(softplus(x))                       Keras 3 mish
    relu6        clamp(x, 0, 6)                              ONNX Clip with constant min/max inputs

Why exact: each rule absorbs only the formula's own ops and constants (1.0, 3,
6, 0.16666667 within 1e-6); 1.0 * x is x. Anything with another constant is
another function and stays: quick-GELU x * sigmoid(1.702 x) is kept as written
(never GELU, never SiLU); Keras/ONNX HardSigmoid with alpha 0.2 (clamp(0.2 x +
0.5, 0, 1)) is not torch's hardsigmoid and stays a clamp (see fxsurgeon/lower/activations.py).
ELU, SELU, Softplus, Softsign, LeakyReLU and ReLU6 arrive as ONNX ops and are
lowered straight to their F calls (fxsurgeon/lower/activations.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Rule

SIXTH = 1 / 6


def silu_replacement(x):
    return F.silu(x)


def silu_pattern(x):
    return x * torch.sigmoid(x)


def silu_beta_one_pattern(x):
    return x * torch.sigmoid(1.0 * x)


silu_1 = Rule("silu_1", silu_pattern, silu_replacement, note="x * sigmoid(x): tf.nn.silu")
silu_2 = Rule(
    "silu_2", silu_beta_one_pattern, silu_replacement, note="Keras 3 swish: x * sigmoid(1.0 * x)"
)


# -- hard sigmoid / hard swish -------------------------------------------------------------------


def hardsigmoid_replacement(x):
    return F.hardsigmoid(x)


def hardswish_replacement(x):
    return F.hardswish(x)


def hardsigmoid_mul_pattern(x):
    return F.relu6(x + 3.0) * SIXTH


def hardsigmoid_div_pattern(x):
    return F.relu6(x + 3.0) / 6.0


def hardswish_mul_pattern(x):
    return x * (F.relu6(x + 3.0) * SIXTH)


def hardswish_mul_outer_pattern(x):
    return x * F.relu6(x + 3.0) * SIXTH


def hardswish_div_pattern(x):
    return x * (F.relu6(x + 3.0) / 6.0)


def hardswish_div_outer_pattern(x):
    return x * F.relu6(x + 3.0) / 6.0


# hard swish first: its inner relu6(x + 3) * 1/6 is a hard sigmoid used by the outer mul.
hardswish_1 = Rule(
    "hardswish_1", hardswish_mul_pattern, hardswish_replacement, note="Keras 3 hard_swish"
)
hardswish_2 = Rule(
    "hardswish_2", hardswish_mul_outer_pattern, hardswish_replacement, note="(x * relu6) * 1/6"
)
hardswish_3 = Rule(
    "hardswish_3", hardswish_div_pattern, hardswish_replacement, note="x * (relu6 / 6)"
)
hardswish_4 = Rule(
    "hardswish_4", hardswish_div_outer_pattern, hardswish_replacement, note="x * relu6 / 6"
)
hardsigmoid_1 = Rule(
    "hardsigmoid_1", hardsigmoid_mul_pattern, hardsigmoid_replacement, note="Keras 3 hard_sigmoid"
)
hardsigmoid_2 = Rule(
    "hardsigmoid_2", hardsigmoid_div_pattern, hardsigmoid_replacement, note="relu6(x + 3) / 6"
)


# -- mish, relu6 ---------------------------------------------------------------------------------


def mish_pattern(x):
    return x * torch.tanh(F.softplus(x))


def mish_replacement(x):
    return F.mish(x)


mish_1 = Rule("mish_1", mish_pattern, mish_replacement, note="Keras 3 mish: x * tanh(softplus(x))")


def relu6_pattern(x):
    return torch.clamp(x, 0.0, 6.0)


def relu6_replacement(x):
    return F.relu6(x)


relu6_1 = Rule("relu6_1", relu6_pattern, relu6_replacement, note="ONNX Clip(x, 0, 6)")
