"""Convolutions as exported -> the torch convolution that means them.

Conv1D(x) over [N, W, C] (Keras, NWC) = conv2d over [N, C, 1, W] with a [O, C/g, 1, k] kernel,
squeezed back: tf2onnx writes TF's own lowering (ExpandDims -> Conv2D -> Squeeze):

    squeeze(conv2d(permute(unsqueeze(x, 1), (0, 3, 1, 2)), W, b, (1, s), (0, p), (dh, d), g), 2)
        -> conv1d(permute(x, (0, 2, 1)), W[:, :, 0, :], b, s, p, d, g)
    squeeze(conv2d(unsqueeze(x, 2), W, b, ...), 2)        (x already [N, C, W])
        -> conv1d(x, W[:, :, 0, :], b, s, p, d, g)

Exact: with a kernel of height 1, stride 1 and no padding along the inserted
axis of length 1, conv2d computes per output position the same sum as conv1d
(dilation along that axis touches only row 0). Anything else is declined.

conv1d(x, W, None, ...) + b  -> conv1d(x, W, b, ...)    b: [O] or [O, 1] (TF BiasAdd after
                                                         the Squeeze, in NCW)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule


def conv1d_nwc_pattern(x, w, b, stride: tuple, padding, dilation: tuple, groups: int):
    y = F.conv2d(
        torch.permute(torch.unsqueeze(x, 1), (0, 3, 1, 2)), w, b, stride, padding, dilation, groups
    )
    return torch.squeeze(y, (2,))


def conv1d_ncw_pattern(x, w, b, stride: tuple, padding, dilation: tuple, groups: int):
    return torch.squeeze(
        F.conv2d(torch.unsqueeze(x, 2), w, b, stride, padding, dilation, groups), (2,)
    )


def conv1d_nwc_replacement(x, w, b, stride, padding, dilation, groups, padding_1d):
    x = torch.permute(x, (0, 2, 1))
    return F.conv1d(x, _kernel_1d(w), b, stride[1], padding_1d, dilation[1], groups)


def conv1d_ncw_replacement(x, w, b, stride, padding, dilation, groups, padding_1d):
    return F.conv1d(x, _kernel_1d(w), b, stride[1], padding_1d, dilation[1], groups)


def _kernel_1d(w):
    """[O, C/g, 1, k] -> [O, C/g, k], as a reshape (the parameters pass folds reshapes)."""
    out, per_group, _, k = w.shape
    return torch.reshape(w, (out, per_group, k))


def conv1d_check(match: Match) -> str | None:
    w_shape = match.shape("w")
    if w_shape is None or len(w_shape) != 4 or w_shape[2] != 1:
        return f"the kernel {w_shape} is not of height 1"
    if match.rank("x") != 3:
        return "the input is not 3-D"
    stride, padding = match["stride"], match["padding"]
    if len(stride) != 2 or stride[0] != 1:
        return f"stride {stride} along the inserted axis"
    if isinstance(padding, str):
        match["padding_1d"] = padding
    elif isinstance(padding, tuple) and len(padding) == 2 and padding[0] == 0:
        match["padding_1d"] = padding[1]
    else:
        return f"padding {padding!r} along the inserted axis"
    if len(match["dilation"]) != 2:
        return f"dilation {match['dilation']}"
    return None


conv1d_1 = Rule(
    "conv1d_1",
    conv1d_nwc_pattern,
    conv1d_nwc_replacement,
    check=conv1d_check,
    note="tf2onnx, Keras Conv1D on [N, W, C]: ExpandDims + NCHW transpose + Conv + Squeeze",
)
conv1d_2 = Rule(
    "conv1d_2",
    conv1d_ncw_pattern,
    conv1d_ncw_replacement,
    check=conv1d_check,
    note="Conv1D on [N, C, W] written as Unsqueeze + Conv2d + Squeeze",
)


# -- bias ------------------------------------------------------------------------------------


def conv1d_bias_pattern(x, w, stride, padding, dilation, groups, b: torch.Tensor):
    return F.conv1d(x, w, None, stride, padding, dilation, groups) + b


def conv1d_bias_replacement(x, w, stride, padding, dilation, groups, b):
    bias = torch.reshape(b, (w.shape[0],))
    return F.conv1d(x, w, bias, stride, padding, dilation, groups)


def conv1d_bias_check(match: Match) -> str | None:
    out, b_shape = match.shape("w"), match.shape("b")
    if out is None or b_shape is None or not match.is_constant("b"):
        return "the addend is not a constant of known shape"
    trimmed = tuple(b_shape)
    while len(trimmed) > 2 and trimmed[0] == 1:
        trimmed = trimmed[1:]
    if trimmed != (out[0], 1) or len(b_shape) > 3:
        return f"the addend has shape {b_shape}, not one bias per channel of [N, {out[0]}, W]"
    return None


conv1d_bias_1 = Rule(
    "conv1d_bias_1",
    conv1d_bias_pattern,
    conv1d_bias_replacement,
    check=conv1d_bias_check,
    note="TF BiasAdd of a Conv1D, after the Squeeze (NCW: bias [O, 1])",
)


# -- a zero pad into the convolution's own padding ---------------------------------------------


def _conv_pad_rules(fn, spatial: int) -> tuple[Rule, Rule]:
    """conv(F.pad(x, zeros), ...) and conv(permute(F.pad(x, zeros), p), ...) for one conv."""

    def direct_pattern(x, pads, mode, value, w, b, stride, padding, dilation, groups):
        return fn(F.pad(x, pads, mode, value), w, b, stride, padding, dilation, groups)

    def direct_replacement(x, pads, mode, value, w, b, stride, padding, dilation, groups, merged):
        return fn(x, w, b, stride, merged, dilation, groups)

    def permuted_pattern(x, pads, mode, value, perm, w, b, stride, padding, dilation, groups):
        y = torch.permute(F.pad(x, pads, mode, value), perm)
        return fn(y, w, b, stride, padding, dilation, groups)

    def permuted_replacement(
        x, pads, mode, value, perm, w, b, stride, padding, dilation, groups, merged
    ):
        return fn(torch.permute(x, perm), w, b, stride, merged, dilation, groups)

    def check(match: Match) -> str | None:
        return _pad_into_conv(match, spatial)

    n = spatial
    return (
        Rule(
            f"conv{n}d_pad_1",
            direct_pattern,
            direct_replacement,
            check=check,
            note=f"Keras ZeroPadding{n}D (or tf.pad / a Concat of zeros) before a valid Conv{n}D",
        ),
        Rule(
            f"conv{n}d_pad_2",
            permuted_pattern,
            permuted_replacement,
            check=check,
            note="the zero pad in channels-last, then tf2onnx's transpose to channels-first",
        ),
    )


def _pad_into_conv(match: Match, spatial: int) -> str | None:
    """A constant zero pad, the same amount on both sides of each spatial dim (of the
    convolution's input) and none on the batch and channel dims, adds to the convolution's
    padding: the convolution reads the same zeros either way."""
    value = match["value"]
    if match["mode"] != "constant" or not isinstance(value, (int, float)):
        return f"a {match['mode']!r} pad"
    if value != 0 or math.copysign(1.0, value) < 0:
        return f"a pad with {value!r}, not zero"
    padding = match["padding"]
    if isinstance(padding, str):
        if padding != "valid":
            return f"padding {padding!r}"
        padding = 0
    padding = (padding,) * spatial if isinstance(padding, int) else tuple(padding)
    rank = spatial + 2
    flat = list(match["pads"])
    if len(flat) % 2 or len(flat) > 2 * rank or not all(isinstance(p, int) for p in flat):
        return f"pads {flat}"
    flat += [0] * (2 * rank - len(flat))
    per_dim = {rank - 1 - i: (flat[2 * i], flat[2 * i + 1]) for i in range(rank)}  # x's dims
    perm = match["perm"] if "perm" in match else tuple(range(rank))
    perm = tuple(p % rank for p in perm)
    amounts = [per_dim[perm[d]] for d in range(rank)]  # the convolution input's dims
    if any(amounts[d] != (0, 0) for d in (0, 1)):
        return "the pad touches the batch or channel dim"
    if any(a != b for a, b in amounts[2:]) or any(a < 0 for a, _ in amounts[2:]):
        return f"pads {amounts[2:]} are not the same on both sides"
    match["merged"] = tuple(p + a for p, (a, _) in zip(padding, amounts[2:], strict=True))
    return None


conv1d_pad_1, conv1d_pad_2 = _conv_pad_rules(F.conv1d, 1)
conv2d_pad_1, conv2d_pad_2 = _conv_pad_rules(F.conv2d, 2)
conv3d_pad_1, conv3d_pad_2 = _conv_pad_rules(F.conv3d, 3)
