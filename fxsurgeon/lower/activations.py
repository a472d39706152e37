"""Lowerings of the ONNX activation ops that onnx2torch writes as torch.nn modules.

Each is written with ONNX's semantics: Elu/Celu(alpha), Selu (onnx2torch refuses
non-default alpha/gamma; torch's constants are the same float32 values),
Softplus = log(1 + exp(x)) (torch's threshold 20 returns x where that is x in
float32), Softsign, Clip(0, 6) as ReLU6, HardSwish = x * relu6(x + 3) / 6, and
HardSigmoid = clamp(alpha * x + beta, 0, 1).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ..errors import LoweringError
from .table import lowering

_ACTIVATION_MODULES = {
    "ELU": lambda mod: (F.elu, (mod.alpha,) if mod.alpha != 1.0 else ()),
    "CELU": lambda mod: (F.celu, (mod.alpha,) if mod.alpha != 1.0 else ()),
    "SELU": lambda mod: (F.selu, ()),
    "Softplus": lambda mod: (F.softplus, ()),
    "Softsign": lambda mod: (F.softsign, ()),
    "ReLU6": lambda mod: (F.relu6, ()),
    "Hardswish": lambda mod: (F.hardswish, ()),
}


@lowering(*_ACTIVATION_MODULES)
def _activation_module(ctx, mod, node, args):
    name = type(mod).__name__
    if name == "Softplus" and (mod.beta != 1.0 or mod.threshold != 20.0):
        raise LoweringError(f"Softplus with beta {mod.beta}, threshold {mod.threshold}")
    fn, extra = _ACTIVATION_MODULES[name](mod)
    return ctx.call(fn, ctx.tensor(args[0]), *extra)


@lowering("OnnxHardSigmoid")
def _hard_sigmoid(ctx, mod, node, args):
    """ONNX HardSigmoid: clamp(alpha * x + beta, 0, 1); torch's hardsigmoid is alpha 1/6,
    beta 1/2 (Keras/ONNX default alpha is 0.2: that one stays an exact clamp)."""
    x = ctx.tensor(args[0])
    if abs(mod.alpha - 1 / 6) <= 1e-7 and mod.beta == 0.5:
        return ctx.call(F.hardsigmoid, x)
    scaled = ctx.call(operator.add, ctx.call(operator.mul, x, float(mod.alpha)), float(mod.beta))
    return ctx.call(torch.clamp, scaled, 0.0, 1.0)
