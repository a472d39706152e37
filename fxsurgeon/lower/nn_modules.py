"""Lowerings of the torch.nn activation modules onnx2torch emits, and of small
elementwise onnx2torch modules: each becomes its functional form.

onnx2torch writes ``Clip(0, 6)`` as ``nn.ReLU6``, ``Elu`` as ``nn.ELU``,
``Softplus`` as ``nn.Softplus``...; the module's hyperparameters go into the call.
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F

from .table import lowering


@lowering("ReLU6")
def _relu6(ctx, mod, node, args):
    return ctx.call(F.relu6, ctx.tensor(args[0]))


@lowering("ELU")
def _elu(ctx, mod, node, args):
    return ctx.call(F.elu, ctx.tensor(args[0]), mod.alpha)


@lowering("CELU")
def _celu(ctx, mod, node, args):
    return ctx.call(F.celu, ctx.tensor(args[0]), mod.alpha)


@lowering("SELU")
def _selu(ctx, mod, node, args):
    return ctx.call(F.selu, ctx.tensor(args[0]))


@lowering("Softplus")
def _softplus(ctx, mod, node, args):
    return ctx.call(F.softplus, ctx.tensor(args[0]), mod.beta, mod.threshold)


@lowering("Softsign")
def _softsign(ctx, mod, node, args):
    return ctx.call(F.softsign, ctx.tensor(args[0]))


@lowering("Hardswish")
def _hardswish(ctx, mod, node, args):
    return ctx.call(F.hardswish, ctx.tensor(args[0]))


@lowering("OnnxRound")
def _round(ctx, mod, node, args):
    # torch.round/floor/ceil round half to even, as ONNX Round does
    return ctx.call(mod.round_function, ctx.tensor(args[0]))


@lowering("OnnxIsNaN")
def _isnan(ctx, mod, node, args):
    return ctx.call(torch.isnan, ctx.tensor(args[0]))


@lowering("OnnxMod")
def _mod(ctx, mod, node, args):
    fn = torch.fmod if mod.fmod else torch.remainder
    return ctx.call(fn, ctx.tensor(args[0]), ctx.tensor(args[1]))


@lowering("OnnxSum", "OnnxMean")
def _sum_mean(ctx, mod, node, args):
    """Variadic Sum/Mean with broadcasting: a left fold of additions."""
    tensors = [ctx.tensor(a) for a in args]
    total = functools.reduce(lambda a, b: ctx.call(operator.add, a, b), tensors)
    if type(mod).__name__ == "OnnxMean" and len(tensors) > 1:
        total = ctx.call(operator.truediv, total, len(tensors))
    return total
