"""Normalization over trailing dims -> F.layer_norm / F.rms_norm.

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta,  var(x) = mean((x - mean(x))^2)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * gamma

mean and var are taken over the trailing dims D (one dim for a plain LayerNorm,
several for Keras ``LayerNormalization(axis=[-2, -1])``); the fused call gets
``normalized_shape = x.shape[D]``, and gamma / beta only where their shape,
less leading 1s, is exactly that (they then broadcast as F.layer_norm applies
them; anything else is declined).

The rules are generated from the parts of the math, each written every way an
exporter writes it (add and mul match in either operand order):

    square     d * d  |  d ** 2              (ONNX Mul(d, d) / Pow(d, 2))
    1/std      a * reciprocal(sqrt(v + eps))  |  a * rsqrt(v + eps)  |  a / sqrt(v + eps)
               (tf2onnx writes Rsqrt as Sqrt + Reciprocal; TF's grappler turns
               x * rsqrt(v) into x / sqrt(v))

and these ways of putting LayerNorm together (s = gamma / std, n = (x - mean) / std):

    tf      x * s + (beta - mean * s)        TF batch_normalization after tf.nn.moments (tf_keras)
    tf0     x * s + -(mean * s)              the same, beta all zero (TF drops the Add)
    k3      x * s + (-mean * s + beta)       Keras 3 LayerNormalization
    k30     x * s + -mean * s                Keras 3, center=False
    direct  n * gamma + beta                 written out by hand (HF-style)
    direct0 n * gamma

RMSNorm (HF TFT5LayerNorm, TFMistralRMSNorm, TFLlamaRMSNorm):

    (x / std) * gamma   |  x * (gamma / std)        std = sqrt(mean(x^2) + eps)

A cast between the normalisation and gamma (HF casts back to the input
dtype) is a no-op in fp32 and goes in the prepare phase (cleanup.cast_noop),
so gamma applied before or after it is the same graph here; a real cast
(fp16) is left alone.

Every rule is exact: what it absorbs is the formula itself, each op once.
Keras 3 ``LayerNormalization(rms_scaling=True)`` computes x / sqrt(var(x) + eps)
* gamma with the *centred* variance and an uncentred x: that is neither
LayerNorm nor RMSNorm and no rule takes it (the variance's mean has a user
outside any match).

Names: ``layer_norm_1`` (tf) / ``layer_norm_2`` (tf0) / ``rms_norm_1`` (x * x)
/ ``rms_norm_2`` (x ** 2) are the tf2onnx forms with Sqrt + Reciprocal; the
rest are numbered on from there, each rule's note naming its form.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule

SQUARES = {
    "mul": lambda d: d * d,
    "pow": lambda d: d**2,
}

INV_STD = {
    "recip": lambda a, v, eps: a * torch.reciprocal(torch.sqrt(v + eps)),
    "rsqrt": lambda a, v, eps: a * torch.rsqrt(v + eps),
    "div": lambda a, v, eps: a / torch.sqrt(v + eps),
}


def _moments(x, dims, square):
    mean = torch.mean(x, dims, keepdim=True)
    var = torch.mean(square(x - mean), dims, keepdim=True)
    return mean, var


LAYER_NORM_FORMS = {
    # name: (uses beta, pattern body (x, gamma, beta, eps, dims, square, inv))
    "tf": (True, lambda x, g, b, eps, dims, sq, inv: _tf(x, g, eps, dims, sq, inv, b)),
    "tf0": (False, lambda x, g, b, eps, dims, sq, inv: _tf(x, g, eps, dims, sq, inv, None)),
    "k3": (True, lambda x, g, b, eps, dims, sq, inv: _k3(x, g, eps, dims, sq, inv, b)),
    "k30": (False, lambda x, g, b, eps, dims, sq, inv: _k3(x, g, eps, dims, sq, inv, None)),
    "direct": (True, lambda x, g, b, eps, dims, sq, inv: _direct(x, g, eps, dims, sq, inv) + b),
    "direct0": (False, lambda x, g, b, eps, dims, sq, inv: _direct(x, g, eps, dims, sq, inv)),
}


def _tf(x, gamma, eps, dims, square, inv, beta):
    mean, var = _moments(x, dims, square)
    s = inv(gamma, var, eps)
    if beta is None:
        return x * s + -(mean * s)
    return x * s + (beta - mean * s)


def _k3(x, gamma, eps, dims, square, inv, beta):
    mean, var = _moments(x, dims, square)
    s = inv(gamma, var, eps)
    if beta is None:
        return x * s + -mean * s
    return x * s + (-mean * s + beta)


def _direct(x, gamma, eps, dims, square, inv):
    mean, var = _moments(x, dims, square)
    return inv(x - mean, var, eps) * gamma


# -- checks and replacements ----------------------------------------------------------------


def _normalized_shape(match: Match) -> tuple | str:
    """x.shape over the reduced dims, if those are the trailing dims and static."""
    shape, dims = match.shape("x"), match["dims"]
    if shape is None:
        return "the shape of x is not known"
    rank = len(shape)
    if not isinstance(dims, tuple) or not dims or not all(isinstance(d, int) for d in dims):
        return f"reduction dims {dims!r} are not constant"
    dims = tuple(sorted(d % rank for d in dims))
    if dims != tuple(range(rank - len(dims), rank)):
        return f"reduces dims {dims} of a {rank}-D input, not the trailing dims"
    normalized = shape[rank - len(dims) :]
    if any(d is None for d in normalized):
        return f"the normalized dims {normalized} are not static"
    return tuple(normalized)


def _affine_check(match: Match, normalized: tuple, name: str) -> str | None:
    shape = match.shape(name)
    if shape is None:
        return f"{name} is not a tensor of known shape"
    trimmed = tuple(shape)
    while len(trimmed) > len(normalized) and trimmed[0] == 1:
        trimmed = trimmed[1:]
    if trimmed != normalized:
        return f"{name} has shape {shape}, which does not broadcast as {normalized}"
    if len(shape) > match.rank("x"):
        return f"{name} {shape} would add dims to the output"
    if not (match.dtype(name) or torch.int64).is_floating_point:
        return f"{name} is not floating point"
    return None


def _norm_check(match: Match, affine: tuple[str, ...]) -> str | None:
    normalized = _normalized_shape(match)
    if isinstance(normalized, str):
        return normalized
    for name in affine:
        reason = _affine_check(match, normalized, name)
        if reason is not None:
            return reason
    eps = match["eps"]
    if not isinstance(eps, float) or eps < 0:
        return f"epsilon {eps!r} is not a non-negative number"
    match["normalized_shape"] = normalized
    return None


def _as_shape(value, normalized: tuple):
    if value is None or tuple(value.shape) == normalized:
        return value
    return torch.reshape(value, normalized)


def _layer_norm_replacement(x, gamma, beta, eps, normalized_shape):
    return F.layer_norm(
        x,
        normalized_shape,
        _as_shape(gamma, normalized_shape),
        _as_shape(beta, normalized_shape),
        eps,
    )


def _layer_norm_rule(name: str, form: str, square: str, inv: str) -> Rule:
    with_beta, body = LAYER_NORM_FORMS[form]
    sq, iv = SQUARES[square], INV_STD[inv]
    if with_beta:

        def pattern(x, gamma, beta, eps: float, dims: tuple):
            return body(x, gamma, beta, eps, dims, sq, iv)

        def replacement(x, gamma, beta, eps, normalized_shape):
            return _layer_norm_replacement(x, gamma, beta, eps, normalized_shape)

        def check(match: Match) -> str | None:
            return _norm_check(match, ("gamma", "beta"))

    else:

        def pattern(x, gamma, eps: float, dims: tuple):
            return body(x, gamma, None, eps, dims, sq, iv)

        def replacement(x, gamma, eps, normalized_shape):
            return _layer_norm_replacement(x, gamma, None, eps, normalized_shape)

        def check(match: Match) -> str | None:
            return _norm_check(match, ("gamma",))

    return Rule(
        name,
        pattern,
        replacement,
        check=check,
        note=f"LayerNorm, {form} form, square as {square}, 1/std as {inv}",
    )


# -- RMS norm ----------------------------------------------------------------------------------


RMS_FORMS = {
    "after": lambda x, g, eps, dims, sq, inv: (
        inv(x, torch.mean(sq(x), dims, keepdim=True), eps) * g
    ),
    "scale": lambda x, g, eps, dims, sq, inv: (
        x * inv(g, torch.mean(sq(x), dims, keepdim=True), eps)
    ),
}


def _rms_norm_rule(name: str, form: str, square: str, inv: str) -> Rule:
    body, sq, iv = RMS_FORMS[form], SQUARES[square], INV_STD[inv]

    def pattern(x, gamma, eps: float, dims: tuple):
        return body(x, gamma, eps, dims, sq, iv)

    def replacement(x, gamma, eps, normalized_shape):
        return F.rms_norm(x, normalized_shape, _as_shape(gamma, normalized_shape), eps)

    def check(match: Match) -> str | None:
        return _norm_check(match, ("gamma",))

    return Rule(
        name,
        pattern,
        replacement,
        check=check,
        note=f"RMSNorm, gamma {form}, square as {square}, 1/std as {inv}",
    )


# -- the rule set ------------------------------------------------------------------------------


def _layer_norm_rules() -> dict[str, Rule]:
    first = [("tf", "mul", "recip"), ("tf0", "mul", "recip")]
    rest = [
        combo
        for combo in itertools.product(LAYER_NORM_FORMS, SQUARES, INV_STD)
        if combo not in first
    ]
    return {
        f"layer_norm_{i}": _layer_norm_rule(f"layer_norm_{i}", *combo)
        for i, combo in enumerate(first + rest, start=1)
    }


def _rms_norm_rules() -> dict[str, Rule]:
    first = [("after", "mul", "recip"), ("after", "pow", "recip")]
    rest = [combo for combo in itertools.product(RMS_FORMS, SQUARES, INV_STD) if combo not in first]
    return {
        f"rms_norm_{i}": _rms_norm_rule(f"rms_norm_{i}", *combo)
        for i, combo in enumerate(first + rest, start=1)
    }


globals().update(_layer_norm_rules())
globals().update(_rms_norm_rules())
