"""Normalization over the last dim -> F.layer_norm / F.rms_norm.

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta,  var(x) = mean((x - mean(x))^2)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * gamma

TF's LayerNormalization (non-fused: tf.nn.moments + batch_normalization) as
tf2onnx writes it and fxsurgeon lowers it (ReduceMean/GlobalAveragePool -> mean):

    mean = mean(x, -1); d = x - mean; var = mean(d * d, -1)
    s = reciprocal(sqrt(var + eps)) * gamma
    y = x * s + (beta - mean * s)           # with beta
    y = x * s + -(mean * s)                 # beta all zero: TF drops the Add, the Sub becomes Neg

T5's RMS norm (TFT5LayerNorm): h = x * rsqrt(mean(x^2, -1) + eps); y = gamma * h, with
rsqrt written Sqrt + Reciprocal and square written x * x (Square) or x ** 2 (Pow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule


def _scale(x, gamma, eps):
    mean = torch.mean(x, (-1,), keepdim=True)
    d = x - mean
    var = torch.mean(d * d, (-1,), keepdim=True)
    return mean, torch.reciprocal(torch.sqrt(var + eps)) * gamma


def _channels_check(match: Match, *names: str) -> str | None:
    shape = match.shape("x")
    if shape is None or shape[-1] is None:
        return "the normalized dim of x is not static"
    for name in names:
        if match.shape(name) != (shape[-1],):
            return f"{name} has shape {match.shape(name)}, not ({shape[-1]},)"
    if not isinstance(match["eps"], float) or match["eps"] < 0:
        return f"epsilon {match['eps']!r} is not a non-negative number"
    return None


# -- with beta ---------------------------------------------------------------------------------


def layer_norm_pattern(x, gamma, beta, eps: float):
    mean, s = _scale(x, gamma, eps)
    return x * s + (beta - mean * s)


def layer_norm_replacement(x, gamma, beta, eps):
    return F.layer_norm(x, (x.shape[-1],), gamma, beta, eps)


def layer_norm_check(match: Match) -> str | None:
    return _channels_check(match, "gamma", "beta")


layer_norm_1 = Rule(
    "layer_norm_1",
    layer_norm_pattern,
    layer_norm_replacement,
    check=layer_norm_check,
    note="tf2onnx, Keras LayerNormalization (moments form): HF TFViT, TFBert, TFGPT2",
)


# -- beta all zero -------------------------------------------------------------------------------


def layer_norm_no_beta_pattern(x, gamma, eps: float):
    mean, s = _scale(x, gamma, eps)
    return x * s + -(mean * s)


def layer_norm_no_beta_replacement(x, gamma, eps):
    return F.layer_norm(x, (x.shape[-1],), gamma, None, eps)


def layer_norm_no_beta_check(match: Match) -> str | None:
    return _channels_check(match, "gamma")


layer_norm_2 = Rule(
    "layer_norm_2",
    layer_norm_no_beta_pattern,
    layer_norm_no_beta_replacement,
    check=layer_norm_no_beta_check,
    note="tf2onnx, Keras LayerNormalization whose beta is all zero (TF folds the Add away)",
)


# -- RMS norm --------------------------------------------------------------------------------------


def rms_norm_pattern(x, gamma, eps: float):
    return gamma * (x * torch.reciprocal(torch.sqrt(torch.mean(x * x, (-1,), keepdim=True) + eps)))


def rms_norm_pow_pattern(x, gamma, eps: float):
    return gamma * (x * torch.reciprocal(torch.sqrt(torch.mean(x**2, (-1,), keepdim=True) + eps)))


def rms_norm_replacement(x, gamma, eps):
    return F.rms_norm(x, (x.shape[-1],), gamma, eps)


def rms_norm_check(match: Match) -> str | None:
    return _channels_check(match, "gamma")


rms_norm_1 = Rule(
    "rms_norm_1",
    rms_norm_pattern,
    rms_norm_replacement,
    check=rms_norm_check,
    note="tf2onnx, HF TFT5LayerNorm: Square as Mul(x, x), rsqrt as Sqrt + Reciprocal",
)

rms_norm_2 = Rule(
    "rms_norm_2",
    rms_norm_pow_pattern,
    rms_norm_replacement,
    check=rms_norm_check,
    note="tf2onnx, RMS norm with the square as Pow(x, 2)",
)
