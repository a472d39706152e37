"""Inference batch normalization written out as arithmetic -> F.batch_norm.

    BN(x) = (x - mean) / sqrt(var + eps) * gamma + beta      per channel c, stored statistics

Keras 3 (TF backend) computes inference BatchNormalization with
``tf.nn.batch_normalization``, which tf2onnx exports as plain arithmetic
(no BatchNormalization node; tf-keras' FusedBatchNormV3 becomes one):

    s = rsqrt(var + eps) * gamma           (scale=False: s = rsqrt(var + eps))
    y = x * s + (beta - mean * s)          (center=False: y = x * s + -mean * s)

The rules are generated from the parts of that math, each written every way an
exporter writes it (add and mul match in either operand order):

    1/std    reciprocal(sqrt(v + eps))  |  rsqrt(v + eps)  |  1 / sqrt(v + eps)  |  (v + eps) ** -0.5
             (tf2onnx writes Rsqrt as Sqrt + Reciprocal; ONNX has no Rsqrt)
    s        1/std * gamma  |  gamma / sqrt(v + eps)  |  1/std alone (no gamma)

put together in these ways:

    tf       x * s + (beta - mean * s)     tf.nn.batch_normalization
    tf0      x * s + -mean * s             the same without beta (Keras center=False)
    neg0     x * s + -(mean * s)           the negation after the product
    k3       x * s + (-mean * s + beta)    the shift summed the other way round
    centred  (x - mean) * s + beta         the textbook order
    centred0 (x - mean) * s

Each is exactly F.batch_norm(x, mean, var, gamma, beta, training=False, eps)
taken over the channel axis: gamma, beta, mean and var must be constants
(``get_attr``) of one floating shape that, aligned to x's trailing dims,
broadcasts onto exactly one axis ``a`` of x (one dim equal to x.shape[a], every
other dim 1): ``[C]`` on a channels-last x, ``[1, C, 1, 1]`` / ``[C, 1, 1]`` on
NCHW. eps is a number. Anything else (a computed scale, statistics broadcast
over two axes, one channel, an unknown channel dim) is declined.

F.batch_norm wants the channels at dim 1 and the statistics as ``[C]``: a
constant of another shape is reshaped to ``[C]`` (the same elements), and x on
any other axis is permuted so that ``a`` comes to dim 1 and permuted back after
(``permute(x, (0, 3, 1, 2))`` for NHWC, whose mirror the tidy phase cancels
against the transposes tf2onnx leaves around a Conv). F.batch_norm rounds
differently from the graph's x * s + shift (one rounding of (x - mean) * invstd
against two), a difference of a few float32 ulps of the output.

The parameters pass reads F.batch_norm's arguments by role: gamma and beta
become trainable parameters, mean and var buffers (running statistics), and a
call whose tensors sit in one scope becomes a ``KerasBatchNorm`` module (without
beta: ``bias=False``; without both: ``affine=False``; a beta without gamma has
no torch module form and stays F.batch_norm). Without the TF model the module's
momentum is the call's 0.0 (nothing tells Keras' momentum); with it, Keras'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule

INV_STD = {
    "recip": lambda v, eps: torch.reciprocal(torch.sqrt(v + eps)),
    "rsqrt": lambda v, eps: torch.rsqrt(v + eps),
    "div": lambda v, eps: 1.0 / torch.sqrt(v + eps),
    "pow": lambda v, eps: (v + eps) ** -0.5,
}

#: gamma absent: the scale is 1/std; present: 1/std * gamma, or gamma / sqrt(v + eps).
SCALES = {
    **{f"{inv}": (False, body) for inv, body in INV_STD.items()},
    **{f"{inv}_gamma": (True, body) for inv, body in INV_STD.items()},
    "gamma_div": (True, None),
}

FORMS = {
    # name: (uses beta, body(x, s, mean, beta))
    "tf": (True, lambda x, s, m, b: x * s + (b - m * s)),
    "tf0": (False, lambda x, s, m, b: x * s + -m * s),
    "neg0": (False, lambda x, s, m, b: x * s + -(m * s)),
    "k3": (True, lambda x, s, m, b: x * s + (-m * s + b)),
    "centred": (True, lambda x, s, m, b: (x - m) * s + b),
    "centred0": (False, lambda x, s, m, b: (x - m) * s),
}


def _scale(kind: str, var, eps, gamma):
    with_gamma, inv = SCALES[kind]
    if inv is None:
        return gamma / torch.sqrt(var + eps)
    if with_gamma:
        return inv(var, eps) * gamma
    return inv(var, eps)


# -- checks and replacement --------------------------------------------------------------------


def _channel_axis(shape: tuple, x_shape: tuple) -> int | str:
    """The one axis of x that a constant of `shape` varies along, or why there is none."""
    rank = len(x_shape)
    if len(shape) > rank:
        return f"the statistics {shape} have more dims than x {x_shape}"
    offset = rank - len(shape)
    axes = [offset + i for i, d in enumerate(shape) if d != 1]
    if len(axes) != 1:
        return (
            f"the statistics {shape} broadcast onto {len(axes)} axes of x {x_shape}, not one "
            "channel axis"
        )
    axis = axes[0]
    if x_shape[axis] != shape[axis - offset]:
        return (
            f"the statistics {shape} hold {shape[axis - offset]} channels, x {x_shape} has "
            f"{x_shape[axis]} on axis {axis}"
        )
    return axis


def _constant_shape(match: Match, names: tuple[str, ...], x_dtype) -> tuple | str:
    """The one shape of the constants `names`, or why they are not such constants."""
    shapes = {}
    for name in names:
        if not match.is_constant(name):
            value = match[name]
            what = f"%{value.name}" if hasattr(value, "name") else repr(value)
            return f"{name} is not a stored constant ({what})"
        tensor = match.tensor(name)
        if not tensor.is_floating_point():
            return f"{name} is {tensor.dtype}, not floating point"
        if x_dtype is not None and tensor.dtype != x_dtype:
            return f"{name} is {tensor.dtype}, x is {x_dtype}"
        shapes[name] = tuple(tensor.shape)
    if len(set(shapes.values())) != 1:
        return "the statistics differ in shape: " + ", ".join(f"{n} {s}" for n, s in shapes.items())
    return next(iter(shapes.values()))


def _batch_norm_check(match: Match, affine: tuple[str, ...]) -> str | None:
    x_shape = match.shape("x")
    if x_shape is None:
        return "the shape of x is not known"
    if len(x_shape) < 2:
        return f"x {x_shape} has no batch and channel axes"
    x_dtype = match.dtype("x")
    if x_dtype is not None and not x_dtype.is_floating_point:
        return f"x is {x_dtype}, not floating point"
    shape = _constant_shape(match, ("mean", "var", *affine), x_dtype)
    if isinstance(shape, str):
        return shape
    axis = _channel_axis(shape, x_shape)
    if isinstance(axis, str):
        return axis
    eps = match["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        return f"epsilon {eps!r} is not a non-negative number"
    order = [d for d in range(len(x_shape)) if d != axis]
    order.insert(1, axis)
    match["order"] = tuple(order) if axis != 1 else None
    match["channels"] = x_shape[axis]
    return None


def _as_channels(value, channels: int):
    if value is None or tuple(value.shape) == (channels,):
        return value
    return torch.reshape(value, (channels,))


def _batch_norm(x, mean, var, gamma, beta, eps, order, channels):
    stats = [_as_channels(v, channels) for v in (mean, var, gamma, beta)]
    if order is None:
        return F.batch_norm(x, *stats, False, 0.0, float(eps))
    back = tuple(order.index(d) for d in range(len(order)))
    y = F.batch_norm(torch.permute(x, order), *stats, False, 0.0, float(eps))
    return torch.permute(y, back)


# -- the rule set ------------------------------------------------------------------------------


def _batch_norm_rule(name: str, form: str, scale: str) -> Rule:
    with_beta, body = FORMS[form]
    with_gamma = SCALES[scale][0]
    affine = ("gamma",) * with_gamma + ("beta",) * with_beta

    def check(match: Match) -> str | None:
        return _batch_norm_check(match, affine)

    if with_gamma and with_beta:

        def pattern(x, mean, var, gamma, beta, eps: float):
            return body(x, _scale(scale, var, eps, gamma), mean, beta)

        def replacement(x, mean, var, gamma, beta, eps, order, channels):
            return _batch_norm(x, mean, var, gamma, beta, eps, order, channels)

    elif with_gamma:

        def pattern(x, mean, var, gamma, eps: float):
            return body(x, _scale(scale, var, eps, gamma), mean, None)

        def replacement(x, mean, var, gamma, eps, order, channels):
            return _batch_norm(x, mean, var, gamma, None, eps, order, channels)

    elif with_beta:

        def pattern(x, mean, var, beta, eps: float):
            return body(x, _scale(scale, var, eps, None), mean, beta)

        def replacement(x, mean, var, beta, eps, order, channels):
            return _batch_norm(x, mean, var, None, beta, eps, order, channels)

    else:

        def pattern(x, mean, var, eps: float):
            return body(x, _scale(scale, var, eps, None), mean, None)

        def replacement(x, mean, var, eps, order, channels):
            return _batch_norm(x, mean, var, None, None, eps, order, channels)

    return Rule(
        name,
        pattern,
        replacement,
        check=check,
        note=f"inference BatchNorm, {form} form, scale as {scale}",
    )


def _batch_norm_rules() -> dict[str, Rule]:
    """``batch_norm_1``.. ``_4`` are what tf2onnx writes for Keras 3 (Sqrt + Reciprocal,
    gamma / beta present or not); the rest are numbered on from there."""
    first = [("tf", "recip_gamma"), ("tf0", "recip_gamma"), ("tf", "recip"), ("tf0", "recip")]
    rest = [(form, scale) for form in FORMS for scale in SCALES if (form, scale) not in first]
    return {
        f"batch_norm_{i}": _batch_norm_rule(f"batch_norm_{i}", *combo)
        for i, combo in enumerate(first + rest, start=1)
    }


globals().update(_batch_norm_rules())
