"""Normalization over trailing dims -> F.layer_norm / F.rms_norm.

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta,  var(x) = mean((x - mean(x))^2)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * gamma

mean and var are taken over the same constant dims D of x (one dim for a plain
LayerNorm, several for Keras ``LayerNormalization(axis=[-2, -1])``). The fused
call gets ``normalized_shape = x.shape[D]`` (static), and gamma / beta only
where they hold one value per position of D and broadcast along every other
dim: right-aligned to x, their shape is x's size on D and 1 elsewhere (then
a reshape to ``normalized_shape`` keeps their order; anything else, a gamma
per row or per width, is declined). A gamma or beta that is one number (the
lowering writes a one-element constant as a Python literal: Keras
``LayerNormalization`` over one feature, whose output is beta exactly since
x - mean(x) is 0) scales or shifts every position alike: the fused call leaves
it out and applies it after, ``layer_norm(x) * gamma + beta``, the same
product and sum as the formula's (the params phase gives a one-element
normalisation its numbers back as weight and bias, `params/literals.py`).

D need not be the trailing dims: ConvNeXt normalises the channels of NCHW
(tf2onnx moves the NHWC LayerNormalization to axis 1, gamma [C, 1, 1]). That
is the same formula on the view with D last, so the replacement permutes D
last (the other dims keep their order), applies F.layer_norm / F.rms_norm
over the trailing dims and permutes back: each output element is computed from
the same elements, with the same gamma / beta entry, as before. The permutes
fold away where a channels-last op follows (tidy phase).

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

and, where a constant scalar c multiplies the normalised output (T5's tied LM head scales
by d_model ** -0.5) and tf2onnx's optimizer has moved c onto 1/std:

    x * (c / std) * gamma   ->   rms_norm(x, gamma) * c      (c one value, any rank <= x's)

A mean over size-1 dims is its input, exactly. tf2onnx moves a LayerNormalization's
ReduceMean over one feature across a channels-first Conv1D's transpose, which a reshape
then does: the mean reads ``reshape(mean(y, A, keepdim), s)`` (A all 1 in y) while the
rest reads ``x = reshape(y, s)``. That value is x, which is mean(x, D) for the dims D the
variance takes when they are 1 in x too; ``layer_norm_unit_mean`` (prepare phase) writes
it so, and the rules above fuse the layer norm (keras.io's timeseries Transformer).

Statistics may read a permutation of x, or x while the rest reads a permutation of it
(tf2onnx reduces a Keras ``LayerNormalization(axis=[1, 2, 3])``'s NCHW conv output while
gamma / beta read its NHWC transpose). Where the permutation moves only reduced dims, a
keepdim mean over them is the same tensor either way: ``layer_norm_permuted_stats``
(prepare phase) writes the statistics on the tensor the rest reads, and the rules fuse it.

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
import operator
from typing import Any

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule
from torch import fx

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
    """x.shape over the reduced dims D (static, constant), and the permutation that
    moves D last (None when D already is the trailing dims)."""
    shape, dims = match.shape("x"), match["dims"]
    if shape is None:
        return "the shape of x is not known"
    rank = len(shape)
    if not isinstance(dims, tuple) or not dims or not all(isinstance(d, int) for d in dims):
        return f"reduction dims {dims!r} are not constant"
    if any(not -rank <= d < rank for d in dims):
        return f"reduction dims {dims} are out of range for a {rank}-D input"
    dims = tuple(sorted({d % rank for d in dims}))
    normalized = tuple(shape[d] for d in dims)
    if any(not isinstance(d, int) for d in normalized):
        return f"the normalized dims {normalized} are not static"
    perm = tuple(d for d in range(rank) if d not in dims) + dims
    return normalized, (None if perm == tuple(range(rank)) else perm)


def _affine_check(match: Match, dims: tuple, name: str, numbers: bool) -> str | None:
    """`name` (gamma or beta) must hold one value per position of the normalized dims and
    broadcast along every other dim: right-aligned to x, x's size on D and 1 elsewhere."""
    shape, x_shape = match.shape(name), match.shape("x")
    if numbers and _is_number(match[name]):
        return None  # one value for every position: applied after the fused call
    if shape is None:
        return f"{name} is not a tensor of known shape"
    rank = len(x_shape)
    if len(shape) > rank:
        return f"{name} {shape} would add dims to the output"
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    want = tuple(x_shape[d] if d in dims else 1 for d in range(rank))
    if padded != want:
        return f"{name} has shape {shape}, which does not broadcast as {want} (one per {dims})"
    if not (match.dtype(name) or torch.int64).is_floating_point:
        return f"{name} is not floating point"
    return None


