"""GELU -> F.gelu.

    GELU(x)      = 0.5 x (1 + erf(x / sqrt(2)))                               F.gelu(x)
                 = 0.5 x erfc(-x / sqrt(2))
    GELU_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))            F.gelu(x, approximate="tanh")

Constants match within 1e-6 (relative): TF bakes float32 approximations
(0.044714998, 0.7978846, 0.70710677). A chain with other constants is not GELU
and is left alone, even one off by 1e-4 (the rewrite would change its numbers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Rule

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)  # 0.7978845608
SQRT_HALF = math.sqrt(0.5)  # 0.7071067812
SQRT_2 = math.sqrt(2)


def gelu_tanh_replacement(x):
    return F.gelu(x, approximate="tanh")


def gelu_replacement(x):
    return F.gelu(x)


# -- tanh approximation -------------------------------------------------------------------------------


def gelu_tanh_pattern(x):
    return 0.5 * x * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


gelu_tanh_1 = Rule(
    "gelu_tanh_1",
    gelu_tanh_pattern,
    gelu_tanh_replacement,
    note="tf2onnx, HF gelu_new (TFViT/TFGPT2) and tf.nn.gelu(approximate=True)",
)


# -- erf ----------------------------------------------------------------------------------------------


def gelu_erf_pattern(x):
    return 0.5 * x * (1.0 + torch.erf(x * SQRT_HALF))


def gelu_erf_div_pattern(x):
    return 0.5 * x * (1.0 + torch.erf(x / SQRT_2))


def gelu_erfc_pattern(x):
    return 0.5 * x * (1.0 - torch.erf(-x * SQRT_HALF))


gelu_erf_1 = Rule(
    "gelu_erf_1",
    gelu_erf_pattern,
    gelu_replacement,
    note="tf2onnx, 0.5*x*(1+erf(x*0.7071)) written by hand (tf.math.erf)",
)

gelu_erf_2 = Rule(
    "gelu_erf_2",
    gelu_erf_div_pattern,
    gelu_replacement,
    note="tf2onnx, 0.5*x*(1+erf(x/sqrt(2))) with the division kept (Div)",
)

gelu_erf_3 = Rule(
    "gelu_erf_3",
    gelu_erfc_pattern,
    gelu_replacement,
    note="tf2onnx, Keras/TF gelu(approximate=False) = 0.5*x*erfc(-x/sqrt2), Erfc as 1 - Erf "
    "(fxsurgeon front door): HF TFBert, TFViT hidden_act='gelu'",
)