def _norm_check(match: Match, affine: tuple[str, ...], numbers: bool = False) -> str | None:
    """The dims and affine tensors fit (`numbers`: a gamma or beta may be a number, which
    the layer norm replacement applies after the call)."""
    found = _normalized_shape(match)
    if isinstance(found, str):
        return found
    normalized, perm = found
    rank = len(match.shape("x"))
    dims = tuple(sorted(d % rank for d in match["dims"]))
    for name in affine:
        reason = _affine_check(match, dims, name, numbers)
        if reason is not None:
            return reason
    eps = match["eps"]
    if not isinstance(eps, float) or eps < 0:
        return f"epsilon {eps!r} is not a non-negative number"
    match["normalized_shape"] = normalized
    match["perm"] = perm
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_shape(value, normalized: tuple):
    """gamma / beta as `normalized`: its other dims are all 1, so a reshape keeps the order."""
    if value is None or tuple(value.shape) == normalized:
        return value
    return torch.reshape(value, normalized)


def _inverse(perm: tuple) -> tuple:
    return tuple(perm.index(i) for i in range(len(perm)))


def _over_last_dims(norm, x, perm):
    """`norm` (over the trailing dims) applied where the reduced dims are: x permuted to
    put them last, normalised, permuted back (no permute when they already are last)."""
    if perm is None:
        return norm(x)
    return torch.permute(norm(torch.permute(x, perm)), _inverse(perm))


def _layer_norm_replacement(x, gamma, beta, eps, normalized_shape, perm):
    # a number gamma goes after the fused call, and so then does beta (scale, then shift)
    after_gamma = _is_number(gamma)
    after_beta = beta is not None and (after_gamma or _is_number(beta))
    weight = None if after_gamma else _as_shape(gamma, normalized_shape)
    bias = None if after_beta else _as_shape(beta, normalized_shape)
    out = _over_last_dims(lambda t: F.layer_norm(t, normalized_shape, weight, bias, eps), x, perm)
    if after_gamma:
        out = out * gamma
    return out + beta if after_beta else out  # beta as matched: it broadcasts to x so


def _layer_norm_rule(name: str, form: str, square: str, inv: str) -> Rule:
    with_beta, body = LAYER_NORM_FORMS[form]
    sq, iv = SQUARES[square], INV_STD[inv]
    if with_beta:

        def pattern(x, gamma, beta, eps: float, dims: tuple):
            return body(x, gamma, beta, eps, dims, sq, iv)

        def replacement(x, gamma, beta, eps, normalized_shape, perm):
            return _layer_norm_replacement(x, gamma, beta, eps, normalized_shape, perm)

        def check(match: Match) -> str | None:
            return _norm_check(match, ("gamma", "beta"), numbers=True)

    else:

        def pattern(x, gamma, eps: float, dims: tuple):
            return body(x, gamma, None, eps, dims, sq, iv)

        def replacement(x, gamma, eps, normalized_shape, perm):
            return _layer_norm_replacement(x, gamma, None, eps, normalized_shape, perm)

        def check(match: Match) -> str | None:
            return _norm_check(match, ("gamma",), numbers=True)

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

    def replacement(x, gamma, eps, normalized_shape, perm):
        gamma = _as_shape(gamma, normalized_shape)
        return _over_last_dims(lambda t: F.rms_norm(t, normalized_shape, gamma, eps), x, perm)

    def check(match: Match) -> str | None:
        return _norm_check(match, ("gamma",))

    return Rule(
        name,
        pattern,
        replacement,
        check=check,
        note=f"RMSNorm, gamma {form}, square as {square}, 1/std as {inv}",
    )


def _scaled_rms_norm_rule(name: str, square: str, inv: str) -> Rule:
    """x * (c / std) * gamma with c one value: the norm, then the scale (exact reassociation
    of one scalar product; c per element or per feature is declined)."""
    sq, iv = SQUARES[square], INV_STD[inv]

    def pattern(x, c, gamma, eps: float, dims: tuple):
        return x * iv(c, torch.mean(sq(x), dims, keepdim=True), eps) * gamma

    def replacement(x, c, gamma, eps, normalized_shape, perm):
        gamma = _as_shape(gamma, normalized_shape)
        return _over_last_dims(lambda t: F.rms_norm(t, normalized_shape, gamma, eps), x, perm) * c

    def check(match: Match) -> str | None:
        if isinstance(match["c"], float):  # a literal (one-value constants are inlined)
            return _norm_check(match, ("gamma",))
        shape, x_shape = match.shape("c"), match.shape("x")
        if shape is None or x_shape is None:
            return "the scale is neither a number nor a tensor of known shape"
        if len(shape) > len(x_shape) or any(d != 1 for d in shape):
            return f"the scale has shape {shape}: not one value"
        if not (match.dtype("c") or torch.int64).is_floating_point:
            return "the scale is not floating point"
        return _norm_check(match, ("gamma",))

    return Rule(
        name,
        pattern,
        replacement,
        check=check,
        note=f"RMSNorm times a scalar moved onto 1/std, square as {square}, 1/std as {inv}",
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
    rules = {
        f"rms_norm_{i}": _rms_norm_rule(f"rms_norm_{i}", *combo)
        for i, combo in enumerate(first + rest, start=1)
    }
    for combo in itertools.product(SQUARES, INV_STD):
        name = f"rms_norm_{len(rules) + 1}"
        rules[name] = _scaled_rms_norm_rule(name, *combo)
    return rules


globals().update(_layer_norm_rules())
globals().update(_rms_norm_rules())


# -- a mean over unit dims, reshaped: the mean of x over its unit dims -------------------------


def unit_mean_pattern(y, dims: tuple, shape: tuple):
    return torch.reshape(torch.mean(y, dims, keepdim=True), shape)


def unit_mean_replacement(y, dims, shape, x, var_dims, x_first):
    if not x_first:  # x comes later: the same reshape of y, made here, takes its place
        same = torch.reshape(y, shape)
        for user in list(x.node.users):
            user.replace_input_with(x.node, same.node)
        x = same
    return torch.mean(x, var_dims, keepdim=True)


def _before(node: fx.Node, anchor: fx.Node) -> bool:
    """Whether `node` comes before `anchor` in the graph."""
    step = anchor.prev
    while step.op != "root":
        if step is node:
            return True
        step = step.prev
    return False


def _unit(shape: tuple | None, dims: Any) -> bool:
    """Whether every dim of `dims` (ints) is static 1 in `shape`: a mean over them is exact
    (one element, divided by 1)."""
    if shape is None or not isinstance(dims, (tuple, list)) or not dims:
        return False
    rank = len(shape)
    return all(isinstance(d, int) and -rank <= d < rank and shape[d] == 1 for d in dims)


def _variance_dims(mean: fx.Node, x: fx.Node) -> tuple | None:
    """The dims of ``mean(square(x - mean), dims, keepdim=True)`` that reads `mean`, if any."""
    for sub in mean.users:
        if sub.target is not operator.sub or sub.args != (x, mean):
            continue
        for square in sub.users:
            squares = square.target is operator.mul and square.args == (sub, sub)
            squares |= square.target is operator.pow and square.args == (sub, 2)
            for var in square.users if squares else ():
                if var.target is torch.mean and var.kwargs.get("keepdim") is True:
                    return tuple(var.args[1]) if len(var.args) > 1 else None
    return None


def unit_mean_check(match: Match) -> str | None:
    """``reshape(mean(y, A, keepdim), s)`` with every A dim of y a 1 is ``reshape(y, s)``:
    where that reshape is also x, the centring ``x - it`` of a variance over dims D of x that
    are 1 too, it is mean(x, D) exactly, written so for the layer norm rules (tf2onnx moves a
    LayerNormalization's ReduceMean over one feature across a channels-first Conv1D's
    transpose, which a reshape then does: keras.io's timeseries Transformer)."""
    y, shape, anchor = match["y"], match["shape"], match.anchor
    if not _unit(match.shape(y), match["dims"]):
        return f"the mean is over {match['dims']} of {match.shape(y)}: not all 1"
    twins = [
        u
        for u in y.users
        if u is not anchor and u.target is torch.reshape and u.args[1:] == (shape,)
    ]
    for x in twins:
        dims = _variance_dims(anchor, x)
        if dims is not None and _unit(match.shape(x), dims):
            match["x"], match["var_dims"], match["x_first"] = x, dims, _before(x, anchor)
            return None
    return "no reshape of y to the same shape is centred by it, over dims of size 1"


layer_norm_unit_mean = Rule(
    "layer_norm_unit_mean",
    unit_mean_pattern,
    unit_mean_replacement,
    check=unit_mean_check,
    phase="prepare",
    note="a mean over size-1 dims, reshaped as x: mean(x) over x's own size-1 dims",
)


# -- statistics read through a permutation of x: the statistics of x ---------------------------


def permuted_stats_pattern(a, dims: tuple):
    return torch.mean(a, dims, keepdim=True)


def permuted_stats_replacement(a, dims, c, perm, sub, c_first, var_dims):
    if not c_first:  # c, a permute of a, comes later: the same permute, made here, replaces it
        same = torch.permute(a, perm)
        for user in list(c.node.users):
            user.replace_input_with(c.node, same.node)
        c = same
    sub.node.replace_input_with(a.node, c.node)
    return torch.mean(c, var_dims, keepdim=True)  # the variance's dims, as it writes them


def _reduced(dims: Any, rank: int) -> frozenset | None:
    """`dims` (ints in range for `rank`) as a set of dims >= 0, or None."""
    if not isinstance(dims, (tuple, list)) or not dims:
        return None
    if not all(isinstance(d, int) and -rank <= d < rank for d in dims):
        return None
    return frozenset(d % rank for d in dims)


def _moves_only(node: fx.Node, reduced: frozenset, rank: int) -> bool:
    """Whether `node` is ``torch.permute(_, p)`` of rank `rank` and every dim p moves is one
    of `reduced`: then a keepdim mean over `reduced` (size 1 there, every other dim in place)
    is the same tensor before and after it."""
    if node.target is not torch.permute or len(node.args) != 2:
        return False
    perm = node.args[1]
    if not isinstance(perm, (tuple, list)) or len(perm) != rank:
        return False
    if not all(isinstance(p, int) for p in perm) or sorted(p % rank for p in perm) != list(
        range(rank)
    ):
        return False
    return all(i in reduced for i, p in enumerate(perm) if p % rank != i)


def _centred_variance(mean: fx.Node, a: fx.Node, reduced: frozenset, rank: int) -> fx.Node | None:
    """The ``a - mean`` of ``mean(square(a - mean), D', keepdim=True)`` with D' the same set
    of dims as `reduced`, where that difference and its square are read by nothing else (its
    layout is free then: only the variance, a mean over the same dims, sees it)."""
    for sub in mean.users:
        if sub.target is not operator.sub or sub.args != (a, mean) or len(sub.users) != 1:
            continue
        (square,) = sub.users
        squares = square.target is operator.mul and square.args == (sub, sub)
        squares |= square.target is operator.pow and square.args == (sub, 2)
        if not squares or not square.users:
            continue
        if all(
            var.target is torch.mean
            and var.kwargs.get("keepdim") is True
            and len(var.args) == 2
            and var.args[0] is square
            and _reduced(var.args[1], rank) == reduced
            for var in square.users
        ):
            return sub
    return None


def permuted_stats_check(match: Match) -> str | None:
    """The mean and variance of a LayerNorm over dims D read `a` while the rest of it reads
    `c`, where c = permute(a, p) (or a = permute(c, p)) and p moves only dims of D. A keepdim
    mean over D is then the same tensor of a or of c (size 1 on D, every other dim where it
    was), and so is the variance, the mean over D of the squared difference: the statistics
    are those of c, and are written so, for the layer norm rules (Keras
    ``LayerNormalization(axis=[1, 2, 3])`` after a Conv2D: tf2onnx reduces the NCHW conv
    output while gamma / beta (H, W, C) read its NHWC transpose; the WGAN-GP critic).

    Which of a and c "the rest" reads is fixed so that the move is one way: a is read by the
    statistics alone, and by c where c is a permute of it; c has readers of its own."""
    a, anchor = match["a"], match.anchor
    shape = match.shape(a)
    if shape is None:
        return "the rank of the mean's input is not known"
    rank = len(shape)
    reduced = _reduced(match["dims"], rank)
    if reduced is None:
        return f"reduction dims {match['dims']!r} are not constant dims of a {rank}-D input"
    sub = _centred_variance(anchor, a, reduced, rank)
    if sub is None:
        return "no variance over the same dims is centred by this mean alone"
    (square,) = sub.users
    match["var_dims"] = tuple(next(iter(square.users)).args[1])
    others = [u for u in a.users if u is not anchor and u is not sub]
    if not others and _moves_only(a, reduced, rank):  # a = permute(c): the rest reads c
        c = a.args[0]
        if len(c.users) < 2:
            return "the permute's input is read by nothing else"
        match["c"], match["perm"], match["sub"], match["c_first"] = c, None, sub, True
        return None
    if len(others) == 1 and _moves_only(others[0], reduced, rank) and others[0].users:
        c = others[0]  # c = permute(a): the rest reads c
        match["c"], match["perm"], match["sub"] = c, tuple(c.args[1]), sub
        match["c_first"] = _before(c, anchor)
        return None
    return "the mean's input is not read through one permute that moves only reduced dims"


layer_norm_permuted_stats = Rule(
    "layer_norm_permuted_stats",
    permuted_stats_pattern,
    permuted_stats_replacement,
    check=permuted_stats_check,
    phase="prepare",
    note="a mean and variance over D of a, the rest reading permute(a) moving only D: of that",
)
